import { getOrCreateCode } from '@referral/api'
import { makeKeys, makeRedis, type QueuedEvent, whenReady } from '@referral/core'
import type { RedisServer } from '@referral/server'
import type { Redis } from 'ioredis'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { startTestRedis, tempDir } from '../../test/support/env.ts'
import { applyJobs } from '../src/apply.ts'
import { outboxStatus } from '../src/outbox.ts'
import { readCounters } from '../src/reconcile.ts'

/**
 * The apply lock is taken in the round trip that reads the group's state, and released by
 * the commit that writes it; the commit goes by its SHA1 and by its body when Redis lost it.
 */
describe('applying a group: the lock and the commit script', () => {
  const dir = tempDir()
  const keys = makeKeys('lk')
  const opts = { attributionWindowMs: 30 * 86_400_000, dedupWindowSeconds: 8 * 86_400 }
  let server: RedisServer
  let redis: Redis
  let code: string

  beforeAll(async () => {
    server = await startTestRedis(`${dir.path}/redis`)
    redis = await whenReady(makeRedis(server.url, 'transaction', 'test'))
    code = await getOrCreateCode(redis, keys, 'ref')
  })
  afterAll(async () => {
    redis?.disconnect()
    await server?.stop()
    dir.remove()
  })

  const clicks = (prefix: string, n: number): QueuedEvent[] => {
    const ts = Date.now()
    return Array.from({ length: n }, (_, i) => ({
      type: 'click',
      id: `${prefix}${i}`,
      code,
      ts,
      received_at: ts,
    }))
  }
  const counted = async () => (await readCounters(redis, keys.stats('ref'))).clicks

  it('waits while another applier holds the lock, then applies, and leaves the lock free', async () => {
    const before = await counted()
    await redis.set(keys.applyLock(), 'another-applier', 'PX', 400)
    const t0 = Date.now()
    const applied = await applyJobs(redis, keys, [{ id: 'j1', events: clicks('held-', 5) }], opts)
    expect(applied?.record.rows).toBe(5)
    expect(Date.now() - t0).toBeGreaterThanOrEqual(300) // it waited for the other's lock to lapse
    expect(await counted()).toBe(before + 5)
    expect(await redis.exists(keys.applyLock())).toBe(0) // released by the commit
  })

  it('commits when Redis has forgotten the script (SCRIPT FLUSH, as after a restart)', async () => {
    const before = await counted()
    await redis.call('SCRIPT', 'FLUSH')
    await applyJobs(redis, keys, [{ id: 'j2', events: clicks('flushed-', 3) }], opts)
    expect(await counted()).toBe(before + 3)
    // and by its SHA1 again from then on
    await applyJobs(redis, keys, [{ id: 'j3', events: clicks('again-', 2) }], opts)
    expect(await counted()).toBe(before + 5)
    expect(await redis.exists(keys.applyLock())).toBe(0)
  })

  it("returns the outbox's row count after its commit, every applier's rows included", async () => {
    const before = (await outboxStatus(redis, keys)).rows
    // another applier's group, as its commit would have counted it
    await redis.incrby(keys.outboxRows(), 7)
    const applied = await applyJobs(redis, keys, [{ id: 'j4', events: clicks('count-', 4) }], opts)
    expect(applied?.outboxRows).toBe(before + 7 + 4)
    expect(applied?.outboxRows).toBe((await outboxStatus(redis, keys)).rows)
  })

  it('releases the lock when the group changes nothing (its events were applied before)', async () => {
    const before = await counted()
    expect(await applyJobs(redis, keys, [{ id: 'j2', events: clicks('flushed-', 3) }], opts)).toBeNull()
    expect(await counted()).toBe(before)
    expect(await redis.exists(keys.applyLock())).toBe(0)
  })
})
