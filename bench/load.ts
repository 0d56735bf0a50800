import { Agent, request } from 'node:http'
import autocannon from 'autocannon'
import { SignJWT } from 'jose'

/** The load generators of `npm run bench`: autocannon for single requests, node:http loops for batches. */

export interface Answer {
  status: number
  body: string
}

/** The keep-alive connections `send` goes over; `destroy()` it when done. */
export function httpAgent(): Agent {
  return new Agent({ keepAlive: true, maxSockets: 256 })
}

/**
 * One request over node:http, answered with its status and body. The batch loops, the
 * steady phase's load and the probes use it rather than fetch: on this machine fetch
 * (undici) cost the client ~2x the CPU and gave a bare server's GET a p99 of 3-8 ms where
 * this gives 1.5-2.8.
 */
export function send(
  agent: Agent,
  url: string,
  opts: {
    method?: 'GET' | 'POST'
    headers?: Record<string, string>
    body?: string
    /** no answer by then: the request is destroyed and the promise rejects */
    timeoutMs?: number
  } = {},
): Promise<Answer> {
  return new Promise((resolve, reject) => {
    const headers =
      opts.body === undefined
        ? opts.headers
        : { ...opts.headers, 'content-length': String(Buffer.byteLength(opts.body)) }
    const req = request(url, { agent, method: opts.method ?? 'GET', headers }, (res) => {
      const chunks: Buffer[] = []
      res.on('data', (c: Buffer) => chunks.push(c))
      res.on('end', () => resolve({ status: res.statusCode ?? 0, body: Buffer.concat(chunks).toString() }))
      res.on('error', reject)
    })
    req.on('error', reject)
    if (opts.timeoutMs !== undefined) {
      req.setTimeout(opts.timeoutMs, () => req.destroy(new Error(`no answer in ${opts.timeoutMs} ms`)))
    }
    req.end(opts.body)
  })
}

export interface CannonFigures {
  /** 2xx responses per second over the measured duration */
  okPerSec: number
  /** all responses per second (autocannon's mean of per-second samples) */
  reqPerSecMean: number
  p50: number
  p99: number
  ok: number
  non2xx: number
  status5xx: number
  errors: number
  timeouts: number
  durationS: number
}

export interface CannonTarget {
  url: string
  headers: Record<string, string>
  body: string
  connections: number
  durationS: number
}

export async function cannon(t: CannonTarget): Promise<CannonFigures> {
  const r = await autocannon({
    url: t.url,
    method: 'POST',
    headers: t.headers,
    body: t.body,
    connections: t.connections,
    duration: t.durationS,
    timeout: 10,
  })
  return {
    okPerSec: r['2xx'] / r.duration,
    reqPerSecMean: r.requests.mean,
    p50: r.latency.p50,
    p99: r.latency.p99,
    ok: r['2xx'],
    non2xx: r.non2xx,
    status5xx: r['5xx'],
    errors: r.errors,
    timeouts: r.timeouts,
    durationS: r.duration,
  }
}

export interface BatchRun {
  /** events of the batches answered 202 */
  accepted: number
  /** 202 responses whose `accepted` field was not the batch size (when checked) */
  acceptedMismatch: number
  requests: number
  /** responses other than 202, by status */
  refused: Record<string, number>
  /** network errors and timeouts */
  errors: number
  firstErrors: string[]
  /** performance.now() when the first request was sent / the last 202 arrived */
  tFirstSent: number
  tLast202: number
}

export interface BatchTarget {
  url: string
  headers: Record<string, string>
  code: string
  loops: number
  batchSize: number
  durationMs: number
  /** distinguishes the ids of separate runs against the same service */
  idPrefix: string
  /** check that each 202 body says `accepted: batchSize` (the bare server does not parse) */
  checkAccepted: boolean
}

function batchBody(t: BatchTarget, loop: number, seq: number): string {
  const parts: string[] = []
  for (let i = 0; i < t.batchSize; i++) {
    parts.push(`{"type":"click","id":"${t.idPrefix}-${loop}-${seq}-${i}","code":"${t.code}"}`)
  }
  return `{"events":[${parts.join(',')}]}`
}

/** K loops, each POSTing a batch and waiting for the answer before the next, for `durationMs`. */
export async function batchLoops(t: BatchTarget): Promise<BatchRun> {
  const run: BatchRun = {
    accepted: 0,
    acceptedMismatch: 0,
    requests: 0,
    refused: {},
    errors: 0,
    firstErrors: [],
    tFirstSent: performance.now(),
    tLast202: 0,
  }
  const deadline = run.tFirstSent + t.durationMs
  const agent = httpAgent()
  const loop = async (n: number) => {
    for (let seq = 0; performance.now() < deadline; seq++) {
      const body = batchBody(t, n, seq)
      try {
        const { status, body: text } = await send(agent, t.url, {
          method: 'POST',
          headers: t.headers,
          body,
          timeoutMs: 30_000,
        })
        run.requests++
        if (status === 202) {
          run.accepted += t.batchSize
          if (t.checkAccepted && (JSON.parse(text) as { accepted?: unknown }).accepted !== t.batchSize) {
            run.acceptedMismatch++
          }
          run.tLast202 = performance.now()
        } else {
          run.refused[status] = (run.refused[status] ?? 0) + 1
          if (run.firstErrors.length < 5) run.firstErrors.push(`${status}: ${text.slice(0, 200)}`)
        }
      } catch (e) {
        run.errors++
        if (run.firstErrors.length < 5) run.firstErrors.push(e instanceof Error ? e.message : String(e))
        // a refused connection must not become a busy loop
        await new Promise((r) => setTimeout(r, 50))
      }
    }
  }
  await Promise.all(Array.from({ length: t.loops }, (_, n) => loop(n)))
  agent.destroy()
  return run
}

/** A dashboard token (HS256) for `sub`, as the service's auth checks it: a referrer's unless `role` says admin. */
export function signToken(
  secret: string,
  sub: string,
  opts: { role?: 'referrer' | 'admin'; expiresIn?: string } = {},
): Promise<string> {
  return new SignJWT(opts.role === undefined ? {} : { role: opts.role })
    .setProtectedHeader({ alg: 'HS256' })
    .setSubject(sub)
    .setExpirationTime(opts.expiresIn ?? '1h')
    .sign(new TextEncoder().encode(secret))
}

export async function getJson<T>(url: string, headers: Record<string, string>): Promise<T> {
  const res = await fetch(url, { headers, signal: AbortSignal.timeout(10_000) })
  const text = await res.text()
  if (!res.ok) throw new Error(`GET ${url}: ${res.status} ${text.slice(0, 200)}`)
  return JSON.parse(text) as T
}

/** Polls `url` until it answers 200, the process dies (`alive` false) or `timeoutMs` passes. */
export async function waitFor200(url: string, timeoutMs: number, alive: () => boolean): Promise<number> {
  const t0 = performance.now()
  let last = 'no answer'
  while (performance.now() - t0 < timeoutMs) {
    if (!alive()) throw new Error(`the process behind ${url} exited while starting`)
    try {
      const res = await fetch(url, { signal: AbortSignal.timeout(2_000) })
      await res.text()
      if (res.status === 200) return performance.now() - t0
      last = `status ${res.status}`
    } catch (e) {
      last = e instanceof Error ? e.message : String(e)
    }
    await new Promise((r) => setTimeout(r, 100))
  }
  throw new Error(`${url} did not answer 200 in ${timeoutMs} ms (last: ${last})`)
}
