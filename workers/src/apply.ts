import { randomUUID } from 'node:crypto'
import { type EventRow, eventsTsv, tsvOf, writeLedger } from '@referral/clickhouse'
import {
  COUNTER_FIELDS,
  type Keys,
  newId,
  type QueuedEvent,
  type Track,
  type WebhookEvent,
} from '@referral/core'
import type { Redis } from 'ioredis'
import type { Resolution, ResolveOptions } from './resolution.ts'
import { likelyNeeds, resolveBatch } from './resolve.ts'
import {
  type CreditExpiry,
  emptySnapshot,
  type HeldRefund,
  markerId,
  type Needs,
  type PurchaseState,
  type StateSnapshot,
  type UserState,
  type VisitorState,
} from './state.ts'
import { eventsOfGroup } from './webhooks.ts'

/**
 * Applies a group of jobs' events to the program state in Redis exactly once, and hands
 * their rows to the outbox, from which they are inserted into ClickHouse (outbox.ts).
 *
 * The applier holds a fencing lock (one applier at a time, whatever the queue does), reads
 * the state it needs, runs the rules as a pure function (resolve.ts), and commits with one
 * Lua script that checks it still holds the lock and takes every event id (none may have
 * been taken meanwhile), then writes the state, the counter increments and the group's
 * record, and appends the group to the outbox, together. A job run again (its worker died
 * after the commit) finds every id taken and changes nothing: its rows are in the outbox.
 */

/** What a group keeps in Redis until its rows are in ClickHouse (a hash: events, ledger, meta JSON). */
export interface StoredGroup {
  /** events rows, TabSeparated in the columns `eventColumns` names (bits over EVENT_COLUMNS) */
  events: Buffer
  eventColumns: number
  /** ledger rows, TabSeparated in LEDGER_COLUMNS order */
  ledger: Buffer
  rows: number
  /** credits granted with an expiry, for the expiry jobs */
  expiries: CreditExpiry[]
  /** outgoing webhook events (none when no endpoint is configured) */
  webhooks: WebhookEvent[]
  /** users whose stats the group moved: told again once its rows are in ClickHouse */
  changed: string[]
}

export interface ApplyOptions extends ResolveOptions {
  dedupWindowSeconds: number
  /** how long the apply lock holds without being released (ms) */
  lockTtlMs?: number
  /** build the group's outgoing webhook events (when endpoints are configured) */
  webhooks?: boolean
  now?: () => number
}

const MAX_ROUNDS = 20

export class ApplyConflictError extends Error {}

/** The first occurrence of each (type, id), in the order received, and their marker ids. */
export function uniqueEvents(events: readonly QueuedEvent[]): { events: QueuedEvent[]; markers: string[] } {
  const seen = new Set<string>()
  const out: QueuedEvent[] = []
  const markers: string[] = []
  for (const e of events) {
    const k = markerId(e.type, e.id)
    if (seen.has(k)) continue
    seen.add(k)
    out.push(e)
    markers.push(k)
  }
  return { events: out, markers }
}

