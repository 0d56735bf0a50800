import { readFileSync } from 'node:fs'
import { join } from 'node:path'
import { makeKeys } from '@referral/core'
import { Queue } from 'bullmq'
import { Redis } from 'ioredis'
import { memoryKb } from './proc.ts'

/**
 * What the bench sees of the service's pipeline from outside its process: the BullMQ ingest
 * queue and the memory of the service's own redis-server (found through DATA_DIR).
 */

export interface QueueCounts {
  /** jobs not done, plus groups applied whose rows are not yet in ClickHouse (the outbox) */
  pending: number
  failed: number
}

export interface Pipeline {
  redisPid: number
  redisPort: number
  counts(): Promise<QueueCounts>
  usedMemory(): Promise<number>
  dbsize(): Promise<number>
  /** MEMORY USAGE of a set over its members, bytes a member (NaN if it does not exist) */
  bytesPerMember(key: string): Promise<number>
  /**
   * redis-server's latency monitor on its AOF fsyncs (`appendfsync always`), from now on:
   * resolves to a reader of the stalls since, the worst of each second over 10 ms (ms)
   */
  watchFsync(): Promise<() => Promise<number[]>>
  /** AOF rewrites so far, and the CPU its forked children used in all (s) */
  rewrites(): Promise<AofRewrites>
  /** INFO commandstats: each command's calls so far, and the time redis-server spent running them */
  commandStats(): Promise<Map<string, CommandStat>>
  close(): Promise<void>
}

export interface CommandStat {
  calls: number
  usec: number
}

export interface AofRewrites {
  count: number
  childCpuS: number
}

/** The redis-server a service on the embedded default started for DATA_DIR (it writes redis/server.json). */
export function embeddedRedis(dataDir: string): { pid: number; port: number } {
  return JSON.parse(readFileSync(join(dataDir, 'redis', 'server.json'), 'utf8')) as {
    pid: number
    port: number
  }
}

export async function openPipeline(dataDir: string): Promise<Pipeline> {
  const state = embeddedRedis(dataDir)
  const connection = new Redis({
    host: '127.0.0.1',
    port: state.port,
    maxRetriesPerRequest: null,
    retryStrategy: (n) => (n > 20 ? null : 200),
  })
  connection.on('error', (e: Error) => {
    process.stderr.write(`bench redis connection: ${e.message}\n`)
  })
  const keys = makeKeys('ra')
  const queue = new Queue('ingest', { connection, prefix: keys.bullPrefix() })
  return {
    redisPid: state.pid,
    redisPort: state.port,
    counts: async () => {
      const c = await queue.getJobCounts('wait', 'active', 'delayed', 'prioritized', 'failed')
      const outbox = await connection.llen(keys.outbox())
      return {
        pending: (c.wait ?? 0) + (c.active ?? 0) + (c.delayed ?? 0) + (c.prioritized ?? 0) + outbox,
        failed: c.failed ?? 0,
      }
    },
    usedMemory: async () => {
      const info = await connection.info('memory')
      return Number(info.match(/^used_memory:(\d+)/m)?.[1] ?? Number.NaN)
    },
    dbsize: () => connection.dbsize(),
    bytesPerMember: async (key) => {
      const n = await connection.call('MEMORY', 'USAGE', key, 'SAMPLES', '0')
      const members = await connection.scard(key)
      return typeof n === 'number' && members > 0 ? n / members : Number.NaN
    },
    watchFsync: async () => {
      await connection.config('SET', 'latency-monitor-threshold', '10')
      await connection.call('LATENCY', 'RESET')
      return async () => {
        const history = (await connection.call('LATENCY', 'HISTORY', 'aof-fsync-always')) as Array<
          [number, number]
        >
        return history.map(([, ms]) => ms).sort((a, b) => a - b)
      }
    },
    rewrites: async () => {
      const info = `${await connection.info('persistence')}\n${await connection.info('cpu')}`
      const num = (field: string) =>
        Number(info.match(new RegExp(`^${field}:([\\d.]+)`, 'm'))?.[1] ?? Number.NaN)
      return {
        count: num('aof_rewrites'),
        childCpuS: num('used_cpu_sys_children') + num('used_cpu_user_children'),
      }
    },
    commandStats: async () => parseCommandStats(await connection.info('commandstats')),
    close: async () => {
      await queue.close()
      connection.disconnect()
    },
  }
}

