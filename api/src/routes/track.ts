import { newId, normalizeCode, type QueuedEvent, referralLink } from '@referral/core'
import { type Context, Hono } from 'hono'
import { getCookie, setCookie } from 'hono/cookie'
import { cors } from 'hono/cors'
import { clientIp } from '../client-ip.ts'
import type { ApiDeps } from '../context.ts'
import { parseEventsBody } from '../ingest.ts'
import { readJson } from '../middleware/json-body.ts'
import { countHit, rateLimit } from '../middleware/rate-limit.ts'
import { codeOwner } from '../referral-codes.ts'

export const REF_COOKIE = 'ra_ref'
export const VISITOR_COOKIE = 'ra_vid'

/** The public click paths: the short link and the landing page's beacon. */
export function trackRoutes(deps: ApiDeps): Hono {
  const { config, redis, keys, events, log } = deps
  const app = new Hono()
  const cookieMaxAge = config.attributionWindowDays * 86_400

  app.get('/r/:code', async (c) => {
    const code = normalizeCode(c.req.param('code'))
    const owner = code === undefined ? null : await codeOwner(redis, keys, code)
    if (code === undefined || owner === null) return c.redirect(config.landingUrl, 302)
    // past the per-client limit the visitor is still sent on, with the code, but not counted
    const hits = await countHit(redis, keys, 'redirect', clientIp(c) || 'unknown', 60)
    if (hits.count > config.clickRateLimitPerMinute)
      return c.redirect(referralLink(config.landingUrl, code), 302)
    const visitorId = getCookie(c, VISITOR_COOKIE) ?? newId()
    const secure = config.publicUrl.startsWith('https:')
    const cookie = { path: '/', maxAge: cookieMaxAge, sameSite: 'Lax', httpOnly: false, secure } as const
    setCookie(c, REF_COOKIE, code, cookie)
    setCookie(c, VISITOR_COOKIE, visitorId, cookie)
    const now = Date.now()
    const click: QueuedEvent = {
      type: 'click',
      id: newId(now),
      code,
      visitor_id: visitorId,
      ts: now,
      received_at: now,
      ...optional('referrer', c.req.header('referer')?.slice(0, 2048)),
      ...optional('user_agent', c.req.header('user-agent')?.slice(0, 1024)),
      ...optional('ip', clientIp(c) || undefined),
      ...optional('country', countryOf(c)),
    }
    try {
      await events.submit([click])
    } catch (e) {
      // the visitor still gets where they were going; the click is reported lost
      log.warn({ err: (e as Error).message, code }, 'click from /r/ not recorded')
    }
    return c.redirect(referralLink(config.landingUrl, code), 302)
  })

  app.use('/v1/track/click', cors({ origin: '*', allowMethods: ['POST', 'OPTIONS'], maxAge: 86_400 }))
  app.post(
    '/v1/track/click',
    rateLimit(redis, keys, {
      name: 'click',
      limit: config.clickRateLimitPerMinute,
      windowSeconds: 60,
      clientKey: (c) => clientIp(c) || 'unknown',
    }),
    async (c) => {
      // only these fields come from the page; address and browser come from the request
      const { code, visitor_id, url, referrer } = asObject(await readJson(c))
      const [click] = parseEventsBody({ type: 'click', code, visitor_id, url, referrer })
      if (click?.type !== 'click') throw new Error('a click body did not parse as a click')
      // an unknown code is not an error for a beacon on a public page: nothing is counted
      if ((await codeOwner(redis, keys, click.code)) === null) return c.json({ accepted: 0, ids: [] }, 202)
      const event: QueuedEvent = Object.assign(
        {},
        click,
        optional('user_agent', c.req.header('user-agent')?.slice(0, 1024)),
        optional('ip', clientIp(c) || undefined),
        optional('country', countryOf(c)),
      )
      await events.submit([event])
      return c.json({ accepted: 1, ids: [event.id] }, 202)
    },
  )
  return app
}

/** The visitor's country as a CDN in front of the service states it, when one does. */
function countryOf(c: Context): string | undefined {
  const v =
    c.req.header('cf-ipcountry') ??
    c.req.header('x-vercel-ip-country') ??
    c.req.header('cloudfront-viewer-country')
  return v !== undefined && /^[A-Za-z]{2}$/.test(v) ? v.toUpperCase() : undefined
}

function optional<K extends string>(key: K, value: string | undefined): { [P in K]?: string } {
  return (value === undefined || value === '' ? {} : { [key]: value }) as { [P in K]?: string }
}

function asObject(v: unknown): Record<string, unknown> {
  return typeof v === 'object' && v !== null && !Array.isArray(v) ? (v as Record<string, unknown>) : {}
}
