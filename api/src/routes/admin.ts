import type { ClickHouse } from '@referral/clickhouse'
import { AppError, isTimeZone } from '@referral/core'
import { readCounters } from '@referral/workers'
import { Hono } from 'hono'
import { streamSSE } from 'hono/streaming'
import { z } from 'zod'
import {
  BREAKDOWNS,
  breakdown,
  credits,
  FLAG_FILTERS,
  funnel,
  overview,
  type Row,
  timeseries,
  toCsv,
  topReferrers,
} from '../admin-reports.ts'
import type { ApiDeps } from '../context.ts'
import { instant, needClickHouse, parseQuery, rangeOf } from '../query.ts'
import { MAX_POINTS } from './me-analytics.ts'

export const adminQuery = z.object({
  from: instant.optional(),
  to: instant.optional(),
  tz: z.string().refine(isTimeZone, 'an IANA time zone').default('UTC'),
  interval: z.enum(['hour', 'day', 'week', 'month']).default('day'),
  by: z.string().optional(),
  limit: z.coerce.number().int().min(1).max(500).default(20),
  /** funnel window, in seconds (default 7 days) */
  window: z.coerce
    .number()
    .int()
    .min(60)
    .max(365 * 86_400)
    .default(7 * 86_400),
  /** fraud flags: count everything (include), leave flagged events out (exclude), or only them */
  flagged: z.enum(FLAG_FILTERS).default('include'),
  report: z.enum(['overview', 'timeseries', 'funnel', 'referrers', 'breakdown', 'credits']).optional(),
})
type AdminQuery = z.output<typeof adminQuery>

const parse = (query: Record<string, string>): AdminQuery => parseQuery(adminQuery, query)

const RANKS = ['earnings', 'conversions', 'conversion_rate'] as const
function rankBy(by: string | undefined) {
  const b = by ?? 'earnings'
  if (!(RANKS as readonly string[]).includes(b)) {
    throw new AppError('validation_failed', `by must be one of ${RANKS.join(', ')}`, [
      { path: 'by', message: 'unknown' },
    ])
  }
  return b as (typeof RANKS)[number]
}
function breakdownBy(by: string | undefined) {
  if (by === undefined || !(by in BREAKDOWNS)) {
    throw new AppError('validation_failed', `by must be one of ${Object.keys(BREAKDOWNS).join(', ')}`, [
      { path: 'by', message: 'unknown' },
    ])
  }
  return by as keyof typeof BREAKDOWNS
}

/** Each report as flat rows, for the CSV export. */
async function reportRows(ch: ClickHouse, q: AdminQuery): Promise<Row[]> {
  const range = rangeOf(q)
  switch (q.report) {
    case 'overview':
      return overview(ch, Date.now(), q.tz, q.flagged)
    case 'timeseries':
      return timeseries(ch, range, q.interval, q.tz, MAX_POINTS, q.flagged)
    case 'funnel': {
      const f = await funnel(ch, range, q.window, q.flagged)
      return f.steps
    }
    case 'referrers':
      return topReferrers(ch, range, rankBy(q.by), q.limit, q.flagged)
    case 'breakdown':
      return breakdown(ch, range, breakdownBy(q.by), q.flagged)
    case 'credits': {
      const c = await credits(ch, q.flagged)
      return c.effect
    }
    case undefined:
      throw new AppError('validation_failed', 'report is required', [{ path: 'report', message: 'required' }])
  }
}

/** The growth team's endpoints: an admin JWT only. */
export function adminRoutes(deps: ApiDeps): Hono {
  const app = new Hono()
  const ch = () => needClickHouse(deps)

  app.get('/v1/admin/overview', async (c) => {
    const q = parse(c.req.query())
    const live = await readCounters(deps.redis, deps.keys.globalStats())
    return c.json({
      tz: q.tz,
      flagged: q.flagged,
      live,
      periods: await overview(ch(), Date.now(), q.tz, q.flagged),
    })
  })
  app.get('/v1/admin/timeseries', async (c) => {
    const q = parse(c.req.query())
    return c.json({
      interval: q.interval,
      tz: q.tz,
      flagged: q.flagged,
      points: await timeseries(ch(), rangeOf(q), q.interval, q.tz, MAX_POINTS, q.flagged),
    })
  })
  app.get('/v1/admin/funnel', async (c) => {
    const q = parse(c.req.query())
    return c.json({
      window_seconds: q.window,
      flagged: q.flagged,
      ...(await funnel(ch(), rangeOf(q), q.window, q.flagged)),
    })
  })
  app.get('/v1/admin/referrers', async (c) => {
    const q = parse(c.req.query())
    const by = rankBy(q.by)
    return c.json({
      by,
      flagged: q.flagged,
      referrers: await topReferrers(ch(), rangeOf(q), by, q.limit, q.flagged),
    })
  })
  app.get('/v1/admin/breakdown', async (c) => {
    const q = parse(c.req.query())
    const by = breakdownBy(q.by)
    return c.json({ by, flagged: q.flagged, rows: await breakdown(ch(), rangeOf(q), by, q.flagged) })
  })
  app.get('/v1/admin/credits', async (c) => {
    const q = parse(c.req.query())
    return c.json({ flagged: q.flagged, ...(await credits(ch(), q.flagged)) })
  })

  // the live feed: each batch of events as the workers apply it
  app.get('/v1/admin/stream', (c) =>
    streamSSE(c, async (stream) => {
      const unwatch = deps.hub.watchFeed(
        (message) => void stream.writeSSE({ event: 'events', data: message }),
      )
      await deps.hub.hold(stream, () => stream.writeSSE({ event: 'ready', data: '{}' }), unwatch)
    }),
  )
  app.get('/v1/admin/export.csv', async (c) => {
    const q = parse(c.req.query())
    const csv = toCsv(await reportRows(ch(), q))
    c.header('Content-Disposition', `attachment; filename="${q.report ?? 'report'}.csv"`)
    return c.body(csv, 200, { 'Content-Type': 'text/csv; charset=utf-8' })
  })
  return app
}
