import { type Counters, type Keys, referralLink, type Track } from '@referral/core'
import { balancesOf, countersOf, readWallet, walletOf } from '@referral/workers'
import { Hono } from 'hono'
import { streamSSE } from 'hono/streaming'
import type { Redis } from 'ioredis'
import type { ApiDeps } from '../context.ts'
import { getOrCreateCode } from '../referral-codes.ts'
import { walletBody } from './wallet.ts'

export interface ReferrerStats extends Counters {
  total_clicks: number
  total_referrals: number
  pending_referrals: number
  conversion_rate: number
  total_earnings_cents: number
  track: Track
  wallet_balance_cents: number
  cash_balance_cents: number
  /** commissions held for review (fraud flags): counted in earnings, not yet spendable or payable */
  held_cents: number
  as_of: string
  /**
   * when this referrer's events last reached ClickHouse, which the reports read (earnings
   * series, referrals list): they include everything counted up to about then. null: never
   */
  reports_as_of: string | null
}

/**
 * The six metrics of contract section 1, derived from the live counters. The counters are
 * listed one by one, not spread: on this Node (V8 11.3) a literal that spreads an object and
 * then adds properties is built property by property in the runtime, ~1.5 us each (16.5 us
 * for this one, against 0.03 us written out); see BENCHMARKS.md.
 */
export function toStats(
  c: Counters,
  track: Track,
  balances: { wallet: number; cash: number; held: number },
  asOf: Date,
  storedAt: number | null,
): ReferrerStats {
  return {
    clicks: c.clicks,
    signups: c.signups,
    conversions: c.conversions,
    earnings_cents: c.earnings_cents,
    total_clicks: c.clicks,
    total_referrals: c.signups,
    pending_referrals: Math.max(0, c.signups - c.conversions),
    conversion_rate: c.signups === 0 ? 0 : c.conversions / c.signups,
    total_earnings_cents: c.earnings_cents,
    track,
    wallet_balance_cents: balances.wallet,
    cash_balance_cents: balances.cash,
    held_cents: balances.held,
    as_of: asOf.toISOString(),
    reports_as_of: storedAt === null ? null : new Date(storedAt).toISOString(),
  }
}

/** The referrer's own data; the JWT's `sub` is the only user these routes ever read. */
export function meRoutes(deps: ApiDeps): Hono {
  const { config, redis, keys } = deps
  const app = new Hono()

  app.get('/v1/me/referral', async (c) => {
    const { userId } = c.get('auth')
    const code = await getOrCreateCode(redis, keys, userId)
    const link = referralLink(config.landingUrl, code)
    const text = encodeURIComponent(
      'I use the API marketplace for my projects. Sign up with my link and get $2.50 of credit:',
    )
    return c.json({
      code,
      link,
      track: await trackOf(deps, userId),
      share: {
        twitter: `https://twitter.com/intent/tweet?text=${text}&url=${encodeURIComponent(link)}`,
        linkedin: `https://www.linkedin.com/sharing/share-offsite/?url=${encodeURIComponent(link)}`,
      },
    })
  })

  app.get('/v1/me/stats', async (c) => c.json(await readStats(deps, c.get('auth').userId)))

  // the referrer's own wallet (the marketplace reads any user's at /v1/users/:id/wallet)
  app.get('/v1/me/wallet', async (c) =>
    c.json(walletBody(await readWallet(redis, keys, c.get('auth').userId, Date.now()))),
  )

  app.get('/v1/me/stream', (c) => {
    const { userId } = c.get('auth')
    return streamSSE(c, async (stream) => {
      let id = 0
      let sending = false
      let again = false
      const send = async () => {
        if (sending) {
          again = true
          return
        }
        sending = true
        try {
          do {
            again = false
            const stats = await readStats(deps, userId)
            await stream.writeSSE({ event: 'stats', data: JSON.stringify(stats), id: String(++id) })
          } while (again && !stream.aborted)
        } catch (e) {
          deps.log.warn({ err: (e as Error).message }, 'stats stream: could not send')
        } finally {
          sending = false
        }
      }
      const unwatch = deps.hub.watch(userId, () => void send())
      await deps.hub.hold(stream, send, unwatch)
    })
  })
  return app
}

/** What a stats answer is made of, as Redis holds it (StatsCache keeps these). */
export interface RawStats {
  stats: Record<string, string>
  track: string | null
  wallet: Record<string, string>
  balance: Array<string | null>
}

/** One round trip: a stats read is the dashboard's most frequent call. */
export async function readRawStats(redis: Redis, keys: Keys, userId: string): Promise<RawStats> {
  const replies = await redis
    .pipeline()
    .hgetall(keys.stats(userId))
    .hget(keys.user(userId), 'track')
    .hgetall(keys.wallet(userId))
    .hmget(keys.balance(userId), 'cash', 'held')
    .exec()
  const [stats, track, wallet, balance] = (replies ?? []).map(([err, v]) => {
    if (err) throw err
    return v
  }) as [Record<string, string>, string | null, Record<string, string>, Array<string | null>]
  return { stats, track, wallet, balance }
}

/**
 * The user's stats now, through this process's StatsCache: as of every change it heard of
 * before the call. Credits that expired since the read are left out here.
 */
export async function readStats(deps: ApiDeps, userId: string): Promise<ReferrerStats> {
  const raw = await deps.statsCache.get(userId)
  const now = new Date()
  const stored = raw.stats.stored_at === undefined ? null : Number(raw.stats.stored_at)
  return toStats(
    countersOf(raw.stats),
    raw.track === 'partner' ? 'partner' : 'basic',
    { wallet: walletOf(raw.wallet, now.getTime()).balance_cents, ...balancesOf(raw.balance) },
    now,
    stored,
  )
}

async function trackOf(deps: ApiDeps, userId: string): Promise<Track> {
  const t = await deps.redis.hget(deps.keys.user(userId), 'track')
  return t === 'partner' ? 'partner' : 'basic'
}
