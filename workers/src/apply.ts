import type { EventRow, LedgerRow } from '@referral/clickhouse'
import { COUNTER_FIELDS, type Keys, type QueuedEvent, type Track } from '@referral/core'
import type { Redis } from 'ioredis'
import { type Resolution, type ResolveOptions, resolveBatch } from './resolve.ts'
import {
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
 * Optimistic concurrency: every key read is WATCHed, the rules run as a pure function
 * (resolve.ts), and one MULTI/EXEC writes the markers, the state, the counter increments
 * and the job's resolution together. If another job (or a second run of this one after a
 * stall) touched any of those keys, EXEC aborts and we start over. A retried job finds its
 * stored resolution and writes the very same rows, so ClickHouse's insert dedup token works.
 */

export interface StoredResolution {
  rows: EventRow[]
  ledger: LedgerRow[]
  /** referrers whose counters this job moved */
  changed: string[]
}

export interface ApplyOptions extends ResolveOptions {
  dedupWindowSeconds: number
  /** how long a resolution is kept if its job never completes */
  resolutionTtlSeconds: number
  now?: () => number
}

const MAX_OCC_ROUNDS = 20

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

export async function applyJob(
  redis: Redis,
  keys: Keys,
  jobId: string,
  events: readonly QueuedEvent[],
  opts: ApplyOptions,
): Promise<StoredResolution> {
  const unique = uniqueEvents(events)
  const resKey = keys.jobResolution(jobId)
  for (let round = 0; round < MAX_OCC_ROUNDS; round++) {
    await redis.watch(resKey)
    try {
      const stored = await redis.get(resKey)
      if (stored !== null) {
        await redis.unwatch()
        return JSON.parse(stored) as StoredResolution
      }
      const snapshot = emptySnapshot()
      let result = resolveBatch(unique, snapshot, opts)
      while (result.needs !== null) {
        await load(redis, keys, result.needs, snapshot)
        result = resolveBatch(unique, snapshot, opts)
      }
      const res = result.resolution
      const storedRes: StoredResolution = {
        rows: res.rows,
        ledger: res.ledger,
        changed: [...res.counters.keys()],
      }
      const committed = await commit(redis, keys, resKey, res, storedRes, opts)
      if (committed) return storedRes
    } catch (e) {
      await redis.unwatch()
      throw e
    }
  }
  throw new ApplyConflictError(`job ${jobId}: state kept changing under it for ${MAX_OCC_ROUNDS} rounds`)
}

async function load(redis: Redis, keys: Keys, needs: Needs, snap: StateSnapshot): Promise<void> {
  const toWatch: string[] = []
  const p = redis.pipeline()
  const readers: Array<(v: unknown) => void> = []
  const markerIds = [...needs.markers]
  if (markerIds.length > 0) {
    const ks = markerIds.map((m) => {
      const i = m.indexOf(':')
      return keys.marker(m.slice(0, i), m.slice(i + 1))
    })
    toWatch.push(...ks)
    p.mget(ks)
    readers.push((v) => {
      const vals = v as Array<string | null>
      markerIds.forEach((m, i) => {
        snap.markers.set(m, vals[i] !== null && vals[i] !== undefined)
      })
    })
  }
  for (const code of needs.codes) {
    toWatch.push(keys.code(code))
    p.get(keys.code(code))
    readers.push((v) => snap.codes.set(code, (v as string | null) ?? null))
  }
  for (const id of needs.users) {
    toWatch.push(keys.user(id))
    p.hgetall(keys.user(id))
    readers.push((v) => snap.users.set(id, parseUser(v as Record<string, string>)))
  }
  for (const id of needs.visitors) {
    toWatch.push(keys.visitor(id))
    p.get(keys.visitor(id))
    readers.push((v) => snap.visitors.set(id, parseVisitor(v as string | null)))
  }
  for (const id of needs.purchases) {
    toWatch.push(keys.purchase(id))
    p.hgetall(keys.purchase(id))
    readers.push((v) => snap.purchases.set(id, parsePurchase(v as Record<string, string>)))
  }
  for (const id of needs.held) {
    toWatch.push(keys.heldRefunds(id))
    p.get(keys.heldRefunds(id))
    readers.push((v) => snap.held.set(id, v === null ? [] : (JSON.parse(v as string) as HeldRefund[])))
  }
  if (toWatch.length > 0) await redis.watch(toWatch)
  const results = await p.exec()
  if (results === null) throw new Error('pipeline returned no results')
  results.forEach(([err, value], i) => {
    if (err) throw err
    readers[i]?.(value)
  })
}

async function commit(
  redis: Redis,
  keys: Keys,
  resKey: string,
  res: Resolution,
  stored: StoredResolution,
  opts: ApplyOptions,
): Promise<boolean> {
  const now = (opts.now ?? Date.now)()
  const m = redis.multi()
  for (const taken of res.taken) {
    const i = taken.indexOf(':')
    m.set(keys.marker(taken.slice(0, i), taken.slice(i + 1)), '1', 'EX', opts.dedupWindowSeconds)
  }
  for (const [id, u] of res.users) m.hset(keys.user(id), userFields(u))
  for (const [id, v] of res.visitors) {
    const ttl = Math.ceil((v.ts + opts.attributionWindowMs - now) / 1000)
    if (ttl > 0) m.set(keys.visitor(id), `${v.code} ${v.ts}`, 'EX', ttl)
  }
  for (const [id, p] of res.purchases) m.hset(keys.purchase(id), purchaseFields(p))
  for (const [id, list] of res.held) {
    if (list.length === 0) m.del(keys.heldRefunds(id))
    else m.set(keys.heldRefunds(id), JSON.stringify(list))
  }
  for (const [userId, c] of res.counters) {
    for (const f of COUNTER_FIELDS) {
      const by = c[f]
      if (by !== undefined && by !== 0) m.hincrby(keys.stats(userId), f, by)
    }
    m.hset(keys.stats(userId), 'updated_at', now)
  }
  for (const f of COUNTER_FIELDS) {
    const by = res.global[f]
    if (by !== undefined && by !== 0) m.hincrby(keys.globalStats(), f, by)
  }
  if (res.counters.size > 0) m.hset(keys.globalStats(), 'updated_at', now)
  m.set(resKey, JSON.stringify(stored), 'EX', opts.resolutionTtlSeconds)
  if (stored.changed.length > 0) m.publish(keys.statsChannel(), JSON.stringify(stored.changed))
  const out = await m.exec()
  if (out === null) return false
  for (const [err] of out) if (err) throw err
  return true
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
  return u
}

function userFields(u: UserState): Record<string, string | number> {
  const f: Record<string, string | number> = {}
  if (u.referrer !== undefined) f.referrer = u.referrer
  if (u.signedUpAt !== undefined) f.signed_up_at = u.signedUpAt
  if (u.referredAt !== undefined) f.referred_at = u.referredAt
  if (u.convertedAt !== undefined) f.converted_at = u.convertedAt
  return f
}

function parseVisitor(v: string | null): VisitorState | null {
  if (v === null) return null
  const [code, ts] = v.split(' ')
  return code === undefined || ts === undefined ? null : { code, ts: Number(ts) }
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
  }
}
