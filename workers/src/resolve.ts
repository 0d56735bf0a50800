import type { EventRow, LedgerRow } from '@referral/clickhouse'
import {
  type ClickEvent,
  type CounterField,
  type Counters,
  commissionFor,
  type PurchaseEvent,
  type QueuedEvent,
  type RefundEvent,
  reversalFor,
  SIGNUP_BONUS_CENTS,
  SIGNUP_BONUS_DAYS,
  type SignupEvent,
  type Track,
} from '@referral/core'
import { isbot } from 'isbot'
import {
  type CreditExpiry,
  emptyNeeds,
  type HeldRefund,
  markerId,
  type Needs,
  type PurchaseState,
  type StateSnapshot,
  type UserState,
  type VisitorState,
  type WalletCredit,
} from './state.ts'

/**
 * The rules of the program applied to a batch of events, as a pure function of the state
 * they read. Events are resolved in order, each seeing the effects of those before it.
 * When the snapshot lacks a key the result lists it in `needs`; the caller loads those
 * keys and calls again until nothing is missing.
 */

export interface ResolveOptions {
  attributionWindowMs: number
}

export interface Resolution {
  rows: EventRow[]
  ledger: LedgerRow[]
  /** marker ids (`type:id`) of the events this batch takes */
  taken: string[]
  users: Map<string, UserState>
  visitors: Map<string, VisitorState>
  purchases: Map<string, PurchaseState>
  /** an empty list means the key is deleted */
  held: Map<string, HeldRefund[]>
  counters: Map<string, Partial<Counters>>
  global: Partial<Counters>
  /** wallet credits granted (or, negative, taken back) by this batch, per user */
  credits: Map<string, WalletCredit[]>
  /** cash balance changes per user (Partner commissions and their reversals) */
  cash: Map<string, number>
  /** credits that expire, for the expiry job to be scheduled */
  expiries: CreditExpiry[]
}

export interface ResolveResult {
  /** null when every key the batch needed was in the snapshot */
  needs: Needs | null
  resolution: Resolution
}

class View {
  readonly needs = emptyNeeds()
  missing = false
  private readonly takenHere = new Set<string>()
  constructor(
    private readonly snap: StateSnapshot,
    private readonly out: Resolution,
  ) {}

  private read<K extends keyof StateSnapshot>(
    kind: K,
    key: string,
  ): StateSnapshot[K] extends Map<string, infer V> ? V | undefined : never {
    const map = this.snap[kind] as Map<string, unknown>
    if (!map.has(key)) {
      this.needs[kind].add(key)
      this.missing = true
      return undefined as never
    }
    return map.get(key) as never
  }

  taken(type: string, id: string): boolean {
    const k = markerId(type, id)
    return this.takenHere.has(k) || this.read('markers', k) === true
  }
  take(type: string, id: string): void {
    const k = markerId(type, id)
    this.takenHere.add(k)
    this.out.taken.push(k)
  }
  codeOwner(code: string): string | null {
    return this.read('codes', code) ?? null
  }
  user(id: string): UserState {
    return this.out.users.get(id) ?? this.read('users', id) ?? {}
  }
  visitor(id: string): VisitorState | null {
    return this.out.visitors.get(id) ?? this.read('visitors', id) ?? null
  }
  purchase(id: string): PurchaseState | null {
    return this.out.purchases.get(id) ?? this.read('purchases', id) ?? null
  }
  held(purchaseId: string): HeldRefund[] {
    return this.out.held.get(purchaseId) ?? this.read('held', purchaseId) ?? []
  }
}

function emptyResolution(): Resolution {
  return {
    rows: [],
    ledger: [],
    taken: [],
    users: new Map(),
    visitors: new Map(),
    purchases: new Map(),
    held: new Map(),
    counters: new Map(),
    global: {},
    credits: new Map(),
    cash: new Map(),
    expiries: [],
  }
}

