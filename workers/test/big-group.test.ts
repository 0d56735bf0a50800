import { getOrCreateCode } from '@referral/api'
import { queryRows } from '@referral/clickhouse'
import { makeKeys, type QueuedEvent } from '@referral/core'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { openStores, type Stores } from '../../test/support/stores.ts'
import { applyJobs } from '../src/apply.ts'
import { flushOutbox } from '../src/process.ts'
import { readCounters } from '../src/reconcile.ts'

/**
 * The worker groups every waiting job (up to 20,000 events) into one commit. A backlog, say
 * after the workers were stopped for a minute, makes the largest groups: found by the soak,
 * a group that large once failed every time (its Lua call took too many arguments for a
 * JavaScript call), so the backlog never drained.
 */
describe('a group of 20,000 events', () => {
  const keys = makeKeys('big')
  let stores: Stores
  beforeAll(async () => {
    stores = await openStores('big_group_test')
  })
  afterAll(async () => {
    await stores?.close()
  })

  it('commits in one script', async () => {
    const code = await getOrCreateCode(stores.redis, keys, 'big-ref')
    const ts = Date.now()
    const jobs = Array.from({ length: 20 }, (_, j) => ({
      id: `job-${j}`,
      events: Array.from(
        { length: 1000 },
        (_, i): QueuedEvent => ({
          type: 'click',
          id: `c-${j}-${i}`,
          code,
          visitor_id: `v-${j}-${i}`,
          ip: `10.${j}.${i >> 8}.${i & 255}`,
          ts,
          received_at: ts,
        }),
      ),
    }))
    const group = await applyJobs(stores.redis, keys, jobs, {
      attributionWindowMs: 30 * 86_400_000,
      dedupWindowSeconds: 3600,
    })
    expect(group?.resolution.rows).toHaveLength(20_000)
    expect(await stores.redis.get(keys.outboxRows())).toBe('20000')
    expect((await readCounters(stores.redis, keys.stats('big-ref'))).clicks).toBe(20_000)
  })

  it('stores a batch of 20,000 referrers in one finish (each told its reports changed)', async () => {
    const ts = Date.now()
    const seed = stores.redis.pipeline()
    const codes = Array.from({ length: 20_000 }, (_, i) => {
      const code = `Z${String(i).padStart(7, '0')}`
      seed.set(keys.code(code), `many-${i}`)
      return code
    })
    await seed.exec()
    const events = codes.map(
      (code, i): QueuedEvent => ({ type: 'click', id: `m-${i}`, code, ts, received_at: ts }),
    )
    const group = await applyJobs(stores.redis, keys, [{ id: 'job-many', events }], {
      attributionWindowMs: 30 * 86_400_000,
      dedupWindowSeconds: 3600,
    })
    expect(group?.record.changed).toHaveLength(20_000)
    await flushOutbox(stores.redis, keys, stores.ch, { maxRows: 50_000 })
    const [n] = await queryRows<{ n: string }>(
      stores.ch,
      "SELECT count() AS n FROM events WHERE startsWith(id, 'm-')",
    )
    expect(Number(n?.n)).toBe(20_000)
    expect(await stores.redis.hget(keys.stats('many-19999'), 'stored_at')).not.toBeNull()
    expect(await stores.redis.llen(keys.outbox())).toBe(0)
  })
})
