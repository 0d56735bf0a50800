import { queryRows } from '@referral/clickhouse'
import { makeKeys, makeRedis } from '@referral/core'
import type { Redis } from 'ioredis'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { codeFor, eventually, type Http, http, statsFor } from './support/client.ts'
import { startTestRedis, tempDir } from './support/env.ts'
import { count, drained, startTestService } from './support/service.ts'

interface WalletBody {
  balance_cents: number
  credits: Array<{
    id: string
    source: string
    amount_cents: number
    remaining_cents: number
    granted_at: string
    expires_at: string | null
  }>
}

const DAY = 86_400_000

/** Signup credit, commissions as credit or cash, spends and expiry, to the cent. */
describe('wallet and balances', () => {
  const dir = tempDir()
  let redisServer: Awaited<ReturnType<typeof startTestRedis>>
  let svc: Awaited<ReturnType<typeof startTestService>>
  let api: Http
  let redis: Redis
  const keys = makeKeys('ra')

  const wallet = async (user: string) => {
    const res = await api.get(`/v1/users/${encodeURIComponent(user)}/wallet`)
    expect(res.status).toBe(200)
    return (await res.json()) as WalletBody
  }
  const spend = (user: string, id: string, amount: number) =>
    api.post(`/v1/users/${encodeURIComponent(user)}/wallet/spend`, { id, amount_cents: amount })
  const ledgerSum = (user: string, account: string) =>
    count(
      svc.ch,
      'SELECT sum(amount_cents) AS n FROM ledger WHERE user_id = {u:String} AND account = {a:String}',
      {
        u: user,
        a: account,
      },
    )

  beforeAll(async () => {
    redisServer = await startTestRedis(`${dir.path}/redis`)
    svc = await startTestService(`${dir.path}/data`, redisServer.url)
    api = http(svc.url)
    redis = makeRedis(redisServer.url, 'command')
  })
  afterAll(async () => {
    redis?.disconnect()
    await svc?.service.stop()
    await redisServer?.stop()
    dir.remove()
  })

  it('grants a referred signup 250 cents expiring in 30 days, and pays Basic commission as credit, Partner as cash', async () => {
    const basic = await codeFor(api, 'basic-ref')
    const partner = await codeFor(api, 'partner-ref')
    await redis.hset(keys.user('partner-ref'), 'track', 'partner')
    const ts = Date.now()
    const res = await api.post('/v1/events', {
      events: [
        { type: 'signup', id: 'w-s1', user_id: 'w-friend1', ref: basic, ts },
        { type: 'signup', id: 'w-s2', user_id: 'w-friend2', ref: partner, ts },
        { type: 'signup', id: 'w-s3', user_id: 'w-loner', ts },
        { type: 'purchase', id: 'w-p1', user_id: 'w-friend1', amount_cents: 4999 },
        { type: 'purchase', id: 'w-p2', user_id: 'w-friend2', amount_cents: 4999 },
        { type: 'refund', id: 'w-r2', purchase_id: 'w-p2', amount_cents: 2000 },
      ],
    })
    expect(res.status).toBe(202)
    await drained(svc.service)

    const friend = await wallet('w-friend1')
    expect(friend.balance_cents).toBe(250)
    expect(friend.credits).toEqual([
      {
        id: 'signup_bonus:w-s1',
        source: 'signup_bonus',
        amount_cents: 250,
        remaining_cents: 250,
        granted_at: new Date(ts).toISOString(),
        expires_at: new Date(ts + 30 * DAY).toISOString(),
      },
    ])
    expect((await wallet('w-loner')).balance_cents).toBe(0) // not referred: no bonus

    // 4999 * 5% = 249.95 -> 250 as wallet credit that never expires
    const b = await wallet('basic-ref')
    expect(b.balance_cents).toBe(250)
    expect(b.credits[0]).toMatchObject({ id: 'commission:w-p1', source: 'commission', expires_at: null })
    // 4999 * 10% = 499.9 -> 500 cash; a refund of 2000/4999 reverses round(500 * 2000 / 4999) = 200
    const p = await statsFor(api, 'partner-ref')
    expect(p).toMatchObject({ total_earnings_cents: 300, cash_balance_cents: 300, wallet_balance_cents: 0 })
    expect(await statsFor(api, 'basic-ref')).toMatchObject({
      wallet_balance_cents: 250,
      cash_balance_cents: 0,
    })

    // every balance is the sum of its ledger entries
    expect(await ledgerSum('w-friend1', 'wallet')).toBe(250)
    expect(await ledgerSum('basic-ref', 'wallet')).toBe(250)
    expect(await ledgerSum('partner-ref', 'cash')).toBe(300)
  })

  it('spends soonest-expiring credit first, once per id, never below zero', async () => {
    // a referrer who was referred too: a bonus that expires, and commission that does not
    const code = await codeFor(api, 'w-host')
    await api.post('/v1/events', {
      events: [
        { type: 'signup', id: 'w-s4', user_id: 'w-spender', ref: code },
        { type: 'signup', id: 'w-s5', user_id: 'w-buyer', ref: await codeFor(api, 'w-spender') },
        { type: 'purchase', id: 'w-p5', user_id: 'w-buyer', amount_cents: 10000 }, // 500 to w-spender
      ],
    })
    await drained(svc.service)
    expect((await wallet('w-spender')).balance_cents).toBe(750)

    const first = await spend('w-spender', 'order-1', 300)
    expect(first.status).toBe(200)
    const body = (await first.json()) as { balance_cents: number; allocations: unknown[] }
    expect(body.balance_cents).toBe(450)
    expect(body.allocations).toEqual([
      { credit_id: 'signup_bonus:w-s4', amount_cents: 250 },
      { credit_id: 'commission:w-p5', amount_cents: 50 },
    ])
    const again = await spend('w-spender', 'order-1', 300)
    expect(again.status).toBe(200)
    expect(((await again.json()) as { balance_cents: number }).balance_cents).toBe(450)
    expect((await wallet('w-spender')).balance_cents).toBe(450)

    const tooMuch = await spend('w-spender', 'order-2', 451)
    expect(tooMuch.status).toBe(409)
    expect(((await tooMuch.json()) as { error: { code: string } }).error.code).toBe('conflict')
    expect((await wallet('w-spender')).balance_cents).toBe(450)

    await drained(svc.service)
    expect(await ledgerSum('w-spender', 'wallet')).toBe(450)
    // one entry per credit drawn on, once however often the spend was sent
    const entries = await queryRows<{ credit_id: string; amount_cents: string }>(
      svc.ch,
      "SELECT credit_id, amount_cents FROM ledger WHERE kind = 'spend' AND event_id = 'order-1' ORDER BY amount_cents",
    )
    expect(entries.map((e) => [e.credit_id, Number(e.amount_cents)])).toEqual([
      ['signup_bonus:w-s4', -250],
      ['commission:w-p5', -50],
    ])
  })

  it('takes 20 concurrent spends against a small balance without going below zero', async () => {
    const code = await codeFor(api, 'w-host2')
    await api.post('/v1/events', { type: 'signup', id: 'w-s6', user_id: 'w-racer', ref: code })
    await drained(svc.service)
    const answers = await Promise.all(
      Array.from({ length: 20 }, (_, i) => spend('w-racer', `race-${i % 10}`, 40)), // 10 ids, each sent twice
    )
    const ok = answers.filter((r) => r.status === 200).length
    const refused = answers.filter((r) => r.status === 409).length
    expect(ok + refused).toBe(20)
    const w = await wallet('w-racer')
    expect(w.balance_cents).toBeGreaterThanOrEqual(0)
    // 250 allows 6 spends of 40; each id counts once however often it was sent
    expect(w.balance_cents).toBe(250 - 6 * 40)
    await drained(svc.service)
    expect(await ledgerSum('w-racer', 'wallet')).toBe(w.balance_cents)
  })

  it('writes off what is left of a bonus when it expires, by a scheduled job', async () => {
    const code = await codeFor(api, 'w-host3')
    // signed up 30 days ago less 2 s: the credit expires 2 s from now
    const ts = Date.now() - 30 * DAY + 2000
    await api.post('/v1/events', { type: 'signup', id: 'w-s7', user_id: 'w-late', ref: code, ts })
    await drained(svc.service)
    expect((await spend('w-late', 'before-expiry', 100)).status).toBe(200)
    await eventually(
      async () => {
        expect(
          await count(
            svc.ch,
            "SELECT count() AS n FROM ledger WHERE entry_id = 'bonus_expiry:signup_bonus:w-s7'",
          ),
        ).toBe(1)
      },
      20_000,
      200,
    )
    expect((await wallet('w-late')).balance_cents).toBe(0)
    expect(await ledgerSum('w-late', 'wallet')).toBe(0) // +250, -100 spent, -150 expired
    expect((await spend('w-late', 'after-expiry', 1)).status).toBe(409)
  })

  it('refuses bad spends with a clear 4xx and changes nothing', async () => {
    for (const body of [
      { id: 'x', amount_cents: -5 },
      { id: 'x', amount_cents: 1.5 },
      { amount_cents: 5 },
      { id: '', amount_cents: 5 },
    ]) {
      const res = await api.post('/v1/users/w-spender/wallet/spend', body)
      expect(res.status).toBe(400)
    }
    expect((await wallet('w-spender')).balance_cents).toBe(450)
    const noKey = await api.get('/v1/users/w-spender/wallet', { authorization: '' })
    expect(noKey.status).toBe(401)
  })
})
