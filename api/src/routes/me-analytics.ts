import { CASH_EARNING_KINDS_SQL, type ClickHouse, EARNING_KINDS_SQL, queryRows } from '@referral/clickhouse'
import {
  AppError,
  buckets,
  type Interval,
  isoInZone,
  isTimeZone,
  MIN_PAYOUT_CENTS,
  RATE_BPS,
} from '@referral/core'
import { balances } from '@referral/workers'
import { Hono } from 'hono'
import { z } from 'zod'
import { HOUR_BUCKET } from '../admin-reports.ts'
import type { ApiDeps } from '../context.ts'
import { instant, needClickHouse, parseQuery } from '../query.ts'

const DAY = 86_400_000
export const MAX_POINTS = 2000

export const earningsQuery = z.object({
  interval: z.enum(['hour', 'day', 'week', 'month']).default('day'),
  tz: z.string().refine(isTimeZone, 'an IANA time zone, e.g. Europe/Paris').default('UTC'),
  from: instant.optional(),
  to: instant.optional(),
})

export const referralsQuery = z.object({
  status: z.enum(['pending', 'converted']).optional(),
  cursor: z.string().max(512).optional(),
  limit: z.coerce.number().int().min(1).max(200).default(50),
})

/** "ab…yz": enough for the referrer to recognise, not enough to find the user elsewhere. */
export function maskUserId(id: string): string {
  if (id.length <= 4) return `${id.slice(0, 1)}…`
  return `${id.slice(0, 2)}…${id.slice(-2)}`
}

interface Cursor {
  t: number
  u: string
}
const encodeCursor = (c: Cursor) => Buffer.from(JSON.stringify(c)).toString('base64url')
function decodeCursor(s: string): Cursor {
  try {
    const c = JSON.parse(Buffer.from(s, 'base64url').toString()) as Cursor
    if (typeof c.t === 'number' && typeof c.u === 'string') return c
  } catch {
    // falls through to the error below
  }
  throw new AppError('validation_failed', 'invalid cursor', [
    { path: 'cursor', message: 'use next_cursor as given' },
  ])
}

const EMPTY_POINT = { earnings_cents: 0, conversions: 0, signups: 0, clicks: 0 }
type PointValues = typeof EMPTY_POINT

/** A referrer's earnings, conversions, signups and clicks per bucket start (epoch ms) with activity. */
export async function earningsSeries(
  ch: ClickHouse,
  userId: string,
  from: number,
  to: number,
  interval: Interval,
  tz: string,
): Promise<Map<number, PointValues>> {
  const params = { u: userId, tz, from, to }
  // hourly rollups: a zone with a half-hour offset is bucketed to its hour
  const hours =
    'hour >= toStartOfHour(fromUnixTimestamp64Milli({from:Int64})) AND hour <= fromUnixTimestamp64Milli({to:Int64})'
  const bucket = HOUR_BUCKET[interval]
  // one query, not two: each chDB query costs ~12 ms however small
  const rows = await queryRows<{
    t: string
    earnings: string
    clicks: string
    signups: string
    conversions: string
  }>(
    ch,
    `SELECT ${bucket} AS t, sum(earnings_cents) AS earnings, 0 AS clicks, 0 AS signups, 0 AS conversions
     FROM rollup_earnings_hourly WHERE user_id = {u:String} AND ${hours} GROUP BY t
     UNION ALL
     SELECT ${bucket} AS t, 0, sum(clicks), sum(signups), sum(conversions)
     FROM rollup_referrer_hourly WHERE referrer_id = {u:String} AND ${hours} GROUP BY t`,
    params,
  )
  const byT = new Map<number, PointValues>()
  const at = (t: number) => {
    let p = byT.get(t)
    if (p === undefined) {
      p = { ...EMPTY_POINT }
      byT.set(t, p)
    }
    return p
  }
  for (const r of rows) {
    const p = at(Number(r.t))
    p.earnings_cents += Number(r.earnings)
    p.clicks += Number(r.clicks)
    p.signups += Number(r.signups)
    p.conversions += Number(r.conversions)
  }
  return byT
}

