import { mkdirSync, readFileSync, writeFileSync } from 'node:fs'
import { join } from 'node:path'
import { openClickHouse, queryRows } from '@referral/clickhouse'
import { makeKeys, makeRedis, parseConfig, QUEUE_NAMES } from '@referral/core'
import { reconcile } from '@referral/workers'
import { Queue } from 'bullmq'
import { signToken } from './load.ts'
import { childrenReport, installCleanup, shutdownAll, sleep, startChild } from './proc.ts'
import { fmt, machine } from './report.ts'
import {
  type Cluster,
  INGEST_KEY,
  JWT_SECRET,
  killRedis,
  restartRedis,
  startApi,
  startCluster,
  startWorkers,
  stopAll,
} from './soak-cluster.ts'

/**
 * `npm run soak [-- --quick]`: the reliability soak of issue 7, against real processes on
 * loopback. One redis-server (owned here, so it can be killed), an API process and a workers
 * process (which owns chDB). N events with unique ids go in while:
 *
 *  1. the API or the workers process is SIGKILLed every 5-15 s and restarted; the client
 *     retries what did not get a 202, and delivers every batch 2-5 times (some copies at the
 *     same time as the first, the rest at the end, after the jobs were removed);
 *  2. redis-server is SIGKILLed and restarted (appendfsync always, then everysec on a fresh
 *     Redis): acknowledged events that are gone are counted;
 *  3. Redis is down for 30 s: every ingest answer is timed (503 within 2 s?), and the time
 *     to the first 202 after Redis is back, with no restart of the service;
 *  4. the workers process is stopped (SIGSTOP) for 60 s, so nothing can be applied or
 *     inserted into ClickHouse: events wait in the queue, and land after SIGCONT.
 *
 * Then the processes stop and the checks run: ClickHouse holds exactly the ids sent, no id
 * twice; the rollups equal the raw events; the Redis counters equal ClickHouse (reconcile);
 * no failed job; the queue drained by itself. Prints a table; writes bench/results/soak-latest.md.
 */

const QUICK = process.argv.includes('--quick')
const N = QUICK ? 10_000 : 100_000
const REDIS_DOWN_MS = QUICK ? 10_000 : 30_000
const WORKERS_STOPPED_MS = QUICK ? 15_000 : 60_000
/** the load is paced over this long, so that it meets several kills */
const LOAD_MS = QUICK ? 40_000 : 150_000
const BATCH = 200
const CLIENTS = 4
const REFERRERS = 40
const ROOT = join(import.meta.dirname, '..')
const BROWSER_UA =
  'Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/120.0 Safari/537.36'

const log = (msg: string) => process.stderr.write(`[soak ${new Date().toISOString().slice(11, 19)}] ${msg}\n`)
const rand = (lo: number, hi: number) => lo + Math.floor(Math.random() * (hi - lo + 1))

/** Referrers with codes, made through the API as a dashboard would. */
async function makeCodes(url: string): Promise<Array<{ user: string; code: string }>> {
  const out = []
  for (let i = 0; i < REFERRERS; i++) {
    const user = `soak-ref-${i}`
    const jwt = await signToken(JWT_SECRET, user, { expiresIn: '2h' })
    const res = await fetch(`${url}/v1/me/referral`, { headers: { authorization: `Bearer ${jwt}` } })
    out.push({ user, code: ((await res.json()) as { code: string }).code })
  }
  return out
}

type Ev = Record<string, unknown> & { id: string }

/** A batch: clicks on the referrers' links, some of those visitors sign up, a few buy. */
function makeBatch(tag: string, n: number, codes: ReadonlyArray<{ code: string }>): Ev[] {
  const out: Ev[] = []
  for (let i = 0; out.length < n; i++) {
    const code = codes[rand(0, codes.length - 1)]?.code ?? ''
    const v = `${tag}-v${i}`
    out.push({ type: 'click', id: `${tag}-c${i}`, code, visitor_id: v, user_agent: BROWSER_UA })
    if (i % 10 === 0 && out.length < n)
      out.push({ type: 'signup', id: `${tag}-s${i}`, user_id: `${tag}-u${i}`, ref: code })
    if (i % 30 === 0 && out.length < n) {
      out.push({
        type: 'purchase',
        id: `${tag}-p${i}`,
        user_id: `${tag}-u${i}`,
        amount_cents: rand(500, 5000),
      })
    }
  }
  return out
}

