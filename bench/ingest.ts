import { randomBytes } from 'node:crypto'
import { mkdirSync, mkdtempSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { dirname, join, resolve } from 'node:path'
import { fileURLToPath } from 'node:url'
import { makeKeys } from '@referral/core'
import { bareSingle, startBare } from './bare.ts'
import { dashboardReads } from './dashboard.ts'
import { fdatasyncProbe } from './disk.ts'
import { type Baseline, dashboardRows, rows, type ServiceRun } from './figures.ts'
import { batchLoops, cannon, getJson, signToken, waitFor200 } from './load.ts'
import {
  memorySampler,
  openPipeline,
  queueSampler,
  queueSplit,
  RssSampler,
  readMetrics,
  runtimeSplit,
  waitForDrain,
} from './pipeline.ts'
import type { ProbeResult, ProbeSpec } from './probes.ts'
import {
  CpuMeter,
  childrenReport,
  freePort,
  installCleanup,
  isAlive,
  memoryKb,
  npmStart,
  shutdownAll,
  sleep,
  startChild,
  stopChild,
  trackPid,
  trackTmpDir,
} from './proc.ts'
import { fmt, machine, table } from './report.ts'
import { steadyLoad } from './steady.ts'
import { steadyRows } from './steady-figures.ts'

/**
 * `npm run bench [-- --quick]`: one run on this machine, each figure against a baseline of the
 * same run. A bare node:http server, then the service (embedded redis-server + chDB) under
 * single-event load (autocannon) and batched load, drained end to end. See README "Benchmark".
 */

const QUICK = process.argv.includes('--quick')
/** --profile: the service runs with node --cpu-prof; profiles go to bench/results/profiles */
const PROFILE = process.argv.includes('--profile')
/** --no-queries: leave out the dashboard's reads over a seeded history (dashboard.ts) */
const QUERIES = !process.argv.includes('--no-queries')
/** --node-flags="<flags>": more node flags for the service (to measure a V8 setting against none) */
const NODE_FLAGS = (
  process.argv.find((a) => a.startsWith('--node-flags='))?.slice('--node-flags='.length) ?? ''
)
  .split(' ')
  .filter((f) => f !== '')
const D_S = QUICK ? 3 : 10 // autocannon duration
// quick: 3 s, whose backlog (~300k events at the edge's ~100k/s) the worker drains within the minute
const E_MS = QUICK ? 3_000 : 60_000 // batch phase on the service (issue 6: sustained for 60 s)
const BARE_BATCH_MS = QUICK ? 2_000 : 5_000 // batch phase on the bare server
const STEADY_MS = QUICK ? 5_000 : 20_000 // steady 5k events/s: freshness and GET /v1/me/stats
const QUIET_MS = QUICK ? 3_000 : 10_000 // the stats probes with no ingest load, before the steady phase
const STEADY_EVENTS_PER_SEC = 5_000
const STATS_PER_SEC = 200
const BUDGET_MS = QUICK ? 60_000 : 400_000 // the ingest phases, shutdown included (the dashboard reads after)
const CONNECTIONS = 50
const LOOPS = 8
const BATCH = 1000
const ROOT = resolve(dirname(fileURLToPath(import.meta.url)), '..')
/** what `npm start` runs (package.json's serve script): its node flags and the bundle */
const START = npmStart(ROOT)
const startedAt = performance.now()

const INGEST_KEY = randomBytes(16).toString('hex') // 32 chars
const JWT_SECRET = randomBytes(24).toString('hex') // 48 chars
const ingestHeaders = { authorization: `Bearer ${INGEST_KEY}`, 'content-type': 'application/json' }
const log = (msg: string) => process.stderr.write(`[bench ${fmt.s(performance.now() - startedAt)}] ${msg}\n`)
const tsxArgs = (script: string) => ['--import', 'tsx', join(ROOT, script)]

/**
 * The latency probes in a process of their own (probes.ts), apart from the load generator:
 * resolves once they are warm and measuring, with their result to come.
 */
async function startProbes(spec: ProbeSpec): Promise<{ done: Promise<ProbeResult> }> {
  const args = [...tsxArgs('bench/probes.ts'), JSON.stringify(spec)]
  const child = startChild('probes', process.execPath, args, { env: process.env, cwd: ROOT })
  const result = child.waitForLine((l) => l.startsWith('{'), spec.durationMs + 60_000)
  await child.waitForLine((l) => l === 'ready', 60_000)
  return { done: result.then((line) => JSON.parse(line) as ProbeResult) }
}

/** the single-event load, as the service gets it */
const singleLoad = { headers: ingestHeaders, connections: CONNECTIONS, durationS: D_S }

async function baseline(): Promise<Baseline> {
  const started = await startBare(ROOT)
  const { bare, url } = started
  log('baseline: warm-up, then autocannon')
  const { single, singleCpu } = await bareSingle(started, singleLoad)
  log(`baseline: ${fmt.int(single.okPerSec)} req/s; batches`)
  const batch = await batchLoops({
    url,
    headers: ingestHeaders,
    code: 'AAAAAAAA',
    loops: LOOPS,
    batchSize: BATCH,
    durationMs: BARE_BATCH_MS,
    idPrefix: 'bare',
    checkAccepted: false,
  })
  log('baseline: GET at a fixed rate')
  const probes = await startProbes({
    statsUrl: url,
    authHeaders: {},
    statsPerSec: STATS_PER_SEC,
    durationMs: Math.min(STEADY_MS, 3_000),
  })
  const { stats } = await probes.done
  await stopChild(bare, 'SIGTERM', 5_000)
  log("baseline: fdatasync on the data directory's disk")
  const fdatasync = await fdatasyncProbe(tmpdir(), 200, QUICK ? 1_000 : 5_000)
  return { single, singleCpu, batch, stats, fdatasync }
}

/** The service's environment as `npm start` on the embedded default, but for DATA_DIR and PORT. */
function serviceEnv(): NodeJS.ProcessEnv {
  const env: NodeJS.ProcessEnv = Object.assign({}, process.env, {
    HOST: '127.0.0.1',
    LOG_LEVEL: 'warn',
    INGEST_API_KEY: INGEST_KEY,
    AUTH_JWT_SECRET: JWT_SECRET,
  })
  delete env.REDIS_URL
  delete env.CLICKHOUSE_URL
  return env
}

async function service(): Promise<ServiceRun> {
  const dataDir = mkdtempSync(join(tmpdir(), 'ra-bench-'))
  trackTmpDir(dataDir)
  const port = await freePort()
  const env: NodeJS.ProcessEnv = Object.assign(serviceEnv(), { DATA_DIR: dataDir, PORT: String(port) })
  const profileArgs = PROFILE
    ? ['--cpu-prof', `--cpu-prof-dir=${join(ROOT, 'bench', 'results', 'profiles')}`]
    : []
  // what `npm start` runs: the bundle (npm run bench builds it first), with its node flags
  const spawnedAt = performance.now()
  /** with --profile: the service's seconds (about its profile's), to pick a phase's samples */
  const profileAt = () =>
    PROFILE ? ` (profile +${((performance.now() - spawnedAt) / 1000).toFixed(1)} s)` : ''
  const svc = startChild(
    'service',
    process.execPath,
    [...START.flags, ...profileArgs, ...NODE_FLAGS, START.script],
    {
      env,
      cwd: ROOT,
    },
  )
  const base = `http://127.0.0.1:${port}`
  log('service: starting')
  const readyMs = await waitFor200(`${base}/readyz`, 60_000, () => svc.proc.exitCode === null)
  const pipeline = await openPipeline(dataDir)
  trackPid(pipeline.redisPid)

  const jwt = await signToken(JWT_SECRET, 'bench-referrer')
  const auth = { authorization: `Bearer ${jwt}` }
  const { code } = await getJson<{ code: string }>(`${base}/v1/me/referral`, auth)
  const clicks = async () =>
    (await getJson<{ total_clicks: number }>(`${base}/v1/me/stats`, auth)).total_clicks
  log(`service: ready in ${fmt.s(readyMs)}, code ${code}`)

  const sampler = new RssSampler([svc.pid, pipeline.redisPid])
  sampler.start()
  const target = { url: `${base}/v1/events`, headers: ingestHeaders, connections: CONNECTIONS }
  const body = JSON.stringify({ type: 'click', code, visitor_id: 'v1' })
  const warm = await cannon({ ...target, body, durationS: 1 })
  const cpuPids = { service: svc.pid, redis: pipeline.redisPid }
  const queueBefore = {
    metrics: await readMetrics(`${base}/metrics`),
    commands: await pipeline.commandStats(),
  }
  const singleMeter = new CpuMeter(cpuPids)
  const single = await cannon({ ...target, body, durationS: D_S })
  log(`service: ${fmt.int(single.okPerSec)} req/s single; waiting for that backlog`)
  await sleep(300) // requests autocannon gave up on at its deadline may still be answered
  const t0 = performance.now()
  const watch = { pipeline, clicks, intervalMs: 100 }
  const singleLimitMs = QUICK ? 15_000 : 45_000
  const singleDrain = await waitForDrain({
    ...watch,
    expected: undefined,
    limitMs: singleLimitMs,
    stallMs: 15_000,
  })
  // each request's whole cost: answered, then applied and stored (the backlog drained)
  const singleCpu = singleMeter.per(single.ok)
  const singleQueue = queueSplit(
    { before: queueBefore.metrics, after: await readMetrics(`${base}/metrics`) },
    { before: queueBefore.commands, after: await pipeline.commandStats() },
  )
  const singleDrainMs = singleDrain.tDone - t0
  const clicksBefore = await clicks()
  const single2xx = warm.ok + single.ok
  // Drained: the counter is exact. Not drained: the 2xx autocannon saw, which misses the
  // requests still in flight when it stopped (at most one per connection and run).
  const clicksSent = singleDrain.done ? clicksBefore : Math.max(clicksBefore, single2xx)
  const probe = await signToken(JWT_SECRET, 'bench-probe')
  const probeAuth = { authorization: `Bearer ${probe}` }
  const probeCode = (await getJson<{ code: string }>(`${base}/v1/me/referral`, probeAuth)).code
  // a bare server beside the service, probed at the same moments: what the machine under this
  // load does to a request that costs nothing (its idle figure is the baseline's). First it
  // takes the single-event load again, so that the ratio's baseline brackets the service's
  // phase: the host's speed drifts over a run (the baseline's mean is the ratio's)
  const beside = await startBare(ROOT)
  log('service: the bare server beside it, single-event load again')
  const bareAfter = await bareSingle(beside, singleLoad, { service: svc.pid, redis: pipeline.redisPid })
  log(
    `service: bare server ${fmt.int(bareAfter.single.okPerSec)} req/s after the service's single-event phase`,
  )
  const probeSpec = (durationMs: number): ProbeSpec => ({
    statsUrl: `${base}/v1/me/stats`,
    authHeaders: probeAuth,
    statsPerSec: STATS_PER_SEC,
    durationMs,
    healthUrl: `${base}/healthz`,
    redisPort: pipeline.redisPort,
    bareUrl: beside.url,
  })
  log(`service: GET /v1/me/stats for ${fmt.s(QUIET_MS)} with no ingest load${profileAt()}`)
  const quiet = await (await startProbes(probeSpec(QUIET_MS))).done
  log(
    `service: steady ${fmt.int(STEADY_EVENTS_PER_SEC)} events/s for ${fmt.s(STEADY_MS)}: freshness, GET /v1/me/stats${profileAt()}`,
  )
  const steadyMeter = new CpuMeter(cpuPids)
  const fsyncStalls = await pipeline.watchFsync()
  const metricsBefore = await readMetrics(`${base}/metrics`)
  const steady = await steadyLoad({
    ingestUrl: target.url,
    ingestHeaders,
    loadCode: code,
    probeCode,
    streamUrl: `${base}/v1/me/stream`,
    statsUrl: `${base}/v1/me/stats`,
    authHeaders: probeAuth,
    eventsPerSec: STEADY_EVENTS_PER_SEC,
    batch: 50,
    durationMs: STEADY_MS,
    probeEveryMs: 50,
    statsPerSec: STATS_PER_SEC,
    probes: () => startProbes(probeSpec(STEADY_MS)),
  })
  log(`service: steady load done${profileAt()}`)
  const steadyRuntime = runtimeSplit(metricsBefore, await readMetrics(`${base}/metrics`))
  const steadyFsyncStalls = await fsyncStalls()
  await stopChild(beside.bare, 'SIGTERM', 5_000)
  const steadyDrain = await waitForDrain({
    ...watch,
    expected: clicksSent + steady.loadAccepted,
    limitMs: 30_000,
    stallMs: 15_000,
  })
  const steadyCpu = steadyMeter.per(steady.loadAccepted)
  const clicksBeforeBatch = steadyDrain.clicks
  const redisUsedBefore = await pipeline.usedMemory()

  log(`service: batches${profileAt()}`)
  const pending = queueSampler(pipeline)
  pending.start()
  const memory = memorySampler(`${base}/metrics`)
  memory.start()
  const batchMeter = new CpuMeter(cpuPids)
  const rewritesBefore = await pipeline.rewrites()
  const batchMetricsBefore = await readMetrics(`${base}/metrics`)
  const batch = await batchLoops({
    url: target.url,
    headers: ingestHeaders,
    code,
    loops: LOOPS,
    batchSize: BATCH,
    durationMs: E_MS,
    idPrefix: 'b',
    checkAccepted: true,
  })
  const expected = clicksSent + steady.loadAccepted + batch.accepted
  const limitMs = Math.min(240_000, Math.max(10_000, BUDGET_MS - (performance.now() - startedAt) - 25_000))
  log(`service: ${fmt.int(batch.accepted)} events accepted; draining (at most ${fmt.s(limitMs)})`)
  const drain = await waitForDrain({ ...watch, expected, limitMs, stallMs: 30_000 })
  const batchCpu = batchMeter.per(batch.accepted)
  const rewritesAfter = await pipeline.rewrites()
  sampler.stop()
  pending.stop()
  memory.stop()

  const failed = (await pipeline.counts()).failed
  const metrics = await readMetrics(`${base}/metrics`)
  const redisUsedAfter = await pipeline.usedMemory()
  const dbsize = await pipeline.dbsize()
  const markerBytes = await pipeline.bytesPerMember(
    makeKeys('ra').takenOn(Math.floor(Date.now() / 86_400_000)),
  )
  const mem = memoryKb(svc.pid)
  await pipeline.close()
  log('service: SIGTERM')
  const stop = await stopChild(svc, 'SIGTERM', 20_000)
  for (let i = 0; i < 40 && isAlive(pipeline.redisPid); i++) await sleep(50)
  return {
    readyMs,
    single,
    singleCpu,
    singleQueue,
    bareAfter,
    singleDrain,
    singleDrainMs,
    single2xx,
    singleClicks: clicksBefore,
    clicksBefore: clicksBeforeBatch,
    quiet,
    steady,
    steadyCpu,
    steadyDrain,
    steadyFsyncStalls,
    steadyRuntime,
    batch,
    batchCpu,
    batchRuntime: runtimeSplit(batchMetricsBefore, metrics),
    batchRewrites: {
      count: rewritesAfter.count - rewritesBefore.count,
      childCpuS: rewritesAfter.childCpuS - rewritesBefore.childCpuS,
    },
    expected,
    drain,
    failed,
    maxPending: pending.peak ?? 0,
    metrics,
    redisUsedBefore,
    redisUsedAfter,
    dbsize,
    markerBytes,
    rssAfterKb: mem?.rss ?? Number.NaN,
    hwmKb: mem?.hwm ?? Number.NaN,
    rssPeakKb: sampler.max(svc.pid),
    memoryAtPeak: memory.peak,
    redisRssPeakKb: sampler.max(pipeline.redisPid),
    stop,
    redisGone: !isAlive(pipeline.redisPid),
    problems: svc.problems,
  }
}

async function main(): Promise<void> {
  installCleanup()
  log(`${QUICK ? 'quick' : 'full'} mode`)
  const b = await baseline()
  const s = await service()
  // after the ingest service has stopped: nothing else runs while the reads are timed
  // a failure here still prints the ingest figures above, and says what failed
  const dash = QUERIES
    ? await dashboardReads({ root: ROOT, quick: QUICK, env: serviceEnv(), jwtSecret: JWT_SECRET, log }).catch(
        (e: unknown) => {
          const err = e instanceof Error ? e : new Error(String(e))
          process.stderr.write(`dashboard reads failed: ${err.stack ?? err.message}\n${childrenReport()}\n`)
          return err
        },
      )
    : undefined
  const md = [
    `# Ingest benchmark (${QUICK ? 'quick' : 'full'} mode)`,
    '',
    ...machine(),
    `- whole run: ${fmt.s(performance.now() - startedAt)}${QUICK ? ' (quick mode is to take under a minute, with the build before it)' : ''}; service: embedded redis-server (REDIS_APPENDFSYNC default) + chDB, one process, as \`npm start\` runs it (node ${[...START.flags, ...NODE_FLAGS].join(' ')})`,
    `- batch events carry type, id and code only; single-event body: \`{"type":"click","code":"<CODE>","visitor_id":"v1"}\``,
    '',
    ...table([
      ...rows({ connections: CONNECTIONS, durationS: D_S, loops: LOOPS, batch: BATCH }, b, s),
      ...steadyRows(
        {
          eventsPerSec: STEADY_EVENTS_PER_SEC,
          statsPerSec: STATS_PER_SEC,
          durationMs: STEADY_MS,
          quietMs: QUIET_MS,
        },
        b,
        s,
      ),
      ...(dash === undefined ? [] : dashboardRows(dash)),
    ]),
    '',
    ...(dash === undefined || dash instanceof Error
      ? []
      : [
          `The dashboard's queries in-process over the same ${fmt.int(dash.inProcess.events)} seeded events (\`npm run bench:queries\`; each p95 against the raw-events query's):`,
          '',
          ...dash.table,
          '',
          `The dashboard service's log lines at warn or above, or on stderr: ${dash.problems.length}`,
          ...dash.problems.slice(0, 10).map((l) => `    ${l.slice(0, 300)}`),
          '',
        ]),
    `Service log lines at warn or above, or on stderr: ${s.problems.length}`,
    ...s.problems.slice(0, 10).map((l) => `    ${l.slice(0, 300)}`),
    ...(s.batch.firstErrors.length > 0
      ? ['', 'First batch errors:', ...s.batch.firstErrors.map((e) => `    ${e}`)]
      : []),
    '',
  ].join('\n')
  process.stdout.write(`\n${md}`)
  const dir = join(ROOT, 'bench', 'results')
  mkdirSync(dir, { recursive: true })
  writeFileSync(join(dir, 'latest.md'), md)
  log(`written to ${join('bench', 'results', 'latest.md')}`)
}

main().then(
  () => shutdownAll().finally(() => process.exit(0)),
  (e: unknown) => {
    process.stderr.write(`bench failed: ${e instanceof Error ? (e.stack ?? e.message) : String(e)}\n`)
    process.stderr.write(`${childrenReport()}\n`)
    return shutdownAll().finally(() => process.exit(1))
  },
)
