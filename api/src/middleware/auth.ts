import { timingSafeEqual } from 'node:crypto'
import { AppError, opaqueId } from '@referral/core'
import type { MiddlewareHandler } from 'hono'
import { getCookie } from 'hono/cookie'
import { errors as joseErrors, jwtVerify } from 'jose'
import type { AuthInfo } from '../context.ts'

function bearer(header: string | undefined): string | undefined {
  const m = header?.match(/^Bearer\s+(\S+)\s*$/i)
  return m?.[1]
}

/**
 * The marketplace backend: `Authorization: Bearer ${INGEST_API_KEY}`, compared in constant
 * time. The check throws 401 for a missing or wrong key.
 */
export function ingestKeyCheck(apiKey: string): (authorization: string | undefined) => void {
  const expected = Buffer.from(apiKey)
  const matches = (token: string) => {
    const given = Buffer.from(token)
    // only the length can be learnt from timing, and keys are generated long
    return given.length === expected.length && timingSafeEqual(given, expected)
  }
  return function checkIngestKey(authorization) {
    const token = bearer(authorization)
    if (token === undefined || !matches(token)) {
      throw new AppError('unauthorized', 'a valid ingest API key is required (Authorization: Bearer <key>)')
    }
  }
}

/** `ingestKeyCheck` as middleware, for the marketplace's other server-to-server routes. */
export function ingestKeyAuth(apiKey: string): MiddlewareHandler {
  const check = ingestKeyCheck(apiKey)
  return async function ingestKey(c, next) {
    check(c.req.header('authorization'))
    await next()
  }
}

export const SESSION_COOKIE = 'ra_session'

/**
 * Checks a referrer or admin token: HS256 only (no `none`, no RS/HS confusion), `exp` and
 * `sub` required, `role` referrer (default) or admin.
 */
export async function verifyToken(token: string, key: Uint8Array): Promise<AuthInfo & { exp: number }> {
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
  return { userId: sub.data, role, exp: payload.exp ?? 0 }
}

/** tokens remembered as verified, per verifier (the oldest forgotten first) */
const VERIFIED_MAX = 10_000

/**
 * `verifyToken` for one secret, remembering each token that passed until it expires, so a
 * dashboard reading its stats every few seconds with one token is checked once. jose checks
 * through WebCrypto (a key import and an HMAC job per call): at 100 stats reads a second,
 * ~0.6 ms of the event loop each, 13% of the API's busy time under a steady 5k events/s.
 * A token is remembered by its whole text, signature included: only that very token is let
 * through without the check, and only while `exp` is in the future (as jose counts it).
 */
export type TokenVerify = (token: string) => Promise<AuthInfo & { exp: number }>

export function tokenVerifier(secret: string, check: typeof verifyToken = verifyToken): TokenVerify {
  const key = new TextEncoder().encode(secret)
  const verified = new Map<string, AuthInfo & { exp: number }>()
  return async function verify(token) {
    const known = verified.get(token)
    if (known !== undefined) {
      if (known.exp > Math.floor(Date.now() / 1000)) return known
      verified.delete(token)
      throw new AppError('unauthorized', 'the token has expired')
    }
    const info = await check(token, key)
    if (verified.size >= VERIFIED_MAX) {
      const oldest = verified.keys().next()
      if (oldest.done !== true) verified.delete(oldest.value)
    }
    verified.set(token, info)
    return info
  }
}

/**
 * Referrers and the growth team: the token from `Authorization: Bearer`, or, for the
 * dashboard in a browser, from the HttpOnly session cookie it was exchanged for. One
 * `tokenVerifier` serves every route of an app, so a token is checked once for all of them.
 */
export function jwtAuth(verify: TokenVerify, opts: { role?: 'admin' } = {}): MiddlewareHandler {
  return async function jwt(c, next) {
    const token = bearer(c.req.header('authorization')) ?? getCookie(c, SESSION_COOKIE)
    if (token === undefined) throw new AppError('unauthorized', 'a bearer token or a session is required')
    const { userId, role } = await verify(token)
    if (opts.role === 'admin' && role !== 'admin')
      throw new AppError('forbidden', 'this needs the admin role')
    c.set('auth', { userId, role })
    await next()
  }
}