interface Sent {
  ids: Set<string>
  acked: Set<string>
  attempts: number
  refused: number
  later: Ev[][]
}

/** POST until a 202; returns the attempts it took. */
async function deliver(url: () => string, events: Ev[], stats: Sent): Promise<void> {
  for (let attempt = 0; ; attempt++) {
    stats.attempts++
    try {
      const res = await fetch(`${url()}/v1/events`, {
        method: 'POST',
        headers: { authorization: `Bearer ${INGEST_KEY}`, 'content-type': 'application/json' },
        body: JSON.stringify({ events }),
        signal: AbortSignal.timeout(15_000),
      })
      await res.arrayBuffer()
      if (res.status === 202) {
        for (const e of events) stats.acked.add(e.id)
        return
      }
      stats.refused++
    } catch {
      stats.refused++
    }
    await sleep(Math.min(2_000, 100 * 2 ** Math.min(attempt, 4)))
  }
}

async function load(
  c: Cluster,
  tag: string,
  n: number,
  codes: Array<{ code: string }>,
  stats: Sent,
  copies: boolean,
  overMs: number,
) {
  let next = 0
  const batches: Ev[][] = []
  while (next < n) {
    const b = makeBatch(`${tag}-b${batches.length}`, Math.min(BATCH, n - next), codes)
    for (const e of b) stats.ids.add(e.id)
    batches.push(b)
    next += b.length
  }
  let i = 0
  const t0 = Date.now()
  await Promise.all(
    Array.from({ length: CLIENTS }, async () => {
      while (i < batches.length) {
        const at = i
        const b = batches[i++]
        if (b === undefined) break
        // paced: batch k starts no sooner than k/batches of the way through overMs
        await sleep(t0 + (at * overMs) / batches.length - Date.now())
        if (!copies) {
          await deliver(() => c.url, b, stats)
          continue
        }
        // 2-5 deliveries in all: 0-2 at the same time as the first, the rest after everything
        const total = rand(2, 5)
        const now = rand(1, Math.min(3, total))
        await Promise.all(Array.from({ length: now }, () => deliver(() => c.url, b, stats)))
        for (let k = now; k < total; k++) stats.later.push(b)
      }
    }),
  )
}

async function waitDrained(c: Cluster, timeoutMs: number): Promise<{ ms: number; failed: number }> {
  const redis = makeRedis(c.redis.url, 'command')
  const q = new Queue(QUEUE_NAMES.ingest, { connection: redis, prefix: makeKeys('ra').bullPrefix() })
  const t0 = Date.now()
  try {
    while (Date.now() - t0 < timeoutMs) {
      const n = await q.getJobCounts('wait', 'active', 'delayed', 'prioritized', 'failed')
      if ((n.wait ?? 0) + (n.active ?? 0) + (n.delayed ?? 0) + (n.prioritized ?? 0) === 0) {
        return { ms: Date.now() - t0, failed: n.failed ?? 0 }
      }
      await sleep(250)
    }
    throw new Error('the queue did not drain')
  } finally {
    await q.close()
    redis.disconnect()
  }
}

interface Checks {
  rows: number
  distinct: number
  sentAndStored: number
  missingAcked: number
  rollupClicks: number
  rawClicks: number
  drift: number
  failedJobs: number
}

/**
 * With the processes stopped: ClickHouse against what was sent, and Redis against ClickHouse.
 * Runs in a child process of its own (`--check`): chDB opens one data directory per process.
 */
