import { cpus } from 'node:os'
import { type DashboardRun, EARNINGS_CASE, FUNNEL_RECLICK_CASE, type Timed } from './dashboard.ts'
import type { BatchRun, CannonFigures } from './load.ts'
import type { AofRewrites, DrainResult, MemorySplit, QueueSplit, RuntimeSplit } from './pipeline.ts'
import type { ProbeResult } from './probes.ts'
import type { CpuSplit, ExitInfo } from './proc.ts'
import { fmt, type Row, row, verdict } from './report.ts'
import type { Latencies, SteadyRun } from './steady.ts'

/** The figures of one `npm run bench`, as table rows: what was measured, against what, and the targets. */

export interface Shape {
  connections: number
  durationS: number
  loops: number
  batch: number
}

export interface Baseline {
  single: CannonFigures
  /** CPU per request of the single-event phase (service: the bare server) */
  singleCpu: CpuSplit
  batch: BatchRun
  /** GET at the stats rate against the bare server */
  stats: Latencies
  /** append + fdatasync on DATA_DIR's filesystem with nothing else running, ms sorted */
  fdatasync: number[]
}

/** The single-event load against a bare server (bench/ingest.ts bareSingle). */
export interface BareSingleRun {
  single: CannonFigures
  /** CPU per request (service: the bare server) */
  singleCpu: CpuSplit
  /** cores the service and its redis-server kept busy meanwhile, when they ran beside it */
  othersCores: { service: number; redis: number } | undefined
}

export interface ServiceRun {
  readyMs: number
  single: CannonFigures
  /** CPU per 2xx of the single-event phase, until its backlog was applied and stored */
  singleCpu: CpuSplit
  /** the single-event phase's queue writes and redis-server's commands, until drained */
  singleQueue: QueueSplit
  /** the bare server's single-event load again, right after the service's phase drained */
  bareAfter: BareSingleRun
  singleDrain: DrainResult
  singleDrainMs: number
  /** 2xx of the single-event phase, warm-up included */
  single2xx: number
  /** the counter after the single-event phase drained */
  singleClicks: number
  /** the counter when the batch phase started */
  clicksBefore: number
  /** the latency probes with no ingest load, just before the steady phase */
  quiet: ProbeResult
  steady: SteadyRun
  /** CPU per event of the steady phase, until drained (the probes' process apart) */
  steadyCpu: CpuSplit
  steadyDrain: DrainResult
  /** redis-server's AOF fsync stalls during the steady load: each second's worst over 10 ms */
  steadyFsyncStalls: number[]
  /** the service's event loop and GC over the steady load, from its /metrics */
  steadyRuntime: RuntimeSplit
  batch: BatchRun
  /** CPU per event of the batch phase, until drained */
  batchCpu: CpuSplit
  /** redis-server's AOF rewrites from the batch phase's start until drained (forked children) */
  batchRewrites: AofRewrites
  /** the service's GC from the batch phase's start until drained, from its /metrics */
  batchRuntime: RuntimeSplit
  expected: number
  drain: DrainResult
  failed: number
  /** the most ingest jobs pending at once during the batch phase (500 ms samples) */
  maxPending: number
  /** GET /metrics after the run */
  metrics: Map<string, number>
  redisUsedBefore: number
  redisUsedAfter: number
  dbsize: number
  markerBytes: number
  rssAfterKb: number
  hwmKb: number
  rssPeakKb: number
  /** the service's memory by holder at its highest /metrics sample of the batch phase */
  memoryAtPeak: MemorySplit | undefined
  redisRssPeakKb: number
  stop: ExitInfo & { ms: number; killed: boolean }
  redisGone: boolean
  problems: string[]
}

const us = (n: number) => `${n.toFixed(1)} µs`
/** a CpuSplit as "service / its redis-server / load generator" */
export const cpu = (c: CpuSplit) => `${us(c.service)} / ${us(c.redis)} / ${us(c.loadgen)}`

