import { mkdirSync, mkdtempSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { type RedisServer, startRedisServer } from '@referral/server'
import { type Child, freePort, startChild, stopChild, trackPid, trackTmpDir } from './proc.ts'

/**
 * The processes of `npm run soak` (soak.ts): a redis-server owned here (so that it can be
 * killed and restarted), an API process and a workers process (which owns chDB), on loopback.
 */

const ROOT = join(import.meta.dirname, '..')
export const INGEST_KEY = 'soak-ingest-key-0123456789abcdef'
export const JWT_SECRET = 'soak-jwt-secret-0123456789abcdef0123456789abcdef'

export interface Cluster {
  name: string
  dataDir: string
  redis: RedisServer
  redisDir: string
  apiPort: number
  api: Child
  workers: Child
  url: string
}

export function envFor(c: { dataDir: string; redisUrl: string; apiPort: number }): NodeJS.ProcessEnv {
  return {
    PATH: process.env.PATH ?? '',
    HOME: process.env.HOME ?? '',
    DATA_DIR: c.dataDir,
    REDIS_URL: c.redisUrl,
    PORT: String(c.apiPort),
    HOST: '127.0.0.1',
    INGEST_API_KEY: INGEST_KEY,
    AUTH_JWT_SECRET: JWT_SECRET,
    LOG_LEVEL: 'info',
    MAX_QUEUED_JOBS: '0',
  }
}

export async function startApi(c: Omit<Cluster, 'api'> | Cluster): Promise<Child> {
  const env = envFor({ dataDir: join(c.dataDir, 'api'), redisUrl: c.redis.url, apiPort: c.apiPort })
  const child = startChild(`${c.name}-api`, process.execPath, ['server/dist/main.mjs', '--role=api'], {
    env: { ...env, MIGRATE_ON_START: 'false' },
    cwd: ROOT,
  })
  await child.waitForLine((l) => l.includes('Referral analytics is running'), 60_000)
  return child
}

export async function startWorkers(c: Omit<Cluster, 'workers' | 'api'> | Cluster): Promise<Child> {
  const env = envFor({ dataDir: c.dataDir, redisUrl: c.redis.url, apiPort: 0 })
  const child = startChild(
    `${c.name}-workers`,
    process.execPath,
    ['server/dist/main.mjs', '--role=workers'],
    { env, cwd: ROOT },
  )
  await child.waitForLine((l) => l.includes('workers running'), 90_000)
  return child
}

export async function startCluster(name: string, appendfsync: 'always' | 'everysec'): Promise<Cluster> {
  const dataDir = mkdtempSync(join(tmpdir(), `ra-soak-${name}-`))
  trackTmpDir(dataDir)
  const redisDir = join(dataDir, 'redis-ext')
  mkdirSync(redisDir, { recursive: true })
  const redis = await startRedisServer({ dir: redisDir, bin: 'redis-server', appendfsync })
  trackPid(redis.pid)
  const base = { name, dataDir, redis, redisDir, apiPort: await freePort(), url: '' }
  const workers = await startWorkers(base)
  const api = await startApi({ ...base, workers })
  return { ...base, workers, api, url: `http://127.0.0.1:${base.apiPort}` }
}

export async function restartRedis(c: Cluster, appendfsync: 'always' | 'everysec'): Promise<void> {
  c.redis = await startRedisServer({ dir: c.redisDir, bin: 'redis-server', appendfsync, port: c.redis.port })
  trackPid(c.redis.pid)
}

export function killRedis(c: Cluster): Promise<void> {
  return new Promise((r) => {
    c.redis.child.once('exit', () => r())
    c.redis.child.kill('SIGKILL')
  })
}

export async function stopAll(c: Cluster) {
  await stopChild(c.api, 'SIGTERM', 20_000)
  await stopChild(c.workers, 'SIGTERM', 30_000)
}
