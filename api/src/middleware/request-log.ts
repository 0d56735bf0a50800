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
  return async function requestLine(c, next) {
    if (!http.isLevelEnabled('info')) return next()
    const started = performance.now()
    await next()
    logRequest(http, c.get('requestId'), c.req.method, c.req.path, c.res.status, started)
  }
}

/** The line itself, for the server's direct ingest path too (api/src/direct-ingest.ts). */
export function logRequest(
  http: Logger,
  reqId: string,
  method: string,
  path: string,
  status: number,
  started: number,
): void {
  http.info(
    { req_id: reqId, method, path, status, ms: Math.round((performance.now() - started) * 10) / 10 },
    'request',
  )
}

/** An X-Request-Id is kept when it is 1-128 word characters, '-' or '='; else one is made. */
export const REQUEST_ID_MAX = 128
