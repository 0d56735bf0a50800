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
  webhooks: 'webhooks',
} as const

/** What the service tells the marketplace (outgoing webhooks, workers/src/webhooks.ts). */
export const WEBHOOK_TYPES = [
  'referral.created',
  'credit.granted',
  'credit.expired',
  'commission.created',
  'commission.reversed',
  'commission.approved',
  'commission.rejected',
  'payout.paid',
  'payout.failed',
] as const
export type WebhookType = (typeof WEBHOOK_TYPES)[number]

export interface WebhookEvent {
  /** derived from what caused it: the same cause always names the same event */
  id: string
  type: WebhookType
  /** the user it is about: deliveries about one user keep their order */
  subject: string
  created_at: string
  data: Record<string, unknown>
}

export interface JobPayloads {
  ingest: { events: QueuedEvent[] }
  /** write off what is left of a wallet credit when it expires (a delayed job) */
  credits: { userId: string; creditId: string; expiresAt: number }
  /** send a requested payout to the user's connected account (a Stripe transfer) */
  payouts: { payoutId: string }
  /** the automatic payout run (a repeatable job): pay every payout-ready partner over the minimum */
  payoutRuns: Record<string, never>
  /** deliver one event to one endpoint (its index in WEBHOOK_URL, and its URL) */
  webhooks: { endpoint: number; url: string; event: WebhookEvent; replay?: boolean }
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

/**
 * Webhook deliveries retry for about 5 days: 10 s doubling to a 6-hour cap, 30 attempts
 * (10 s + 20 s + ... + 5.7 h ≈ 11.4 h over the first 12, then 18 × 6 h).
 */
export const WEBHOOK_JOB_OPTIONS = {
  attempts: 30,
  backoff: { type: 'webhook' },
  // kept a week: an event emitted again while its delivery is remembered adds no job
  removeOnComplete: { age: 7 * 86_400 },
  removeOnFail: false,
} satisfies JobsOptions

/** 10 s (WEBHOOK_RETRY_BASE_MS) doubling to a 6-hour cap. */
export const webhookBackoff =
  (baseMs: number): BackoffStrategy =>
  (attemptsMade) =>
    Math.min(6 * 3_600_000, baseMs * 2 ** Math.max(0, Math.min(attemptsMade - 1, 20)))
