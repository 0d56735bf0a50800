import type { Redis } from 'ioredis'
import type { Keys } from './keys.ts'

/**
 * Data written before the keys carried hash tags (`ra:user:x`, `ra:bull:ingest:...`) is moved
 * to the tagged names (`{ra}:user:x`, `{ra:bull}:ingest:...`) once, at start, before anything
 * reads it: RENAMENX keeps each key's value and TTL, waiting BullMQ jobs included. Then the
 * layout key records the version and later starts skip the scan. Rate-limit windows are left
 * to expire. Run it with every process of the old version stopped.
 */
export const KEY_LAYOUT_VERSION = '2'

export interface LayoutResult {
  moved: number
  /** the layout was already recorded: nothing scanned */
  current: boolean
}

export function taggedName(prefix: string, key: string): string | null {
  const old = `${prefix}:`
  if (!key.startsWith(old)) return null
  const rest = key.slice(old.length)
  if (rest.startsWith('rl:')) return null
  if (rest.startsWith('bull:')) return `{${prefix}:bull}:${rest.slice('bull:'.length)}`
  return `{${prefix}}:${rest}`
}

export async function migrateKeyLayout(redis: Redis, keys: Keys, prefix: string): Promise<LayoutResult> {
  if ((await redis.get(keys.layout())) === KEY_LAYOUT_VERSION) return { moved: 0, current: true }
  let moved = 0
  let cursor = '0'
  do {
    const [next, batch] = await redis.scan(cursor, 'MATCH', `${prefix}:*`, 'COUNT', 1000)
    cursor = next
    const renames = batch.flatMap((k) => {
      const to = taggedName(prefix, k)
      return to === null ? [] : [[k, to] as const]
    })
    if (renames.length === 0) continue
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
  } while (cursor !== '0')
  await redis.set(keys.layout(), KEY_LAYOUT_VERSION)
  return { moved, current: false }
}
