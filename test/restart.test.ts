import { join } from 'node:path'
import { openClickHouse, queryRows } from '@referral/clickhouse'
import { freePort } from '@referral/server'
import { afterAll, describe, expect, it } from 'vitest'
import { type ChildService, queueDepth, startChild } from './support/child.ts'
import { codeFor, eventually, http, statsFor } from './support/client.ts'
import { tempDir } from './support/env.ts'

/**
 * The service as `npm start` runs it (embedded redis-server and chDB), killed with SIGKILL
 * under load, restarted, stopped with SIGTERM and started again: nothing acknowledged is
 * lost, nothing is counted twice, and the data survives restarts.
 */
describe('restarts', () => {
  const dir = tempDir()
  const dataDir = join(dir.path, 'data')
  let child: ChildService | undefined
  afterAll(async () => {
    child?.proc.kill('SIGKILL')
    dir.remove()
  })

  it('keeps every acknowledged event through SIGKILL, SIGTERM and restarts', async () => {
    const port = await freePort()
    child = await startChild(dataDir, port)
    let api = http(child.url)
    const code = await codeFor(api, 'ref')

    const BATCHES = 60
    const batch = (b: number) => ({
      events: [
        ...Array.from({ length: 100 }, (_, i) => ({ type: 'click', id: `k-${b}-${i}`, code })),
        { type: 'signup', id: `s-${b}`, user_id: `buyer-${b}`, ref: code },
        { type: 'purchase', id: `p-${b}`, user_id: `buyer-${b}`, amount_cents: 1000 },
      ],
    })
    const acked = new Set<number>()
    const send = async (b: number) => {
      const res = await api.post('/v1/events', batch(b)).catch(() => undefined)
      if (res?.status === 202) acked.add(b)
    }
    // load from 4 loops; SIGKILL the whole process (not Redis) part way through
    let next = 0
    const loops = Array.from({ length: 4 }, async () => {
      while (next < BATCHES) await send(next++)
    })
    await eventually(async () => expect(acked.size).toBeGreaterThan(10), 30_000, 5)
    child.proc.kill('SIGKILL')
    await Promise.all(loops)
    expect(acked.size).toBeLessThan(BATCHES)

    // restart on the same data; the client resends everything, acknowledged or not
    child = await startChild(dataDir, port)
    api = http(child.url)
    for (let b = 0; b < BATCHES; b++) await send(b)
    expect(acked.size).toBe(BATCHES)
    const expected = {
      total_clicks: 100 * BATCHES,
      total_referrals: BATCHES,
      conversions: BATCHES,
      total_earnings_cents: 50 * BATCHES,
    }
    await eventually(async () => expect(await statsFor(api, 'ref')).toMatchObject(expected), 60_000, 200)

    // graceful stop, then start again: same counts, and the queue drains
    child.proc.kill('SIGTERM')
    expect(await child.exited).toBe(0)
    child = await startChild(dataDir, port)
    api = http(child.url)
    expect(await statsFor(api, 'ref')).toMatchObject(expected)
    await eventually(async () => expect(await queueDepth(dataDir)).toBe(0), 60_000, 200)
    child.proc.kill('SIGTERM')
    expect(await child.exited).toBe(0)

    // ClickHouse, opened here now that the service has let go of it: each event once
    const ch = await openClickHouse({
      dataDir,
      clickhouse: { url: undefined, database: 'referral', user: undefined, password: undefined },
    })
    try {
      const [r] = await queryRows<{ rows: string; ids: string; ledger: string }>(
        ch,
        `SELECT (SELECT count() FROM events) AS rows, (SELECT uniqExact(type, id) FROM events) AS ids,
                (SELECT sum(amount_cents) FROM ledger WHERE user_id = 'ref') AS ledger`,
      )
      expect(Number(r?.rows)).toBe(102 * BATCHES)
      expect(Number(r?.ids)).toBe(102 * BATCHES)
      expect(Number(r?.ledger)).toBe(50 * BATCHES)
    } finally {
      await ch.close()
    }
  }, 240_000)
})
