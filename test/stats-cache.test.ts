import { makeRedis, whenReady } from '@referral/core'
import type { Redis } from 'ioredis'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { codeFor, eventually, type Http, http, statsFor } from './support/client.ts'
import { startTestRedis, tempDir } from './support/env.ts'
import { drained, startTestService } from './support/service.ts'

/**
 * GET /v1/me/stats through the API's stats cache (api/src/stats-cache.ts), on the real
 * service: answers repeat from memory, every change the workers publish is seen by the next
 * answer, a write nobody publishes within STATS_CACHE_MS, and nothing is missed while the
 * subscriber is away.
 */
describe.each([
  { name: 'a short cache', cacheMs: 400 },
  { name: 'a long cache', cacheMs: 60_000 },
])('stats cache, $name', ({ cacheMs }) => {
  const dir = tempDir()
  let redis: Awaited<ReturnType<typeof startTestRedis>>
  let svc: Awaited<ReturnType<typeof startTestService>>
  let api: Http
  let direct: Redis

  beforeAll(async () => {
    redis = await startTestRedis(`${dir.path}/redis`)
    svc = await startTestService(`${dir.path}/data`, redis.url, { STATS_CACHE_MS: String(cacheMs) })
    api = http(svc.url)
    direct = await whenReady(makeRedis(redis.url, 'command', 'test'))
  })
  afterAll(async () => {
    direct?.disconnect()
    await svc?.service.stop()
    await redis?.stop()
    dir.remove()
  })

  const metric = async (name: string) => {
    const text = await (await api.get('/metrics', { authorization: '' })).text()
    return Number(text.match(new RegExp(`^${name} (\\S+)$`, 'm'))?.[1])
  }
  const click = async (code: string, id: string) => {
    expect((await api.post('/v1/events', { type: 'click', id, code, visitor_id: id })).status).toBe(202)
    await drained(svc.service)
  }

  it('answers repeats from memory and counts every applied event in the next answer', async () => {
    const user = `hits-${cacheMs}`
    const code = await codeFor(api, user)
    await click(code, `${user}-1`)
    expect((await statsFor(api, user)).total_clicks).toBe(1)
    const hits = await metric('ra_stats_cache_hits_total')
    for (let i = 0; i < 5; i++) expect((await statsFor(api, user)).total_clicks).toBe(1)
    expect(await metric('ra_stats_cache_hits_total')).toBe(hits + 5)
    for (let n = 2; n <= 4; n++) {
      await click(code, `${user}-${n}`)
      expect((await statsFor(api, user)).total_clicks).toBe(n)
    }
  })

  it('sees a change it was not told of (a write outside the service) within STATS_CACHE_MS', async () => {
    const user = `quiet-${cacheMs}`
    const code = await codeFor(api, user)
    await click(code, `${user}-1`)
    expect((await statsFor(api, user)).total_clicks).toBe(1)
    await direct.hincrby(svc.service.keys.stats(user), 'clicks', 10)
    if (cacheMs > 10_000) {
      // not published: the answer is the one in memory
      expect((await statsFor(api, user)).total_clicks).toBe(1)
      return
    }
    const seenAt = Date.now()
    await eventually(async () => expect((await statsFor(api, user)).total_clicks).toBe(11), 5_000, 20)
    expect(Date.now() - seenAt).toBeLessThan(cacheMs + 1_000)
  })

  it('misses nothing while its subscriber is away: the cache empties until it subscribes again', async () => {
    const user = `away-${cacheMs}`
    const code = await codeFor(api, user)
    await click(code, `${user}-1`)
    expect((await statsFor(api, user)).total_clicks).toBe(1)
    const subscribers = async () =>
      ((await direct.call('CLIENT', 'LIST', 'TYPE', 'pubsub')) as string)
        .split('\n')
        .filter((l) => l.includes('name=api:subscriber'))
        .map((l) => l.match(/\bid=(\d+)/)?.[1])
    const [before] = await subscribers()
    expect(before).toBeDefined()
    await direct.client('KILL', 'TYPE', 'pubsub')
    // subscribed again: a new connection (so the old one's close has been handled)
    await eventually(async () => {
      const now = await subscribers()
      expect(now.length).toBe(1)
      expect(now[0]).not.toBe(before)
    }, 10_000)
    // what a publish lost while it was away would have told: a change written without one
    await direct.hincrby(svc.service.keys.stats(user), 'clicks', 10)
    await eventually(async () => expect((await statsFor(api, user)).total_clicks).toBe(11), 2_000, 20)
    // and it listens again: the next applied event is in the next answer
    await click(code, `${user}-2`)
    expect((await statsFor(api, user)).total_clicks).toBe(12)
  })
})
