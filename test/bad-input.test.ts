import { SignJWT } from 'jose'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { codeFor, type Http, http, tokenFor } from './support/client.ts'
import { INGEST_KEY, JWT_SECRET, startTestRedis, tempDir } from './support/env.ts'
import { drained, type Service, startTestService } from './support/service.ts'

interface ErrorBody {
  error: { code: string; message: string; details: Array<{ index?: number; path: string; message: string }> }
}

/** Every kind of bad request gets a clear 4xx and queues nothing. */
describe('bad input', () => {
  const dir = tempDir()
  let redis: Awaited<ReturnType<typeof startTestRedis>>
  let service: Service & { committerBatches(): number }
  let api: Http
  let code: string

  const jobsQueued = async () => {
    const q = service.queue
    if (q === null) throw new Error('no queue')
    const c = await q.getJobCounts('wait', 'active', 'delayed', 'completed', 'failed', 'prioritized')
    return Object.values(c).reduce((a, b) => a + b, 0) + service.committerBatches()
  }

  beforeAll(async () => {
    redis = await startTestRedis(`${dir.path}/redis`)
    const svc = await startTestService(`${dir.path}/data`, redis.url)
    service = Object.assign(svc.service, {
      committerBatches: () => svc.service.committer?.stats.batches ?? 0,
    })
    api = http(svc.url)
    code = await codeFor(api, 'owner')
    await drained(svc.service)
  })
  afterAll(async () => {
    await service?.stop()
    await redis?.stop()
    dir.remove()
  })

  const expectRefused = async (res: Response, status: number, errorCode: string) => {
    expect(res.status).toBe(status)
    const body = (await res.json()) as ErrorBody
    expect(body.error.code).toBe(errorCode)
    expect(body.error.message.length).toBeGreaterThan(5)
    return body
  }

  it('refuses invalid JSON', async () => {
    const before = await jobsQueued()
    await expectRefused(await api.post('/v1/events', '{"type":"click",'), 400, 'invalid_json')
    expect(await jobsQueued()).toBe(before)
  })

  it('refuses a body that is not JSON', async () => {
    const res = await api.post('/v1/events', 'type=click', {
      'content-type': 'application/x-www-form-urlencoded',
    })
    await expectRefused(res, 415, 'unsupported_media_type')
  })

  it('refuses a whole batch with one detail per problem when any event is invalid', async () => {
    const before = await jobsQueued()
    const res = await api.post('/v1/events', {
      events: [
        { type: 'click', code },
        { type: 'clack', code },
        { type: 'purchase', id: 'p', user_id: 'u', amount_cents: 12.5 },
        { type: 'purchase', id: 'p', user_id: 'u' },
        { type: 'signup', user_id: 'x'.repeat(129) },
        { type: 'click', code: 'ILOU0000' },
        { type: 'refund', id: 'r', purchase_id: 'p', amount_cents: -1 },
        { type: 'purchase', id: 'p2', user_id: 'u', amount_cents: 100, currency: 'eur' },
        { type: 'click', code, ts: 'yesterday' },
      ],
    })
    const body = await expectRefused(res, 400, 'validation_failed')
    const at = (index: number) => body.error.details.filter((d) => d.index === index)
    expect(at(0)).toEqual([])
    expect(at(1)[0]?.path).toBe('type')
    expect(at(2)[0]).toMatchObject({ path: 'amount_cents' })
    expect(at(3)[0]).toMatchObject({ path: 'amount_cents', message: 'required' })
    expect(at(4)[0]).toMatchObject({ path: 'user_id', message: 'at most 128 characters' })
    expect(at(5)[0]?.path).toBe('code')
    expect(at(6)[0]?.path).toBe('amount_cents')
    expect(at(7)[0]?.path).toBe('currency')
    expect(at(8)[0]?.path).toBe('ts')
    expect(new Set(body.error.details.map((d) => d.index))).toEqual(new Set([1, 2, 3, 4, 5, 6, 7, 8]))
    expect(await jobsQueued()).toBe(before)
  })

  it('refuses more than 1000 events in one request', async () => {
    const before = await jobsQueued()
    const events = Array.from({ length: 1001 }, () => ({ type: 'click', code }))
    await expectRefused(await api.post('/v1/events', { events }), 413, 'payload_too_large')
    expect(await jobsQueued()).toBe(before)
  })

  it('refuses a body over 1 MiB', async () => {
    const before = await jobsQueued()
    const big = { type: 'click', code, url: 'x'.repeat(1024 * 1024) }
    await expectRefused(await api.post('/v1/events', big), 413, 'payload_too_large')
    expect(await jobsQueued()).toBe(before)
  })

  it('refuses an empty batch and a batch that is not an array', async () => {
    await expectRefused(await api.post('/v1/events', { events: [] }), 400, 'validation_failed')
    await expectRefused(await api.post('/v1/events', { events: { type: 'click' } }), 400, 'validation_failed')
    await expectRefused(await api.post('/v1/events', [{ type: 'click', code }]), 400, 'validation_failed')
  })

  it('refuses a missing or wrong ingest key', async () => {
    const before = await jobsQueued()
    await expectRefused(
      await api.post('/v1/events', { type: 'click', code }, { authorization: '' }),
      401,
      'unauthorized',
    )
    const wrong = { authorization: `Bearer ${INGEST_KEY}x` }
    await expectRefused(await api.post('/v1/events', { type: 'click', code }, wrong), 401, 'unauthorized')
    const jwt = { authorization: `Bearer ${await tokenFor('owner')}` }
    await expectRefused(await api.post('/v1/events', { type: 'click', code }, jwt), 401, 'unauthorized')
    expect(await jobsQueued()).toBe(before)
  })

  it('refuses referrer routes without a valid HS256 token with exp', async () => {
    const none = `${Buffer.from('{"alg":"none"}').toString('base64url')}.${Buffer.from(
      JSON.stringify({ sub: 'owner', exp: Math.floor(Date.now() / 1000) + 60 }),
    ).toString('base64url')}.`
    const wrongKey = await tokenFor('owner', {}, 'another-secret-0123456789abcdef0123456789')
    // the right secret under another algorithm (HS512): the algorithm is pinned
    const otherAlg = await new SignJWT({})
      .setProtectedHeader({ alg: 'HS512' })
      .setSubject('owner')
      .setExpirationTime('1h')
      .sign(new TextEncoder().encode(JWT_SECRET))
    const noExp = await new SignJWT({})
      .setProtectedHeader({ alg: 'HS256' })
      .setSubject('owner')
      .sign(new TextEncoder().encode(JWT_SECRET))
    const badRole = await tokenFor('owner', { role: 'superuser' })
    for (const token of [none, wrongKey, otherAlg, noExp, badRole, 'garbage']) {
      const res = await api.get('/v1/me/stats', { authorization: `Bearer ${token}` })
      await expectRefused(res, 401, 'unauthorized')
    }
    await expectRefused(await api.get('/v1/me/stats'), 401, 'unauthorized')
  })

  it('answers 503 with a clear message for Stripe features when Stripe is not configured', async () => {
    const asOwner = { authorization: `Bearer ${await tokenFor('owner')}` }
    for (const res of [
      await api.post('/v1/me/partner', {}, asOwner),
      await api.post('/v1/me/payouts', {}, asOwner),
      await api.post('/v1/webhooks/stripe', '{}', { authorization: '' }),
    ]) {
      const body = await expectRefused(res, 503, 'unavailable')
      expect(body.error.message).toMatch(/STRIPE_SECRET_KEY/)
    }
  })

  it('has no demo login when the JWT secret is configured', async () => {
    const res = await api.get('/demo-login?user=owner', { authorization: '' })
    expect(res.status).toBe(404)
    expect(res.headers.getSetCookie()).toEqual([])
  })
})