/** What the service's RSS was made of at its highest /metrics sample. */
function memoryRow(m: MemorySplit | undefined): Row {
  const label =
    'service memory at its highest /metrics sample (2 s): V8 heap / Buffers / chDB engine / the rest'
  if (m === undefined) return row(label, 'n/a')
  const rest = m.rss - m.heapTotal - m.external - m.chdb
  return row(label, [m.heapTotal, m.external, m.chdb, rest].map(fmt.mb).join(' / '), {
    baseline: `of ${fmt.mb(m.rss)} RSS; the rest is mostly code (chDB's library ~170 MiB)`,
  })
}

/**
 * The most single-event requests a second this machine could answer if each cost no more
 * than the bare server's request (read, answer) plus one event's share of the batched path
 * at its cost in this run (parse, validate, queue, apply, store: the service and its
 * redis-server, measured in the batch phase, where a request's HTTP is spread over 1000
 * events), plus the load generator's request against the bare server, every core busy
 * (os.cpus(), no cgroup quota counted), nothing waiting on an fsync. Below the ratio target,
 * the target needs a cheaper batched path as well as a single-event one with no overhead.
 */
function singleCeiling(b: Baseline, s: ServiceRun): Row {
  const bareUs = b.singleCpu.service + b.singleCpu.loadgen
  const floorUs = b.singleCpu.service + s.batchCpu.service + s.batchCpu.redis + b.singleCpu.loadgen
  const ceiling = (cpus().length * 1e6) / floorUs
  // the bare run itself kept fewer than every core busy: at its CPU use, the ratio is bareUs / floorUs
  const bareCores = (b.single.okPerSec * bareUs) / 1e6
  return row(
    `single-event ceiling on ${cpus().length} cores: bare request + one batched event (service + redis-server) + load generator, all CPU`,
    `${fmt.int(ceiling)} req/s`,
    {
      baseline: `${fmt.int(b.single.okPerSec)} (bare server); ${us(floorUs)} a request against ${us(bareUs)}; at the bare run's ${bareCores.toFixed(2)} cores busy: ${fmt.ratio(bareUs, floorUs)}`,
      ratio: fmt.ratio(ceiling, b.single.okPerSec),
    },
  )
}

const mean = (a: number, b: number) => (a + b) / 2

/**
 * The single-event baseline as the mean of the bare server's runs before and after the
 * service's phase: a host whose speed drifts during the run moves both, and the service's
 * phase lies between them. Latency percentiles are averaged too, the counts added.
 */
function bracketed(b: Baseline, after: BareSingleRun): Baseline {
  const x = b.single
  const y = after.single
  return {
    ...b,
    single: {
      okPerSec: mean(x.okPerSec, y.okPerSec),
      reqPerSecMean: mean(x.reqPerSecMean, y.reqPerSecMean),
      p50: mean(x.p50, y.p50),
      p99: mean(x.p99, y.p99),
      ok: x.ok + y.ok,
      non2xx: x.non2xx + y.non2xx,
      status5xx: x.status5xx + y.status5xx,
      errors: x.errors + y.errors,
      timeouts: x.timeouts + y.timeouts,
      durationS: x.durationS + y.durationS,
    },
    singleCpu: {
      service: mean(b.singleCpu.service, after.singleCpu.service),
      redis: mean(b.singleCpu.redis, after.singleCpu.redis),
      loadgen: mean(b.singleCpu.loadgen, after.singleCpu.loadgen),
    },
  }
}

/** the bare runs before and after the service's differ by more than this: the host changed speed */
const DRIFT = 1.25

