import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { codeFor, http, statsFor } from './support/client.ts'
import { startTestRedis, tempDir } from './support/env.ts'
import { count, drained, startTestService } from './support/service.ts'

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms))

/**
 * The worker counts a group once its jobs are completed, a moment after the queue shows them
 * done: waits until all `events` are counted, so the group count is final.
 */
async function settled(stats: { events: number }, before: { events: number }, events: number): Promise<void> {
  const deadline = Date.now() + 10_000
  while (stats.events - before.events < events && Date.now() < deadline) await sleep(10)
  expect(stats.events - before.events).toBe(events)
}

/**
 * INGEST_LINGER_MS: while events keep coming, the ingest worker starts a group at most once
 * per linger, gathering what arrives meanwhile, so that a trickle of requests makes a few
 * large ClickHouse inserts instead of one per request; an event reaching an idle worker, or
 * a full group, does not wait.
 */
describe('the ingest worker lingers for more events under light load', () => {
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
  type Worker = NonNullable<Svc['service']['ingestWorker']>
  interface Run {
    svc: Svc
    api: ReturnType<typeof http>
    /** the referrer's code */
    code: string
    worker: Worker
    /** the worker's counts when the run began */
    before: Worker['stats']
  }

  /**
   * A service with the linger given (one at a time: chDB keeps one data directory per
   * process), a referrer's code, and the ingest worker whose groups are counted.
   */
  const withService = async (lingerMs: number, referrer: string, run: (r: Run) => Promise<void>) => {
    const svc = await startTestService(`${dir.path}/data`, redis.url, { INGEST_LINGER_MS: String(lingerMs) })
    try {
      const api = http(svc.url)
      const code = await codeFor(api, referrer)
      const worker = svc.service.ingestWorker
      if (worker === null) throw new Error('no ingest worker')
      await run({ svc, api, code, worker, before: { ...worker.stats } })
    } finally {
      await svc.service.stop()
    }
  }
  const clicks = (code: string, prefix: string, n: number) =>
    Array.from({ length: n }, (_, i) => ({ type: 'click', id: `${prefix}-${i}`, code }))

  it('applies at once an event reaching an idle worker, then gathers what comes within the linger into one group', async () => {
    await withService(2000, 'linger-a', async ({ svc, api, code, worker, before }) => {
      // 0 ms: the worker is idle, a group at once (well before the 2 s linger);
      // then two requests 300 ms apart, within the 2 s after that group: one group
      for (let i = 0; i < 3; i++) {
        const t0 = Date.now()
        expect((await api.post('/v1/events', { events: clicks(code, `la-${i}`, 5) })).status).toBe(202)
        if (i === 0) {
          await settled(worker.stats, before, 5)
          expect(Date.now() - t0).toBeLessThan(1500)
          expect(worker.stats.groups - before.groups).toBe(1)
        }
        await sleep(300)
      }
      await drained(svc.service)
      await settled(worker.stats, before, 15)
      expect(worker.stats.groups - before.groups).toBe(2)
      expect(worker.stats.inserts - before.inserts).toBe(2)
      expect((await statsFor(api, 'linger-a')).total_clicks).toBe(15)
      expect(await count(svc.ch, "SELECT count() AS n FROM events WHERE id LIKE 'la-%'")).toBe(15)
    })
  })

  it('does not wait out the linger once a full group (2000 events) is there', async () => {
    await withService(5000, 'linger-b', async ({ api, code, worker, before }) => {
      // a group now, so that the next one would have to wait out the 5 s
      expect((await api.post('/v1/events', { events: clicks(code, 'lb-a', 1) })).status).toBe(202)
      await settled(worker.stats, before, 1)
      const sent = await Promise.all([
        api.post('/v1/events', { events: clicks(code, 'lb-0', 1000) }),
        api.post('/v1/events', { events: clicks(code, 'lb-1', 1000) }),
      ])
      expect(sent.map((r) => r.status)).toEqual([202, 202])
      const t0 = Date.now()
      // counted well before the 5 s linger would have run out
      while ((await statsFor(api, 'linger-b')).total_clicks < 2001 && Date.now() - t0 < 10_000)
        await sleep(50)
      expect((await statsFor(api, 'linger-b')).total_clicks).toBe(2001)
      expect(Date.now() - t0).toBeLessThan(3000)
    })
  })

  it('with INGEST_LINGER_MS=0 takes only what is waiting: requests apart make a group each', async () => {
    await withService(0, 'linger-c', async ({ svc, api, code, worker, before }) => {
      for (let i = 0; i < 3; i++) {
        expect((await api.post('/v1/events', { events: clicks(code, `lc-${i}`, 5) })).status).toBe(202)
        await drained(svc.service)
        await settled(worker.stats, before, 5 * (i + 1))
      }
      expect(worker.stats.groups - before.groups).toBe(3)
      expect((await statsFor(api, 'linger-c')).total_clicks).toBe(15)
    })
  })
})
