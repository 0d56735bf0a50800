import { connect } from 'node:net'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { BROWSER_UA, codeFor, type Http, http, tokenFor } from './support/client.ts'
import { INGEST_KEY, startTestRedis, tempDir } from './support/env.ts'
import { count, drained, type Service, startTestService } from './support/service.ts'

/** What a raw socket gets back: the status line's code, or null when the server just closed. */
function rawRequest(
  port: number,
  chunks: string[],
  everyMs: number,
): Promise<{ status: number | null; ms: number }> {
  return new Promise((resolve) => {
    const started = Date.now()
    const socket = connect(port, '127.0.0.1')
    let answer = ''
    let i = 0
    const timer = setInterval(() => {
      const c = chunks[i++]
      if (c === undefined) return
      if (!socket.destroyed) socket.write(c)
    }, everyMs)
    socket.on('data', (d) => {
      answer += d.toString('latin1')
    })
    const done = () => {
      clearInterval(timer)
      const m = answer.match(/^HTTP\/1\.1 (\d{3})/)
      resolve({ status: m?.[1] === undefined ? null : Number(m[1]), ms: Date.now() - started })
    }
    socket.on('close', done)
    socket.on('error', () => {})
  })
}

/** Hostile requests: slow, deep, huge, not UTF-8, SQL in every field, another user's ids. */
describe('hostile input', () => {
  const dir = tempDir()
  let redis: Awaited<ReturnType<typeof startTestRedis>>
  let svc: Awaited<ReturnType<typeof startTestService>>
  let service: Service
  let api: Http
  let port: number
  let code: string

  const jobsQueued = async () => {
    const q = service.queue
    if (q === null) throw new Error('no queue')
    const c = await q.getJobCounts('wait', 'active', 'delayed', 'completed', 'failed', 'prioritized')
    return Object.values(c).reduce((a, b) => a + b, 0) + (service.committer?.stats.batches ?? 0)
  }

  beforeAll(async () => {
    redis = await startTestRedis(`${dir.path}/redis`)
    svc = await startTestService(`${dir.path}/data`, redis.url, { REQUEST_TIMEOUT_MS: '1000' })
    service = svc.service
    api = http(svc.url)
    port = Number(new URL(svc.url).port)
    code = await codeFor(api, 'owner')
    await drained(service)
  })
  afterAll(async () => {
    await service?.stop()
    await redis?.stop()
    dir.remove()
  })

  it('answers 408 to a body that trickles in, and to headers that never end, and queues nothing', async () => {
    const before = await jobsQueued()
    const body = JSON.stringify({ type: 'click', code })
    const head =
      `POST /v1/events HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer ${INGEST_KEY}\r\n` +
      `Content-Type: application/json\r\nContent-Length: ${body.length}\r\n\r\n`
    const slowBody = await rawRequest(port, [head, ...body.split('')], 200)
    expect(slowBody.status).toBe(408)
    expect(slowBody.ms).toBeLessThan(5_000)
    const slowHeaders = await rawRequest(
      port,
      ['POST /v1/events HTTP/1.1\r\n', ...'Host: example\r\n'.split('')],
      200,
    )
    expect(slowHeaders.status).toBe(408)
    expect(await jobsQueued()).toBe(before)
    // the server still answers everyone else
    expect((await api.post('/v1/events', { type: 'click', code, user_agent: BROWSER_UA })).status).toBe(202)
  })

  it('refuses deeply nested JSON and huge arrays with a 4xx', async () => {
    await drained(service)
    const before = await jobsQueued()
    const deep = `${'['.repeat(300_000)}${']'.repeat(300_000)}`
    expect((await api.post('/v1/events', deep)).status).toBe(400)
    const deepField = `{"type":"click","code":"${code}","url":${'['.repeat(100_000)}${']'.repeat(100_000)}}`
    expect((await api.post('/v1/events', deepField)).status).toBe(400)
    const hugeArray = `{"events":[${Array.from({ length: 250_000 }, () => '1').join(',')}]}`
    const huge = await api.post('/v1/events', hugeArray)
    expect(huge.status).toBeGreaterThanOrEqual(400)
    expect(huge.status).toBeLessThan(500)
    const hugeField = { type: 'click', code, url: 'x'.repeat(900_000) }
    expect((await api.post('/v1/events', hugeField)).status).toBe(400)
    expect(await jobsQueued()).toBe(before)
  })

  it('refuses bodies that are not UTF-8 instead of storing replacement characters', async () => {
    await drained(service)
    const before = await jobsQueued()
    const bytes = Buffer.concat([
      Buffer.from(`{"type":"click","code":"${code}","visitor_id":"`),
      Buffer.from([0xff, 0xfe, 0xc3]),
      Buffer.from('"}'),
    ])
    const res = await fetch(`${svc.url}/v1/events`, {
      method: 'POST',
      headers: { authorization: `Bearer ${INGEST_KEY}`, 'content-type': 'application/json' },
      body: bytes,
    })
    expect(res.status).toBe(400)
    expect(((await res.json()) as { error: { message: string } }).error.message).toMatch(/UTF-8/)
    expect(await jobsQueued()).toBe(before)
  })

  it('stores SQL-looking strings in every field as they are, and reads them back through bound parameters', async () => {
    const nasty = [
      "'); DROP TABLE events; --",
      '" OR 1=1 --',
      "\\'; SELECT * FROM system.users; --",
      '{u:String} {from:Int64}',
      "x' UNION ALL SELECT 1 --",
    ]
    const events = nasty.flatMap((s, i) => [
      {
        type: 'click',
        id: `sql-c${i}-${s}`,
        code,
        visitor_id: `v-${s}`,
        url: `https://x.test/?q=${s}`,
        referrer: s,
        utm_source: s,
        utm_medium: s,
        utm_campaign: s,
        user_agent: `${BROWSER_UA} ${s}`,
      },
      { type: 'signup', id: `sql-s${i}-${s}`, user_id: `u-${s}`, visitor_id: `v-${s}` },
      { type: 'purchase', id: `sql-p${i}-${s}`, user_id: `u-${s}`, amount_cents: 1000, plan: s },
    ])
    expect((await api.post('/v1/events', { events })).status).toBe(202)
    await drained(service)
    for (const [i, s] of nasty.entries()) {
      const [row] = await svc.ch.client
        .query({
          query:
            'SELECT visitor_id, url, referrer_url, utm_source, utm_campaign FROM events WHERE id = {id:String}',
          query_params: { id: `sql-c${i}-${s}` },
          format: 'JSONEachRow',
        })
        .then((r) => r.json<Record<string, string>>())
      expect(row).toEqual({
        visitor_id: `v-${s}`,
        url: `https://x.test/?q=${s}`,
        referrer_url: s,
        utm_source: s,
        utm_campaign: s,
      })
      expect(
        await count(
          svc.ch,
          'SELECT count() AS n FROM events WHERE user_id = {u:String} AND referrer_id = {r:String}',
          {
            u: `u-${s}`,
            r: 'owner',
          },
        ),
      ).toBe(2)
    }
    // the tables are all still there, and the referrer's own views see the referrals
    expect(await count(svc.ch, "SELECT count() AS n FROM events WHERE type = 'signup' AND counted = 1")).toBe(
      5,
    )
    const me = { authorization: `Bearer ${await tokenFor('owner')}` }
    const refs = (await (await api.get('/v1/me/referrals', me)).json()) as { referrals: unknown[] }
    expect(refs.referrals).toHaveLength(5)
    const admin = { authorization: `Bearer ${await tokenFor('growth', { role: 'admin' })}` }
    const by = (await (await api.get('/v1/admin/breakdown?by=utm_source', admin)).json()) as {
      rows: Array<{ value: string }>
    }
    expect(by.rows.map((r) => r.value)).toEqual(expect.arrayContaining(nasty))
    // a user id that looks like SQL is just a user
    const odd = { authorization: `Bearer ${await tokenFor(nasty[0] ?? '')}` }
    expect((await api.get('/v1/me/stats', odd)).status).toBe(200)
    expect((await api.get(`/v1/admin/funnel?from=${encodeURIComponent("0' OR 1=1")}`, admin)).status).toBe(
      400,
    )
  })

  it("never shows a referrer another user's data", async () => {
    const mallory = { authorization: `Bearer ${await tokenFor('mallory')}` }
    // the wallet routes take the ingest key, not a referrer's token
    expect((await api.get('/v1/users/owner/wallet', mallory)).status).toBe(401)
    // the referrer routes read only the token's own user, whatever the query says
    const stats = (await (await api.get('/v1/me/stats?user_id=owner', mallory)).json()) as {
      total_referrals: number
    }
    expect(stats.total_referrals).toBe(0)
    const refs = (await (await api.get('/v1/me/referrals?user=owner', mallory)).json()) as {
      referrals: unknown[]
    }
    expect(refs.referrals).toEqual([])
    for (const path of [
      '/v1/admin/overview',
      '/v1/admin/holds',
      '/v1/admin/webhooks/deliveries',
      '/admin/queues',
    ]) {
      expect((await api.get(path, mallory)).status).toBe(403)
    }
  })
})
