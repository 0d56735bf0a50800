import type { ClickHouse } from '@referral/clickhouse'
import { queryRows } from '@referral/clickhouse'
import type { Service } from '@referral/server'
import { startService } from '@referral/server'
import { silentLog, testConfig } from './env.ts'

/** The whole service in this process: API + workers, on the given data dir and Redis. */
export async function startTestService(dataDir: string, redisUrl: string, env: Record<string, string> = {}) {
  const config = testConfig(dataDir, { REDIS_URL: redisUrl, ...env })
  const service = await startService({ config, role: 'all', log: silentLog })
  if (service.url === undefined || service.ch === null)
    throw new Error('service started without API or ClickHouse')
  return { service, url: service.url, ch: service.ch, config }
}

/** Waits until the ingest queue has nothing waiting, running or scheduled for retry. */
export async function drained(service: Service, timeoutMs = 30_000): Promise<void> {
  const q = service.queue
  if (q === null) throw new Error('no queue in this process')
  const deadline = Date.now() + timeoutMs
  while (Date.now() < deadline) {
    const c = await q.getJobCounts('wait', 'active', 'delayed', 'prioritized')
    if (Object.values(c).every((n) => n === 0)) return
    await new Promise((r) => setTimeout(r, 50))
  }
  throw new Error('the ingest queue did not drain')
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
