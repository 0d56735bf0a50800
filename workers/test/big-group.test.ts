import { getOrCreateCode } from '@referral/api'
import { makeKeys, type QueuedEvent } from '@referral/core'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { openStores, type Stores } from '../../test/support/stores.ts'
import { applyJobs } from '../src/apply.ts'
import { readCounters } from '../src/reconcile.ts'

/**
 * The worker groups every waiting job (up to 20,000 events) into one commit. A backlog, say
 * after the workers were stopped for a minute, makes the largest groups: found by the soak,
 * a group that large once failed every time (its Lua call took too many arguments for a
 * JavaScript call), so the backlog never drained.
 */
describe('a group of 20,000 events', () => {
  const keys = makeKeys('big')
  let stores: Stores
  beforeAll(async () => {
    stores = await openStores('big_group_test')
  })
  afterAll(async () => {
    await stores?.close()
  })

  it('commits in one script', async () => {
    const code = await getOrCreateCode(stores.redis, keys, 'big-ref')
    const ts = Date.now()
    const jobs = Array.from({ length: 20 }, (_, j) => ({
      id: `job-${j}`,
      events: Array.from(
        { length: 1000 },
        (_, i): QueuedEvent => ({
          type: 'click',
          id: `c-${j}-${i}`,
          code,
          visitor_id: `v-${j}-${i}`,
          ip: `10.${j}.${i >> 8}.${i & 255}`,
          ts,
          received_at: ts,
        }),
      ),
    }))
    const group = await applyJobs(stores.redis, keys, jobs, {
      attributionWindowMs: 30 * 86_400_000,
      dedupWindowSeconds: 3600,
    })
    expect(group?.resolution.rows).toHaveLength(20_000)
    expect(await stores.redis.get(keys.outboxRows())).toBe('20000')
    expect((await readCounters(stores.redis, keys.stats('big-ref'))).clicks).toBe(20_000)
  })
})
