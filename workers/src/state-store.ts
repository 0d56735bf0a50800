import type { Keys, Track } from '@referral/core'
import type { ChainableCommander, Redis } from 'ioredis'
import type { HeldRefund, Needs, PurchaseState, StateSnapshot, UserState, VisitorState } from './state.ts'

/**
 * How the program state is kept in Redis: what a batch reads before it is resolved (the
 * keys the resolver names, the ids already taken), and the fields and values each kind of
 * state is written as by the commit (apply.ts) and read back as.
 */

const DAY_MS = 86_400_000

/**
 * The days whose sets may hold an id taken now: today's first, then one for each day of
 * the window. An id taken on day d stays in d's set until the end of day d + window, so it
 * is recognised for at least the window and at most a day more.
 */
export function takenDays(now: number, dedupWindowSeconds: number): { days: number[]; expireAt: number } {
  const today = Math.floor(now / DAY_MS)
  const window = Math.max(1, Math.ceil(dedupWindowSeconds / 86_400))
  return {
    days: Array.from({ length: window + 1 }, (_, i) => today - i),
    expireAt: (today + 1 + window) * 86_400,
  }
}

/** Reads what `needs` names and the snapshot lacks: one pipeline, one MGET per string kind. */
export async function load(redis: Redis, keys: Keys, needs: Needs, snap: StateSnapshot): Promise<void> {
  const p = redis.pipeline()
  const readers = queueReads(p, keys, needs, snap)
  if (readers.length === 0) return
  settle(await p.exec(), readers)
}

/**
 * Takes the apply lock (SET NX with a TTL) and, in the same round trip after it, reads what
 * `needs` names into the snapshot: true when the lock was taken; false when another applier
 * holds it, and then what the snapshot holds is not to be used.
 */
export async function lockAndLoad(
  redis: Redis,
  keys: Keys,
  lock: { key: string; token: string; ttlMs: number },
  needs: Needs,
  snap: StateSnapshot,
): Promise<boolean> {
  const p = redis.pipeline()
  p.set(lock.key, lock.token, 'PX', lock.ttlMs, 'NX')
  const readers = queueReads(p, keys, needs, snap)
  const results = await p.exec()
  if (results === null) throw new Error('pipeline returned no results')
  const [lockErr, taken] = results[0] ?? [new Error('no reply to the lock'), null]
  if (lockErr) throw lockErr
  if (taken !== 'OK') return false
  settle(results.slice(1), readers)
  return true
}

type Reader = (v: unknown) => void

function settle(results: Array<[Error | null, unknown]> | null, readers: readonly Reader[]): void {
  if (results === null) throw new Error('pipeline returned no results')
  results.forEach(([err, value], i) => {
    if (err) throw err
    readers[i]?.(value)
  })
}

/** Queues on `p` the reads of what `needs` names and the snapshot lacks; their readers in order. */
function queueReads(p: ChainableCommander, keys: Keys, needs: Needs, snap: StateSnapshot): Reader[] {
  const readers: Reader[] = []
  const missing = <V>(have: Map<string, V>, want: Set<string>) => [...want].filter((k) => !have.has(k))
  /** string keys read with one MGET, each value parsed into the snapshot */
  const many = (ids: string[], key: (id: string) => string, into: (id: string, v: string | null) => void) => {
    if (ids.length === 0) return
    p.mget(ids.map(key))
    readers.push((v) => {
      const vals = v as Array<string | null>
      for (let i = 0; i < ids.length; i++) into(ids[i] as string, vals[i] ?? null)
    })
  }
  many(missing(snap.codes, needs.codes), keys.code, (c, v) => snap.codes.set(c, v))
  many(missing(snap.visitors, needs.visitors), keys.visitor, (id, v) =>
    snap.visitors.set(id, parseVisitor(v)),
  )
  many(missing(snap.held, needs.held), keys.heldRefunds, (id, v) =>
    snap.held.set(id, v === null ? [] : (JSON.parse(v) as HeldRefund[])),
  )
  many(missing(snap.recent, needs.recent), keys.fraudWindow, (w, v) =>
    snap.recent.set(w, v === null ? [] : (JSON.parse(v) as number[])),
  )
  for (const id of missing(snap.users, needs.users)) {
    p.hgetall(keys.user(id))
    readers.push((v) => snap.users.set(id, parseUser(v as Record<string, string>)))
  }
  for (const id of missing(snap.purchases, needs.purchases)) {
    p.hgetall(keys.purchase(id))
    readers.push((v) => snap.purchases.set(id, parsePurchase(v as Record<string, string>)))
  }
  return readers
}

