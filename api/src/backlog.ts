import { AppError } from '@referral/core'

/** Longest a 202 is held back while the workers are behind (see `pace`). */
export const MAX_PACE_MS = 1_000

/**
 * Backpressure for ingestion, from the ingest queue sampled every `everyMs`:
 * - `pace`: once the oldest waiting job is older than `paceAfterMs`, each 202 is held back
 *   by the excess (at most MAX_PACE_MS), after its events are queued: a sender that waits
 *   for its answers slows down to what the workers take, instead of taking the CPU they need
 *   to queue more, and nothing is refused;
 * - `admit`: past `maxWaitingJobs` new events are refused with 503 and Retry-After, nothing
 *   accepted, instead of growing the queue in Redis (noeviction) until memory runs out.
 */
export class Backlog {
  private waiting = 0
  private lagMs = 0
  /** samples that failed (Redis away); ingestion answers 503 on its own then */
  sampleFailures = 0
  private timer: NodeJS.Timeout | undefined

  constructor(
    private readonly sample: () => Promise<number>,
    private readonly maxWaitingJobs: number,
    private readonly everyMs = 250,
    /** the age of the oldest waiting job (ms), and past what age answers are paced (0: never) */
    private readonly lag: { sample: () => Promise<number>; paceAfterMs: number } | null = null,
  ) {}

  start(): void {
    const tick = async () => {
      try {
        this.waiting = await this.sample()
        if (this.lag !== null && this.lag.paceAfterMs > 0) this.lagMs = await this.lag.sample()
      } catch {
        this.sampleFailures++
      }
      this.timer = setTimeout(() => void tick(), this.everyMs)
      this.timer.unref()
    }
    void tick()
  }

  stop(): void {
    clearTimeout(this.timer)
  }

  get waitingJobs(): number {
    return this.waiting
  }

  /** How long to hold back a 202 now (ms): the lag past `paceAfterMs`, at most MAX_PACE_MS. */
  pace(): number {
    if (this.lag === null || this.lag.paceAfterMs <= 0) return 0
    return Math.min(MAX_PACE_MS, Math.max(0, this.lagMs - this.lag.paceAfterMs))
  }

  /** Throws 503 when the queue is too deep to take more. */
  admit(): void {
    if (this.maxWaitingJobs > 0 && this.waiting > this.maxWaitingJobs) {
      throw new AppError('unavailable', `the ingest queue is ${this.waiting} jobs deep; retry shortly`, [], {
        headers: { 'Retry-After': '2' },
      })
    }
  }
}
