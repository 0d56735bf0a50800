import { type ClickHouse, EARNING_KINDS_SQL, queryRows } from '@referral/clickhouse'
import { COUNTER_FIELDS, type Counters, type Keys } from '@referral/core'
import type { Redis } from 'ioredis'
import { publishStatsChanged } from './notify.ts'

/**
 * Recomputes the live counters from ClickHouse, the system of record, and compares them
 * with Redis. Counters move before rows land (applied, then stored from the outbox), so run
 * it on a drained queue and an empty outbox; `fix` overwrites Redis with what ClickHouse says.
 */

export interface Drift {
  /** a referrer's user id, or '' for the global counters */
  userId: string
  field: keyof Counters
  redis: number
  clickhouse: number
}

export interface ReconcileReport {
  referrers: number
  drift: Drift[]
  fixed: boolean
}

/** no user id is empty, so '' names the global counters */
const GLOBAL = ''

export async function countersFromClickHouse(ch: ClickHouse): Promise<Map<string, Counters>> {
  const events = await queryRows<{ id: string; clicks: string; signups: string; conversions: string }>(
    ch,
    `SELECT referrer_id AS id,
            countIf(type = 'click' AND counted = 1) AS clicks,
            countIf(type = 'signup' AND counted = 1) AS signups,
            countIf(type = 'purchase' AND first_purchase = 1) AS conversions
     FROM events WHERE referrer_id != '' GROUP BY referrer_id`,
  )
  const earnings = await queryRows<{ id: string; earnings: string }>(
    ch,
    `SELECT user_id AS id, sum(amount_cents) AS earnings
     FROM ledger WHERE kind IN ${EARNING_KINDS_SQL} GROUP BY user_id`,
  )
  const out = new Map<string, Counters>()
  const get = (id: string) => {
    let c = out.get(id)
    if (c === undefined) {
      c = { clicks: 0, signups: 0, conversions: 0, earnings_cents: 0 }
      out.set(id, c)
    }
    return c
  }
  for (const r of events) {
    Object.assign(get(r.id), {
      clicks: Number(r.clicks),
      signups: Number(r.signups),
      conversions: Number(r.conversions),
    })
  }
  for (const r of earnings) get(r.id).earnings_cents = Number(r.earnings)
  const total = get(GLOBAL)
  for (const [id, c] of out) {
    if (id === GLOBAL) continue
    for (const f of COUNTER_FIELDS) total[f] += c[f]
  }
  return out
}

export async function readCounters(redis: Redis, key: string): Promise<Counters> {
  return countersOf(await redis.hgetall(key))
}

/** The counters of a stats hash (absent fields are 0). */
export function countersOf(h: Record<string, string>): Counters {
  return {
    clicks: Number(h.clicks ?? 0),
    signups: Number(h.signups ?? 0),
    conversions: Number(h.conversions ?? 0),
    earnings_cents: Number(h.earnings_cents ?? 0),
  }
}

async function scanStatsKeys(redis: Redis, keys: Keys): Promise<string[]> {
  const prefix = keys.stats('')
  const ids: string[] = []
  let cursor = '0'
  do {
    const [next, batch] = await redis.scan(cursor, 'MATCH', `${prefix}*`, 'COUNT', 1000)
    cursor = next
    for (const k of batch) ids.push(k.slice(prefix.length))
  } while (cursor !== '0')
  return ids
}

export async function reconcile(
  ch: ClickHouse,
  redis: Redis,
  keys: Keys,
  opts: { fix: boolean },
): Promise<ReconcileReport> {
  const truth = await countersFromClickHouse(ch)
  const ids = new Set([...truth.keys(), ...(await scanStatsKeys(redis, keys))])
  const drift: Drift[] = []
  const fixed: string[] = []
  for (const id of ids) {
    const key = id === GLOBAL ? keys.globalStats() : keys.stats(id)
    const have = await readCounters(redis, key)
    const want = truth.get(id) ?? { clicks: 0, signups: 0, conversions: 0, earnings_cents: 0 }
    const fields = COUNTER_FIELDS.filter((f) => have[f] !== want[f])
    for (const f of fields) drift.push({ userId: id, field: f, redis: have[f], clickhouse: want[f] })
    if (opts.fix && fields.length > 0) {
      await redis.hset(key, want)
      if (id !== GLOBAL) fixed.push(id)
    }
  }
  // the API processes' stats caches read them again
  await publishStatsChanged(redis, keys, fixed)
  return { referrers: ids.size - (ids.has(GLOBAL) ? 1 : 0), drift, fixed: opts.fix && drift.length > 0 }
}
