import type { ClickHouse } from '@referral/clickhouse'
import { queryRows } from '@referral/clickhouse'
import { makeRedis, whenReady } from '@referral/core'
import type { Service } from '@referral/server'
import { startService } from '@referral/server'
import { outboxStatus } from '@referral/workers'
import { silentLog, testConfig } from './env.ts'

/** The whole service in this process: API + workers, on the given data dir and Redis. */
export async function startTestService(dataDir: string, redisUrl: string, env: Record<string, string> = {}) {
  const config = testConfig(dataDir, { REDIS_URL: redisUrl, ...env })
  const service = await startService({ config, role: 'all', log: silentLog })
  if (service.url === undefined || service.ch === null)
    throw new Error('service started without API or ClickHouse')
  return { service, url: service.url, ch: service.ch, config }
}

/**
 * Waits until the ingest queue has nothing waiting, running or scheduled for retry, and the
 * outbox is empty: every accepted event is counted and its rows are in ClickHouse.
 */
export async function drained(service: Service, timeoutMs = 30_000): Promise<void> {
  const q = service.queue
  if (q === null) throw new Error('no queue in this process')
  const redis = await whenReady(makeRedis(service.redisUrl, 'command', 'test-drained'))
  try {
    const deadline = Date.now() + timeoutMs
    while (Date.now() < deadline) {
      const c = await q.getJobCounts('wait', 'active', 'delayed', 'prioritized')
      const empty = Object.values(c).every((n) => n === 0)
      if (empty && (await outboxStatus(redis, service.keys)).groups === 0) return
      await new Promise((r) => setTimeout(r, 50))
    }
  } finally {
    redis.disconnect()
  }
  throw new Error('the ingest queue or the outbox did not drain')
}

export async function count(
  ch: ClickHouse,
  sql: string,
  params: Record<string, unknown> = {},
): Promise<number> {
  const [row] = await queryRows<{ n: string }>(ch, sql, params)
  return Number(row?.n ?? 0)
}

export type { Service }
