import { makeKeys, makeLogger, makeRedis } from '@referral/core'
import { Hono } from 'hono'
import type { Redis } from 'ioredis'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { startTestRedis, tempDir } from '../../test/support/env.ts'
import { makeErrorHandler } from '../src/errors.ts'
import { rateLimit } from '../src/middleware/rate-limit.ts'

describe('rate limit', () => {
  const dir = tempDir()
  let server: Awaited<ReturnType<typeof startTestRedis>>
  let redis: Redis

  beforeAll(async () => {
    server = await startTestRedis(dir.path)
    redis = makeRedis(server.url, 'command')
  })
  afterAll(async () => {
    redis?.disconnect()
    await server?.stop()
    dir.remove()
  })

  const appWith = (limit: number, prefix: string) => {
    const app = new Hono()
    app.onError(makeErrorHandler(makeLogger({ logLevel: 'silent' })))
    app.use(
      '*',
      rateLimit(redis, makeKeys(prefix), {
        name: 't',
        limit,
        windowSeconds: 60,
        clientKey: (c) => c.req.header('x-client') ?? '',
      }),
    )
    app.get('/', (c) => c.text('ok'))
    return app
  }

  it('answers 429 with Retry-After past the limit, per client', async () => {
    const app = appWith(3, 'rl1')
    const statuses: number[] = []
    for (let i = 0; i < 5; i++)
      statuses.push((await app.request('/', { headers: { 'x-client': 'a' } })).status)
    expect(statuses).toEqual([200, 200, 200, 429, 429])
    const limited = await app.request('/', { headers: { 'x-client': 'a' } })
    expect(Number(limited.headers.get('retry-after'))).toBeGreaterThan(0)
    expect((await app.request('/', { headers: { 'x-client': 'b' } })).status).toBe(200)
  })

  it('holds across processes and restarts: the count lives in Redis', async () => {
    const first = appWith(2, 'rl2')
    await first.request('/', { headers: { 'x-client': 'a' } })
    await first.request('/', { headers: { 'x-client': 'a' } })
    const second = appWith(2, 'rl2') // a new app, as another API process would be
    expect((await second.request('/', { headers: { 'x-client': 'a' } })).status).toBe(429)
  })
})
