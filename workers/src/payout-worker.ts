import type { ClickHouse, LedgerRow } from '@referral/clickhouse'
import {
  backoffStrategy,
  INGEST_JOB_OPTIONS,
  type JobPayloads,
  type Keys,
  type Logger,
  QUEUE_NAMES,
  type Stripe,
} from '@referral/core'
import { type Queue, Worker } from 'bullmq'
import type { Redis } from 'ioredis'
import { type Payout, pendingPayoutIds, readPayout, settlePayout } from './payouts.ts'
import { insertLedgerEntry } from './store.ts'

/**
 * Sends a payout as a Stripe transfer. The idempotency key is derived from the payout id,
 * so however often the job runs (a crash after the transfer and before its result was
 * recorded, a stall, a retry), Stripe makes one transfer. The cash debit and a failure's
 * refund are ledger entries with ids of their own, inserted with their id as dedup token.
 */

export interface PayoutDeps {
  redis: Redis
  keys: Keys
  ch: ClickHouse
  stripe: Stripe
}

const ledger = (p: Payout, kind: 'payout' | 'payout_failure'): LedgerRow => ({
  entry_id: `${kind}:${p.id}`,
  kind,
  user_id: p.user_id,
  account: 'cash',
  amount_cents: kind === 'payout' ? -p.amount_cents : p.amount_cents,
  event_id: p.id,
  source_user_id: '',
  ts: kind === 'payout' ? p.created_at : (p.settled_at ?? p.created_at),
})

/** Stripe errors that a retry cannot fix: the payout fails and the cash goes back. */
function isPermanent(e: unknown): boolean {
  const type = typeof e === 'object' && e !== null && 'type' in e ? String((e as { type: unknown }).type) : ''
  return ['StripeInvalidRequestError', 'StripePermissionError', 'StripeCardError'].includes(type)
}

export async function sendPayout(
  deps: PayoutDeps,
  payoutId: string,
  now = Date.now,
): Promise<Payout['status'] | 'missing'> {
  const { redis, keys, ch, stripe } = deps
  const p = await readPayout(redis, keys, payoutId)
  if (p === null) return 'missing'
  await insertLedgerEntry(ch, ledger(p, 'payout'))
  if (p.status === 'failed') {
    await insertLedgerEntry(ch, ledger(p, 'payout_failure'))
    return 'failed'
  }
  if (p.status === 'paid') return 'paid'
  let transferId: string
  try {
    const t = await stripe.transfers.create(
      {
        amount: p.amount_cents,
        currency: 'usd',
        destination: p.account,
        metadata: { payout_id: p.id, user_id: p.user_id },
      },
      { idempotencyKey: `payout-${p.id}` },
    )
    transferId = t.id
  } catch (e) {
    if (!isPermanent(e)) throw e
    const reason = e instanceof Error ? e.message : String(e)
    await settlePayout(redis, keys, p, { status: 'failed', reason }, now())
    const settled = await readPayout(redis, keys, payoutId)
    if (settled !== null) await insertLedgerEntry(ch, ledger(settled, 'payout_failure'))
    return 'failed'
  }
  await settlePayout(redis, keys, p, { status: 'paid', transferId }, now())
  return 'paid'
}

export async function enqueuePayouts(
  queue: Queue<JobPayloads['payouts']>,
  ids: readonly string[],
): Promise<void> {
  if (ids.length === 0) return
  await queue.addBulk(
    ids.map((payoutId) => ({
      name: 'payout',
      data: { payoutId },
      opts: { ...INGEST_JOB_OPTIONS, jobId: `payout-${payoutId}` },
    })),
  )
}

export interface PayoutWorker {
  close(): Promise<void>
}

/** The payout queue's worker, and a sweep that queues any pending payout whose job was never added. */
export async function startPayoutWorker(
  deps: PayoutDeps & { connection: Redis; queue: Queue<JobPayloads['payouts']>; log: Logger },
): Promise<PayoutWorker> {
  const { log, queue } = deps
  const worker = new Worker<JobPayloads['payouts']>(
    QUEUE_NAMES.payouts,
    (job) => sendPayout(deps, job.data.payoutId),
    {
      connection: deps.connection,
      prefix: deps.keys.bullPrefix(),
      settings: { backoffStrategy },
      maxStalledCount: 1_000_000,
    },
  )
  worker.on('failed', (job, err) =>
    log.warn({ jobId: job?.id, err: err.message }, 'payout failed, will retry'),
  )
  worker.on('error', (err) => log.error({ err: err.message }, 'payout worker error'))
  const sweep = async () => {
    try {
      await enqueuePayouts(queue, await pendingPayoutIds(deps.redis, deps.keys))
    } catch (e) {
      log.warn({ err: (e as Error).message }, 'payout sweep failed; it runs again in a minute')
    }
  }
  await sweep()
  const timer = setInterval(() => void sweep(), 60_000)
  timer.unref()
  return {
    close: async () => {
      clearInterval(timer)
      await worker.close()
    },
  }
}
