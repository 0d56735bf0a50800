import { type ClickHouse, queryRows } from '@referral/clickhouse'
import { AppError, bucketStart, buckets, type Interval, isoInZone } from '@referral/core'

/**
 * The growth team's reports. Time series and referrer rankings read the rollups
 * (SummingMergeTree fed by materialized views); funnels and breakdowns read funnel_steps
 * (the funnel's events, narrow and sorted by step and time, fed by a materialized view).
 * Every report is a list of flat rows, so the JSON endpoints and the CSV export share them.
 */

export type Row = Record<string, string | number | null>

export type Range = {
  from: number
  to: number
}

const HOUR_RANGE =
  'hour >= toStartOfHour(fromUnixTimestamp64Milli({from:Int64})) AND hour <= fromUnixTimestamp64Milli({to:Int64})'

/** The start of the bucket holding an hourly rollup row, as epoch ms, in the zone {tz}. */
export const HOUR_BUCKET: Record<Interval, string> = {
  hour: 'toUnixTimestamp(toStartOfHour(hour, {tz:String})) * 1000',
  day: 'toUnixTimestamp(toStartOfDay(hour, {tz:String})) * 1000',
  week: 'toUnixTimestamp(toDateTime(toMonday(hour, {tz:String}), {tz:String})) * 1000',
  month: 'toUnixTimestamp(toDateTime(toStartOfMonth(hour, {tz:String}), {tz:String})) * 1000',
}

/**
 * Which events a report counts by their fraud flags: all of them, only the unflagged, or only
 * the flagged. Every growth report takes it (`?flagged=`).
 */
