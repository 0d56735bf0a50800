import type { QueuedEvent } from '@referral/core'
import type { ResolveOptions } from '../src/resolution.ts'
import { resolveBatch } from '../src/resolve.ts'
import { emptySnapshot, type StateSnapshot } from '../src/state.ts'

export const DAY = 86_400_000
const defaults: ResolveOptions = { attributionWindowMs: 30 * DAY }
export const T0 = Date.UTC(2026, 10, 1)

/** Runs the resolver to a fixed point over a snapshot where unknown keys are empty. */
export function run(
  events: QueuedEvent[],
  seed: (s: StateSnapshot) => void = () => {},
  opts: ResolveOptions = defaults,
) {
  const snap = emptySnapshot()
  seed(snap)
  let r = resolveBatch(events, snap, opts)
  while (r.needs !== null) {
    for (const k of r.needs.codes) snap.codes.set(k, null)
    for (const k of r.needs.users) snap.users.set(k, {})
    for (const k of r.needs.visitors) snap.visitors.set(k, null)
    for (const k of r.needs.purchases) snap.purchases.set(k, null)
    for (const k of r.needs.held) snap.held.set(k, [])
    for (const k of r.needs.recent) snap.recent.set(k, [])
    r = resolveBatch(events, snap, opts)
  }
  return r.resolution
}

export const ev = {
  click: (id: string, code: string, visitor: string, ts = T0, extra: { ip?: string } = {}): QueuedEvent => ({
    type: 'click',
    id,
    code,
    visitor_id: visitor,
    ...extra,
    ts,
    received_at: ts,
  }),
  signup: (
    id: string,
    user: string,
    extra: { ref?: string; visitor_id?: string; ip?: string; email?: string } = {},
    ts = T0,
  ): QueuedEvent => ({
    type: 'signup',
    id,
    user_id: user,
    ...extra,
    ts,
    received_at: ts,
  }),
  purchase: (id: string, user: string, amount: number, ts = T0): QueuedEvent => ({
    type: 'purchase',
    id,
    user_id: user,
    amount_cents: amount,
    currency: 'usd',
    ts,
    received_at: ts,
  }),
  refund: (id: string, purchase: string, amount: number, ts = T0): QueuedEvent => ({
    type: 'refund',
    id,
    purchase_id: purchase,
    amount_cents: amount,
    ts,
    received_at: ts,
  }),
  decision: (purchase: string, decision: 'approve' | 'reject', ts = T0): QueuedEvent => ({
    type: 'decision',
    id: purchase,
    purchase_id: purchase,
    decision,
    by: 'admin',
    ts,
    received_at: ts,
  }),
}
