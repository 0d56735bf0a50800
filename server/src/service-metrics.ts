import { constants, monitorEventLoopDelay, PerformanceObserver } from 'node:perf_hooks'
import type { GroupCommitter, Metrics, StatsCache } from '@referral/api'
import { type ClickHouse, queryRows } from '@referral/clickhouse'
import type { OutboxStatus } from '@referral/workers'
import type { Queue } from 'bullmq'
import type { WorkerStats } from './workers-thread.ts'

/** The /metrics the service registers, by what they watch (see the README's list). */

/**
 * The process's memory by who holds it: V8's heap, the buffers outside it (rows on their way
 * to ClickHouse), and the rest of the resident set (chDB's engine in the embedded default).
 */
export function addProcessMetrics(metrics: Metrics): void {
  const memory: Array<[string, string, (m: NodeJS.MemoryUsage) => number]> = [
    ['ra_process_resident_memory_bytes', 'RSS', (m) => m.rss],
    ['ra_nodejs_heap_used_bytes', "V8 heap in use (this thread's isolate)", (m) => m.heapUsed],
    ['ra_nodejs_heap_total_bytes', "V8 heap reserved (this thread's isolate)", (m) => m.heapTotal],
    [
      'ra_nodejs_external_bytes',
      'memory of JS objects held outside the V8 heap (Buffers included)',
      (m) => m.external,
    ],
  ]
  for (const [name, help, pick] of memory) {
    metrics.add({ name, help, type: 'gauge', read: () => pick(process.memoryUsage()) })
  }
}

/** The rolling window of the event loop and GC gauges (ms). */
const RUNTIME_WINDOW_MS = 10_000
/** The event loop monitor's timer (ms): its lateness beyond this is the loop's delay. */
const DELAY_RESOLUTION_MS = 10

/**
 * What holds up this thread's event loop: how late a 10 ms timer ran (p99 and worst) and the
 * longest GC pause, each over the last complete 10 s window, and GC pauses counted and timed
 * since the start (scavenges apart from mark-compacts). A request waits behind both. Returns
 * the stop: the monitor and the GC observer end with the service.
 */
export function addRuntimeMetrics(metrics: Metrics, windowMs = RUNTIME_WINDOW_MS): () => void {
  const delay = monitorEventLoopDelay({ resolution: DELAY_RESOLUTION_MS })
  delay.enable()
  const gc = { scavenges: 0, scavengeMs: 0, majors: 0, majorMs: 0, windowMaxMs: 0 }
  const last = { delayP99Ms: 0, delayMaxMs: 0, gcMaxMs: 0 }
  const observer = new PerformanceObserver((list) => {
    for (const e of list.getEntries()) {
      // a gc entry's kind is in its detail, which the entry's type does not declare
      const kind = (e.toJSON() as { detail?: { kind?: number } | null }).detail?.kind
      if (kind === constants.NODE_PERFORMANCE_GC_MINOR) {
        gc.scavenges++
        gc.scavengeMs += e.duration
      } else {
        gc.majors++
        gc.majorMs += e.duration
      }
      gc.windowMaxMs = Math.max(gc.windowMaxMs, e.duration)
    }
  })
  observer.observe({ entryTypes: ['gc'] })
  const roll = setInterval(() => {
    // the histogram holds each interval between the timer's runs (ns), its 10 ms included;
    // it has no samples when the loop never turned
    const late = (ns: number) => (delay.count === 0 ? 0 : Math.max(0, ns / 1e6 - DELAY_RESOLUTION_MS))
    last.delayP99Ms = late(delay.percentile(99))
    last.delayMaxMs = late(delay.max)
    last.gcMaxMs = gc.windowMaxMs
    delay.reset()
    gc.windowMaxMs = 0
  }, windowMs)
  roll.unref()
  const gauges: Array<[string, string, () => number]> = [
    [
      'ra_nodejs_eventloop_delay_p99_seconds',
      'how late a 10 ms timer ran (beyond its 10 ms), p99 over the last complete 10 s',
      () => last.delayP99Ms / 1000,
    ],
    [
      'ra_nodejs_eventloop_delay_max_seconds',
      'how late a 10 ms timer ran (beyond its 10 ms), worst over the last complete 10 s',
      () => last.delayMaxMs / 1000,
    ],
    [
      'ra_nodejs_gc_pause_max_seconds',
      'the longest GC pause over the last complete 10 s',
      () => last.gcMaxMs / 1000,
    ],
  ]
  for (const [name, help, read] of gauges) metrics.add({ name, help, type: 'gauge', read })
  const counters: Array<[string, string, () => number]> = [
    ['ra_nodejs_gc_scavenges_total', 'young-generation GC pauses (scavenges)', () => gc.scavenges],
    ['ra_nodejs_gc_scavenge_seconds_total', 'time in scavenges', () => gc.scavengeMs / 1000],
    [
      'ra_nodejs_gc_major_total',
      'other GC pauses (mark-compact, incremental marking steps, weak callbacks)',
      () => gc.majors,
    ],
    ['ra_nodejs_gc_major_seconds_total', 'time in those pauses', () => gc.majorMs / 1000],
  ]
  for (const [name, help, read] of counters) metrics.add({ name, help, type: 'counter', read })
  return () => {
    clearInterval(roll)
    delay.disable()
    observer.disconnect()
  }
}

