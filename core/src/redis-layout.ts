import type { Redis } from 'ioredis'
import type { Keys } from './keys.ts'

/**
 * Data of older versions is moved once, at start, before anything reads it, then the layout
 * key records the version and later starts skip the scan. Run it with every process of the
 * old version stopped.
 * - 1 -> 2: keys without hash tags (`ra:user:x`, `ra:bull:ingest:...`) take the tagged names
 *   (`{ra}:user:x`, `{ra:bull}:ingest:...`): RENAMENX keeps each key's value and TTL, waiting
 *   BullMQ jobs included. Rate-limit windows are left to expire.
 * - 2 -> 3: the taken event ids, one key each (`{ra}:ev:<type>:<id>`, its TTL the rest of the
 *   dedup window), join the set of the day they were taken (`{ra}:evd:<day>`), which the
 *   commit checks for the window's days.
 */
export const KEY_LAYOUT_VERSION = '3'

export interface LayoutResult {
  moved: number
  /** the layout was already recorded: nothing scanned */
  current: boolean
}

const DAY_S = 86_400

export function taggedName(prefix: string, key: string): string | null {
  const old = `${prefix}:`
  if (!key.startsWith(old)) return null
  const rest = key.slice(old.length)
  if (rest.startsWith('rl:')) return null
  if (rest.startsWith('bull:')) return `{${prefix}:bull}:${rest.slice('bull:'.length)}`
  return `{${prefix}}:${rest}`
}

export async function migrateKeyLayout(
  redis: Redis,
  keys: Keys,
  prefix: string,
  dedupWindowDays: number,
): Promise<LayoutResult> {
  const recorded = await redis.get(keys.layout())
  if (recorded === KEY_LAYOUT_VERSION) return { moved: 0, current: true }
  let moved = 0
  if (recorded !== '2') moved += await tagKeys(redis, prefix)
  moved += await markersToDays(redis, keys, prefix, dedupWindowDays)
  await redis.set(keys.layout(), KEY_LAYOUT_VERSION)
  return { moved, current: false }
}

async function scanAll(
  redis: Redis,
  pattern: string,
  each: (batch: string[]) => Promise<void>,
): Promise<void> {
  let cursor = '0'
  do {
    const [next, batch] = await redis.scan(cursor, 'MATCH', pattern, 'COUNT', 1000)
    cursor = next
    if (batch.length > 0) await each(batch)
  } while (cursor !== '0')
}

async function tagKeys(redis: Redis, prefix: string): Promise<number> {
  let moved = 0
  await scanAll(redis, `${prefix}:*`, async (batch) => {
    const renames = batch.flatMap((k) => {
      const to = taggedName(prefix, k)
      return to === null ? [] : [[k, to] as const]
    })
    if (renames.length === 0) return
    const p = redis.pipeline()
    for (const [from, to] of renames) p.renamenx(from, to)
    const results = (await p.exec()) ?? []
    results.forEach(([err, done], i) => {
      const [from, to] = renames[i] ?? ['', '']
      // another process starting at the same time moved it first
      if (err !== null && /no such key/i.test(err.message)) return
      if (err !== null) throw err
      if (done === 0)
        throw new Error(`cannot move ${from}: ${to} exists already (was an old version still running?)`)
      moved++
    })
  })
  return moved
}

/** Each id's key, by its TTL, into the set of the day it was taken (what apply.ts checks). */
async function markersToDays(redis: Redis, keys: Keys, prefix: string, windowDays: number): Promise<number> {
  const old = `{${prefix}}:ev:`
  let moved = 0
  const now = Math.floor(Date.now() / 1000)
  await scanAll(redis, `${old}*`, async (batch) => {
    const ttls = await Promise.all(batch.map((k) => redis.ttl(k)))
    const p = redis.pipeline()
    batch.forEach((k, i) => {
      const ttl = ttls[i] ?? -2
      if (ttl === -2) return // expired meanwhile
      // taken at (expiry - window); a key without a TTL counts as taken now
      const takenAt = ttl < 0 ? now : now + ttl - windowDays * DAY_S
      const day = Math.floor(takenAt / DAY_S)
      const set = keys.takenOn(day)
      p.sadd(set, k.slice(old.length))
      p.expireat(set, (day + 1 + windowDays) * DAY_S, 'GT')
      p.expireat(set, (day + 1 + windowDays) * DAY_S, 'NX')
      p.del(k)
      moved++
    })
    const results = (await p.exec()) ?? []
    for (const [err] of results) if (err !== null) throw err
  })
  return moved
}
