import fc from 'fast-check'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { codeFor, type Http, http, tokenFor } from './support/client.ts'
import { startTestRedis, tempDir } from './support/env.ts'
import { drained, type Service, startTestService } from './support/service.ts'

/** generated requests per endpoint group; `npm run test:fuzz` runs 10,000 (the issue-7 figure) */
const RUNS = Number(process.env.FUZZ_RUNS ?? 1500)
const TIMEOUT = 60_000 + RUNS * 30

/**
 * Generated bodies, headers and query strings against the public, ingest and dashboard
 * endpoints: never a 5xx, and a request refused with a 4xx queues nothing.
 */
describe('fuzzing the HTTP surface', () => {
  const dir = tempDir()
  let redis: Awaited<ReturnType<typeof startTestRedis>>
  let service: Service
  let api: Http
  let token: string
  let code: string
  let landingUrl: string

  beforeAll(async () => {
    redis = await startTestRedis(`${dir.path}/redis`)
    const svc = await startTestService(`${dir.path}/data`, redis.url, {
      CLICK_RATE_LIMIT_PER_MINUTE: '1000000',
    })
    service = svc.service
    api = http(svc.url)
    landingUrl = svc.config.landingUrl
    token = await tokenFor('fuzz-user')
    code = await codeFor(api, 'fuzz-user')
  })
  afterAll(async () => {
    await service?.stop()
    await redis?.stop()
    dir.remove()
  })

  const queued = () => service.committer?.stats.events ?? 0

  // values that are almost events: right keys, wrong or odd values, SQL and control characters
  const nasty = fc.oneof(
    fc.string(),
    fc.constantFrom(
      "'; DROP TABLE events; --",
      '\u0000',
      '\r\nLocation: http://evil.example',
      '{"a":',
      '∞',
      '%00',
      'NaN',
    ),
    fc.integer(),
    fc.double(),
    fc.boolean(),
    fc.constant(null),
  )
  const eventish = () =>
    fc.record(
      {
        type: fc.oneof(fc.constantFrom('click', 'signup', 'purchase', 'refund', 'spend'), fc.string()),
        id: nasty,
        code: fc.oneof(fc.constant(code), nasty),
        user_id: nasty,
        amount_cents: fc.oneof(fc.integer({ min: -10, max: 10_000 }), nasty),
        purchase_id: nasty,
        ts: fc.oneof(
          fc.date({ noInvalidDate: true }).map((d) => d.toISOString()),
          nasty,
        ),
      },
      { requiredKeys: [] },
    )
  const body = () =>
    fc.oneof(
      eventish(),
      fc.record({ events: fc.oneof(fc.array(eventish(), { maxLength: 5 }), nasty) }),
      fc.jsonValue(),
      fc.string().map((s) => ({ raw: s })),
    )

  it(
    'POST /v1/events: no 5xx; a 4xx queues nothing',
    async () => {
      await fc.assert(
        fc.asyncProperty(body(), fc.boolean(), async (b, asText) => {
          const before = queued()
          const payload = asText ? JSON.stringify(b).slice(0, -1) : b // sometimes cut short: invalid JSON
          const res = await api.post('/v1/events', payload)
          expect(res.status).toBeLessThan(500)
          await res.arrayBuffer()
          if (res.status >= 400) expect(queued()).toBe(before)
        }),
        { numRuns: RUNS },
      )
      await drained(service)
    },
    TIMEOUT,
  )

  it(
    'the public beacon, the wallet and the short link: no 5xx',
    async () => {
      await fc.assert(
        fc.asyncProperty(body(), fc.string({ maxLength: 40 }), async (b, path) => {
          // every answer is read to its end: an unread body holds its connection until GC
          const beacon = await api.post('/v1/track/click', b, { authorization: '' })
          expect(beacon.status).toBeLessThan(500)
          await beacon.arrayBuffer()
          const spend = await api.post(`/v1/users/${encodeURIComponent(path || 'u')}/wallet/spend`, b)
          expect(spend.status).toBeLessThan(500)
          await spend.arrayBuffer()
          // a prefix keeps '.' and '..' from being resolved away by the URL parser
          const r = await api.get(`/r/c${encodeURIComponent(path)}`, { authorization: '' })
          expect(r.status).toBeLessThan(500)
          const location = r.headers.get('location')
          // whatever the code, the redirect goes nowhere but the landing page
          expect(r.status).toBe(302)
          expect(location?.startsWith(landingUrl)).toBe(true)
          await r.arrayBuffer()
        }),
        { numRuns: Math.ceil(RUNS / 3) },
      )
    },
    TIMEOUT,
  )

  it(
    'query strings on the dashboard endpoints: no 5xx',
    async () => {
      const auth = { authorization: `Bearer ${token}` }
      const admin = { authorization: `Bearer ${await tokenFor('fuzz-admin', { role: 'admin' })}` }
      const params = fc.dictionary(
        fc.constantFrom(
          'from',
          'to',
          'interval',
          'tz',
          'status',
          'cursor',
          'limit',
          'by',
          'window',
          'report',
        ),
        fc.oneof(
          fc.string(),
          fc.integer().map(String),
          fc.constantFrom('Europe/Paris', 'day', 'hour', '2026-01-01T00:00:00Z'),
        ),
      )
      await fc.assert(
        fc.asyncProperty(params, async (p) => {
          const q = new URLSearchParams(p).toString()
          for (const [path, headers] of [
            ['/v1/me/earnings', auth],
            ['/v1/me/referrals', auth],
            ['/v1/admin/funnel', admin],
            ['/v1/admin/breakdown', admin],
            ['/v1/admin/export.csv', admin],
          ] as const) {
            const res = await api.get(`${path}?${q}`, headers)
            expect(res.status, `${path}?${q}`).toBeLessThan(500)
            await res.arrayBuffer()
          }
        }),
        { numRuns: Math.ceil(RUNS / 5) },
      )
    },
    TIMEOUT,
  )
})
