import { SignJWT } from 'jose'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { BROWSER_UA, codeFor, eventually, type Http, http, tokenFor } from './support/client.ts'
import { JWT_SECRET, startTestRedis, tempDir } from './support/env.ts'
import { drained, startTestService } from './support/service.ts'

interface Point {
  t: string
  earnings_cents: number
  conversions: number
  signups: number
  clicks: number
}

/** The referrer's series, referrals, insights and live stream, from seeded events. */
describe('referrer analytics', () => {
  const dir = tempDir()
  let redis: Awaited<ReturnType<typeof startTestRedis>>
  let svc: Awaited<ReturnType<typeof startTestService>>
  let api: Http
  const as = async (user: string) => ({ authorization: `Bearer ${await tokenFor(user)}` })
  const getJson = async <T>(path: string, user: string): Promise<T> => {
    const res = await api.get(path, await as(user))
    expect(res.status).toBe(200)
    return (await res.json()) as T
  }

  beforeAll(async () => {
    redis = await startTestRedis(`${dir.path}/redis`)
    svc = await startTestService(`${dir.path}/data`, redis.url)
    api = http(svc.url)
    const code = await codeFor(api, 'ella')
    const res = await api.post('/v1/events', {
      events: [
        { type: 'click', id: 'e-c1', code, user_agent: BROWSER_UA, ts: '2026-03-08T12:00:00Z' },
        { type: 'signup', id: 'e-s1', user_id: 'buyer-one', ref: code, ts: '2026-03-01T12:00:00Z' },
        { type: 'signup', id: 'e-s2', user_id: 'buyer-two', ref: code, ts: '2026-03-02T12:00:00Z' },
        { type: 'signup', id: 'e-s3', user_id: 'buyer-three', ref: code, ts: '2026-03-03T12:00:00Z' },
        // New York: 23:30 on the 7th (EST) / 00:30 on the 8th / 23:30 on the 8th (EDT, a 23-hour day) / 00:30 on the 9th
        {
          type: 'purchase',
          id: 'e-p1',
          user_id: 'buyer-one',
          amount_cents: 1000,
          ts: '2026-03-08T04:30:00Z',
        },
        {
          type: 'purchase',
          id: 'e-p2',
          user_id: 'buyer-one',
          amount_cents: 2000,
          ts: '2026-03-08T05:30:00Z',
        },
        {
          type: 'purchase',
          id: 'e-p3',
          user_id: 'buyer-two',
          amount_cents: 3000,
          ts: '2026-03-09T03:30:00Z',
        },
        {
          type: 'purchase',
          id: 'e-p4',
          user_id: 'buyer-two',
          amount_cents: 4000,
          ts: '2026-03-09T04:30:00Z',
        },
      ],
    })
    expect(res.status).toBe(202)
    await drained(svc.service)
  })
  afterAll(async () => {
    await svc?.service.stop()
    await redis?.stop()
    dir.remove()
  })

  it('buckets earnings by local day across the DST change, every day present', async () => {
    const q = 'interval=day&tz=America/New_York&from=2026-03-06T12:00:00Z&to=2026-03-10T12:00:00Z'
    const body = await getJson<{ points: Point[]; tz: string }>(`/v1/me/earnings?${q}`, 'ella')
    expect(body.tz).toBe('America/New_York')
    expect(body.points.map((p) => [p.t, p.earnings_cents, p.conversions, p.clicks])).toEqual([
      ['2026-03-06T00:00:00-05:00', 0, 0, 0],
      ['2026-03-07T00:00:00-05:00', 50, 1, 0],
      ['2026-03-08T00:00:00-05:00', 250, 1, 1],
      ['2026-03-09T00:00:00-04:00', 200, 0, 0],
      ['2026-03-10T00:00:00-04:00', 0, 0, 0],
    ])
  })

  it('buckets the same earnings by UTC day, week and month', async () => {
    const utc = await getJson<{ points: Point[] }>(
      '/v1/me/earnings?interval=day&tz=UTC&from=2026-03-07T00:00:00Z&to=2026-03-09T23:00:00Z',
      'ella',
    )
    expect(utc.points.map((p) => [p.t, p.earnings_cents])).toEqual([
      ['2026-03-07T00:00:00+00:00', 0],
      ['2026-03-08T00:00:00+00:00', 150],
      ['2026-03-09T00:00:00+00:00', 350],
    ])
    const month = await getJson<{ points: Point[] }>(
      '/v1/me/earnings?interval=month&tz=America/New_York&from=2026-02-15T00:00:00Z&to=2026-03-20T00:00:00Z',
      'ella',
    )
    expect(month.points.map((p) => [p.t, p.earnings_cents, p.signups])).toEqual([
      ['2026-02-01T00:00:00-05:00', 0, 0],
      ['2026-03-01T00:00:00-05:00', 500, 3],
    ])
  })

  it('answers zeros for an empty range and 400 for a range too large or a bad zone', async () => {
    const empty = await getJson<{ points: Point[] }>(
      '/v1/me/earnings?interval=hour&tz=UTC&from=2026-01-01T00:00:00Z&to=2026-01-01T02:00:00Z',
      'ella',
    )
    expect(empty.points).toHaveLength(3)
    expect(empty.points.every((p) => p.earnings_cents === 0 && p.clicks === 0)).toBe(true)
    for (const q of [
      'interval=hour&from=2020-01-01T00:00:00Z&to=2026-01-01T00:00:00Z',
      'interval=day&tz=Mars/Olympus',
      'interval=fortnight',
      'from=2026-03-10T00:00:00Z&to=2026-03-01T00:00:00Z',
    ]) {
      const res = await api.get(`/v1/me/earnings?${q}`, await as('ella'))
      expect(res.status).toBe(400)
    }
  })

  it('shows a referrer only their own series', async () => {
    const q = 'interval=month&tz=UTC&from=2026-03-01T00:00:00Z&to=2026-03-31T00:00:00Z'
    const other = await getJson<{ points: Point[] }>(`/v1/me/earnings?${q}`, 'mallory')
    expect(other.points.map((p) => p.earnings_cents)).toEqual([0])
    const expired = await new SignJWT({})
      .setProtectedHeader({ alg: 'HS256' })
      .setSubject('ella')
      .setExpirationTime(Math.floor(Date.now() / 1000) - 60)
      .sign(new TextEncoder().encode(JWT_SECRET))
    const res = await api.get(`/v1/me/earnings?${q}`, { authorization: `Bearer ${expired}` })
    expect(res.status).toBe(401)
  })

  it('pages referred users, newest first, masked, by status', async () => {
    type Page = {
      referrals: Array<{
        user: string
        status: string
        purchases: number
        earnings_cents: number
        first_purchase_at: string | null
      }>
      next_cursor: string | null
    }
    const seen: Page['referrals'] = []
    let cursor: string | null = null
    for (let i = 0; i < 5; i++) {
      const page: Page = await getJson<Page>(
        `/v1/me/referrals?limit=1${cursor ? `&cursor=${cursor}` : ''}`,
        'ella',
      )
      seen.push(...page.referrals)
      cursor = page.next_cursor
      if (cursor === null) break
    }
    expect(seen.map((r) => [r.user, r.status, r.purchases, r.earnings_cents])).toEqual([
      ['bu…ee', 'pending', 0, 0],
      ['bu…wo', 'converted', 2, 350],
      ['bu…ne', 'converted', 2, 150],
    ])
    expect(seen[1]?.first_purchase_at).toBe('2026-03-09T03:30:00.000Z')
    const pending = await getJson<Page>('/v1/me/referrals?status=pending', 'ella')
    expect(pending.referrals.map((r) => r.user)).toEqual(['bu…ee'])
    expect((await api.get('/v1/me/referrals?cursor=nonsense', await as('ella'))).status).toBe(400)
  })

  it('says what Partner would have paid on Basic sales, and when cash would reach the minimum', async () => {
    const body = await getJson<{
      what_if_partner: {
        basic_sales_cents: number
        earned_as_basic_cents: number
        at_partner_rate_cents: number
        difference_cents: number
      }
      payout_forecast: { cash_balance_cents: number; reached: boolean; expected_date: string | null }
    }>('/v1/me/insights', 'ella')
    expect(body.what_if_partner).toEqual({
      basic_sales_cents: 10000,
      earned_as_basic_cents: 500,
      at_partner_rate_cents: 1000,
      difference_cents: 500,
    })
    expect(body.payout_forecast).toMatchObject({ cash_balance_cents: 0, reached: false, expected_date: null })
  })

  it('streams the stats at connect, again within a second of a change, and when the reports have it', async () => {
    const code = await codeFor(api, 'ella')
    const controller = new AbortController()
    const res = await fetch(`${svc.url}/v1/me/stream`, {
      headers: await as('ella'),
      signal: controller.signal,
    })
    expect(res.headers.get('content-type')).toMatch(/text\/event-stream/)
    const reader = res.body?.getReader()
    if (reader === undefined) throw new Error('no body')
    const decoder = new TextDecoder()
    let buffer = ''
    const nextStats = async (): Promise<{ total_clicks: number; reports_as_of: string | null }> => {
      for (;;) {
        const m = buffer.match(/event: stats\ndata: (.*)\n/)
        if (m?.[1] !== undefined) {
          buffer = buffer.slice((m.index ?? 0) + m[0].length)
          return JSON.parse(m[1]) as { total_clicks: number; reports_as_of: string | null }
        }
        const { value, done } = await reader.read()
        if (done) throw new Error('stream ended')
        buffer += decoder.decode(value, { stream: true })
      }
    }
    const seriesClicks = async () => {
      const res = await fetch(`${svc.url}/v1/me/earnings?interval=hour`, { headers: await as('ella') })
      const body = (await res.json()) as { points: Array<{ clicks: number }> }
      return body.points.reduce((a, p) => a + p.clicks, 0)
    }
    try {
      const first = await nextStats()
      const clicksBefore = await seriesClicks()
      const sent = Date.now()
      await api.post('/v1/events', { type: 'click', id: 'e-live', code, user_agent: BROWSER_UA })
      const next = await nextStats()
      expect(next.total_clicks).toBe(first.total_clicks + 1)
      expect(Date.now() - sent).toBeLessThan(1000)
      expect(svc.service.hub?.clients).toBe(1)
      expect(svc.service.hub?.held).toBe(1)
      // and again once the click is in ClickHouse, where the series reads it
      const stored = await nextStats()
      expect(stored.total_clicks).toBe(next.total_clicks)
      expect(Date.parse(stored.reports_as_of ?? '')).toBeGreaterThanOrEqual(sent)
      expect(await seriesClicks()).toBe(clicksBefore + 1)
    } finally {
      controller.abort()
    }
    // a client that went away is forgotten, also by what ends the streams at shutdown
    await eventually(async () => expect(svc.service.hub?.clients).toBe(0))
    await eventually(async () => expect(svc.service.hub?.held).toBe(0))
  })
})
