import { AppError, QUEUE_NAMES } from '@referral/core'
import { readDeliveryLog, replayDelivery } from '@referral/workers'
import { Hono } from 'hono'
import { z } from 'zod'
import type { ApiDeps } from '../context.ts'
import { parseQuery } from '../query.ts'

const logQuery = z.object({
  limit: z.coerce.number().int().min(1).max(500).default(100),
  offset: z.coerce.number().int().min(0).max(10_000).default(0),
})

/** Outgoing webhooks for admins: the endpoints and their queue, the delivery log, replays. */
export function adminWebhookRoutes(deps: ApiDeps): Hono {
  const { redis, keys, config } = deps
  const app = new Hono()

  app.get('/v1/admin/webhooks', async (c) => {
    const queue = deps.queues.find((q) => q.name === QUEUE_NAMES.webhooks)
    if (queue === undefined) throw new AppError('unavailable', 'this API process has no webhook queue')
    const counts = await queue.getJobCounts('wait', 'active', 'delayed', 'completed', 'failed')
    return c.json({
      endpoints: config.webhooks.map((e) => e.url),
      signature_header: 'X-Referral-Signature',
      queue: counts,
    })
  })

  app.get('/v1/admin/webhooks/deliveries', async (c) => {
    const q = parseQuery(logQuery, c.req.query())
    return c.json({ deliveries: await readDeliveryLog(redis, keys, q.limit, q.offset) })
  })

  app.post('/v1/admin/webhooks/deliveries/:id/replay', async (c) => {
    const id = c.req.param('id')
    if (!/^wh-\d+-evt_[0-9a-f]{24}$/.test(id)) throw new AppError('not_found', 'no such delivery')
    if (!(await replayDelivery(redis, keys, id)))
      throw new AppError('not_found', 'no such delivery in the log')
    return c.json({ id, status: 'queued' }, 202)
  })
  return app
}