// KEYS[1] the apply lock, KEYS[2..b+1] the days whose ids are taken (today's first, then the
// window's), KEYS[b+2..] keys the ops write. ARGV[1] lock token, ARGV[2] when today's set
// expires (s), ARGV[3] b, ARGV[4] the ids to take (type:id), one a line, then the ops: name,
// key index, argc, args... The ids go as one argument: ten thousand arguments cost more to
// send than the script takes to run. Returns 1 when applied, -1 when the lock is no longer
// ours, -2 when an id was taken already (nothing is written).
const COMMIT = `
if redis.call('GET', KEYS[1]) ~= ARGV[1] then return -1 end
local ids = {}
for id in string.gmatch(ARGV[4], '[^\\n]+') do ids[#ids + 1] = id end
local n, b, chunk = #ids, tonumber(ARGV[3]), 4000
for k = 2, b + 1 do
  if redis.call('EXISTS', KEYS[k]) == 1 then
    for i = 1, n, chunk do
      for _, hit in ipairs(redis.call('SMISMEMBER', KEYS[k], unpack(ids, i, math.min(n, i + chunk - 1)))) do
        if hit == 1 then return -2 end
      end
    end
  end
end
for i = 1, n, chunk do redis.call('SADD', KEYS[2], unpack(ids, i, math.min(n, i + chunk - 1))) end
redis.call('EXPIREAT', KEYS[2], ARGV[2])
local allowed = { SET = true, HSET = true, HINCRBY = true, DEL = true, ZADD = true, ZREM = true,
  RPUSH = true, INCRBY = true, PUBLISH = true }
local i = 5
while i <= #ARGV do
  local op, key, argc = ARGV[i], KEYS[tonumber(ARGV[i + 1])], tonumber(ARGV[i + 2])
  if not allowed[op] then return redis.error_reply('op not allowed: ' .. op) end
  if op == 'PUBLISH' then key = ARGV[i + 1] end
  redis.call(op, key, unpack(ARGV, i + 3, i + 2 + argc))
  i = i + 3 + argc
end
return 1
`

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

// KEYS[1] lock, ARGV[1] token: delete the lock only if it is still ours.
const RELEASE = `
if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('DEL', KEYS[1]) end
return 0
`

export interface JobInput {
  id: string
  events: readonly QueuedEvent[]
}

/** A group of jobs applied together: what it resolved, and the record the outbox keeps. */
export interface AppliedGroup {
  groupId: string
  resolution: Resolution
  record: StoredGroup
}

/**
 * Applies a group of jobs (in queue order) as one batch and puts its rows in the outbox.
 * Returns null when the jobs changed nothing (every event id was taken before: a job run
 * again, or events sent again).
 */
export async function applyJobs(
  redis: Redis,
  keys: Keys,
  jobs: readonly JobInput[],
  opts: ApplyOptions,
): Promise<AppliedGroup | null> {
  const lock = keys.applyLock()
  const token = randomUUID()
  await acquire(redis, lock, token, opts.lockTtlMs ?? 15_000)
  try {
    const unique = uniqueEvents(jobs.flatMap((j) => j.events))
    // Optimistic first: the ids are taken to be new (what the commit checks anyway), so the
    // common batch reads no markers. An id found taken at commit: read them all, and again.
    let optimistic = true
    for (let round = 0; round < MAX_ROUNDS; round++) {
      const snapshot = emptySnapshot()
      if (!optimistic) await loadTaken(redis, keys, unique.markers, snapshot, opts)
      // what the rules surely read, at once; what they find they need besides comes next
      await load(redis, keys, likelyNeeds(unique.events), snapshot)
      let result = resolveBatch(unique.events, snapshot, opts, unique.markers)
      while (result.needs !== null) {
        await load(redis, keys, result.needs, snapshot)
        result = resolveBatch(unique.events, snapshot, opts, unique.markers)
      }
      const res = result.resolution
      if (res.taken.length === 0) return null
      const group: AppliedGroup = { groupId: newId(), resolution: res, record: recordOf(res, opts) }
      const outcome = await commit(redis, keys, lock, token, group, opts)
      if (outcome === 1) return group
      if (outcome === -1) throw new ApplyConflictError('lost the apply lock before committing')
      // -2: an event id was taken (sent again, or taken since we read): read the markers
      optimistic = false
    }
    throw new ApplyConflictError(`event ids kept being taken under this group for ${MAX_ROUNDS} rounds`)
  } finally {
    await redis.eval(RELEASE, 1, lock, token)
  }
}

function recordOf(res: Resolution, opts: ApplyOptions): StoredGroup {
  const events = eventsTsv(res.rows)
  return {
    events: events.body,
    eventColumns: events.columns,
    ledger: tsvOf(res.ledger, writeLedger),
    rows: res.rows.length + res.ledger.length,
    expiries: res.expiries,
    webhooks: opts.webhooks === true ? eventsOfGroup(res) : [],
    changed: changedUsers(res),
  }
}

