import type { EventRow, LedgerRow } from '@referral/clickhouse'
import {
  type CounterField,
  commissionFor,
  type DecisionEvent,
  type FraudConfig,
  type PurchaseEvent,
  type RefundEvent,
  reversalFor,
  type Track,
} from '@referral/core'
import type { Resolution, View } from './resolution.ts'
import type { HeldRefund, PurchaseState, UserState } from './state.ts'

/**
 * What the money rules share with the rest of the resolver (resolve.ts): its output and
 * view of the state, and how it moves counters, cents and users.
 */
export interface MoneyContext {
  out: Resolution
  view: View
  fraud: FraudConfig
  bump: (userId: string, field: CounterField, by: number) => void
  /** every cent moves through here: a ledger entry, and the balance it changes */
  post: (entry: LedgerRow, expiresAt?: number | null) => void
  setUser: (id: string, patch: Partial<UserState>) => void
}

/** The track that applies to a purchase at `ts`: Partner only from the upgrade on. */
export function trackAt(u: UserState, ts: number): Track {
  if (u.track !== 'partner') return 'basic'
  return u.partnerSince === undefined || ts >= u.partnerSince ? 'partner' : 'basic'
}

/**
 * The rules that move money: a purchase (the commission, held when the buyer's referral is
 * flagged, and the buyer's first purchase), a refund (its commission reversal, or held until
 * the purchase arrives), and an admin's decision on a held commission.
 */
