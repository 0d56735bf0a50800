import { type ClickHouse, queryRows } from '@referral/clickhouse'
import { type FlagFilter, numbers, type Range, type Row } from './report-basics.ts'

/**
 * The growth team's funnel and breakdowns. They read funnel_steps (the funnel's events,
 * narrow and sorted by step and time) and funnel_hours (each visitor's first and last click
 * and signup per hour, migration 0010), both fed by materialized views from events, instead
 * of the events table.
 */

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

/** a first purchase in the range stored without its buyer's signup (signed_up = 0) */
const legacyPurchase = (flagged: FlagFilter) =>
  `step = 3 AND ${STEP_RANGE} AND ${FLAGGED_STEPS[flagged]} AND signed_up = 0`

/**
 * Whether the range holds purchase steps stored without their buyer's signup: stored before
 * 0009, or for a buyer whose user state predates signups recording their visitor (the worker,
 * resolve-money.ts). Only then does the funnel join them to the signups (purchases()): the
 * join reads the user_id of every signup ever stored and builds its sets before the rest of
 * the query runs, even when it finds nothing. Over the 10M-event seed, which holds none, the
 * funnel's first query took ~0.65 of its time without the join, the funnel ~0.9 with this
 * check's own query.
 */
async function hasLegacyPurchases(ch: ClickHouse, range: Range, flagged: FlagFilter): Promise<boolean> {
  const [row] = await queryRows<{ n: string }>(
    ch,
    `SELECT count() AS n FROM funnel_steps WHERE ${legacyPurchase(flagged)}`,
    range,
  )
  return Number(row?.n ?? 0) > 0
}

/**
 * The first purchases in the range, with the buyer's signup (visitor and time). A step stored
 * since 0009 carries them; one stored before (signed_up = 0) is joined to the buyer's signup,
 * when `legacy` says the range holds any (hasLegacyPurchases).
 */
const purchases = (flagged: FlagFilter, legacy: boolean) => {
  const f = FLAGGED_STEPS[flagged]
  const carried = `SELECT ts, visitor, signed_up FROM funnel_steps
    WHERE step = 3 AND ${STEP_RANGE} AND ${f} AND signed_up != 0 AND ${FLAGGED_SIGNUP[flagged]}`
  if (!legacy) return carried
  const old = legacyPurchase(flagged)
  return `${carried}
  UNION ALL
  SELECT p.ts AS ts, s.visitor AS visitor, s.signed_up AS signed_up
  FROM (SELECT user_id, ts FROM funnel_steps WHERE ${old}) AS p
  INNER JOIN (SELECT user_id, anyIf(visitor, visitor != 0) AS visitor, min(ts) AS signed_up FROM funnel_steps
              WHERE step = 2 AND ${f} AND user_id IN (SELECT user_id FROM funnel_steps WHERE ${old})
              GROUP BY user_id) AS s
    ON s.user_id = p.user_id`
}

/** "no such step" in funnel_hours' first_ columns (its last_ columns hold 0) */
const NONE = 4294967295

/** the last hour a DateTime (UInt32 seconds) can hold */
const LAST_HOUR = Math.floor(4294967295 / 3600) * 3600

/**
 * The hours of the range that funnel_hours (0010) holds whole, [h0, h1) in epoch seconds; the
 * steps outside them (the range's first and last partial hours) are read from funnel_steps.
 * Empty (h0 >= h1) when the range holds no whole hour. Kept within what a DateTime holds (a
 * range may start before 1970 or end after 2106: its steps there, none, are edges).
 */
export function wholeHours(range: Range): { h0: number; h1: number } {
  const clamp = (h: number) => Math.min(LAST_HOUR, Math.max(0, h))
  return {
    h0: clamp(Math.ceil(range.from / 3_600_000) * 3600),
    h1: clamp(Math.floor((range.to + 1) / 3_600_000) * 3600),
  }
}
const WHOLE_HOURS = 'hour >= toDateTime({h0:UInt32}) AND hour < toDateTime({h1:UInt32})'
/** the range's steps outside its whole hours, on funnel_steps (clicks and signups of a visitor) */
const EDGE_STEPS = `step IN (1, 2) AND visitor != 0 AND ${STEP_RANGE}
  AND (ts < toDateTime({h0:UInt32}) OR ts >= toDateTime({h1:UInt32}))`

/**
 * Per visitor of the range: the first and last times (seconds) of its clicks, signups and
 * purchases, one row per hour from funnel_hours and one per step at the range's edges, for
 * funnelLevels to group. The purchases are the first purchases of the buyers who signed up
 * from the visitor (purchases()).
 */
