import { createHash, randomUUID } from 'node:crypto'
import { type EventRow, eventsTsv, tsvOf, writeLedger } from '@referral/clickhouse'
import { COUNTER_FIELDS, type Keys, newId, type QueuedEvent, type WebhookEvent } from '@referral/core'
import type { Redis } from 'ioredis'
import { outboxEntry } from './outbox.ts'
import type { Resolution, ResolveOptions } from './resolution.ts'
import { likelyNeeds, resolveBatch } from './resolve.ts'
import { type CreditExpiry, emptySnapshot, markerId } from './state.ts'
import {
  load,
  loadTaken,
  lockAndLoad,
  purchaseFields,
  takenDays,
  userFields,
  visitorValue,
} from './state-store.ts'
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

// KEYS[1] the apply lock, KEYS[2] the outbox's row count, KEYS[3..b+2] the days whose ids
// are taken (today's first, then the window's), KEYS[b+3..] keys the ops write. ARGV[1] lock
// token, ARGV[2] when today's set expires (s), ARGV[3] b, ARGV[4] the ids to take (type:id),
// one a line, then the ops: name, key index, argc, args... The ids go as one argument: ten
// thousand arguments cost more to send than the script takes to run. Returns {1, the
// outbox's rows now} when applied (the lock is released with the writes: no round trip of
// its own), -1 when the lock is no longer ours, -2 when an id was taken already (nothing is
// written). Sent by its SHA1 (EVALSHA), the body only when Redis does not have it
// (NOSCRIPT: after a restart).
const COMMIT = `
if redis.call('GET', KEYS[1]) ~= ARGV[1] then return -1 end
local ids = {}
for id in string.gmatch(ARGV[4], '[^\\n]+') do ids[#ids + 1] = id end
local n, b, chunk = #ids, tonumber(ARGV[3]), 4000
for k = 3, b + 2 do
  if redis.call('EXISTS', KEYS[k]) == 1 then
    for i = 1, n, chunk do
      for _, hit in ipairs(redis.call('SMISMEMBER', KEYS[k], unpack(ids, i, math.min(n, i + chunk - 1)))) do
        if hit == 1 then return -2 end
      end
    end
  end
end
for i = 1, n, chunk do redis.call('SADD', KEYS[3], unpack(ids, i, math.min(n, i + chunk - 1))) end
redis.call('EXPIREAT', KEYS[3], ARGV[2])
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
redis.call('DEL', KEYS[1])
return { 1, tonumber(redis.call('GET', KEYS[2]) or '0') }
`
const COMMIT_SHA = createHash('sha1').update(COMMIT).digest('hex')

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
  /** the rows the outbox held once this group was in it (every applier's) */
  outboxRows?: number
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
  const ttlMs = opts.lockTtlMs ?? 15_000
  const unique = uniqueEvents(jobs.flatMap((j) => j.events))
  // what the rules surely read: read with the lock taken, in the same round trip
  const likely = likelyNeeds(unique.events)
  // the commit releases the lock with its writes; every other end releases it here (a
  // release by token: nothing happens when the lock was never taken, or has lapsed)
  let released = false
  try {
    let snapshot = emptySnapshot()
    if (!(await lockAndLoad(redis, keys, { key: lock, token, ttlMs }, likely, snapshot))) {
      await acquire(redis, lock, token, ttlMs)
      snapshot = emptySnapshot()
      await load(redis, keys, likely, snapshot)
    }
    // Optimistic first: the ids are taken to be new (what the commit checks anyway), so the
    // common batch reads no markers. An id found taken at commit: read them all, and again.
    let optimistic = true
    for (let round = 0; round < MAX_ROUNDS; round++) {
      if (round > 0) {
        snapshot = emptySnapshot()
        if (!optimistic) await loadTaken(redis, keys, unique.markers, snapshot, opts)
        await load(redis, keys, likely, snapshot)
      }
      // what the rules find they need besides comes next
      let result = resolveBatch(unique.events, snapshot, opts, unique.markers)
      while (result.needs !== null) {
        await load(redis, keys, result.needs, snapshot)
        result = resolveBatch(unique.events, snapshot, opts, unique.markers)
      }
      const res = result.resolution
      if (res.taken.length === 0) return null
      const group: AppliedGroup = { groupId: newId(), resolution: res, record: recordOf(res, opts) }
      const { outcome, outboxRows } = await commit(redis, keys, lock, token, group, opts)
      if (outcome === 1) {
        released = true
        group.outboxRows = outboxRows
        return group
      }
      if (outcome === -1) throw new ApplyConflictError('lost the apply lock before committing')
      // -2: an event id was taken (sent again, or taken since we read): read the markers
      optimistic = false
    }
    throw new ApplyConflictError(`event ids kept being taken under this group for ${MAX_ROUNDS} rounds`)
  } finally {
    if (!released) await redis.eval(RELEASE, 1, lock, token)
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
): Promise<{ outcome: number; outboxRows: number }> {
  const res = group.resolution
  const now = (opts.now ?? Date.now)()
  const { days, expireAt } = takenDays(now, opts.dedupWindowSeconds)
  const ops = new OpList(3 + days.length)
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
  const args: Array<string | number | Buffer> = [COMMIT_SHA, 2 + days.length + ops.keys.length, lock]
  args.push(keys.outboxRows())
  for (const d of days) args.push(keys.takenOn(d))
  for (const k of ops.keys) args.push(k)
  args.push(token, expireAt, days.length, res.taken.join('\n'))
  for (const a of ops.args) args.push(a)
  let out: unknown
  try {
    out = await redis.call('EVALSHA', args)
  } catch (e) {
    if (!(e instanceof Error) || !e.message.startsWith('NOSCRIPT')) throw e
    args[0] = COMMIT
    out = await redis.call('EVAL', args)
  }
  if (Array.isArray(out)) return { outcome: Number(out[0]), outboxRows: Number(out[1]) }
  return { outcome: Number(out), outboxRows: Number.NaN }
}
