import type { BackoffStrategy, JobsOptions } from 'bullmq'
import { Packr } from 'msgpackr'
import type {
  ClickEvent,
  DecisionEvent,
  PurchaseEvent,
  QueuedEvent,
  RefundEvent,
  SignupEvent,
  SpendEvent,
} from './events.ts'

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

/**
 * An ingest job's events, each an array: its type's index, then its fields in the order
 * QUEUED_EVENT_FIELDS gives, absent ones as null, trailing ones left out; each request's
 * arrays go as one MessagePack buffer, in base64 (`packEvents`), and a job carries its
 * requests' (`m`, with the events' count `n`). BullMQ stores a job's data as JSON: a few strings are written
 * and read back at memory speed where thousands of arrays were stringified (~0.4 us an
 * event) and parsed (~0.4 us) again; unpacking them costs ~0.2 us. Measured in the batched
 * bench, alternating: the service's CPU 17.1-17.2 against 17.7-18.9 us an event. Jobs
 * queued before, as JSON arrays (`e`) or as objects (`events`), are read as they are. The
 * queue board shows the events decoded (`ingestJobView`).
 */
export type IngestPayload = { m: string[]; n: number } | { e: EncodedEvent[] } | { events: QueuedEvent[] }
export type EncodedEvent = Array<string | number | null | Array<{ credit_id: string; amount_cents: number }>>

type Fields<E> = ReadonlyArray<Exclude<keyof E, 'type'>>
/** each queued event type's fields, in the order its array holds them (exported for the tests) */
export const QUEUED_EVENT_FIELDS = {
  click: [
    'id',
    'code',
    'ts',
    'received_at',
    'visitor_id',
    'url',
    'referrer',
    'utm_source',
    'utm_medium',
    'utm_campaign',
    'ip',
    'user_agent',
    'country',
  ],
  signup: ['id', 'user_id', 'ts', 'received_at', 'ref', 'visitor_id', 'email', 'ip'],
  purchase: ['id', 'user_id', 'amount_cents', 'ts', 'received_at', 'currency', 'plan'],
  refund: ['id', 'purchase_id', 'amount_cents', 'ts', 'received_at', 'refunded_total_cents'],
  spend: ['id', 'user_id', 'spend_id', 'amount_cents', 'allocations', 'ts', 'received_at'],
  decision: ['id', 'purchase_id', 'decision', 'by', 'ts', 'received_at', 'reason'],
} as const satisfies {
  click: Fields<ClickEvent>
  signup: Fields<SignupEvent>
  purchase: Fields<PurchaseEvent>
  refund: Fields<RefundEvent>
  spend: Fields<SpendEvent>
  decision: Fields<DecisionEvent>
}
type EventType = QueuedEvent['type']
/** the order of the types is the index each encoded event starts with: append only */
export const QUEUED_EVENT_TYPES: readonly EventType[] = [
  'click',
  'signup',
  'purchase',
  'refund',
  'spend',
  'decision',
]
// every field of every event type is listed (a field left out would be dropped silently)
type Unlisted<E, T extends EventType> = Exclude<keyof E, 'type' | (typeof QUEUED_EVENT_FIELDS)[T][number]>
const complete: [
  Unlisted<ClickEvent, 'click'>,
  Unlisted<SignupEvent, 'signup'>,
  Unlisted<PurchaseEvent, 'purchase'>,
  Unlisted<RefundEvent, 'refund'>,
  Unlisted<SpendEvent, 'spend'>,
  Unlisted<DecisionEvent, 'decision'>,
] extends [never, never, never, never, never, never]
  ? true
  : false = true

const packr = new Packr({ useRecords: false })

/** One request's events, packed (a part of an ingest job's `m`). */
export function packEvents(events: readonly QueuedEvent[]): string {
  if (!complete) throw new Error('unreachable')
  return packr.pack(events.map(encodedEvent)).toString('base64')
}

/**
 * One event as its array: QUEUED_EVENT_FIELDS written out type by type (the type's index
 * in QUEUED_EVENT_TYPES first), then the trailing absent fields left out. Written out, not
 * a loop over the names: the loop's reads by name are megamorphic (the events' shapes
 * vary), 0.46-0.81 us an event against 0.19-0.22 measured. A test sets every listed field
 * of every type and fails if one is missed here.
 */
