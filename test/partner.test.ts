import { type JobPayloads, makeKeys, makeRedis, QUEUE_NAMES } from '@referral/core'
import { readPayout, requestPayout, runAutoPayouts, sendPayout } from '@referral/workers'
import { Queue } from 'bullmq'
import type { Redis } from 'ioredis'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { BROWSER_UA, codeFor, eventually, type Http, http, statsFor, tokenFor } from './support/client.ts'
import { startTestRedis, tempDir } from './support/env.ts'
import { enablePartner, type StripeHarness, startStripeHarness } from './support/fake-stripe.ts'
import { count, drained, startTestService } from './support/service.ts'

const WEBHOOK_SECRET = 'whsec_test_0123456789'

/** The Partner track against a stateful fake Stripe: upgrade, webhooks, payouts, to the cent. */
describe('partner track, Stripe webhooks and payouts', () => {
  const dir = tempDir()
  let redisServer: Awaited<ReturnType<typeof startTestRedis>>
  let svc: Awaited<ReturnType<typeof startTestService>>
  let stripe: StripeHarness
  let api: Http
  let redis: Redis
  const keys = makeKeys('ra')

  const asUser = async (user: string) => ({ authorization: `Bearer ${await tokenFor(user)}` })
  const cashOf = async (user: string) =>
    ((await (await api.get('/v1/me/stats', await asUser(user))).json()) as { cash_balance_cents: number })
      .cash_balance_cents
  const webhook = (type: string, object: Record<string, unknown>, id?: string) =>
    stripe.event(type, object, id)
  const deliver = (w: { payload: string; header: string }) => stripe.deliver(api, w)
  const cashLedger = (user: string) =>
    count(
      svc.ch,
      "SELECT sum(amount_cents) AS n FROM ledger WHERE user_id = {u:String} AND account = 'cash'",
      { u: user },
    )

  beforeAll(async () => {
    stripe = await startStripeHarness(WEBHOOK_SECRET)
    redisServer = await startTestRedis(`${dir.path}/redis`)
    svc = await startTestService(`${dir.path}/data`, redisServer.url, stripe.env)
    api = http(svc.url)
    redis = makeRedis(redisServer.url, 'command')
  })
  afterAll(async () => {
    redis?.disconnect()
    await svc?.service.stop()
    await redisServer?.stop()
    await stripe?.close()
    dir.remove()
  })

  it('runs the whole program to the cent: click, signup credit, Basic, upgrade, Partner, refund, spend, expiry, payout', async () => {
    const code = await codeFor(api, 'pat')
    const invoice = (id: string, user: string, amount: number) =>
      webhook('invoice.paid', {
        id: `in_${id}`,
        payment_intent: `pi_${id}`,
        amount_paid: amount,
        currency: 'usd',
        metadata: { user_id: user },
      })

    // the friend clicks, then signs up by that visitor 30 days less 3 s ago: the credit expires soon
    const signedUp = Date.now() - 30 * 86_400_000 + 3000
    await api.post('/v1/events', {
      events: [
        {
          type: 'click',
          id: 'pat-c1',
          code,
          visitor_id: 'pat-v',
          user_agent: BROWSER_UA,
          ts: signedUp - 60_000,
        },
        { type: 'signup', id: 'pat-s1', user_id: 'pat-friend', visitor_id: 'pat-v', ts: signedUp },
      ],
    })
    await drained(svc.service)
    expect(await statsFor(api, 'pat')).toMatchObject({ total_clicks: 1, total_referrals: 1, conversions: 0 })
    const friendWallet = async () =>
      ((await (await api.get('/v1/users/pat-friend/wallet')).json()) as { balance_cents: number })
        .balance_cents
    expect(await friendWallet()).toBe(250)
    const spent = await api.post('/v1/users/pat-friend/wallet/spend', { id: 'pat-order', amount_cents: 100 })
    expect(spent.status).toBe(200)
    expect(await friendWallet()).toBe(150)

    expect((await deliver(invoice('a', 'pat-friend', 10000))).status).toBe(200) // Basic: 500 credit
    await drained(svc.service)
    expect(await statsFor(api, 'pat')).toMatchObject({
      track: 'basic',
      total_earnings_cents: 500,
      wallet_balance_cents: 500,
    })

    const up = await api.post('/v1/me/partner', {}, await asUser('pat'))
    expect(up.status).toBe(200)
    const upBody = (await up.json()) as { track: string; onboarding_url: string }
    expect(upBody.track).toBe('partner')
    expect(upBody.onboarding_url).toMatch(/^https:\/\/connect\.stripe\.test\/setup\/acct_/)
    await api.post('/v1/me/partner', {}, await asUser('pat')) // again: the same account
    expect(stripe.fake.accounts.size).toBe(1)

    expect((await deliver(invoice('b', 'pat-friend', 10000))).status).toBe(200) // Partner: 1000 cash
    const refund = webhook('charge.refunded', { id: 'ch_b', payment_intent: 'pi_b', amount_refunded: 5000 })
    expect((await deliver(refund)).status).toBe(200) // half refunded: 500 reversed
    await drained(svc.service)
    expect(await statsFor(api, 'pat')).toMatchObject({
      track: 'partner',
      total_earnings_cents: 1000,
      wallet_balance_cents: 500, // the Basic commission stays credit: upgrading changes nothing past
      cash_balance_cents: 500,
    })

    // not payout-ready, then below the minimum
    const notReady = await api.post('/v1/me/payouts', {}, await asUser('pat'))
    expect(notReady.status).toBe(409)
    const [acct] = [...stripe.fake.accounts.keys()]
    expect(
      (
        await deliver(
          webhook('account.updated', { id: acct, payouts_enabled: true, metadata: { user_id: 'pat' } }),
        )
      ).status,
    ).toBe(200)
    const below = await api.post('/v1/me/payouts', {}, await asUser('pat'))
    expect(below.status).toBe(409)
    expect(((await below.json()) as { error: { message: string } }).error.message).toMatch(
      /below the 2500-cent minimum/,
    )

    expect((await deliver(invoice('c', 'pat-friend', 20000))).status).toBe(200) // +2000 cash: 2500
    await drained(svc.service)
    const paid = await api.post('/v1/me/payouts', {}, await asUser('pat'))
    expect(paid.status).toBe(201)
    const payout = (await paid.json()) as { id: string; amount_cents: number; status: string }
    expect(payout).toMatchObject({ amount_cents: 2500, status: 'pending' })
    await eventually(async () => {
      const list = (await (await api.get('/v1/me/payouts', await asUser('pat'))).json()) as {
        payouts: Array<{ status: string }>
      }
      expect(list.payouts[0]?.status).toBe('paid')
    })
    expect(stripe.fake.transfers.map((t) => [t.amount, t.destination])).toEqual([[2500, acct]])
    expect(await statsFor(api, 'pat')).toMatchObject({
      total_clicks: 1,
      total_referrals: 1,
      conversions: 1,
      pending_referrals: 0,
      conversion_rate: 1,
      cash_balance_cents: 0,
      wallet_balance_cents: 500,
      total_earnings_cents: 3000, // 500 Basic + 1000 - 500 + 2000 Partner
    })
    await eventually(async () => expect(await cashLedger('pat')).toBe(0)) // +1000 -500 +2000 -2500

    // what the friend did not spend of the credit was written off at expiry
    await eventually(async () => expect(await friendWallet()).toBe(0), 20_000, 200)
    await eventually(
      async () =>
        expect(
          await count(svc.ch, "SELECT sum(amount_cents) AS n FROM ledger WHERE user_id = 'pat-friend'"),
        ).toBe(0), // +250 credit, -100 spent, -150 expired
    )
  })

  it('records a negative cash balance when a refund follows a payout, and later commissions pay it down', async () => {
    const code = await codeFor(api, 'nell')
    const invoice = (id: string, amount: number) =>
      webhook('invoice.paid', {
        id: `in_${id}`,
        payment_intent: `pi_${id}`,
        amount_paid: amount,
        currency: 'usd',
        metadata: { user_id: 'nell-friend' },
      })
    const acct = await enablePartner(api, stripe, 'nell')
    await api.post('/v1/events', { type: 'signup', id: 'nell-s', user_id: 'nell-friend', ref: code })
    expect((await deliver(invoice('n1', 30_000))).status).toBe(200) // +3000 cash
    await drained(svc.service)
    const cash = async () =>
      ((await (await api.get('/v1/me/stats', await asUser('nell'))).json()) as { cash_balance_cents: number })
        .cash_balance_cents
    expect(await cash()).toBe(3000)
    const first = await api.post('/v1/me/payouts', {}, await asUser('nell'))
    expect(first.status).toBe(201)
    await eventually(async () =>
      expect(stripe.fake.transfers.filter((t) => t.destination === acct)).toHaveLength(1),
    )

    // the whole purchase is refunded after its commission was paid out: the cash goes below zero
    const refund = webhook('charge.refunded', {
      id: 'ch_n1',
      payment_intent: 'pi_n1',
      amount_refunded: 30_000,
    })
    expect((await deliver(refund)).status).toBe(200)
    await drained(svc.service)
    expect(await cash()).toBe(-3000)
    await eventually(async () => expect(await cashLedger('nell')).toBe(-3000)) // +3000 -3000 paid -3000 reversed
    expect((await api.post('/v1/me/payouts', {}, await asUser('nell'))).status).toBe(409)

    // later commissions pay the debt first: 4000 leaves 1000 (below the minimum), 2000 more makes 3000
    expect((await deliver(invoice('n2', 40_000))).status).toBe(200)
    await drained(svc.service)
    expect(await cash()).toBe(1000)
    expect((await api.post('/v1/me/payouts', {}, await asUser('nell'))).status).toBe(409)
    expect((await deliver(invoice('n3', 20_000))).status).toBe(200)
    await drained(svc.service)
    const second = await api.post('/v1/me/payouts', {}, await asUser('nell'))
    expect(second.status).toBe(201)
    expect(((await second.json()) as { amount_cents: number }).amount_cents).toBe(3000)
    await eventually(async () =>
      expect(stripe.fake.transfers.filter((t) => t.destination === acct)).toHaveLength(2),
    )
    await eventually(async () => expect(await cashLedger('nell')).toBe(0))
    expect(await statsFor(api, 'nell')).toMatchObject({ total_earnings_cents: 3000 - 3000 + 4000 + 2000 })
  })

  it('gives the same totals when every webhook is delivered 10 times in shuffled order', async () => {
    const code = await codeFor(api, 'quinn')
    await api.post('/v1/events', { type: 'signup', id: 'quinn-s', user_id: 'quinn-friend', ref: code })
    await drained(svc.service)
    const events = [
      webhook('invoice.paid', {
        id: 'in_q',
        payment_intent: 'pi_q',
        amount_paid: 7777,
        currency: 'usd',
        metadata: { user_id: 'quinn-friend' },
      }),
      webhook('charge.refunded', { id: 'ch_q', payment_intent: 'pi_q', amount_refunded: 1000 }),
      webhook('charge.refunded', { id: 'ch_q', payment_intent: 'pi_q', amount_refunded: 3000 }),
      webhook('checkout.session.completed', {
        id: 'cs_q',
        payment_intent: 'pi_q2',
        payment_status: 'paid',
        amount_total: 1234,
        currency: 'usd',
        metadata: { user_id: 'quinn-friend' },
      }),
    ]
    const deliveries = events.flatMap((e) => Array.from({ length: 10 }, () => e))
    // a fixed shuffle, so a failure can be replayed
    let state = 42
    for (let i = deliveries.length - 1; i > 0; i--) {
      state = (state * 1103515245 + 12345) % 2 ** 31
      const j = state % (i + 1)
      const a = deliveries[i]
      const b = deliveries[j]
      if (a !== undefined && b !== undefined) [deliveries[i], deliveries[j]] = [b, a]
    }
    const answers = await Promise.all(deliveries.map((d) => deliver(d)))
    expect(new Set(answers.map((r) => r.status))).toEqual(new Set([200]))
    await drained(svc.service)
    // 7777 * 5% = 388.85 -> 389; refunded 3000 of 7777 in all -> reverse round(389 * 3000 / 7777) = 150;
    // 1234 * 5% = 61.7 -> 62
    expect(await statsFor(api, 'quinn')).toMatchObject({
      total_earnings_cents: 389 - 150 + 62,
      conversions: 1,
    })
    expect(
      await count(
        svc.ch,
        "SELECT count() AS n FROM events WHERE user_id = 'quinn-friend' AND type = 'purchase'",
      ),
    ).toBe(2)
  })

  it('refuses a webhook with a bad signature and changes nothing', async () => {
    const w = webhook('invoice.paid', {
      id: 'in_bad',
      amount_paid: 100,
      currency: 'usd',
      metadata: { user_id: 'x' },
    })
    const res = await api.post('/v1/webhooks/stripe', w.payload, {
      'stripe-signature': `${w.header}0`,
      authorization: '',
    })
    expect(res.status).toBe(400)
    const unsigned = await api.post('/v1/webhooks/stripe', w.payload, { authorization: '' })
    expect(unsigned.status).toBe(400)
    await drained(svc.service)
    expect(await count(svc.ch, "SELECT count() AS n FROM events WHERE id = 'stripe:in_bad'")).toBe(0)
  })

  it('makes one transfer when the payout job dies after the transfer and before recording it', async () => {
    await redis.hset(keys.user('rita'), { stripe_account: 'acct_rita', payouts_enabled: '1' })
    await redis.hset(keys.balance('rita'), 'cash', 3000)
    const req = await requestPayout(redis, keys, 'rita', 'acct_rita', Date.now())
    if (!req.ok) throw new Error('payout refused')
    const before = stripe.fake.transfers.length
    // the first run made the transfer, then died
    await stripe.client.transfers.create(
      { amount: 3000, currency: 'usd', destination: 'acct_rita' },
      { idempotencyKey: `payout-${req.payout.id}` },
    )
    const deps = { redis, keys, ch: svc.ch, stripe: stripe.client }
    expect(await sendPayout(deps, req.payout.id)).toBe('paid')
    expect(await sendPayout(deps, req.payout.id)).toBe('paid')
    expect(stripe.fake.transfers.length - before).toBe(1)
    expect((await readPayout(redis, keys, req.payout.id))?.status).toBe('paid')
    expect(await cashLedger('rita')).toBe(-3000) // the debit; the 3000 came from outside the program here
  })

  it('gives the cash back when Stripe refuses the transfer for good', async () => {
    await redis.hset(keys.user('sam'), { stripe_account: 'acct_sam', payouts_enabled: '1' })
    await redis.hset(keys.balance('sam'), 'cash', 2600)
    const req = await requestPayout(redis, keys, 'sam', 'acct_sam', Date.now())
    if (!req.ok) throw new Error('payout refused')
    expect(await cashOf('sam')).toBe(0) // the API's stats cache now holds the emptied balance
    stripe.fake.failTransfers(1, 'invalid')
    expect(await sendPayout({ redis, keys, ch: svc.ch, stripe: stripe.client }, req.payout.id)).toBe('failed')
    expect(await redis.hget(keys.balance('sam'), 'cash')).toBe('2600')
    // told on the stats channel: well before the cache would read it again (STATS_CACHE_MS, 2 s)
    await eventually(async () => expect(await cashOf('sam')).toBe(2600), 1_000, 20)
    expect(await cashLedger('sam')).toBe(0) // -2600 payout, +2600 payout_failure
  })

  it('pays every payout-ready partner over the minimum in the automatic run', async () => {
    for (const [user, cash, enabled] of [
      ['auto-a', 3000, '1'],
      ['auto-b', 2400, '1'], // below the minimum
      ['auto-c', 5000, '0'], // not payout-ready
    ] as const) {
      await redis.hset(keys.user(user), {
        stripe_account: `acct_${user}`,
        payouts_enabled: enabled,
        track: 'partner',
      })
      await redis.hset(keys.balance(user), 'cash', cash)
      await redis.sadd(keys.partners(), user)
    }
    const payouts = new Queue<JobPayloads['payouts']>(QUEUE_NAMES.payouts, {
      connection: redis,
      prefix: keys.bullPrefix(),
    })
    try {
      expect(await cashOf('auto-a')).toBe(3000)
      const ids = await runAutoPayouts({ redis, keys }, payouts)
      // told on the stats channel: well before the cache would read it again (STATS_CACHE_MS, 2 s)
      await eventually(async () => expect(await cashOf('auto-a')).toBe(0), 1_000, 20)
      const created = await Promise.all(ids.map((id) => readPayout(redis, keys, id)))
      expect(created.map((p) => [p?.user_id, p?.amount_cents])).toEqual([['auto-a', 3000]])
      expect(await runAutoPayouts({ redis, keys }, payouts)).toEqual([]) // nothing left to pay
    } finally {
      await payouts.close()
    }
    await eventually(async () =>
      expect(stripe.fake.transfers.some((t) => t.destination === 'acct_auto-a')).toBe(true),
    )
  })
})