function baseRow(e: QueuedEvent): EventRow {
  return {
    id: e.id,
    type: e.type,
    ts: e.ts,
    received_at: e.received_at,
    referrer_id: '',
    code: '',
    user_id: '',
    visitor_id: '',
    counted: 0,
    first_purchase: 0,
    note: '',
    amount_cents: 0,
    commission_cents: 0,
    track: '',
    currency: '',
    plan: '',
    purchase_id: '',
    url: '',
    referrer_url: '',
    utm_source: '',
    utm_medium: '',
    utm_campaign: '',
    ip: '',
    user_agent: '',
    country: '',
    is_bot: 0,
  }
}

/** The track that applies to a purchase at `ts`: Partner only from the upgrade on. */
export function trackAt(u: UserState, ts: number): Track {
  if (u.track !== 'partner') return 'basic'
  return u.partnerSince === undefined || ts >= u.partnerSince ? 'partner' : 'basic'
}

export function resolveBatch(
  events: readonly QueuedEvent[],
  snapshot: StateSnapshot,
  opts: ResolveOptions,
): ResolveResult {
  const out = emptyResolution()
  const view = new View(snapshot, out)

  const bump = (userId: string, field: CounterField, by: number) => {
    const c = out.counters.get(userId) ?? {}
    c[field] = (c[field] ?? 0) + by
    out.counters.set(userId, c)
    out.global[field] = (out.global[field] ?? 0) + by
  }
  /** Every cent moves through here: a ledger entry, and the balance it changes. */
  const post = (entry: LedgerRow, expiresAt: number | null = null) => {
    out.ledger.push(entry)
    if (entry.account === 'cash') {
      out.cash.set(entry.user_id, (out.cash.get(entry.user_id) ?? 0) + entry.amount_cents)
      return
    }
    const credit: WalletCredit = {
      id: entry.entry_id,
      source: entry.kind,
      amount_cents: entry.amount_cents,
      remaining_cents: entry.amount_cents,
      granted_at: entry.ts,
      expires_at: expiresAt,
    }
    out.credits.set(entry.user_id, [...(out.credits.get(entry.user_id) ?? []), credit])
    if (expiresAt !== null) out.expiries.push({ userId: entry.user_id, creditId: credit.id, expiresAt })
  }
  const setUser = (id: string, patch: Partial<UserState>) => {
    out.users.set(id, { ...view.user(id), ...patch })
  }

  const click = (e: ClickEvent, row: EventRow) => {
    const owner = view.codeOwner(e.code)
    const bot = e.user_agent !== undefined && isbot(e.user_agent)
    Object.assign(row, {
      code: e.code,
      visitor_id: e.visitor_id ?? '',
      url: e.url ?? '',
      referrer_url: e.referrer ?? '',
      utm_source: e.utm_source ?? '',
      utm_medium: e.utm_medium ?? '',
      utm_campaign: e.utm_campaign ?? '',
      ip: e.ip ?? '',
      user_agent: e.user_agent ?? '',
      country: e.country ?? '',
      is_bot: bot ? 1 : 0,
      referrer_id: owner ?? '',
    })
    if (owner === null) {
      row.note = 'unknown_code'
      return
    }
    if (bot) {
      row.note = 'bot'
      return
    }
    row.counted = 1
    bump(owner, 'clicks', 1)
    if (e.visitor_id !== undefined) {
      const last = view.visitor(e.visitor_id)
      if (last === null || last.ts <= e.ts) out.visitors.set(e.visitor_id, { code: e.code, ts: e.ts })
    }
  }

  /** The first valid candidate: the signup's own ref, else the visitor's last click in the window. */
  const attribute = (e: SignupEvent): { referrer: string; code: string } | { note: string } => {
    let note = 'unattributed'
    const candidates: string[] = []
    if (e.ref !== undefined) candidates.push(e.ref)
    if (e.visitor_id !== undefined) {
      const v = view.visitor(e.visitor_id)
      if (v !== null && v.ts <= e.ts && e.ts - v.ts <= opts.attributionWindowMs) candidates.push(v.code)
    }
    for (const code of candidates) {
      const owner = view.codeOwner(code)
      if (owner === null) note = note === 'unattributed' ? 'unknown_code' : note
      else if (owner === e.user_id) note = 'self_referral'
      else return { referrer: owner, code }
    }
    return { note }
  }

  const signup = (e: SignupEvent, row: EventRow) => {
    Object.assign(row, { user_id: e.user_id, visitor_id: e.visitor_id ?? '', code: e.ref ?? '' })
    const u = view.user(e.user_id)
    if (u.signedUpAt !== undefined || u.referrer !== undefined) {
      row.note = 'already_signed_up'
      return
    }
    const a = attribute(e)
    if ('note' in a) {
      row.note = a.note
      setUser(e.user_id, { signedUpAt: e.ts })
      return
    }
    setUser(e.user_id, { signedUpAt: e.ts, referrer: a.referrer, referredAt: e.ts })
    Object.assign(row, { referrer_id: a.referrer, code: a.code, counted: 1 })
    bump(a.referrer, 'signups', 1)
    post(
      {
        entry_id: `signup_bonus:${e.id}`,
        kind: 'signup_bonus',
        user_id: e.user_id,
        account: 'wallet',
        amount_cents: SIGNUP_BONUS_CENTS,
        event_id: e.id,
        source_user_id: a.referrer,
        ts: e.ts,
      },
      e.ts + SIGNUP_BONUS_DAYS * 86_400_000,
    )
  }

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
    const next = { ...p, refunded: p.refunded + applied, reversed: p.reversed + reversal }
    out.purchases.set(purchaseId, next)
    if (row !== undefined) {
      row.commission_cents = -reversal
      row.counted = reversal > 0 ? 1 : 0
      if (p.referrer === '') row.note = 'not_referred'
    }
    if (reversal > 0 && p.track !== '') {
      bump(p.referrer, 'earnings_cents', -reversal)
      post({
        entry_id: `commission_reversal:${r.id}`,
        kind: 'commission_reversal',
        user_id: p.referrer,
        account: p.track === 'partner' ? 'cash' : 'wallet',
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
      }
    } else {
      const track = trackAt(view.user(referrer), e.ts)
      const commission = commissionFor(e.amount_cents, track)
      Object.assign(row, { referrer_id: referrer, commission_cents: commission, track, counted: 1 })
      if (buyer.convertedAt === undefined) {
        setUser(e.user_id, { convertedAt: e.ts })
        row.first_purchase = 1
        bump(referrer, 'conversions', 1)
      }
      bump(referrer, 'earnings_cents', commission)
      post({
        entry_id: `commission:${e.id}`,
        kind: 'commission',
        user_id: referrer,
        account: track === 'partner' ? 'cash' : 'wallet',
        amount_cents: commission,
        event_id: e.id,
        source_user_id: e.user_id,
        ts: e.ts,
      })
      state = {
        user: e.user_id,
        referrer,
        amount: e.amount_cents,
        commission,
        track,
        refunded: 0,
        reversed: 0,
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

  for (const e of events) {
    if (view.taken(e.type, e.id)) continue
    view.take(e.type, e.id)
    const row = baseRow(e)
    switch (e.type) {
      case 'click':
        click(e, row)
        break
      case 'signup':
        signup(e, row)
        break
      case 'purchase':
        purchase(e, row)
        break
      case 'refund':
        refund(e, row)
        break
      case 'spend':
        // the spend script already moved the wallet; this records the entry
        Object.assign(row, { user_id: e.user_id, amount_cents: e.amount_cents, counted: 1 })
        for (const a of e.allocations) {
          out.ledger.push({
            entry_id: `spend:${e.id}:${a.credit_id}`,
            kind: 'spend',
            user_id: e.user_id,
            account: 'wallet',
            amount_cents: -a.amount_cents,
            event_id: e.spend_id,
            source_user_id: '',
            credit_id: a.credit_id,
            ts: e.ts,
          })
        }
        break
    }
    out.rows.push(row)
  }
  return { needs: view.missing ? view.needs : null, resolution: out }
}
