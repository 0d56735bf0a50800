import { createServer, type Server } from 'node:http'
import type { AddressInfo } from 'node:net'
import { makeKeys, makeRedis, type WebhookEvent } from '@referral/core'
import { makeWebhooks, SIGNATURE_HEADER, verifySignature, webhookEvent } from '@referral/workers'
import type { Redis } from 'ioredis'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { codeFor, eventually, type Http, http, tokenFor } from './support/client.ts'
import { startTestRedis, tempDir } from './support/env.ts'
import { enablePartner, type StripeHarness, startStripeHarness } from './support/fake-stripe.ts'
import { drained, startTestService } from './support/service.ts'

const SECRET = 'whsec_outgoing_0123456789'
const STRIPE_SECRET = 'whsec_stripe_0123456789'

interface Received {
  id: string
  type: string
  data: Record<string, unknown>
  status: number
  signatureOk: boolean
  webhookId: string | undefined
}

/** A marketplace endpoint on loopback that refuses the first `failFirst` deliveries. */
async function startReceiver(failFirst: number) {
  const got: Received[] = []
  let seen = 0
  const server: Server = createServer((req, res) => {
    const chunks: Buffer[] = []
    req.on('data', (c: Buffer) => chunks.push(c))
    req.on('end', () => {
      const body = Buffer.concat(chunks).toString('utf8')
      const status = ++seen <= failFirst ? 500 : 200
      const e = JSON.parse(body) as { id: string; type: string; data: Record<string, unknown> }
      got.push({
        ...e,
        status,
        signatureOk: verifySignature(SECRET, body, String(req.headers[SIGNATURE_HEADER] ?? '')),
        webhookId: req.headers['webhook-id'] as string | undefined,
      })
      res.writeHead(status).end()
    })
  })
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r))
  const { port } = server.address() as AddressInfo
  return {
    url: `http://127.0.0.1:${port}/hooks`,
    got,
    accepted: () => got.filter((g) => g.status === 200),
    close: () => new Promise<void>((r) => server.close(() => r())),
  }
}

