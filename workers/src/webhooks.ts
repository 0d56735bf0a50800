import { createHash, createHmac, timingSafeEqual } from 'node:crypto'
import {
  type JobPayloads,
  type Keys,
  type Logger,
  QUEUE_NAMES,
  type ResolvedConfig,
  WEBHOOK_JOB_OPTIONS,
  type WebhookEvent,
  type WebhookType,
  webhookBackoff,
} from '@referral/core'
import { DelayedError, type Job, type JobsOptions, Queue, UnrecoverableError, Worker } from 'bullmq'
import type { Redis } from 'ioredis'
import type { Resolution } from './resolution.ts'

/**
 * Outgoing webhooks to the marketplace. Each event has an id derived from what caused it,
 * so emitting it again (a retried group, a re-run payout job) names the same event and the
 * same delivery job: BullMQ keeps one job per id, and receivers deduplicate by `id`.
 *
 * Deliveries are BullMQ jobs retried with exponential backoff for about 5 days. Per
 * endpoint, the events about one user (a referrer's referrals, commissions and payouts) go
 * out in the order they happened: a delivery waits while an earlier one for the same user
 * is still pending. Every attempt is logged in Redis, and an admin can replay a delivery.
 *
 * Signature (like Stripe's): `X-Referral-Signature: t=<unix seconds>,v1=<hex HMAC-SHA256 of
 * "<t>.<body>" with WEBHOOK_SECRET>`.
 */

export const SIGNATURE_HEADER = 'x-referral-signature'
const TIMEOUT_MS = 10_000
/** how often a delivery waiting for its turn looks again, should the hand-over be missed */
const TURN_RECHECK_MS = 5_000
/** how long the delivery log keeps an entry */
const LOG_TTL_SECONDS = 30 * 86_400
const LOG_MAX = 10_000

export function webhookEvent(
  type: WebhookType,
  cause: string,
  subject: string,
  ts: number,
  data: Record<string, unknown>,
): WebhookEvent {
  const id = `evt_${createHash('sha256').update(`${type}\n${cause}`).digest('hex').slice(0, 24)}`
  return { id, type, subject, created_at: new Date(ts).toISOString(), data }
}

/** The webhook events of a group the ingest worker applied, in the order they happened. */
export function eventsOfGroup(res: Pick<Resolution, 'rows' | 'ledger' | 'expiries'>): WebhookEvent[] {
  const out: WebhookEvent[] = []
  const purchaseOf = new Map<string, string>()
  const expiresAt = new Map(res.expiries.map((x) => [x.creditId, x.expiresAt]))
  for (const row of res.rows) {
    if (row.type === 'refund' && row.purchase_id !== undefined) purchaseOf.set(row.id, row.purchase_id)
    if (row.type === 'signup' && row.counted === 1 && row.referrer_id !== undefined) {
      out.push(
        webhookEvent('referral.created', row.id, row.referrer_id, row.ts, {
          referrer_id: row.referrer_id,
          user_id: row.user_id,
          code: row.code,
          flags: row.flags ?? [],
        }),
      )
    }
  }
  for (const e of res.ledger) {
    switch (e.kind) {
      case 'signup_bonus':
      case 'commission_approved':
        if (e.account === 'wallet')
          out.push(credit(e.user_id, e.entry_id, e.kind, e.amount_cents, e.ts, expiresAt.get(e.entry_id)))
        if (e.kind === 'commission_approved') {
          out.push(
            webhookEvent('commission.approved', e.entry_id, e.user_id, e.ts, {
              referrer_id: e.user_id,
              purchase_id: e.event_id,
              user_id: e.source_user_id,
              commission_cents: e.amount_cents,
              account: e.account,
            }),
          )
        }
        break
      case 'commission':
        out.push(
          webhookEvent('commission.created', e.entry_id, e.user_id, e.ts, {
            referrer_id: e.user_id,
            purchase_id: e.event_id,
            user_id: e.source_user_id,
            commission_cents: e.amount_cents,
            account: e.account,
            status: e.account === 'held' ? 'held' : 'payable',
          }),
        )
        if (e.account === 'wallet')
          out.push(credit(e.user_id, e.entry_id, e.kind, e.amount_cents, e.ts, expiresAt.get(e.entry_id)))
        break
      case 'commission_reversal':
        out.push(
          webhookEvent('commission.reversed', e.entry_id, e.user_id, e.ts, {
            referrer_id: e.user_id,
            refund_id: e.event_id,
            purchase_id: purchaseOf.get(e.event_id) ?? null,
            user_id: e.source_user_id,
            commission_cents: e.amount_cents,
            account: e.account,
          }),
        )
        break
      case 'commission_rejected':
        out.push(
          webhookEvent('commission.rejected', e.entry_id, e.user_id, e.ts, {
            referrer_id: e.user_id,
            purchase_id: e.event_id,
            user_id: e.source_user_id,
            commission_cents: e.amount_cents,
          }),
        )
        break
      default:
        break
    }
  }
  return out
}

