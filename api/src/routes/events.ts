import type { QueuedEvent } from '@referral/core'
import { Hono } from 'hono'
import type { ApiDeps } from '../context.ts'
import { parseEventsBody } from '../ingest.ts'
import { ingestKeyCheck } from '../middleware/auth.ts'
import { parseJsonBody, readBody } from '../middleware/json-body.ts'

/** What POST /v1/events needs of a request, however it arrived. */
export interface IngestRequest {
  authorization: string | undefined
  contentType: string | undefined
  readText(): Promise<string>
}

export interface IngestDeps extends Pick<ApiDeps, 'backlog' | 'events'> {
  ingestApiKey: string
}

export interface IngestAnswer {
  accepted: number
  ids: string[]
}

/**
 * POST /v1/events from its headers to its answer: key, body, validation, backpressure, and
 * the group-committed queue write. Resolves (202) only once every event of the request is
 * durably queued; throws the AppError to answer otherwise. The Hono route and the server's
 * direct path (`directIngest`) both run this one function.
 */
export function makeIngest(deps: IngestDeps): (req: IngestRequest) => Promise<IngestAnswer> {
  const checkKey = ingestKeyCheck(deps.ingestApiKey)
  return async function ingest(req) {
    checkKey(req.authorization)
    const { ids, queued } = submit(deps, parseEventsBody(await parseJsonBody(req.contentType, req.readText)))
    await queued
    // queued: the answer waits a moment if the workers are behind (Backlog.pace)
    const pace = deps.backlog.pace()
    if (pace > 0) await new Promise((r) => setTimeout(r, pace))
    return { accepted: ids.length, ids }
  }
}

/**
 * Hands the events to the queue and keeps what the answer needs of them, their ids: the
 * events themselves are not held by the request while the queue write is in flight (see
 * GroupCommitter), which they would be as a variable of the async function above.
 */
function submit(deps: IngestDeps, events: readonly QueuedEvent[]): { ids: string[]; queued: Promise<void> } {
  deps.backlog.admit()
  return { ids: events.map((e) => e.id), queued: deps.events.submit(events) }
}

/** POST /v1/events: 202 only once every event of the request is durably queued. */
export function eventRoutes(deps: IngestDeps): Hono {
  const app = new Hono()
  const ingest = makeIngest(deps)
  app.post('/v1/events', async (c) =>
    c.json(
      await ingest({
        authorization: c.req.header('authorization'),
        contentType: c.req.header('content-type'),
        readText: () => readBody(c),
      }),
      202,
    ),
  )
  return app
}
