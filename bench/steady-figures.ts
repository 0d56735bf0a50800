import { type Baseline, cpu, type ServiceRun } from './figures.ts'
import type { RuntimeSplit } from './pipeline.ts'
import { fmt, type Row, row, verdict } from './report.ts'
import { pct } from './steady.ts'

/** The steady phase's figures of one `npm run bench`, as table rows (figures.ts has the rest). */

export interface SteadyShape {
  eventsPerSec: number
  statsPerSec: number
  durationMs: number
  /** how long the probes ran with no ingest load */
  quietMs: number
}

/** The steady phase: freshness seen on SSE, GET /v1/me/stats latency. */
export function steadyRows(shape: SteadyShape, b: Baseline, s: ServiceRun): Row[] {
  const st = s.steady
  const f = st.freshness
  const lat = st.stats.samples
  const bl = b.stats.samples
  const quiet = s.quiet.stats.samples
  return [
    row(
      `steady load: events/s accepted (target ${fmt.int(shape.eventsPerSec)}/s, open loop, ${fmt.s(shape.durationMs)})`,
      fmt.int(st.achievedPerSec),
      {
        baseline: `${fmt.int(st.loadAccepted)} / ${fmt.int(st.loadSent)} events, ${st.loadRefused} refused, ≤ ${st.maxOutstanding} requests outstanding`,
        verdict: verdict(st.loadRefused === 0 && st.achievedPerSec >= 0.95 * shape.eventsPerSec),
      },
    ),
    row('freshness: 202 -> stats change on SSE /v1/me/stream, p50', fmt.ms(pct(f, 0.5)), {
      baseline: `${f.length} probes, ${st.unseen} never seen`,
    }),
    row('freshness p99', fmt.ms(pct(f, 0.99)), {
      baseline: `max ${fmt.ms(f.at(-1) ?? Number.NaN)}`,
      target: '<= 1 s',
      verdict: verdict(pct(f, 0.99) <= 1000 && st.unseen === 0),
    }),
    row(
      `GET /v1/me/stats at ${shape.statsPerSec}/s with no ingest load (${fmt.s(shape.quietMs)}, before the steady load), p50 / p99`,
      `${fmt.ms(pct(quiet, 0.5))} / ${fmt.ms(pct(quiet, 0.99))}`,
      {
        baseline: `${fmt.ms(pct(s.quiet.bare.samples, 0.5))} / ${fmt.ms(pct(s.quiet.bare.samples, 0.99))} (bare server beside, same moments); healthz p99 ${fmt.ms(pct(s.quiet.health.samples, 0.99))}`,
        ratio: fmt.ratio(pct(quiet, 0.99), pct(s.quiet.bare.samples, 0.99)),
        target: '<= 5 ms',
        verdict: verdict(pct(quiet, 0.99) <= 5 && s.quiet.stats.errors === 0),
      },
    ),
    row(`GET /v1/me/stats at ${shape.statsPerSec}/s during the load, p50`, fmt.ms(pct(lat, 0.5)), {
      baseline: `${fmt.ms(pct(bl, 0.5))} (bare server, idle)`,
      ratio: fmt.ratio(pct(lat, 0.5), pct(bl, 0.5)),
    }),
    row('GET /v1/me/stats p99', fmt.ms(pct(lat, 0.99)), {
      baseline: `${fmt.ms(pct(bl, 0.99))} (bare server, idle)`,
      ratio: fmt.ratio(pct(lat, 0.99), pct(bl, 0.99)),
      target: '<= 5 ms',
      verdict: verdict(pct(lat, 0.99) <= 5 && st.stats.errors === 0),
    }),
    // what the stats latency is made of: the same moments, without the handler
    row(
      `  GET /healthz at ${shape.statsPerSec / 2}/s, p99 (the service's event loop, no Redis)`,
      fmt.ms(pct(st.health.samples, 0.99)),
      {
        baseline: `p50 ${fmt.ms(pct(st.health.samples, 0.5))}, ${st.health.errors} errors`,
      },
    ),
    row(
      `  redis-server PING at ${shape.statsPerSec / 2}/s on the bench's own connection, p99`,
      fmt.ms(pct(st.redisPing.samples, 0.99)),
      {
        baseline: `p50 ${fmt.ms(pct(st.redisPing.samples, 0.5))}, ${st.redisPing.errors} errors`,
      },
    ),
    runtimeRow(s.steadyRuntime, shape.durationMs),
    fsyncRow(s.steadyFsyncStalls, b.fdatasync),
    row(
      `  GET on a bare node:http server beside the service at ${shape.statsPerSec / 2}/s, p99 (the machine under this load)`,
      fmt.ms(pct(st.bare.samples, 0.99)),
      {
        baseline: `p50 ${fmt.ms(pct(st.bare.samples, 0.5))}, ${st.bare.errors} errors`,
        ratio: `stats ${fmt.ratio(pct(lat, 0.99), pct(st.bare.samples, 0.99))}`,
      },
    ),
    row(
      'steady: CPU per event until drained: service / its redis-server / load generator',
      cpu(s.steadyCpu),
      { baseline: 'serving the latency probes included (their own process not counted)' },
    ),
    row('steady backlog drained after the load', s.steadyDrain.done ? 'yes' : s.steadyDrain.why, {
      verdict: verdict(s.steadyDrain.done),
    }),
  ]
}

/** The service's own view of its event loop under the steady load. */
function runtimeRow(r: RuntimeSplit, durationMs: number): Row {
  const perSec = (n: number) => (n / (durationMs / 1000)).toFixed(1)
  return row(
    "  the service's event loop (its /metrics): how late a 10 ms timer ran, p99 / worst, and the longest GC pause (last 10 s of the load)",
    `${fmt.ms(r.delayP99)} / ${fmt.ms(r.delayMax)}, GC ${fmt.ms(r.gcMax)}`,
    {
      baseline: `over the load: ${perSec(r.scavenges)} scavenges/s, ${fmt.ms(r.scavengeMs / Math.max(1, r.scavenges))} each; ${fmt.ms(r.majorMs)} in ${r.majors} other pauses`,
    },
  )
}

/** redis-server's fsync stalls under the steady load, against the disk alone. */
function fsyncRow(stalls: readonly number[], disk: readonly number[]): Row {
  const over100 = stalls.filter((ms) => ms >= 100).length
  return row(
    '  redis-server AOF fsync (appendfsync always): its worst stall / seconds with one >= 100 ms (LATENCY monitor)',
    stalls.length === 0 ? 'none over 10 ms' : `${fmt.ms(stalls.at(-1) ?? 0)} / ${over100}`,
    {
      baseline: `the disk alone, beforehand (append + fdatasync at 200/s): p99 ${fmt.ms(pct(disk, 0.99))}, max ${fmt.ms(disk.at(-1) ?? Number.NaN)}`,
    },
  )
}
