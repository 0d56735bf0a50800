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
import { type Job, Worker } from 'bullmq'
import { applyJob } from './apply.ts'
import { storeResolution } from './store.ts'

export interface IngestWorkerDeps {
  config: ResolvedConfig
  redisUrl: string
  keys: Keys
  ch: ClickHouse
  log: Logger
}

export interface IngestWorker {
  worker: Worker<JobPayloads['ingest']>
  close(): Promise<void>
}

/**
 * Consumes ingest jobs: apply to Redis state (exactly once per event id), then insert the
 * rows into ClickHouse (exactly once per job). Jobs are processed one at a time across all
 * worker processes (the queue's global concurrency is 1) so events apply in arrival order:
 * a signup before the purchase that follows it.
 */
export async function startIngestWorker(deps: IngestWorkerDeps): Promise<IngestWorker> {
  const { config, keys, ch, log } = deps
  const tx = makeRedis(deps.redisUrl, 'transaction', 'ingest-worker')
  tx.on('error', (e) => log.warn({ err: e.message }, 'ingest worker redis'))
  await whenReady(tx)
  const opts = {
    attributionWindowMs: config.attributionWindowDays * 86_400_000,
    dedupWindowSeconds: config.dedupWindowDays * 86_400,
    resolutionTtlSeconds: 7 * 86_400,
  }
  const processor = async (job: Job<JobPayloads['ingest']>) => {
    const jobId = job.id
    if (jobId === undefined) throw new Error('job without id')
    const res = await applyJob(tx, keys, jobId, job.data.events, opts)
    await storeResolution(ch, jobId, res)
    await tx.del(keys.jobResolution(jobId))
    return { rows: res.rows.length, ledger: res.ledger.length }
  }
  const worker = new Worker<JobPayloads['ingest']>(QUEUE_NAMES.ingest, processor, {
    connection: makeRedis(deps.redisUrl, 'worker', 'ingest-worker'),
    prefix: keys.bullPrefix(),
    concurrency: 1,
    settings: { backoffStrategy },
    // a job is never lost to stalls: it goes back to wait, however often it stalls.
    // A worker killed mid-job holds the single global slot until its lock expires, so the
    // lock is short; a job run twice by mistake is harmless (apply.ts).
    maxStalledCount: 1_000_000,
    lockDuration: 10_000,
    stalledInterval: 5_000,
  })
  worker.on('failed', (job, err) =>
    log.warn(
      { jobId: job?.id, attempts: job?.attemptsMade, err: err.message },
      'ingest job failed, will retry',
    ),
  )
  worker.on('error', (err) => log.error({ err: err.message }, 'ingest worker error'))
  return {
    worker,
    close: async () => {
      await worker.close()
      tx.disconnect()
    },
  }
}