/** Users whose stats (counters or balances) a resolution moved. */
export function changedUsers(res: Resolution): string[] {
  return [
    ...new Set([...res.counters.keys(), ...res.credits.keys(), ...res.cash.keys(), ...res.onHold.keys()]),
  ]
}

async function acquire(redis: Redis, lock: string, token: string, ttlMs: number): Promise<void> {
  const deadline = Date.now() + ttlMs * 2
  for (;;) {
    if ((await redis.set(lock, token, 'PX', ttlMs, 'NX')) === 'OK') return
    if (Date.now() > deadline) throw new ApplyConflictError('the apply lock is held by another applier')
    await new Promise((r) => setTimeout(r, 20))
  }
}

/** Reads what `needs` names and the snapshot lacks: one pipeline, one MGET per string kind. */
async function load(redis: Redis, keys: Keys, needs: Needs, snap: StateSnapshot): Promise<void> {
  const p = redis.pipeline()
  const readers: Array<(v: unknown) => void> = []
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
  if (readers.length === 0) return
  const results = await p.exec()
  if (results === null) throw new Error('pipeline returned no results')
  results.forEach(([err, value], i) => {
    if (err) throw err
    readers[i]?.(value)
  })
}

/** An outbox entry: "<group id> <rows> <applied at, epoch ms>". */
export function outboxEntry(groupId: string, rows: number, at: number): string {
  return `${groupId} ${rows} ${at}`
}

export function parseOutboxEntry(entry: string): { groupId: string; rows: number; at: number } {
  const [groupId = '', rows = '0', at = '0'] = entry.split(' ')
  return { groupId, rows: Number(rows), at: Number(at) }
}

/** Which of these ids are taken: each in the sets of the window's days. */
async function loadTaken(
  redis: Redis,
  keys: Keys,
  ids: readonly string[],
  snap: StateSnapshot,
  opts: ApplyOptions,
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
  readonly args: Array<string | number | Buffer> = []
  private readonly index = new Map<string, number>()
  constructor(private readonly firstIndex: number) {}

  add(
    op: 'SET' | 'HSET' | 'HINCRBY' | 'DEL' | 'ZADD' | 'ZREM' | 'RPUSH' | 'INCRBY',
    key: string,
    ...args: Array<string | number | Buffer>
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
  group: AppliedGroup,
  opts: ApplyOptions,
): Promise<number> {
  const res = group.resolution
  const now = (opts.now ?? Date.now)()
  const { days, expireAt } = takenDays(now, opts.dedupWindowSeconds)
  const ops = new OpList(2 + days.length)
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
  const { rows } = group.record
  if (rows > 0 || group.record.expiries.length > 0 || group.record.webhooks.length > 0) {
    // kept until the rows are in ClickHouse: no TTL, whatever the outage
    const { events, ledger, ...meta } = group.record
    ops.add(
      'HSET',
      keys.group(group.groupId),
      'events',
      events,
      'ledger',
      ledger,
      'meta',
      JSON.stringify(meta),
    )
    ops.add('RPUSH', keys.outbox(), outboxEntry(group.groupId, rows, now))
    ops.add('INCRBY', keys.outboxRows(), rows)
  }
  const { changed } = group.record
  if (changed.length > 0) ops.publish(keys.statsChannel(), JSON.stringify(changed))
  if (res.rows.length > 0) ops.publish(keys.feedChannel(), JSON.stringify(feedOf(res.rows)))
  // one array, never spread into the call: a large group has tens of thousands of
  // arguments, past what a function call can take (RangeError: Maximum call stack size)
  const args: Array<string | number | Buffer> = [COMMIT, 1 + days.length + ops.keys.length, lock]
  for (const d of days) args.push(keys.takenOn(d))
  for (const k of ops.keys) args.push(k)
  args.push(token, expireAt, days.length, res.taken.join('\n'))
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
