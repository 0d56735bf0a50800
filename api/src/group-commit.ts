import { AppError, type QueuedEvent } from '@referral/core'

/** Where accepted events go: resolves once they are durably queued, rejects with 503 otherwise. */
export interface EventSink {
  submit(events: QueuedEvent[]): Promise<void>
}

export interface GroupCommitOptions {
  /** events per queued job; requests are never split */
  maxBatchEvents: number
  /** queue writes in flight at once */
  maxInFlight: number
}

interface Waiter {
  events: QueuedEvent[]
  resolve(): void
  reject(e: unknown): void
}

/**
 * Group commit: the requests that arrive while a queue write is in flight (or within the
 * same turn of the event loop) are written together as one job, and each request is
 * answered when the write holding its events has succeeded. One Redis round trip and one
 * job serve many requests, and no request is answered before its events are stored.
 */
export class GroupCommitter implements EventSink {
  private pending: Waiter[] = []
  private inFlight = 0
  private scheduled = false
  private closed = false
  private idleWaiters: Array<() => void> = []
  readonly stats = { batches: 0, events: 0, failedBatches: 0 }

  constructor(
    private readonly write: (events: QueuedEvent[]) => Promise<void>,
    private readonly opts: GroupCommitOptions,
  ) {}

  submit(events: QueuedEvent[]): Promise<void> {
    if (this.closed) return Promise.reject(new AppError('unavailable', 'the service is shutting down'))
    return new Promise<void>((resolve, reject) => {
      this.pending.push({ events, resolve, reject })
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
      const group: Waiter[] = []
      let n = 0
      while (this.pending.length > 0) {
        const next = this.pending[0]
        if (next === undefined || (group.length > 0 && n + next.events.length > this.opts.maxBatchEvents))
          break
        group.push(next)
        n += next.events.length
        this.pending.shift()
      }
      void this.flush(group, n)
    }
    if (this.pending.length === 0 && this.inFlight === 0) {
      for (const w of this.idleWaiters.splice(0)) w()
    }
  }

  private async flush(group: Waiter[], n: number): Promise<void> {
    this.inFlight++
    const events =
      group.length === 1 && group[0] !== undefined ? group[0].events : group.flatMap((w) => w.events)
    try {
      await this.write(events)
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
