import { timingSafeEqual } from 'node:crypto'
import { AppError, opaqueId } from '@referral/core'
import type { MiddlewareHandler } from 'hono'
import { errors as joseErrors, jwtVerify } from 'jose'

function bearer(header: string | undefined): string | undefined {
  const m = header?.match(/^Bearer\s+(\S+)\s*$/i)
  return m?.[1]
}

/** The marketplace backend: `Authorization: Bearer ${INGEST_API_KEY}`, compared in constant time. */
export function ingestKeyAuth(apiKey: string): MiddlewareHandler {
  const expected = Buffer.from(apiKey)
  const matches = (token: string) => {
    const given = Buffer.from(token)
    // only the length can be learnt from timing, and keys are generated long
    return given.length === expected.length && timingSafeEqual(given, expected)
  }
  return async function ingestKey(c, next) {
    const token = bearer(c.req.header('authorization'))
    if (token === undefined || !matches(token)) {
      throw new AppError('unauthorized', 'a valid ingest API key is required (Authorization: Bearer <key>)')
    }
    await next()
  }
}

/**
 * Referrers and the growth team: an HS256 JWT signed with AUTH_JWT_SECRET. The algorithm is
 * pinned (no `none`, no RS/HS confusion) and `exp` and `sub` are required.
 */
export function jwtAuth(secret: string, opts: { role?: 'admin' } = {}): MiddlewareHandler {
  const key = new TextEncoder().encode(secret)
  return async function jwt(c, next) {
    const token = bearer(c.req.header('authorization'))
    if (token === undefined) throw new AppError('unauthorized', 'a bearer token is required')
    let payload: Awaited<ReturnType<typeof jwtVerify>>['payload']
    try {
      ;({ payload } = await jwtVerify(token, key, { algorithms: ['HS256'], requiredClaims: ['exp', 'sub'] }))
    } catch (e) {
      const why = e instanceof joseErrors.JWTExpired ? 'the token has expired' : 'the token is not valid'
      throw new AppError('unauthorized', why)
    }
    const sub = opaqueId.safeParse(payload.sub)
    const role = payload.role ?? 'referrer'
    if (!sub.success || (role !== 'referrer' && role !== 'admin')) {
      throw new AppError('unauthorized', 'the token has an invalid sub or role claim')
    }
    if (opts.role === 'admin' && role !== 'admin')
      throw new AppError('forbidden', 'this needs the admin role')
    c.set('auth', { userId: sub.data, role })
    await next()
  }
}