/** Outgoing webhooks through the running service, to a receiver that fails at first. */
describe('outgoing webhooks', () => {
  const dir = tempDir()
  let redisServer: Awaited<ReturnType<typeof startTestRedis>>
  let svc: Awaited<ReturnType<typeof startTestService>>
  let receiver: Awaited<ReturnType<typeof startReceiver>>
  let stripe: StripeHarness
  let api: Http
  let redis: Redis
  const keys = makeKeys('ra')
  let admin: Record<string, string>

  beforeAll(async () => {
    receiver = await startReceiver(3)
    stripe = await startStripeHarness(STRIPE_SECRET)
    redisServer = await startTestRedis(`${dir.path}/redis`)
    svc = await startTestService(`${dir.path}/data`, redisServer.url, {
      WEBHOOK_URL: receiver.url,
      WEBHOOK_SECRET: SECRET,
      WEBHOOK_RETRY_BASE_MS: '100',
      ...stripe.env,
    })
    api = http(svc.url)
    redis = makeRedis(redisServer.url, 'command')
    admin = { authorization: `Bearer ${await tokenFor('growth', { role: 'admin' })}` }
  })
  afterAll(async () => {
    redis?.disconnect()
    await svc?.service.stop()
    await redisServer?.stop()
    await receiver?.close()
    await stripe?.close()
    dir.remove()
  })

  const typesFor = (referrer: string) =>
    receiver
      .accepted()
      .filter(
        (g) =>
          g.data.referrer_id === referrer || (g.type === 'credit.granted' && g.data.user_id === referrer),
      )
      .map((g) => g.type)

  it('delivers every event once the receiver recovers, signed, in order per referrer', async () => {
    const code = await codeFor(api, 'wren')
    const res = await api.post('/v1/events', {
      events: [
        // the friend's signup credit expires 2 s from now
        {
          type: 'signup',
          id: 'wh-s1',
          user_id: 'wren-friend',
          ref: code,
          ts: Date.now() - 30 * 86_400_000 + 2000,
        },
        { type: 'purchase', id: 'wh-p1', user_id: 'wren-friend', amount_cents: 10_000 },
        { type: 'refund', id: 'wh-r1', purchase_id: 'wh-p1', amount_cents: 4_000 },
      ],
    })
    expect(res.status).toBe(202)
    await drained(svc.service)
    const expected = [
      'referral.created',
      'credit.granted', // the friend's 250
      'commission.created',
      'credit.granted', // wren's 500 (Basic: wallet credit)
      'commission.reversed',
      'credit.expired',
    ]
    await eventually(async () => {
      expect(
        receiver
          .accepted()
          .map((g) => g.type)
          .sort(),
      ).toEqual([...expected].sort())
    }, 30_000)
    // the first three attempts failed and were retried
    expect(receiver.got.filter((g) => g.status === 500)).toHaveLength(3)
    // each event accepted once, with a valid signature and its id in a header
    const ids = receiver.accepted().map((g) => g.id)
    expect(new Set(ids).size).toBe(ids.length)
    expect(receiver.got.every((g) => g.signatureOk && g.webhookId === g.id)).toBe(true)
    // the referrer's events in the order they happened, whatever failed in between
    expect(typesFor('wren')).toEqual([
      'referral.created',
      'commission.created',
      'credit.granted',
      'commission.reversed',
    ])
    const reversed = receiver.accepted().find((g) => g.type === 'commission.reversed')
    expect(reversed?.data).toMatchObject({
      referrer_id: 'wren',
      purchase_id: 'wh-p1',
      commission_cents: -200,
    })
    const expired = receiver.accepted().find((g) => g.type === 'credit.expired')
    expect(expired?.data).toMatchObject({ user_id: 'wren-friend', expired_cents: 250 })
  })

  it('logs every attempt for admins and replays a delivery with the same event id', async () => {
    const log = await (await api.get('/v1/admin/webhooks/deliveries', admin)).json()
    const deliveries = (
      log as { deliveries: Array<{ id: string; event_id: string; status: string; attempts: number }> }
    ).deliveries
    expect(deliveries).toHaveLength(6)
    expect(deliveries.every((d) => d.status === 'delivered')).toBe(true)
    expect(deliveries.reduce((a, d) => a + d.attempts, 0)).toBe(6 + 3)
    expect(
      (await api.get('/v1/admin/webhooks/deliveries', { authorization: `Bearer ${await tokenFor('wren')}` }))
        .status,
    ).toBe(403)

    const one = deliveries[0]
    if (one === undefined) throw new Error('no delivery')
    const before = receiver.accepted().filter((g) => g.id === one.event_id).length
    const replay = await api.post(`/v1/admin/webhooks/deliveries/${one.id}/replay`, {}, admin)
    expect(replay.status).toBe(202)
    await eventually(async () => {
      expect(receiver.accepted().filter((g) => g.id === one.event_id)).toHaveLength(before + 1)
    })
    expect(
      (await api.post('/v1/admin/webhooks/deliveries/wh-0-evt_000000000000000000000000/replay', {}, admin))
        .status,
    ).toBe(404)
    expect((await api.post('/v1/admin/webhooks/deliveries/nonsense/replay', {}, admin)).status).toBe(404)
  })

  it('names an event emitted twice the same, and delivers it once', async () => {
    const webhooks = makeWebhooks({ config: svc.config, redis, keys })
    const event: WebhookEvent = webhookEvent('referral.created', 'manual-cause', 'someone', Date.now(), {
      referrer_id: 'someone',
    })
    expect(webhookEvent('referral.created', 'manual-cause', 'someone', 0, {}).id).toBe(event.id)
    await webhooks.emit([event])
    await webhooks.emit([event])
    await webhooks.close()
    await eventually(async () => {
      expect(receiver.accepted().filter((g) => g.id === event.id)).toHaveLength(1)
    })
    await new Promise((r) => setTimeout(r, 500))
    expect(receiver.accepted().filter((g) => g.id === event.id)).toHaveLength(1)
  })

  it('tells the marketplace when a payout is paid', async () => {
    const code = await codeFor(api, 'wes')
    await enablePartner(api, stripe, 'wes')
    await api.post('/v1/events', {
      events: [
        { type: 'signup', id: 'wes-s1', user_id: 'wes-friend', ref: code },
        { type: 'purchase', id: 'wes-p1', user_id: 'wes-friend', amount_cents: 30_000 },
      ],
    })
    await drained(svc.service)
    const payout = await api.post('/v1/me/payouts', {}, { authorization: `Bearer ${await tokenFor('wes')}` })
    expect(payout.status).toBe(201)
    const { id } = (await payout.json()) as { id: string }
    const paid = await eventually(async () => {
      const p = receiver.accepted().find((g) => g.type === 'payout.paid')
      if (p === undefined) throw new Error('no payout.paid yet')
      return p
    })
    expect(paid.data).toMatchObject({ payout_id: id, user_id: 'wes', amount_cents: 3000, status: 'paid' })
    expect(typesFor('wes')).toEqual(['referral.created', 'commission.created'])
  })
})
