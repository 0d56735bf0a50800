import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { codeFor, type Http, http, statsFor } from './support/client.ts'
import { startTestRedis, tempDir } from './support/env.ts'
import { drained, startTestService } from './support/service.ts'

/**
 * WORKER_LINGER_MS: a worker that finds the queue dry waits until its first job is that old
 * and applies what arrived meanwhile with it, in one group.
 */
describe.each([
  { lingerMs: 800, groups: (n: number) => expect(n).toBe(1) },
  { lingerMs: 0, groups: (n: number) => expect(n).toBeGreaterThan(1) },
])('ingest worker with WORKER_LINGER_MS=$lingerMs', ({ lingerMs, groups }) => {
  const dir = tempDir()
  let redis: Awaited<ReturnType<typeof startTestRedis>>
  let svc: Awaited<ReturnType<typeof startTestService>>
  let api: Http

  beforeAll(async () => {
    redis = await startTestRedis(`${dir.path}/redis`)
    svc = await startTestService(`${dir.path}/data`, redis.url, { WORKER_LINGER_MS: String(lingerMs) })
    api = http(svc.url)
  })
  afterAll(async () => {
    await svc?.service.stop()
    await redis?.stop()
    dir.remove()
  })

  it('applies events that trickle in within the linger as one group, each counted once', async () => {
    const code = await codeFor(api, 'lin')
    await drained(svc.service)
    const before = svc.service.ingestWorker?.stats.groups ?? Number.NaN
    for (let i = 0; i < 3; i++) {
      if (i > 0) await new Promise((r) => setTimeout(r, 150))
      const res = await api.post('/v1/events', { type: 'click', id: `lin-${i}`, code, visitor_id: `v${i}` })
      expect(res.status).toBe(202)
    }
    await drained(svc.service)
    groups((svc.service.ingestWorker?.stats.groups ?? Number.NaN) - before)
    expect((await statsFor(api, 'lin')).total_clicks).toBe(3)
  })
})
