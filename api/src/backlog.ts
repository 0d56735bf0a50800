import { AppError } from '@referral/core'

/**
 * Backpressure for ingestion: the number of ingest jobs waiting, sampled every `everyMs`.
 * Past `maxWaitingJobs` new events are refused with 503 and Retry-After, nothing accepted,
 * instead of growing the queue in Redis (noeviction) until memory runs out.
 */
export class Backlog {
  private waiting = 0
  /** samples that failed (Redis away); ingestion answers 503 on its own then */
  sampleFailures = 0
  private timer: NodeJS.Timeout | undefined

  constructor(
    private readonly sample: () => Promise<number>,
    private readonly maxWaitingJobs: number,
    private readonly everyMs = 250,
  ) {}

  start(): void {
    const tick = async () => {
      try {
        this.waiting = await this.sample()
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

  /** Throws 503 when the queue is too deep to take more. */
  admit(): void {
    if (this.maxWaitingJobs > 0 && this.waiting > this.maxWaitingJobs) {
      throw new AppError('unavailable', `the ingest queue is ${this.waiting} jobs deep; retry shortly`, [], {
        headers: { 'Retry-After': '2' },
      })
    }
  }
}
