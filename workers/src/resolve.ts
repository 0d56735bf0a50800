import { type EventRow, emptyEventRow, type LedgerRow } from '@referral/clickhouse'
import {
  type ClickEvent,
  type CounterField,
  type QueuedEvent,
  SIGNUP_BONUS_CENTS,
  SIGNUP_BONUS_DAYS,
  type SignupEvent,
} from '@referral/core'
import { isbot } from 'isbot'
import {
  DEFAULT_FRAUD,
  emailDomain,
  type FraudFlag,
  isDisposable,
  isPublicMailDomain,
  slide,
} from './fraud.ts'
import { emptyResolution, type ResolveOptions, type ResolveResult, View } from './resolution.ts'
import { moneyRules } from './resolve-money.ts'
import {
  emptyNeeds,
  markerId,
  type Needs,
  type StateSnapshot,
  type UserState,
  type WalletCredit,
} from './state.ts'

function baseRow(e: QueuedEvent): EventRow {
  return emptyEventRow(e.id, e.type, e.ts, e.received_at)
}

/**
 * The state the rules read for these events before anything else (their markers apart): per
 * type the codes, visitors, users, purchases and fraud windows it names. Loaded up front,
 * a batch of clicks resolves in one pass; what the rules find they need besides (a referrer's
 * own state, say) the resolver asks for after.
 */
export function likelyNeeds(events: readonly QueuedEvent[]): Needs {
  const n = emptyNeeds()
  for (const e of events) {
    switch (e.type) {
      case 'click':
        n.codes.add(e.code)
        if (e.visitor_id !== undefined) n.visitors.add(e.visitor_id)
        if (e.ip !== undefined) n.recent.add(`click-ip:${e.ip}`)
        break
      case 'signup':
        n.users.add(e.user_id)
        if (e.ref !== undefined) n.codes.add(e.ref)
        if (e.visitor_id !== undefined) n.visitors.add(e.visitor_id)
        break
      case 'purchase':
        n.users.add(e.user_id)
        n.held.add(e.id)
        break
      case 'refund':
      case 'decision':
        n.purchases.add(e.purchase_id)
        break
      case 'spend':
        break
    }
  }
  return n
}

// the money rules (purchase, refund, decision) live in resolve-money.ts
export { trackAt } from './resolve-money.ts'

/**
 * The rules of the program applied to a batch of events, as a pure function of the state
 * they read. Events are resolved in order, each seeing the effects of those before it.
 * When the snapshot lacks a key the result lists it in `needs`; the caller loads those
 * keys and calls again until nothing is missing.
 */