const visitorTimes = (flagged: FlagFilter, legacy: boolean) => {
  const f = FLAGGED_STEPS[flagged]
  return `
  SELECT visitor, first_click, last_click, first_signup, last_signup, toUInt32(${NONE}) AS first_buy, toUInt32(0) AS last_buy
  FROM funnel_hours WHERE ${WHOLE_HOURS} AND ${f}
  UNION ALL
  SELECT visitor, if(step = 1, t, ${NONE}), if(step = 1, t, 0), if(step = 2, t, ${NONE}), if(step = 2, t, 0), ${NONE}, 0
  FROM (SELECT visitor, step, toUInt32(toDateTime(ts)) AS t FROM funnel_steps WHERE ${EDGE_STEPS} AND ${f})
  UNION ALL
  SELECT visitor, ${NONE}, 0, ${NONE}, 0, t, t
  FROM (SELECT visitor, toUInt32(toDateTime(ts)) AS t FROM (${purchases(flagged, legacy)}) WHERE visitor != 0)`
}

/** a visitor whose level the first and last times of its steps do not settle (funnelLevels) */
const UNDECIDED = 9

/**
 * The funnel level of each visitor of the range (0: no click, 1: clicked, 2: signed up,
 * 3: bought), from the first and last times of its clicks, signups and purchases where those
 * settle it, UNDECIDED where they do not.
 *
 * windowFunnel(w)(t, click, signup, purchase) sorts a visitor's steps by (time, step) and
 * keeps the latest click; a signup reaches level 2 when it comes at most w after the latest
 * click before it (at the same second counts: a click sorts first), and a purchase level 3
 * when it comes at or after such a signup and at most w after that signup's latest click. So:
 * - when every click is at or before every signup, each signup's latest click is the last
 *   click: level 2 when the first signup is within w of it, 3 when a purchase at or after the
 *   first signup is too (the first such purchase decides; when some purchases come before
 *   the first signup and the last one is too late, whether one between would do is unknown);
 * - when every click comes after every signup, no signup follows a click: level 1;
 * - otherwise (clicks on both sides of a signup) which click is latest before each signup is
 *   not known from first and last times: UNDECIDED, for windowFunnel over that visitor's steps.
 */
const funnelLevels = (flagged: FlagFilter, legacy: boolean) => `
  SELECT visitor, multiIf(
           last_click = 0, 0,
           last_signup = 0, 1,
           last_click <= first_signup, multiIf(
             first_signup - last_click > {window:UInt64}, 1,
             last_buy < first_signup, 2,
             first_buy >= first_signup, if(first_buy - last_click <= {window:UInt64}, 3, 2),
             last_buy - last_click <= {window:UInt64}, 3,
             ${UNDECIDED}),
           first_click > last_signup, 1,
           ${UNDECIDED}) AS level
  FROM (
    SELECT visitor, min(first_click) AS first_click, max(last_click) AS last_click,
           min(first_signup) AS first_signup, max(last_signup) AS last_signup,
           min(first_buy) AS first_buy, max(last_buy) AS last_buy
    FROM (${visitorTimes(flagged, legacy)})
    GROUP BY visitor
  )`

/** the visitors of {undecided:Array(String)} (ids as text, which JSON carries whole) */
const UNDECIDED_ONLY = 'visitor IN (SELECT toUInt64(arrayJoin({undecided:Array(String)})))'

/**
 * Every step in the range of the undecided visitors, for windowFunnel: seconds, and s (1
 * click, 2 signup, 3 first purchase of a buyer who signed up from the visitor). The whole
 * hours' times from funnel_hours (filtered on `visitor` first: only the rows left are
 * expanded), the edges' steps and the purchases from funnel_steps.
 */
const undecidedSteps = (flagged: FlagFilter, legacy: boolean) => {
  const f = FLAGGED_STEPS[flagged]
  return `
  SELECT visitor, e.1 AS t, e.2 AS s
  FROM (SELECT visitor, clicks, signups FROM funnel_hours PREWHERE ${UNDECIDED_ONLY} WHERE ${WHOLE_HOURS} AND ${f})
  ARRAY JOIN arrayConcat(arrayMap(x -> (x, toUInt8(1)), clicks), arrayMap(x -> (x, toUInt8(2)), signups)) AS e
  UNION ALL
  SELECT visitor, toUInt32(toDateTime(ts)), step FROM funnel_steps WHERE ${EDGE_STEPS} AND ${f} AND ${UNDECIDED_ONLY}
  UNION ALL
  SELECT visitor, toUInt32(toDateTime(ts)), toUInt8(3) FROM (${purchases(flagged, legacy)}) WHERE visitor != 0 AND ${UNDECIDED_ONLY}`
}

