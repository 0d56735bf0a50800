import type { Keys } from '@referral/core'
import type { Redis } from 'ioredis'
import type { WalletCredit } from './state.ts'

/**
 * A user's wallet is a Redis hash of credits (field = the ledger entry that granted it).
 * The worker adds credits inside its commit; spends and expiries change `remaining_cents`
 * in Lua scripts, so each is atomic against the others and against concurrent spends:
 * a spend reads and writes the whole wallet in one script and can never take it below zero.
 * A credit past its expiry is not spendable even before the expiry job writes it off.
 */

const SPENDABLE = `
local function spendable(c, now)
  if c.expires_at ~= cjson.null and tonumber(c.expires_at) <= now then return 0 end
  return c.remaining_cents
end
`

// KEYS[1] wallet, KEYS[2] spend record; ARGV[1] spend id, ARGV[2] amount, ARGV[3] now, ARGV[4] record TTL (s)
// Returns the spend record (JSON); {"error":"insufficient","balance_cents":n} is not recorded.
const SPEND = `${SPENDABLE}
local done = redis.call('GET', KEYS[2])
if done then return done end
local amount, now = tonumber(ARGV[2]), tonumber(ARGV[3])
local all = redis.call('HGETALL', KEYS[1])
local credits, balance = {}, 0
for i = 1, #all, 2 do
  local c = cjson.decode(all[i + 1])
  local s = spendable(c, now)
  balance = balance + s
  if s > 0 then table.insert(credits, c) end
end
if amount > balance then
  return cjson.encode({ error = 'insufficient', balance_cents = balance })
end
local function expiry(c) if c.expires_at == cjson.null then return math.huge end return tonumber(c.expires_at) end
table.sort(credits, function(a, b)
  if expiry(a) ~= expiry(b) then return expiry(a) < expiry(b) end
  if a.granted_at ~= b.granted_at then return a.granted_at < b.granted_at end
  return a.id < b.id
end)
local left, allocations = amount, {}
for _, c in ipairs(credits) do
  if left == 0 then break end
  local take = math.min(left, c.remaining_cents)
  c.remaining_cents = c.remaining_cents - take
  left = left - take
  redis.call('HSET', KEYS[1], c.id, cjson.encode(c))
  table.insert(allocations, { credit_id = c.id, amount_cents = take })
end
local record = cjson.encode({ id = ARGV[1], amount_cents = amount, balance_cents = balance - amount, at = now, allocations = allocations })
redis.call('SET', KEYS[2], record, 'EX', ARGV[4])
return record
`

// KEYS[1] wallet; ARGV[1] credit id, ARGV[2] now. Writes off what is left of an expired credit,
// once, and returns what was written off (0 when nothing was left, -1 when not yet expired).
const EXPIRE = `
local raw = redis.call('HGET', KEYS[1], ARGV[1])
if not raw then return 0 end
local c = cjson.decode(raw)
if c.expires_at == cjson.null or tonumber(c.expires_at) > tonumber(ARGV[2]) then return -1 end
if c.expired_cents then return c.expired_cents end
c.expired_cents = math.max(0, c.remaining_cents)
c.remaining_cents = c.remaining_cents - c.expired_cents
redis.call('HSET', KEYS[1], ARGV[1], cjson.encode(c))
return c.expired_cents
`

export interface SpendRecord {
  id: string
  amount_cents: number
  balance_cents: number
  at: number
  allocations: Array<{ credit_id: string; amount_cents: number }>
}

export type SpendResult = { ok: true; record: SpendRecord } | { ok: false; balanceCents: number }

export async function spendWallet(
  redis: Redis,
  keys: Keys,
  userId: string,
  spendId: string,
  amountCents: number,
  opts: { now: number; recordTtlSeconds: number },
): Promise<SpendResult> {
  const out = (await redis.eval(
    SPEND,
    2,
    keys.wallet(userId),
    keys.spend(userId, spendId),
    spendId,
    amountCents,
    opts.now,
    opts.recordTtlSeconds,
  )) as string
  const parsed = JSON.parse(out) as SpendRecord | { error: string; balance_cents: number }
  if ('error' in parsed) return { ok: false, balanceCents: parsed.balance_cents }
  // cjson writes an empty array as {}
  return {
    ok: true,
    record: Object.assign({}, parsed, {
      allocations: Array.isArray(parsed.allocations) ? parsed.allocations : [],
    }),
  }
}

export async function expireCredit(redis: Redis, keys: Keys, userId: string, creditId: string, now: number) {
  return Number(await redis.eval(EXPIRE, 1, keys.wallet(userId), creditId, now))
}

export interface Wallet {
  balance_cents: number
  credits: Array<WalletCredit & { expired_cents?: number }>
}

/** The wallet as the contract shows it; expired credits count for nothing. */
export async function readWallet(redis: Redis, keys: Keys, userId: string, now: number): Promise<Wallet> {
  return walletOf(await redis.hgetall(keys.wallet(userId)), now)
}

/** A wallet from its hash (field: credit id, value: the credit's JSON). */
export function walletOf(h: Record<string, string>, now: number): Wallet {
  const credits = Object.values(h)
    .map((v) => JSON.parse(v) as WalletCredit & { expired_cents?: number })
    .map((c) =>
      c.expires_at !== null && c.expires_at <= now
        ? Object.assign({}, c, { remaining_cents: Math.min(0, c.remaining_cents) })
        : c,
    )
    .sort((a, b) => a.granted_at - b.granted_at || a.id.localeCompare(b.id))
  return { balance_cents: credits.reduce((a, c) => a + c.remaining_cents, 0), credits }
}

/** A referrer's cash and the commissions held for review (neither spendable nor payable). */
export async function balances(
  redis: Redis,
  keys: Keys,
  userId: string,
): Promise<{ cash: number; held: number }> {
  return balancesOf(await redis.hmget(keys.balance(userId), 'cash', 'held'))
}

/** Cash and held cents from HMGET balance cash held. */
export function balancesOf([cash, held]: Array<string | null>): { cash: number; held: number } {
  return { cash: Number(cash ?? 0), held: Number(held ?? 0) }
}
