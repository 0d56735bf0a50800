import { createBullBoard } from '@bull-board/api'
import { BullMQAdapter } from '@bull-board/api/bullMQAdapter'
import { HonoAdapter } from '@bull-board/hono'
import { serveStatic } from '@hono/node-server/serve-static'
import { ingestJobView, QUEUE_NAMES } from '@referral/core'
import type { Queue } from 'bullmq'
import type { Hono } from 'hono'

export const QUEUE_BOARD_PATH = '/admin/queues'

/**
 * Bull Board (queue dashboard: counts, failed jobs with their errors, retry) for the given
 * queues, as a Hono app to mount at QUEUE_BOARD_PATH behind the admin check. An ingest job's
 * events are queued packed (core/src/queues.ts): the board shows them decoded.
 */
export function queueBoard(queues: readonly Queue[]): Hono {
  const adapter = new HonoAdapter(serveStatic).setBasePath(QUEUE_BOARD_PATH)
  createBullBoard({
    queues: queues.map((q) => {
      const adapter = new BullMQAdapter(q)
      if (q.name === QUEUE_NAMES.ingest) adapter.setFormatter('data', ingestJobView)
      return adapter
    }),
    serverAdapter: adapter,
    options: { uiConfig: { boardTitle: 'Referral queues' } },
  })
  return adapter.registerPlugin()
}
