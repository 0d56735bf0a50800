import { type ClickHouse, queryRows } from '@referral/clickhouse'
import { AppError, bucketStart, buckets, type Interval, isoInZone } from '@referral/core'
import { FLAGGED_EVENTS, type FlagFilter, numbers, type Range, type Row } from './report-basics.ts'

/**
 * The growth team's reports. Time series and referrer rankings read the rollups
 * (SummingMergeTree fed by materialized views); funnels and breakdowns read funnel_steps
 * (the funnel's events, narrow and sorted by step and time, fed by a materialized view).
 * Every report is a list of flat rows, so the JSON endpoints and the CSV export share them.
 */

// the funnel and the breakdowns (funnel_steps, funnel_hours) live in admin-funnel.ts, and what
// every report shares in report-basics.ts
export * from './admin-funnel.ts'
export * from './report-basics.ts'

const HOUR_RANGE =
  'hour >= toStartOfHour(fromUnixTimestamp64Milli({from:Int64})) AND hour <= fromUnixTimestamp64Milli({to:Int64})'

/** The start of the bucket holding an hourly rollup row, as epoch ms, in the zone {tz}. */
export const HOUR_BUCKET: Record<Interval, string> = {
  hour: 'toUnixTimestamp(toStartOfHour(hour, {tz:String})) * 1000',
  day: 'toUnixTimestamp(toStartOfDay(hour, {tz:String})) * 1000',
  week: 'toUnixTimestamp(toDateTime(toMonday(hour, {tz:String}), {tz:String})) * 1000',
  month: 'toUnixTimestamp(toDateTime(toStartOfMonth(hour, {tz:String}), {tz:String})) * 1000',
}

const METRICS = ['clicks', 'signups', 'conversions', 'revenue_cents', 'commission_cents'] as const

/**
 * A rollup's metric summed under a flag filter, from the column and its flagged_ share.
 * Columns are named with their table: the bare names are also the aliases of the sums.
 */
function metric(table: string, column: string, as: string, f: FlagFilter): string {
  const all = `sum(${table}.${column})`
  const flagged = `sum(${table}.flagged_${as})`
  if (f === 'include') return `${all} AS ${as}`
  if (f === 'only') return `${flagged} AS ${as}`
  return `toInt64(${all}) - toInt64(${flagged}) AS ${as}`
}
/** the metrics of rollup_hourly (signups there: referred_signups) or rollup_referrer_daily */
function metricsSql(f: FlagFilter, table: 'rollup_hourly' | 'rollup_referrer_daily'): string {
  return [
    metric(table, 'clicks', 'clicks', f),
    metric(table, table === 'rollup_hourly' ? 'referred_signups' : 'signups', 'signups', f),
    metric(table, 'conversions', 'conversions', f),
    metric(table, 'revenue_cents', 'revenue_cents', f),
    metric(table, 'commission_cents', 'commission_cents', f),
  ].join(', ')
}

export async function timeseries(
  ch: ClickHouse,
  range: Range,
  interval: Interval,
  tz: string,
  maxPoints: number,
  flagged: FlagFilter = 'include',
): Promise<Row[]> {
  const starts = buckets(range.from, range.to, tz, interval, maxPoints)
  if (starts === null) {
    throw new AppError('validation_failed', `more than ${maxPoints} ${interval}s in the range`, [
      { path: 'from', message: 'range too large' },
    ])
  }
  const rows = await queryRows<Record<string, string>>(
    ch,
    `SELECT ${HOUR_BUCKET[interval]} AS t, ${metricsSql(flagged, 'rollup_hourly')}
     FROM rollup_hourly WHERE ${HOUR_RANGE} GROUP BY t`,
    { ...range, from: starts[0] ?? range.from, tz },
  )
  const byT = new Map(rows.map((r) => [Number(r.t), numbers(r, METRICS)]))
  return starts.map((t) => ({ t: isoInZone(t, tz), ...(byT.get(t) ?? numbers({}, METRICS)) }))
}

/**
 * All time, today and yesterday. Besides the filtered metrics, each period says how much was
 * flagged and the conversion rate without it, so the effect of the fraud rules shows at once.
 */
export async function overview(
  ch: ClickHouse,
  now: number,
  tz: string,
  flagged: FlagFilter = 'include',
): Promise<Row[]> {
  const today = bucketStart(now, tz, 'day')
  const yesterday = bucketStart(today - 1, tz, 'day')
  const col = (column: string) => `sum(rollup_hourly.${column})`
  const cols = `${metricsSql(flagged, 'rollup_hourly')}, ${col('flagged_signups')} AS flagged_signups,
    ${col('flagged_conversions')} AS flagged_conversions, ${col('flagged_commission_cents')} AS flagged_commission_cents,
    ${col('referred_signups')} AS all_signups, ${col('conversions')} AS all_conversions`
  const rows = await queryRows<Record<string, string>>(
    ch,
    `SELECT 'all' AS period, ${cols} FROM rollup_hourly
     UNION ALL SELECT 'today', ${cols} FROM rollup_hourly WHERE hour >= fromUnixTimestamp64Milli({today:Int64})
     UNION ALL SELECT 'yesterday', ${cols} FROM rollup_hourly
       WHERE hour >= fromUnixTimestamp64Milli({yesterday:Int64}) AND hour < fromUnixTimestamp64Milli({today:Int64})`,
    { today, yesterday },
  )
  const rate = (conversions: number, signups: number) => (signups === 0 ? 0 : conversions / signups)
  const order = ['all', 'today', 'yesterday']
  return order.map((period) => {
    const r = rows.find((x) => x.period === period) ?? {}
    const m = numbers(r, METRICS)
    const x = numbers(r, [
      'flagged_signups',
      'flagged_conversions',
      'flagged_commission_cents',
      'all_signups',
      'all_conversions',
    ])
    const all = { signups: x.all_signups ?? 0, conversions: x.all_conversions ?? 0 }
    const flaggedSignups = x.flagged_signups ?? 0
    const flaggedConversions = x.flagged_conversions ?? 0
    return {
      period,
      ...m,
      conversion_rate: rate(m.conversions ?? 0, m.signups ?? 0),
      flagged_signups: flaggedSignups,
      flagged_conversions: flaggedConversions,
      flagged_commission_cents: x.flagged_commission_cents ?? 0,
      conversion_rate_all: rate(all.conversions, all.signups),
      conversion_rate_unflagged: rate(all.conversions - flaggedConversions, all.signups - flaggedSignups),
    }
  })
}

