import { randomUUID } from 'node:crypto'
import type { ClickHouse } from '@referral/clickhouse'
import {
  backoffStrategy,
  type JobPayloads,
  type Keys,
  type Logger,
  makeRedis,
  QUEUE_NAMES,
  type ResolvedConfig,
  whenReady,
} from '@referral/core'
import { type Job, Queue, Worker } from 'bullmq'
import type { AppliedGroup } from './apply.ts'
import { scheduleExpiries, startCreditExpiryWorker } from './credit-expiry.ts'
import { processJobs } from './process.ts'
import type { CreditExpiry } from './state.ts'
import { eventsOfGroup, makeWebhooks } from './webhooks.ts'

export interface IngestWorkerDeps {
  config: ResolvedConfig
  redisUrl: string
  keys: Keys
  ch: ClickHouse
  log: Logger
  /** events per group of jobs applied and inserted together */
  maxGroupEvents?: number
}

/** a group this large is inserted without lingering for more (config.ingestLingerMs) */
const LINGER_UNTIL_EVENTS = 2_000
const LINGER_POLL_MS = 10
const LOCK_DURATION_MS = 15_000

export interface IngestWorker {
  worker: Worker<JobPayloads['ingest']>
  /** groups, jobs and events done, failures; time spent applying and inserting, inserts made */
  readonly stats: {
    groups: number
    jobs: number
    events: number
    failures: number
    applyMs: number
    insertMs: number
    inserts: number
  }
  close(): Promise<void>
}

type IngestJob = Job<JobPayloads['ingest']>

/**
 * Consumes ingest jobs in groups: it takes the next job (waiting for one), then every job
 * already waiting up to `maxGroupEvents`, and applies and inserts them together. Small jobs
 * (one request each under light load) thus still make large ClickHouse inserts, and the
 * per-job cost is two queue calls. Jobs are fetched manually (BullMQ's manual processing);
 * a failed group is failed job by job, and BullMQ retries each with capped backoff.
 */
