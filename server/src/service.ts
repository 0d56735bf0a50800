import { existsSync, mkdirSync } from 'node:fs'
import { createServer } from 'node:http'
import { join } from 'node:path'
import { getRequestListener } from '@hono/node-server'
import {
  Backlog,
  createApp,
  directIngest,
  GroupCommitter,
  Metrics,
  readRawStats,
  StatsCache,
  StatsHub,
} from '@referral/api'
import { type ClickHouse, migrate, openClickHouse } from '@referral/clickhouse'
import {
  INGEST_JOB_OPTIONS,
  idTime,
  type JobPayloads,
  type Keys,
  type Logger,
  makeKeys,
  makeRedis,
  makeStripe,
  migrateKeyLayout,
  newId,
  type ProcessRole,
  packEvents,
  QUEUE_NAMES,
  type ResolvedConfig,
  repoPath,
  whenReady,
} from '@referral/core'
import {
  type IngestWorker,
  makeWebhooks,
  outboxStatus,
  startIngestWorker,
  startPayoutWorker,
  startWebhookWorker,
} from '@referral/workers'
import { Queue } from 'bullmq'
import type { Hono } from 'hono'
import type { Redis } from 'ioredis'
import { lowerEngineThreads } from './engine-threads.ts'
import { type RedisServer, startRedisServer } from './redis-server.ts'
import {
  addClickHouseMetrics,
  addIngestMetrics,
  addProcessMetrics,
  addRuntimeMetrics,
  addStatsCacheMetrics,
  addWorkerMetrics,
} from './service-metrics.ts'
import { startWorkersThread, type WorkerStats, type WorkersThread } from './workers-thread.ts'

const WEB = repoPath(import.meta.url, 'web')
/** the built dashboard (npm run build -w web), else the static pages it is built from */
export const WEB_ROOT = existsSync(join(WEB, 'dist', 'index.html')) ? join(WEB, 'dist') : join(WEB, 'public')

export interface Service {
  /** where the HTTP server listens (when this process serves HTTP) */
  url: string | undefined
  redisUrl: string
  /** the Redis key layout of this service (QUEUE_PREFIX) */
  keys: Keys
  ch: ClickHouse | null
  redisServer: RedisServer | null
  committer: GroupCommitter<string> | null
  queue: Queue<JobPayloads['ingest']> | null
  ingestWorker: IngestWorker | null
  /** role all with WORKER_THREAD: the workers run there instead of `ingestWorker` */
  workersThread: WorkersThread | null
  /** SSE fan-out of this process (null without the API) */
  hub: StatsHub | null
  /** the HTTP app behind `url` (null without the API) */
  app: Hono | null
  stop(): Promise<void>
}

export interface StartOptions {
  config: ResolvedConfig
  role: ProcessRole
  log: Logger
  webRoot?: string
}

/**
 * Starts what this process runs: the embedded Redis when no REDIS_URL is set, ClickHouse
 * (with migrations), the HTTP API and the workers, by role. `stop()` shuts down in order:
 * stop accepting, answer what was accepted, drain, close workers, stop the spawned Redis.
 */