export const FLAG_FILTERS = ['include', 'exclude', 'only'] as const
export type FlagFilter = (typeof FLAG_FILTERS)[number]
/** the filter as a condition on raw events */
export const FLAGGED_EVENTS: Record<FlagFilter, string> = {
  include: '1',
  exclude: 'empty(flags)',
  only: 'notEmpty(flags)',
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

const numbers = (r: Record<string, string>, keys: readonly string[]) =>
  Object.fromEntries(keys.map((k) => [k, Number(r[k] ?? 0)])) as Record<string, number>

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

/** The breakdowns' dimensions: columns of funnel_steps, computed when the click was stored (0005). */
export const BREAKDOWNS = {
  utm_source: 'utm_source',
  utm_medium: 'utm_medium',
  utm_campaign: 'utm_campaign',
  referrer_domain: 'referrer_domain',
  country: 'country',
  device: 'device',
  browser: 'browser',
} as const
export type BreakdownBy = keyof typeof BREAKDOWNS

const STEP_RANGE = `ts >= fromUnixTimestamp64Milli({from:Int64}) AND ts <= fromUnixTimestamp64Milli({to:Int64})`
/** the fraud-flag filter as a condition on funnel_steps (0008 added its `flagged` column) */
const FLAGGED_STEPS: Record<FlagFilter, string> = {
  include: '1',
  exclude: 'flagged = 0',
  only: 'flagged = 1',
}

/** Counted clicks by a dimension, with the signups and conversions of the visitors who clicked. */
export async function breakdown(
  ch: ClickHouse,
  range: Range,
  by: BreakdownBy,
  flagged: FlagFilter = 'include',
): Promise<Row[]> {
  const f = FLAGGED_STEPS[flagged]
  const rows = await queryRows<Record<string, string>>(
    ch,
    `SELECT c.value AS value, count() AS clicks,
            uniqExactIf(s.user_id, s.user_id != '') AS signups,
            uniqExactIf(s.user_id, p.user_id != '') AS conversions
     FROM (SELECT visitor, ${BREAKDOWNS[by]} AS value FROM funnel_steps WHERE step = 1 AND ${STEP_RANGE} AND ${f}) AS c
     LEFT JOIN (SELECT visitor, any(user_id) AS user_id FROM funnel_steps
                WHERE step = 2 AND visitor != 0 AND ${f} GROUP BY visitor) AS s
       ON s.visitor = c.visitor
     LEFT JOIN (SELECT DISTINCT user_id FROM funnel_steps WHERE step = 3 AND ${f}) AS p
       ON p.user_id = s.user_id
     GROUP BY value ORDER BY clicks DESC, value LIMIT 200`,
    range,
  )
  return rows.map((r) => ({ value: r.value ?? '', ...numbers(r, ['clicks', 'signups', 'conversions']) }))
}

export interface Funnel {
  steps: Row[]
  time_to_convert: Row[]
}

/** the same filter on the buyer's signup, which a first purchase's step carries (0009) */
const FLAGGED_SIGNUP: Record<FlagFilter, string> = {
  include: '1',
  exclude: 'signup_flagged = 0',
  only: 'signup_flagged = 1',
}

/**
 * The first purchases in the range, with the buyer's signup (visitor and time). A step stored
 * since 0009 carries them; one stored before (signed_up = 0) is joined to the buyer's signup.
 */
const purchases = (flagged: FlagFilter) => {
  const f = FLAGGED_STEPS[flagged]
  const legacy = `step = 3 AND ${STEP_RANGE} AND ${f} AND signed_up = 0`
  return `SELECT ts, visitor, signed_up FROM funnel_steps
    WHERE step = 3 AND ${STEP_RANGE} AND ${f} AND signed_up != 0 AND ${FLAGGED_SIGNUP[flagged]}
  UNION ALL
  SELECT p.ts AS ts, s.visitor AS visitor, s.signed_up AS signed_up
  FROM (SELECT user_id, ts FROM funnel_steps WHERE ${legacy}) AS p
  INNER JOIN (SELECT user_id, anyIf(visitor, visitor != 0) AS visitor, min(ts) AS signed_up FROM funnel_steps
              WHERE step = 2 AND ${f} AND user_id IN (SELECT user_id FROM funnel_steps WHERE ${legacy})
              GROUP BY user_id) AS s
    ON s.user_id = p.user_id`
}

/**
 * clicks -> signups -> first purchase per visitor, with windowFunnel over `windowSeconds`;
 * a purchase belongs to the visitor whose signup made the buyer. Also how long buyers took
 * from signup to first purchase. Reads funnel_steps, whose purchase steps carry the buyer's
 * signup visitor and time (0009).
 */
export async function funnel(
  ch: ClickHouse,
  range: Range,
  windowSeconds: number,
  flagged: FlagFilter = 'include',
): Promise<Funnel> {
  const f = FLAGGED_STEPS[flagged]
  const bought = purchases(flagged)
  // the levels: one pass over the range's steps, grouped by visitor (whether they clicked,
  // and windowFunnel). Counting the visitors who clicked apart and running windowFunnel only
  // over those who signed up, picked by an IN filter, read the clicks twice: 10M events,
  // p50 ~380 -> ~250 ms. The times to convert come from the purchases alone.
  // use_index_for_in_with_subqueries = 0, for the join of buyers stored before 0009:
  // `user_id` is not in the key, so the set prunes nothing, and building it for the index
  // made an IN filter ~6x slower once the parts had merged into one per month
  const rows = await queryRows<Record<string, string>>(
    ch,
    `SELECT 'level' AS part, countIf(clicked) AS clicked, countIf(level = 2) AS l2, countIf(level = 3) AS l3,
            ${TTC_BUCKETS.map((_, i) => `0 AS t${i}`).join(', ')}
     FROM (
       SELECT visitor, max(step = 1) AS clicked,
              windowFunnel({window:UInt64})(toDateTime(ts), step = 1, step = 2, step = 3) AS level
       FROM (
         SELECT visitor, ts, step FROM funnel_steps
         WHERE step IN (1, 2) AND visitor != 0 AND ${STEP_RANGE} AND ${f}
         UNION ALL
         SELECT visitor, ts, 3 AS step FROM (${bought}) WHERE visitor != 0
       )
       GROUP BY visitor
     )
     UNION ALL
     SELECT 'ttc', 0, 0, 0, ${TTC_BUCKETS.map((b) => `countIf(${b.when})`).join(', ')}
     FROM (SELECT dateDiff('second', signed_up, ts) AS d FROM (${bought}))
     SETTINGS use_index_for_in_with_subqueries = 0`,
    { ...range, window: windowSeconds },
  )
  const levels = rows.find((r) => r.part === 'level') ?? {}
  const ttc = rows.find((r) => r.part === 'ttc') ?? {}
  return funnelResult(
    Number(levels.clicked ?? 0),
    [
      { level: 2, visitors: Number(levels.l2 ?? 0) },
      { level: 3, visitors: Number(levels.l3 ?? 0) },
    ],
    TTC_BUCKETS.map((b, i) => ({ bucket: b.bucket, buyers: ttc[`t${i}`] ?? '0' })),
  )
}

/** Time from signup to first purchase, in seconds (a purchase dated before its signup: the first bucket). */
const TTC_BUCKETS = [
  { bucket: '< 1 hour', when: 'd < 3600' },
  { bucket: '1-24 hours', when: 'd >= 3600 AND d < 86400' },
  { bucket: '1-7 days', when: 'd >= 86400 AND d < 604800' },
  { bucket: '7-30 days', when: 'd >= 604800 AND d < 2592000' },
  { bucket: '30+ days', when: 'd >= 2592000' },
] as const

/** The report from the visitors who clicked, the visitors per funnel level (2 and up), and buyers per bucket. */
export function funnelResult(
  clicked: number,
  levels: ReadonlyArray<{ level: number; visitors: number }>,
  ttc: ReadonlyArray<{ bucket: string; buyers: string | number }>,
): Funnel {
  const atLeast = (n: number) => levels.filter((l) => l.level >= n).reduce((a, l) => a + l.visitors, 0)
  const steps = [
    { step: 'click', visitors: clicked },
    { step: 'signup', visitors: atLeast(2) },
    { step: 'first_purchase', visitors: atLeast(3) },
  ].map((s) => ({ ...s, of_clicks: clicked === 0 ? 0 : s.visitors / clicked }))
  const time_to_convert = TTC_BUCKETS.map(({ bucket }) => ({
    bucket,
    buyers: Number(ttc.find((r) => r.bucket === bucket)?.buyers ?? 0),
  }))
  return { steps, time_to_convert }
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
