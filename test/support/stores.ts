import { type ClickHouse, migrate, openClickHouse } from '@referral/clickhouse'
import { makeRedis, whenReady } from '@referral/core'
import type { RedisServer } from '@referral/server'
import type { Redis } from 'ioredis'
import { startTestRedis, tempDir } from './env.ts'

export interface Stores {
  server: RedisServer
  /** a `transaction` client, as the worker uses */
  redis: Redis
  /** migrated; on a server when CLICKHOUSE_URL is set, chDB otherwise */
  ch: ClickHouse
  close(): Promise<void>
}

/** A spawned redis-server and a fresh, migrated ClickHouse database, for worker-level tests. */
export async function openStores(database: string): Promise<Stores> {
  const dir = tempDir()
  const server = await startTestRedis(`${dir.path}/redis`)
  const redis = await whenReady(makeRedis(server.url, 'transaction'))
  const ch = await openClickHouse({
    dataDir: dir.path,
    clickhouse: { url: process.env.CLICKHOUSE_URL, database, user: undefined, password: undefined },
  })
  await migrate(ch)
  return {
    server,
    redis,
    ch,
    close: async () => {
      redis.disconnect()
      await ch.close()
      await server.stop()
      dir.remove()
    },
  }
}
