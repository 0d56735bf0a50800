import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { codeFor, type Http, http, tokenFor } from './support/client.ts'
import { startTestRedis, tempDir } from './support/env.ts'
import { drained, startTestService } from './support/service.ts'

const IPHONE =
  'Mozilla/5.0 (iPhone; CPU iPhone OS 17_0 like Mac OS X) AppleWebKit/605.1.15 (KHTML, like Gecko) Version/17.0 Mobile/15E148 Safari/604.1'
const CHROME =
  'Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/120.0 Safari/537.36'
const FIREFOX = 'Mozilla/5.0 (X11; Linux x86_64; rv:120.0) Gecko/20100101 Firefox/120.0'
// a world two days old: recent enough that the signup credit is still good
const DAY_MS = 86_400_000
const dayOf = (offset: number) => new Date(Date.now() + offset * DAY_MS).toISOString().slice(0, 10)
const [BEFORE, DAY, AFTER] = [dayOf(-3), dayOf(-2), dayOf(-1)]
const RANGE = `from=${BEFORE}T00:00:00Z&to=${AFTER}T23:00:00Z`

/** The growth team's reports over a small seeded world whose numbers are known. */
describe('growth team endpoints', () => {
  const dir = tempDir()
  let redis: Awaited<ReturnType<typeof startTestRedis>>
  let svc: Awaited<ReturnType<typeof startTestService>>
  let api: Http
  let admin: Record<string, string>

  beforeAll(async () => {
    redis = await startTestRedis(`${dir.path}/redis`)
    svc = await startTestService(`${dir.path}/data`, redis.url)
    api = http(svc.url)
    admin = { authorization: `Bearer ${await tokenFor('growth', { role: 'admin' })}` }
    const ana = await codeFor(api, 'ana')
    const ben = await codeFor(api, 'ben')
    const at = (h: number) => `${DAY}T${String(h).padStart(2, '0')}:00:00Z`
    const click = (
      id: string,
      code: string,
      visitor: string,
      ua: string,
      extra: Record<string, string> = {},
    ) => ({
      type: 'click',
      id,
      code,
      visitor_id: visitor,
      user_agent: ua,
      ts: at(8),
      ...extra,
    })
    const res = await api.post('/v1/events', {
      events: [
        click('k1', ana, 'v1', IPHONE, {
          utm_source: 'twitter',
          referrer: 'https://www.twitter.com/x',
          country: 'fr',
        }),
        click('k2', ana, 'v2', CHROME, { utm_source: 'twitter', country: 'US' }),
        click('k3', ana, 'v3', FIREFOX, { utm_source: 'newsletter' }),
        click('k4', ana, 'v4', CHROME, { utm_source: '=HYPERLINK("x")' }),
        click('k5', ben, 'v5', CHROME),
        click('k6', ben, 'v6', 'Googlebot/2.1 (+http://www.google.com/bot.html)'),
        { type: 'signup', id: 's1', user_id: 'u1', visitor_id: 'v1', ts: at(9) },
        { type: 'signup', id: 's2', user_id: 'u2', visitor_id: 'v2', ts: at(9) },
        { type: 'signup', id: 's5', user_id: 'u5', visitor_id: 'v5', ts: at(9) },
        { type: 'signup', id: 's9', user_id: 'u9', ts: at(9) }, // came by itself
        { type: 'purchase', id: 'p1', user_id: 'u1', amount_cents: 2000, ts: at(11) }, // ana +100
        { type: 'purchase', id: 'p5', user_id: 'u5', amount_cents: 3000, ts: at(12) }, // ben +150
        { type: 'purchase', id: 'p6', user_id: 'u5', amount_cents: 1000, ts: at(13) }, // ben +50
        { type: 'purchase', id: 'p9', user_id: 'u9', amount_cents: 500, ts: at(13) }, // not referred
      ],
    })
    expect(res.status).toBe(202)
    await drained(svc.service)
    expect((await api.post('/v1/users/u1/wallet/spend', { id: 'o1', amount_cents: 100 })).status).toBe(200)
    await drained(svc.service)
  })
  afterAll(async () => {
    await svc?.service.stop()
    await redis?.stop()
    dir.remove()
  })

  const get = async <T>(path: string): Promise<T> => {
    const res = await api.get(path, admin)
    expect(res.status).toBe(200)
    return (await res.json()) as T
  }

  it('lets in only an admin token', async () => {
    expect((await api.get('/v1/admin/overview')).status).toBe(401)
    const referrer = { authorization: `Bearer ${await tokenFor('ana')}` }
    for (const path of [
      '/v1/admin/overview',
      `/v1/admin/referrers?${RANGE}`,
      '/v1/admin/export.csv?report=credits',
    ]) {
      expect((await api.get(path, referrer)).status).toBe(403)
    }
  })

  it('draws the time series from the rollup, every bucket present', async () => {
    const body = await get<{ points: Array<Record<string, string | number>> }>(
      `/v1/admin/timeseries?interval=day&${RANGE}`,
    )
    expect(
      body.points.map((p) => [p.t, p.clicks, p.signups, p.conversions, p.revenue_cents, p.commission_cents]),
    ).toEqual([
      [`${BEFORE}T00:00:00+00:00`, 0, 0, 0, 0, 0],
      [`${DAY}T00:00:00+00:00`, 5, 3, 2, 6500, 300],
      [`${AFTER}T00:00:00+00:00`, 0, 0, 0, 0, 0],
    ])
  })

  it('gives the overview with the live counters', async () => {
    const body = await get<{ live: Record<string, number>; periods: Array<Record<string, number | string>> }>(
      '/v1/admin/overview',
    )
    expect(body.live).toEqual({ clicks: 5, signups: 3, conversions: 2, earnings_cents: 300 })
    expect(body.periods[0]).toMatchObject({
      period: 'all',
      clicks: 5,
      signups: 3,
      conversions: 2,
      revenue_cents: 6500,
    })
  })

  it('ranks referrers by earnings, conversions or conversion rate', async () => {
    const byEarnings = await get<{ referrers: Array<Record<string, string | number>> }>(
      `/v1/admin/referrers?by=earnings&${RANGE}`,
    )
    expect(
      byEarnings.referrers.map((r) => [r.referrer_id, r.commission_cents, r.signups, r.conversions]),
    ).toEqual([
      ['ben', 200, 1, 1],
      ['ana', 100, 2, 1],
    ])
    const byRate = await get<{ referrers: Array<Record<string, string | number>> }>(
      `/v1/admin/referrers?by=conversion_rate&${RANGE}`,
    )
    expect(byRate.referrers.map((r) => [r.referrer_id, r.conversion_rate])).toEqual([
      ['ben', 1],
      ['ana', 0.5],
    ])
    expect((await api.get(`/v1/admin/referrers?by=vibes&${RANGE}`, admin)).status).toBe(400)
  })

  it('runs the funnel with windowFunnel and says how long buyers took', async () => {
    const body = await get<{
      steps: Array<{ step: string; visitors: number }>
      time_to_convert: Array<{ bucket: string; buyers: number }>
    }>(`/v1/admin/funnel?window=86400&${RANGE}`)
    expect(body.steps.map((s) => [s.step, s.visitors])).toEqual([
      ['click', 5],
      ['signup', 3],
      ['first_purchase', 2],
    ])
    expect(body.time_to_convert.find((b) => b.bucket === '1-24 hours')?.buyers).toBe(2)
    const tight = await get<{ steps: Array<{ step: string; visitors: number }> }>(
      `/v1/admin/funnel?window=3600&${RANGE}`,
    )
    // the purchases came 2 and 3 hours after the clicks: outside a one-hour window
    expect(tight.steps.map((s) => s.visitors)).toEqual([5, 3, 0])
  })

  it('breaks clicks down by source, device, browser, country and referrer domain', async () => {
    type B = { rows: Array<{ value: string; clicks: number; signups: number; conversions: number }> }
    const utm = await get<B>(`/v1/admin/breakdown?by=utm_source&${RANGE}`)
    expect(utm.rows.find((r) => r.value === 'twitter')).toEqual({
      value: 'twitter',
      clicks: 2,
      signups: 2,
      conversions: 1,
    })
    expect(utm.rows.find((r) => r.value === 'newsletter')).toEqual({
      value: 'newsletter',
      clicks: 1,
      signups: 0,
      conversions: 0,
    })
    const device = await get<B>(`/v1/admin/breakdown?by=device&${RANGE}`)
    expect(device.rows.map((r) => [r.value, r.clicks])).toEqual([
      ['desktop', 4],
      ['mobile', 1],
    ])
    const browser = await get<B>(`/v1/admin/breakdown?by=browser&${RANGE}`)
    expect(browser.rows.map((r) => [r.value, r.clicks])).toEqual([
      ['Chrome', 3],
      ['Firefox', 1],
      ['Safari', 1],
    ])
    const country = await get<B>(`/v1/admin/breakdown?by=country&${RANGE}`)
    expect(country.rows.map((r) => [r.value, r.clicks])).toEqual([
      ['', 3],
      ['FR', 1],
      ['US', 1],
    ])
    const domain = await get<B>(`/v1/admin/breakdown?by=referrer_domain&${RANGE}`)
    expect(domain.rows.find((r) => r.value === 'twitter.com')?.clicks).toBe(1)
    expect((await api.get(`/v1/admin/breakdown?by=shoe_size&${RANGE}`, admin)).status).toBe(400)
  })

  it('follows the signup credit: granted, used, expired, and conversion with and without using it', async () => {
    const body = await get<{
      lifecycle: Array<Record<string, number>>
      effect: Array<Record<string, number | string>>
    }>('/v1/admin/credits')
    expect(body.lifecycle[0]).toEqual({
      granted_cents: 750,
      granted_credits: 3,
      used_cents: 100,
      expired_cents: 0,
      open_cents: 650,
    })
    expect(body.effect).toEqual([
      { used_credit: 'yes', users: 1, converted: 1, conversion_rate: 1 },
      { used_credit: 'no', users: 2, converted: 1, conversion_rate: 0.5 },
    ])
  })

  it('exports any report as CSV, with formula-looking cells defused', async () => {
    const res = await api.get(`/v1/admin/export.csv?report=breakdown&by=utm_source&${RANGE}`, admin)
    expect(res.status).toBe(200)
    expect(res.headers.get('content-type')).toMatch(/text\/csv/)
    const lines = (await res.text()).trim().split('\r\n')
    expect(lines[0]).toBe('value,clicks,signups,conversions')
    expect(lines).toContain('twitter,2,2,1')
    expect(lines).toContain(`"'=HYPERLINK(""x"")",1,0,0`)
    const ts = await api.get(`/v1/admin/export.csv?report=timeseries&interval=day&${RANGE}`, admin)
    expect((await ts.text()).split('\r\n')[0]).toBe(
      't,clicks,signups,conversions,revenue_cents,commission_cents',
    )
    expect((await api.get('/v1/admin/export.csv', admin)).status).toBe(400)
  })
})
