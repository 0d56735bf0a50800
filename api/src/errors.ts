import { AppError, type Logger } from '@referral/core'
import type { Context, ErrorHandler, NotFoundHandler } from 'hono'
import { HTTPException } from 'hono/http-exception'
import type { ContentfulStatusCode } from 'hono/utils/http-status'

/** Renders the one error model; anything unexpected is logged and hidden behind a 500. */
export function makeErrorHandler(log: Logger): ErrorHandler {
  return function errorHandler(err: Error, c: Context) {
    const appErr = toAppError(err)
    logIfServerError(log, appErr, err, c.get('requestId'), c.req.path)
    for (const [k, v] of Object.entries(errorHeaders(appErr))) c.header(k, v)
    return c.json(appErr.toBody(), appErr.status as ContentfulStatusCode)
  }
}

/** The headers an error answer carries besides its JSON body. */
export function errorHeaders(appErr: AppError): Record<string, string> {
  // the rest of an oversize body was not read: the connection cannot carry another request
  return appErr.code === 'payload_too_large' ? { ...appErr.headers, Connection: 'close' } : appErr.headers
}

/** A 5xx is ours to look at: logged with the request id; a 4xx is the caller's. */
export function logIfServerError(
  log: Logger,
  appErr: AppError,
  err: unknown,
  reqId: string | undefined,
  path: string,
): void {
  if (appErr.status < 500) return
  const message = err instanceof Error ? err.message : String(err)
  log.error({ req_id: reqId, err: message, cause: describeCause(appErr), path }, 'request failed')
}

export function toAppError(err: unknown): AppError {
  if (err instanceof AppError) return err
  if (err instanceof HTTPException) {
    if (err.status === 413) return new AppError('payload_too_large', 'the request body is larger than 1 MiB')
    if (err.status === 401) return new AppError('unauthorized', err.message || 'unauthorized')
    if (err.status < 500) return new AppError('bad_request', err.message || 'bad request')
  }
  return new AppError('internal', 'internal error', [], { cause: err })
}

function describeCause(e: AppError): string | undefined {
  const c = e.cause
  return c instanceof Error ? c.message : c === undefined ? undefined : String(c)
}

export const notFound: NotFoundHandler = (c) =>
  c.json(new AppError('not_found', `no route for ${c.req.method} ${c.req.path}`).toBody(), 404)
