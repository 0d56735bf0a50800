import { type ClickHouse, queryRows } from '@referral/clickhouse'
import {
  type BreakdownBy,
  FLAGGED_EVENTS,
  type FlagFilter,
  type Funnel,
  numbers,
  type Range,
  type Row,
} from './admin-reports.ts'

/**
 * The funnel and the breakdowns computed from the raw events table, as they were before
 * funnel_steps (migration 0005): the reference the reports are checked against (the tests,
 * on generated data) and measured against (npm run bench:queries). Not used by the API.
 */

const RANGE = 'ts >= fromUnixTimestamp64Milli({from:Int64}) AND ts <= fromUnixTimestamp64Milli({to:Int64})'

const RAW_BREAKDOWNS = {
  utm_source: 'utm_source',
  utm_medium: 'utm_medium',
  utm_campaign: 'utm_campaign',
  referrer_domain: 'domainWithoutWWW(referrer_url)',
  country: 'country',
  device:
    "multiIf(match(user_agent, '(?i)ipad|tablet'), 'tablet', match(user_agent, '(?i)mobile|iphone|android'), 'mobile', user_agent = '', 'unknown', 'desktop')",
  browser:
    "multiIf(match(user_agent, 'Edg/'), 'Edge', match(user_agent, 'OPR/'), 'Opera', match(user_agent, 'Firefox/'), 'Firefox', match(user_agent, 'Chrome/'), 'Chrome', match(user_agent, 'Safari/'), 'Safari', user_agent = '', 'unknown', 'other')",
} as const

/** Counted clicks by a dimension, with the signups and conversions of the visitors who clicked. */
export async function breakdownFromEvents(ch: ClickHouse, range: Range, by: BreakdownBy): Promise<Row[]> {
  const rows = await queryRows<Record<string, string>>(
    ch,
    `SELECT c.value AS value, count() AS clicks,
            uniqExactIf(s.user_id, s.user_id != '') AS signups,
            uniqExactIf(s.user_id, p.user_id != '') AS conversions
     FROM (SELECT visitor_id, ${RAW_BREAKDOWNS[by]} AS value FROM events
           WHERE type = 'click' AND counted = 1 AND ${RANGE}) AS c
     LEFT JOIN (SELECT visitor_id, any(user_id) AS user_id FROM events
                WHERE type = 'signup' AND counted = 1 AND visitor_id != '' GROUP BY visitor_id) AS s
       ON s.visitor_id = c.visitor_id
     LEFT JOIN (SELECT DISTINCT user_id FROM events WHERE type = 'purchase' AND first_purchase = 1) AS p
       ON p.user_id = s.user_id
     GROUP BY value ORDER BY clicks DESC, value LIMIT 200`,
    range,
  )
  return rows.map((r) => ({ value: r.value ?? '', ...numbers(r, ['clicks', 'signups', 'conversions']) }))
}

/**
 * clicks -> signups -> first purchase per visitor, with windowFunnel over `windowSeconds`;
 * a purchase belongs to the visitor whose signup made the buyer. Also how long buyers took
 * from signup to first purchase. With a fraud-flag filter, each click, signup and purchase is
 * kept by its own flags, and a purchase also by its buyer's signup's (the signup it is joined
 * to is a filtered one), as the reports over funnel_steps keep them.
 */
export async function funnelFromEvents(
  ch: ClickHouse,
  range: Range,
  windowSeconds: number,
  flagged: FlagFilter = 'include',
): Promise<Funnel> {
  const f = FLAGGED_EVENTS[flagged]
  const [levels, ttc] = await Promise.all([
    queryRows<{ level: string; visitors: string }>(
      ch,
      `SELECT level, count() AS visitors FROM (
         SELECT key, windowFunnel({window:UInt64})(t, type = 'click', type = 'signup', type = 'purchase') AS level
         FROM (
           SELECT visitor_id AS key, toDateTime(ts) AS t, type FROM events
           WHERE type IN ('click', 'signup') AND counted = 1 AND visitor_id != '' AND ${RANGE} AND ${f}
           UNION ALL
           SELECT s.signup_visitor AS key, toDateTime(p.ts) AS t, 'purchase' AS type
           FROM (SELECT user_id, ts FROM events WHERE type = 'purchase' AND first_purchase = 1 AND ${RANGE} AND ${f}) AS p
           INNER JOIN (SELECT user_id, any(visitor_id) AS signup_visitor FROM events
                       WHERE type = 'signup' AND counted = 1 AND visitor_id != '' AND ${f} GROUP BY user_id) AS s
             ON s.user_id = p.user_id
         )
         GROUP BY key
       ) GROUP BY level`,
      { ...range, window: windowSeconds },
    ),
    queryRows<{ bucket: string; buyers: string }>(
      ch,
      `SELECT multiIf(d < 3600, '< 1 hour', d < 86400, '1-24 hours', d < 604800, '1-7 days', d < 2592000, '7-30 days', '30+ days') AS bucket,
              count() AS buyers
       FROM (
         SELECT dateDiff('second', s.ts, p.ts) AS d
         FROM (SELECT user_id, ts FROM events WHERE type = 'purchase' AND first_purchase = 1 AND ${RANGE} AND ${f}) AS p
         INNER JOIN (SELECT user_id, min(ts) AS ts FROM events WHERE type = 'signup' AND counted = 1 AND ${f} GROUP BY user_id) AS s
           ON s.user_id = p.user_id
       ) GROUP BY bucket`,
      range,
    ),
  ])
  const atLeast = (n: number) =>
    levels.filter((l) => Number(l.level) >= n).reduce((a, l) => a + Number(l.visitors), 0)
  const clicked = atLeast(1)
  const steps = [
    { step: 'click', visitors: clicked },
    { step: 'signup', visitors: atLeast(2) },
    { step: 'first_purchase', visitors: atLeast(3) },
  ].map((s) => ({ ...s, of_clicks: clicked === 0 ? 0 : s.visitors / clicked }))
  const order = ['< 1 hour', '1-24 hours', '1-7 days', '7-30 days', '30+ days']
  const time_to_convert = order.map((bucket) => ({
    bucket,
    buyers: Number(ttc.find((r) => r.bucket === bucket)?.buyers ?? 0),
  }))
  return { steps, time_to_convert }
}
