import { randomUUID } from 'node:crypto'
import type { ClickHouse } from '@referral/clickhouse'
import {
  backoffStrategy,
  decodeEvents,
  eventCount,
  type JobPayloads,
  type Keys,
  type Logger,
  makeRedis,
  QUEUE_NAMES,
  type QueuedEvent,
  type ResolvedConfig,
  whenReady,
  writeTogether,
} from '@referral/core'
import { type Job, Queue, UnrecoverableError, Worker } from 'bullmq'
import { applyJobs, type StoredGroup } from './apply.ts'
import { scheduleExpiries, startCreditExpiryWorker } from './credit-expiry.ts'
import { outboxStatus, startStoreLoop } from './outbox.ts'
import { Sleeps } from './sleeps.ts'
import { makeWebhooks } from './webhooks.ts'

export interface IngestWorkerDeps {
  config: ResolvedConfig
  redisUrl: string
  keys: Keys
  ch: ClickHouse
  log: Logger
  /** events per group of jobs applied and inserted together */
  maxGroupEvents?: number
}

const LOCK_DURATION_MS = 15_000
/** jobs fetched at once when gathering a group */
const MAX_PARALLEL_FETCHES = 16
/** rows the outbox may hold, in batches, before the applier waits for ClickHouse to take them */
const OUTBOX_MAX_BATCHES = 5

export interface IngestWorker {
  worker: Worker<JobPayloads['ingest']>
  /**
   * groups, jobs and events applied, failed groups; time spent applying; ClickHouse inserts
   * of the outbox (batches), their rows, time and failures
   */
  readonly stats: IngestStats
  /** stops taking jobs, stores the outbox into ClickHouse (until `deadline`, epoch ms), closes */
  close(deadline?: number): Promise<void>
}

export interface IngestStats {
  groups: number
  jobs: number
  events: number
  failures: number
  applyMs: number
  insertMs: number
  inserts: number
  storedRows: number
  storeFailures: number
}

export function emptyIngestStats(): IngestStats {
  return {
    groups: 0,
    jobs: 0,
    events: 0,
    failures: 0,
    applyMs: 0,
    insertMs: 0,
    inserts: 0,
    storedRows: 0,
    storeFailures: 0,
  }
}

type IngestJob = Job<JobPayloads['ingest']>

