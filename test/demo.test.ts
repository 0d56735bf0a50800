import { DemoClient, seedHistory, startLiveTraffic } from '@referral/server'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { eventually, http, statsFor } from './support/client.ts'
import { startTestRedis, tempDir } from './support/env.ts'
import { count, drained, startTestService } from './support/service.ts'

/** `npm run demo`'s traffic goes through the real API and adds up. */
describe('demo traffic', () => {
  const dir = tempDir()
  let redis: Awaited<ReturnType<typeof startTestRedis>>
  let svc: Awaited<ReturnType<typeof startTestService>>

  beforeAll(async () => {
    redis = await startTestRedis(`${dir.path}/redis`)
    svc = await startTestService(`${dir.path}/data`, redis.url)
  })
  afterAll(async () => {
    await svc?.service.stop()
    await redis?.stop()
    dir.remove()
  })

  it('seeds a history whose clicks every referrer sees, then keeps traffic coming', async () => {
    const client = new DemoClient(svc.url, svc.config)
    const summary = await seedHistory(client, { days: 10, referrers: 3, clicksPerDay: 5, seed: 1 })
    await drained(svc.service)
    expect(summary.referrers[0]).toBe('demo-user')
    expect(await count(svc.ch, 'SELECT count() AS n FROM events')).toBe(summary.events)
    const api = http(svc.url)
    for (const user of summary.referrers) {
      expect((await statsFor(api, user)).total_clicks).toBe(summary.clicks[user])
    }
    const demo = await statsFor(api, 'demo-user')
    expect(demo.total_referrals).toBeGreaterThan(0)

    const stop = startLiveTraffic(client, summary.referrers, 50)
    try {
      await eventually(async () =>
        expect(await count(svc.ch, 'SELECT count() AS n FROM events')).toBeGreaterThan(summary.events + 2),
      )
    } finally {
      stop()
    }
  })
})
