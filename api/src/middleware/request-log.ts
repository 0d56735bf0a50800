import type { Logger } from '@referral/core'
import type { MiddlewareHandler } from 'hono'

/**
 * One JSON line per request through the process's logger: method, path, status, duration and
 * the request id (hono's requestId middleware, which runs first, takes a sane incoming
 * X-Request-Id or makes one, and echoes it in the response). Errors are logged by the error
 * handler with the same id. Off when the logger's level is above `info`.
 */
export function requestLog(log: Logger): MiddlewareHandler {
  const http = log.child({ component: 'http' })
  return async function logRequest(c, next) {
    if (!http.isLevelEnabled('info')) return next()
    const started = performance.now()
    await next()
    http.info(
      {
        req_id: c.get('requestId'),
        method: c.req.method,
        path: c.req.path,
        status: c.res.status,
        ms: Math.round((performance.now() - started) * 10) / 10,
      },
      'request',
    )
  }
}
