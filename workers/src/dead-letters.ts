import { QUEUE_NAMES } from '@referral/core'
import { Queue } from 'bullmq'
import type { Redis } from 'ioredis'

export interface ReplayResult {
  queue: string
  /** ids of the failed jobs moved back to wait */
  replayed: string[]
}

/**
 * Moves the failed jobs (dead letters) of each queue back to wait, with their attempts reset,
 * once the cause is fixed: BullMQ's job.retry. The failed set is read first, so a job that
 * fails again at once is not replayed twice in one run. Replaying an ingest job is harmless
 * however often it runs: its events count once (apply.ts).
 */
export async function replayDeadLetters(
  connection: Redis,
  prefix: string,
  opts: { queues?: readonly string[]; limit?: number } = {},
): Promise<ReplayResult[]> {
  const names = opts.queues ?? Object.values(QUEUE_NAMES)
  const limit = opts.limit ?? Number.POSITIVE_INFINITY
  const out: ReplayResult[] = []
  for (const name of names) {
    const queue = new Queue(name, { connection, prefix })
    try {
      const ids: string[] = []
      const page = 500
      for (let start = 0; ids.length < limit; start += page) {
        const jobs = await queue.getFailed(start, start + page - 1)
        for (const j of jobs) if (j.id !== undefined && ids.length < limit) ids.push(j.id)
        if (jobs.length < page) break
      }
      const replayed: string[] = []
      for (const id of ids) {
        const job = await queue.getJob(id)
        // gone or no longer failed (replayed by someone else meanwhile): nothing to do
        if (job === undefined || !(await job.isFailed())) continue
        await job.retry('failed', { resetAttemptsMade: true, resetAttemptsStarted: true })
        replayed.push(id)
      }
      out.push({ queue: name, replayed })
    } finally {
      await queue.close()
    }
  }
  return out
}
