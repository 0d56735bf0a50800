import { spawnSync } from 'node:child_process'
import { join } from 'node:path'
import { Writable } from 'node:stream'
import { backfillRollups, queryRows, rollupColumns, rollupsOf } from '@referral/clickhouse'
import { eventInput, INGEST_JOB_OPTIONS, makeKeys, makeRedis, settleEvent, whenReady } from '@referral/core'
import { runOps } from '@referral/server'
import { Queue, UnrecoverableError, Worker } from 'bullmq'
import type { Redis } from 'ioredis'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { BROWSER_UA, codeFor, eventually, type Http, http } from './support/client.ts'
import { INGEST_KEY, JWT_SECRET, startTestRedis, tempDir } from './support/env.ts'
import { count, drained, startTestService } from './support/service.ts'

const ROOT = join(import.meta.dirname, '..')
const DAY_MS = 86_400_000
const today = Math.floor(Date.now() / DAY_MS) * DAY_MS
const [D1, D2] = [today - 3 * DAY_MS, today - 2 * DAY_MS]
const iso = (ms: number) => new Date(ms).toISOString().slice(0, 10)

async function ops(args: string[], env: Record<string, string>): Promise<{ code: number; out: string }> {
  let out = ''
  const sink = new Writable({
    write(chunk: Buffer, _enc, done) {
      out += chunk.toString()
      done()
    },
  })
  const code = await runOps(args, env, sink)
  return { code, out }
}

/**
 * Every rollup as (key..., value...) rows merged per key (summed, or min / max / a set), in
 * key order: what a reader sees.
 */
async function rollupState(
  svc: Awaited<ReturnType<typeof startTestService>>,
): Promise<Record<string, unknown[]>> {
  const state: Record<string, unknown[]> = {}
  for (const r of rollupsOf()) {
    const values = await rollupColumns(svc.ch, r)
    const keys = r.keys.map((k) => `toString(${k}) AS k_${k}`).join(', ')
    const merged = values.map((v) => `toString(${v.merged}) AS v_${v.name}`).join(', ')
    // a summed key whose counters all came to 0 is no row to a reader
    const having = r.merge === 'sum' ? `HAVING ${values.map((v) => `${v.merged} != 0`).join(' OR ')}` : ''
    state[r.table] = await queryRows(
      svc.ch,
      `SELECT ${keys}, ${merged} FROM ${r.table} GROUP BY ${r.keys.join(', ')} ${having} ORDER BY ${r.keys.join(', ')}`,
    )
  }
  return state
}

