import { AppError, type QueuedEvent } from '@referral/core'

/** Where accepted events go: resolves once they are durably queued, rejects with 503 otherwise. */
export interface EventSink {
  submit(events: readonly QueuedEvent[]): Promise<void>
}

export interface GroupCommitOptions {
  /** events per queued job; requests are never split */
  maxBatchEvents: number
  /** queue writes in flight at once */
  maxInFlight: number
}

interface Waiter<P> {
  /** the request's events as they are written (`prepare`d) */
  item: P
  /** how many events */
  size: number
  resolve(): void
  reject(e: unknown): void
}

/**
 * Group commit: the requests that arrive while a queue write is in flight (or within the
 * same turn of the event loop) are written together as one job, and each request is
 * answered when the write holding its events has succeeded. One Redis round trip and one
 * job serve many requests, and no request is answered before its events are stored.
 *
 * A request's events are `prepare`d (packed) as they are submitted, and only that is kept
 * while they wait: thousands of event objects held across a queue write would be copied by
 * every scavenge meanwhile, where one string is not looked into.
 */
export class GroupCommitter<P> implements EventSink {
  private pending: Waiter<P>[] = []
  private inFlight = 0
  private scheduled = false
  private closed = false
  private idleWaiters: Array<() => void> = []
  readonly stats = { batches: 0, events: 0, failedBatches: 0 }

  constructor(
    /** one request's events in the form they are written in */
    private readonly prepare: (events: readonly QueuedEvent[]) => P,
    /** writes the prepared items of a group (`events` in all), resolving once they are durable */
    private readonly write: (items: P[], events: number) => Promise<void>,
    private readonly opts: GroupCommitOptions,
  ) {}

  submit(events: readonly QueuedEvent[]): Promise<void> {
    if (this.closed) return Promise.reject(new AppError('unavailable', 'the service is shutting down'))
    let item: P
    try {
      item = this.prepare(events)
    } catch (e) {
      // a rejection like any other, not a throw out of submit (nothing was queued)
      return Promise.reject(e)
    }
    return new Promise<void>((resolve, reject) => {
      this.pending.push({ item, size: events.length, resolve, reject })
      this.schedule()
    })
  }

  /** Refuse new events and wait until every accepted one is written (or failed). */
  async close(): Promise<void> {
    this.closed = true
    if (this.pending.length === 0 && this.inFlight === 0) return
    await new Promise<void>((resolve) => this.idleWaiters.push(resolve))
  }

  private schedule(): void {
    if (this.scheduled) return
    this.scheduled = true
    setImmediate(() => {
      this.scheduled = false
      this.pump()
    })
  }

  private pump(): void {
    while (this.inFlight < this.opts.maxInFlight && this.pending.length > 0) {
      const group: Waiter<P>[] = []
      let n = 0
      while (this.pending.length > 0) {
        const next = this.pending[0]
        if (next === undefined || (group.length > 0 && n + next.size > this.opts.maxBatchEvents)) break
        group.push(next)
        n += next.size
        this.pending.shift()
      }
      void this.flush(group, n)
    }
    if (this.pending.length === 0 && this.inFlight === 0) {
      for (const w of this.idleWaiters.splice(0)) w()
    }
  }

  private async flush(group: Waiter<P>[], n: number): Promise<void> {
    this.inFlight++
    try {
      await this.write(
        group.map((w) => w.item),
        n,
      )
      this.stats.batches++
      this.stats.events += n
      for (const w of group) w.resolve()
    } catch (e) {
      this.stats.failedBatches++
      const err = new AppError(
        'unavailable',
        'the event queue is unavailable; nothing was accepted, retry later',
        [],
        {
          cause: e,
          headers: { 'Retry-After': '1' },
        },
      )
      for (const w of group) w.reject(err)
    } finally {
      this.inFlight--
      this.pump()
    }
  }
}
