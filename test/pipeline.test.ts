import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { BROWSER_UA, codeFor, eventually, type Http, http, statsFor } from './support/client.ts'
import { startTestRedis, tempDir } from './support/env.ts'
import { count, drained, type Service, startTestService } from './support/service.ts'

/** Events in over HTTP, through the real queue and worker, into real chDB and Redis. */
describe('event pipeline, end to end', () => {
  const dir = tempDir()
  let redis: Awaited<ReturnType<typeof startTestRedis>>
  let svc: Awaited<ReturnType<typeof startTestService>>
  let api: Http
  let service: Service

  beforeAll(async () => {
    redis = await startTestRedis(`${dir.path}/redis`)
    svc = await startTestService(`${dir.path}/data`, redis.url)
    service = svc.service
    api = http(svc.url)
  })
  afterAll(async () => {
    await service?.stop()
    await redis?.stop()
    dir.remove()
  })

  it('lands clicks, signups, purchases and refunds in ClickHouse and moves the counters', async () => {
    const code = await codeFor(api, 'alice')
    const res = await api.post('/v1/events', {
      events: [
        { type: 'click', id: 'c1', code, visitor_id: 'v1', user_agent: 'Mozilla/5.0 (X11; Linux x86_64)' },
        { type: 'click', id: 'c2', code: code.toLowerCase(), visitor_id: 'v2' },
        { type: 'click', id: 'c3', code, user_agent: 'Googlebot/2.1 (+http://www.google.com/bot.html)' },
        { type: 'signup', id: 's1', user_id: 'bob', visitor_id: 'v1' },
        { type: 'signup', id: 's2', user_id: 'carol', ref: code },
        { type: 'signup', id: 's3', user_id: 'dave' },
        { type: 'purchase', id: 'p1', user_id: 'bob', amount_cents: 1999 },
        { type: 'purchase', id: 'p2', user_id: 'bob', amount_cents: 1000 },
        { type: 'purchase', id: 'p3', user_id: 'dave', amount_cents: 5000 },
        { type: 'refund', id: 'r1', purchase_id: 'p2', amount_cents: 500 },
      ],
    })
    expect(res.status).toBe(202)
    const body = (await res.json()) as { accepted: number; ids: string[] }
    expect(body.accepted).toBe(10)
    expect(body.ids).toEqual(['c1', 'c2', 'c3', 's1', 's2', 's3', 'p1', 'p2', 'p3', 'r1'])
    await drained(service)

    expect(await count(svc.ch, 'SELECT count() AS n FROM events')).toBe(10)
    expect(await count(svc.ch, "SELECT count() AS n FROM events WHERE type = 'click' AND is_bot = 1")).toBe(1)
    // 1999 * 5% = 99.95 -> 100; 1000 * 5% = 50; refund of half of p2 reverses 25
    expect(await count(svc.ch, "SELECT sum(amount_cents) AS n FROM ledger WHERE user_id = 'alice'")).toBe(125)
    const stats = await statsFor(api, 'alice')
    expect(stats).toMatchObject({
      total_clicks: 2, // the bot is stored, not counted
      total_referrals: 2, // bob (by his visitor's click) and carol (by ref); dave came by himself
      conversions: 1,
      pending_referrals: 1,
      conversion_rate: 0.5,
      total_earnings_cents: 125,
    })
  })

  it('counts an event id once when it is sent three times, one after another', async () => {
    const code = await codeFor(api, 'erin')
    for (let i = 0; i < 3; i++) {
      const res = await api.post('/v1/events', { type: 'click', id: 'seq-click', code, visitor_id: 'seq' })
      expect(res.status).toBe(202)
    }
    await drained(service)
    expect(await count(svc.ch, "SELECT count() AS n FROM events WHERE id = 'seq-click'")).toBe(1)
    expect((await statsFor(api, 'erin')).total_clicks).toBe(1)
  })

  it('counts event ids once when they are sent three times at once', async () => {
    const code = await codeFor(api, 'frank')
    const batch = {
      events: [
        { type: 'signup', id: 'cc-s', user_id: 'gina', ref: code },
        { type: 'purchase', id: 'cc-p', user_id: 'gina', amount_cents: 4000 },
        ...Array.from({ length: 50 }, (_, i) => ({ type: 'click', id: `cc-c${i}`, code })),
      ],
    }
    const answers = await Promise.all([1, 2, 3].map(() => api.post('/v1/events', batch)))
    expect(answers.map((r) => r.status)).toEqual([202, 202, 202])
    await drained(service)
    expect(await count(svc.ch, "SELECT count() AS n FROM events WHERE startsWith(id, 'cc-')")).toBe(52)
    expect(await count(svc.ch, "SELECT count() AS n FROM ledger WHERE event_id = 'cc-p'")).toBe(1)
    expect(await statsFor(api, 'frank')).toMatchObject({
      total_clicks: 50,
      total_referrals: 1,
      conversions: 1,
      total_earnings_cents: 200,
    })
  })

  it('redirects /r/CODE to the landing page with the code, sets the cookies and counts the click', async () => {
    const code = await codeFor(api, 'hank')
    const res = await api.get(`/r/${code.toLowerCase()}`, { 'user-agent': BROWSER_UA })
    expect(res.status).toBe(302)
    expect(res.headers.get('location')).toBe(`${svc.config.landingUrl}?ref=${code}`)
    expect(res.headers.getSetCookie().join(';')).toContain(`ra_ref=${code}`)
    await eventually(async () => expect((await statsFor(api, 'hank')).total_clicks).toBe(1))
  })

  it('redirects an unknown or malformed code to the landing page without ref and counts nothing', async () => {
    for (const path of ['/r/ZZZZZZZZ', '/r/not-a-code', '/r/%0d%0aLocation:%20http:%2f%2fevil.example']) {
      const res = await api.get(path)
      expect(res.status).toBe(302)
      expect(res.headers.get('location')).toBe(svc.config.landingUrl)
    }
    await drained(service)
    expect(await count(svc.ch, "SELECT count() AS n FROM events WHERE code = 'ZZZZZZZZ'")).toBe(0)
  })

  it('takes the landing page beacon with CORS and counts the click', async () => {
    const code = await codeFor(api, 'ivy')
    const pre = await fetch(`${svc.url}/v1/track/click`, {
      method: 'OPTIONS',
      headers: { origin: 'https://landing.example', 'access-control-request-method': 'POST' },
    })
    expect(pre.headers.get('access-control-allow-origin')).toBe('*')
    const res = await api.post(
      '/v1/track/click',
      { code, visitor_id: 'beacon-v' },
      { authorization: '', 'user-agent': BROWSER_UA },
    )
    expect(res.status).toBe(202)
    await eventually(async () => expect((await statsFor(api, 'ivy')).total_clicks).toBe(1))
  })

  it('reports its figures at /metrics in the Prometheus format', async () => {
    const res = await api.get('/metrics', { authorization: '' })
    expect(res.headers.get('content-type')).toMatch(/text\/plain/)
    const text = await res.text()
    const value = (name: string) => Number(text.match(new RegExp(`^${name} (\\S+)$`, 'm'))?.[1])
    expect(value('ra_ingest_events_accepted_total')).toBeGreaterThanOrEqual(10)
    expect(value('ra_worker_events_total')).toBeGreaterThanOrEqual(10)
    expect(value('ra_ingest_queue_waiting_jobs')).toBe(0)
    expect(value('ra_ingest_lag_seconds')).toBe(0) // nothing waiting
    expect(value('ra_clickhouse_inserts_total')).toBeGreaterThanOrEqual(1)
    expect(value('ra_clickhouse_insert_seconds_total')).toBeGreaterThan(0)
    expect(value('ra_apply_seconds_total')).toBeGreaterThan(0)
    expect(text).toContain('# TYPE ra_ingest_events_accepted_total counter')
    // the memory by holder: V8's heap within the resident set, and chDB's engine beside it
    const rss = value('ra_process_resident_memory_bytes')
    expect(value('ra_nodejs_heap_used_bytes')).toBeGreaterThan(0)
    expect(value('ra_nodejs_heap_used_bytes')).toBeLessThanOrEqual(value('ra_nodejs_heap_total_bytes'))
    expect(value('ra_nodejs_heap_total_bytes')).toBeLessThan(rss)
    expect(value('ra_nodejs_external_bytes')).toBeGreaterThan(0)
    expect(value('ra_clickhouse_memory_tracked_bytes')).toBeGreaterThan(0)
    expect(value('ra_clickhouse_memory_tracked_bytes')).toBeLessThan(rss)
  })
})
