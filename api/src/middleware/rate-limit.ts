import { AppError, type Keys } from '@referral/core'
import type { Context, MiddlewareHandler } from 'hono'
import type { Redis } from 'ioredis'

export interface RateLimitOptions {
  name: string
  limit: number
  windowSeconds: number
  clientKey: (c: Context) => string
}

/**
 * Fixed-window counter in Redis, so the limit holds across API processes and restarts.
 * INCR and EXPIRE NX go in one MULTI: a window never loses its expiry.
 */
/** Counts one hit of `client` in the current window; returns the count and seconds to the next window. */
export async function countHit(
  redis: Redis,
  keys: Keys,
  name: string,
  client: string,
  windowSeconds: number,
): Promise<{ count: number; reset: number }> {
  const window = Math.floor(Date.now() / 1000 / windowSeconds)
  const key = keys.rateLimit(`${name}:${client}`, window)
  let count: number
  try {
    const res = await redis.multi().incr(key).expire(key, windowSeconds, 'NX').exec()
    count = Number(res?.[0]?.[1] ?? 0)
  } catch (e) {
    throw new AppError('unavailable', 'rate limiter unavailable', [], { cause: e })
  }
  return { count, reset: (window + 1) * windowSeconds - Math.floor(Date.now() / 1000) }
}

export function rateLimit(redis: Redis, keys: Keys, opts: RateLimitOptions): MiddlewareHandler {
  return async function rateLimited(c, next) {
    const { count, reset } = await countHit(redis, keys, opts.name, opts.clientKey(c), opts.windowSeconds)
    c.header('RateLimit-Limit', String(opts.limit))
    c.header('RateLimit-Remaining', String(Math.max(0, opts.limit - count)))
    c.header('RateLimit-Reset', String(reset))
    if (count > opts.limit) {
      throw new AppError('rate_limited', `too many requests; retry in ${reset} s`, [], {
        headers: { 'Retry-After': String(reset) },
      })
    }
    await next()
  }
}