function bracketRow(before: CannonFigures, after: BareSingleRun): Row {
  const busy = after.othersCores
  const drift = after.single.okPerSec / before.okPerSec
  const notes = [
    ...(busy === undefined
      ? []
      : [
          `service / its redis-server meanwhile (idle beside it): ${(busy.service * 100).toFixed(0)}% / ${(busy.redis * 100).toFixed(0)}% of a core`,
        ]),
    ...(drift > DRIFT || drift < 1 / DRIFT
      ? [
          "the host changed speed in between: this run's single-event ratio is the host's as much as the service's",
        ]
      : []),
  ]
  return row(
    "single-event baseline: the bare server before / after the service's phase (the rows above and the ceiling take their mean)",
    `${fmt.int(before.okPerSec)} / ${fmt.int(after.single.okPerSec)} req/s`,
    { baseline: notes.join('; '), ratio: fmt.ratio(after.single.okPerSec, before.okPerSec) },
  )
}

/**
 * What a single-event request costs redis-server, against the queue writes it shares: the
 * events of a job (one group commit), and the time redis-server spent running commands a
 * request, its scripts' (BullMQ's three a job: add, fetch, complete) and all. Its CPU a request
 * in the row above is more: reading, replying, the AOF's writes and fsyncs.
 */
function singleQueueRow(s: ServiceRun): Row {
  const q = s.singleQueue
  const requests = s.single.ok
  return row(
    "single-event: events a queue write (job); redis-server's time running commands a request: scripts (EVALSHA) / all",
    `${(q.events / q.jobs).toFixed(1)} events a job; ${us(q.scripts.usec / requests)} / ${us(q.all.usec / requests)}`,
    {
      baseline: `${(q.scripts.calls / q.jobs).toFixed(1)} script calls a job, ${us(q.scripts.usec / q.scripts.calls)} each; ${fmt.int(q.jobs)} jobs`,
    },
  )
}

