import { httpAgent, send } from './load.ts'
import type { ProbeResult } from './probes.ts'

/**
 * The steady phase of `npm run bench`: a constant ingest load (open loop: batches are sent on
 * a clock, whether or not earlier ones were answered), during which
 * - a probe click for a second referrer is sent every `probeEveryMs`, and an SSE client on
 *   that referrer's /v1/me/stream notes when its total_clicks first counts the probe:
 *   freshness = that moment - the probe's 202;
 * - GET /v1/me/stats is sent at a fixed rate, latency measured from the intended send time
 *   (so a stalled server is not hidden by fewer requests: no coordinated omission).
 */

export interface Latencies {
  /** sorted, ms */
  samples: number[]
  errors: number
}

export const pct = (sorted: readonly number[], q: number): number =>
  sorted.length === 0
    ? Number.NaN
    : (sorted[Math.min(sorted.length - 1, Math.ceil(q * sorted.length) - 1)] ?? 0)

/** Requests at `ratePerSec` for `durationMs`; each latency counts from when it was due, or sent if earlier. */
export async function fixedRate(
  send: () => Promise<boolean>,
  ratePerSec: number,
  durationMs: number,
): Promise<Latencies> {
  const samples: number[] = []
  let errors = 0
  const every = 1000 / ratePerSec
  const t0 = performance.now()
  const inFlight = new Set<Promise<void>>()
  for (let i = 0; ; i++) {
    const due = t0 + i * every
    if (due - t0 >= durationMs) break
    const wait = due - performance.now()
    if (wait > 0) await new Promise((r) => setTimeout(r, wait))
    // a timer can fire up to ~1 ms before `due` (libuv's clock is in whole ms): a request
    // sent early counts from when it was sent, one sent late from when it was due
    const from = Math.min(due, performance.now())
    const p = send().then(
      (ok) => {
        if (ok) samples.push(performance.now() - from)
        else errors++
      },
      () => {
        errors++
      },
    )
    inFlight.add(p)
    void p.finally(() => inFlight.delete(p))
  }
  await Promise.all(inFlight)
  return { samples: samples.sort((a, b) => a - b), errors }
}

/** The `stats` events of one referrer's SSE stream, as (time seen, total_clicks). */
export class StatsStream {
  private readonly seen: Array<{ t: number; clicks: number }> = []
  private readonly abort = new AbortController()
  private done: Promise<void> = Promise.resolve()
  private listeners = new Set<(clicks: number, t: number) => void>()

  async open(url: string, headers: Record<string, string>): Promise<void> {
    const res = await fetch(url, { headers, signal: this.abort.signal })
    if (res.status !== 200 || res.body === null) throw new Error(`SSE ${url}: ${res.status}`)
    const reader = res.body.getReader()
    const decoder = new TextDecoder()
    let first: () => void = () => undefined
    const firstSeen = new Promise<void>((r) => {
      first = r
    })
    this.done = (async () => {
      let buf = ''
      try {
        for (;;) {
          const { value, done } = await reader.read()
          if (done) return
          buf += decoder.decode(value, { stream: true })
          for (let i = buf.indexOf('\n\n'); i >= 0; i = buf.indexOf('\n\n')) {
            const message = buf.slice(0, i)
            buf = buf.slice(i + 2)
            this.onMessage(message)
            first()
          }
        }
      } catch (e) {
        if (!this.abort.signal.aborted) throw e
      }
    })()
    // the stream sends the current stats when it opens
    await Promise.race([firstSeen, this.done])
  }

  private onMessage(message: string): void {
    const t = performance.now()
    let event = 'message'
    let data = ''
    for (const line of message.split('\n')) {
      if (line.startsWith('event:')) event = line.slice(6).trim()
      else if (line.startsWith('data:')) data += line.slice(5).trim()
    }
    if (event !== 'stats') return
    const clicks = (JSON.parse(data) as { total_clicks: number }).total_clicks
    this.seen.push({ t, clicks })
    for (const l of this.listeners) l(clicks, t)
  }

  get lastClicks(): number {
    return this.seen.at(-1)?.clicks ?? 0
  }

  onStats(l: (clicks: number, t: number) => void): () => void {
    this.listeners.add(l)
    return () => this.listeners.delete(l)
  }

  async close(): Promise<void> {
    this.abort.abort()
    await this.done.catch(() => undefined)
  }
}

export interface SteadyOptions {
  ingestUrl: string
  ingestHeaders: Record<string, string>
  /** the load's referral code */
  loadCode: string
  /** the probed referrer's code, its SSE stream and its stats URL */
  probeCode: string
  streamUrl: string
  statsUrl: string
  authHeaders: Record<string, string>
  eventsPerSec: number
  batch: number
  durationMs: number
  probeEveryMs: number
  statsPerSec: number
  /**
   * the latency probes (GET /v1/me/stats at statsPerSec; GET /healthz, a redis-server PING
   * and a GET on a bare server beside the service at half that, to tell apart what the stats
   * latency is made of), run in a process of their own for the phase's duration (probes.ts)
   */
  probes: () => Promise<{ done: Promise<ProbeResult> }>
}

