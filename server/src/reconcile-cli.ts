import { openClickHouse } from '@referral/clickhouse'
import { makeKeys, makeRedis, parseConfig, QUEUE_NAMES } from '@referral/core'
import { reconcile } from '@referral/workers'
import { Queue } from 'bullmq'
import { startRedisServer } from './redis-server.ts'

/**
 * `npm run reconcile [-- --fix] [-- --force]`: recompute the live counters from ClickHouse
 * and report (or fix) drift. Run it with the service stopped on the embedded default (chDB
 * opens its data from one process), or anywhere against a ClickHouse server.
 */
async function main(): Promise<void> {
  const fix = process.argv.includes('--fix')
  const force = process.argv.includes('--force')
  const config = parseConfig(process.env)
  const embedded =
    config.redis.url === undefined
      ? await startRedisServer({
          dir: `${config.dataDir}/redis`,
          bin: config.redis.serverBin,
          appendfsync: config.redis.appendfsync,
        })
      : null
  const redis = makeRedis(embedded?.url ?? config.redis.url ?? '', 'command', 'reconcile')
  const ch = await openClickHouse(config)
  const keys = makeKeys(config.queuePrefix)
  const queue = new Queue(QUEUE_NAMES.ingest, { connection: redis, prefix: keys.bullPrefix() })
  try {
    const pending = await queue.getJobCounts('wait', 'active', 'delayed', 'prioritized')
    const inFlight = Object.values(pending).reduce((a, b) => a + b, 0)
    if (inFlight > 0) {
      process.stdout.write(
        `${inFlight} ingest jobs are not done yet: counters run ahead of ClickHouse until they are.\n`,
      )
      if (fix && !force)
        throw new Error('refusing to --fix while jobs are pending (add --force to do it anyway)')
    }
    const report = await reconcile(ch, redis, keys, { fix })
    for (const d of report.drift) {
      const who = d.userId === '' ? '(global)' : d.userId
      process.stdout.write(`${who}\t${d.field}\tredis=${d.redis}\tclickhouse=${d.clickhouse}\n`)
    }
    process.stdout.write(
      `${report.referrers} referrers checked, ${report.drift.length} counters drifted${report.fixed ? ', fixed' : ''}\n`,
    )
    process.exitCode = report.drift.length > 0 && !report.fixed ? 2 : 0
  } finally {
    await queue.close()
    redis.disconnect()
    await ch.close()
    await embedded?.stop()
  }
}

main().catch((e: unknown) => {
  process.stderr.write(`${e instanceof Error ? e.message : String(e)}\n`)
  process.exit(1)
})
