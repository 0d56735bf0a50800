import { makeRedis, whenReady, writeTogether } from '@referral/core'
import type { Redis } from 'ioredis'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { startTestRedis, tempDir } from './support/env.ts'

/**
 * writeTogether (core/src/redis.ts), on a real redis-server: the commands a turn of the event
 * loop issues leave in one socket write and reach the server in one read, with the same
 * replies in the same order; without it, ioredis writes each one as it is issued.
 */
describe('commands written together', () => {
  const dir = tempDir()
  let redis: Awaited<ReturnType<typeof startTestRedis>>
  let client: Redis
  let observer: Redis

  beforeAll(async () => {
    redis = await startTestRedis(`${dir.path}/redis`)
    client = await whenReady(makeRedis(redis.url, 'worker', 'test-client'))
    observer = await whenReady(makeRedis(redis.url, 'command', 'test-observer'))
  })
  afterAll(async () => {
    client.disconnect()
    observer.disconnect()
    await redis.stop()
    dir.remove()
  })

  /** redis-server's count of reads from its clients' sockets (this INFO's own read included) */
  const readsProcessed = async () =>
    Number(/total_reads_processed:(\d+)/.exec(await observer.info('stats'))?.[1])
  const twenty = () => Array.from({ length: 20 }, (_, i) => client.incrby('writes:n', i + 1))

  it('holds the turn’s commands in the socket, then sends them in one write the server reads once', async () => {
    await client.del('writes:n')
    const before = await readsProcessed()
    writeTogether(client)
    const replies = twenty()
    // still in this turn: nothing has left the process yet
    expect(client.stream.writableCorked).toBe(1)
    expect(client.stream.writableLength).toBeGreaterThan(0)
    // each reply is the running sum: the commands ran in the order they were issued
    expect(await Promise.all(replies)).toEqual(Array.from({ length: 20 }, (_, i) => ((i + 1) * (i + 2)) / 2))
    expect(client.stream.writableCorked).toBe(0)
    // one read for the twenty commands, one for the INFO that counts
    expect((await readsProcessed()) - before).toBe(2)
  })

  it('without it, each command is written as it is issued', async () => {
    await client.del('writes:n')
    const replies = twenty()
    expect(client.stream.writableCorked).toBe(0)
    expect(client.stream.writableLength).toBe(0)
    expect((await Promise.all(replies)).at(-1)).toBe(210)
  })

  it('does nothing on a client that is not connected', async () => {
    const away = makeRedis('redis://127.0.0.1:1', 'worker', 'test-away')
    away.on('error', () => {})
    writeTogether(away)
    expect(away.stream?.writableCorked ?? 0).toBe(0)
    away.disconnect()
  })
})