// use_index_for_in_with_subqueries = 0 on the funnel: neither `visitor` (the undecided
// visitors) nor `user_id` (the join of buyers stored before 0009) is in a key, so a set
// prunes nothing, and building it for the index made an IN filter ~6x slower once the parts
// had merged into one per month
const FUNNEL_SETTINGS = 'SETTINGS use_index_for_in_with_subqueries = 0'

/** How many visitors of the range the funnel's first pass leaves to windowFunnel (tests, bench). */
export async function funnelUndecided(
  ch: ClickHouse,
  range: Range,
  windowSeconds: number,
  flagged: FlagFilter = 'include',
): Promise<number> {
  const legacy = await hasLegacyPurchases(ch, range, flagged)
  const [row] = await queryRows<{ n: string }>(
    ch,
    `SELECT countIf(level = ${UNDECIDED}) AS n FROM (${funnelLevels(flagged, legacy)}) ${FUNNEL_SETTINGS}`,
    { ...range, ...wholeHours(range), window: windowSeconds },
  )
  return Number(row?.n ?? 0)
}

/**
 * clicks -> signups -> first purchase per visitor, as windowFunnel over `windowSeconds` counts
 * them; a purchase belongs to the visitor whose signup made the buyer. Also how long buyers
 * took from signup to first purchase. Reads funnel_hours (0010) for the whole hours of the
 * range, funnel_steps for its edges and purchases (which carry the buyer's signup, 0009).
 */
export async function funnel(
  ch: ClickHouse,
  range: Range,
  windowSeconds: number,
  flagged: FlagFilter = 'include',
): Promise<Funnel> {
  // The levels from first and last times, grouped by visitor over funnel_hours with six
  // min/max aggregates (funnelLevels), beside the times to convert (one query, two branches
  // side by side): windowFunnel keeps every step of every visitor, and for the 550k visitors
  // of a 10M seed its states cost more than the grouping itself. Then, only when some
  // visitors are undecided, windowFunnel over those visitors' steps: a second query, given
  // their ids (a scalar subquery carrying them made the first one wait for the grouping
  // before reading the purchases, ~0.8 of the one-pass windowFunnel's time instead of ~0.6)
  const params = { ...range, ...wholeHours(range), window: windowSeconds }
  const legacy = await hasLegacyPurchases(ch, range, flagged)
  const rows = await queryRows<Record<string, unknown>>(
    ch,
    `SELECT 'level' AS part, countIf(level != 0) AS clicked, countIf(level = 2) AS l2, countIf(level = 3) AS l3,
            groupArrayIf(toString(visitor), level = ${UNDECIDED}) AS undecided, ${TTC_BUCKETS.map((_, i) => `0 AS t${i}`).join(', ')}
     FROM (${funnelLevels(flagged, legacy)})
     UNION ALL
     SELECT 'ttc', 0, 0, 0, [], ${TTC_BUCKETS.map((b) => `countIf(${b.when})`).join(', ')}
     FROM (SELECT dateDiff('second', signed_up, ts) AS d FROM (${purchases(flagged, legacy)}))
     ${FUNNEL_SETTINGS}`,
    params,
  )
  const part = (name: string) => rows.find((r) => r.part === name) ?? {}
  // 64-bit numbers come as text or as numbers (chDB), the ids as text
  const num = (v: unknown) => (typeof v === 'string' || typeof v === 'number' ? Number(v) : 0)
  const levels = part('level')
  const ttc = part('ttc')
  const undecided = Array.isArray(levels.undecided) ? levels.undecided.map(String) : []
  let [l2, l3] = [num(levels.l2), num(levels.l3)]
  if (undecided.length > 0) {
    const rs = await ch.client.query({
      query: `SELECT countIf(level = 2) AS l2, countIf(level = 3) AS l3 FROM (
         SELECT visitor, windowFunnel({window:UInt64})(t, s = 1, s = 2, s = 3) AS level
         FROM (${undecidedSteps(flagged, legacy)}) GROUP BY visitor
       ) ${FUNNEL_SETTINGS}`,
      query_params: { ...params, undecided },
      format: 'JSONEachRow',
      // thousands of ids: past 4 KiB the client sends the parameters in the request's body,
      // not the URL (a ClickHouse server refuses a URL over 1 MiB)
      use_multipart_params_auto: true,
    })
    const [more] = await rs.json<{ l2: unknown; l3: unknown }>()
    l2 += num(more?.l2)
    l3 += num(more?.l3)
  }
  return funnelResult(
    num(levels.clicked),
    [
      { level: 2, visitors: l2 },
      { level: 3, visitors: l3 },
    ],
    TTC_BUCKETS.map((b, i) => ({ bucket: b.bucket, buyers: num(ttc[`t${i}`]) })),
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