function credit(
  userId: string,
  creditId: string,
  source: string,
  amount: number,
  ts: number,
  expiresAt: number | undefined,
): WebhookEvent {
  return webhookEvent('credit.granted', creditId, userId, ts, {
    user_id: userId,
    credit_id: creditId,
    source,
    amount_cents: amount,
    expires_at: expiresAt === undefined ? null : new Date(expiresAt).toISOString(),
  })
}

export function signPayload(secret: string, body: string, timestampSeconds: number): string {
  const mac = createHmac('sha256', secret).update(`${timestampSeconds}.${body}`).digest('hex')
  return `t=${timestampSeconds},v1=${mac}`
}

/** What a receiver does: the signature matches and is recent (5 minutes by default). */
export function verifySignature(
  secret: string,
  body: string,
  header: string,
  nowSeconds = Math.floor(Date.now() / 1000),
  toleranceSeconds = 300,
): boolean {
  const parts = new Map(header.split(',').map((p) => p.split('=', 2) as [string, string]))
  const t = Number(parts.get('t'))
  const v1 = parts.get('v1') ?? ''
  if (!Number.isInteger(t) || Math.abs(nowSeconds - t) > toleranceSeconds) return false
  const want = Buffer.from(signPayload(secret, body, t).split('v1=')[1] ?? '', 'hex')
  const got = Buffer.from(v1, 'hex')
  return got.length === want.length && timingSafeEqual(got, want)
}

/** A delivery: one event to one endpoint. */
export const deliveryId = (endpoint: number, eventId: string) => `wh-${endpoint}-${eventId}`

export interface DeliveryLog {
  id: string
  event_id: string
  type: string
  endpoint: string
  status: 'retrying' | 'delivered' | 'failed'
  attempts: number
  last_status: number | null
  last_error: string | null
  last_attempt_at: string | null
  delivered_at: string | null
}

export interface Webhooks {
  /** queue the events for every endpoint (nothing when none is configured) */
  emit(events: readonly WebhookEvent[]): Promise<void>
  close(): Promise<void>
}

/** The emitting side: any process that causes events (workers, the API for replays). */
export function makeWebhooks(deps: { config: ResolvedConfig; redis: Redis; keys: Keys }): Webhooks {
  const { config, redis, keys } = deps
  if (config.webhooks.length === 0) return { emit: async () => {}, close: async () => {} }
  const queue = new Queue<JobPayloads['webhooks']>(QUEUE_NAMES.webhooks, {
    connection: redis,
    prefix: keys.bullPrefix(),
  })
  return {
    emit: async (events) => {
      if (events.length === 0) return
      // reserve a range of sequence numbers: the order of deliveries per user and endpoint
      const last = await redis.incrby(keys.webhookSequence(), events.length * config.webhooks.length)
      let seq = last - events.length * config.webhooks.length
      const order = redis.pipeline()
      const jobs: Array<{ name: string; data: JobPayloads['webhooks']; opts: JobsOptions }> = []
      config.webhooks.forEach((ep, endpoint) => {
        for (const event of events) {
          // NX: an event emitted again keeps its place
          order.zadd(keys.webhookOrder(endpoint, event.subject), 'NX', ++seq, event.id)
          jobs.push({
            name: event.type,
            data: { endpoint, url: ep.url, event },
            opts: Object.assign({}, WEBHOOK_JOB_OPTIONS, { jobId: deliveryId(endpoint, event.id) }),
          })
        }
      })
      await order.exec()
      await queue.addBulk(jobs)
    },
    close: () => queue.close(),
  }
}

