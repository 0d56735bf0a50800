import type { ClickHouse } from '@referral/clickhouse'
import type { Keys } from '@referral/core'
import type { Redis } from 'ioredis'
import { type AppliedGroup, type ApplyOptions, applyJobs, finishJobs, type JobInput } from './apply.ts'
import type { CreditExpiry } from './state.ts'
import { storeGroup } from './store.ts'

/**
 * What the ingest worker does with a group of jobs: apply them to Redis, insert their rows
 * into ClickHouse, then forget the bookkeeping. Safe to run again after a crash at any step.
 */
export async function processJobs(
  redis: Redis,
  keys: Keys,
  ch: ClickHouse,
  jobs: readonly JobInput[],
  opts: ApplyOptions & {
    schedule?: (expiries: readonly CreditExpiry[]) => Promise<void>
    /** after a group's rows are stored (outgoing webhooks); it may run again for the same group */
    afterStore?: (group: AppliedGroup) => Promise<void>
    /** adds the time spent applying to Redis and inserting into ClickHouse (for /metrics) */
    timings?: { applyMs: number; insertMs: number; inserts: number }
  },
): Promise<AppliedGroup[]> {
  const t0 = performance.now()
  const groups = await applyJobs(redis, keys, jobs, opts)
  const t1 = performance.now()
  if (opts.timings !== undefined) opts.timings.applyMs += t1 - t0
  for (const g of groups) {
    const t = performance.now()
    await storeGroup(ch, g)
    if (opts.timings !== undefined) {
      opts.timings.insertMs += performance.now() - t
      opts.timings.inserts++
    }
    await opts.schedule?.(g.resolution.expiries ?? [])
    await opts.afterStore?.(g)
  }
  await finishJobs(
    redis,
    keys,
    jobs.map((j) => j.id),
    groups,
  )
  return groups
}
