import type { Keys, Logger } from '@referral/core'
import type { SSEStreamingApi } from 'hono/streaming'
import type { Redis } from 'ioredis'

type Listener = () => void

/** What the hub tells of the stats it hears about (StatsCache). */
export interface StatsChanges {
  invalidate(userIds: readonly string[]): void
  /** changes may go unheard from now on */
  suspend(): void
  /** subscribed: every change from now on is heard */
  resume(): void
}

const HEARTBEAT_MS = 15_000

/**
 * Fan-out of "these referrers' stats changed" to the SSE clients of this process. Workers
 * publish on one Redis channel; each API process subscribes once and wakes the streams of
 * the users named, so it works with any number of API processes.
 */
export class StatsHub {
  private readonly listeners = new Map<string, Set<Listener>>()
  private readonly closers = new Set<Listener>()
  private readonly feedListeners = new Set<(message: string) => void>()
  private closed = false

  constructor(
    private readonly subscriber: Redis,
    private readonly keys: Keys,
    private readonly log: Logger,
    private readonly changes: StatsChanges | null = null,
  ) {}

  async start(): Promise<void> {
    this.subscriber.on('message', (channel: string, message: string) => {
      if (channel === this.keys.feedChannel()) {
        for (const l of this.feedListeners) l(message)
        return
      }
      if (channel !== this.keys.statsChannel()) return
      let users: unknown
      try {
        users = JSON.parse(message)
      } catch (e) {
        this.log.warn({ err: (e as Error).message }, 'stats channel: not JSON')
        return
      }
      if (!Array.isArray(users)) return
      const ids = users.filter((u): u is string => typeof u === 'string')
      // before the streams wake, so that they read the new value
      this.changes?.invalidate(ids)
      for (const u of ids) for (const l of this.listeners.get(u) ?? []) l()
    })
    // while the connection is down, messages are lost: the cache is emptied and bypassed
    // until the channels are subscribed again (ioredis resubscribes after 'ready'; the
    // subscribe below answers once Redis has them, whichever is first)
    let started = false
    this.subscriber.on('close', () => this.changes?.suspend())
    this.subscriber.on('ready', () => {
      if (!started || this.closed) return
      this.subscribe().then(
        () => {
          if (this.subscriber.status === 'ready' && !this.closed) this.changes?.resume()
        },
        (e: Error) => this.log.warn({ err: e.message }, 'stats channel: could not subscribe again'),
      )
    })
    await this.subscribe()
    started = true
    this.changes?.resume()
  }

  private async subscribe(): Promise<void> {
    await this.subscriber.subscribe(this.keys.statsChannel(), this.keys.feedChannel())
  }

  /** Calls `onChange` whenever the user's stats may have changed; returns the unsubscribe. */
  watch(userId: string, onChange: Listener): () => void {
    let set = this.listeners.get(userId)
    if (set === undefined) {
      set = new Set()
      this.listeners.set(userId, set)
    }
    set.add(onChange)
    return () => {
      set.delete(onChange)
      if (set.size === 0) this.listeners.delete(userId)
    }
  }

  /** Calls `onFeed` with each batch of newest events (a JSON array); returns the unsubscribe. */
  watchFeed(onFeed: (message: string) => void): () => void {
    this.feedListeners.add(onFeed)
    return () => this.feedListeners.delete(onFeed)
  }

  /**
   * Holds an SSE stream open: runs `start`, sends a heartbeat every 15 s, and returns when
   * the client goes away or the hub closes (shutdown), after running `stop`.
   */
  async hold(stream: SSEStreamingApi, start: () => Promise<void>, stop: () => void): Promise<void> {
    const heartbeat = setInterval(() => void stream.writeSSE({ event: 'ping', data: '' }), HEARTBEAT_MS)
    // a stream that ended is no longer one to end at shutdown: its closer goes with it
    let forget: () => void = () => {}
    try {
      await start()
      await new Promise<void>((resolve) => {
        stream.onAbort(resolve)
        forget = this.onClose(resolve)
      })
    } finally {
      forget()
      clearInterval(heartbeat)
      stop()
    }
  }

  /** streams held open, each to be ended at shutdown */
  get held(): number {
    return this.closers.size
  }

  /** Runs `f` when the hub closes (shutdown), at once if it is closed already. */
  onClose(f: Listener): () => void {
    if (this.closed) f()
    else this.closers.add(f)
    return () => this.closers.delete(f)
  }

  get clients(): number {
    let n = this.feedListeners.size
    for (const s of this.listeners.values()) n += s.size
    return n
  }

  async close(): Promise<void> {
    this.closed = true
    this.changes?.suspend()
    for (const f of this.closers) f()
    this.closers.clear()
    this.subscriber.disconnect()
  }
}