export async function readDeliveryLog(
  redis: Redis,
  keys: Keys,
  limit = 100,
  offset = 0,
): Promise<DeliveryLog[]> {
  const ids = await redis.zrevrange(keys.webhookLog(), offset, offset + limit - 1)
  const p = redis.pipeline()
  for (const id of ids) p.hgetall(keys.webhookDelivery(id))
  const rows = (await p.exec()) ?? []
  return rows.flatMap(([err, v], i) => {
    const h = v as Record<string, string>
    if (err !== null || h.event_id === undefined) return []
    return [parseLog(ids[i] ?? '', h)]
  })
}

function parseLog(id: string, h: Record<string, string>): DeliveryLog {
  const num = (v: string | undefined) => (v === undefined || v === '' ? null : Number(v))
  const when = (v: string | undefined) =>
    v === undefined || v === '' ? null : new Date(Number(v)).toISOString()
  return {
    id,
    event_id: h.event_id ?? '',
    type: h.type ?? '',
    endpoint: h.endpoint ?? '',
    status: h.status === 'delivered' || h.status === 'failed' ? h.status : 'retrying',
    attempts: Number(h.attempts ?? 0),
    last_status: num(h.last_status),
    last_error: h.last_error === undefined || h.last_error === '' ? null : h.last_error,
    last_attempt_at: when(h.last_attempt_at),
    delivered_at: when(h.delivered_at),
  }
}

/**
 * Sends a delivery again, now, outside the per-user order (it was delivered or gave up
 * already): the same event id and body, a fresh signature. Returns false when the log no
 * longer has the delivery's event.
 */
export async function replayDelivery(redis: Redis, keys: Keys, id: string): Promise<boolean> {
  const h = await redis.hgetall(keys.webhookDelivery(id))
  if (h.body === undefined || h.url === undefined) return false
  const queue = new Queue<JobPayloads['webhooks']>(QUEUE_NAMES.webhooks, {
    connection: redis,
    prefix: keys.bullPrefix(),
  })
  try {
    await queue.add(
      'replay',
      {
        endpoint: Number(h.endpoint_index ?? 0),
        url: h.url,
        event: JSON.parse(h.body) as WebhookEvent,
        replay: true,
      },
      { ...WEBHOOK_JOB_OPTIONS, jobId: `${id}-replay-${Date.now()}` },
    )
  } finally {
    await queue.close()
  }
  return true
}

export interface WebhookWorker {
  readonly stats: { delivered: number; failedAttempts: number }
  close(): Promise<void>
}

