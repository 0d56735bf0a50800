import { getOrCreateCode } from '@referral/api'
import { type ClickHouse, migrate, openClickHouse, queryRows } from '@referral/clickhouse'
import { makeKeys, makeRedis, type QueuedEvent, whenReady } from '@referral/core'
import type { Redis } from 'ioredis'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { startTestRedis, tempDir } from '../../test/support/env.ts'
import { applyJob } from '../src/apply.ts'
import { readCounters } from '../src/reconcile.ts'
import { storeResolution } from '../src/store.ts'

/**
 * A worker can die at any point of a job; BullMQ then runs the job again. Each crash point
 * is reproduced by running the job's steps up to it, then the whole job again.
 */
describe('a job retried after the worker died', () => {
  const dir = tempDir()
  const keys = makeKeys('t')
  const opts = {
    attributionWindowMs: 30 * 86_400_000,
    dedupWindowSeconds: 8 * 86_400,
    resolutionTtlSeconds: 3600,
  }
  let server: Awaited<ReturnType<typeof startTestRedis>>
  let redis: Redis
  let ch: ClickHouse
  let code: string

  beforeAll(async () => {
    server = await startTestRedis(`${dir.path}/redis`)
    redis = await whenReady(makeRedis(server.url, 'transaction'))
    ch = await openClickHouse({
      dataDir: dir.path,
      clickhouse: {
        url: process.env.CLICKHOUSE_URL,
        database: 'retry_test',
        user: undefined,
        password: undefined,
      },
    })
    await migrate(ch)
    code = await getOrCreateCode(redis, keys, 'ref')
  })
  afterAll(async () => {
    redis?.disconnect()
    await ch?.close()
    await server?.stop()
    dir.remove()
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
  /** the job as the worker runs it */
  const runJob = async (jobId: string, evs: QueuedEvent[]) => {
    const res = await applyJob(redis, keys, jobId, evs, opts)
    await storeResolution(ch, jobId, res)
    await redis.del(keys.jobResolution(jobId))
    return res
  }
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
    await applyJob(redis, keys, 'job-a', evs, opts) // ...and the worker dies here
    const retried = await runJob('job-a', evs)
    expect(retried.rows).toHaveLength(22)
    expect(await rows('a-')).toEqual({ events: 22, ledger: 1 })
    const after = await readCounters(redis, keys.stats('ref'))
    expect(after.clicks - before.clicks).toBe(20)
    expect(after.earnings_cents - before.earnings_cents).toBe(100)
  })

  it('died after the insert, before the job was acknowledged: no duplicate rows', async () => {
    const before = await readCounters(redis, keys.stats('ref'))
    const evs = events('b-')
    const res = await applyJob(redis, keys, 'job-b', evs, opts)
    await storeResolution(ch, 'job-b', res) // ...and the worker dies here
    await runJob('job-b', evs)
    await runJob('job-b', evs) // and once more after it completed, its record gone
    expect(await rows('b-')).toEqual({ events: 22, ledger: 1 })
    const after = await readCounters(redis, keys.stats('ref'))
    expect(after.clicks - before.clicks).toBe(20)
    expect(after.conversions - before.conversions).toBe(1)
  })

  it('the same events in another job later: nothing is added', async () => {
    const before = await readCounters(redis, keys.stats('ref'))
    const res = await runJob('job-c', events('a-'))
    expect(res.rows).toHaveLength(0)
    expect(await rows('a-')).toEqual({ events: 22, ledger: 1 })
    expect(await readCounters(redis, keys.stats('ref'))).toEqual(before)
  })

  it('two runs of one job at once (a stalled job picked up twice) apply it once', async () => {
    const before = await readCounters(redis, keys.stats('ref'))
    const evs = events('d-')
    const other = await whenReady(makeRedis(server.url, 'transaction'))
    try {
      const [r1, r2] = await Promise.all([
        applyJob(redis, keys, 'job-d', evs, opts),
        applyJob(other, keys, 'job-d', evs, opts),
      ])
      expect(r1).toEqual(r2)
      await storeResolution(ch, 'job-d', r1)
      await storeResolution(ch, 'job-d', r2)
    } finally {
      other.disconnect()
    }
    expect(await rows('d-')).toEqual({ events: 22, ledger: 1 })
    const after = await readCounters(redis, keys.stats('ref'))
    expect(after.clicks - before.clicks).toBe(20)
  })
})
