import { once } from 'node:events'
import { Redis, type RedisOptions } from 'ioredis'

/**
 * One ioredis client per role (BullMQ's production guide):
 * - `queue`: producers; fail fast when Redis is away, so ingestion answers 503 in time
 *   instead of buffering events it has not durably stored;
 * - `worker`: BullMQ workers; wait for Redis forever (maxRetriesPerRequest: null);
 * - `command`: reads and writes of program state;
 * - `transaction`: a worker's WATCH/MULTI; never resends a command on a new connection,
 *   where the WATCH would be gone: the job fails and is retried instead;
 * - `subscriber`: pub/sub.
 */
export type RedisRole = 'queue' | 'worker' | 'command' | 'transaction' | 'subscriber'

export function makeRedis(url: string, role: RedisRole, name = 'referral'): Redis {
  const common: RedisOptions = {
    connectionName: `${name}:${role}`,
    // reconnect quickly but not in a tight loop
    retryStrategy: (times) => Math.min(50 * times, 1000),
  }
  const byRole: Record<RedisRole, RedisOptions> = {
    queue: { enableOfflineQueue: false, maxRetriesPerRequest: 1, commandTimeout: 1500 },
    worker: { maxRetriesPerRequest: null },
    command: { maxRetriesPerRequest: 2, commandTimeout: 5000 },
    transaction: {
      maxRetriesPerRequest: 0,
      enableOfflineQueue: false,
      autoResendUnfulfilledCommands: false,
      commandTimeout: 10_000,
    },
    subscriber: { maxRetriesPerRequest: null },
  }
  return new Redis(url, { ...common, ...byRole[role] })
}

/** Resolves once the client is connected: clients that fail fast cannot send before that. */
export async function whenReady(redis: Redis): Promise<Redis> {
  if (redis.status !== 'ready') await once(redis, 'ready')
  return redis
}

/**
 * The commands issued on `redis` from now to the end of this turn of the event loop go out
 * in one socket write, where ioredis writes each as it is issued: the socket is corked until
 * `setImmediate`. A worker completing a group's jobs at once (a script call each) then makes
 * one write, and redis-server one read, instead of one per job. What is sent, its order and
 * the replies are the same; the commands leave a few microseconds later, once the turn's
 * other callbacks have run. Nothing happens if the client is not connected.
 */
export function writeTogether(redis: Redis): void {
  if (redis.status !== 'ready') return
  const socket = redis.stream
  if (!socket.writable) return
  socket.cork()
  setImmediate(() => socket.uncork())
}