export interface DrainResult {
  /** the queue is empty and the counter reached `expected` */
  done: boolean
  /** performance.now() when that was first seen */
  tDone: number
  clicks: number
  pending: number
  failed: number
  why: string
}

export interface DrainWatch {
  pipeline: Pipeline
  clicks: () => Promise<number>
  /** undefined: wait only for the queue to empty */
  expected: number | undefined
  limitMs: number
  /** give up when neither the counter nor the queue moved for this long */
  stallMs: number
  intervalMs: number
}

export async function waitForDrain(w: DrainWatch): Promise<DrainResult> {
  const t0 = performance.now()
  let lastProgress = t0
  let prev = { clicks: -1, pending: -1 }
  for (;;) {
    const [c, clicks] = await Promise.all([w.pipeline.counts(), w.clicks()])
    const now = performance.now()
    const result = { tDone: now, clicks, pending: c.pending, failed: c.failed }
    if (c.pending === 0 && (w.expected === undefined || clicks >= w.expected)) {
      return { ...result, done: true, why: 'drained' }
    }
    if (clicks !== prev.clicks || c.pending !== prev.pending) lastProgress = now
    prev = { clicks, pending: c.pending }
    if (now - lastProgress > w.stallMs) {
      return { ...result, done: false, why: `no progress for ${Math.round(w.stallMs / 1000)} s` }
    }
    if (now - t0 > w.limitMs) {
      return { ...result, done: false, why: `not drained in ${Math.round(w.limitMs / 1000)} s` }
    }
    await new Promise((r) => setTimeout(r, w.intervalMs))
  }
}

/** Samples VmRSS of some processes every `everyMs`, keeping the maximum of each. */
export class RssSampler {
  readonly maxKb = new Map<number, number>()
  private timer: NodeJS.Timeout | undefined

  constructor(
    private readonly pids: number[],
    private readonly everyMs = 500,
  ) {}

  start(): void {
    this.sample()
    this.timer = setInterval(() => this.sample(), this.everyMs)
  }

  stop(): void {
    if (this.timer !== undefined) clearInterval(this.timer)
    this.timer = undefined
    this.sample()
  }

  max(pid: number): number {
    return this.maxKb.get(pid) ?? 0
  }

  private sample(): void {
    for (const pid of this.pids) {
      const m = memoryKb(pid)
      if (m !== undefined) this.maxKb.set(pid, Math.max(this.max(pid), m.rss))
    }
  }
}

/** `cmdstat_<name>:calls=<n>,usec=<µs>,...` lines, by command name */
function parseCommandStats(info: string): Map<string, CommandStat> {
  const out = new Map<string, CommandStat>()
  for (const m of info.matchAll(/^cmdstat_([^:]+):calls=(\d+),usec=(\d+)/gm)) {
    if (m[1] !== undefined) out.set(m[1], { calls: Number(m[2]), usec: Number(m[3]) })
  }
  return out
}

/**
 * A phase of single events, as the queue and redis-server saw it: queue writes (jobs) and
 * events from the service's /metrics, and redis-server's time running commands, the scripts
 * (EVALSHA: BullMQ's three a job, the worker's own) and all, from INFO commandstats before and
 * after. The bench's own polls of the queue are in it too, a few calls.
 */
export interface QueueSplit {
  jobs: number
  events: number
  scripts: CommandStat
  all: CommandStat
}

export function queueSplit(
  metrics: { before: Map<string, number>; after: Map<string, number> },
  commands: { before: Map<string, CommandStat>; after: Map<string, CommandStat> },
): QueueSplit {
  const delta = (name: string) =>
    (metrics.after.get(name) ?? Number.NaN) - (metrics.before.get(name) ?? Number.NaN)
  const since = (name: string): CommandStat => {
    const a = commands.after.get(name) ?? { calls: 0, usec: 0 }
    const b = commands.before.get(name) ?? { calls: 0, usec: 0 }
    return { calls: a.calls - b.calls, usec: a.usec - b.usec }
  }
  const all = { calls: 0, usec: 0 }
  for (const name of commands.after.keys()) {
    const d = since(name)
    all.calls += d.calls
    all.usec += d.usec
  }
  return {
    jobs: delta('ra_ingest_batches_total'),
    events: delta('ra_ingest_events_accepted_total'),
    scripts: since('evalsha'),
    all,
  }
}