export function resolveBatch(
  events: readonly QueuedEvent[],
  snapshot: StateSnapshot,
  opts: ResolveOptions,
  /** the events' marker ids (`type:id`), when the caller has them already */
  markerIds?: readonly string[],
): ResolveResult {
  const out = emptyResolution()
  const view = new View(snapshot, out)
  const fraud = opts.fraud ?? DEFAULT_FRAUD

  /** Adds `ts` to a fraud window; true when more than `max` events fell within it. */
  const over = (key: string, ts: number, windowMs: number, max: number): boolean => {
    const w = slide(view.recent(key), ts, windowMs, max)
    out.recent.set(key, { times: w.times, ttlMs: windowMs })
    return w.count > max
  }

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
    if (entry.account === 'held') {
      out.onHold.set(entry.user_id, (out.onHold.get(entry.user_id) ?? 0) + entry.amount_cents)
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
    out.users.set(id, Object.assign({}, view.user(id), patch))
  }

  const click = (e: ClickEvent, row: EventRow) => {
    const owner = view.codeOwner(e.code)
    const bot = e.user_agent !== undefined && isbot(e.user_agent)
    // field by field: the hottest rule of all, and Object.assign would build an object a click
    row.code = e.code
    row.visitor_id = e.visitor_id ?? ''
    row.url = e.url ?? ''
    row.referrer_url = e.referrer ?? ''
    row.utm_source = e.utm_source ?? ''
    row.utm_medium = e.utm_medium ?? ''
    row.utm_campaign = e.utm_campaign ?? ''
    row.ip = e.ip ?? ''
    row.user_agent = e.user_agent ?? ''
    row.country = e.country ?? ''
    row.is_bot = bot ? 1 : 0
    row.referrer_id = owner ?? ''
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
    // click rate: per visitor, a one-minute window kept in the visitor's own state (no extra
    // key on the hot path); per IP, a sliding window of its own
    let fast = false
    if (e.visitor_id !== undefined) {
      const last = view.visitor(e.visitor_id)
      const start = last?.windowStart
      const inWindow = start !== undefined && Math.abs(e.ts - start) < 60_000
      const windowClicks = (inWindow ? (last?.windowClicks ?? 0) : 0) + 1
      fast = windowClicks > fraud.maxClicksPerMinute
      const latest = last === null || last.ts <= e.ts
      const flagged = fast || last?.flagged === true
      out.visitors.set(e.visitor_id, {
        code: latest || last === null ? e.code : last.code,
        ts: latest || last === null ? e.ts : last.ts,
        ...(flagged ? { flagged } : {}),
        windowStart: inWindow && start !== undefined ? start : e.ts,
        windowClicks,
      })
    }
    if (!fast && e.ip !== undefined) fast = over(`click-ip:${e.ip}`, e.ts, 60_000, fraud.maxClicksPerMinute)
    if (fast) row.flags = ['click_rate']
  }

  /** The fraud rules of a referral: what the signup shares with its referrer, and its pace. */
  const referralFlags = (e: SignupEvent, referrer: string, domain: string | undefined): FraudFlag[] => {
    const flags: FraudFlag[] = []
    const r = view.user(referrer)
    if (e.ip !== undefined && r.ip === e.ip) flags.push('same_ip')
    if (e.visitor_id !== undefined && r.visitor === e.visitor_id) flags.push('same_visitor')
    if (domain !== undefined && r.emailDomain === domain && !isPublicMailDomain(domain)) {
      flags.push('same_email_domain')
    }
    if (e.ip !== undefined && over(`signup-ip:${e.ip}`, e.ts, fraud.signupWindowMs, fraud.maxSignupsPerIp)) {
      flags.push('signup_burst_ip')
    }
    if (
      e.visitor_id !== undefined &&
      over(`signup-visitor:${e.visitor_id}`, e.ts, fraud.signupWindowMs, fraud.maxSignupsPerVisitor)
    ) {
      flags.push('signup_burst_visitor')
    }
    if (e.visitor_id !== undefined && view.visitor(e.visitor_id)?.flagged === true) flags.push('click_rate')
    if (domain !== undefined && isDisposable(domain, fraud.disposableDomains)) flags.push('disposable_email')
    return flags
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
    Object.assign(row, {
      user_id: e.user_id,
      visitor_id: e.visitor_id ?? '',
      code: e.ref ?? '',
      ip: e.ip ?? '',
    })
    const u = view.user(e.user_id)
    if (u.signedUpAt !== undefined || u.referrer !== undefined) {
      row.note = 'already_signed_up'
      return
    }
    const domain = e.email === undefined ? undefined : emailDomain(e.email)
    const seen: Partial<UserState> = {
      signedUpAt: e.ts,
      ...(e.ip === undefined ? {} : { ip: e.ip }),
      // '' for none, said outright: a first purchase then carries the signup without a visitor
      visitor: e.visitor_id ?? '',
      ...(domain === undefined ? {} : { emailDomain: domain }),
    }
    const a = attribute(e)
    if ('note' in a) {
      row.note = a.note
      setUser(e.user_id, seen)
      return
    }
    const flags = referralFlags(e, a.referrer, domain)
    setUser(
      e.user_id,
      Object.assign({}, seen, { referrer: a.referrer, referredAt: e.ts }, flags.length > 0 ? { flags } : {}),
    )
    Object.assign(row, { referrer_id: a.referrer, code: a.code, counted: 1 })
    if (flags.length > 0) row.flags = flags
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

  const { purchase, refund, decide } = moneyRules({ out, view, fraud, bump, post, setUser })

  for (let i = 0; i < events.length; i++) {
    const e = events[i] as QueuedEvent
    const k = markerIds?.[i] ?? markerId(e.type, e.id)
    if (view.taken(k)) continue
    view.take(k)
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
      case 'decision':
        decide(e, row)
        break
    }
    out.rows.push(row)
  }
  return { needs: view.missing ? view.needs : null, resolution: out }
}
