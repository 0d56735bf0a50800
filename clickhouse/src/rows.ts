/** The shapes of rows as written to ClickHouse (JSONEachRow); times are epoch milliseconds. */

export interface EventRow {
  id: string
  type: 'click' | 'signup' | 'purchase' | 'refund' | 'spend' | 'decision'
  ts: number
  received_at: number
  referrer_id: string
  code: string
  user_id: string
  visitor_id: string
  counted: 0 | 1
  first_purchase: 0 | 1
  note: string
  amount_cents: number
  commission_cents: number
  track: string
  currency: string
  plan: string
  purchase_id: string
  url: string
  referrer_url: string
  utm_source: string
  utm_medium: string
  utm_campaign: string
  ip: string
  user_agent: string
  country: string
  is_bot: 0 | 1
  /** fraud flags (workers/src/fraud.ts); absent when none */
  flags?: string[]
  /** on a first purchase, the buyer's signup (0009): its visitor, time and whether it was flagged */
  signup_visitor_id?: string
  signed_up_at?: number
  signup_flagged?: 0 | 1
  /** a decision's admin and stated reason */
  actor?: string
  reason?: string
}

export type LedgerKind =
  | 'commission'
  | 'commission_reversal'
  | 'signup_bonus'
  | 'bonus_expiry'
  | 'spend'
  | 'payout'
  | 'payout_failure'
  | 'hold_release'
  | 'commission_approved'
  | 'commission_rejected'

/** The ledger kinds that make a referrer's earnings (net of refunds and rejected holds). */
export const EARNING_KINDS_SQL = "('commission', 'commission_reversal', 'commission_rejected')"
/** The ledger kinds that bring a Partner's cash in (with account = 'cash'): commissions, approved holds, less refunds. */
export const CASH_EARNING_KINDS_SQL = "('commission', 'commission_reversal', 'commission_approved')"

export interface LedgerRow {
  entry_id: string
  kind: LedgerKind
  user_id: string
  /** held: a flagged commission until an admin approves (wallet or cash) or rejects it */
  account: 'wallet' | 'cash' | 'held'
  amount_cents: number
  event_id: string
  source_user_id: string
  /** the wallet credit a spend drew on (one entry per credit) */
  credit_id?: string
  ts: number
}

/**
 * An event row without its empty ('' or 0) fields: what is stored in Redis until the row is
 * in ClickHouse, and what is inserted (JSONEachRow fills omitted columns with defaults).
 * About a third of a full row for a click.
 */
export type CompactEventRow = Pick<EventRow, 'id' | 'type' | 'ts' | 'received_at'> & Partial<EventRow>

export function compactRow(row: EventRow): CompactEventRow {
  const out: Record<string, unknown> = {}
  // a plain loop: this runs for every event, and Object.entries allocates an array per row
  for (const k in row) {
    const v = row[k as keyof EventRow]
    if (v !== '' && v !== 0) out[k] = v
  }
  return out as CompactEventRow
}
