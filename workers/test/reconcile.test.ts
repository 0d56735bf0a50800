import { getOrCreateCode } from '@referral/api'
import type { ClickHouse } from '@referral/clickhouse'
import { makeKeys, type QueuedEvent } from '@referral/core'
import type { Redis } from 'ioredis'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { openStores, type Stores } from '../../test/support/stores.ts'
import { processJobs } from '../src/process.ts'
import { readCounters, reconcile } from '../src/reconcile.ts'

describe('reconcile', () => {
  const keys = makeKeys('rc')
  let stores: Stores
  let redis: Redis
  let ch: ClickHouse

  beforeAll(async () => {
    stores = await openStores('reconcile_test')
    ;({ redis, ch } = stores)
    const code = await getOrCreateCode(redis, keys, 'r1')
    const ts = Date.now()
    const events: QueuedEvent[] = [
      { type: 'click', id: 'c1', code, ts, received_at: ts },
      { type: 'click', id: 'c2', code, ts, received_at: ts },
      { type: 'signup', id: 's1', user_id: 'u1', ref: code, ts, received_at: ts },
      { type: 'purchase', id: 'p1', user_id: 'u1', amount_cents: 3000, currency: 'usd', ts, received_at: ts },
    ]
    const opts = { attributionWindowMs: 86_400_000, dedupWindowSeconds: 86_400 }
    await processJobs(redis, keys, ch, [{ id: 'j1', events }], opts)
  })
  afterAll(async () => {
    await stores?.close()
  })

  it('finds no drift when Redis agrees with ClickHouse', async () => {
    const report = await reconcile(ch, redis, keys, { fix: false })
    expect(report.drift).toEqual([])
    expect(report.referrers).toBe(1)
  })

  it('reports drifted counters and fixes them from ClickHouse', async () => {
    await redis.hincrby(keys.stats('r1'), 'clicks', 5)
    await redis.hset(keys.stats('ghost'), 'signups', 3)
    const report = await reconcile(ch, redis, keys, { fix: false })
    expect(report.drift).toEqual(
      expect.arrayContaining([
        { userId: 'r1', field: 'clicks', redis: 7, clickhouse: 2 },
        { userId: 'ghost', field: 'signups', redis: 3, clickhouse: 0 },
      ]),
    )
    await reconcile(ch, redis, keys, { fix: true })
    expect(await readCounters(redis, keys.stats('r1'))).toEqual({
      clicks: 2,
      signups: 1,
      conversions: 1,
      earnings_cents: 150,
    })
    expect((await reconcile(ch, redis, keys, { fix: false })).drift).toEqual([])
  })
})
