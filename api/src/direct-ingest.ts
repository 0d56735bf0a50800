import { randomUUID } from 'node:crypto'
import type { IncomingMessage, ServerResponse } from 'node:http'
import type { ApiDeps } from './context.ts'
import { errorHeaders, logIfServerError, toAppError } from './errors.ts'
import { readIncoming } from './middleware/json-body.ts'
import { logRequest, REQUEST_ID_MAX } from './middleware/request-log.ts'
import { type IngestDeps, makeIngest } from './routes/events.ts'

const REQUEST_ID = new RegExp(`^[\\w\\-=]{1,${REQUEST_ID_MAX}}$`)

/**
 * POST /v1/events straight from node:http, before Hono: the marketplace's hottest call skips
 * building a web Request and Response and the middleware chain, and runs the same `makeIngest`
 * as the Hono route, with the same answers: X-Request-Id kept or made, one log line per
 * request, the one error model, `Connection: close` while draining. Returns false for every
 * other request, which then goes to Hono.
 */
export function directIngest(
  deps: IngestDeps & Pick<ApiDeps, 'lifecycle' | 'log'>,
): (req: IncomingMessage, res: ServerResponse) => boolean {
  const ingest = makeIngest(deps)
  const http = deps.log.child({ component: 'http' })
  const logRequests = http.isLevelEnabled('info')

  async function handle(req: IncomingMessage, res: ServerResponse): Promise<void> {
    const started = logRequests ? performance.now() : 0
    const given = req.headers['x-request-id']
    const reqId = typeof given === 'string' && REQUEST_ID.test(given) ? given : randomUUID()
    let status = 202
    let body: string
    let headers: Record<string, string> = {}
    try {
      const answer = await ingest({
        authorization: req.headers.authorization,
        contentType: req.headers['content-type'],
        readText: () => readIncoming(req),
      })
      body = JSON.stringify(answer)
    } catch (err) {
      const appErr = toAppError(err)
      logIfServerError(deps.log, appErr, err, reqId, '/v1/events')
      status = appErr.status
      headers = errorHeaders(appErr)
      body = JSON.stringify(appErr.toBody())
    }
    const out: Record<string, string | number> = Object.assign({}, headers, {
      'Content-Type': 'application/json',
      'Content-Length': Buffer.byteLength(body),
      'X-Request-Id': reqId,
    })
    if (deps.lifecycle.draining) out.Connection = 'close'
    res.writeHead(status, out)
    res.end(body)
    if (logRequests) logRequest(http, reqId, 'POST', '/v1/events', status, started)
  }

  return function maybeIngest(req, res) {
    if (req.method !== 'POST' || !isEventsPath(req.url)) return false
    handle(req, res).catch((err: unknown) => {
      http.error(
        { err: err instanceof Error ? err.message : String(err) },
        'answering POST /v1/events failed',
      )
      res.destroy()
    })
    return true
  }
}

function isEventsPath(url: string | undefined): boolean {
  return url === '/v1/events' || (url?.startsWith('/v1/events?') ?? false)
}
