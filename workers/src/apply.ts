import { randomUUID } from 'node:crypto'
import { type CompactEventRow, compactRow, type EventRow, type LedgerRow } from '@referral/clickhouse'
import { COUNTER_FIELDS, type Keys, newId, type QueuedEvent, type Track } from '@referral/core'
import type { Redis } from 'ioredis'
import type { Resolution, ResolveOptions } from './resolution.ts'
import { resolveBatch } from './resolve.ts'
import {
  type CreditExpiry,
  emptySnapshot,
  type HeldRefund,
  type Needs,
  type PurchaseState,
  type StateSnapshot,
  type UserState,
  type VisitorState,
} from './state.ts'

/**
 * Applies a job's events to the program state in Redis exactly once, and returns what the
 * job must write to ClickHouse.
 *
 * The applier holds a fencing lock (one applier at a time, whatever the queue does), reads
 * the state it needs, runs the rules as a pure function (resolve.ts), and commits with one
 * Lua script that checks it still holds the lock and that no event id was taken meanwhile,
 * then writes the markers, the state, the counter increments and the job's resolution
 * together. A retried job finds its stored resolution and writes the very same rows, so
 * ClickHouse's insert dedup token works.
 */

export interface StoredResolution {
  rows: CompactEventRow[]
  ledger: LedgerRow[]
  /** referrers whose counters this job moved */
  changed: string[]
  /** credits granted with an expiry, for the expiry job */
  expiries: CreditExpiry[]
}

export interface ApplyOptions extends ResolveOptions {
  dedupWindowSeconds: number
  /** how long a resolution is kept if its job never completes */
  resolutionTtlSeconds: number
  /** how long the apply lock holds without being released (ms) */
  lockTtlMs?: number
  now?: () => number
}

const MAX_ROUNDS = 20

export class ApplyConflictError extends Error {}

/** Keep the first occurrence of each (type, id) in the order received. */
export function uniqueEvents(events: readonly QueuedEvent[]): QueuedEvent[] {
  const seen = new Set<string>()
  return events.filter((e) => {
    const k = `${e.type}:${e.id}`
    if (seen.has(k)) return false
    seen.add(k)
    return true
  })
}

// KEYS[1] the apply lock, KEYS[2..m+1] event markers, KEYS[m+2..] keys the ops write.
// ARGV[1] lock token, ARGV[2] marker TTL (s), ARGV[3] m, then ops: name, key index, argc, args...
// Returns 1 when applied, -1 when the lock is no longer ours, -2 when an event id was taken.
const COMMIT = `
if redis.call('GET', KEYS[1]) ~= ARGV[1] then return -1 end
local m = tonumber(ARGV[3])
for i = 2, m + 1 do
  if redis.call('EXISTS', KEYS[i]) == 1 then return -2 end
end
for i = 2, m + 1 do redis.call('SET', KEYS[i], '1', 'EX', ARGV[2]) end
local allowed = { SET = true, HSET = true, HINCRBY = true, DEL = true, ZADD = true, ZREM = true, PUBLISH = true }
local i = 4
while i <= #ARGV do
  local op, key, argc = ARGV[i], KEYS[tonumber(ARGV[i + 1])], tonumber(ARGV[i + 2])
  if not allowed[op] then return redis.error_reply('op not allowed: ' .. op) end
  if op == 'PUBLISH' then key = ARGV[i + 1] end
  redis.call(op, key, unpack(ARGV, i + 3, i + 2 + argc))
  i = i + 3 + argc
end
return 1
`

// KEYS[1] lock, ARGV[1] token: delete the lock only if it is still ours.
const RELEASE = `
if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('DEL', KEYS[1]) end
return 0
`

export interface JobInput {
  id: string
  events: readonly QueuedEvent[]
}

/** The rows of one group of jobs applied together, to be inserted with the group's token. */
export interface AppliedGroup {
  groupId: string
  resolution: StoredResolution
}

/**
 * Applies a group of jobs (in queue order) as one batch. Each job remembers the group it was
 * applied in (`job:<id>` -> group id), and the group keeps its rows until they are stored,
 * so a job retried alone, or with other jobs, finds its group and the very same rows.
 * Returns the groups whose rows still have to be inserted.
 */