export function moneyRules(ctx: MoneyContext): {
  purchase: (e: PurchaseEvent, row: EventRow) => void
  refund: (e: RefundEvent, row: EventRow) => void
  decide: (e: DecisionEvent, row: EventRow) => void
} {
  const { out, view, fraud, bump, post, setUser } = ctx

  const applyRefund = (p: PurchaseState, purchaseId: string, r: HeldRefund, row: EventRow | undefined) => {
    const refundable = p.amount - p.refunded
    const asked = r.refunded_total_cents === undefined ? r.amount_cents : r.refunded_total_cents - p.refunded
    const applied = Math.max(0, Math.min(asked, refundable))
    if (row !== undefined) Object.assign(row, { referrer_id: p.referrer, user_id: p.user })
    if (applied <= 0) {
      if (row !== undefined) row.note = 'nothing_to_refund'
      return
    }
    const reversal =
      p.referrer === '' ? 0 : reversalFor(p.commission, p.amount, p.refunded, applied, p.reversed)
    const next = Object.assign({}, p, { refunded: p.refunded + applied, reversed: p.reversed + reversal })
    out.purchases.set(purchaseId, next)
    if (p.referrer !== '') {
      setUser(p.referrer, { refRefundedCents: (view.user(p.referrer).refRefundedCents ?? 0) + applied })
    }
    if (row !== undefined) {
      row.commission_cents = -reversal
      row.counted = reversal > 0 ? 1 : 0
      if (p.referrer === '') row.note = 'not_referred'
      if (p.flags.length > 0) row.flags = p.flags
    }
    if (reversal > 0 && p.track !== '') {
      bump(p.referrer, 'earnings_cents', -reversal)
      post({
        entry_id: `commission_reversal:${r.id}`,
        kind: 'commission_reversal',
        user_id: p.referrer,
        account: p.hold === 'held' ? 'held' : p.track === 'partner' ? 'cash' : 'wallet',
        amount_cents: -reversal,
        event_id: r.id,
        source_user_id: p.user,
        ts: r.ts,
      })
    }
  }

  const purchase = (e: PurchaseEvent, row: EventRow) => {
    Object.assign(row, {
      user_id: e.user_id,
      amount_cents: e.amount_cents,
      currency: e.currency,
      plan: e.plan ?? '',
    })
    const buyer = view.user(e.user_id)
    const referrer = buyer.referrer
    let state: PurchaseState
    if (referrer === undefined) {
      row.note = 'not_referred'
      state = {
        user: e.user_id,
        referrer: '',
        amount: e.amount_cents,
        commission: 0,
        track: '',
        refunded: 0,
        reversed: 0,
        hold: '',
        flags: [],
      }
    } else {
      const r = view.user(referrer)
      const track = trackAt(r, e.ts)
      const commission = commissionFor(e.amount_cents, track)
      Object.assign(row, { referrer_id: referrer, commission_cents: commission, track, counted: 1 })
      const flags = [...(buyer.flags ?? [])]
      const purchased = r.refPurchasedCents ?? 0
      if (
        (r.refPurchases ?? 0) >= fraud.refundMinPurchases &&
        purchased > 0 &&
        (r.refRefundedCents ?? 0) / purchased > fraud.refundRate
      ) {
        flags.push('refund_rate')
      }
      setUser(referrer, {
        refPurchases: (r.refPurchases ?? 0) + 1,
        refPurchasedCents: purchased + e.amount_cents,
      })
      const hold = flags.length > 0 && fraud.hold && commission > 0
      if (flags.length > 0) row.flags = flags
      if (buyer.convertedAt === undefined) {
        setUser(e.user_id, { convertedAt: e.ts })
        row.first_purchase = 1
        // the funnel's purchase step carries the buyer's signup (0009), so it is not joined at
        // read; with visitor '' when the signup had none. Not when the state has no visitor
        // field at all (a signup stored before signups recorded it): the join finds its visitor
        if (buyer.referredAt !== undefined && buyer.visitor !== undefined) {
          Object.assign(row, {
            signup_visitor_id: buyer.visitor,
            signed_up_at: buyer.referredAt,
            signup_flagged: buyer.flags === undefined || buyer.flags.length === 0 ? 0 : 1,
          })
        }
        bump(referrer, 'conversions', 1)
      }
      bump(referrer, 'earnings_cents', commission)
      post({
        entry_id: `commission:${e.id}`,
        kind: 'commission',
        user_id: referrer,
        account: hold ? 'held' : track === 'partner' ? 'cash' : 'wallet',
        amount_cents: commission,
        event_id: e.id,
        source_user_id: e.user_id,
        ts: e.ts,
      })
      if (hold) {
        row.note = 'held'
        out.holds.set(e.id, true)
      }
      state = {
        user: e.user_id,
        referrer,
        amount: e.amount_cents,
        commission,
        track,
        refunded: 0,
        reversed: 0,
        hold: hold ? 'held' : '',
        flags,
      }
    }
    out.purchases.set(e.id, state)
    const held = view.held(e.id)
    if (held.length > 0) {
      for (const r of held) {
        const p = view.purchase(e.id)
        if (p !== null) applyRefund(p, e.id, r, undefined)
      }
      out.held.set(e.id, [])
    }
  }

  const refund = (e: RefundEvent, row: EventRow) => {
    Object.assign(row, { purchase_id: e.purchase_id, amount_cents: e.amount_cents })
    const r: HeldRefund = {
      id: e.id,
      amount_cents: e.amount_cents,
      ts: e.ts,
      received_at: e.received_at,
      ...(e.refunded_total_cents === undefined ? {} : { refunded_total_cents: e.refunded_total_cents }),
    }
    const p = view.purchase(e.purchase_id)
    if (p === null) {
      row.note = 'held_until_purchase'
      out.held.set(e.purchase_id, [...view.held(e.purchase_id), r])
      return
    }
    applyRefund(p, e.purchase_id, r, row)
  }

  /**
   * An admin's decision on a held commission: what is left of it after refunds moves from
   * the held balance to the referrer's wallet or cash (approve), or is written off (reject,
   * which the earnings lose like a reversal). The first decision wins.
   */
  const decide = (e: DecisionEvent, row: EventRow) => {
    Object.assign(row, { purchase_id: e.purchase_id, note: 'not_held', actor: e.by, reason: e.reason ?? '' })
    const p = view.purchase(e.purchase_id)
    if (p === null) {
      row.note = 'unknown_purchase'
      return
    }
    Object.assign(row, { referrer_id: p.referrer, user_id: p.user, track: p.track })
    if (p.flags.length > 0) row.flags = p.flags
    if (p.hold !== 'held' || p.track === '') return
    const left = p.commission - p.reversed
    const approve = e.decision === 'approve'
    Object.assign(row, { amount_cents: left, counted: 1, note: approve ? 'approved' : 'rejected' })
    out.purchases.set(
      e.purchase_id,
      Object.assign({}, p, {
        hold: approve ? ('approved' as const) : ('rejected' as const),
        // a rejected commission counts as reversed in full: later refunds reverse nothing
        reversed: approve ? p.reversed : p.commission,
      }),
    )
    out.holds.set(e.purchase_id, false)
    if (left <= 0) return
    const base = { user_id: p.referrer, event_id: e.purchase_id, source_user_id: p.user, ts: e.ts }
    if (approve) {
      post({
        ...base,
        entry_id: `hold_release:${e.purchase_id}`,
        kind: 'hold_release',
        account: 'held',
        amount_cents: -left,
      })
      post({
        ...base,
        entry_id: `commission_approved:${e.purchase_id}`,
        kind: 'commission_approved',
        account: p.track === 'partner' ? 'cash' : 'wallet',
        amount_cents: left,
      })
      return
    }
    row.commission_cents = -left
    bump(p.referrer, 'earnings_cents', -left)
    post({
      ...base,
      entry_id: `commission_rejected:${e.purchase_id}`,
      kind: 'commission_rejected',
      account: 'held',
      amount_cents: -left,
    })
  }

  return { purchase, refund, decide }
}
