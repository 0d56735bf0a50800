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
import { Queue, Worker } from 'bullmq'
import type { Redis } from 'ioredis'
import { publishStatsChanged } from './notify.ts'
import { type Payout, pendingPayoutIds, readPayout, requestPayout, settlePayout } from './payouts.ts'
import { insertLedgerEntry } from './store.ts'
import { type Webhooks, webhookEvent } from './webhooks.ts'

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
    // a run again after a crash past the refund: told again, in case it was not then
    await publishStatsChanged(redis, keys, [p.user_id])
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
    // the cash is back: told before anything else can fail
    await publishStatsChanged(redis, keys, [p.user_id])
    const settled = await readPayout(redis, keys, payoutId)
    if (settled !== null) await insertLedgerEntry(ch, ledger(settled, 'payout_failure'))
    return 'failed'
  }
  await settlePayout(redis, keys, p, { status: 'paid', transferId }, now())
  return 'paid'
}

/** payout.paid or payout.failed, once the payout is settled (again on a re-run: the same event). */
async function emitSettled(deps: PayoutDeps & { webhooks?: Webhooks }, payoutId: string): Promise<void> {
  if (deps.webhooks === undefined) return
  const p = await readPayout(deps.redis, deps.keys, payoutId)
  if (p === null || (p.status !== 'paid' && p.status !== 'failed')) return
  await deps.webhooks.emit([
    webhookEvent(
      p.status === 'paid' ? 'payout.paid' : 'payout.failed',
      p.id,
      p.user_id,
      p.settled_at ?? p.created_at,
      {
        payout_id: p.id,
        user_id: p.user_id,
        amount_cents: p.amount_cents,
        status: p.status,
        transfer_id: p.transfer_id ?? null,
        failure: p.failure ?? null,
      },
    ),
  ])
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
  deps: PayoutDeps & {
    connection: Redis
    queue: Queue<JobPayloads['payouts']>
    log: Logger
    /** cron pattern of the automatic payout run; undefined: none */
    autoPayoutCron?: string | undefined
    webhooks?: Webhooks
  },
): Promise<PayoutWorker> {
  const { log, queue } = deps
  const worker = new Worker<JobPayloads['payouts']>(
    QUEUE_NAMES.payouts,
    async (job) => {
      const status = await sendPayout(deps, job.data.payoutId)
      if (status === 'paid' || status === 'failed') await emitSettled(deps, job.data.payoutId)
      return status
    },
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
  const runs = new Queue<JobPayloads['payoutRuns']>(QUEUE_NAMES.payoutRuns, {
    connection: deps.connection,
    prefix: deps.keys.bullPrefix(),
  })
  let runWorker: Worker<JobPayloads['payoutRuns']> | null = null
  if (deps.autoPayoutCron === undefined) {
    await runs.removeJobScheduler('auto-payouts')
  } else {
    await runs.upsertJobScheduler(
      'auto-payouts',
      { pattern: deps.autoPayoutCron },
      { name: 'auto-payouts', data: {} },
    )
    runWorker = new Worker<JobPayloads['payoutRuns']>(
      QUEUE_NAMES.payoutRuns,
      async () => {
        const ids = await runAutoPayouts(deps, queue)
        log.info({ payouts: ids.length }, 'automatic payout run')
        return ids.length
      },
      { connection: deps.connection, prefix: deps.keys.bullPrefix() },
    )
  }
  return {
    close: async () => {
      clearInterval(timer)
      await worker.close()
      await runWorker?.close()
      await runs.close()
    },
  }
}

/**
 * The automatic payout run: every Partner whose account can receive payouts and whose cash
 * is at least the minimum gets a payout of the whole balance. Run by a BullMQ job scheduler
 * on AUTO_PAYOUT_CRON; returns the payout ids it created.
 */
export async function runAutoPayouts(
  deps: Pick<PayoutDeps, 'redis' | 'keys'>,
  queue: Queue<JobPayloads['payouts']>,
  now = Date.now(),
): Promise<string[]> {
  const { redis, keys } = deps
  const created: string[] = []
  let cursor = '0'
  do {
    const [next, users] = await redis.sscan(keys.partners(), cursor, 'COUNT', 500)
    cursor = next
    for (const userId of users) {
      const [account, enabled] = await redis.hmget(keys.user(userId), 'stripe_account', 'payouts_enabled')
      if (account === null || account === undefined || enabled !== '1') continue
      const r = await requestPayout(redis, keys, userId, account, now)
      if (r.ok) {
        created.push(r.payout.id)
        // the cash balance went into the payout
        await publishStatsChanged(redis, keys, [userId])
      }
    }
  } while (cursor !== '0')
  await enqueuePayouts(queue, created)
  return created
}