async function check(c: Cluster, prefix: string, sent: Sent): Promise<Checks> {
  const file = join(c.dataDir, `check-${prefix}.json`)
  writeFileSync(
    file,
    JSON.stringify({
      dataDir: c.dataDir,
      redisUrl: c.redis.url,
      prefix,
      ids: [...sent.ids],
      acked: [...sent.acked],
    }),
  )
  const child = startChild(
    `check-${prefix}`,
    process.execPath,
    ['--import', 'tsx', 'bench/soak.ts', '--check', file],
    {
      env: { PATH: process.env.PATH ?? '', HOME: process.env.HOME ?? '' },
      cwd: ROOT,
    },
  )
  const line = await child.waitForLine((l) => l.startsWith('{"rows"'), 300_000)
  await child.exited
  return JSON.parse(line) as Checks
}

async function runCheck(file: string): Promise<void> {
  const args = JSON.parse(readFileSync(file, 'utf8')) as {
    dataDir: string
    redisUrl: string
    prefix: string
    ids: string[]
    acked: string[]
  }
  const sent = { ids: new Set(args.ids), acked: new Set(args.acked) }
  const { prefix } = args
  const config = parseConfig({ DATA_DIR: args.dataDir, REDIS_URL: args.redisUrl })
  const ch = await openClickHouse(config)
  const redis = makeRedis(args.redisUrl, 'command')
  try {
    const [t] = await queryRows<{ rows: string; distinct: string }>(
      ch,
      'SELECT count() AS rows, uniqExact(id) AS distinct FROM events WHERE startsWith(id, {p:String})',
      { p: prefix },
    )
    const stored = new Set(
      (
        await queryRows<{ id: string }>(
          ch,
          'SELECT DISTINCT id FROM events WHERE startsWith(id, {p:String})',
          {
            p: prefix,
          },
        )
      ).map((r) => r.id),
    )
    const [r] = await queryRows<{ rollup: string; raw: string }>(
      ch,
      `SELECT (SELECT sum(clicks) FROM rollup_hourly) AS rollup,
              (SELECT countIf(type = 'click' AND counted = 1) FROM events) AS raw`,
    )
    const report = await reconcile(ch, redis, makeKeys('ra'), { fix: false })
    const q = new Queue(QUEUE_NAMES.ingest, { connection: redis, prefix: makeKeys('ra').bullPrefix() })
    const failed = (await q.getJobCounts('failed')).failed ?? 0
    await q.close()
    const out: Checks = {
      rows: Number(t?.rows),
      distinct: Number(t?.distinct),
      sentAndStored: [...sent.ids].filter((id) => stored.has(id)).length,
      missingAcked: [...sent.acked].filter((id) => !stored.has(id)).length,
      rollupClicks: Number(r?.rollup),
      rawClicks: Number(r?.raw),
      drift: report.drift.length,
      failedJobs: failed,
    }
    process.stdout.write(`${JSON.stringify(out)}\n`)
  } finally {
    redis.disconnect()
    await ch.close()
  }
}

const newSent = (): Sent => ({ ids: new Set(), acked: new Set(), attempts: 0, refused: 0, later: [] })

