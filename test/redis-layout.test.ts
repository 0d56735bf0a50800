import {
  eventInput,
  INGEST_JOB_OPTIONS,
  makeKeys,
  makeRedis,
  makeReferralCode,
  migrateKeyLayout,
  settleEvent,
  whenReady,
} from '@referral/core'
import { Queue } from 'bullmq'
import type { Redis } from 'ioredis'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { BROWSER_UA, http, statsFor } from './support/client.ts'
import { startTestRedis, tempDir } from './support/env.ts'
import { count, drained, startTestService } from './support/service.ts'

/** A Redis written by the version before hash tags: the state and a waiting job carry over. */
describe('moving data of the untagged key layout', () => {
  const dir = tempDir()
  let redisServer: Awaited<ReturnType<typeof startTestRedis>>
  let redis: Redis
  const keys = makeKeys('ra')
  const code = makeReferralCode()

  beforeAll(async () => {
    redisServer = await startTestRedis(`${dir.path}/redis`)
    redis = await whenReady(makeRedis(redisServer.url, 'command'))
  })
  afterAll(async () => {
    redis?.disconnect()
    await redisServer?.stop()
    dir.remove()
  })

  it('renames the state and the waiting job, and the service applies the job on the moved state', async () => {
    // what the previous version left: a referrer with 5 counted clicks, an event id taken
    // an hour ago, a rate-limit window, and a job accepted but not yet applied
    await redis.hset('ra:user:ana', 'code', code)
    await redis.set(`ra:code:${code}`, 'ana')
    await redis.hset('ra:stats:ana', { clicks: 5, signups: 0, conversions: 0, earnings_cents: 0 })
    await redis.hset('ra:stats-global', { clicks: 5 })
    await redis.set('ra:ev:click:old-1', '1', 'EX', 3600)
    await redis.set('ra:rl:click:10.0.0.1:1', '3', 'EX', 60)
    const now = Date.now()
    const click = (id: string) =>
      settleEvent(
        eventInput.parse({ type: 'click', id, code, visitor_id: `v-${id}`, user_agent: BROWSER_UA }),
        now,
        () => id,
      )
    const old = new Queue('ingest', { connection: redis, prefix: 'ra:bull' })
    await old.add(
      'events',
      { events: [click('old-1'), click('new-1')] },
      { ...INGEST_JOB_OPTIONS, jobId: 'j-1' },
    )
    await old.close()

    const svc = await startTestService(`${dir.path}/data`, redisServer.url)
    try {
      await drained(svc.service)
      // the taken id stays taken (in the set of the day it was taken, for the window's days),
      // the new click counts on top of the old five
      expect(await statsFor(http(svc.url), 'ana')).toMatchObject({
        total_clicks: 6,
      })
      const takenDay = Math.floor((Date.now() + 3600_000) / 86_400_000) - 8
      expect(await redis.sismember(keys.takenOn(takenDay), 'click:old-1')).toBe(1)
      expect(await redis.ttl(keys.takenOn(takenDay))).toBeGreaterThan(3000)
      expect(await count(svc.ch, "SELECT count() AS n FROM events WHERE id = 'new-1'")).toBe(1)
      expect(await count(svc.ch, "SELECT count() AS n FROM events WHERE id = 'old-1'")).toBe(0)
      expect(await redis.hget(keys.globalStats(), 'clicks')).toBe('6')
      // nothing left under the old names but the rate-limit window, which expires by itself
      const [, left] = await redis.scan('0', 'MATCH', 'ra:*', 'COUNT', 10_000)
      expect(left).toEqual(['ra:rl:click:10.0.0.1:1'])
      expect(await redis.get(keys.layout())).toBe('3')
    } finally {
      await svc.service.stop()
    }
    // later starts find the layout recorded and scan nothing
    expect(await migrateKeyLayout(redis, keys, 'ra', 8)).toEqual({ moved: 0, current: true })
  })

  it('moves the event ids taken one key each (layout 2) into the sets of their days', async () => {
    const fresh = await startTestRedis(`${dir.path}/redis3`)
    const r = await whenReady(makeRedis(fresh.url, 'command'))
    try {
      await r.set(keys.layout(), '2')
      // taken two days ago (six of the eight days left), and taken just now
      await r.set('{ra}:ev:click:two-days', '1', 'EX', 6 * 86_400)
      await r.set('{ra}:ev:purchase:just-now', '1', 'EX', 8 * 86_400)
      expect(await migrateKeyLayout(r, keys, 'ra', 8)).toEqual({ moved: 2, current: false })
      const today = Math.floor(Date.now() / 86_400_000)
      expect(await r.smembers(keys.takenOn(today - 2))).toEqual(['click:two-days'])
      expect(await r.smembers(keys.takenOn(today))).toEqual(['purchase:just-now'])
      // each set lives to the end of its day + 8 days: at least the time its ids had left
      expect(await r.ttl(keys.takenOn(today - 2))).toBeGreaterThanOrEqual(6 * 86_400)
      expect(await r.exists('{ra}:ev:click:two-days', '{ra}:ev:purchase:just-now')).toBe(0)
      expect(await r.get(keys.layout())).toBe('3')
    } finally {
      r.disconnect()
      await fresh.stop()
    }
  })

  it('refuses to overwrite a key that exists under both names', async () => {
    const fresh = await startTestRedis(`${dir.path}/redis2`)
    const r = await whenReady(makeRedis(fresh.url, 'command'))
    try {
      await r.hset('ra:stats:bo', 'clicks', 1)
      await r.hset(keys.stats('bo'), 'clicks', 2)
      await expect(migrateKeyLayout(r, keys, 'ra', 8)).rejects.toThrow(/cannot move ra:stats:bo/)
      expect(await r.hget(keys.stats('bo'), 'clicks')).toBe('2')
      expect(await r.get(keys.layout())).toBeNull()
    } finally {
      r.disconnect()
      await fresh.stop()
    }
  })
})
