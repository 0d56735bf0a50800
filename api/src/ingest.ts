import {
  AppError,
  type ErrorDetail,
  type EventInput,
  eventInput,
  MAX_EVENTS_PER_REQUEST,
  newId,
  type QueuedEvent,
  settleEvent,
} from '@referral/core'
import type { z } from 'zod'

/**
 * A POST /v1/events body: one event, or {"events": [...]}. Every event is checked; if any is
 * invalid the whole request is refused with one detail per problem, and nothing is queued.
 */
export function parseEventsBody(body: unknown, now: number = Date.now()): QueuedEvent[] {
  const isBatch = typeof body === 'object' && body !== null && !Array.isArray(body) && 'events' in body
  const raw: unknown[] = isBatch ? asBatch((body as { events: unknown }).events) : [body]
  const details: ErrorDetail[] = []
  const valid: EventInput[] = []
  for (let index = 0; index < raw.length; index++) {
    const item = raw[index]
    const r = eventInput.safeParse(item)
    if (r.success) valid.push(r.data)
    else {
      // again with the messages customised: a per-call error map costs ~3x on every parse
      const again = eventInput.safeParse(item, { error: requiredMessage })
      details.push(...(again.success ? [] : issuesToDetails(again.error, index)))
    }
  }
  if (details.length > 0) {
    const n = new Set(details.map((d) => d.index)).size
    throw new AppError(
      'validation_failed',
      `${n} of ${raw.length} events are invalid; nothing was accepted`,
      details,
    )
  }
  return valid.map((e) => settleEvent(e, now, () => newId(now)))
}

function asBatch(events: unknown): unknown[] {
  if (!Array.isArray(events)) {
    throw new AppError('validation_failed', '"events" must be an array', [
      { path: 'events', message: 'not an array' },
    ])
  }
  if (events.length === 0) {
    throw new AppError('validation_failed', '"events" is empty', [
      { path: 'events', message: 'at least one event' },
    ])
  }
  if (events.length > MAX_EVENTS_PER_REQUEST) {
    throw new AppError(
      'payload_too_large',
      `at most ${MAX_EVENTS_PER_REQUEST} events per request (got ${events.length}); split the batch`,
    )
  }
  return events
}

/** "required" for a missing field, zod's own message for everything else. */
const requiredMessage = (issue: { code: string; input?: unknown }) =>
  issue.code === 'invalid_type' && issue.input === undefined ? 'required' : undefined

function issuesToDetails(error: z.ZodError, index: number): ErrorDetail[] {
  return error.issues.map((i) => ({
    index,
    path: i.path.length === 0 ? '' : i.path.join('.'),
    message: i.message,
  }))
}
