import { Worker } from 'node:worker_threads'
import type { Logger, ResolvedConfig } from '@referral/core'
import { emptyIngestStats, type IngestStats } from '@referral/workers'

/**
 * The workers of the all-in-one process on their own thread: the ingest worker (resolving,
 * the Redis commit, serialising rows for ClickHouse), payouts and credit expiry run there
 * with their own Redis clients and their own chDB connection (one engine per process, so
 * both threads see the same tables), and the API's event loop only answers HTTP. A thread
 * that dies is started again; the jobs it held come back through BullMQ's stalled check.
 */

export type WorkerStats = IngestStats

export type ToThread = { type: 'stop' }
export type FromThread =
  | { type: 'ready' }
  | { type: 'stats'; stats: WorkerStats }
  | { type: 'stopped' }
  | { type: 'failed'; message: string }

export interface ThreadData {
  entry: string
  config: ResolvedConfig
  redisUrl: string
}

export interface WorkersThread {
  /** the thread's ingest worker figures, as of its last report (every 500 ms) */
  readonly stats: WorkerStats
  /** the threads started (1 unless one died) */
  readonly starts: number
  stop(): Promise<void>
}

/**
 * The thread's young generation (V8's default is ~48 MB an isolate): its garbage is the
 * events of one group at a time, and the process's memory target is 700 MB. Measured with
 * groups of 10,000 events: RSS peak 20-50 MB lower with 8 than with the default.
 */
const YOUNG_GENERATION_MB = 8

// from the TypeScript source (tests, tsx) the thread registers tsx first; bundled (npm start,
// server/dist) its entry is the thread's own bundle, beside this one
const FROM_SOURCE = import.meta.url.endsWith('.ts')
const ENTRY = FROM_SOURCE
  ? new URL('./thread-entry.mjs', import.meta.url)
  : new URL('./workers-thread-main.mjs', import.meta.url)
const MAIN = new URL('./workers-thread-main.ts', import.meta.url).href

export async function startWorkersThread(opts: {
  config: ResolvedConfig
  redisUrl: string
  log: Logger
}): Promise<WorkersThread> {
  const { log } = opts
  const data: ThreadData = { entry: MAIN, config: opts.config, redisUrl: opts.redisUrl }
  // figures of threads that died are kept: the counters only grow
  const zero = emptyIngestStats
  const done = zero()
  let last = zero()
  const stats = zero()
  const refresh = () => {
    for (const k of Object.keys(stats) as Array<keyof WorkerStats>) stats[k] = done[k] + last[k]
  }
  let stopping = false
  let starts = 0
  let current: Worker

  const launch = () =>
    new Promise<Worker>((resolve, reject) => {
      starts++
      const worker = new Worker(ENTRY, {
        workerData: data,
        resourceLimits: { maxYoungGenerationSizeMb: YOUNG_GENERATION_MB },
      })
      let ready = false
      worker.on('message', (m: FromThread) => {
        if (m.type === 'ready') {
          ready = true
          resolve(worker)
        } else if (m.type === 'stats') {
          last = m.stats
          refresh()
        } else if (m.type === 'failed') {
          if (!ready) reject(new Error(`the workers thread could not start: ${m.message}`))
          else log.error({ err: m.message }, 'workers thread failed')
        }
      })
      worker.on('error', (e) => {
        log.error({ err: e.message }, 'workers thread error')
        if (!ready) reject(e)
      })
      worker.on('exit', (code) => {
        for (const k of Object.keys(done) as Array<keyof WorkerStats>) done[k] += last[k]
        last = zero()
        refresh()
        if (!ready) reject(new Error(`the workers thread exited while starting (code ${code})`))
        else if (!stopping) {
          log.error({ code }, 'workers thread exited; starting another')
          setTimeout(() => {
            if (stopping) return
            launch().then(
              (w) => {
                current = w
              },
              (e: Error) => log.error({ err: e.message }, 'workers thread did not restart'),
            )
          }, 1_000).unref()
        }
      })
    })

  current = await launch()
  return {
    stats,
    get starts() {
      return starts
    },
    stop: async () => {
      stopping = true
      const w = current
      const exited = new Promise<void>((resolve) => w.once('exit', () => resolve()))
      const stopped = new Promise<void>((resolve) => {
        w.on('message', (m: FromThread) => {
          if (m.type === 'stopped') resolve()
        })
      })
      w.postMessage({ type: 'stop' } satisfies ToThread)
      await Promise.race([stopped, exited])
      await w.terminate()
    },
  }
}
