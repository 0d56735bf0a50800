import type { ClickHouse } from '@referral/clickhouse'
import type { Keys } from '@referral/core'
import type { Redis } from 'ioredis'
import { type AppliedGroup, type ApplyOptions, applyJobs, type JobInput } from './apply.ts'
import { type StoreOptions, storeOutbox } from './outbox.ts'

/**
 * A group of jobs all the way: applied to Redis, then the outbox stored into ClickHouse until
 * it is empty (the worker does the second part in its store loop, on its own schedule). For
 * tests and the worker bench. Safe to run again after a crash at any step.
 */
export async function processJobs(
  redis: Redis,
  keys: Keys,
  ch: ClickHouse,
  jobs: readonly JobInput[],
  opts: ApplyOptions & Partial<StoreOptions>,
): Promise<AppliedGroup | null> {
  const group = await applyJobs(redis, keys, jobs, opts)
  await flushOutbox(redis, keys, ch, opts)
  return group
}

/** Stores every batch of the outbox now. */
export async function flushOutbox(
  redis: Redis,
  keys: Keys,
  ch: ClickHouse,
  opts: Partial<StoreOptions> = {},
): Promise<void> {
  const store = { maxRows: 100_000, ...opts }
  for (;;) {
    if ((await storeOutbox(redis, keys, ch, store)) === null) return
  }
}
