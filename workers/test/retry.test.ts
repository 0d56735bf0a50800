import { getOrCreateCode } from '@referral/api'
import { type ClickHouse, queryRows } from '@referral/clickhouse'
import { makeKeys, makeRedis, type QueuedEvent, whenReady } from '@referral/core'
import type { RedisServer } from '@referral/server'
import type { Redis } from 'ioredis'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { openStores, type Stores } from '../../test/support/stores.ts'
import { applyJobs } from '../src/apply.ts'
import { outboxStatus, storeOutbox } from '../src/outbox.ts'
import { flushOutbox, processJobs } from '../src/process.ts'
import { readCounters } from '../src/reconcile.ts'

/**
 * A worker can die at any point: after applying a group to Redis, with the group's rows in
 * the outbox, or while storing a batch of the outbox into ClickHouse. BullMQ then runs the
 * job again, and the next storer takes the batch again. Each crash point is reproduced by
 * running the steps up to it, then everything again.
 */
describe('a job or a batch retried after the worker died', () => {
  const keys = makeKeys('t')
  const opts = {
    attributionWindowMs: 30 * 86_400_000,
    dedupWindowSeconds: 8 * 86_400,
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
  /** the jobs as the worker runs them, then the outbox stored; the rows they applied */
  const runJobs = async (...jobs: Array<{ id: string; events: QueuedEvent[] }>) =>
    (await processJobs(redis, keys, ch, jobs, opts))?.resolution.rows ?? []
  const rows = async (prefix: string) => {
    const [r] = await queryRows<{ events: string; ledger: string }>(
      ch,
      `SELECT (SELECT count() FROM events WHERE startsWith(id, {p:String})) AS events,
              (SELECT count() FROM ledger WHERE startsWith(event_id, {p:String})) AS ledger`,
      { p: prefix },
    )
    return { events: Number(r?.events), ledger: Number(r?.ledger) }
  }
  const sleep = (ms: number) => new Promise<void>((r) => setTimeout(r, ms))
  /** a storer that inserts its batch and dies before the batch leaves the outbox */
  const storeAndDie = async () => {
    const died = new Error('the storer died after inserting')
    await expect(
      storeOutbox(redis, keys, ch, {
        maxRows: 1000,
        afterInsert: async () => {
          throw died
        },
      }),
    ).rejects.toBe(died)
  }

  it('died after applying to Redis, before the job was acknowledged: the retry changes nothing, the rows land once', async () => {
    const before = await readCounters(redis, keys.stats('ref'))
    const evs = events('a-')
    await applyJobs(redis, keys, [{ id: 'job-a', events: evs }], opts) // ...and the worker dies here
    expect((await outboxStatus(redis, keys)).rows).toBe(24) // 22 events, 2 ledger entries
    expect(await runJobs({ id: 'job-a', events: evs })).toHaveLength(0)
    expect(await rows('a-')).toEqual({ events: 22, ledger: 2 })
    expect(await outboxStatus(redis, keys)).toEqual({ groups: 0, rows: 0, oldestAt: null })
    const after = await readCounters(redis, keys.stats('ref'))
    expect(after.clicks - before.clicks).toBe(20)
    expect(after.earnings_cents - before.earnings_cents).toBe(100)
  })

  it('died after the insert, before the batch left the outbox: stored again with its token, no duplicate rows', async () => {
    const evs = events('b-')
    await applyJobs(redis, keys, [{ id: 'job-b', events: evs }], opts)
    await storeAndDie()
    expect(await rows('b-')).toEqual({ events: 22, ledger: 2 })
    expect((await outboxStatus(redis, keys)).rows).toBe(24)
    await flushOutbox(redis, keys, ch)
    expect(await rows('b-')).toEqual({ events: 22, ledger: 2 })
    expect((await outboxStatus(redis, keys)).rows).toBe(0)
  })

  it('a batch of groups with other columns (clicks only, and a purchase) inserts each once, also when redone', async () => {
    const ts = Date.now()
    const clicksOnly: QueuedEvent[] = Array.from({ length: 5 }, (_, i) => ({
      type: 'click',
      id: `mix-c${i}`,
      code,
      ts,
      received_at: ts,
    }))
    await applyJobs(redis, keys, [{ id: 'job-mix1', events: clicksOnly }], opts)
    await applyJobs(redis, keys, [{ id: 'job-mix2', events: events('mix2-') }], opts)
    await storeAndDie()
    await flushOutbox(redis, keys, ch)
    expect(await rows('mix-c')).toEqual({ events: 5, ledger: 0 })
    expect(await rows('mix2-')).toEqual({ events: 22, ledger: 2 })
    const [p] = await queryRows<{ amount_cents: string; referrer_id: string }>(
      ch,
      "SELECT amount_cents, referrer_id FROM events WHERE id = 'mix2-p'",
    )
    expect(Number(p?.amount_cents)).toBe(2000)
    expect(p?.referrer_id).toBe('ref')
  })

  it('ClickHouse refused the insert of a recorded batch: the same batch goes once it is back, groups applied since after it', async () => {
    const [e1, e2] = [events('ch1-'), events('ch2-')]
    await applyJobs(redis, keys, [{ id: 'job-ch1', events: e1 }], opts)
    await ch.client.command({ query: 'DETACH TABLE events' })
    try {
      await expect(storeOutbox(redis, keys, ch, { maxRows: 1000 })).rejects.toThrow()
      await applyJobs(redis, keys, [{ id: 'job-ch2', events: e2 }], opts)
    } finally {
      await ch.client.command({ query: 'ATTACH TABLE events' })
    }
    expect(await redis.get(keys.storeBatch())).not.toBeNull()
    const first = await storeOutbox(redis, keys, ch, { maxRows: 1000 })
    expect(first).toMatchObject({ groups: 1, rows: 24 })
    expect(await rows('ch1-')).toEqual({ events: 22, ledger: 2 })
    expect(await rows('ch2-')).toEqual({ events: 0, ledger: 0 })
    await flushOutbox(redis, keys, ch)
    expect(await rows('ch2-')).toEqual({ events: 22, ledger: 2 })
  })

  it('jobs applied as a group and retried one by one, or sent again in new jobs: each row once', async () => {
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
    expect(await runJobs({ id: 'job-g2', events: e2 })).toHaveLength(0)
    expect(await runJobs({ id: 'job-g1', events: e1 })).toHaveLength(0)
    expect(await runJobs({ id: 'job-g3', events: e1 }, { id: 'job-g4', events: e2 })).toHaveLength(0)
    expect(await rows('g1-')).toEqual({ events: 22, ledger: 2 })
    expect(await rows('g2-')).toEqual({ events: 22, ledger: 2 })
    const after = await readCounters(redis, keys.stats('ref'))
    expect(after.clicks - before.clicks).toBe(40)
    expect(after.earnings_cents - before.earnings_cents).toBe(200)
  })

  it('two runs of one job at once (a stalled job picked up twice) apply it once', async () => {
    const before = await readCounters(redis, keys.stats('ref'))
    const evs = events('d-')
    const other = await whenReady(makeRedis(server.url, 'transaction'))
    try {
      const both = await Promise.all([
        applyJobs(redis, keys, [{ id: 'job-d', events: evs }], opts),
        applyJobs(other, keys, [{ id: 'job-d', events: evs }], opts),
      ])
      expect(both.filter((g) => g !== null)).toHaveLength(1)
    } finally {
      other.disconnect()
    }
    await flushOutbox(redis, keys, ch)
    expect(await rows('d-')).toEqual({ events: 22, ledger: 2 })
    const after = await readCounters(redis, keys.stats('ref'))
    expect(after.clicks - before.clicks).toBe(20)
  })

  it('a storer whose lock ran out cannot finish the batch that another stored meanwhile', async () => {
    await applyJobs(redis, keys, [{ id: 'job-s', events: events('s-') }], opts)
    const other = await whenReady(makeRedis(server.url, 'transaction'))
    try {
      const slow = storeOutbox(redis, keys, ch, {
        maxRows: 1000,
        lockTtlMs: 100,
        afterInsert: () => sleep(400),
      })
      await sleep(200)
      const taken = await storeOutbox(other, keys, ch, { maxRows: 1000 })
      expect(taken).toMatchObject({ groups: 1, rows: 24 })
      await expect(slow).rejects.toThrow('store lock was lost')
    } finally {
      other.disconnect()
    }
    expect(await rows('s-')).toEqual({ events: 22, ledger: 2 })
    expect((await outboxStatus(redis, keys)).rows).toBe(0)
  })

  it('two storers at once: one stores, the other finds it at work', async () => {
    await applyJobs(redis, keys, [{ id: 'job-t', events: events('t-') }], opts)
    const other = await whenReady(makeRedis(server.url, 'transaction'))
    try {
      const results = await Promise.all([
        storeOutbox(redis, keys, ch, { maxRows: 1000 }),
        storeOutbox(other, keys, ch, { maxRows: 1000 }),
      ])
      expect(results.filter((r) => r !== null)).toHaveLength(1)
    } finally {
      other.disconnect()
    }
    expect(await rows('t-')).toEqual({ events: 22, ledger: 2 })
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