export async function startService(opts: StartOptions): Promise<Service> {
  const { config, role, log } = opts
  mkdirSync(config.dataDir, { recursive: true })
  const cleanups: Array<() => Promise<void>> = []
  const runCleanups = async () => {
    for (const f of cleanups.splice(0).reverse()) {
      try {
        await f()
      } catch (e) {
        log.error({ err: (e as Error).message }, 'error during shutdown')
      }
    }
  }
  try {
    let redisServer: RedisServer | null = null
    let redisUrl = config.redis.url
    if (redisUrl === undefined) {
      redisServer = await startRedisServer({
        dir: join(config.dataDir, 'redis'),
        bin: config.redis.serverBin,
        appendfsync: config.redis.appendfsync,
        aofRewritePercentage: config.redis.aofRewritePercentage,
      })
      const rs = redisServer
      cleanups.push(() => rs.stop())
      redisUrl = redisServer.url
      log.info({ url: redisUrl, pid: redisServer.pid }, 'started embedded redis-server')
    }

    const keys = makeKeys(config.queuePrefix)
    // data of a version before the hash-tagged key layout moves to it before anything reads it
    const layoutConn = await whenReady(makeRedis(redisUrl, 'command', 'layout'))
    try {
      const layout = await migrateKeyLayout(layoutConn, keys, config.queuePrefix, config.dedupWindowDays)
      if (layout.moved > 0) log.info({ moved: layout.moved }, 'redis keys moved to the hash-tagged layout')
    } finally {
      layoutConn.disconnect()
    }
    const runsWorkers = role !== 'api'
    const runsApi = role !== 'workers'

    // chDB opens its data directory from one process: in a split deployment on chDB the
    // workers own it and the API does without ClickHouse.
    let ch: ClickHouse | null = null
    if (runsWorkers || config.clickhouse.url !== undefined) {
      ch = await openClickHouse(config)
      const c = ch
      cleanups.push(() => c.close())
      if (config.migrateOnStart) {
        const m = await migrate(ch)
        if (m.applied.length > 0) log.info({ applied: m.applied }, 'clickhouse migrations applied')
      }
    }

    let ingestWorker: IngestWorker | null = null
    const stripe = makeStripe(config)
    const metrics = new Metrics()
    addProcessMetrics(metrics)
    const stopRuntimeMetrics = addRuntimeMetrics(metrics)
    cleanups.push(async () => stopRuntimeMetrics())
    if (ch !== null) addClickHouseMetrics(metrics, ch)
    if (ch?.mode === 'chdb') {
      const engine = lowerEngineThreads({ nice: config.chdbThreadNice, everyMs: 1000, log })
      cleanups.push(async () => engine.stop())
      metrics.add({
        name: 'ra_chdb_threads_lowered_total',
        help: "chDB's threads moved to CHDB_THREAD_NICE's lower CPU priority",
        type: 'counter',
        read: () => engine.lowered,
      })
    }
    let workersThread: WorkersThread | null = null
    const workerMetrics = (stats: WorkerStats) => addWorkerMetrics(metrics, stats)
    if (role === 'all' && config.workerThread) {
      // after the migrations; its cleanup runs once the API has stopped and flushed
      const t = await startWorkersThread({ config, redisUrl, log })
      workersThread = t
      workerMetrics(t.stats)
      metrics.add({
        name: 'ra_worker_thread_starts_total',
        help: 'workers threads started (more than 1: one died and was started again)',
        type: 'counter',
        read: () => t.starts,
      })
      cleanups.push(() => t.stop())
    } else if (runsWorkers) {
      if (ch === null) throw new Error('workers need ClickHouse')
      ingestWorker = await startIngestWorker({ config, redisUrl, keys, ch, log })
      const w = ingestWorker
      workerMetrics(w.stats)
      // what cannot reach ClickHouse in half the grace period waits in Redis for the next start
      cleanups.push(() => w.close(Date.now() + config.shutdownGraceMs / 2))
      const whConn = makeRedis(redisUrl, 'worker', 'webhooks')
      whConn.on('error', (e) => log.warn({ err: e.message }, 'webhook redis'))
      const webhooks = makeWebhooks({ config, redis: whConn, keys })
      const whWorker = startWebhookWorker({ config, redis: whConn, connection: whConn, keys, log })
      if (whWorker !== null) {
        metrics.add({
          name: 'ra_webhook_deliveries_total',
          help: 'webhook deliveries that the receiver accepted',
          type: 'counter',
          read: () => whWorker.stats.delivered,
        })
        metrics.add({
          name: 'ra_webhook_failed_attempts_total',
          help: 'webhook delivery attempts that failed (each is retried)',
          type: 'counter',
          read: () => whWorker.stats.failedAttempts,
        })
      }
      cleanups.push(async () => {
        await whWorker?.close()
        await webhooks.close()
        whConn.disconnect()
      })
      if (stripe !== null) {
        const conn = makeRedis(redisUrl, 'worker', 'payouts')
        conn.on('error', (e) => log.warn({ err: e.message }, 'payout redis'))
        const payoutQueue = new Queue<JobPayloads['payouts']>(QUEUE_NAMES.payouts, {
          connection: conn,
          prefix: keys.bullPrefix(),
        })
        const pw = await startPayoutWorker({
          redis: conn,
          connection: conn,
          queue: payoutQueue,
          keys,
          ch,
          stripe,
          log,
          webhooks,
          autoPayoutCron: config.autoPayoutCron,
        })
        cleanups.push(async () => {
          await pw.close()
          await payoutQueue.close()
          conn.disconnect()
        })
      }
    }

    let url: string | undefined
    let committer: GroupCommitter<string> | null = null
    let queue: Queue<JobPayloads['ingest']> | null = null
    let statsHub: StatsHub | null = null
    let httpApp: Hono | null = null
    if (runsApi) {
      const queueConn = makeRedis(redisUrl, 'queue', 'api')
      queueConn.on('error', (e) => log.warn({ err: e.message }, 'queue redis'))
      // a producer that fails fast cannot send BullMQ's first commands before it is connected
      await whenReady(queueConn)
      const commandConn: Redis = makeRedis(redisUrl, 'command', 'api')
      commandConn.on('error', (e) => log.warn({ err: e.message }, 'command redis'))
      cleanups.push(async () => {
        commandConn.disconnect()
      })
      const q = new Queue<JobPayloads['ingest']>(QUEUE_NAMES.ingest, {
        connection: queueConn,
        prefix: keys.bullPrefix(),
        skipWaitingForReady: true,
      })
      queue = q
      const payouts = new Queue<JobPayloads['payouts']>(QUEUE_NAMES.payouts, {
        connection: queueConn,
        prefix: keys.bullPrefix(),
        skipWaitingForReady: true,
      })
      // the other queues, for the queue dashboard only
      const others = [QUEUE_NAMES.credits, QUEUE_NAMES.payoutRuns, QUEUE_NAMES.webhooks].map(
        (name) =>
          new Queue(name, { connection: queueConn, prefix: keys.bullPrefix(), skipWaitingForReady: true }),
      )
      cleanups.push(async () => {
        await q.close()
        await payouts.close()
        for (const o of others) await o.close()
        queueConn.disconnect()
      })
      const gc = new GroupCommitter(
        packEvents,
        async (m, n) => {
          const payload: JobPayloads['ingest'] = { m, n }
          await q.add('events', payload, Object.assign({}, INGEST_JOB_OPTIONS, { jobId: newId() }))
        },
        { maxBatchEvents: 5000, maxInFlight: 4 },
      )
      committer = gc
      const lifecycle = { draining: false }
      const subscriber = makeRedis(redisUrl, 'subscriber', 'api')
      subscriber.on('error', (e) => log.warn({ err: e.message }, 'subscriber redis'))
      const statsCache = new StatsCache((u) => readRawStats(commandConn, keys, u), {
        maxAgeMs: config.statsCacheMs,
        maxEntries: 50_000,
      })
      addStatsCacheMetrics(metrics, statsCache)
      const hub = new StatsHub(subscriber, keys, log, statsCache)
      await hub.start()
      statsHub = hub
      // the oldest waiting job's age, from its id (newId: time-ordered) without reading the job
      const oldestWaitingMs = async () => {
        const [oldest] = await q.getRanges(['wait'], 0, 0, true)
        const at = oldest === undefined ? Number.NaN : idTime(oldest)
        return Number.isNaN(at) ? 0 : Math.max(0, Date.now() - at)
      }
      const backlog = new Backlog(() => q.getWaitingCount(), config.maxQueuedJobs, 250, {
        sample: oldestWaitingMs,
        paceAfterMs: config.ingestPaceAfterMs,
      })
      addIngestMetrics(metrics, {
        committer: gc,
        queue: q,
        oldestWaitingMs,
        outbox: () => outboxStatus(commandConn, keys),
        sseClients: () => hub.clients,
      })
      backlog.start()
      cleanups.push(async () => backlog.stop())
      const app = createApp({
        config,
        redis: commandConn,
        keys,
        events: gc,
        backlog,
        hub,
        statsCache,
        metrics,
        lifecycle,
        ch,
        log,
        webRoot: opts.webRoot ?? WEB_ROOT,
        stripe,
        payouts,
        queues: [q, payouts, ...others],
      })
      httpApp = app
      // POST /v1/events goes straight from node:http to the ingest path; the rest to Hono
      const ingestDirect = directIngest({
        ingestApiKey: config.ingestApiKey,
        backlog,
        events: gc,
        lifecycle,
        log,
      })
      const toHono = getRequestListener(app.fetch)
      const timeout = config.requestTimeoutMs
      const server = createServer(
        {
          // a client that trickles its headers or body gets 408 instead of holding a socket
          requestTimeout: timeout,
          headersTimeout: Math.min(timeout, 20_000),
          connectionsCheckingInterval: Math.max(100, Math.min(1_000, timeout / 4)),
        },
        (req, res) => {
          if (!ingestDirect(req, res)) void toHono(req, res)
        },
      )
      await new Promise<void>((res, rej) => {
        server.once('error', rej)
        server.listen(config.port, config.host, () => {
          server.off('error', rej)
          res()
        })
      })
      const addr = server.address()
      const port = typeof addr === 'object' && addr !== null ? addr.port : config.port
      url = `http://127.0.0.1:${port}`
      // cleanups run last-in first-out: the server stops accepting and finishes the requests
      // in flight (their events are being queued) before the committer closes.
      cleanups.push(() => gc.close())
      cleanups.push(
        () =>
          new Promise<void>((res) => {
            lifecycle.draining = true
            // connections busy now close after their answer (drain middleware); idle ones now
            const sweep = setInterval(() => server.closeIdleConnections(), 50)
            server.close(() => {
              clearInterval(sweep)
              res()
            })
            server.closeIdleConnections()
          }),
      )
      // runs before the server closes: live streams end, so the server can
      cleanups.push(() => hub.close())
    }

    return {
      url,
      redisUrl,
      keys,
      ch,
      redisServer,
      committer,
      queue,
      ingestWorker,
      workersThread,
      hub: statsHub,
      app: httpApp,
      stop: runCleanups,
    }
  } catch (e) {
    await runCleanups()
    throw e
  }
}
