import { queryRows } from '@referral/clickhouse'
import { makeKeys, makeRedis } from '@referral/core'
import { reconcile } from '@referral/workers'
import type { Redis } from 'ioredis'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { codeFor, type Http, http, statsFor, tokenFor } from './support/client.ts'
import { startTestRedis, tempDir } from './support/env.ts'
import { enablePartner, type StripeHarness, startStripeHarness } from './support/fake-stripe.ts'
import { count, drained, startTestService } from './support/service.ts'

const WEBHOOK_SECRET = 'whsec_test_fraud_0123'
const SHARED_IP = '203.0.113.9'

interface Hold {
  purchase_id: string
  referrer_id: string
  held_cents: number
  flags: string[]
  status: string
}

/** Flagged referrals through the real service: held commissions, the admin's decision, the growth charts. */
describe('fraud review', () => {
  const dir = tempDir()
  let redisServer: Awaited<ReturnType<typeof startTestRedis>>
  let svc: Awaited<ReturnType<typeof startTestService>>
  let stripe: StripeHarness
  let api: Http
  let redis: Redis
  let admin: Record<string, string>
  const keys = makeKeys('ra')
  const asUser = async (user: string) => ({ authorization: `Bearer ${await tokenFor(user)}` })
  const ledger = async (user: string) =>
    (
      await queryRows<{ kind: string; account: string; amount_cents: string }>(
        svc.ch,
        `SELECT kind, account, amount_cents FROM ledger WHERE user_id = {u:String}
         AND kind != 'signup_bonus' ORDER BY ts, entry_id`,
        { u: user },
      )
    ).map((r) => [r.kind, r.account, Number(r.amount_cents)])
  const holds = async () =>
    ((await (await api.get('/v1/admin/holds', admin)).json()) as { holds: Hold[] }).holds
  const send = async (events: unknown[]) => {
    expect((await api.post('/v1/events', { events })).status).toBe(202)
    await drained(svc.service)
  }
  const moneyOf = async (user: string) => {
    const s = (await (await api.get('/v1/me/stats', await asUser(user))).json()) as Record<string, number>
    return {
      earnings: s.total_earnings_cents,
      wallet: s.wallet_balance_cents,
      cash: s.cash_balance_cents,
      held: s.held_cents,
    }
  }

  beforeAll(async () => {
    stripe = await startStripeHarness(WEBHOOK_SECRET)
    redisServer = await startTestRedis(`${dir.path}/redis`)
    svc = await startTestService(`${dir.path}/data`, redisServer.url, {
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
    await stripe?.close()
    dir.remove()
  })

  it('holds the commission of a self-referral from the same IP, and approving it pays it into the wallet exactly once', async () => {
    const code = await codeFor(api, 'fay')
    await send([
      { type: 'signup', id: 'fay-s', user_id: 'fay', ip: SHARED_IP, email: 'fay@example.org' },
      { type: 'signup', id: 'fred-s', user_id: 'fred', ref: code, ip: SHARED_IP, email: 'fred@gmail.com' },
      { type: 'signup', id: 'gil-s', user_id: 'gil', ref: code, ip: '198.51.100.4', email: 'gil@gmail.com' },
      { type: 'purchase', id: 'fred-p1', user_id: 'fred', amount_cents: 10_000 },
      { type: 'purchase', id: 'gil-p1', user_id: 'gil', amount_cents: 2_000 },
    ])
    // earned, but the flagged 500 is held: neither spendable nor in the wallet
    expect(await moneyOf('fay')).toEqual({ earnings: 600, wallet: 100, cash: 0, held: 500 })
    expect(await statsFor(api, 'fay')).toMatchObject({ total_referrals: 2, conversions: 2 })
    const spend = await api.post('/v1/users/fay/wallet/spend', { id: 'fay-o1', amount_cents: 101 })
    expect(spend.status).toBe(409)

    const [hold] = await holds()
    expect(hold).toMatchObject({
      purchase_id: 'fred-p1',
      referrer_id: 'fay',
      held_cents: 500,
      flags: ['same_ip'],
    })

    // a referrer cannot see or decide holds
    expect((await api.get('/v1/admin/holds', await asUser('fay'))).status).toBe(403)
    expect((await api.post('/v1/admin/holds/fred-p1/approve', {}, await asUser('fay'))).status).toBe(403)

    // two admins approve at once: the money moves once
    const [a, b] = await Promise.all([
      api.post('/v1/admin/holds/fred-p1/approve', { reason: 'known customer' }, admin),
      api.post('/v1/admin/holds/fred-p1/approve', {}, admin),
    ])
    // one answers with the outcome, the other approves it too or finds it decided
    const statuses = [a.status, b.status]
    expect(statuses).toContain(200)
    expect(statuses.every((s) => s === 200 || s === 409)).toBe(true)
    const winner = a.status === 200 ? a : b
    expect(((await winner.json()) as { status: string }).status).toBe('approved')
    await drained(svc.service)
    expect(await moneyOf('fay')).toEqual({ earnings: 600, wallet: 600, cash: 0, held: 0 })
    const entries = [
      ['commission', 'held', 500],
      ['commission', 'wallet', 100],
      ['hold_release', 'held', -500],
      ['commission_approved', 'wallet', 500],
    ]
    const fay = await ledger('fay')
    expect(fay).toHaveLength(entries.length)
    expect(fay).toEqual(expect.arrayContaining(entries))
    // decided: a second decision is refused and changes nothing
    const again = await api.post('/v1/admin/holds/fred-p1/reject', {}, admin)
    expect(again.status).toBe(409)
    await drained(svc.service)
    expect(await moneyOf('fay')).toEqual({ earnings: 600, wallet: 600, cash: 0, held: 0 })
    expect(await holds()).toEqual([])
  })

  it('refuses bad decisions clearly and queues nothing', async () => {
    const before = await count(svc.ch, "SELECT count() AS n FROM events WHERE type = 'decision'")
    expect((await api.post('/v1/admin/holds/no-such-purchase/approve', {}, admin)).status).toBe(404)
    expect((await api.post('/v1/admin/holds/gil-p1/approve', {}, admin)).status).toBe(404) // never held
    expect((await api.post('/v1/admin/holds/fred-p1/maybe', {}, admin)).status).toBe(404)
    const bad = await api.post('/v1/admin/holds/fred-p1/reject', { reason: 1 }, admin)
    expect(bad.status).toBe(400)
    expect(
      ((await bad.json()) as { error: { details: Array<{ path: string }> } }).error.details[0]?.path,
    ).toBe('reason')
    await drained(svc.service)
    expect(await count(svc.ch, "SELECT count() AS n FROM events WHERE type = 'decision'")).toBe(before)
  })

  it('keeps a held Partner commission out of payouts, and rejecting it writes it off', async () => {
    const code = await codeFor(api, 'pia')
    await enablePartner(api, stripe, 'pia')
    await send([
      { type: 'signup', id: 'pia-s', user_id: 'pia', visitor_id: 'pia-browser' },
      // the same browser signs up a second account through the link: held
      { type: 'signup', id: 'sock-s', user_id: 'sock', ref: code, visitor_id: 'pia-browser' },
      { type: 'purchase', id: 'sock-p1', user_id: 'sock', amount_cents: 30_000 },
    ])
    expect(await moneyOf('pia')).toEqual({ earnings: 3000, wallet: 0, cash: 0, held: 3000 })
    expect((await api.post('/v1/me/payouts', {}, await asUser('pia'))).status).toBe(409) // nothing payable

    const res = await api.post('/v1/admin/holds/sock-p1/reject', { reason: 'same browser' }, admin)
    expect(res.status).toBe(200)
    expect(await res.json()).toEqual({ purchase_id: 'sock-p1', decision: 'reject', status: 'rejected' })
    await drained(svc.service)
    expect(await moneyOf('pia')).toEqual({ earnings: 0, wallet: 0, cash: 0, held: 0 })

    // an honest referral pays as usual, and the payout takes exactly that
    await send([
      { type: 'signup', id: 'ivy-s', user_id: 'ivy', ref: code, visitor_id: 'ivy-browser' },
      { type: 'purchase', id: 'ivy-p1', user_id: 'ivy', amount_cents: 30_000 },
      // a refund of the rejected purchase reverses nothing more
      { type: 'refund', id: 'sock-r1', purchase_id: 'sock-p1', amount_cents: 30_000 },
    ])
    expect(await moneyOf('pia')).toEqual({ earnings: 3000, wallet: 0, cash: 3000, held: 0 })
    const payout = await api.post('/v1/me/payouts', {}, await asUser('pia'))
    expect(payout.status).toBe(201)
    expect(((await payout.json()) as { amount_cents: number }).amount_cents).toBe(3000)
    expect(await ledger('pia')).toEqual(
      expect.arrayContaining([
        ['commission', 'held', 3000],
        ['commission_rejected', 'held', -3000],
        ['commission', 'cash', 3000],
      ]),
    )
  })

  it('shows every growth chart with and without flagged events, and a summary of the rules', async () => {
    const range = `from=${new Date(Date.now() - 86_400_000).toISOString()}&to=${new Date(Date.now() + 3_600_000).toISOString()}`
    const get = async (path: string) => {
      const r = await api.get(path, admin)
      expect(r.status).toBe(200)
      return (await r.json()) as Record<string, unknown>
    }
    type Period = { period: string; signups: number; conversions: number; flagged_signups: number }
    const all = ((await get('/v1/admin/overview')).periods as Period[])[0]
    const clean = ((await get('/v1/admin/overview?flagged=exclude')).periods as Period[])[0]
    const only = ((await get('/v1/admin/overview?flagged=only')).periods as Period[])[0]
    // fred and sock are flagged; gil and ivy are not
    expect(all).toMatchObject({ signups: 4, conversions: 4, flagged_signups: 2 })
    expect(clean).toMatchObject({ signups: 2, conversions: 2 })
    expect(only).toMatchObject({ signups: 2, conversions: 2 })
    expect(all).toMatchObject({ conversion_rate_all: 1, conversion_rate_unflagged: 1 })

    const sum = (points: unknown, k: string) =>
      (points as Array<Record<string, number>>).reduce((a, p) => a + (p[k] ?? 0), 0)
    const ts = await get(`/v1/admin/timeseries?interval=hour&flagged=exclude&${range}`)
    expect(sum(ts.points, 'signups')).toBe(2)
    expect(sum(ts.points, 'commission_cents')).toBe(100 + 3000)
    const tsOnly = await get(`/v1/admin/timeseries?interval=hour&flagged=only&${range}`)
    // fred's 500 stays (approved); sock's 3000 was rejected
    expect(sum(tsOnly.points, 'commission_cents')).toBe(500)

    const top = await get(`/v1/admin/referrers?flagged=exclude&${range}`)
    expect(top.referrers).toEqual(
      expect.arrayContaining([
        expect.objectContaining({ referrer_id: 'fay', signups: 1 }),
        expect.objectContaining({ referrer_id: 'pia', signups: 1 }),
      ]),
    )
    const users = async (flagged: string) =>
      ((await get(`/v1/admin/credits?flagged=${flagged}`)).effect as Array<{ users: number }>).reduce(
        (a, e) => a + e.users,
        0,
      )
    expect([await users('include'), await users('exclude'), await users('only')]).toEqual([4, 2, 2])
    const funnel = await get(`/v1/admin/funnel?flagged=exclude&${range}`)
    expect(funnel.flagged).toBe('exclude')
    expect((await api.get('/v1/admin/overview?flagged=maybe', admin)).status).toBe(400)

    const fraud = await get(`/v1/admin/fraud?${range}`)
    const rule = (flag: string) =>
      (fraud.rules as Array<{ flag: string; referrals: number }>).find((r) => r.flag === flag)
    expect(rule('same_ip')?.referrals).toBe(1)
    expect(rule('same_visitor')?.referrals).toBe(1)
    expect(rule('disposable_email')?.referrals).toBe(0)
    expect(fraud.decisions).toEqual({ approved: 1, approved_cents: 500, rejected: 1, rejected_cents: 3000 })
    expect(fraud.recent_decisions).toEqual([
      expect.objectContaining({
        purchase_id: 'sock-p1',
        decision: 'rejected',
        by: 'growth',
        reason: 'same browser',
      }),
      expect.objectContaining({
        purchase_id: 'fred-p1',
        decision: 'approved',
        by: 'growth',
        flags: ['same_ip'],
      }),
    ])
  })

  it("keeps counting a visitor's clicks per minute across requests, through the state in Redis", async () => {
    const code = await codeFor(api, 'cal')
    const now = Date.now()
    const clicks = (from: number, n: number) =>
      Array.from({ length: n }, (_, i) => ({
        type: 'click',
        id: `cal-c${from + i}`,
        code,
        visitor_id: 'cal-fast-visitor',
        user_agent: 'Mozilla/5.0 (X11; Linux x86_64) Chrome/120.0 Safari/537.36',
        ts: now + (from + i) * 100,
      }))
    await send(clicks(0, 20))
    await send(clicks(20, 20)) // 40 clicks in 4 s: past the 30 a minute a person makes
    const flagged = await count(
      svc.ch,
      "SELECT count() AS n FROM events WHERE startsWith(id, 'cal-c') AND has(flags, 'click_rate')",
    )
    expect(flagged).toBe(10)
    expect((await statsFor(api, 'cal')).total_clicks).toBe(40)
    // the breakdowns (funnel_steps) leave the fast clicks out, or show only them
    const clicksBy = async (f: string) => {
      const r = await api.get(`/v1/admin/breakdown?by=utm_source&flagged=${f}&to=${now + 3_600_000}`, admin)
      return ((await r.json()) as { rows: Array<{ clicks: number }> }).rows.reduce((a, x) => a + x.clicks, 0)
    }
    expect([await clicksBy('include'), await clicksBy('exclude'), await clicksBy('only')]).toEqual([
      40, 30, 10,
    ])
  })

  it('leaves the counters equal to what ClickHouse says, rejections included', async () => {
    await drained(svc.service)
    const report = await reconcile(svc.ch, redis, keys, { fix: false })
    expect(report.drift).toEqual([])
    expect(report.referrers).toBeGreaterThanOrEqual(2)
  })
})
