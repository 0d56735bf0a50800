import { AppError, type Keys, makeReferralCode } from '@referral/core'
import type { Redis } from 'ioredis'

// KEYS[1] user hash, KEYS[2] candidate code key; ARGV[1] code, ARGV[2] user id.
// Returns the user's code: the existing one, or the candidate if it was free; nil on collision.
const GET_OR_CREATE = `
local existing = redis.call('HGET', KEYS[1], 'code')
if existing then return existing end
if redis.call('SET', KEYS[2], ARGV[2], 'NX') then
  redis.call('HSET', KEYS[1], 'code', ARGV[1])
  return ARGV[1]
end
return false
`

/** A user's referral code, created on first need: unique, random, never reassigned. */
export async function getOrCreateCode(redis: Redis, keys: Keys, userId: string): Promise<string> {
  for (let attempt = 0; attempt < 8; attempt++) {
    const code = makeReferralCode()
    const got = (await redis.eval(GET_OR_CREATE, 2, keys.user(userId), keys.code(code), code, userId)) as
      | string
      | null
    if (got !== null) return got
  }
  throw new AppError('internal', 'could not allocate a referral code')
}

export async function codeOwner(redis: Redis, keys: Keys, code: string): Promise<string | null> {
  return redis.get(keys.code(code))
}
