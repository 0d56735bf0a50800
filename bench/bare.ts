import { join } from 'node:path'
import type { BareSingleRun } from './figures.ts'
import { cannon } from './load.ts'
import { type Child, CpuMeter, startChild } from './proc.ts'

/**
 * The bench's baseline server (bare-server.ts, a node:http server that reads the body and
 * answers 202): started as a child, and loaded with single events as the service is.
 */
export interface BareServer {
  bare: Child
  /** its URL for POST /v1/events */
  url: string
}

/** A bare server on a free port, once it listens. */
export async function startBare(root: string): Promise<BareServer> {
  const bare = startChild(
    'bare-server',
    process.execPath,
    ['--import', 'tsx', join(root, 'bench', 'bare-server.ts')],
    { env: { ...process.env, PORT: '0' }, cwd: root },
  )
  const line = await bare.waitForLine((l) => l.startsWith('{"port"'), 20_000)
  return { bare, url: `http://127.0.0.1:${(JSON.parse(line) as { port: number }).port}/v1/events` }
}

/**
 * The single-event load against a bare server: a warm-up, then autocannon for `durationS`,
 * and the CPU per request of the server and of this process. `others`: processes whose CPU
 * meanwhile is measured too (the service and its redis-server, idle beside it).
 */
export async function bareSingle(
  server: BareServer,
  load: { headers: Record<string, string>; connections: number; durationS: number },
  others?: { service: number; redis: number },
): Promise<BareSingleRun> {
  const target = { url: server.url, headers: load.headers, connections: load.connections }
  const body = JSON.stringify({ type: 'click', code: 'AAAAAAAA', visitor_id: 'v1' })
  await cannon({ ...target, body, durationS: 1 })
  const meter = new CpuMeter({ service: server.bare.pid })
  const othersMeter = others === undefined ? undefined : new CpuMeter(others)
  const single = await cannon({ ...target, body, durationS: load.durationS })
  const cpu = meter.per(single.ok)
  // per(1): the whole phase's CPU in µs, over its length
  const busy = othersMeter?.per(1)
  const coreUs = load.durationS * 1e6
  return {
    single,
    singleCpu: cpu,
    othersCores:
      busy === undefined ? undefined : { service: busy.service / coreUs, redis: busy.redis / coreUs },
  }
}
