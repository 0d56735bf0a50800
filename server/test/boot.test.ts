import { parseConfig } from '@referral/core'
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
