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
  /** when the reports (chart, referrals) last took in this referrer's events */
  reports_as_of: string | null
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

export interface WalletCredit {
  id: string
  source: string
  amount_cents: number
  remaining_cents: number
  granted_at: string
  expires_at: string | null
}

export interface ReferralRow {
  user: string
  status: 'pending' | 'converted'
  signed_up_at: string
  first_purchase_at: string | null
  purchases: number
  earnings_cents: number
}

export interface Payout {
  id: string
  amount_cents: number
  status: 'pending' | 'paid' | 'failed'
  created_at: string
  settled_at: string | null
  failure: string | null
}

export interface Insights {
  payout_forecast: {
    cash_balance_cents: number
    minimum_cents: number
    cash_earned_per_day_cents: number
    reached: boolean
    expected_date: string | null
  }
  what_if_partner: {
    basic_sales_cents: number
    earned_as_basic_cents: number
    at_partner_rate_cents: number
    difference_cents: number
  }
}

export async function postJson<T>(path: string, body: unknown = {}): Promise<T> {
  const res = await fetch(path, {
    method: 'POST',
    credentials: 'same-origin',
    headers: { 'content-type': 'application/json' },
    body: JSON.stringify(body),
  })
  if (!res.ok) {
    const err = (await res.json().catch(() => null)) as { error?: { message?: string } } | null
    throw new ApiError(res.status, err?.error?.message ?? `${res.status} ${res.statusText}`)
  }
  return (await res.json()) as T
}

export const formatDate = (iso: string | null) => (iso === null ? '—' : new Date(iso).toLocaleDateString())
