import { publishStatsChanged } from '@referral/workers'
import type { ApiDeps } from './context.ts'

/**
 * What this API process last read of a referrer's stats, kept until the workers say they
 * changed. GET /v1/me/stats is the dashboard's most frequent call; read from Redis each
 * time, its latency is Redis's, and Redis with `appendfsync always` stalls for the length of
 * a slow fsync (8-15 ms measured while chDB writes parts on the same disk).
 *
 * - Every writer of what a stats answer is made of (counters, track, wallet, balances)
 *   publishes the users it changed on the stats channel (StatsHub calls `invalidate`).
 * - An answer reflects every change this process heard of before the request: an entry
 *   invalidated is read again at once if it was asked for lately (else dropped), and a
 *   request meanwhile waits for that read.
 * - An entry is read again once it is `maxAgeMs` old whatever the channel said: that bounds
 *   how long a change whose message was lost (or a writer outside the service) goes unseen.
 * - While the subscriber is disconnected (messages may be lost) the cache is empty and
 *   bypassed; `resume` once it is subscribed again. A read started before a change (or a
 *   suspension) does not fill the entry.
 */
export interface StatsCacheOptions {
  /** entries older than this are read again before they answer (0: no cache) */
  maxAgeMs: number
  /** most users kept; the least recently asked for go first */
  maxEntries: number
}

interface Entry<T> {
  value: T | undefined
  /** when the read that gave `value` started (ms, on the cache's clock) */
  at: number
  /** when it was last asked for (ms): an invalidated entry asked for lately is read again */
  askedAt: number
  /** bumped by each invalidation: a read started under an older one does not fill */
  gen: number
  /** the read under the current gen, if one is running */
  loading: Promise<T> | undefined
}

export class StatsCache<T> {
  private readonly entries = new Map<string, Entry<T>>()
  private epoch = 0
  private suspended = true
  /** answered from memory / after a read from Redis (for /metrics) */
  hits = 0
  misses = 0

  constructor(
    private readonly load: (userId: string) => Promise<T>,
    private readonly opts: StatsCacheOptions,
    /** a monotonic clock: a wall clock stepped back would keep entries young */
    private readonly now: () => number = () => performance.now(),
  ) {}

  get enabled(): boolean {
    return this.opts.maxAgeMs > 0 && !this.suspended
  }

  get size(): number {
    return this.entries.size
  }

  /** The user's value, as of every change heard before this call. */
  async get(userId: string): Promise<T> {
    if (!this.enabled) {
      this.misses++
      return this.load(userId)
    }
    const t = this.now()
    let e = this.entries.get(userId)
    if (e === undefined) {
      e = { value: undefined, at: 0, askedAt: t, gen: 0, loading: undefined }
      this.entries.set(userId, e)
      this.evict()
    } else {
      // least recently asked for first out: to the end
      this.entries.delete(userId)
      this.entries.set(userId, e)
      e.askedAt = t
    }
    if (e.loading === undefined && e.value !== undefined && t - e.at < this.opts.maxAgeMs) {
      this.hits++
      return e.value
    }
    this.misses++
    return e.loading ?? this.refresh(userId, e)
  }

  /** These users' values changed: the ones asked for lately are read again now. */
  invalidate(userIds: Iterable<string>): void {
    if (!this.enabled) return
    const t = this.now()
    for (const u of userIds) {
      const e = this.entries.get(u)
      if (e === undefined) continue
      e.gen++
      e.loading = undefined
      if (t - e.askedAt < this.opts.maxAgeMs) void this.refresh(u, e).catch(() => {})
      else this.entries.delete(u)
    }
  }

  /** Changes may go unheard (the subscriber is away): empty, and bypassed until `resume`. */
  suspend(): void {
    this.suspended = true
    this.epoch++
    this.entries.clear()
  }

  /** Subscribed again: every change from now on is heard. */
  resume(): void {
    this.suspended = false
  }

  private refresh(userId: string, e: Entry<T>): Promise<T> {
    const gen = e.gen
    const epoch = this.epoch
    const startedAt = this.now()
    const current = () => e.gen === gen && this.epoch === epoch && this.entries.get(userId) === e
    const p = this.load(userId).then(
      (v) => {
        if (current()) {
          e.value = v
          e.at = startedAt
          e.loading = undefined
        }
        return v
      },
      (err: unknown) => {
        // the next request reads Redis again, and fails as Redis fails
        if (current()) this.entries.delete(userId)
        throw err
      },
    )
    e.loading = p
    return p
  }

  private evict(): void {
    while (this.entries.size > this.opts.maxEntries) {
      const oldest = this.entries.keys().next()
      if (oldest.done === true) return
      this.entries.delete(oldest.value)
    }
  }
}

/**
 * A route changed these users' stats: this process's answers read them again at once (the
 * route's own caller sees its change), and every API process hears it on the channel.
 */
export async function statsChanged(
  deps: Pick<ApiDeps, 'redis' | 'keys' | 'statsCache'>,
  userIds: readonly string[],
): Promise<void> {
  deps.statsCache.invalidate(userIds)
  await publishStatsChanged(deps.redis, deps.keys, userIds)
}
