import { createServer, type Server } from 'node:http'
import type { AddressInfo } from 'node:net'
import { AppError, makeLogger, type QueuedEvent } from '@referral/core'
import { Hono } from 'hono'
import { requestId } from 'hono/request-id'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { Backlog } from '../src/backlog.ts'
import { directIngest } from '../src/direct-ingest.ts'
import { makeErrorHandler } from '../src/errors.ts'
import type { EventSink } from '../src/group-commit.ts'
import { eventRoutes } from '../src/routes/events.ts'

const KEY = 'direct-ingest-test-key-0123456789'

/** Where both paths put their events: records them, or refuses like a queue that is down. */
class RecordingSink implements EventSink {
  submitted: QueuedEvent[][] = []
  down = false
  async submit(events: QueuedEvent[]): Promise<void> {
    if (this.down) {
      throw new AppError(
        'unavailable',
        'the event queue is unavailable; nothing was accepted, retry later',
        [],
        {
          headers: { 'Retry-After': '1' },
        },
      )
    }
    this.submitted.push(events)
  }
}

interface Answer {
  status: number
  body: unknown
  headers: Record<string, string | null>
  events: unknown[]
}

/**
 * POST /v1/events has two doors: the server's direct node:http path and the Hono route (used
 * by app.request). Every kind of request gets the same answer and queues the same events
 * through either.
 */