describe('ops: replay dead letters, backfill rollups', () => {
  const dir = tempDir()
  let redisServer: Awaited<ReturnType<typeof startTestRedis>>
  let svc: Awaited<ReturnType<typeof startTestService>>
  let api: Http
  let redis: Redis
  let env: Record<string, string>
  const keys = makeKeys('ra')

  beforeAll(async () => {
    redisServer = await startTestRedis(`${dir.path}/redis`)
    redis = await whenReady(makeRedis(redisServer.url, 'worker'))
    env = {
      REDIS_URL: redisServer.url,
      DATA_DIR: `${dir.path}/data`,
      INGEST_API_KEY: INGEST_KEY,
      AUTH_JWT_SECRET: JWT_SECRET,
    }
    // before the service runs: a job that failed for good (a bug since fixed, say)
    const queue = new Queue('ingest', { connection: redis, prefix: keys.bullPrefix() })
    const signup = (id: string) =>
      settleEvent(eventInput.parse({ type: 'signup', id, user_id: `${id}-user` }), Date.now(), () => id)
    await queue.add(
      'events',
      { events: [signup('dl-1'), signup('dl-2')] },
      { ...INGEST_JOB_OPTIONS, jobId: 'dead-1' },
    )
    const poison = new Worker(
      'ingest',
      async () => {
        throw new UnrecoverableError('the bug of the day')
      },
      { connection: redis, prefix: keys.bullPrefix() },
    )
    await eventually(async () => expect(await queue.getFailedCount()).toBe(1))
    await poison.close()
    await queue.close()
    svc = await startTestService(`${dir.path}/data`, redisServer.url)
    api = http(svc.url)
  })
  const deadLetterRows = () => count(svc.ch, "SELECT count() AS n FROM events WHERE id IN ('dl-1', 'dl-2')")
  afterAll(async () => {
    redis?.disconnect()
    await svc?.service.stop()
    await redisServer?.stop()
    dir.remove()
  })

  it('replays the failed jobs of a queue once the cause is gone, and each event counts once', async () => {
    const queue = new Queue('ingest', { connection: redis, prefix: keys.bullPrefix() })
    expect(await queue.getFailedCount()).toBe(1)
    expect(await deadLetterRows()).toBe(0)

    // only the queues asked for
    const none = await ops(['replay-dead-letters', '--queue', 'credits'], env)
    expect(none).toEqual({ code: 0, out: 'credits\t0 replayed\t\n' })
    expect(await queue.getFailedCount()).toBe(1)

    const replay = await ops(['replay-dead-letters'], env)
    expect(replay.code).toBe(0)
    expect(replay.out).toContain('ingest\t1 replayed\tdead-1\n')
    await eventually(async () => expect(await deadLetterRows()).toBe(2))
    await drained(svc.service)
    expect(await queue.getFailedCount()).toBe(0)

    // again: nothing left to replay, nothing stored twice
    expect((await ops(['replay-dead-letters'], env)).out).toContain('ingest\t0 replayed')
    await drained(svc.service)
    expect(await deadLetterRows()).toBe(2)
    await expect(ops(['replay-dead-letters', '--queue', 'nope'], env)).rejects.toThrow(/unknown queue nope/)
    await expect(ops(['replay-dead-letters', '--limit', 'abc'], env)).rejects.toThrow(/--limit must be/)
    await queue.close()
  })

  it('rebuilds the rollups of a range from raw events, the same however often it runs', async () => {
    const code = await codeFor(api, 'eve')
    const at = (d: number, h: number) => new Date(d + h * 3_600_000).toISOString()
    const events = [D1, D2].flatMap((d, i) => [
      { type: 'click', id: `bf-c${i}`, code, visitor_id: `bf-v${i}`, user_agent: BROWSER_UA, ts: at(d, 9) },
      { type: 'click', id: `bf-c${i}b`, code, visitor_id: `bf-w${i}`, user_agent: BROWSER_UA, ts: at(d, 10) },
      { type: 'signup', id: `bf-s${i}`, user_id: `bf-u${i}`, visitor_id: `bf-v${i}`, ts: at(d, 11) },
      { type: 'purchase', id: `bf-p${i}`, user_id: `bf-u${i}`, amount_cents: 1000 * (i + 1), ts: at(d, 12) },
    ])
    expect((await api.post('/v1/events', { events })).status).toBe(202)
    await drained(svc.service)
    const truth = await rollupState(svc)
    expect(truth.rollup_referrer_hourly?.length).toBeGreaterThan(4)
    // per hour and visitor: bf-v's click at 9h and signup at 11h, bf-w's click at 10h, each day
    expect(truth.funnel_hours?.length).toBe(6)

    // damage: one table double-counts an hour of D1, two lost everything
    await svc.ch.client.command({
      query: `INSERT INTO rollup_hourly (hour, clicks, signups, revenue_cents) VALUES ('${at(D1, 9).slice(0, 19).replace('T', ' ')}', 5, 1, 700)`,
    })
    await svc.ch.client.command({ query: 'TRUNCATE TABLE rollup_referrer_hourly' })
    await svc.ch.client.command({ query: 'TRUNCATE TABLE funnel_hours' })
    expect(await rollupState(svc)).not.toEqual(truth)

    const first = await backfillRollups(svc.ch, { from: D1, to: D1 + DAY_MS })
    expect(first.find((r) => r.table === 'rollup_hourly')?.corrected).toBe(1)
    expect(first.find((r) => r.table === 'rollup_referrer_hourly')?.corrected).toBe(4) // D1's 9h to 12h
    expect(first.find((r) => r.table === 'funnel_hours')?.corrected).toBe(3)
    const afterFirst = await rollupState(svc)
    expect(afterFirst.rollup_hourly).toEqual(truth.rollup_hourly)
    // D1 rebuilt, D2 outside the range left as it was (lost)
    const d1 = (rows: unknown[] | undefined) =>
      (rows ?? []).filter((r) => String((r as { k_hour: string }).k_hour).startsWith(iso(D1)))
    expect(afterFirst.rollup_referrer_hourly).toEqual(d1(truth.rollup_referrer_hourly))
    expect(afterFirst.funnel_hours).toEqual(d1(truth.funnel_hours))

    // again: nothing to correct, the same rollups
    const second = await backfillRollups(svc.ch, { from: D1, to: D1 + DAY_MS })
    expect(second.every((r) => r.corrected === 0)).toBe(true)
    expect(await rollupState(svc)).toEqual(afterFirst)

    // the whole range through the CLI's checks: whole days only
    await expect(backfillRollups(svc.ch, { from: D1 + 1, to: D2 })).rejects.toThrow(/whole UTC days/)
    await backfillRollups(svc.ch, { from: D1, to: today + DAY_MS })
    expect(await rollupState(svc)).toEqual(truth)
  })

  it('runs as npm run ops, against the data of a stopped service', async () => {
    await svc.service.stop()
    const run = (args: string[]) =>
      spawnSync(process.execPath, ['--import', 'tsx', 'server/src/ops-cli.ts', ...args], {
        cwd: ROOT,
        env: { PATH: process.env.PATH ?? '', HOME: process.env.HOME ?? '', ...env },
        encoding: 'utf8',
        timeout: 60_000,
      })
    const usage = run(['frobnicate'])
    expect(usage.status).toBe(64)
    expect(usage.stdout).toContain('replay-dead-letters')
    const bad = run(['backfill-rollups', '--from', 'yesterday'])
    expect(bad.status).toBe(1)
    expect(bad.stderr).toContain('--from YYYY-MM-DD is required')
    const ok = run(['backfill-rollups', '--from', iso(D1), '--to', iso(today + DAY_MS)])
    expect(ok.stderr).toBe('')
    expect(ok.status).toBe(0)
    expect(ok.stdout).toContain('rollup_hourly\t0 keys corrected')
    // the counters agree with ClickHouse after all of the above
    const rec = run(['reconcile'])
    expect(rec.stderr).toBe('')
    expect(rec.stdout).toMatch(/\d+ referrers checked, 0 counters drifted/)
    expect(rec.status).toBe(0)
  })
})