const RANK = {
  earnings: 'commission_cents',
  conversions: 'conversions',
  conversion_rate: 'conversion_rate',
} as const
export type RankBy = keyof typeof RANK

export async function topReferrers(
  ch: ClickHouse,
  range: Range,
  by: RankBy,
  limit: number,
  flagged: FlagFilter = 'include',
): Promise<Row[]> {
  const rows = await queryRows<Record<string, string>>(
    ch,
    `SELECT referrer_id, ${metricsSql(flagged, 'rollup_referrer_daily')},
            sum(rollup_referrer_daily.flagged_signups) AS flagged_signups,
            if(signups = 0, 0, conversions / signups) AS conversion_rate
     FROM rollup_referrer_daily
     WHERE day >= toDate(fromUnixTimestamp64Milli({from:Int64})) AND day <= toDate(fromUnixTimestamp64Milli({to:Int64}))
     GROUP BY referrer_id
     HAVING ${flagged === 'only' ? 'flagged_signups > 0 OR clicks > 0 OR commission_cents != 0' : '1'}
     ORDER BY ${RANK[by]} DESC, conversions DESC, referrer_id
     LIMIT {limit:UInt32}`,
    { ...range, limit },
  )
  return rows.map((r) => ({
    referrer_id: r.referrer_id ?? '',
    ...numbers(r, [
      'clicks',
      'signups',
      'conversions',
      'revenue_cents',
      'commission_cents',
      'conversion_rate',
      'flagged_signups',
    ]),
  }))
}

/** The signup credit's life: granted, spent, expired, still open; and conversion with and without spending it. */
export async function credits(
  ch: ClickHouse,
  flagged: FlagFilter = 'include',
): Promise<{ lifecycle: Row[]; effect: Row[] }> {
  const [[life], effect] = await Promise.all([
    queryRows<Record<string, string>>(
      ch,
      `SELECT sumIf(amount_cents, kind = 'signup_bonus') AS granted_cents,
              countIf(kind = 'signup_bonus') AS granted_credits,
              -sumIf(amount_cents, kind = 'spend' AND startsWith(credit_id, 'signup_bonus:')) AS used_cents,
              -sumIf(amount_cents, kind = 'bonus_expiry') AS expired_cents
       FROM ledger`,
    ),
    queryRows<{ used: string; users: string; converted: string }>(
      ch,
      `SELECT u.user_id != '' AS used, count() AS users, countIf(p.user_id != '') AS converted
       FROM (SELECT user_id FROM events WHERE type = 'signup' AND counted = 1 AND ${FLAGGED_EVENTS[flagged]}) AS s
       LEFT JOIN (SELECT DISTINCT user_id FROM ledger WHERE kind = 'spend' AND startsWith(credit_id, 'signup_bonus:')) AS u
         ON u.user_id = s.user_id
       LEFT JOIN (SELECT DISTINCT user_id FROM events WHERE type = 'purchase' AND first_purchase = 1) AS p
         ON p.user_id = s.user_id
       GROUP BY used`,
    ),
  ])
  const l = numbers(life ?? {}, ['granted_cents', 'granted_credits', 'used_cents', 'expired_cents'])
  const lifecycle = [
    { ...l, open_cents: (l.granted_cents ?? 0) - (l.used_cents ?? 0) - (l.expired_cents ?? 0) },
  ]
  const group = (used: boolean) => {
    // ClickHouse answers the boolean as 1/0 (or true/false, by version)
    const r = effect.find((e) => ['1', 'true'].includes(String(e.used)) === used)
    const users = Number(r?.users ?? 0)
    const converted = Number(r?.converted ?? 0)
    return {
      used_credit: used ? 'yes' : 'no',
      users,
      converted,
      conversion_rate: users === 0 ? 0 : converted / users,
    }
  }
  return { lifecycle, effect: [group(true), group(false)] }
}

/** RFC 4180 CSV of flat rows; a cell that starts like a formula is quoted with a leading apostrophe. */
export function toCsv(rows: readonly Row[]): string {
  const first = rows[0]
  if (first === undefined) return ''
  const cols = Object.keys(first)
  const cell = (v: string | number | null) => {
    let s = v === null ? '' : String(v)
    if (/^[=+\-@\t\r]/.test(s) && typeof v === 'string') s = `'${s}`
    return /[",\n\r]/.test(s) ? `"${s.replaceAll('"', '""')}"` : s
  }
  return `${[cols.join(','), ...rows.map((r) => cols.map((c) => cell(r[c] ?? null)).join(','))].join('\r\n')}\r\n`
}
