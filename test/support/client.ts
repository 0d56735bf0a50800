import { SignJWT } from 'jose'
import { INGEST_KEY, JWT_SECRET } from './env.ts'

/** A real browser's user agent: fetch's own ("node") is rightly taken for a bot. */
export const BROWSER_UA =
  'Mozilla/5.0 (Macintosh; Intel Mac OS X 10_15_7) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/120.0 Safari/537.36'

export async function tokenFor(
  sub: string,
  claims: Record<string, unknown> = {},
  secret = JWT_SECRET,
): Promise<string> {
  return new SignJWT(claims)
    .setProtectedHeader({ alg: 'HS256' })
    .setSubject(sub)
    .setExpirationTime('1h')
    .sign(new TextEncoder().encode(secret))
}

export interface Http {
  post(path: string, body: unknown, headers?: Record<string, string>): Promise<Response>
  get(path: string, headers?: Record<string, string>): Promise<Response>
}

/** Requests against a base URL (a listening service) with the ingest key by default. */
export function http(baseUrl: string): Http {
  return {
    post: (path, body, headers = {}) =>
      fetch(baseUrl + path, {
        method: 'POST',
        headers: { authorization: `Bearer ${INGEST_KEY}`, 'content-type': 'application/json', ...headers },
        body: typeof body === 'string' ? body : JSON.stringify(body),
        redirect: 'manual',
      }),
    get: (path, headers = {}) =>
      fetch(baseUrl + path, {
        headers: { authorization: `Bearer ${INGEST_KEY}`, ...headers },
        redirect: 'manual',
      }),
  }
}

export async function codeFor(api: Http, userId: string): Promise<string> {
  const res = await api.get('/v1/me/referral', { authorization: `Bearer ${await tokenFor(userId)}` })
  if (res.status !== 200) throw new Error(`GET /v1/me/referral answered ${res.status}`)
  return ((await res.json()) as { code: string }).code
}

export interface Stats {
  total_clicks: number
  total_referrals: number
  conversions: number
  pending_referrals: number
  conversion_rate: number
  total_earnings_cents: number
}

export async function statsFor(api: Http, userId: string): Promise<Stats> {
  const res = await api.get('/v1/me/stats', { authorization: `Bearer ${await tokenFor(userId)}` })
  if (res.status !== 200) throw new Error(`GET /v1/me/stats answered ${res.status}`)
  return (await res.json()) as Stats
}

/** Polls until `check` returns a value without throwing, or fails with the last error. */
export async function eventually<T>(check: () => Promise<T>, timeoutMs = 20_000, everyMs = 50): Promise<T> {
  const deadline = Date.now() + timeoutMs
  let last: unknown
  while (Date.now() < deadline) {
    try {
      return await check()
    } catch (e) {
      last = e
    }
    await new Promise((r) => setTimeout(r, everyMs))
  }
  throw last instanceof Error ? last : new Error(String(last))
}
