import { getOrCreateCode } from '@referral/api'
import { type ClickHouse, queryRows } from '@referral/clickhouse'
import { makeKeys, makeRedis, type QueuedEvent, whenReady } from '@referral/core'
import type { RedisServer } from '@referral/server'
import type { Redis } from 'ioredis'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { openStores, type Stores } from '../../test/support/stores.ts'
import { applyJobs, finishJobs } from '../src/apply.ts'
import { processJobs } from '../src/process.ts'
import { readCounters } from '../src/reconcile.ts'
import { storeGroup } from '../src/store.ts'

/**
 * A worker can die at any point of a job; BullMQ then runs the job again. Each crash point
 * is reproduced by running the job's steps up to it, then the whole job again.
 */
describe('a job retried after the worker died', () => {
  const keys = makeKeys('t')
  const opts = {
    attributionWindowMs: 30 * 86_400_000,
    dedupWindowSeconds: 8 * 86_400,
    resolutionTtlSeconds: 3600,
  }
  let stores: Stores
  let server: RedisServer
  let redis: Redis
  let ch: ClickHouse
  let code: string

  beforeAll(async () => {
    stores = await openStores('retry_test')
    ;({ server, redis, ch } = stores)
    code = await getOrCreateCode(redis, keys, 'ref')
  })
  afterAll(async () => {
    await stores?.close()
  })

  const events = (prefix: string): QueuedEvent[] => {
    const ts = Date.now()
    return [
      ...Array.from(
        { length: 20 },
        (_, i): QueuedEvent => ({ type: 'click', id: `${prefix}c${i}`, code, ts, received_at: ts }),
      ),
      { type: 'signup', id: `${prefix}s`, user_id: `${prefix}buyer`, ref: code, ts, received_at: ts },
      {
        type: 'purchase',
        id: `${prefix}p`,
        user_id: `${prefix}buyer`,
        amount_cents: 2000,
        currency: 'usd',
        ts,
        received_at: ts,
      },
    ]
  }
  /** the jobs as the worker runs them; returns the rows it inserted */
  const runJobs = async (...jobs: Array<{ id: string; events: QueuedEvent[] }>) =>
    (await processJobs(redis, keys, ch, jobs, opts)).flatMap((g) => g.resolution.rows)
  const rows = async (prefix: string) => {
    const [r] = await queryRows<{ events: string; ledger: string }>(
      ch,
      `SELECT (SELECT count() FROM events WHERE startsWith(id, {p:String})) AS events,
              (SELECT count() FROM ledger WHERE startsWith(event_id, {p:String})) AS ledger`,
      { p: prefix },
    )
    return { events: Number(r?.events), ledger: Number(r?.ledger) }
  }

  it('died after applying to Redis, before the insert: the retry inserts the same rows once', async () => {
    const before = await readCounters(redis, keys.stats('ref'))
    const evs = events('a-')
    await applyJobs(redis, keys, [{ id: 'job-a', events: evs }], opts) // ...and the worker dies here
    const retried = await runJobs({ id: 'job-a', events: evs })
    expect(retried).toHaveLength(22)
    expect(await rows('a-')).toEqual({ events: 22, ledger: 2 })
    const after = await readCounters(redis, keys.stats('ref'))
    expect(after.clicks - before.clicks).toBe(20)
    expect(after.earnings_cents - before.earnings_cents).toBe(100)
  })

  it('died after the insert, before the job was acknowledged: no duplicate rows', async () => {
    const before = await readCounters(redis, keys.stats('ref'))
    const evs = events('b-')
    for (const g of await applyJobs(redis, keys, [{ id: 'job-b', events: evs }], opts))
      await storeGroup(ch, g)
    // ...and the worker dies here
    await runJobs({ id: 'job-b', events: evs })
    await runJobs({ id: 'job-b', events: evs }) // and once more after it completed, its record gone
    expect(await rows('b-')).toEqual({ events: 22, ledger: 2 })
    const after = await readCounters(redis, keys.stats('ref'))
    expect(after.clicks - before.clicks).toBe(20)
    expect(after.conversions - before.conversions).toBe(1)
  })

  it('jobs applied as a group and retried one by one: each row once', async () => {
    const before = await readCounters(redis, keys.stats('ref'))
    const [e1, e2] = [events('g1-'), events('g2-')]
    await applyJobs(
      redis,
      keys,
      [
        { id: 'job-g1', events: e1 },
        { id: 'job-g2', events: e2 },
      ],
      opts,
    ) // dies
    await runJobs({ id: 'job-g2', events: e2 }) // retried alone: stores the whole group
    await runJobs({ id: 'job-g1', events: e1 }) // its group is stored already
    await runJobs({ id: 'job-g3', events: e1 }, { id: 'job-g4', events: e2 }) // sent again later
    expect(await rows('g1-')).toEqual({ events: 22, ledger: 2 })
    expect(await rows('g2-')).toEqual({ events: 22, ledger: 2 })
    const after = await readCounters(redis, keys.stats('ref'))
    expect(after.clicks - before.clicks).toBe(40)
    expect(after.earnings_cents - before.earnings_cents).toBe(200)
  })

  it('the same events in another job later: nothing is added', async () => {
    const before = await readCounters(redis, keys.stats('ref'))
    const res = await runJobs({ id: 'job-c', events: events('a-') })
    expect(res).toHaveLength(0)
    expect(await rows('a-')).toEqual({ events: 22, ledger: 2 })
    expect(await readCounters(redis, keys.stats('ref'))).toEqual(before)
  })

  it('two runs of one job at once (a stalled job picked up twice) apply it once', async () => {
    const before = await readCounters(redis, keys.stats('ref'))
    const evs = events('d-')
    const other = await whenReady(makeRedis(server.url, 'transaction'))
    try {
      const [r1, r2] = await Promise.all([
        applyJobs(redis, keys, [{ id: 'job-d', events: evs }], opts),
        applyJobs(other, keys, [{ id: 'job-d', events: evs }], opts),
      ])
      expect(r1).toEqual(r2)
      for (const g of [...r1, ...r2]) await storeGroup(ch, g)
      await finishJobs(redis, keys, ['job-d'], r1)
    } finally {
      other.disconnect()
    }
    expect(await rows('d-')).toEqual({ events: 22, ledger: 2 })
    const after = await readCounters(redis, keys.stats('ref'))
    expect(after.clicks - before.clicks).toBe(20)
  })

  it('keeps the rollups equal to the events after every retry above', async () => {
    const [r] = await queryRows<{ rolled: string; raw: string; commission: string; raw_commission: string }>(
      ch,
      `SELECT (SELECT sum(clicks) FROM rollup_hourly) AS rolled,
              (SELECT countIf(type = 'click' AND counted = 1) FROM events) AS raw,
              (SELECT sum(commission_cents) FROM rollup_referrer_daily) AS commission,
              (SELECT sumIf(commission_cents, type IN ('purchase', 'refund')) FROM events) AS raw_commission`,
    )
    expect(Number(r?.raw)).toBeGreaterThan(0)
    expect(Number(r?.rolled)).toBe(Number(r?.raw))
    expect(Number(r?.commission)).toBe(Number(r?.raw_commission))
    const [e] = await queryRows<{ rolled: string; raw: string }>(
      ch,
      `SELECT (SELECT sum(earnings_cents) FROM rollup_earnings_hourly) AS rolled,
              (SELECT sumIf(amount_cents, kind IN ('commission', 'commission_reversal')) FROM ledger) AS raw`,
    )
    expect(Number(e?.raw)).toBeGreaterThan(0)
    expect(Number(e?.rolled)).toBe(Number(e?.raw))
  })
})
