/** The dashboard's view of the service: same-origin calls with the session cookie. */

export interface Stats {
  total_clicks: number
  total_referrals: number
  conversions: number
  pending_referrals: number
  conversion_rate: number
  total_earnings_cents: number
  track: 'basic' | 'partner'
  wallet_balance_cents: number
  cash_balance_cents: number
  as_of: string
}

export interface Referral {
  code: string
  link: string
  track: 'basic' | 'partner'
  share: { twitter: string; linkedin: string }
}

export interface EarningsPoint {
  t: string
  earnings_cents: number
  conversions: number
  signups: number
  clicks: number
}

export type Interval = 'hour' | 'day' | 'week' | 'month'

export class ApiError extends Error {
  constructor(
    readonly status: number,
    message: string,
  ) {
    super(message)
  }
}

export async function getJson<T>(path: string): Promise<T> {
  const res = await fetch(path, { credentials: 'same-origin' })
  if (!res.ok) {
    const body = (await res.json().catch(() => null)) as { error?: { message?: string } } | null
    throw new ApiError(res.status, body?.error?.message ?? `${res.status} ${res.statusText}`)
  }
  return (await res.json()) as T
}

export const formatCents = (cents: number) =>
  (cents / 100).toLocaleString('en-US', { style: 'currency', currency: 'USD' })

export const viewerTimeZone = () => Intl.DateTimeFormat().resolvedOptions().timeZone
