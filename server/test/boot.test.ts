import { parseConfig } from '@referral/core'
import { Redis } from 'ioredis'
import { afterAll, describe, expect, it } from 'vitest'
import { tempDir } from '../../test/support/env.ts'
import { RedisBinaryMissing, startRedisServer } from '../src/redis-server.ts'
import { resolveSecrets } from '../src/secrets.ts'

describe('start-up', () => {
  const dir = tempDir()
  afterAll(() => dir.remove())

  it('says how to install redis-server when the binary is missing', async () => {
    const start = startRedisServer({
      dir: `${dir.path}/r`,
      bin: 'redis-server-not-installed',
      appendfsync: 'always',
    })
    await expect(start).rejects.toBeInstanceOf(RedisBinaryMissing)
    await expect(start).rejects.toThrow(/apt-get install -y redis-server[\s\S]*REDIS_URL/)
  })

  it('starts redis-server with AOF on, the fsync policy, noeviction and the AOF rewrite threshold asked for', async () => {
    const config = parseConfig({ DATA_DIR: dir.path, REDIS_AOF_REWRITE_PERCENTAGE: '250' })
    const server = await startRedisServer({
      dir: `${dir.path}/settings`,
      bin: process.env.REDIS_SERVER_BIN ?? 'redis-server',
      appendfsync: config.redis.appendfsync,
      aofRewritePercentage: config.redis.aofRewritePercentage,
    })
    const redis = new Redis(server.url)
    try {
      const get = async (name: string) => ((await redis.config('GET', name)) as string[])[1]
      expect(await get('appendonly')).toBe('yes')
      expect(await get('appendfsync')).toBe('always')
      expect(await get('maxmemory-policy')).toBe('noeviction')
      expect(await get('auto-aof-rewrite-percentage')).toBe('250')
    } finally {
      redis.disconnect()
      await server.stop()
    }
  })

  it('refuses an AOF rewrite threshold out of range, and defaults to one that rewrites less often than redis does', () => {
    expect(() => parseConfig({ DATA_DIR: dir.path, REDIS_AOF_REWRITE_PERCENTAGE: '5' })).toThrow(
      /REDIS_AOF_REWRITE_PERCENTAGE/,
    )
    expect(parseConfig({ DATA_DIR: dir.path }).redis.aofRewritePercentage).toBeGreaterThan(100)
  })

  it('generates missing secrets once and keeps them across restarts, but never writes env secrets', () => {
    const first = resolveSecrets(parseConfig({ DATA_DIR: dir.path }))
    expect(first.generated).toEqual(['INGEST_API_KEY', 'AUTH_JWT_SECRET'])
    const again = resolveSecrets(parseConfig({ DATA_DIR: dir.path }))
    expect(again.config.ingestApiKey).toBe(first.config.ingestApiKey)
    expect(again.config.jwtSecret).toBe(first.config.jwtSecret)
    const fromEnv = resolveSecrets(
      parseConfig({ DATA_DIR: `${dir.path}/env`, INGEST_API_KEY: 'k'.repeat(32) }),
    )
    expect(fromEnv.config.ingestApiKey).toBe('k'.repeat(32))
    expect(fromEnv.generated).toEqual(['AUTH_JWT_SECRET'])
  })
})
