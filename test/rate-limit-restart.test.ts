import { afterAll, describe, expect, it } from 'vitest'
import { BROWSER_UA, codeFor, http, statsFor } from './support/client.ts'
import { startTestRedis, tempDir } from './support/env.ts'
import { drained, startTestService } from './support/service.ts'

const LIMIT = 5

/** The per-client limits live in Redis: a burst stays limited when the service and Redis restart. */
describe('rate limits across restarts', () => {
  const dir = tempDir()
  let redis: Awaited<ReturnType<typeof startTestRedis>> | undefined
  afterAll(async () => {
    await redis?.stop()
    dir.remove()
  })

  it('keeps counting a burst through a service restart and a Redis SIGKILL within the window', async () => {
    // the windows are minutes: start early in one, so the whole test fits in it
    const intoMinute = Date.now() % 60_000
    if (intoMinute > 35_000) await new Promise((r) => setTimeout(r, 60_000 - intoMinute + 50))
    const window = Math.floor(Date.now() / 60_000)

    redis = await startTestRedis(`${dir.path}/redis`)
    const env = { CLICK_RATE_LIMIT_PER_MINUTE: String(LIMIT) }
    let svc = await startTestService(`${dir.path}/data`, redis.url, env)
    let api = http(svc.url)
    const code = await codeFor(api, 'burst-owner')
    const beacon = () =>
      fetch(`${svc.url}/v1/track/click`, {
        method: 'POST',
        headers: { 'content-type': 'application/json', 'user-agent': BROWSER_UA },
        body: JSON.stringify({ code }),
      })
    const redirect = () =>
      fetch(`${svc.url}/r/${code}`, { redirect: 'manual', headers: { 'user-agent': BROWSER_UA } })

    const first = await Promise.all(Array.from({ length: 3 * LIMIT }, beacon))
    expect(first.filter((r) => r.status === 202)).toHaveLength(LIMIT)
    expect(first.filter((r) => r.status === 429)).toHaveLength(2 * LIMIT)
    expect(first.find((r) => r.status === 429)?.headers.get('retry-after')).toMatch(/^\d+$/)
    const hops = await Promise.all(Array.from({ length: 3 * LIMIT }, redirect))
    expect(hops.every((r) => r.status === 302)).toBe(true) // past the limit still sent on, not counted
    await drained(svc.service)
    expect((await statsFor(api, 'burst-owner')).total_clicks).toBe(2 * LIMIT)

    // restart the service, and kill Redis without a clean shutdown (AOF, fsync always)
    await svc.service.stop()
    redis.child.kill('SIGKILL')
    await new Promise((r) => redis?.child.once('exit', r))
    redis = await startTestRedis(`${dir.path}/redis`)
    svc = await startTestService(`${dir.path}/data`, redis.url, env)
    api = http(svc.url)

    const again = await Promise.all(Array.from({ length: LIMIT }, beacon))
    const hopsAgain = await Promise.all(Array.from({ length: LIMIT }, redirect))
    await drained(svc.service)
    // still the same window, or the test could not tell a kept count from a reset one
    expect(Math.floor(Date.now() / 60_000)).toBe(window)
    expect(again.map((r) => r.status)).toEqual(Array.from({ length: LIMIT }, () => 429))
    expect(hopsAgain.every((r) => r.status === 302)).toBe(true)
    expect((await statsFor(api, 'burst-owner')).total_clicks).toBe(2 * LIMIT)
    await svc.service.stop()
  }, 120_000)
})
