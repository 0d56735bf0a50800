import {
  encodeEvents,
  eventInput,
  INGEST_JOB_OPTIONS,
  makeKeys,
  makeLogger,
  makeRedis,
  settleEvent,
  whenReady,
} from '@referral/core'
import { startRedisServer, startService } from '@referral/server'
import { Queue } from 'bullmq'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { tokenFor } from './support/client.ts'
import { startTestRedis, tempDir, testConfig } from './support/env.ts'

interface LogLine {
  level: number
  msg: string
  req_id?: string
  method?: string
  path?: string
  status?: number
  ms?: number
  err?: string
}

/** Request ids, one JSON log line per request, and the queue dashboard behind admin auth. */
describe('operations over HTTP', () => {
  const dir = tempDir()
  const lines: LogLine[] = []
  let redis: Awaited<ReturnType<typeof startTestRedis>>
  let svc: Awaited<ReturnType<typeof startService>>
  let url: string

  beforeAll(async () => {
    redis = await startTestRedis(`${dir.path}/redis`)
    const config = testConfig(`${dir.path}/data`, { REDIS_URL: redis.url, LOG_LEVEL: 'info' })
    const log = makeLogger(config, { write: (s: string) => lines.push(JSON.parse(s) as LogLine) })
    svc = await startService({ config, role: 'all', log })
    url = svc.url ?? ''
  })
  afterAll(async () => {
    await svc?.stop()
    await redis?.stop()
    dir.remove()
  })

  const requestLines = (id: string) => lines.filter((l) => l.msg === 'request' && l.req_id === id)

  it('keeps a sane incoming request id, echoes it and logs the request once with it', async () => {
    const res = await fetch(`${url}/healthz`, { headers: { 'x-request-id': 'lb-7f3a_01=' } })
    expect(res.status).toBe(200)
    expect(res.headers.get('x-request-id')).toBe('lb-7f3a_01=')
    const [line, ...more] = requestLines('lb-7f3a_01=')
    expect(more).toEqual([])
    expect(line).toMatchObject({ method: 'GET', path: '/healthz', status: 200, level: 30 })
    expect(line?.ms).toBeGreaterThanOrEqual(0)
  })

  it('replaces an unusable incoming id with a generated one', async () => {
    for (const bad of ['<script>', 'a b', 'x'.repeat(129)]) {
      const res = await fetch(`${url}/healthz`, { headers: { 'x-request-id': bad } })
      const id = res.headers.get('x-request-id') ?? ''
      expect(id).toMatch(/^[0-9a-f-]{36}$/)
      expect(requestLines(id)).toHaveLength(1)
      expect(lines.some((l) => l.req_id === bad)).toBe(false)
    }
  })

  it('gives every request its own id and logs refusals with their status', async () => {
    const a = await fetch(`${url}/v1/me/stats`)
    const b = await fetch(`${url}/v1/me/stats`)
    const [ida, idb] = [a.headers.get('x-request-id') ?? '', b.headers.get('x-request-id') ?? '']
    expect(ida).not.toBe(idb)
    expect(requestLines(ida)[0]).toMatchObject({ method: 'GET', path: '/v1/me/stats', status: 401 })
  })

  it('shows the queue dashboard to an admin only', async () => {
    const referrer = await tokenFor('ana')
    const admin = await tokenFor('growth', { role: 'admin' })
    for (const path of ['/admin/queues', '/admin/queues/api/queues']) {
      expect((await fetch(url + path)).status).toBe(401)
      const asReferrer = await fetch(url + path, { headers: { authorization: `Bearer ${referrer}` } })
      expect(asReferrer.status).toBe(403)
      // the session cookie is a way in as good as the header, and no better
      const withCookie = await fetch(url + path, { headers: { cookie: `ra_session=${referrer}` } })
      expect(withCookie.status).toBe(403)
    }
    const page = await fetch(`${url}/admin/queues`, { headers: { cookie: `ra_session=${admin}` } })
    expect(page.status).toBe(200)
    const html = await page.text()
    expect(html).toContain('Referral queues')
    // the page's own script and styles are served, behind the same check
    const base = new URL(html.match(/<base href="([^"]+)"/)?.[1] ?? '', url)
    const assets = [...html.matchAll(/(?:src|href)="(static\/[^"]+)"/g)].map((m) => new URL(m[1] ?? '', base))
    expect(assets.length).toBeGreaterThan(0)
    for (const asset of assets) {
      expect(asset.pathname.startsWith('/admin/queues/static/')).toBe(true)
      expect((await fetch(asset)).status).toBe(401)
      const res = await fetch(asset, { headers: { cookie: `ra_session=${admin}` } })
      expect(res.status, asset.pathname).toBe(200)
      expect((await res.arrayBuffer()).byteLength).toBeGreaterThan(0)
    }
    const api = await fetch(`${url}/admin/queues/api/queues`, {
      headers: { authorization: `Bearer ${admin}` },
    })
    expect(api.status).toBe(200)
    const body = (await api.json()) as { queues: Array<{ name: string }> }
    // every queue of the service, the webhook deliveries' too
    expect(body.queues.map((q) => q.name).sort()).toEqual([
      'credits',
      'ingest',
      'payout-runs',
      'payouts',
      'webhooks',
    ])
  })

  it("answers a path under the queue board that is none of its own with the service's JSON 404", async () => {
    const admin = await tokenFor('growth', { role: 'admin' })
    const res = await fetch(`${url}/admin/queues/no/such/page`, {
      headers: { authorization: `Bearer ${admin}` },
    })
    expect(res.status).toBe(404)
    expect(res.headers.get('content-type')).toContain('application/json')
    expect(((await res.json()) as { error: { code: string } }).error.code).toBe('not_found')
  })

  it("shows an ingest job's events decoded, not as the packed form they are queued in", async () => {
    const admin = await tokenFor('growth', { role: 'admin' })
    const connection = await whenReady(makeRedis(redis.url, 'worker'))
    const queue = new Queue('ingest', { connection, prefix: makeKeys('ra').bullPrefix() })
    const events = [
      settleEvent(
        eventInput.parse({ type: 'click', id: 'board-1', code: 'AB12CD34' }),
        1_796_000_000_000,
        () => 'x',
      ),
      settleEvent(
        eventInput.parse({ type: 'signup', id: 'board-2', user_id: 'u-board' }),
        1_796_000_000_000,
        () => 'x',
      ),
    ]
    // delayed: the service's worker leaves it alone while the board is read
    const job = await queue.add('events', encodeEvents(events), { ...INGEST_JOB_OPTIONS, delay: 3_600_000 })
    try {
      expect(job.data).not.toHaveProperty('events')
      const res = await fetch(`${url}/admin/queues/api/queues?activeQueue=ingest&status=delayed&page=1`, {
        headers: { authorization: `Bearer ${admin}` },
      })
      expect(res.status).toBe(200)
      const body = (await res.json()) as {
        queues: Array<{ name: string; jobs: Array<{ id: string; data: unknown }> }>
      }
      const shown = body.queues.find((q) => q.name === 'ingest')?.jobs.find((j) => j.id === job.id)
      expect(shown?.data).toEqual({ events })
    } finally {
      await job.remove()
      await queue.close()
      connection.disconnect()
    }
  })

  it("routes the service's requests with Hono's RegExpRouter, the queue board's routes kept apart", async () => {
    expect((await fetch(`${url}/healthz`)).status).toBe(200)
    // SmartRouter names the router it settled on at the first request: one refused route
    // anywhere in the app (Bull Board has such) would have made it the TrieRouter
    expect(svc.app?.router.name).toBe('SmartRouter + RegExpRouter')
  })

  it('logs a failed request with its id', async () => {
    await redis.stop()
    const admin = await tokenFor('growth', { role: 'admin' })
    const res = await fetch(`${url}/v1/me/stats`, { headers: { authorization: `Bearer ${admin}` } })
    expect(res.status).toBeGreaterThanOrEqual(500)
    const id = res.headers.get('x-request-id') ?? ''
    const failed = lines.find((l) => l.msg === 'request failed' && l.req_id === id)
    expect(failed?.level).toBe(50)
    expect(requestLines(id)[0]?.status).toBe(res.status)
    redis = await startRedisServer({
      dir: `${dir.path}/redis`,
      bin: 'redis-server',
      appendfsync: 'always',
      port: redis.port,
    })
  })
})
