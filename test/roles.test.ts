import { join } from 'node:path'
import { openClickHouse, queryRows } from '@referral/clickhouse'
import { freePort } from '@referral/server'
import { afterAll, describe, expect, it } from 'vitest'
import { type ChildService, startChild } from './support/child.ts'
import { BROWSER_UA, codeFor, eventually, http, statsFor, tokenFor } from './support/client.ts'
import { startTestRedis, tempDir } from './support/env.ts'

/**
 * The split deployment on one machine: two API processes and a worker process against one
 * Redis (the worker owns the chDB directory). Events sent to either API, some to both,
 * land once.
 */
describe('separate API and worker processes', () => {
  const dir = tempDir()
  const children: ChildService[] = []
  let redis: Awaited<ReturnType<typeof startTestRedis>> | undefined
  afterAll(async () => {
    for (const c of children) {
      c.proc.kill('SIGTERM')
      await c.exited
    }
    await redis?.stop()
    dir.remove()
  })

  it('keeps every guarantee with two APIs and one worker', async () => {
    redis = await startTestRedis(join(dir.path, 'redis'))
    const env = { REDIS_URL: redis.url }
    const workerData = join(dir.path, 'worker')
    children.push(await startChild(workerData, await freePort(), env, 'workers'))
    const a = await startChild(join(dir.path, 'api-a'), await freePort(), env, 'api')
    const b = await startChild(join(dir.path, 'api-b'), await freePort(), env, 'api')
    children.push(a, b)
    const [apiA, apiB] = [http(a.url), http(b.url)]
    const code = await codeFor(apiA, 'split-ref')
    expect(await codeFor(apiB, 'split-ref')).toBe(code) // the same code, whichever API creates or reads it

    const batch = (n: number) => ({
      events: Array.from({ length: 100 }, (_, i) => ({
        type: 'click',
        id: `split-${n}-${i}`,
        code,
        user_agent: BROWSER_UA,
      })),
    })
    // batches 0-19 to A, 10-29 to B: ten of them twice, at the same time
    const sent = await Promise.all([
      ...Array.from({ length: 20 }, (_, n) => apiA.post('/v1/events', batch(n))),
      ...Array.from({ length: 20 }, (_, n) => apiB.post('/v1/events', batch(n + 10))),
    ])
    expect(sent.every((r) => r.status === 202)).toBe(true)
    await eventually(
      async () => expect((await statsFor(apiB, 'split-ref')).total_clicks).toBe(3000),
      60_000,
      200,
    )

    // the API processes on chDB have no ClickHouse of their own: they say so
    const earnings = await apiA.get('/v1/me/earnings', {
      authorization: `Bearer ${await tokenFor('split-ref')}`,
    })
    expect(earnings.status).toBe(503)

    for (const c of children.splice(0)) {
      c.proc.kill('SIGTERM')
      expect(await c.exited).toBe(0)
    }
    const ch = await openClickHouse({
      dataDir: workerData,
      clickhouse: { url: undefined, database: 'referral', user: undefined, password: undefined },
    })
    try {
      const [r] = await queryRows<{ rows: string; ids: string }>(
        ch,
        "SELECT count() AS rows, uniqExact(id) AS ids FROM events WHERE startsWith(id, 'split-')",
      )
      expect(Number(r?.rows)).toBe(3000)
      expect(Number(r?.ids)).toBe(3000)
    } finally {
      await ch.close()
    }
  }, 180_000)
})
