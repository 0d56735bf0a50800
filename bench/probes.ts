import { Redis } from 'ioredis'
import { httpAgent, send } from './load.ts'
import { fixedRate, type Latencies } from './steady.ts'

/**
 * The latency probes of `npm run bench`'s steady phase, in a process of their own: GET
 * /v1/me/stats, GET /healthz, a redis-server PING and a GET on a bare server running beside
 * the service, each at a fixed rate, each latency counted from when the request was due. Apart from the load generator, whose work (building
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
  const agent = httpAgent()
  const getOk =
    (url: string, headers: Record<string, string> = {}) =>
    async () => {
      const { status } = await send(agent, url, { headers })
      return status === 200 || status === 202
    }
  const pinger =
    spec.redisPort === undefined
      ? null
      : new Redis({ host: '127.0.0.1', port: spec.redisPort, maxRetriesPerRequest: 1 })
  pinger?.on('error', () => {})
  // the optional probes are null where the spec leaves them out
  const senders = {
    stats: getOk(spec.statsUrl, spec.authHeaders),
    health: spec.healthUrl === undefined ? null : getOk(spec.healthUrl),
    redisPing: pinger === null ? null : async () => (await pinger.ping()) === 'PONG',
    bare: spec.bareUrl === undefined ? null : getOk(spec.bareUrl),
  }
  const at = (probe: (() => Promise<boolean>) | null, ratePerSec: number, durationMs: number) =>
    probe === null ? Promise.resolve(none()) : fixedRate(probe, ratePerSec, durationMs)
  /** stats at its rate, the others at `sideRate`, all for `durationMs` */
  const round = async (sideRate: number, durationMs: number): Promise<ProbeResult> => {
    const [stats, health, redisPing, bare] = await Promise.all([
      at(senders.stats, spec.statsPerSec, durationMs),
      at(senders.health, sideRate, durationMs),
      at(senders.redisPing, sideRate, durationMs),
      at(senders.bare, sideRate, durationMs),
    ])
    return { stats, health, redisPing, bare }
  }
  try {
    // warm up first (connections, JIT): a cold first request is the probe's, not the service's
    await round(20, 1_000)
    process.stdout.write('ready\n')
    return await round(spec.statsPerSec / 2, spec.durationMs)
  } finally {
    pinger?.disconnect()
    agent.destroy()
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