/** The service's event loop and GC over a phase, from its /metrics (ms). */
export interface RuntimeSplit {
  /** how late a 10 ms timer ran in the last complete 10 s window: p99, worst */
  delayP99: number
  delayMax: number
  /** the longest GC pause of that window */
  gcMax: number
  /** GC pauses between the two reads */
  scavenges: number
  scavengeMs: number
  majors: number
  majorMs: number
}

/** The phase between two reads of /metrics: `before` at its start, `after` at its end. */
export function runtimeSplit(before: Map<string, number>, after: Map<string, number>): RuntimeSplit {
  const at = (m: Map<string, number>, name: string) => m.get(name) ?? Number.NaN
  const diff = (name: string) => at(after, name) - at(before, name)
  return {
    delayP99: at(after, 'ra_nodejs_eventloop_delay_p99_seconds') * 1000,
    delayMax: at(after, 'ra_nodejs_eventloop_delay_max_seconds') * 1000,
    gcMax: at(after, 'ra_nodejs_gc_pause_max_seconds') * 1000,
    scavenges: diff('ra_nodejs_gc_scavenges_total'),
    scavengeMs: diff('ra_nodejs_gc_scavenge_seconds_total') * 1000,
    majors: diff('ra_nodejs_gc_major_total'),
    majorMs: diff('ra_nodejs_gc_major_seconds_total') * 1000,
  }
}

/** The service's memory by holder, as its /metrics gauges give it (bytes). */
export interface MemorySplit {
  rss: number
  heapTotal: number
  external: number
  chdb: number
}

/**
 * Calls `read` every `everyMs` while started and keeps the reading that `rank` puts highest,
 * above 0 (a failed read is skipped): the most of something over a phase.
 */
export class PeakSampler<T> {
  peak: T | undefined
  private timer: NodeJS.Timeout | undefined

  constructor(
    private readonly read: () => Promise<T>,
    private readonly rank: (reading: T) => number,
    private readonly everyMs: number,
  ) {}

  start(): void {
    this.timer = setInterval(() => {
      this.read().then(
        (reading) => {
          if (this.rank(reading) > (this.peak === undefined ? 0 : this.rank(this.peak))) this.peak = reading
        },
        () => undefined,
      )
    }, this.everyMs)
  }

  stop(): void {
    if (this.timer !== undefined) clearInterval(this.timer)
    this.timer = undefined
  }
}

/** The queue's pending jobs every 500 ms: the most at once. */
export function queueSampler(pipeline: Pipeline): PeakSampler<number> {
  return new PeakSampler(
    async () => (await pipeline.counts()).pending,
    (n) => n,
    500,
  )
}

/**
 * The service's /metrics every 2 s: what the memory was made of at its highest RSS (the
 * gauges cost the service a chDB query each time).
 */
export function memorySampler(metricsUrl: string): PeakSampler<MemorySplit> {
  const read = async (): Promise<MemorySplit> => {
    const m = await readMetrics(metricsUrl)
    return {
      rss: m.get('ra_process_resident_memory_bytes') ?? 0,
      heapTotal: m.get('ra_nodejs_heap_total_bytes') ?? 0,
      external: m.get('ra_nodejs_external_bytes') ?? 0,
      chdb: m.get('ra_clickhouse_memory_tracked_bytes') ?? 0,
    }
  }
  return new PeakSampler(read, (m) => m.rss, 2_000)
}

/** The service's GET /metrics as name -> value (unlabelled series only). */
export async function readMetrics(url: string): Promise<Map<string, number>> {
  const res = await fetch(url, { signal: AbortSignal.timeout(10_000) })
  const text = await res.text()
  const out = new Map<string, number>()
  for (const line of text.split('\n')) {
    const m = line.match(/^([a-zA-Z_:][a-zA-Z0-9_:]*) (\S+)$/)
    if (m?.[1] !== undefined && m[2] !== undefined) out.set(m[1], Number(m[2]))
  }
  return out
}
