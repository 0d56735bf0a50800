import { createHash } from 'node:crypto'
import { AppError, requireStripe, type Stripe } from '@referral/core'
import { enqueuePayouts, listPayouts, type Payout, requestPayout } from '@referral/workers'
import { Hono } from 'hono'
import type { ApiDeps } from '../context.ts'
import { iso } from '../query.ts'
import { statsChanged } from '../stats-cache.ts'

// KEYS[1] user; ARGV[1] now. The upgrade time is set once: commissions on purchases before it
// stay at the Basic rate, whatever order events arrive in.
const SET_PARTNER = `
redis.call('HSETNX', KEYS[1], 'partner_since', ARGV[1])
redis.call('HSET', KEYS[1], 'track', 'partner')
return redis.call('HGET', KEYS[1], 'partner_since')
`

export function payoutBody(p: Payout) {
  return {
    id: p.id,
    amount_cents: p.amount_cents,
    currency: 'usd',
    status: p.status,
    created_at: iso(p.created_at),
    settled_at: iso(p.settled_at),
    transfer_id: p.transfer_id,
    failure: p.failure,
  }
}

/** Calls to Stripe that fail for Stripe's reasons answer 503 with what Stripe said. */
async function viaStripe<T>(what: string, f: () => Promise<T>): Promise<T> {
  try {
    return await f()
  } catch (e) {
    throw new AppError(
      'unavailable',
      `Stripe could not ${what}: ${e instanceof Error ? e.message : String(e)}`,
      [],
      {
        cause: e,
      },
    )
  }
}

/** Partner track: upgrade with Stripe Connect onboarding, and cash payouts. */
export function partnerRoutes(deps: ApiDeps): Hono {
  const { config, redis, keys, log } = deps
  const app = new Hono()

  const connectedAccount = async (stripe: Stripe, userId: string): Promise<string> => {
    const existing = await redis.hget(keys.user(userId), 'stripe_account')
    if (existing !== null) return existing
    // the same key for the same user: concurrent or repeated upgrades get one account
    const idempotencyKey = `account-${createHash('sha256').update(userId).digest('hex').slice(0, 40)}`
    const created = await viaStripe('create the connected account', () =>
      stripe.accounts.create(
        { type: 'express', metadata: { user_id: userId }, capabilities: { transfers: { requested: true } } },
        { idempotencyKey },
      ),
    )
    await redis.hsetnx(keys.user(userId), 'stripe_account', created.id)
    await redis.set(keys.stripeAccount(created.id), userId)
    return (await redis.hget(keys.user(userId), 'stripe_account')) ?? created.id
  }

  app.post('/v1/me/partner', async (c) => {
    const stripe = requireStripe(deps.stripe)
    const { userId } = c.get('auth')
    const account = await connectedAccount(stripe, userId)
    const link = await viaStripe('create the onboarding link', () =>
      stripe.accountLinks.create({
        account,
        type: 'account_onboarding',
        refresh_url: `${config.publicUrl}/?partner=refresh`,
        return_url: `${config.publicUrl}/?partner=done`,
      }),
    )
    const since = await redis.eval(SET_PARTNER, 1, keys.user(userId), Date.now())
    await statsChanged(deps, [userId]) // the track
    await redis.sadd(keys.partners(), userId)
    return c.json({ track: 'partner', onboarding_url: link.url, partner_since: iso(Number(since)) })
  })

  app.get('/v1/me/payouts', async (c) => {
    const { userId } = c.get('auth')
    const payouts = await listPayouts(redis, keys, userId)
    return c.json({ payouts: payouts.map(payoutBody) })
  })

  app.post('/v1/me/payouts', async (c) => {
    requireStripe(deps.stripe)
    const { userId } = c.get('auth')
    const [account, enabled] = await redis.hmget(keys.user(userId), 'stripe_account', 'payouts_enabled')
    if (account === null || account === undefined || enabled !== '1') {
      throw new AppError(
        'conflict',
        account
          ? 'the Stripe account cannot receive payouts yet: finish onboarding'
          : 'no Stripe account: upgrade to Partner first',
        [{ path: 'account', message: account ? 'payouts_not_enabled' : 'no_account' }],
      )
    }
    const result = await requestPayout(redis, keys, userId, account, Date.now())
    if (!result.ok) {
      throw new AppError(
        'conflict',
        `the cash balance (${result.cashCents} cents) is below the 2500-cent minimum`,
        [{ path: 'cash_balance_cents', message: 'below_minimum' }],
      )
    }
    await statsChanged(deps, [userId])
    try {
      await enqueuePayouts(deps.payouts, [result.payout.id])
    } catch (e) {
      // recorded as pending: the payout worker's sweep queues it
      log.warn(
        { err: (e as Error).message, payout: result.payout.id },
        'payout recorded, its job will be queued by the sweep',
      )
    }
    return c.json(payoutBody(result.payout), 201)
  })
  return app
}
