import { mkdtempSync, rmSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { type Config, makeLogger, parseConfig, type ResolvedConfig } from '@referral/core'
import { type RedisServer, startRedisServer } from '@referral/server'

export const INGEST_KEY = 'test-ingest-key-0123456789abcdef'
export const JWT_SECRET = 'test-jwt-secret-0123456789abcdef0123456789abcdef'

export function tempDir(prefix = 'ra-test-'): { path: string; remove(): void } {
  const path = mkdtempSync(join(tmpdir(), prefix))
  return { path, remove: () => rmSync(path, { recursive: true, force: true }) }
}

/** A real redis-server on a free port, owned by the test (kill it, restart it). */
export async function startTestRedis(dir: string): Promise<RedisServer> {
  return startRedisServer({ dir, bin: process.env.REDIS_SERVER_BIN ?? 'redis-server', appendfsync: 'always' })
}

export function testConfig(dataDir: string, env: Record<string, string> = {}): ResolvedConfig {
  const c: Config = parseConfig({
    DATA_DIR: dataDir,
    PORT: '0',
    HOST: '127.0.0.1',
    LOG_LEVEL: 'silent',
    INGEST_API_KEY: INGEST_KEY,
    AUTH_JWT_SECRET: JWT_SECRET,
    // rows reach ClickHouse within 100 ms instead of 1 s: tests read them right after drained()
    CLICKHOUSE_FLUSH_MS: '100',
    ...(process.env.CLICKHOUSE_URL ? { CLICKHOUSE_URL: process.env.CLICKHOUSE_URL } : {}),
    ...env,
  })
  return { ...c, ingestApiKey: INGEST_KEY, jwtSecret: JWT_SECRET, demoLogin: c.demoLogin ?? false }
}

export const silentLog = makeLogger({ logLevel: 'silent' })