export function rows(shape: Shape, before: Baseline, s: ServiceRun): Row[] {
  const { connections: CONNECTIONS, durationS: D_S, loops: LOOPS, batch: BATCH } = shape
  const { single } = s
  const b = bracketed(before, s.bareAfter)
  const bareBatchRate = b.batch.accepted / ((b.batch.tLast202 - b.batch.tFirstSent) / 1000)
  const edgeRate = s.batch.accepted / ((s.batch.tLast202 - s.batch.tFirstSent) / 1000)
  const e2eMs = s.drain.tDone - s.batch.tFirstSent
  const e2eRate = s.drain.done ? s.batch.accepted / (e2eMs / 1000) : Number.NaN
  const batchRefused = Object.entries(s.batch.refused).map(([k, v]) => `${v}x${k}`)
  const usedDelta = s.redisUsedAfter - s.redisUsedBefore
  const applied = s.drain.clicks - s.clicksBefore
  const appliedRate = applied / ((s.drain.tDone - s.batch.tFirstSent) / 1000)
  const kb = (n: number) => fmt.mb(n * 1024)
  const ratio = (a: number, c: number) => ({ baseline: '', ratio: fmt.ratio(a, c) })
  return [
    row(`single-event POST /v1/events, 2xx/s (${CONNECTIONS} conns, ${D_S} s)`, fmt.int(single.okPerSec), {
      baseline: fmt.int(b.single.okPerSec),
      ratio: fmt.ratio(single.okPerSec, b.single.okPerSec),
      target: 'ratio >= 0.8',
      verdict: verdict(single.okPerSec / b.single.okPerSec >= 0.8),
    }),
    row('single-event latency p50', fmt.ms(single.p50), {
      ...ratio(single.p50, b.single.p50),
      baseline: fmt.ms(b.single.p50),
    }),
    row('single-event latency p99', fmt.ms(single.p99), {
      ...ratio(single.p99, b.single.p99),
      baseline: fmt.ms(b.single.p99),
    }),
    row(
      'single-event non-2xx / 5xx / conn errors',
      `${single.non2xx} / ${single.status5xx} / ${single.errors}`,
      {
        baseline: `${b.single.non2xx} / ${b.single.status5xx} / ${b.single.errors}`,
        target: '0',
        verdict: verdict(single.non2xx + single.errors === 0),
      },
    ),
    row('single-event clicks counted after their drain (incl. 1 s warm-up)', fmt.int(s.singleClicks), {
      baseline: `${fmt.int(s.single2xx)} 2xx seen by autocannon`,
      target: 'drained',
      verdict: verdict(s.singleDrain.done),
    }),
    row('single-event backlog drain after autocannon stopped', fmt.s(s.singleDrainMs + 300)),
    row(
      'single-event CPU per request, answered and applied: service / its redis-server / load generator',
      cpu(s.singleCpu),
      { baseline: `${us(b.singleCpu.service)} bare server / ${us(b.singleCpu.loadgen)} load generator` },
    ),
    singleQueueRow(s),
    singleCeiling(b, s),
    bracketRow(before.single, s.bareAfter),
    row(`batched: accepted events/s at the HTTP edge (${LOOPS} loops x ${BATCH})`, fmt.int(edgeRate), {
      baseline: `${fmt.int(bareBatchRate)} (bare server)`,
      ratio: fmt.ratio(edgeRate, bareBatchRate),
    }),
    row('batched: events/s end to end (queue empty + counter)', fmt.int(e2eRate), {
      baseline: fmt.int(edgeRate),
      ratio: fmt.ratio(e2eRate, edgeRate),
      target: '>= 100,000 ev/s',
      verdict: verdict(e2eRate >= 100_000),
    }),
    row('batched: events applied to the counter per s, first request to last poll', fmt.int(appliedRate), {
      baseline: `${fmt.int(applied)} applied in ${fmt.s(s.drain.tDone - s.batch.tFirstSent)}`,
    }),
    row('batched: CPU per event until drained: service / its redis-server / load generator', cpu(s.batchCpu)),
    row(
      "batched: redis-server's AOF rewrites until drained, and their forked children's CPU (not in the row above)",
      `${s.batchRewrites.count} / ${fmt.s(s.batchRewrites.childCpuS * 1000)}`,
      { baseline: `${us((s.batchRewrites.childCpuS * 1e6) / s.batch.accepted)} per event` },
    ),
    row(
      "batched: the service's GC pauses until drained: scavenges / other pauses, their time",
      `${fmt.int(s.batchRuntime.scavenges)} in ${fmt.s(s.batchRuntime.scavengeMs)} / ${fmt.int(s.batchRuntime.majors)} in ${fmt.s(s.batchRuntime.majorMs)}`,
      {
        baseline: `${us(((s.batchRuntime.scavengeMs + s.batchRuntime.majorMs) * 1000) / s.batch.accepted)} per event; ${fmt.ms(s.batchRuntime.scavengeMs / Math.max(1, s.batchRuntime.scavenges))} a scavenge`,
      },
    ),
    row('batched: events accepted / requests', `${fmt.int(s.batch.accepted)} / ${fmt.int(s.batch.requests)}`),
    row(
      'batched: refused responses / conn errors / 202s not accepting all',
      `${batchRefused.join(', ') || '0'} / ${s.batch.errors} / ${s.batch.acceptedMismatch}`,
      {
        target: '0',
        verdict: verdict(batchRefused.length === 0 && s.batch.errors === 0 && s.batch.acceptedMismatch === 0),
      },
    ),
    row('batched: drain after the last 202', fmt.s(s.drain.tDone - s.batch.tLast202), {
      target: s.drain.done ? '' : s.drain.why,
    }),
    row(
      'total_clicks / expected (all clicks sent in the run)',
      `${fmt.int(s.drain.clicks)} / ${fmt.int(s.expected)}`,
      s.singleDrain.done
        ? { target: 'equal', verdict: verdict(s.drain.clicks === s.expected) }
        : {
            // the single-event backlog was not drained when the batches began: the expected
            // total counts autocannon's 2xx, which miss up to one request per connection
            target: `equal, or up to ${2 * CONNECTIONS} more`,
            verdict: verdict(s.drain.clicks >= s.expected && s.drain.clicks - s.expected <= 2 * CONNECTIONS),
          },
    ),
    row('queue: pending / failed jobs at the end', `${s.drain.pending} / ${s.failed}`, {
      target: '0 / 0',
      verdict: verdict(s.drain.pending === 0 && s.failed === 0),
    }),
    row('queue: most jobs pending at once during the batch phase', fmt.int(s.maxPending)),
    row(
      'ClickHouse active parts after the run: events / all tables',
      `${fmt.int(s.metrics.get('ra_clickhouse_events_active_parts') ?? Number.NaN)} / ${fmt.int(s.metrics.get('ra_clickhouse_active_parts') ?? Number.NaN)}`,
      {
        target: 'events < 300 (no part explosion)',
        verdict: verdict(
          (s.metrics.get('ra_clickhouse_events_active_parts') ?? Number.POSITIVE_INFINITY) < 300,
        ),
      },
    ),
    row('service RSS after the run (VmRSS)', kb(s.rssAfterKb)),
    row('service RSS peak (500 ms samples / VmHWM)', `${kb(s.rssPeakKb)} / ${kb(s.hwmKb)}`, {
      target: '<= 700 MiB',
      verdict: verdict(Math.max(s.rssPeakKb, s.hwmKb) <= 700 * 1024),
    }),
    memoryRow(s.memoryAtPeak),
    row('redis-server RSS peak (500 ms samples)', kb(s.redisRssPeakKb)),
    row('redis used_memory after the run', fmt.mb(s.redisUsedAfter)),
    row(
      'redis used_memory delta per 1M events applied in the batch phase',
      fmt.mb((usedDelta / applied) * 1e6),
      { target: s.drain.pending === 0 ? '' : 'queue not empty: includes queued job payloads' },
    ),
    row('redis keys (DBSIZE)', fmt.int(s.dbsize)),
    row("redis MEMORY USAGE of the taken event ids (today's set), x 1M", fmt.mb(s.markerBytes * 1e6), {
      baseline: `${Math.round(s.markerBytes)} B per id`,
    }),
    row('service start until /readyz 200', fmt.s(s.readyMs)),
    row('SIGTERM until exit', `${fmt.s(s.stop.ms)}, code ${s.stop.code ?? s.stop.signal}`, {
      target: 'exit 0 within 20 s',
      verdict: verdict(s.stop.code === 0 && !s.stop.killed),
    }),
    row('its redis-server stopped too', s.redisGone ? 'yes' : 'no', { verdict: verdict(s.redisGone) }),
  ]
}

