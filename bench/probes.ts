import { Redis } from 'ioredis'
import { fixedRate, type Latencies } from './steady.ts'

/**
 * The latency probes of `npm run bench`'s steady phase, in a process of their own: GET
 * /v1/me/stats, GET /healthz, a redis-server PING and a GET on a bare server running beside
 * the service, each at a fixed rate, each latency
 * counted from when the request was due. Apart from the load generator, whose work (building
 * and sending 5,000 events a second, reading the SSE stream) would otherwise delay the
 * probes' own timers and count against the service. Warms up for a second, prints `ready`,
 * measures for the spec's duration, then prints one JSON line: the four latency lists
 * (sorted, ms). Input: a JSON ProbeSpec as the only argument.
 */
export interface ProbeSpec {
  statsUrl: string
  authHeaders: Record<string, string>
  statsPerSec: number
  durationMs: number
  /** also probed at half the stats rate, when given */
  healthUrl?: string
  redisPort?: number
  /**
   * a bare node:http server running beside the service, also probed at half the stats rate
   * when given: what the machine alone does to a request's latency at the same moments
   */
  bareUrl?: string
}

export interface ProbeResult {
  stats: Latencies
  health: Latencies
  redisPing: Latencies
  bare: Latencies
}

const none = (): Latencies => ({ samples: [], errors: 0 })

async function main(spec: ProbeSpec): Promise<ProbeResult> {
  const getOk =
    (url: string, headers: Record<string, string> = {}) =>
    async () => {
      const res = await fetch(url, { headers })
      await res.text()
      return res.status === 200 || res.status === 202
    }
  const pinger =
    spec.redisPort === undefined
      ? null
      : new Redis({ host: '127.0.0.1', port: spec.redisPort, maxRetriesPerRequest: 1 })
  pinger?.on('error', () => {})
  try {
    // warm up first (connections, JIT): a cold first request is the probe's, not the service's
    const warm = { ...spec, durationMs: 1_000 }
    await Promise.all([
      fixedRate(getOk(spec.statsUrl, spec.authHeaders), warm.statsPerSec, warm.durationMs),
      spec.healthUrl === undefined ? none() : fixedRate(getOk(spec.healthUrl), 20, warm.durationMs),
      pinger === null ? none() : fixedRate(async () => (await pinger.ping()) === 'PONG', 20, warm.durationMs),
      spec.bareUrl === undefined ? none() : fixedRate(getOk(spec.bareUrl), 20, warm.durationMs),
    ])
    process.stdout.write('ready\n')
    const [stats, health, redisPing, bare] = await Promise.all([
      fixedRate(getOk(spec.statsUrl, spec.authHeaders), spec.statsPerSec, spec.durationMs),
      spec.healthUrl === undefined
        ? none()
        : fixedRate(getOk(spec.healthUrl), spec.statsPerSec / 2, spec.durationMs),
      pinger === null
        ? none()
        : fixedRate(async () => (await pinger.ping()) === 'PONG', spec.statsPerSec / 2, spec.durationMs),
      spec.bareUrl === undefined
        ? none()
        : fixedRate(getOk(spec.bareUrl), spec.statsPerSec / 2, spec.durationMs),
    ])
    return { stats, health, redisPing, bare }
  } finally {
    pinger?.disconnect()
  }
}

const arg = process.argv[2]
if (arg === undefined) throw new Error('usage: probes.ts <ProbeSpec JSON>')
main(JSON.parse(arg) as ProbeSpec).then(
  (r) => {
    process.stdout.write(`${JSON.stringify(r)}\n`)
    process.exit(0)
  },
  (e: unknown) => {
    process.stderr.write(`probes failed: ${e instanceof Error ? e.message : String(e)}\n`)
    process.exit(1)
  },
)
