import { afterEach, describe, expect, it } from 'vitest'
import { codeFor, http, statsFor } from './support/client.ts'
import { startTestRedis, tempDir } from './support/env.ts'
import { count, drained, startTestService } from './support/service.ts'

/** Role all runs its workers in-process (default) or on a worker thread (WORKER_THREAD=true). */
describe('workers thread', () => {
  const stops: Array<() => Promise<void>> = []
  afterEach(async () => {
    for (const s of stops.splice(0).reverse()) await s()
  })

  for (const threaded of [true, false]) {
    it(`lands events exactly once with WORKER_THREAD=${threaded}`, async () => {
      const dir = tempDir()
      const redis = await startTestRedis(`${dir.path}/redis`)
      const svc = await startTestService(`${dir.path}/data`, redis.url, { WORKER_THREAD: String(threaded) })
      stops.push(async () => {
        await svc.service.stop()
        await redis.stop()
        dir.remove()
      })
      expect(svc.service.workersThread !== null).toBe(threaded)
      expect(svc.service.ingestWorker !== null).toBe(!threaded)
      const api = http(svc.url)
      const code = await codeFor(api, 'thread-ref')
      const events = Array.from({ length: 300 }, (_, i) => ({ type: 'click', id: `t-${i}`, code }))
      // sent twice: the second time changes nothing
      for (let n = 0; n < 2; n++) expect((await api.post('/v1/events', { events })).status).toBe(202)
      await drained(svc.service)
      expect((await statsFor(api, 'thread-ref')).total_clicks).toBe(300)
      // the API thread reads what the workers thread wrote (one chDB engine per process)
      expect(await count(svc.ch, "SELECT count() AS n FROM events WHERE startsWith(id, 't-')")).toBe(300)
      // reported every 500 ms from the thread
      await expect
        .poll(
          async () =>
            Number((await (await api.get('/metrics')).text()).match(/^ra_worker_events_total (\d+)$/m)?.[1]),
          { timeout: 5_000 },
        )
        .toBeGreaterThanOrEqual(300)
    })
  }
})