/** Delivers the queued events; started with the workers when an endpoint is configured. */
export function startWebhookWorker(deps: {
  config: ResolvedConfig
  redis: Redis
  connection: Redis
  keys: Keys
  log: Logger
  fetch?: typeof fetch
}): WebhookWorker | null {
  const { config, redis, keys, log } = deps
  if (config.webhooks.length === 0) return null
  const send = deps.fetch ?? fetch
  const stats = { delivered: 0, failedAttempts: 0 }
  const queue = new Queue<JobPayloads['webhooks']>(QUEUE_NAMES.webhooks, {
    connection: redis,
    prefix: keys.bullPrefix(),
  })

  /**
   * Waits (as a delayed job) while an earlier event for the same user is still to be
   * delivered. The earlier one hands the turn on when it is done (`passTurn`); the wait's own
   * recheck, every few seconds, only covers a hand-over missed (a crash, a race).
   */
  const waitForTurn = async (job: Job<JobPayloads['webhooks']>, token: string | undefined) => {
    const { endpoint, event } = job.data
    const orderKey = keys.webhookOrder(endpoint, event.subject)
    for (;;) {
      const [head] = await redis.zrange(orderKey, 0, 0)
      if (head === undefined || head === event.id) return
      const state = await queue.getJobState(deliveryId(endpoint, head))
      if (state === 'completed' || state === 'failed' || state === 'unknown') {
        await redis.zrem(orderKey, head) // delivered, given up or gone: no longer in the way
        continue
      }
      await job.moveToDelayed(Date.now() + TURN_RECHECK_MS, token)
      throw new DelayedError()
    }
  }

  /** This delivery is done (delivered or given up): the next one for the user goes now. */
  const passTurn = async (endpoint: number, subject: string, eventId: string) => {
    const orderKey = keys.webhookOrder(endpoint, subject)
    await redis.zrem(orderKey, eventId)
    const [next] = await redis.zrange(orderKey, 0, 0)
    if (next === undefined) return
    const waiting = await queue.getJob(deliveryId(endpoint, next))
    // it may have just started or been promoted elsewhere: then it no longer waits
    if (waiting !== undefined && (await waiting.isDelayed())) await waiting.promote().catch(() => undefined)
  }

  const record = async (
    id: string,
    job: Job<JobPayloads['webhooks']>,
    body: string,
    fields: Record<string, string | number>,
  ) => {
    const key = keys.webhookDelivery(id)
    const now = Date.now()
    await redis
      .multi()
      .hset(key, {
        event_id: job.data.event.id,
        type: job.data.event.type,
        endpoint: job.data.url,
        endpoint_index: job.data.endpoint,
        url: job.data.url,
        body,
        last_attempt_at: now,
        ...fields,
      })
      .hincrby(key, 'attempts', 1)
      .expire(key, LOG_TTL_SECONDS)
      .zadd(keys.webhookLog(), now, id)
      .zremrangebyrank(keys.webhookLog(), 0, -LOG_MAX - 1)
      .exec()
  }

  const worker = new Worker<JobPayloads['webhooks']>(
    QUEUE_NAMES.webhooks,
    async (job, token) => {
      const { endpoint, url, event } = job.data
      const ep = config.webhooks.find((e) => e.url === url)
      if (ep === undefined) throw new UnrecoverableError(`${url} is no longer a configured endpoint`)
      if (job.data.replay !== true) await waitForTurn(job, token)
      const id =
        job.data.replay === true ? (job.id ?? deliveryId(endpoint, event.id)) : deliveryId(endpoint, event.id)
      const body = JSON.stringify({
        id: event.id,
        type: event.type,
        created_at: event.created_at,
        data: event.data,
      })
      const t = Math.floor(Date.now() / 1000)
      let status: number | null = null
      let error = ''
      try {
        const res = await send(url, {
          method: 'POST',
          headers: {
            'content-type': 'application/json',
            'user-agent': 'referral-analytics-webhooks/1',
            'webhook-id': event.id,
            [SIGNATURE_HEADER]: signPayload(ep.secret, body, t),
          },
          body,
          signal: AbortSignal.timeout(TIMEOUT_MS),
        })
        status = res.status
        await res.body?.cancel()
        if (!res.ok) error = `HTTP ${res.status}`
      } catch (e) {
        error = e instanceof Error ? e.message : String(e)
      }
      if (error === '') {
        await record(id, job, body, {
          status: 'delivered',
          last_status: status ?? 0,
          last_error: '',
          delivered_at: Date.now(),
        })
        if (job.data.replay !== true) await passTurn(endpoint, event.subject, event.id)
        stats.delivered++
        return
      }
      stats.failedAttempts++
      const final = job.attemptsMade + 1 >= (job.opts.attempts ?? 1)
      await record(id, job, body, {
        status: final ? 'failed' : 'retrying',
        last_status: status ?? '',
        last_error: error,
      })
      if (final && job.data.replay !== true) await passTurn(endpoint, event.subject, event.id)
      throw new Error(`webhook ${event.type} to ${url}: ${error}`)
    },
    {
      connection: deps.connection,
      prefix: keys.bullPrefix(),
      settings: { backoffStrategy: webhookBackoff(config.webhookRetryBaseMs) },
      maxStalledCount: 1_000_000,
      concurrency: 8,
    },
  )
  worker.on('error', (err) => log.error({ err: err.message }, 'webhook worker error'))
  return {
    stats,
    close: async () => {
      await worker.close()
      await queue.close()
    },
  }
}