/**
 * Consumes ingest jobs in groups: it takes the next job (waiting for one), then every job
 * already waiting up to `maxGroupEvents`, applies them together to Redis (counters move at
 * once) and completes them; their rows wait in the outbox, which a loop of its own inserts
 * into ClickHouse in large batches (outbox.ts). Jobs are fetched manually (BullMQ's manual
 * processing); a failed group is failed job by job, and BullMQ retries each with capped
 * backoff. When ClickHouse is away, applied rows wait in the outbox; once it holds
 * OUTBOX_MAX_BATCHES batches, the applier waits too and the jobs wait in the queue.
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
    webhooks: config.webhooks.length > 0,
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
  const stats = emptyIngestStats()
  let closing = false
  /** the linger's pauses, which end early when the worker closes */
  const sleeps = new Sleeps()
  // a group that keeps failing is taken smaller next time (down to one job), so that one bad
  // job or an oversize group cannot hold the whole backlog; it grows back after successes
  let groupLimit = maxGroupEvents

  const afterInsert = async (groups: readonly StoredGroup[]) => {
    await scheduleExpiries(
      credits,
      groups.flatMap((g) => g.expiries),
    )
    const events = groups.flatMap((g) => g.webhooks)
    if (events.length > 0) await webhooks.emit(events)
  }
  // its own connection: a batch's large reads do not hold up the applier's commands
  const storeConn = makeRedis(deps.redisUrl, 'transaction', 'outbox')
  storeConn.on('error', (e) => log.warn({ err: e.message }, 'outbox redis'))
  // it fails fast when not connected (no offline queue): connected before the loop starts
  await whenReady(storeConn)
  const store = startStoreLoop(storeConn, keys, ch, {
    maxRows: config.store.batchRows,
    flushMs: config.store.flushMs,
    afterInsert,
    log,
    stats,
  })

  /**
   * The next job (waiting for one), then what else waits, up to groupLimit events: fetched
   * a few at a time (each fetch is one script call; calls made together share a round trip),
   * 1, 2, 4... while every fetch brings a job, so that a backlog is gathered in few round
   * trips and a trickle wastes at most one empty fetch a group. When the queue runs dry
   * before the first job is workerLingerMs old, it waits until then, once, and fetches again:
   * under a trickle a group gathers what arrived meanwhile (each group costs the same round
   * trips and fsyncs whatever its size); a backlog never runs dry.
   */
  const takeGroup = async (token: string): Promise<IngestJob[]> => {
    const first = await worker.getNextJob(token, { block: true })
    if (first === undefined) return []
    const jobs = [first]
    let n = eventCount(first.data)
    const per = Math.max(1, n)
    let lingered = false
    let want = 1
    while (n < groupLimit && !closing) {
      const room = Math.ceil((groupLimit - n) / per)
      // the fetches, a script call each, in one write (and redis-server's one read)
      writeTogether(connection)
      const got = await Promise.all(
        Array.from({ length: Math.min(want, room) }, () => worker.getNextJob(token, { block: false })),
      )
      let empty = false
      for (const job of got) {
        if (job === undefined) empty = true
        else {
          jobs.push(job)
          n += eventCount(job.data)
        }
      }
      if (!empty) {
        want = Math.min(MAX_PARALLEL_FETCHES, want * 2)
        continue
      }
      // the job's time is its producer's clock: a clock ahead of ours waits no longer than the linger
      const wait = Math.min(config.workerLingerMs, first.timestamp + config.workerLingerMs - Date.now())
      if (lingered || wait <= 0 || closing) break
      lingered = true
      await sleeps.sleep(wait)
      want = 1
    }
    return jobs
  }

  /**
   * ClickHouse is behind (or away): wait while the outbox holds more than it may. Read only
   * when the count its last commit returned (every applier's rows then) reaches the limit;
   * other appliers' groups since then are not in it, so the outbox may pass the limit by a
   * group of each. Unknown (start, a failed group whose commit may have run): read.
   */
  let outboxRowsKnown = Number.POSITIVE_INFINITY
  const outboxFull = async () => {
    const limit = OUTBOX_MAX_BATCHES * config.store.batchRows
    if (outboxRowsKnown < limit) return
    for (;;) {
      const { rows } = await outboxStatus(tx, keys)
      outboxRowsKnown = rows
      if (closing || rows < limit) return
      await new Promise((r) => setTimeout(r, 100))
    }
  }

  const runGroup = async (token: string, taken: IngestJob[]) => {
    // a job whose data cannot be read never will be: failed at once (a dead letter to look
    // at, and replay once fixed), while the jobs beside it go on
    const jobs: IngestJob[] = []
    const inputs: Array<{ id: string; events: QueuedEvent[] }> = []
    for (const j of taken) {
      try {
        inputs.push({ id: j.id ?? '', events: decodeEvents(j.data) })
        jobs.push(j)
      } catch (e) {
        const err = new UnrecoverableError(`the job's events cannot be read: ${(e as Error).message}`)
        stats.failures++
        log.error({ job: j.id, err: err.message }, 'ingest job unreadable, failed without retries')
        await j.moveToFailed(err, token, false)
      }
    }
    if (jobs.length === 0) return
    try {
      const t0 = performance.now()
      const applied = await applyJobs(tx, keys, inputs, opts)
      if (applied?.outboxRows !== undefined && !Number.isNaN(applied.outboxRows))
        outboxRowsKnown = applied.outboxRows
      stats.applyMs += performance.now() - t0
      writeTogether(connection)
      await Promise.all(jobs.map((j) => j.moveToCompleted('done', token, false)))
      stats.groups++
      stats.jobs += jobs.length
      stats.events += inputs.reduce((a, j) => a + j.events.length, 0)
      groupLimit = Math.min(maxGroupEvents, groupLimit * 2)
    } catch (e) {
      stats.failures++
      outboxRowsKnown = Number.POSITIVE_INFINITY
      groupLimit = Math.max(1, Math.floor(groupLimit / 4))
      const err = e instanceof Error ? e : new Error(String(e))
      log.warn({ jobs: jobs.length, err: err.message }, 'ingest group failed, its jobs will be retried')
      await Promise.all(jobs.map((j) => j.moveToFailed(err, token, false)))
    }
  }

  // the next group is taken while this one is applied: its fetches overlap the commit
  const loop = (async () => {
    let next: Promise<IngestJob[]> | undefined
    while (!closing) {
      const token = randomUUID()
      try {
        await outboxFull()
        if (closing) break
        const jobs = await (next ?? takeGroup(token))
        next = undefined
        const groupToken = jobs[0]?.token ?? token
        if (jobs.length > 0) {
          if (!closing) next = takeGroup(randomUUID())
          await runGroup(groupToken, jobs)
        }
      } catch (e) {
        next = undefined
        if (closing) break
        // Redis away: the jobs it holds come back through the stalled check; wait and go on
        log.warn({ err: (e as Error).message }, 'ingest worker could not fetch or finish jobs')
        await new Promise((r) => setTimeout(r, 500))
      }
    }
    // a group taken but not applied goes back to wait, for the next worker (or start)
    const left = await next?.catch(() => [])
    await Promise.all(
      (left ?? []).map((j) =>
        j.moveToWait(j.token).catch((e: Error) => {
          // its lock runs out and the stalled check puts it back
          log.warn({ job: j.id, err: e.message }, 'could not hand a taken job back at close')
        }),
      ),
    )
  })()

  return {
    worker,
    stats,
    close: async (deadline?: number) => {
      closing = true
      sleeps.close()
      await worker.close()
      await loop
      // what was applied goes to ClickHouse before the process stops (what cannot, waits in Redis)
      await store.close(deadline)
      await expiryWorker.close()
      await credits.close()
      await webhooks.close()
      expiryConnection.disconnect()
      tx.disconnect()
      storeConn.disconnect()
      connection.disconnect()
    },
  }
}
