import { getConnInfo } from '@hono/node-server/conninfo'
import type { Context } from 'hono'

/** The caller's address as the socket sees it ('' when the request did not come over a socket). */
export function clientIp(c: Context): string {
  try {
    return getConnInfo(c).remote.address ?? ''
  } catch (e) {
    // app.request() in tests has no socket; everything else is a real failure
    if (e instanceof TypeError) return ''
    throw e
  }
}
