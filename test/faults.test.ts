import { INGEST_JOB_OPTIONS, makeRedis, whenReady } from '@referral/core'
import { startRedisServer } from '@referral/server'
import { outboxStatus } from '@referral/workers'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { codeFor, eventually, type Http, http, statsFor } from './support/client.ts'
import { startTestRedis, tempDir } from './support/env.ts'
import { count, drained, startTestService } from './support/service.ts'

describe('when a dependency fails', () => {
  const dir = tempDir()
  let redis: Awaited<ReturnType<typeof startTestRedis>>
  let svc: Awaited<ReturnType<typeof startTestService>>
  let api: Http
  let code: string

  beforeAll(async () => {
    redis = await startTestRedis(`${dir.path}/redis`)
    // small batches: the outbox holds 5 of them (50 rows) before the applier waits for ClickHouse
    svc = await startTestService(`${dir.path}/data`, redis.url, { CLICKHOUSE_BATCH_ROWS: '10' })
    api = http(svc.url)
    code = await codeFor(api, 'ref')
  })
  afterAll(async () => {
    await svc?.service.stop()
    await redis?.stop()
    dir.remove()
  })

  it('ClickHouse unavailable: events are counted at once, their rows wait in the outbox, then in the queue, and land when it is back', async () => {
    await svc.ch.client.command({ query: 'DETACH TABLE events' })
    const q = svc.service.queue
    if (q === null) throw new Error('no queue')
    const send = async (prefix: string) => {
      const res = await api.post('/v1/events', {
        events: Array.from({ length: 30 }, (_, i) => ({ type: 'click', id: `${prefix}-${i}`, code })),
      })
      expect(res.status).toBe(202)
    }
    const own = await whenReady(makeRedis(redis.url, 'command', 'test'))
    const waitingRows = async () => (await outboxStatus(own, svc.service.keys)).rows
    await send('ch1')
    // the counters do not wait for ClickHouse: the rows do, in Redis
    await eventually(async () => expect((await statsFor(api, 'ref')).total_clicks).toBe(30))
    expect(await waitingRows()).toBe(30)
    await send('ch2')
    await eventually(async () => expect((await statsFor(api, 'ref')).total_clicks).toBe(60))
    // 60 rows wait, past the outbox's 5 batches of CLICKHOUSE_BATCH_ROWS=10: the next job waits in the queue
    await send('ch3')
    await new Promise((r) => setTimeout(r, 1_000))
    expect(await q.getWaitingCount()).toBe(1)
    expect((await statsFor(api, 'ref')).total_clicks).toBe(60)
    expect(svc.service.ingestWorker?.stats.storeFailures ?? 0).toBeGreaterThan(0)

    await svc.ch.client.command({ query: 'ATTACH TABLE events' })
    await drained(svc.service, 60_000)
    expect(await count(svc.ch, "SELECT count() AS n FROM events WHERE startsWith(id, 'ch')")).toBe(90)
    expect(await count(svc.ch, "SELECT uniqExact(id) AS n FROM events WHERE startsWith(id, 'ch')")).toBe(90)
    expect((await statsFor(api, 'ref')).total_clicks).toBe(90)
    expect(await q.getFailedCount()).toBe(0)
    expect(await waitingRows()).toBe(0)
    own.disconnect()
  })

  it('an ingest job whose events cannot be read fails at once, and the jobs beside it are applied', async () => {
    const q = svc.service.queue
    if (q === null) throw new Error('no queue')
    const other = await codeFor(api, 'beside-poison')
    // type 99 is no event type: the job can never be decoded, however often it is tried
    const poison = await q.add('events', { e: [[99, 'poison-1']] }, INGEST_JOB_OPTIONS)
    const res = await api.post('/v1/events', { type: 'click', id: 'beside-poison-1', code: other })
    expect(res.status).toBe(202)
    await eventually(async () => expect(await q.getFailedCount()).toBe(1))
    const failed = await q.getJob(poison.id ?? '')
    expect(failed?.failedReason).toContain('cannot be read')
    // not retried: failed on its first attempt, where a retryable failure would wait its backoff
    expect(failed?.attemptsMade).toBe(1)
    await drained(svc.service)
    expect((await statsFor(api, 'beside-poison')).total_clicks).toBe(1)
    expect(await count(svc.ch, "SELECT count() AS n FROM events WHERE id = 'beside-poison-1'")).toBe(1)
    await failed?.remove()
  })

  it('Redis unreachable: ingest answers 503 within 2 s, accepts nothing, and recovers by itself', async () => {
    const accepted = await api.post('/v1/events', { type: 'click', id: 'before-kill', code })
    expect(accepted.status).toBe(202)
    await drained(svc.service)
    redis.child.kill('SIGKILL')
    await new Promise((r) => setTimeout(r, 100))

    const started = Date.now()
    const res = await api.post('/v1/events', { type: 'click', id: 'while-down', code })
    expect(res.status).toBe(503)
    expect(Date.now() - started).toBeLessThan(2000)
    expect(((await res.json()) as { error: { code: string } }).error.code).toBe('unavailable')
    expect((await fetch(`${svc.url}/readyz`)).status).toBe(503)

    // the same port and data directory: what was acknowledged before the kill is still there
    redis = await startRedisServer({
      dir: `${dir.path}/redis`,
      bin: 'redis-server',
      appendfsync: 'always',
      port: redis.port,
    })
    await eventually(
      async () => {
        const again = await api.post('/v1/events', { type: 'click', id: 'after-restart', code })
        expect(again.status).toBe(202)
      },
      30_000,
      200,
    )
    await drained(svc.service, 30_000)
    expect(
      await count(svc.ch, "SELECT count() AS n FROM events WHERE id IN ('before-kill', 'after-restart')"),
    ).toBe(2)
    expect(await count(svc.ch, "SELECT count() AS n FROM events WHERE id = 'while-down'")).toBe(0)
    expect((await statsFor(api, 'ref')).total_clicks).toBe(92)
  })
})
