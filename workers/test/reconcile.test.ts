import { getOrCreateCode } from '@referral/api'
import { type ClickHouse, migrate, openClickHouse } from '@referral/clickhouse'
import { makeKeys, makeRedis, type QueuedEvent, whenReady } from '@referral/core'
import type { Redis } from 'ioredis'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { startTestRedis, tempDir } from '../../test/support/env.ts'
import { processJobs } from '../src/process.ts'
import { readCounters, reconcile } from '../src/reconcile.ts'

describe('reconcile', () => {
  const dir = tempDir()
  const keys = makeKeys('rc')
  let server: Awaited<ReturnType<typeof startTestRedis>>
  let redis: Redis
  let ch: ClickHouse

  beforeAll(async () => {
    server = await startTestRedis(`${dir.path}/redis`)
    redis = await whenReady(makeRedis(server.url, 'transaction'))
    ch = await openClickHouse({
      dataDir: dir.path,
      clickhouse: {
        url: process.env.CLICKHOUSE_URL,
        database: 'reconcile_test',
        user: undefined,
        password: undefined,
      },
    })
    await migrate(ch)
    const code = await getOrCreateCode(redis, keys, 'r1')
    const ts = Date.now()
    const events: QueuedEvent[] = [
      { type: 'click', id: 'c1', code, ts, received_at: ts },
      { type: 'click', id: 'c2', code, ts, received_at: ts },
      { type: 'signup', id: 's1', user_id: 'u1', ref: code, ts, received_at: ts },
      { type: 'purchase', id: 'p1', user_id: 'u1', amount_cents: 3000, currency: 'usd', ts, received_at: ts },
    ]
    const opts = { attributionWindowMs: 86_400_000, dedupWindowSeconds: 86_400, resolutionTtlSeconds: 60 }
    await processJobs(redis, keys, ch, [{ id: 'j1', events }], opts)
  })
  afterAll(async () => {
    redis?.disconnect()
    await ch?.close()
    await server?.stop()
    dir.remove()
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