/**
 * The dashboard's two reads with targets, through the service over the seeded history, each
 * against the same query's p95 in-process in the same run (what HTTP, auth and JSON add); or
 * the one row saying the phase failed.
 */
export function dashboardRows(d: DashboardRun | Error): Row[] {
  if (d instanceof Error) {
    const why = d.message.replace(/\s*\n\s*/g, ' / ').slice(0, 200)
    return [
      row("the dashboard's reads over a seeded history", `failed: ${why} (stderr has the rest)`, {
        verdict: 'FAIL',
      }),
    ]
  }
  const events = fmt.int(d.inProcess.events)
  const read = (name: string, t: Timed, inProcess: number | undefined, targetMs: number) =>
    row(
      `${name} over ${events} seeded events, p95 (${t.runs} runs; p50 ${fmt.ms(t.p50)}, max ${fmt.ms(t.max)})`,
      fmt.ms(t.p95),
      {
        baseline: `${fmt.ms(inProcess ?? Number.NaN)} (the query in-process, p95 of ${d.inProcess.runs} runs)`,
        ratio: fmt.ratio(t.p95, inProcess ?? Number.NaN),
        target: `<= ${targetMs} ms`,
        verdict: verdict(t.p95 <= targetMs),
      },
    )
  return [
    read('GET /v1/me/earnings, 30 days by day', d.earnings, d.inProcess.cases[EARNINGS_CASE]?.p95, 50),
    read(
      'GET /v1/admin/funnel, 30 days, 7-day window, 1 in 50 signed-up visitors clicking again,',
      d.funnel,
      d.inProcess.cases[FUNNEL_RECLICK_CASE]?.p95,
      300,
    ),
  ]
}
