import type { ResolvedConfig } from '@referral/core'
import { SignJWT } from 'jose'

/**
 * Demo traffic, sent through the service's own public API so everything on the dashboards
 * went through the real pipeline: a few months of history for a handful of referrers (the
 * first is `demo-user`, whom the demo login signs in as), then a trickle of live events.
 */

export interface DemoOptions {
  days: number
  referrers: number
  /** clicks a referrer gets per day, on average */
  clicksPerDay: number
  seed?: number
}

export interface DemoSummary {
  events: number
  referrers: string[]
  /** clicks sent per referrer */
  clicks: Record<string, number>
}

/** A small deterministic generator (mulberry32), so a demo can be replayed. */
export function makeRandom(seed: number): () => number {
  let a = seed >>> 0
  return () => {
    a = (a + 0x6d2b79f5) >>> 0
    let t = a
    t = Math.imul(t ^ (t >>> 15), t | 1)
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61)
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296
  }
}

const SOURCES = ['twitter', 'linkedin', 'newsletter', 'blog', 'youtube', '']
const AGENTS = [
  'Mozilla/5.0 (Macintosh; Intel Mac OS X 14_0) AppleWebKit/605.1.15 (KHTML, like Gecko) Version/17.0 Safari/605.1.15',
  'Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/124.0 Safari/537.36',
  'Mozilla/5.0 (iPhone; CPU iPhone OS 17_0 like Mac OS X) AppleWebKit/605.1.15 (KHTML, like Gecko) Mobile/15E148 Safari/604.1',
  'Mozilla/5.0 (X11; Linux x86_64; rv:125.0) Gecko/20100101 Firefox/125.0',
]
const COUNTRIES = ['US', 'GB', 'DE', 'FR', 'IN', 'BR', 'CA']
const PLANS = [
  { plan: 'starter', cents: 900 },
  { plan: 'pro', cents: 2900 },
  { plan: 'scale', cents: 9900 },
]

type DemoEvent = Record<string, string | number>

export class DemoClient {
  private codes = new Map<string, string>()
  constructor(
    private readonly baseUrl: string,
    private readonly config: ResolvedConfig,
  ) {}

  async codeOf(user: string): Promise<string> {
    const known = this.codes.get(user)
    if (known !== undefined) return known
    const token = await new SignJWT({})
      .setProtectedHeader({ alg: 'HS256' })
      .setSubject(user)
      .setExpirationTime('1h')
      .sign(new TextEncoder().encode(this.config.jwtSecret))
    const res = await fetch(`${this.baseUrl}/v1/me/referral`, {
      headers: { authorization: `Bearer ${token}` },
    })
    if (!res.ok) throw new Error(`demo: GET /v1/me/referral answered ${res.status}`)
    const { code } = (await res.json()) as { code: string }
    this.codes.set(user, code)
    return code
  }

  async send(events: DemoEvent[]): Promise<void> {
    for (let i = 0; i < events.length; i += 1000) {
      const res = await fetch(`${this.baseUrl}/v1/events`, {
        method: 'POST',
        headers: { authorization: `Bearer ${this.config.ingestApiKey}`, 'content-type': 'application/json' },
        body: JSON.stringify({ events: events.slice(i, i + 1000) }),
      })
      if (res.status !== 202)
        throw new Error(`demo: POST /v1/events answered ${res.status}: ${await res.text()}`)
    }
  }
}

/** One visitor's story: a click, maybe a signup, maybe purchases; all events in time order. */
function visitorEvents(rand: () => number, code: string, n: string, at: number, now: number): DemoEvent[] {
  const pick = <T>(xs: readonly T[]): T => xs[Math.floor(rand() * xs.length)] as T
  const out: DemoEvent[] = [
    {
      type: 'click',
      id: `demo-c-${n}`,
      code,
      visitor_id: `demo-v-${n}`,
      user_agent: pick(AGENTS),
      utm_source: pick(SOURCES),
      country: pick(COUNTRIES),
      ts: at,
    },
  ]
  if (rand() > 0.3) return out
  const signedUp = at + Math.floor(rand() * 3 * 86_400_000)
  if (signedUp > now) return out
  out.push({
    type: 'signup',
    id: `demo-s-${n}`,
    user_id: `demo-u-${n}`,
    visitor_id: `demo-v-${n}`,
    ts: signedUp,
  })
  if (rand() > 0.45) return out
  let t = signedUp
  for (let k = 0; k < 1 + Math.floor(rand() * 3); k++) {
    t += Math.floor(rand() * 20 * 86_400_000)
    if (t > now) break
    const plan = pick(PLANS)
    out.push({
      type: 'purchase',
      id: `demo-p-${n}-${k}`,
      user_id: `demo-u-${n}`,
      amount_cents: plan.cents,
      plan: plan.plan,
      ts: t,
    })
  }
  return out
}

/** Months of history through the ingest API; returns what was sent. */
export async function seedHistory(
  client: DemoClient,
  opts: DemoOptions,
  now = Date.now(),
): Promise<DemoSummary> {
  const rand = makeRandom(opts.seed ?? 7)
  const referrers = [
    'demo-user',
    ...Array.from({ length: opts.referrers - 1 }, (_, i) => `demo-referrer-${i + 1}`),
  ]
  const events: DemoEvent[] = []
  const clicks: Record<string, number> = {}
  for (const [r, user] of referrers.entries()) {
    const code = await client.codeOf(user)
    // some referrers are much better at it than others
    const perDay = opts.clicksPerDay * (r === 0 ? 1.5 : 0.3 + rand())
    const visitors = Math.round(perDay * opts.days)
    clicks[user] = visitors
    for (let v = 0; v < visitors; v++) {
      const at = now - Math.floor(rand() * opts.days * 86_400_000)
      events.push(...visitorEvents(rand, code, `${r}-${v}`, at, now))
    }
  }
  // in time order, as a real history arrives
  events.sort((a, b) => Number(a.ts) - Number(b.ts))
  await client.send(events)
  return { events: events.length, referrers, clicks }
}

/** A live visitor every `everyMs`, until the returned stop is called. */
export function startLiveTraffic(
  client: DemoClient,
  referrers: readonly string[],
  everyMs = 1500,
): () => void {
  const rand = makeRandom(Date.now() % 100_000)
  let n = 0
  let stopped = false
  const tick = async () => {
    const user = referrers[Math.floor(rand() * referrers.length)] ?? 'demo-user'
    const code = await client.codeOf(user)
    await client.send(visitorEvents(rand, code, `live-${Date.now()}-${n++}`, Date.now(), Date.now()))
  }
  const timer = setInterval(() => {
    if (!stopped) void tick().catch((e: Error) => process.stderr.write(`demo traffic: ${e.message}\n`))
  }, everyMs)
  timer.unref()
  return () => {
    stopped = true
    clearInterval(timer)
  }
}
