import { Hono } from 'hono'
import type { ApiDeps } from '../context.ts'
import { parseEventsBody } from '../ingest.ts'
import { ingestKeyAuth } from '../middleware/auth.ts'
import { readJson } from '../middleware/json-body.ts'

/** POST /v1/events: 202 only once every event of the request is durably queued. */
export function eventRoutes(deps: ApiDeps): Hono {
  const app = new Hono()
  app.post('/v1/events', ingestKeyAuth(deps.config.ingestApiKey), async (c) => {
    const events = parseEventsBody(await readJson(c))
    deps.backlog.admit()
    await deps.events.submit(events)
    return c.json({ accepted: events.length, ids: events.map((e) => e.id) }, 202)
  })
  return app
}
