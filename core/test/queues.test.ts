import { describe, expect, it } from 'vitest'
import type { QueuedEvent } from '../src/events.ts'
import {
  decodeEvents,
  encodeEvents,
  eventCount,
  type IngestPayload,
  ingestJobView,
  packEvents,
  QUEUED_EVENT_FIELDS,
  QUEUED_EVENT_TYPES,
} from '../src/queues.ts'

/** Ingest jobs carry their events as arrays (encodeEvents): each event comes back as it went in. */
describe('ingest job payloads', () => {
  const ts = 1_796_000_000_000
  const settled = { ts, received_at: ts + 5 }
  const every: QueuedEvent[] = [
    {
      type: 'click',
      id: 'c1',
      code: 'AB12CD34',
      visitor_id: 'v1',
      url: 'https://x.example/?a="b"',
      referrer: 'https://r.example',
      utm_source: 'news',
      utm_medium: 'mail',
      utm_campaign: 'spring',
      ip: '10.0.0.1',
      user_agent: 'Mozilla/5.0',
      country: 'FR',
      ...settled,
    },
    { type: 'click', id: 'c2', code: 'AB12CD34', ...settled },
    { type: 'click', id: 'c3', code: 'AB12CD34', country: 'DE', ...settled },
    {
      type: 'signup',
      id: 's1',
      user_id: 'u1',
      ref: 'AB12CD34',
      visitor_id: 'v1',
      email: 'a@b.example',
      ip: '::1',
      ...settled,
    },
    {
      type: 'purchase',
      id: 'p1',
      user_id: 'u1',
      amount_cents: 1999,
      currency: 'usd',
      plan: 'pro',
      ...settled,
    },
    { type: 'refund', id: 'r1', purchase_id: 'p1', amount_cents: 500, refunded_total_cents: 700, ...settled },
    {
      type: 'spend',
      id: '2:u1:o1',
      user_id: 'u1',
      spend_id: 'o1',
      amount_cents: 300,
      allocations: [{ credit_id: 'signup_bonus:s1', amount_cents: 250 }],
      ...settled,
    },
    {
      type: 'decision',
      id: 'p1',
      purchase_id: 'p1',
      decision: 'reject',
      by: 'admin',
      reason: 'ring',
      ...settled,
    },
  ]

  it('round-trips every field of every event type, and leaves absent ones absent', () => {
    const payload = encodeEvents(every)
    const back = decodeEvents(JSON.parse(JSON.stringify(payload)))
    expect(back).toEqual(every)
    // absent fields stay absent (not null, not undefined keys)
    expect(Object.keys(back[1] ?? {}).sort()).toEqual(['code', 'id', 'received_at', 'ts', 'type'])
    expect(eventCount(payload)).toBe(every.length)
  })

  it('carries every field listed for each type, in place (a field the encoder missed would be lost)', () => {
    for (const type of QUEUED_EVENT_TYPES) {
      // every listed field set, each to a value of its own
      const full: Record<string, unknown> = { type }
      QUEUED_EVENT_FIELDS[type].forEach((f, i) => {
        full[f] = `${f}-${i}`
      })
      const event = full as unknown as QueuedEvent
      expect(decodeEvents(JSON.parse(JSON.stringify(encodeEvents([event])))), type).toEqual([event])
    }
  })

  it('is shorter than the events as objects', () => {
    expect(JSON.stringify(encodeEvents(every)).length).toBeLessThan(
      JSON.stringify({ events: every }).length * 0.8,
    )
  })

  it('queues each request as one packed string, not as JSON values BullMQ would stringify one by one', () => {
    const payload = encodeEvents(every)
    expect(Object.keys(payload).sort()).toEqual(['m', 'n'])
    expect(payload).toEqual({ m: [packEvents(every)], n: every.length })
    expect(typeof packEvents(every)).toBe('string')
  })

  it("reads a job of several requests' parts as their events in order", () => {
    const parts = [every.slice(0, 3), every.slice(3, 4), every.slice(4)]
    const payload = { m: parts.map(packEvents), n: every.length }
    expect(decodeEvents(JSON.parse(JSON.stringify(payload)))).toEqual(every)
    expect(eventCount(payload)).toBe(every.length)
  })

  it('reads jobs queued before as JSON arrays', () => {
    const old = { e: [[0, 'c2', 'AB12CD34', ts, ts + 5]] }
    expect(decodeEvents(old)).toEqual([every[1]])
    expect(eventCount(old)).toBe(1)
  })

  it("shows a job's events decoded, and data of another form as it is", () => {
    expect(ingestJobView(JSON.parse(JSON.stringify(encodeEvents(every))))).toEqual({ events: every })
    expect(ingestJobView({ e: [[0, 'c2', 'AB12CD34', ts, ts + 5]] })).toEqual({ events: [every[1]] })
    for (const other of [
      null,
      'x',
      { userId: 'u1', creditId: 'c1' },
      { m: ['not packed'], n: 1 },
      { m: 'a string', n: 1 },
    ])
      expect(ingestJobView(other)).toEqual(other)
  })

  it('counts data of no known form as one event (it only sizes a group; reading it fails)', () => {
    const unknown = JSON.parse('{"x": 1}') as IngestPayload
    expect(eventCount(unknown)).toBe(1)
    expect(() => decodeEvents(unknown)).toThrow()
  })

  it('reads jobs queued before, with the events as objects', () => {
    expect(decodeEvents({ events: every })).toEqual(every)
    expect(eventCount({ events: every })).toBe(every.length)
  })
})