function encodedEvent(ev: QueuedEvent): EncodedEvent {
  let out: EncodedEvent
  switch (ev.type) {
    case 'click':
      out = [
        0,
        ev.id,
        ev.code,
        ev.ts,
        ev.received_at,
        ev.visitor_id ?? null,
        ev.url ?? null,
        ev.referrer ?? null,
        ev.utm_source ?? null,
        ev.utm_medium ?? null,
        ev.utm_campaign ?? null,
        ev.ip ?? null,
        ev.user_agent ?? null,
        ev.country ?? null,
      ]
      break
    case 'signup':
      out = [
        1,
        ev.id,
        ev.user_id,
        ev.ts,
        ev.received_at,
        ev.ref ?? null,
        ev.visitor_id ?? null,
        ev.email ?? null,
        ev.ip ?? null,
      ]
      break
    case 'purchase':
      out = [
        2,
        ev.id,
        ev.user_id,
        ev.amount_cents,
        ev.ts,
        ev.received_at,
        ev.currency ?? null,
        ev.plan ?? null,
      ]
      break
    case 'refund':
      out = [
        3,
        ev.id,
        ev.purchase_id,
        ev.amount_cents,
        ev.ts,
        ev.received_at,
        ev.refunded_total_cents ?? null,
      ]
      break
    case 'spend':
      out = [4, ev.id, ev.user_id, ev.spend_id, ev.amount_cents, ev.allocations, ev.ts, ev.received_at]
      break
    case 'decision':
      out = [5, ev.id, ev.purchase_id, ev.decision, ev.by, ev.ts, ev.received_at, ev.reason ?? null]
      break
  }
  let n = out.length
  while (n > 1 && out[n - 1] === null) n--
  out.length = n
  return out
}

export function encodeEvents(events: readonly QueuedEvent[]): IngestPayload {
  return { m: [packEvents(events)], n: events.length }
}

export function decodeEvents(payload: IngestPayload): QueuedEvent[] {
  if ('events' in payload) return payload.events
  const arrays =
    'm' in payload
      ? payload.m.flatMap((part) => packr.unpack(Buffer.from(part, 'base64')) as EncodedEvent[])
      : payload.e
  return arrays.map((a) => {
    const type = QUEUED_EVENT_TYPES[a[0] as number]
    if (type === undefined) throw new Error(`unknown encoded event type ${String(a[0])}`)
    const fields: readonly string[] = QUEUED_EVENT_FIELDS[type]
    const ev: Record<string, unknown> = { type }
    for (let i = 0; i < fields.length; i++) {
      const v = a[i + 1]
      if (v !== undefined && v !== null) ev[fields[i] as string] = v
    }
    return ev as unknown as QueuedEvent
  })
}

/** An ingest job's data in the form it has, checked; data of no known form: undefined. */
function ingestPayloadOf(data: unknown): IngestPayload | undefined {
  if (typeof data !== 'object' || data === null) return undefined
  const d = data as Record<string, unknown>
  if (Array.isArray(d.m) && d.m.every((part) => typeof part === 'string') && typeof d.n === 'number')
    return { m: d.m as string[], n: d.n }
  if (Array.isArray(d.e)) return { e: d.e as EncodedEvent[] }
  if (Array.isArray(d.events)) return { events: d.events as QueuedEvent[] }
  return undefined
}

/**
 * An ingest job's data as a person reads it (the queue board): its events decoded; data of
 * any other form (events as objects already among them) as it is.
 */
export function ingestJobView(data: unknown): unknown {
  const payload = ingestPayloadOf(data)
  if (payload === undefined || 'events' in payload) return data
  try {
    return { events: decodeEvents(payload) }
  } catch {
    return data
  }
}

/**
 * How many events a job carries (without decoding them). It only sizes a worker's group:
 * data of no known form counts as one event, and fails when it is read.
 */
export function eventCount(data: IngestPayload): number {
  const payload = ingestPayloadOf(data)
  if (payload === undefined) return 1
  if ('m' in payload) return payload.n
  return 'events' in payload ? payload.events.length : payload.e.length
}

export interface JobPayloads {
  ingest: IngestPayload
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
