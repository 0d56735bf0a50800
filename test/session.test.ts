import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { type Http, http, tokenFor } from './support/client.ts'
import { startTestRedis, tempDir } from './support/env.ts'
import { startTestService } from './support/service.ts'

/** The dashboard's session: a token exchanged for an HttpOnly cookie, and the local demo login. */
describe('dashboard session', () => {
  const dir = tempDir()
  let redis: Awaited<ReturnType<typeof startTestRedis>>
  let svc: Awaited<ReturnType<typeof startTestService>>
  let api: Http

  beforeAll(async () => {
    redis = await startTestRedis(`${dir.path}/redis`)
    svc = await startTestService(`${dir.path}/data`, redis.url, { DEMO_LOGIN: 'true' })
    api = http(svc.url)
  })
  afterAll(async () => {
    await svc?.service.stop()
    await redis?.stop()
    dir.remove()
  })

  const cookieOf = (res: Response) => {
    const set = res.headers.getSetCookie().find((c) => c.startsWith('ra_session='))
    if (set === undefined) throw new Error('no session cookie')
    return { set, value: set.split(';')[0] ?? '' }
  }

  it('exchanges a token for an HttpOnly, SameSite cookie that authenticates the dashboard', async () => {
    const res = await api.get(`/session?token=${await tokenFor('vera')}&next=/referrals`, {
      authorization: '',
    })
    expect(res.status).toBe(302)
    expect(res.headers.get('location')).toBe('/referrals')
    const { set, value } = cookieOf(res)
    expect(set).toMatch(/HttpOnly/)
    expect(set).toMatch(/SameSite=Lax/)
    const me = await api.get('/v1/session', { authorization: '', cookie: value })
    expect(await me.json()).toEqual({ user_id: 'vera', role: 'referrer', demo: true })
    expect((await api.get('/v1/me/stats', { authorization: '', cookie: value })).status).toBe(200)
  })

  it('refuses a bad token and never redirects off the site', async () => {
    expect((await api.get('/session?token=garbage', { authorization: '' })).status).toBe(401)
    for (const next of ['//evil.example', 'https://evil.example', '/\\evil.example']) {
      const res = await api.get(`/session?token=${await tokenFor('vera')}&next=${encodeURIComponent(next)}`, {
        authorization: '',
      })
      expect(res.headers.get('location')).toBe('/')
    }
  })

  it('signs in locally as whichever user is named with the demo login, and logs out', async () => {
    const res = await api.get('/demo-login?user=demo-admin&role=admin&next=/admin', { authorization: '' })
    expect(res.status).toBe(302)
    const { value } = cookieOf(res)
    expect((await api.get('/v1/admin/credits', { authorization: '', cookie: value })).status).toBe(200)
    const out = await api.post('/v1/session/logout', '', { authorization: '', cookie: value })
    expect(out.status).toBe(204)
    expect(out.headers.getSetCookie().join(';')).toMatch(/ra_session=;/)
  })

  it('serves the API reference page and its OpenAPI document', async () => {
    const docs = await api.get('/docs', { authorization: '' })
    expect(docs.status).toBe(200)
    expect(await docs.text()).toContain('/openapi.json')
    const spec = (await (await api.get('/openapi.json', { authorization: '' })).json()) as {
      openapi: string
      paths: object
    }
    expect(spec.openapi).toBe('3.1.0')
    expect(Object.keys(spec.paths)).toContain('/v1/events')
  })
})