/** Active data parts: a part explosion shows here; and chDB's own memory. */
export function addClickHouseMetrics(metrics: Metrics, ch: ClickHouse): void {
  const parts = async (table: string | null) => {
    const [r] = await queryRows<{ n: string }>(
      ch,
      `SELECT count() AS n FROM system.parts WHERE active AND database = currentDatabase()${table === null ? '' : ' AND table = {t:String}'}`,
      table === null ? {} : { t: table },
    )
    return Number(r?.n ?? 0)
  }
  metrics.add({
    name: 'ra_clickhouse_events_active_parts',
    help: 'active data parts of the events table (a part explosion shows here)',
    type: 'gauge',
    read: () => parts('events'),
  })
  metrics.add({
    name: 'ra_clickhouse_active_parts',
    help: 'active data parts of every table in the database',
    type: 'gauge',
    read: () => parts(null),
  })
  if (ch.mode === 'chdb') {
    metrics.add({
      name: 'ra_clickhouse_memory_tracked_bytes',
      help: "memory chDB's engine accounts for in this process (system.metrics MemoryTracking)",
      type: 'gauge',
      read: async () => {
        const [r] = await queryRows<{ v: string }>(
          ch,
          "SELECT value AS v FROM system.metrics WHERE metric = 'MemoryTracking'",
        )
        return Number(r?.v ?? 0)
      },
    })
  }
}

/** GET /v1/me/stats answered from this process's stats cache, or after a read from Redis. */
export function addStatsCacheMetrics(
  metrics: Metrics,
  cache: Pick<StatsCache<unknown>, 'hits' | 'misses'>,
): void {
  metrics.add({
    name: 'ra_stats_cache_hits_total',
    help: 'stats answers from what this process last read (api/src/stats-cache.ts)',
    type: 'counter',
    read: () => cache.hits,
  })
  metrics.add({
    name: 'ra_stats_cache_misses_total',
    help: 'stats answers that waited for a read from Redis',
    type: 'counter',
    read: () => cache.misses,
  })
}

/** The ingest worker's groups, events, inserts and their times (this process or its thread). */
export function addWorkerMetrics(metrics: Metrics, stats: WorkerStats): void {
  metrics.add({
    name: 'ra_worker_events_total',
    help: 'events applied and stored by this process',
    type: 'counter',
    read: () => stats.events,
  })
  metrics.add({
    name: 'ra_worker_groups_total',
    help: 'groups of jobs applied',
    type: 'counter',
    read: () => stats.groups,
  })
  metrics.add({
    name: 'ra_clickhouse_insert_seconds_total',
    help: 'time spent inserting outbox batches into ClickHouse (divide by ra_clickhouse_inserts_total: latency)',
    type: 'counter',
    read: () => stats.insertMs / 1000,
  })
  metrics.add({
    name: 'ra_clickhouse_inserts_total',
    help: 'outbox batches inserted into ClickHouse (events and ledger rows)',
    type: 'counter',
    read: () => stats.inserts,
  })
  metrics.add({
    name: 'ra_clickhouse_rows_stored_total',
    help: 'rows (events and ledger) inserted from the outbox',
    type: 'counter',
    read: () => stats.storedRows,
  })
  metrics.add({
    name: 'ra_clickhouse_store_failures_total',
    help: 'outbox inserts that failed and were tried again (ClickHouse away or refusing)',
    type: 'counter',
    read: () => stats.storeFailures,
  })
  metrics.add({
    name: 'ra_apply_seconds_total',
    help: 'time spent applying groups to the program state in Redis',
    type: 'counter',
    read: () => stats.applyMs / 1000,
  })
  metrics.add({
    name: 'ra_worker_failures_total',
    help: 'groups that failed and were retried',
    type: 'counter',
    read: () => stats.failures,
  })
}

/** What the API accepted and how far the workers and ClickHouse are behind it. */
export function addIngestMetrics(
  metrics: Metrics,
  d: {
    committer: GroupCommitter<string>
    queue: Queue
    oldestWaitingMs: () => Promise<number>
    outbox: () => Promise<OutboxStatus>
    sseClients: () => number
  },
): void {
  metrics.add({
    name: 'ra_ingest_events_accepted_total',
    help: 'events acknowledged with 202',
    type: 'counter',
    read: () => d.committer.stats.events,
  })
  metrics.add({
    name: 'ra_ingest_batches_total',
    help: 'queue writes (group commits)',
    type: 'counter',
    read: () => d.committer.stats.batches,
  })
  metrics.add({
    name: 'ra_ingest_failed_batches_total',
    help: 'queue writes that failed (503)',
    type: 'counter',
    read: () => d.committer.stats.failedBatches,
  })
  metrics.add({
    name: 'ra_ingest_queue_waiting_jobs',
    help: 'ingest jobs waiting',
    type: 'gauge',
    read: () => d.queue.getWaitingCount(),
  })
  metrics.add({
    name: 'ra_ingest_lag_seconds',
    help: 'age of the oldest ingest job still waiting: how far the workers are behind',
    type: 'gauge',
    read: async () => (await d.oldestWaitingMs()) / 1000,
  })
  metrics.add({
    name: 'ra_outbox_rows',
    help: 'rows applied to the counters and waiting in Redis for their ClickHouse insert',
    type: 'gauge',
    read: async () => (await d.outbox()).rows,
  })
  metrics.add({
    name: 'ra_outbox_lag_seconds',
    help: 'how long the oldest group in the outbox has waited: how far ClickHouse is behind the counters',
    type: 'gauge',
    read: async () => {
      const { oldestAt } = await d.outbox()
      return oldestAt === null ? 0 : Math.max(0, (Date.now() - oldestAt) / 1000)
    },
  })
  metrics.add({
    name: 'ra_ingest_queue_failed_jobs',
    help: 'ingest jobs in the failed set',
    type: 'gauge',
    read: () => d.queue.getFailedCount(),
  })
  metrics.add({
    name: 'ra_sse_clients',
    help: 'open SSE streams',
    type: 'gauge',
    read: d.sseClients,
  })
}