export async function applyJobs(
  redis: Redis,
  keys: Keys,
  jobs: readonly JobInput[],
  opts: ApplyOptions,
): Promise<AppliedGroup[]> {
  const lock = keys.applyLock()
  const token = randomUUID()
  await acquire(redis, lock, token, opts.lockTtlMs ?? 15_000)
  try {
    for (let round = 0; round < MAX_ROUNDS; round++) {
      const known = await redis.mget(jobs.map((j) => keys.jobGroup(j.id)))
      const groupIds = [...new Set(known.filter((g): g is string => g !== null))]
      const earlier = await storedGroups(redis, keys, groupIds)
      const pending = jobs.filter((_, i) => known[i] === null || known[i] === undefined)
      if (pending.length === 0) return earlier
      const unique = uniqueEvents(pending.flatMap((j) => j.events))
      const snapshot = emptySnapshot()
      let result = resolveBatch(unique, snapshot, opts)
      while (result.needs !== null) {
        await load(redis, keys, result.needs, snapshot)
        result = resolveBatch(unique, snapshot, opts)
      }
      const res = result.resolution
      const group: AppliedGroup = {
        groupId: newId(),
        resolution: {
          rows: res.rows.map(compactRow),
          ledger: res.ledger,
          changed: [
            ...new Set([
              ...res.counters.keys(),
              ...res.credits.keys(),
              ...res.cash.keys(),
              ...res.onHold.keys(),
            ]),
          ],
          expiries: res.expiries,
        },
      }
      const outcome = await commit(redis, keys, lock, token, pending, group, res, opts)
      if (outcome === 1) return [...earlier, group]
      if (outcome === -1) throw new ApplyConflictError('lost the apply lock before committing')
      // -2: an event id was taken since we read the markers; read again
    }
    throw new ApplyConflictError(`event ids kept being taken under this group for ${MAX_ROUNDS} rounds`)
  } finally {
    await redis.eval(RELEASE, 1, lock, token)
  }
}

/** Groups not yet stored; a group whose record is gone was stored and finished. */
async function storedGroups(redis: Redis, keys: Keys, groupIds: string[]): Promise<AppliedGroup[]> {
  if (groupIds.length === 0) return []
  const raw = await redis.mget(groupIds.map((g) => keys.group(g)))
  return groupIds.flatMap((groupId, i) => {
    const r = raw[i]
    return r === null || r === undefined ? [] : [{ groupId, resolution: JSON.parse(r) as StoredResolution }]
  })
}

/** After the rows are in ClickHouse: forget the groups and the jobs' links to them. */
export async function finishJobs(
  redis: Redis,
  keys: Keys,
  jobIds: readonly string[],
  groups: readonly AppliedGroup[],
): Promise<void> {
  const ks = [...jobIds.map((j) => keys.jobGroup(j)), ...groups.map((g) => keys.group(g.groupId))]
  if (ks.length > 0) await redis.del(ks)
}

async function acquire(redis: Redis, lock: string, token: string, ttlMs: number): Promise<void> {
  const deadline = Date.now() + ttlMs * 2
  for (;;) {
    if ((await redis.set(lock, token, 'PX', ttlMs, 'NX')) === 'OK') return
    if (Date.now() > deadline) throw new ApplyConflictError('the apply lock is held by another applier')
    await new Promise((r) => setTimeout(r, 20))
  }
}

async function load(redis: Redis, keys: Keys, needs: Needs, snap: StateSnapshot): Promise<void> {
  const p = redis.pipeline()
  const readers: Array<(v: unknown) => void> = []
  const markerIds = [...needs.markers]
  if (markerIds.length > 0) {
    p.mget(markerIds.map(markerKey(keys)))
    readers.push((v) => {
      const vals = v as Array<string | null>
      markerIds.forEach((m, i) => {
        snap.markers.set(m, vals[i] !== null && vals[i] !== undefined)
      })
    })
  }
  for (const code of needs.codes) {
    p.get(keys.code(code))
    readers.push((v) => snap.codes.set(code, (v as string | null) ?? null))
  }
  for (const id of needs.users) {
    p.hgetall(keys.user(id))
    readers.push((v) => snap.users.set(id, parseUser(v as Record<string, string>)))
  }
  for (const id of needs.visitors) {
    p.get(keys.visitor(id))
    readers.push((v) => snap.visitors.set(id, parseVisitor(v as string | null)))
  }
  for (const id of needs.purchases) {
    p.hgetall(keys.purchase(id))
    readers.push((v) => snap.purchases.set(id, parsePurchase(v as Record<string, string>)))
  }
  for (const id of needs.held) {
    p.get(keys.heldRefunds(id))
    readers.push((v) => snap.held.set(id, v === null ? [] : (JSON.parse(v as string) as HeldRefund[])))
  }
  for (const w of needs.recent) {
    p.get(keys.fraudWindow(w))
    readers.push((v) => snap.recent.set(w, v === null ? [] : (JSON.parse(v as string) as number[])))
  }
  const results = await p.exec()
  if (results === null) throw new Error('pipeline returned no results')
  results.forEach(([err, value], i) => {
    if (err) throw err
    readers[i]?.(value)
  })
}

const markerKey = (keys: Keys) => (m: string) => {
  const i = m.indexOf(':')
  return keys.marker(m.slice(0, i), m.slice(i + 1))
}

export interface FeedItem {
  type: string
  id: string
  referrer_id: string
  amount_cents: number
  commission_cents: number
  counted: boolean
  note: string
  ts: number
}

/** The newest events of a batch, small enough for a live feed (20 at most). */
export function feedOf(rows: readonly EventRow[]): FeedItem[] {
  return rows.slice(-20).map((r) => ({
    type: r.type,
    id: r.id,
    referrer_id: r.referrer_id,
    amount_cents: r.amount_cents,
    commission_cents: r.commission_cents,
    counted: r.counted === 1,
    note: r.note,
    ts: r.ts,
  }))
}

