import { backfillRollups, type ClickHouse, openClickHouse } from '@referral/clickhouse'
import { type Config, makeKeys, makeRedis, parseConfig, QUEUE_NAMES, whenReady } from '@referral/core'
import { outboxStatus, reconcile, replayDeadLetters } from '@referral/workers'
import { Queue } from 'bullmq'
import type { Redis } from 'ioredis'
import { type RedisServer, startRedisServer } from './redis-server.ts'

const USAGE = `npm run ops -- <command>
  replay-dead-letters [--queue NAME]... [--limit N]   move failed jobs back to wait (all queues by default)
  backfill-rollups --from YYYY-MM-DD --to YYYY-MM-DD    rebuild the rollups of [from, to) from raw rows (idempotent)
  reconcile [--fix] [--force]                          recompute the live counters from ClickHouse, report or fix drift
On the embedded default run it with the service stopped (chDB opens its data from one process).`

/** The values of every `--name value` pair in args. */
function option(args: readonly string[], name: string): string[] {
  return args.flatMap((a, i) => (a === `--${name}` && args[i + 1] !== undefined ? [args[i + 1] ?? ''] : []))
}

function day(value: string | undefined, name: string): number {
  if (value === undefined || !/^\d{4}-\d{2}-\d{2}$/.test(value))
    throw new Error(`--${name} YYYY-MM-DD is required`)
  return Date.parse(`${value}T00:00:00Z`)
}

/** Redis of the config, or the embedded one under DATA_DIR when REDIS_URL is unset. */
async function openRedis(config: Config): Promise<{ redis: Redis; close(): Promise<void> }> {
  let embedded: RedisServer | null = null
  if (config.redis.url === undefined) {
    embedded = await startRedisServer({
      dir: `${config.dataDir}/redis`,
      bin: config.redis.serverBin,
      appendfsync: config.redis.appendfsync,
    })
  }
  const redis = await whenReady(makeRedis(embedded?.url ?? config.redis.url ?? '', 'command', 'ops'))
  return {
    redis,
    close: async () => {
      redis.disconnect()
      await embedded?.stop()
    },
  }
}

export async function runOps(
  args: readonly string[],
  env: Record<string, string | undefined>,
  out: NodeJS.WritableStream,
) {
  const [command, ...rest] = args
  const config = parseConfig(env)
  const keys = makeKeys(config.queuePrefix)
  const say = (line: string) => out.write(`${line}\n`)

  if (command === 'replay-dead-letters') {
    const queues = option(rest, 'queue')
    const known: readonly string[] = Object.values(QUEUE_NAMES)
    const unknown = queues.filter((q) => !known.includes(q))
    if (unknown.length > 0)
      throw new Error(`unknown queue ${unknown.join(', ')} (queues: ${known.join(', ')})`)
    const [limitText] = option(rest, 'limit')
    const limit = limitText === undefined ? undefined : Number(limitText)
    if (limit !== undefined && !(Number.isInteger(limit) && limit > 0))
      throw new Error(`--limit must be a whole number above 0 (got ${limitText})`)
    const r = await openRedis(config)
    try {
      const results = await replayDeadLetters(r.redis, keys.bullPrefix(), {
        ...(queues.length > 0 ? { queues } : {}),
        ...(limit !== undefined ? { limit } : {}),
      })
      for (const { queue, replayed } of results)
        say(`${queue}\t${replayed.length} replayed\t${replayed.join(' ')}`)
      return 0
    } finally {
      await r.close()
    }
  }

  if (command === 'backfill-rollups') {
    const from = day(option(rest, 'from')[0], 'from')
    const to = day(option(rest, 'to')[0], 'to')
    const ch = await openClickHouse(config)
    try {
      for (const { table, corrected } of await backfillRollups(ch, { from, to }))
        say(`${table}\t${corrected} keys corrected`)
      return 0
    } finally {
      await ch.close()
    }
  }

  if (command === 'reconcile') {
    const fix = rest.includes('--fix')
    const force = rest.includes('--force')
    const r = await openRedis(config)
    let ch: ClickHouse | null = null
    const queue = new Queue(QUEUE_NAMES.ingest, { connection: r.redis, prefix: keys.bullPrefix() })
    try {
      ch = await openClickHouse(config)
      const pending = await queue.getJobCounts('wait', 'active', 'delayed', 'prioritized')
      const inFlight = Object.values(pending).reduce((a, b) => a + b, 0)
      const waiting = (await outboxStatus(r.redis, keys)).rows
      if (inFlight > 0 || waiting > 0) {
        say(
          `${inFlight} ingest jobs are not done yet and ${waiting} applied rows wait for ClickHouse (the outbox): counters run ahead of ClickHouse until they are stored.`,
        )
        if (fix && !force)
          throw new Error('refusing to --fix while events are pending (add --force to do it anyway)')
      }
      const report = await reconcile(ch, r.redis, keys, { fix })
      for (const d of report.drift) {
        const who = d.userId === '' ? '(global)' : d.userId
        say(`${who}\t${d.field}\tredis=${d.redis}\tclickhouse=${d.clickhouse}`)
      }
      say(
        `${report.referrers} referrers checked, ${report.drift.length} counters drifted${report.fixed ? ', fixed' : ''}`,
      )
      return report.drift.length > 0 && !report.fixed ? 2 : 0
    } finally {
      await queue.close()
      await ch?.close()
      await r.close()
    }
  }

  say(USAGE)
  return command === undefined || command === 'help' || command === '--help' ? 0 : 64
}
