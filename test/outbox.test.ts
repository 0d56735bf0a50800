import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { codeFor, eventually, http, statsFor } from './support/client.ts'
import { startTestRedis, tempDir } from './support/env.ts'
import { count, drained, startTestService } from './support/service.ts'

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms))

/**
 * Applied events reach ClickHouse through the outbox: the counters move as soon as a group
 * is applied, and the rows follow in one insert per CLICKHOUSE_FLUSH_MS (or sooner, once
 * CLICKHOUSE_BATCH_ROWS rows wait), whatever the size of the requests and groups.
 */
describe('the outbox batches ClickHouse inserts', () => {
  const dir = tempDir()
  let redis: Awaited<ReturnType<typeof startTestRedis>>
  beforeAll(async () => {
    redis = await startTestRedis(`${dir.path}/redis`)
  })
  afterAll(async () => {
    await redis?.stop()
    dir.remove()
  })

  type Svc = Awaited<ReturnType<typeof startTestService>>
  /** one service at a time (chDB keeps one data directory per process), with the settings given */
  const withService = async (env: Record<string, string>, run: (svc: Svc) => Promise<void>) => {
    const svc = await startTestService(`${dir.path}/data`, redis.url, env)
    try {
      await run(svc)
    } finally {
      await svc.service.stop()
    }
  }
  const clicks = (code: string, prefix: string, n: number) =>
    Array.from({ length: n }, (_, i) => ({ type: 'click', id: `${prefix}-${i}`, code }))

  it('counts at once, and inserts a trickle of requests within the flush interval together', async () => {
    await withService({ CLICKHOUSE_FLUSH_MS: '1500' }, async (svc) => {
      const api = http(svc.url)
      const code = await codeFor(api, 'trickle')
      const worker = svc.service.ingestWorker
      if (worker === null) throw new Error('no ingest worker')
      const before = { ...worker.stats }
      const t0 = Date.now()
      for (let i = 0; i < 4; i++) {
        expect((await api.post('/v1/events', { events: clicks(code, `tr-${i}`, 5) })).status).toBe(202)
        await eventually(async () => expect((await statsFor(api, 'trickle')).total_clicks).toBe(5 * (i + 1)))
        await sleep(100)
      }
      // all four counted, none of them in ClickHouse yet: the oldest has waited less than 1.5 s
      expect(Date.now() - t0).toBeLessThan(1400)
      expect(await count(svc.ch, "SELECT count() AS n FROM events WHERE id LIKE 'tr-%'")).toBe(0)
      await drained(svc.service)
      expect(await count(svc.ch, "SELECT count() AS n FROM events WHERE id LIKE 'tr-%'")).toBe(20)
      expect(worker.stats.groups - before.groups).toBeGreaterThanOrEqual(4)
      expect(worker.stats.inserts - before.inserts).toBe(1)
      expect(worker.stats.storedRows - before.storedRows).toBe(20)
    })
  })

  it('does not wait out the flush interval once a batch of rows is there', async () => {
    await withService({ CLICKHOUSE_FLUSH_MS: '60000', CLICKHOUSE_BATCH_ROWS: '500' }, async (svc) => {
      const api = http(svc.url)
      const code = await codeFor(api, 'full')
      const t0 = Date.now()
      expect((await api.post('/v1/events', { events: clicks(code, 'fu', 600) })).status).toBe(202)
      await eventually(async () =>
        expect(await count(svc.ch, "SELECT count() AS n FROM events WHERE id LIKE 'fu-%'")).toBe(600),
      )
      expect(Date.now() - t0).toBeLessThan(10_000)
    })
  })

  it('stores what waits in the outbox when the service stops', async () => {
    await withService({ CLICKHOUSE_FLUSH_MS: '60000' }, async (svc) => {
      const api = http(svc.url)
      const code = await codeFor(api, 'stopping')
      expect((await api.post('/v1/events', { events: clicks(code, 'st', 10) })).status).toBe(202)
      await eventually(async () => expect((await statsFor(api, 'stopping')).total_clicks).toBe(10))
      expect(await count(svc.ch, "SELECT count() AS n FROM events WHERE id LIKE 'st-%'")).toBe(0)
    })
    // a service that would not store them for a minute finds them there
    await withService({ CLICKHOUSE_FLUSH_MS: '60000' }, async (svc) => {
      expect(await count(svc.ch, "SELECT count() AS n FROM events WHERE id LIKE 'st-%'")).toBe(10)
    })
  })
})