/** The writes of a resolution as the commit script's ops, with the keys they touch. */
class OpList {
  readonly keys: string[] = []
  readonly args: Array<string | number> = []
  private readonly index = new Map<string, number>()
  constructor(private readonly firstIndex: number) {}

  add(
    op: 'SET' | 'HSET' | 'HINCRBY' | 'DEL' | 'ZADD' | 'ZREM',
    key: string,
    ...args: Array<string | number>
  ): void {
    let i = this.index.get(key)
    if (i === undefined) {
      i = this.firstIndex + this.keys.length
      this.keys.push(key)
      this.index.set(key, i)
    }
    this.args.push(op, i, args.length, ...args)
  }
  publish(channel: string, message: string): void {
    this.args.push('PUBLISH', channel, 1, message)
  }
}

async function commit(
  redis: Redis,
  keys: Keys,
  lock: string,
  token: string,
  jobs: readonly JobInput[],
  group: AppliedGroup,
  res: Resolution,
  opts: ApplyOptions,
): Promise<number> {
  const now = (opts.now ?? Date.now)()
  const markers = res.taken.map(markerKey(keys))
  const ops = new OpList(2 + markers.length)
  for (const [id, u] of res.users) ops.add('HSET', keys.user(id), ...Object.entries(userFields(u)).flat())
  for (const [id, v] of res.visitors) {
    const ttl = Math.ceil((v.ts + opts.attributionWindowMs - now) / 1000)
    if (ttl > 0) ops.add('SET', keys.visitor(id), visitorValue(v), 'EX', ttl)
  }
  for (const [id, p] of res.purchases)
    ops.add('HSET', keys.purchase(id), ...Object.entries(purchaseFields(p)).flat())
  for (const [id, list] of res.held) {
    if (list.length === 0) ops.add('DEL', keys.heldRefunds(id))
    else ops.add('SET', keys.heldRefunds(id), JSON.stringify(list))
  }
  for (const [userId, c] of res.counters) {
    for (const f of COUNTER_FIELDS) {
      const by = c[f]
      if (by !== undefined && by !== 0) ops.add('HINCRBY', keys.stats(userId), f, by)
    }
    ops.add('HSET', keys.stats(userId), 'updated_at', now)
  }
  for (const f of COUNTER_FIELDS) {
    const by = res.global[f]
    if (by !== undefined && by !== 0) ops.add('HINCRBY', keys.globalStats(), f, by)
  }
  if (res.counters.size > 0) ops.add('HSET', keys.globalStats(), 'updated_at', now)
  for (const [userId, credits] of res.credits) {
    ops.add('HSET', keys.wallet(userId), ...credits.flatMap((c) => [c.id, JSON.stringify(c)]))
  }
  for (const [userId, delta] of res.cash)
    if (delta !== 0) ops.add('HINCRBY', keys.balance(userId), 'cash', delta)
  for (const [userId, delta] of res.onHold)
    if (delta !== 0) ops.add('HINCRBY', keys.balance(userId), 'held', delta)
  for (const [purchaseId, held] of res.holds) {
    if (held) ops.add('ZADD', keys.pendingHolds(), now, purchaseId)
    else ops.add('ZREM', keys.pendingHolds(), purchaseId)
  }
  for (const [w, r] of res.recent) {
    const ttl = Math.max(1, r.ttlMs - (now - (r.times[r.times.length - 1] ?? now)))
    ops.add('SET', keys.fraudWindow(w), JSON.stringify(r.times), 'PX', ttl)
  }
  const ttl = opts.resolutionTtlSeconds
  ops.add('SET', keys.group(group.groupId), JSON.stringify(group.resolution), 'EX', ttl)
  for (const j of jobs) ops.add('SET', keys.jobGroup(j.id), group.groupId, 'EX', ttl)
  const changed = group.resolution.changed
  if (changed.length > 0) ops.publish(keys.statsChannel(), JSON.stringify(changed))
  if (res.rows.length > 0) ops.publish(keys.feedChannel(), JSON.stringify(feedOf(res.rows)))
  // one array, never spread into the call: a large group has hundreds of thousands of
  // arguments, past what a function call can take (RangeError: Maximum call stack size)
  const args: Array<string | number> = [COMMIT, 0, lock]
  for (const m of markers) args.push(m)
  for (const k of ops.keys) args.push(k)
  args[1] = args.length - 2
  args.push(token, opts.dedupWindowSeconds, markers.length)
  for (const a of ops.args) args.push(a)
  const out = await redis.call('EVAL', args)
  return Number(out)
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

function userFields(u: UserState): Record<string, string | number> {
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
function visitorValue(v: VisitorState): string {
  const base = `${v.code} ${v.ts} ${v.flagged ? 'f' : '-'}`
  return v.windowStart === undefined ? base : `${base} ${v.windowStart} ${v.windowClicks ?? 0}`
}

function parseVisitor(v: string | null): VisitorState | null {
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

function parsePurchase(h: Record<string, string>): PurchaseState | null {
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

function purchaseFields(p: PurchaseState): Record<string, string | number> {
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
