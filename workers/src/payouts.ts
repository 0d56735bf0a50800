import { type Keys, MIN_PAYOUT_CENTS, newId } from '@referral/core'
import type { Redis } from 'ioredis'

/**
 * Payout records in Redis. Requesting a payout and settling it are Lua scripts: the request
 * takes the whole cash balance in the same step that creates the pending record, so two
 * requests at once cannot pay the same cents twice; settling moves a payout out of pending
 * exactly once (paid, or failed with the cash given back).
 */

export type PayoutStatus = 'pending' | 'paid' | 'failed'

export interface Payout {
  id: string
  user_id: string
  amount_cents: number
  status: PayoutStatus
  account: string
  created_at: number
  transfer_id: string | null
  settled_at: number | null
  failure: string | null
}

// KEYS: balance, payout, user's payouts, pending set; ARGV: id, min, now, user, account
// Returns {1, amount} for a payout made, {0, cash} when the cash (possibly negative: a refund
// after a payout) is below the minimum.
const REQUEST = `
local cash = tonumber(redis.call('HGET', KEYS[1], 'cash') or '0')
if cash < tonumber(ARGV[2]) then return {0, cash} end
redis.call('HINCRBY', KEYS[1], 'cash', -cash)
redis.call('HSET', KEYS[2], 'id', ARGV[1], 'user_id', ARGV[4], 'amount_cents', cash, 'status', 'pending',
  'account', ARGV[5], 'created_at', ARGV[3])
redis.call('LPUSH', KEYS[3], ARGV[1])
redis.call('ZADD', KEYS[4], ARGV[3], ARGV[1])
return {1, cash}
`

// KEYS: payout, pending set, balance; ARGV: outcome (paid|failed), detail, now
const SETTLE = `
if redis.call('HGET', KEYS[1], 'status') ~= 'pending' then return 0 end
redis.call('ZREM', KEYS[2], redis.call('HGET', KEYS[1], 'id'))
redis.call('HSET', KEYS[1], 'status', ARGV[1], 'settled_at', ARGV[3])
if ARGV[1] == 'paid' then
  redis.call('HSET', KEYS[1], 'transfer_id', ARGV[2])
else
  redis.call('HSET', KEYS[1], 'failure', ARGV[2])
  redis.call('HINCRBY', KEYS[3], 'cash', redis.call('HGET', KEYS[1], 'amount_cents'))
end
return 1
`

export type RequestResult = { ok: true; payout: Payout } | { ok: false; cashCents: number }

export async function requestPayout(
  redis: Redis,
  keys: Keys,
  userId: string,
  account: string,
  now: number,
): Promise<RequestResult> {
  const id = newId(now)
  const [made, cents] = (
    (await redis.eval(
      REQUEST,
      4,
      keys.balance(userId),
      keys.payout(id),
      keys.userPayouts(userId),
      keys.pendingPayouts(),
      id,
      MIN_PAYOUT_CENTS,
      now,
      userId,
      account,
    )) as [number, number]
  ).map(Number) as [number, number]
  if (made !== 1) return { ok: false, cashCents: cents }
  return {
    ok: true,
    payout: {
      id,
      user_id: userId,
      amount_cents: cents,
      status: 'pending',
      account,
      created_at: now,
      transfer_id: null,
      settled_at: null,
      failure: null,
    },
  }
}

/** Returns true when this call moved the payout out of pending. */
export async function settlePayout(
  redis: Redis,
  keys: Keys,
  payout: Payout,
  outcome: { status: 'paid'; transferId: string } | { status: 'failed'; reason: string },
  now: number,
): Promise<boolean> {
  const detail = outcome.status === 'paid' ? outcome.transferId : outcome.reason
  const out = await redis.eval(
    SETTLE,
    3,
    keys.payout(payout.id),
    keys.pendingPayouts(),
    keys.balance(payout.user_id),
    outcome.status,
    detail,
    now,
  )
  return Number(out) === 1
}

export async function readPayout(redis: Redis, keys: Keys, id: string): Promise<Payout | null> {
  const h = await redis.hgetall(keys.payout(id))
  if (h.id === undefined || h.user_id === undefined) return null
  const status: PayoutStatus = h.status === 'paid' || h.status === 'failed' ? h.status : 'pending'
  return {
    id: h.id,
    user_id: h.user_id,
    amount_cents: Number(h.amount_cents ?? 0),
    status,
    account: h.account ?? '',
    created_at: Number(h.created_at ?? 0),
    transfer_id: h.transfer_id ?? null,
    settled_at: h.settled_at === undefined ? null : Number(h.settled_at),
    failure: h.failure ?? null,
  }
}

export async function listPayouts(redis: Redis, keys: Keys, userId: string, limit = 100): Promise<Payout[]> {
  const ids = await redis.lrange(keys.userPayouts(userId), 0, limit - 1)
  const all = await Promise.all(ids.map((id) => readPayout(redis, keys, id)))
  return all.filter((p): p is Payout => p !== null)
}

export async function pendingPayoutIds(redis: Redis, keys: Keys): Promise<string[]> {
  return redis.zrange(keys.pendingPayouts(), 0, -1)
}