export interface SteadyRun {
  /** ms from a probe's 202 to the SSE message counting it, sorted */
  freshness: number[]
  probes: number
  /** probes never seen on the stream within 5 s of the end */
  unseen: number
  stats: Latencies
  /** GET /healthz (no auth, no Redis): the service's event loop and the machine */
  health: Latencies
  /** PING to redis-server on a connection of the bench's own: redis-server and the machine */
  redisPing: Latencies
  /** GET on a bare node:http server running beside the service: the machine alone */
  bare: Latencies
  /** events of load batches answered 202 / sent */
  loadAccepted: number
  loadSent: number
  loadRefused: number
  /** the most load requests awaiting an answer at once */
  maxOutstanding: number
  /** events per second the load achieved (202s over the phase) */
  achievedPerSec: number
}

export async function steadyLoad(o: SteadyOptions): Promise<SteadyRun> {
  // warm and measuring before the load's clock starts
  const probes = await o.probes()
  const stream = new StatsStream()
  await stream.open(o.streamUrl, o.authHeaders)
  const base = stream.lastClicks
  const run: SteadyRun = {
    freshness: [],
    probes: 0,
    unseen: 0,
    stats: { samples: [], errors: 0 },
    health: { samples: [], errors: 0 },
    redisPing: { samples: [], errors: 0 },
    bare: { samples: [], errors: 0 },
    loadAccepted: 0,
    loadSent: 0,
    loadRefused: 0,
    maxOutstanding: 0,
    achievedPerSec: 0,
  }
  const agent = httpAgent()
  const t0 = performance.now()
  const end = t0 + o.durationMs

  // probe k (1-based) is counted once total_clicks >= base + k
  const acked: number[] = []
  const seenAt: number[] = []
  stream.onStats((clicks, t) => {
    for (let k = seenAt.length + 1; k <= clicks - base; k++) seenAt.push(t)
  })
  const probeClicks = (async () => {
    for (let k = 1; performance.now() < end; k++) {
      const next = performance.now() + o.probeEveryMs
      const res = await send(agent, o.ingestUrl, {
        method: 'POST',
        headers: o.ingestHeaders,
        body: `{"type":"click","id":"probe-${k}","code":"${o.probeCode}"}`,
      })
      const t = performance.now()
      if (res.status !== 202) throw new Error(`probe ${k}: ${res.status}`)
      acked.push(t)
      run.probes = k
      const wait = next - performance.now()
      if (wait > 0) await new Promise((r) => setTimeout(r, wait))
    }
  })()

  const every = (1000 * o.batch) / o.eventsPerSec
  let outstanding = 0
  const loadRequests = new Set<Promise<void>>()
  const load = (async () => {
    for (let i = 0; ; i++) {
      const due = t0 + i * every
      if (due >= end) break
      const wait = due - performance.now()
      if (wait > 0) await new Promise((r) => setTimeout(r, wait))
      const parts: string[] = []
      for (let j = 0; j < o.batch; j++)
        parts.push(`{"type":"click","id":"st-${i}-${j}","code":"${o.loadCode}"}`)
      outstanding++
      run.maxOutstanding = Math.max(run.maxOutstanding, outstanding)
      run.loadSent += o.batch
      const p = send(agent, o.ingestUrl, {
        method: 'POST',
        headers: o.ingestHeaders,
        body: `{"events":[${parts.join(',')}]}`,
      })
        .then((res) => {
          if (res.status === 202) run.loadAccepted += o.batch
          else run.loadRefused++
        })
        .catch(() => {
          run.loadRefused++
        })
        .finally(() => {
          outstanding--
        })
      loadRequests.add(p)
      void p.finally(() => loadRequests.delete(p))
    }
  })()

  await Promise.all([probeClicks, load])
  await Promise.all(loadRequests)
  agent.destroy()
  run.achievedPerSec = run.loadAccepted / ((performance.now() - t0) / 1000)
  const measured = await probes.done
  run.stats = measured.stats
  run.health = measured.health
  run.redisPing = measured.redisPing
  run.bare = measured.bare
  const deadline = performance.now() + 5_000
  while (seenAt.length < acked.length && performance.now() < deadline) {
    await new Promise((r) => setTimeout(r, 20))
  }
  await stream.close()
  run.freshness = acked
    .map((t, i) => {
      const seen = seenAt[i]
      return seen === undefined ? Number.NaN : Math.max(0, seen - t)
    })
    .filter((f) => Number.isFinite(f))
    .sort((a, b) => a - b)
  run.unseen = acked.length - run.freshness.length
  return run
}