async function main() {
  installCleanup()
  const results: Array<[string, string, string]> = []
  const add = (what: string, value: string, verdict: string) => {
    results.push([what, value, verdict])
    log(`${what}: ${value} ${verdict}`)
  }

  // ---- 1-4 on one cluster with appendfsync always
  log(`starting (N = ${N})`)
  const c = await startCluster('always', 'always')
  const codes = await makeCodes(c.url)
  const sent = newSent()

  // 1. kills of the API or the workers every 5-15 s while N events go in, 2-5 copies each
  let killing = true
  let kills = 0
  const killer = (async () => {
    while (killing) {
      await sleep(rand(5_000, 15_000))
      if (!killing) break
      const which = Math.random() < 0.5 ? 'api' : 'workers'
      c[which].proc.kill('SIGKILL')
      await c[which].exited
      kills++
      c[which] = which === 'api' ? await startApi(c) : await startWorkers(c)
    }
  })()
  const t1 = Date.now()
  await load(c, 'soak', N, codes, sent, true, LOAD_MS)
  killing = false
  await killer
  add('events sent (unique ids), load phase', `${fmt.int(sent.ids.size)} in ${fmt.ms(Date.now() - t1)}`, '')
  add('SIGKILLs of API or workers, each restarted', String(kills), '')

  // 2. redis-server SIGKILLed under load, restarted on the same data (appendfsync always)
  const redisKill = newSent()
  const loading = load(c, 'rk-always', Math.floor(N / 10), codes, redisKill, false, 10_000)
  await sleep(3_000)
  await killRedis(c)
  const ackedAtKill = redisKill.acked.size
  await sleep(1_000)
  await restartRedis(c, 'always')
  await loading

  // 3. Redis down: every answer timed; then the first 202 after it is back
  await killRedis(c)
  const down: Array<{ status: number; ms: number }> = []
  const downUntil = Date.now() + REDIS_DOWN_MS
  while (Date.now() < downUntil) {
    const t = Date.now()
    const res = await fetch(`${c.url}/v1/events`, {
      method: 'POST',
      headers: { authorization: `Bearer ${INGEST_KEY}`, 'content-type': 'application/json' },
      body: JSON.stringify({ type: 'click', code: codes[0]?.code, id: `down-${t}` }),
    }).catch(() => null)
    down.push({ status: res?.status ?? 0, ms: Date.now() - t })
    await res?.arrayBuffer()
    await sleep(500)
  }
  await restartRedis(c, 'always')
  const back = Date.now()
  let recoveredMs = -1
  while (Date.now() - back < 60_000) {
    // the id recorded is the one sent (it used to be made again, differently, after the 202)
    const id = `soak-back-${Date.now()}`
    const res = await fetch(`${c.url}/v1/events`, {
      method: 'POST',
      headers: { authorization: `Bearer ${INGEST_KEY}`, 'content-type': 'application/json' },
      body: JSON.stringify({ type: 'click', code: codes[0]?.code, id }),
    }).catch(() => null)
    if (res?.status === 202) {
      recoveredMs = Date.now() - back
      sent.ids.add(id)
      sent.acked.add(id)
      break
    }
    await sleep(200)
  }
  const maxDownMs = Math.max(...down.map((d) => d.ms))
  const all503 = down.every((d) => d.status === 503)
  add(
    `Redis down ${REDIS_DOWN_MS / 1000} s: ingest answers`,
    `${down.length} answers, ${all503 ? 'all 503' : `statuses ${[...new Set(down.map((d) => d.status))].join(',')}`}, slowest ${fmt.ms(maxDownMs)}`,
    all503 && maxDownMs < 2_000 ? 'pass' : 'FAIL',
  )
  add(
    '... first 202 after Redis is back (no restart of the service)',
    recoveredMs < 0 ? 'never' : fmt.ms(recoveredMs),
    recoveredMs >= 0 ? 'pass' : 'FAIL',
  )

  // 4. the workers stopped for a while: nothing applied or inserted; events wait and land
  c.workers.proc.kill('SIGSTOP')
  const stopped = newSent()
  const stoppedAt = Date.now()
  await load(c, 'soak-stopped', Math.floor(N / 10), codes, stopped, false, WORKERS_STOPPED_MS / 2)
  for (const id of stopped.ids) sent.ids.add(id)
  for (const id of stopped.acked) sent.acked.add(id)
  await sleep(Math.max(0, WORKERS_STOPPED_MS - (Date.now() - stoppedAt)))
  c.workers.proc.kill('SIGCONT')
  const drain4 = await waitDrained(c, 300_000)
  add(
    `workers stopped ${WORKERS_STOPPED_MS / 1000} s (no ClickHouse inserts): events accepted meanwhile`,
    `${fmt.int(stopped.acked.size)} accepted, drained ${fmt.ms(drain4.ms)} after SIGCONT`,
    stopped.acked.size === stopped.ids.size ? 'pass' : 'FAIL',
  )

  // 5. the late copies, after their jobs completed and were removed
  await Promise.all(sent.later.map((b) => deliver(() => c.url, b, sent)))
  add('late copies delivered after their jobs were removed', fmt.int(sent.later.length), '')
  const drained = await waitDrained(c, 300_000)
  await stopAll(c)

  const k = await check(c, 'soak-', sent)
  add(
    'ClickHouse: distinct ids = ids sent',
    `${fmt.int(k.sentAndStored)} of ${fmt.int(sent.ids.size)}`,
    k.sentAndStored === sent.ids.size ? 'pass' : 'FAIL',
  )
  add(
    'ClickHouse: rows = distinct ids (no duplicate rows)',
    `${fmt.int(k.rows)} rows, ${fmt.int(k.distinct)} ids`,
    k.rows === k.distinct ? 'pass' : 'FAIL',
  )
  add('acknowledged events lost', String(k.missingAcked), k.missingAcked === 0 ? 'pass' : 'FAIL')
  add(
    'rollups = raw events (counted clicks)',
    `${fmt.int(k.rollupClicks)} = ${fmt.int(k.rawClicks)}`,
    k.rollupClicks === k.rawClicks ? 'pass' : 'FAIL',
  )
  add('Redis counters = ClickHouse (reconcile drift)', String(k.drift), k.drift === 0 ? 'pass' : 'FAIL')
  add(
    'failed jobs; queue drained by itself',
    `${k.failedJobs}; ${drained.failed === 0 ? 'yes' : 'no'}`,
    k.failedJobs === 0 ? 'pass' : 'FAIL',
  )
  add(
    'client attempts (retries and copies included)',
    `${fmt.int(sent.attempts)} requests, ${fmt.int(sent.refused)} not 202`,
    '',
  )

  const rkAlways = await check(c, 'rk-always-', redisKill)
  add(
    'Redis SIGKILL under load, appendfsync always: acknowledged events lost',
    `${rkAlways.missingAcked} of ${fmt.int(redisKill.acked.size)} acknowledged (${fmt.int(ackedAtKill)} before the kill)`,
    rkAlways.missingAcked === 0 ? 'pass' : 'FAIL',
  )
  await c.redis.stop()

  // 2b. the same Redis kill with appendfsync everysec, on a fresh cluster
  const e = await startCluster('everysec', 'everysec')
  const codesE = await makeCodes(e.url)
  const rkE = newSent()
  const loadingE = load(e, 'rk-everysec', Math.floor(N / 10), codesE, rkE, false, 10_000)
  await sleep(3_000)
  await killRedis(e)
  await sleep(1_000)
  await restartRedis(e, 'everysec')
  await loadingE
  await waitDrained(e, 300_000)
  await stopAll(e)
  const kE = await check(e, 'rk-everysec-', rkE)
  add(
    'Redis SIGKILL under load, appendfsync everysec: acknowledged events lost',
    `${kE.missingAcked} of ${fmt.int(rkE.acked.size)} acknowledged`,
    'info',
  )
  await e.redis.stop()

  const failed = results.filter((r) => r[2] === 'FAIL')
  const md = [
    `# Soak, ${QUICK ? 'quick' : 'full'} mode (N = ${fmt.int(N)})`,
    '',
    ...machine(),
    '',
    '| check | value | |',
    '| --- | --- | --- |',
    ...results.map((r) => `| ${r.join(' | ')} |`),
    '',
  ].join('\n')
  mkdirSync(join(ROOT, 'bench', 'results'), { recursive: true })
  writeFileSync(join(ROOT, 'bench', 'results', 'soak-latest.md'), md)
  process.stdout.write(`${md}\n`)
  if (failed.length > 0) {
    process.stdout.write(`${failed.length} check(s) failed\n${childrenReport()}\n`)
    process.exitCode = 1
  }
}

const checkAt = process.argv.indexOf('--check')
const run = checkAt >= 0 ? runCheck(process.argv[checkAt + 1] ?? '') : main()
run.catch(async (e: unknown) => {
  process.stderr.write(
    `soak failed: ${e instanceof Error ? (e.stack ?? e.message) : String(e)}\n${childrenReport()}\n`,
  )
  // the API, workers and redis-servers still run: stop them, or the process never exits
  await shutdownAll()
  process.exit(1)
})
