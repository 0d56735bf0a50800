import type { Track } from '@referral/core'

/** Program state the pipeline keeps in Redis, as the resolver sees it. */

export interface UserState {
  code?: string
  /** the referrer's user id, set once at signup and never reassigned */
  referrer?: string
  signedUpAt?: number
  referredAt?: number
  convertedAt?: number
  track?: Track
  /** when the user became a Partner (epoch ms); purchases before it earn at the Basic rate */
  partnerSince?: number
  /** where the user signed up from, for the self-referral rules when they refer others */
  ip?: string
  /**
   * the visitor_id the user signed up with; '' when the signup had none (undefined: a user
   * stored before signups recorded it, whose visitor only funnel_steps knows)
   */
  visitor?: string
  emailDomain?: string
  /** fraud flags raised on this user's referral (their purchases' commissions inherit them) */
  flags?: string[]
  /** as a referrer: purchases by the users they referred, and what of them was refunded */
  refPurchases?: number
  refPurchasedCents?: number
  refRefundedCents?: number
}

export interface VisitorState {
  code: string
  ts: number
  /** one of the visitor's clicks came faster than a person clicks */
  flagged?: boolean
  /** the visitor's current one-minute click window: when it started, how many clicks */
  windowStart?: number
  windowClicks?: number
}

export interface PurchaseState {
  user: string
  /** '' when the buyer was not referred */
  referrer: string
  amount: number
  commission: number
  track: Track | ''
  refunded: number
  reversed: number
  /** '' when the commission was never held */
  hold: '' | 'held' | 'approved' | 'rejected'
  flags: string[]
}

export interface HeldRefund {
  id: string
  amount_cents: number
  /** set for refunds stated as the charge's refunded total (Stripe) */
  refunded_total_cents?: number
  ts: number
  received_at: number
}

/** A loaded key is present in its map; a loaded key with no value maps to null (or {} for users). */
export interface StateSnapshot {
  /** event ids (`type:id`) taken before this batch; every other id is new */
  taken: Set<string>
  codes: Map<string, string | null>
  users: Map<string, UserState>
  visitors: Map<string, VisitorState | null>
  purchases: Map<string, PurchaseState | null>
  held: Map<string, HeldRefund[]>
  /** recent event times per fraud window ('signup-ip:1.2.3.4', 'click-visitor:v1', ...) */
  recent: Map<string, number[]>
}

/** what the resolver asks for when it is not loaded yet (which ids are taken is known up front) */
export type StateKind = Exclude<keyof StateSnapshot, 'taken'>

export type Needs = Record<StateKind, Set<string>>

export function emptySnapshot(): StateSnapshot {
  return {
    taken: new Set(),
    codes: new Map(),
    users: new Map(),
    visitors: new Map(),
    purchases: new Map(),
    held: new Map(),
    recent: new Map(),
  }
}

export function emptyNeeds(): Needs {
  return {
    codes: new Set(),
    users: new Set(),
    visitors: new Set(),
    purchases: new Set(),
    held: new Set(),
    recent: new Set(),
  }
}

export function markerId(type: string, id: string): string {
  return `${type}:${id}`
}

/** One credit in a user's wallet (contract: GET /v1/users/:user_id/wallet). */
export interface WalletCredit {
  /** the ledger entry that granted it, e.g. signup_bonus:<signup id> */
  id: string
  source: string
  amount_cents: number
  remaining_cents: number
  granted_at: number
  /** null: never expires */
  expires_at: number | null
}

export interface CreditExpiry {
  userId: string
  creditId: string
  expiresAt: number
}
