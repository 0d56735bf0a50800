import { mkdtempSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { httpAgent, send, signToken, waitFor200 } from './load.ts'
import { embeddedRedis } from './pipeline.ts'
import { freePort, npmStart, sleep, startChild, stopChild, trackPid, trackTmpDir } from './proc.ts'
import { fmt } from './report.ts'
import { pct } from './steady.ts'

/** What `bench/queries.ts --data-dir` prints last: the seed's clock and each case's figures (ms). */
export interface QuerySummary {
  now: number
  /** events seeded */
  events: number
  /** timed runs of each case (5 quick: its p95 is then the slowest) */
  runs: number
  cases: Record<string, { p50: number; p95: number }>
}

/**
 * The in-process cases the reads over HTTP are compared with, by name. The service starts on
 * the history as queries.ts leaves it, after its last cases added a click after 1 in 50
 * signups: the funnel's comparable case is the one measured on that data (its second pass
 * running), not the seed's. The earnings series reads clicks from an hourly rollup, a row per
 * referrer and hour either way.
 */
export const EARNINGS_CASE = 'referrer earnings, 30 days by day (GET /v1/me/earnings)'
export const FUNNEL_CASE = 'admin funnel, 30 days, 7-day window (funnel_hours)'
export const FUNNEL_RECLICK_CASE =
  'admin funnel, 30 days, 1 in 50 signed-up visitors clicking again (funnel_hours)'

export interface Timed {
  p50: number
  p95: number
  max: number
  runs: number
}

export interface DashboardRun {
  /** queries.ts's own table, each query in-process (no HTTP) */
  table: string[]
  inProcess: QuerySummary
  /** the same reads through the service: auth, route, ClickHouse, JSON */
  earnings: Timed
  funnel: Timed
  /** the dashboard service's log lines at warn or above, or on stderr */
  problems: string[]
}

export interface DashboardSpec {
  root: string
  quick: boolean
  /** the service's environment but for DATA_DIR, PORT and the database */
  env: NodeJS.ProcessEnv
  jwtSecret: string
  log: (msg: string) => void
}

const DAY = 86_400_000

/** The events queries.ts seeds: 10M, the targets' scale; 200k quick, for the quick bench's minute. */
export const SEED_EVENTS = { full: 10_000_000, quick: 200_000 } as const

/**
 * The dashboard's reads over a seeded history (SEED_EVENTS): queries.ts seeds
 * a data directory and times each query in-process, then the service starts on that very
 * history (as `npm start` would, its own redis-server beside it) and the two reads with
 * targets are timed over HTTP, 40 times each (20 quick), one request at a time after a warm-up, against
 * their in-process p95 of the same run.
 */
export async function dashboardReads(spec: DashboardSpec): Promise<DashboardRun> {
  const dataDir = trackTmpDir(mkdtempSync(join(tmpdir(), 'ra-bench-dash-')))
  const seedArgs = [
    '--import',
    'tsx',
    join(spec.root, 'bench', 'queries.ts'),
    `--data-dir=${dataDir}`,
    ...(spec.quick ? ['--quick'] : []),
  ]
  spec.log(
    `dashboard: seeding ${fmt.int(SEED_EVENTS[spec.quick ? 'quick' : 'full'])} events, the queries in-process`,
  )
  const seeder = startChild('queries', process.execPath, seedArgs, { env: process.env, cwd: spec.root })
  const summaryLine = await seeder.waitForLine((l) => l.startsWith('{"now"'), 600_000)
  // its summary is its last line: it only has chDB to close
  const exit = await Promise.race([seeder.exited, sleep(60_000).then(() => undefined)])
  if (exit === undefined) {
    await stopChild(seeder, 'SIGTERM', 5_000)
    throw new Error('bench/queries.ts did not exit within 60 s of its summary')
  }
  if (exit.code !== 0) throw new Error(`bench/queries.ts exited with ${exit.code}`)
  const inProcess = JSON.parse(summaryLine) as QuerySummary
  // its table, from the lines kept of its output (the last 200, stderr's among them)
  const first = seeder.lines.findIndex((l) => l.startsWith('| query'))
  const table =
    first < 0
      ? ["(queries.ts's table is not among the lines kept of its output)"]
      : seeder.lines.slice(first, seeder.lines.indexOf(summaryLine))
  while (table.at(-1) === '') table.pop()

  const port = await freePort()
  const env: NodeJS.ProcessEnv = Object.assign({}, spec.env, {
    DATA_DIR: dataDir,
    PORT: String(port),
    CLICKHOUSE_DATABASE: 'bench',
  })
  const start = npmStart(spec.root)
  const svc = startChild('service (dashboard)', process.execPath, [...start.flags, start.script], {
    env,
    cwd: spec.root,
  })
  const base = `http://127.0.0.1:${port}`
  await waitFor200(`${base}/readyz`, 60_000, () => svc.proc.exitCode === null)
  // its redis-server is killed at exit too, should the service die before stopping it
  trackPid(embeddedRedis(dataDir).pid)
  // the referrer and the range queries.ts times in-process (its seed's clock); the route
  // widens `from` to the start of its day, a few more hourly rollup rows than in-process
  const range = `from=${new Date(inProcess.now - 30 * DAY).toISOString()}&to=${new Date(inProcess.now).toISOString()}`
  // 40: with fewer, the nearest-rank p95 is one slow run away from the max; 20 quick, where
  // the whole bench has a minute and the funnel takes ~150 ms whatever the history's size
  const runs = spec.quick ? 20 : 40
  const agent = httpAgent()
  try {
    spec.log('dashboard: the same reads through the service')
    const earnings = await timeGets(
      agent,
      `${base}/v1/me/earnings?${range}&interval=day&tz=UTC`,
      await signToken(spec.jwtSecret, 'r42'),
      runs,
    )
    const funnel = await timeGets(
      agent,
      `${base}/v1/admin/funnel?${range}`,
      await signToken(spec.jwtSecret, 'bench-admin', { role: 'admin' }),
      runs,
    )
    return {
      table,
      inProcess,
      earnings,
      funnel,
      problems: svc.problems,
    }
  } finally {
    agent.destroy()
    await stopChild(svc, 'SIGTERM', 20_000)
  }
}

/** One GET at a time, `runs` times after one warm-up; a non-200 answer fails the bench. */
async function timeGets(
  agent: ReturnType<typeof httpAgent>,
  url: string,
  jwt: string,
  runs: number,
): Promise<Timed> {
  const headers = { authorization: `Bearer ${jwt}` }
  const once = async () => {
    const t0 = performance.now()
    const a = await send(agent, url, { headers, timeoutMs: 30_000 })
    if (a.status !== 200) throw new Error(`GET ${url}: ${a.status} ${a.body.slice(0, 200)}`)
    return performance.now() - t0
  }
  await once()
  const times: number[] = []
  for (let i = 0; i < runs; i++) times.push(await once())
  times.sort((a, b) => a - b)
  return { p50: pct(times, 0.5), p95: pct(times, 0.95), max: pct(times, 1), runs }
}