/** The referrer's history from ClickHouse: earnings over time, referred users, forecasts. */
export function meAnalyticsRoutes(deps: ApiDeps): Hono {
  const { redis, keys } = deps
  const app = new Hono()

  app.get('/v1/me/earnings', async (c) => {
    const ch = needClickHouse(deps)
    const { userId } = c.get('auth')
    const q = parseQuery(earningsQuery, c.req.query())
    const to = q.to ?? Date.now()
    const span = { hour: 2 * DAY, day: 30 * DAY, week: 26 * 7 * DAY, month: 365 * DAY }[q.interval]
    const from = q.from ?? to - span
    if (from > to)
      throw new AppError('validation_failed', '"from" is after "to"', [
        { path: 'from', message: 'before to' },
      ])
    const starts = buckets(from, to, q.tz, q.interval, MAX_POINTS)
    if (starts === null) {
      throw new AppError(
        'validation_failed',
        `more than ${MAX_POINTS} ${q.interval}s in the range; narrow it or use a longer interval`,
        [{ path: 'from', message: 'range too large' }],
      )
    }
    const first = starts[0] ?? from
    const byT = await earningsSeries(ch, userId, first, to, q.interval, q.tz)
    return c.json({
      interval: q.interval,
      tz: q.tz,
      from: isoInZone(first, q.tz),
      to: isoInZone(to, q.tz),
      points: starts.map((t) => ({ t: isoInZone(t, q.tz), ...(byT.get(t) ?? EMPTY_POINT) })),
    })
  })

  app.get('/v1/me/referrals', async (c) => {
    const ch = needClickHouse(deps)
    const { userId } = c.get('auth')
    const q = parseQuery(referralsQuery, c.req.query())
    const cursor = q.cursor === undefined ? undefined : decodeCursor(q.cursor)
    const rows = await queryRows<{
      user_id: string
      signed_up_at: string
      first_purchase_at: string
      purchases: string
      earnings: string
    }>(
      ch,
      `SELECT s.user_id AS user_id, toUnixTimestamp64Milli(s.ts) AS signed_up_at,
              toUnixTimestamp64Milli(p.first_at) AS first_purchase_at, p.n AS purchases, e.earnings AS earnings
       FROM (SELECT user_id, min(ts) AS ts FROM events
             WHERE referrer_id = {u:String} AND type = 'signup' AND counted = 1 GROUP BY user_id) AS s
       LEFT JOIN (SELECT user_id, min(ts) AS first_at, count() AS n FROM events
                  WHERE referrer_id = {u:String} AND type = 'purchase' GROUP BY user_id) AS p ON p.user_id = s.user_id
       LEFT JOIN (SELECT source_user_id, sum(amount_cents) AS earnings FROM ledger
                  WHERE user_id = {u:String} AND kind IN ${EARNING_KINDS_SQL}
                  GROUP BY source_user_id) AS e ON e.source_user_id = s.user_id
       WHERE ({status:String} = '' OR ({status:String} = 'converted') = (p.n > 0))
         AND ({cu:String} = '' OR (toUnixTimestamp64Milli(s.ts), s.user_id) < ({ct:Int64}, {cu:String}))
       ORDER BY signed_up_at DESC, user_id DESC
       LIMIT {limit:UInt32}`,
      { u: userId, status: q.status ?? '', cu: cursor?.u ?? '', ct: cursor?.t ?? 0, limit: q.limit + 1 },
    )
    const page = rows.slice(0, q.limit)
    const last = page[page.length - 1]
    return c.json({
      referrals: page.map((r) => {
        const converted = Number(r.purchases) > 0
        return {
          user: maskUserId(r.user_id),
          status: converted ? 'converted' : 'pending',
          signed_up_at: new Date(Number(r.signed_up_at)).toISOString(),
          first_purchase_at: converted ? new Date(Number(r.first_purchase_at)).toISOString() : null,
          purchases: Number(r.purchases),
          earnings_cents: Number(r.earnings),
        }
      }),
      next_cursor:
        rows.length > q.limit && last !== undefined
          ? encodeCursor({ t: Number(last.signed_up_at), u: last.user_id })
          : null,
    })
  })

  app.get('/v1/me/insights', async (c) => {
    const ch = needClickHouse(deps)
    const { userId } = c.get('auth')
    const now = Date.now()
    const [{ cash }, [row]] = await Promise.all([
      balances(redis, keys, userId),
      queryRows<{ cash30: string; basic_sales: string; basic_commission: string }>(
        ch,
        `SELECT
           (SELECT sum(amount_cents) FROM ledger WHERE user_id = {u:String} AND account = 'cash'
              AND kind IN ${CASH_EARNING_KINDS_SQL} AND ts >= fromUnixTimestamp64Milli({since:Int64})) AS cash30,
           (SELECT sum(amount_cents) FROM events WHERE referrer_id = {u:String} AND type = 'purchase'
              AND track = 'basic') AS basic_sales,
           (SELECT sum(commission_cents) FROM events WHERE referrer_id = {u:String} AND type = 'purchase'
              AND track = 'basic') AS basic_commission`,
        { u: userId, since: now - 30 * DAY },
      ),
    ])
    const perDay = Number(row?.cash30 ?? 0) / 30
    const missing = MIN_PAYOUT_CENTS - cash
    const days = missing <= 0 ? 0 : perDay > 0 ? Math.ceil(missing / perDay) : null
    const basicSales = Number(row?.basic_sales ?? 0)
    const basicCommission = Number(row?.basic_commission ?? 0)
    const asPartner = Math.floor((basicSales * RATE_BPS.partner + 5000) / 10000)
    return c.json({
      payout_forecast: {
        cash_balance_cents: cash,
        minimum_cents: MIN_PAYOUT_CENTS,
        cash_earned_per_day_cents: Math.round(perDay),
        reached: missing <= 0,
        expected_date: days === null ? null : new Date(now + days * DAY).toISOString().slice(0, 10),
      },
      what_if_partner: {
        basic_sales_cents: basicSales,
        earned_as_basic_cents: basicCommission,
        at_partner_rate_cents: asPartner,
        difference_cents: asPartner - basicCommission,
      },
    })
  })
  return app
}
