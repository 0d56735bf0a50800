import { createHash } from 'node:crypto'
import type { ClickHouse, LedgerRow } from '@referral/clickhouse'
import {
  backoffStrategy,
  INGEST_JOB_OPTIONS,
  type JobPayloads,
  type Keys,
  type Logger,
  QUEUE_NAMES,
} from '@referral/core'
import { type Job, type Queue, Worker } from 'bullmq'
import type { Redis } from 'ioredis'
import { publishStatsChanged } from './notify.ts'
import type { CreditExpiry } from './state.ts'
import { insertLedgerEntry } from './store.ts'
import { expireCredit } from './wallet.ts'
import { type Webhooks, webhookEvent } from './webhooks.ts'

/**
 * Credit expiry: every credit granted with an expiry gets a delayed job (id derived from the
 * credit, so scheduling twice is harmless) that runs at its expiry, writes off what is left
 * in Redis (once, remembered on the credit) and records a bonus_expiry ledger entry in
 * ClickHouse with a dedup token of its own, so a retry adds nothing.
 */
export async function scheduleExpiries(
  queue: Queue<JobPayloads['credits']>,
  expiries: readonly CreditExpiry[],
) {
  if (expiries.length === 0) return
  const now = Date.now()
  await queue.addBulk(
    expiries.map((x) => ({
      name: 'expire',
      data: { userId: x.userId, creditId: x.creditId, expiresAt: x.expiresAt },
      opts: Object.assign({}, INGEST_JOB_OPTIONS, {
        jobId: expiryJobId(x.userId, x.creditId),
        delay: Math.max(0, x.expiresAt - now),
      }),
    })),
  )
}

/** BullMQ job ids cannot hold ':', which user and credit ids can: a digest of both instead. */
export function expiryJobId(userId: string, creditId: string): string {
  return `expire-${createHash('sha256').update(`${userId}\n${creditId}`).digest('hex').slice(0, 32)}`
}

export async function expireOne(
  redis: Redis,
  keys: Keys,
  ch: ClickHouse,
  data: JobPayloads['credits'],
  now: number,
  webhooks?: Webhooks,
) {
  const written = await expireCredit(redis, keys, data.userId, data.creditId, now)
  if (written < 0) throw new Error(`credit ${data.creditId} is not expired yet`)
  if (written === 0) return 0
  const entry: LedgerRow = {
    entry_id: `bonus_expiry:${data.creditId}`,
    kind: 'bonus_expiry',
    user_id: data.userId,
    account: 'wallet',
    amount_cents: -written,
    event_id: data.creditId,
    source_user_id: '',
    ts: data.expiresAt,
  }
  await insertLedgerEntry(ch, entry)
  await publishStatsChanged(redis, keys, [data.userId])
  await webhooks?.emit([
    webhookEvent('credit.expired', entry.entry_id, data.userId, data.expiresAt, {
      user_id: data.userId,
      credit_id: data.creditId,
      expired_cents: written,
    }),
  ])
  return written
}

export function startCreditExpiryWorker(deps: {
  redis: Redis
  connection: Redis
  keys: Keys
  ch: ClickHouse
  log: Logger
  webhooks?: Webhooks
}): Worker<JobPayloads['credits']> {
  const { redis, keys, ch, log } = deps
  const worker = new Worker<JobPayloads['credits']>(
    QUEUE_NAMES.credits,
    (job: Job<JobPayloads['credits']>) => expireOne(redis, keys, ch, job.data, Date.now(), deps.webhooks),
    {
      connection: deps.connection,
      prefix: keys.bullPrefix(),
      settings: { backoffStrategy },
      maxStalledCount: 1_000_000,
    },
  )
  worker.on('failed', (job, err) =>
    log.warn({ jobId: job?.id, err: err.message }, 'credit expiry failed, will retry'),
  )
  worker.on('error', (err) => log.error({ err: err.message }, 'credit expiry worker error'))
  return worker
}