/** Which of these ids are taken: each in the sets of the window's days. */
export async function loadTaken(
  redis: Redis,
  keys: Keys,
  ids: readonly string[],
  snap: StateSnapshot,
  opts: { dedupWindowSeconds: number; now?: () => number },
): Promise<void> {
  const p = redis.pipeline()
  const { days } = takenDays((opts.now ?? Date.now)(), opts.dedupWindowSeconds)
  for (const day of days) p.smismember(keys.takenOn(day), ...ids)
  for (const [err, hits] of (await p.exec()) ?? []) {
    if (err) throw err
    ;(hits as number[]).forEach((hit, i) => {
      if (hit === 1) snap.taken.add(ids[i] as string)
    })
  }
}

function num(v: string | undefined): number | undefined {
  return v === undefined ? undefined : Number(v)
}

export function parseUser(h: Record<string, string>): UserState {
  const u: UserState = {}
  if (h.code !== undefined) u.code = h.code
  if (h.referrer !== undefined) u.referrer = h.referrer
  if (h.signed_up_at !== undefined) u.signedUpAt = Number(h.signed_up_at)
  if (h.referred_at !== undefined) u.referredAt = Number(h.referred_at)
  if (h.converted_at !== undefined) u.convertedAt = Number(h.converted_at)
  if (h.track === 'basic' || h.track === 'partner') u.track = h.track
  if (h.partner_since !== undefined) u.partnerSince = Number(h.partner_since)
  if (h.ip !== undefined) u.ip = h.ip
  if (h.visitor !== undefined) u.visitor = h.visitor
  if (h.email_domain !== undefined) u.emailDomain = h.email_domain
  if (h.flags !== undefined && h.flags !== '') u.flags = h.flags.split(',')
  if (h.ref_purchases !== undefined) u.refPurchases = Number(h.ref_purchases)
  if (h.ref_purchased_cents !== undefined) u.refPurchasedCents = Number(h.ref_purchased_cents)
  if (h.ref_refunded_cents !== undefined) u.refRefundedCents = Number(h.ref_refunded_cents)
  return u
}

export function userFields(u: UserState): Record<string, string | number> {
  const f: Record<string, string | number> = {}
  if (u.referrer !== undefined) f.referrer = u.referrer
  if (u.signedUpAt !== undefined) f.signed_up_at = u.signedUpAt
  if (u.referredAt !== undefined) f.referred_at = u.referredAt
  if (u.convertedAt !== undefined) f.converted_at = u.convertedAt
  if (u.ip !== undefined) f.ip = u.ip
  if (u.visitor !== undefined) f.visitor = u.visitor
  if (u.emailDomain !== undefined) f.email_domain = u.emailDomain
  if (u.flags !== undefined) f.flags = u.flags.join(',')
  if (u.refPurchases !== undefined) f.ref_purchases = u.refPurchases
  if (u.refPurchasedCents !== undefined) f.ref_purchased_cents = u.refPurchasedCents
  if (u.refRefundedCents !== undefined) f.ref_refunded_cents = u.refRefundedCents
  return f
}

/** "CODE ts" (attribution), then "f" or "-" (click-rate flag), then the click window: start count. */
export function visitorValue(v: VisitorState): string {
  const base = `${v.code} ${v.ts} ${v.flagged ? 'f' : '-'}`
  return v.windowStart === undefined ? base : `${base} ${v.windowStart} ${v.windowClicks ?? 0}`
}

export function parseVisitor(v: string | null): VisitorState | null {
  if (v === null) return null
  const [code, ts, flag, start, clicks] = v.split(' ')
  if (code === undefined || ts === undefined) return null
  return {
    code,
    ts: Number(ts),
    ...(flag === 'f' ? { flagged: true } : {}),
    ...(start === undefined ? {} : { windowStart: Number(start), windowClicks: Number(clicks ?? 0) }),
  }
}

export function parsePurchase(h: Record<string, string>): PurchaseState | null {
  if (h.user === undefined) return null
  const track: Track | '' = h.track === 'basic' || h.track === 'partner' ? h.track : ''
  return {
    user: h.user,
    referrer: h.referrer ?? '',
    amount: num(h.amount) ?? 0,
    commission: num(h.commission) ?? 0,
    track,
    refunded: num(h.refunded) ?? 0,
    reversed: num(h.reversed) ?? 0,
    hold: h.hold === 'held' || h.hold === 'approved' || h.hold === 'rejected' ? h.hold : '',
    flags: h.flags === undefined || h.flags === '' ? [] : h.flags.split(','),
  }
}

export function purchaseFields(p: PurchaseState): Record<string, string | number> {
  return {
    user: p.user,
    referrer: p.referrer,
    amount: p.amount,
    commission: p.commission,
    track: p.track,
    refunded: p.refunded,
    reversed: p.reversed,
    hold: p.hold,
    flags: p.flags.join(','),
  }
}