export async function startIngestWorker(deps: IngestWorkerDeps): Promise<IngestWorker> {
  const { config, keys, ch, log } = deps
  // bench:worker, events per group: 5,000 -> 26.9k ev/s, 10,000 -> 30.0k, 20,000 -> 31.0k, but
  // the event loop is held 54 / 97 / 200 ms in one stretch and the group's memory doubles
  const maxGroupEvents = deps.maxGroupEvents ?? 10_000
  const tx = makeRedis(deps.redisUrl, 'transaction', 'ingest-worker')
  tx.on('error', (e) => log.warn({ err: e.message }, 'ingest worker redis'))
  await whenReady(tx)
  const credits = new Queue<JobPayloads['credits']>(QUEUE_NAMES.credits, {
    connection: tx,
    prefix: keys.bullPrefix(),
  })
  const webhooks = makeWebhooks({ config, redis: tx, keys })
  const opts = {
    attributionWindowMs: config.attributionWindowDays * 86_400_000,
    fraud: config.fraud,
    dedupWindowSeconds: config.dedupWindowDays * 86_400,
    resolutionTtlSeconds: 7 * 86_400,
    schedule: (expiries: readonly CreditExpiry[]) => scheduleExpiries(credits, expiries),
    // with no endpoint configured, no webhook events are built for each group
    ...(config.webhooks.length === 0
      ? {}
      : { afterStore: (g: AppliedGroup) => webhooks.emit(eventsOfGroup(g.resolution)) }),
  }
  const expiryConnection = makeRedis(deps.redisUrl, 'worker', 'credit-expiry')
  expiryConnection.on('error', (e) => log.warn({ err: e.message }, 'credit expiry redis'))
  const expiryWorker = startCreditExpiryWorker({
    redis: tx,
    connection: expiryConnection,
    keys,
    ch,
    log,
    webhooks,
  })
  // BullMQ closes the connections it makes, not the one it is given
  const connection = makeRedis(deps.redisUrl, 'worker', 'ingest-worker')
  connection.on('error', (e) => log.warn({ err: e.message }, 'ingest worker queue redis'))
  const worker = new Worker<JobPayloads['ingest']>(QUEUE_NAMES.ingest, null, {
    connection,
    prefix: keys.bullPrefix(),
    autorun: false,
    settings: { backoffStrategy },
    // a job is never lost to stalls: it goes back to wait, however often it stalls. A
    // worker killed mid-group leaves its jobs locked until the lock expires; running a job
    // twice is harmless (apply.ts).
    maxStalledCount: 1_000_000,
    lockDuration: LOCK_DURATION_MS,
    stalledInterval: 5_000,
    drainDelay: 1,
  })
  worker.on('error', (err) => log.error({ err: err.message }, 'ingest worker error'))
  await worker.startStalledCheckTimer()
  const stats = { groups: 0, jobs: 0, events: 0, failures: 0, applyMs: 0, insertMs: 0, inserts: 0 }
  let closing = false
  // a group that keeps failing is taken smaller next time (down to one job), so that one bad
  // job or an oversize group cannot hold the whole backlog; it grows back after successes
  let groupLimit = maxGroupEvents

  // Under light load a few events wait at a time, and inserting each handful makes a part in
  // ClickHouse per table (events and its five views), which chDB's threads then merge: at
  // 5k events/s in 50-event requests, chDB's insert threads took ~30% of a core. So, while
  // events keep coming, groups start at most once per ingestLingerMs: a group taken right
  // after the previous one waits out the rest of that time, gathering what arrives (up to
  // 2000 events). An event that reaches an idle worker is applied at once.
  const lingerMs = config.ingestLingerMs
  let lastGroupAt = Number.NEGATIVE_INFINITY
  const takeGroup = async (token: string): Promise<IngestJob[]> => {
    const first = await worker.getNextJob(token, { block: true })
    if (first === undefined) return []
    const jobs = [first]
    let n = first.data.events.length
    const until = lastGroupAt + lingerMs
    let lingered = false
    while (n < groupLimit && !closing) {
      const next = await worker.getNextJob(token, { block: false })
      if (next !== undefined) {
        jobs.push(next)
        n += next.data.events.length
        continue
      }
      const left = until - performance.now()
      if (n >= LINGER_UNTIL_EVENTS || left <= 0) break
      lingered = true
      await new Promise((r) => setTimeout(r, Math.min(LINGER_POLL_MS, left)))
    }
    lastGroupAt = performance.now()
    // jobs taken by hand keep the lock they were taken with (BullMQ renews only those its
    // processor runs): after a wait, the group gets the whole lock time for its apply and insert
    if (lingered) await Promise.all(jobs.map((j) => j.extendLock(token, LOCK_DURATION_MS)))
    return jobs
  }

  const runGroup = async (token: string, jobs: IngestJob[]) => {
    const inputs = jobs.map((j) => ({ id: j.id ?? '', events: j.data.events }))
    try {
      await processJobs(tx, keys, ch, inputs, { ...opts, timings: stats })
      await Promise.all(jobs.map((j) => j.moveToCompleted('done', token, false)))
      stats.groups++
      stats.jobs += jobs.length
      stats.events += inputs.reduce((a, j) => a + j.events.length, 0)
      groupLimit = Math.min(maxGroupEvents, groupLimit * 2)
    } catch (e) {
      stats.failures++
      groupLimit = Math.max(1, Math.floor(groupLimit / 4))
      const err = e instanceof Error ? e : new Error(String(e))
      log.warn({ jobs: jobs.length, err: err.message }, 'ingest group failed, its jobs will be retried')
      await Promise.all(jobs.map((j) => j.moveToFailed(err, token, false)))
    }
  }

  const loop = (async () => {
    while (!closing) {
      const token = randomUUID()
      try {
        const jobs = await takeGroup(token)
        if (jobs.length > 0) await runGroup(token, jobs)
      } catch (e) {
        if (closing) break
        // Redis away: the jobs it holds come back through the stalled check; wait and go on
        log.warn({ err: (e as Error).message }, 'ingest worker could not fetch or finish jobs')
        await new Promise((r) => setTimeout(r, 500))
      }
    }
  })()

  return {
    worker,
    stats,
    close: async () => {
      closing = true
      await worker.close()
      await loop
      await expiryWorker.close()
      await credits.close()
      await webhooks.close()
      expiryConnection.disconnect()
      tx.disconnect()
      connection.disconnect()
    },
  }
}
