import { AppError, opaqueId } from '@referral/core'
import { type Context, Hono } from 'hono'
import { deleteCookie, setCookie } from 'hono/cookie'
import { SignJWT } from 'jose'
import type { ApiDeps } from '../context.ts'
import { jwtAuth, SESSION_COOKIE, type TokenVerify } from '../middleware/auth.ts'

const WEEK_S = 7 * 86_400

/** Only a path on this site: never an open redirect. */
export function safeNext(next: string | undefined): string {
  return next !== undefined && /^\/(?![/\\])[\x21-\x7e]*$/.test(next) ? next : '/'
}

/**
 * How the dashboard gets a session. The marketplace links its user to
 * `/session?token=<JWT>&next=/`; the service checks the token and keeps it in an HttpOnly,
 * SameSite=Lax cookie, so page scripts never hold it and other sites cannot send it with a
 * POST. Locally, `/demo-login?user=...` signs in without a marketplace.
 */
export function sessionRoutes(deps: ApiDeps, verify: TokenVerify): Hono {
  const { config } = deps
  const key = new TextEncoder().encode(config.jwtSecret)
  const app = new Hono()
  const secure = config.publicUrl.startsWith('https:')

  const start = (c: Context, token: string, exp: number) => {
    const maxAge = Math.max(0, Math.min(WEEK_S, exp - Math.floor(Date.now() / 1000)))
    setCookie(c, SESSION_COOKIE, token, { httpOnly: true, sameSite: 'Lax', secure, path: '/', maxAge })
  }

  app.get('/session', async (c) => {
    const token = c.req.query('token')
    if (token === undefined) throw new AppError('unauthorized', 'a token is required')
    const { exp } = await verify(token)
    start(c, token, exp)
    return c.redirect(safeNext(c.req.query('next')), 302)
  })

  app.get('/v1/session', jwtAuth(verify), (c) => {
    const { userId, role } = c.get('auth')
    return c.json({ user_id: userId, role, demo: config.demoLogin })
  })

  app.post('/v1/session/logout', (c) => {
    deleteCookie(c, SESSION_COOKIE, { path: '/', secure })
    return c.body(null, 204)
  })

  app.get('/demo-login', async (c) => {
    if (!config.demoLogin) throw new AppError('not_found', 'the demo login is off (AUTH_JWT_SECRET is set)')
    const user = opaqueId.safeParse(c.req.query('user') ?? 'demo-user')
    if (!user.success)
      throw new AppError('validation_failed', 'invalid user', [{ path: 'user', message: 'invalid' }])
    const role = c.req.query('role') === 'admin' ? 'admin' : 'referrer'
    const exp = Math.floor(Date.now() / 1000) + 86_400
    const token = await new SignJWT({ role })
      .setProtectedHeader({ alg: 'HS256' })
      .setSubject(user.data)
      .setExpirationTime(exp)
      .sign(key)
    start(c, token, exp)
    return c.redirect(safeNext(c.req.query('next')), 302)
  })
  return app
}