describe('direct ingest path', () => {
  const log = makeLogger({ logLevel: 'silent' })
  const lifecycle = { draining: false }
  const sinks = { direct: new RecordingSink(), hono: new RecordingSink() }
  let waiting = 0
  const backlog = new Backlog(async () => waiting, 10, 20)
  let server: Server
  let base: string
  const hono = new Hono()
  hono.onError(makeErrorHandler(log))
  hono.use('*', requestId({ limitLength: 128 }))
  hono.route('/', eventRoutes({ ingestApiKey: KEY, backlog, events: sinks.hono }))

  beforeAll(async () => {
    backlog.start()
    const direct = directIngest({ ingestApiKey: KEY, backlog, events: sinks.direct, lifecycle, log })
    server = createServer((req, res) => {
      if (!direct(req, res)) {
        res.writeHead(404)
        res.end()
      }
    })
    await new Promise<void>((res) => server.listen(0, '127.0.0.1', res))
    base = `http://127.0.0.1:${(server.address() as AddressInfo).port}`
  })
  afterAll(async () => {
    backlog.stop()
    await new Promise((res) => server.close(res))
  })

  const settledShape = (events: QueuedEvent[] | undefined) =>
    (events ?? []).map(({ ts: _ts, received_at: _r, ...rest }) => rest)

  async function read(res: Response, sink: RecordingSink, before: number): Promise<Answer> {
    const text = await res.text()
    return {
      status: res.status,
      body: text === '' ? null : (JSON.parse(text) as unknown),
      headers: {
        'content-type': res.headers.get('content-type'),
        'retry-after': res.headers.get('retry-after'),
        'x-request-id-given': res.headers.get('x-request-id') === 'req-42' ? 'kept' : 'made',
        connection: res.headers.get('connection') === 'close' ? 'close' : 'keep-alive',
      },
      events: sink.submitted.slice(before).map(settledShape),
    }
  }

  async function both(body: string | Uint8Array, headers: Record<string, string>): Promise<[Answer, Answer]> {
    const init = { method: 'POST', headers, body }
    const d0 = sinks.direct.submitted.length
    const direct = await read(await fetch(`${base}/v1/events`, init), sinks.direct, d0)
    const h0 = sinks.hono.submitted.length
    const viaHono = await read(await hono.request('/v1/events', init), sinks.hono, h0)
    return [direct, viaHono]
  }

  const json = { 'content-type': 'application/json', authorization: `Bearer ${KEY}` }
  const click = (id: string) => ({ type: 'click', id, code: 'abcdefgh', visitor_id: `v-${id}` })

  it('accepts a single event and a batch with the same answer and the same queued events', async () => {
    const [d1, h1] = await both(JSON.stringify(click('c1')), json)
    expect(d1.status).toBe(202)
    expect(d1.body).toEqual({ accepted: 1, ids: ['c1'] })
    expect(d1.events).toEqual([[{ type: 'click', id: 'c1', code: 'ABCDEFGH', visitor_id: 'v-c1' }]])
    expect(d1).toEqual(h1)

    const batch = { events: [click('c2'), { type: 'purchase', id: 'p1', user_id: 'u1', amount_cents: 999 }] }
    const [d2, h2] = await both(JSON.stringify(batch), { ...json, 'x-request-id': 'req-42' })
    expect(d2.status).toBe(202)
    expect(d2.headers['x-request-id-given']).toBe('kept')
    expect(d2.events[0]).toHaveLength(2)
    expect(d2).toEqual(h2)
  })

  it('refuses every kind of bad request alike, queueing nothing', async () => {
    const before = { d: sinks.direct.submitted.length, h: sinks.hono.submitted.length }
    const cases: Array<[string, string | Uint8Array, Record<string, string>, number]> = [
      ['no key', JSON.stringify(click('x')), { 'content-type': 'application/json' }, 401],
      ['wrong key', JSON.stringify(click('x')), { ...json, authorization: 'Bearer nope' }, 401],
      ['not JSON', 'type=click', { ...json, 'content-type': 'text/plain' }, 415],
      ['malformed', '{"type":"click",', json, 400],
      ['invalid UTF-8', new Uint8Array([0x7b, 0x22, 0xff, 0x22, 0x7d]), json, 400],
      [
        'invalid events',
        JSON.stringify({ events: [click('ok'), { type: 'click' }, { type: 'nope' }] }),
        json,
        400,
      ],
      ['empty batch', '{"events":[]}', json, 400],
      [
        'too many',
        JSON.stringify({ events: Array.from({ length: 1001 }, (_, i) => click(`m${i}`)) }),
        json,
        413,
      ],
      [
        'over 1 MiB',
        JSON.stringify({ events: [{ ...click('big'), url: 'x'.repeat(1_100_000) }] }),
        json,
        413,
      ],
      ['bad request id', JSON.stringify({ type: 'click' }), { ...json, 'x-request-id': 'a b\u00e9' }, 400],
    ]
    for (const [name, body, headers, status] of cases) {
      const [d, h] = await both(body, headers)
      expect(d.status, name).toBe(status)
      expect(d, name).toEqual(h)
      expect((d.body as { error: { message: string } }).error.message.length, name).toBeGreaterThan(5)
    }
    expect(sinks.direct.submitted.length).toBe(before.d)
    expect(sinks.hono.submitted.length).toBe(before.h)
  })

  it('answers 503 with Retry-After when the queue is down or too deep', async () => {
    sinks.direct.down = true
    sinks.hono.down = true
    const [d, h] = await both(JSON.stringify(click('down')), json)
    sinks.direct.down = false
    sinks.hono.down = false
    expect(d.status).toBe(503)
    expect(d.headers['retry-after']).toBe('1')
    expect(d).toEqual(h)

    waiting = 11
    await expect.poll(() => backlog.waitingJobs).toBe(11)
    const [dd, hh] = await both(JSON.stringify(click('deep')), json)
    waiting = 0
    expect(dd.status).toBe(503)
    expect(dd.headers['retry-after']).toBe('2')
    expect(dd).toEqual(hh)
  })

  it('leaves every other request to Hono', async () => {
    const res = await fetch(`${base}/v1/eventsx`, { method: 'POST', headers: json, body: '{}' })
    expect(res.status).toBe(404)
    const get = await fetch(`${base}/v1/events`)
    expect(get.status).toBe(404)
  })
})
