import type { BackoffStrategy, JobsOptions } from 'bullmq'
import type { QueuedEvent } from './events.ts'

/**
 * Every queue and the payload of its jobs, in one module. A job on `ingest` carries the
 * events of one group commit: all the requests that arrived while the previous add was in
 * flight, so the queue does one write for many requests.
 */
export const QUEUE_NAMES = {
  ingest: 'ingest',
  credits: 'credits',
  payouts: 'payouts',
  payoutRuns: 'payout-runs',
} as const

export interface JobPayloads {
  ingest: { events: QueuedEvent[] }
  /** write off what is left of a wallet credit when it expires (a delayed job) */
  credits: { userId: string; creditId: string; expiresAt: number }
  /** send a requested payout to the user's connected account (a Stripe transfer) */
  payouts: { payoutId: string }
  /** the automatic payout run (a repeatable job): pay every payout-ready partner over the minimum */
  payoutRuns: Record<string, never>
}

/**
 * A job that fails for a passing reason (ClickHouse down, Redis failover) is retried with
 * capped exponential backoff for as long as it takes; one that can never succeed throws
 * UnrecoverableError and stays in the failed set as a dead letter.
 */
export const INGEST_JOB_OPTIONS: JobsOptions = {
  attempts: 1_000_000,
  backoff: { type: 'capped' },
  removeOnComplete: true,
  removeOnFail: false,
}

export const RETRY_CAP_MS = 30_000

export const backoffStrategy: BackoffStrategy = (attemptsMade) =>
  Math.min(RETRY_CAP_MS, 200 * 2 ** Math.min(attemptsMade, 20))
