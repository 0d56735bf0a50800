import { randomUUID } from 'node:crypto'
import { type ClickHouse, eventColumnsOf, LEDGER_COLUMNS } from '@referral/clickhouse'
import { type Keys, type Logger, newId } from '@referral/core'
import type { Redis } from 'ioredis'
import type { StoredGroup } from './apply.ts'

/**
 * The outbox: groups the applier committed to Redis (apply.ts) wait here, in order, until
 * their rows are in ClickHouse. A storer takes the oldest groups, up to a number of rows, as
 * one batch, records the batch (its groups and its dedup token) before inserting, inserts
 * the events and the ledger rows with that token, then removes the batch from the outbox.
 * A storer that dies anywhere leaves the batch recorded: the next one inserts the very same
 * rows with the same token, which ClickHouse recognises (non_replicated_deduplication_window
 * on every table, and the views dedup with them), so a row lands once. One storer at a time
 * (a fencing lock); inserts are thus few and large whatever the size of the groups applied.
 */

/** An outbox entry: "<group id> <rows> <applied at, epoch ms>". */
export function outboxEntry(groupId: string, rows: number, at: number): string {
  return `${groupId} ${rows} ${at}`
}

export function parseOutboxEntry(entry: string): { groupId: string; rows: number; at: number } {
  const [groupId = '', rows = '0', at = '0'] = entry.split(' ')
  return { groupId, rows: Number(rows), at: Number(at) }
}

export interface OutboxStatus {
  groups: number
  rows: number
  /** when the oldest waiting group was applied (epoch ms); null when none waits */
  oldestAt: number | null
}

export async function outboxStatus(redis: Redis, keys: Keys): Promise<OutboxStatus> {
  const replies = await redis
    .pipeline()
    .llen(keys.outbox())
    .get(keys.outboxRows())
    .lindex(keys.outbox(), 0)
    .exec()
  if (replies === null) throw new Error('the outbox status pipeline was not run')
  const [len, rows, head] = replies.map(([err, value]) => {
    if (err) throw err
    return value
  }) as [number, string | null, string | null]
  return {
    groups: len,
    rows: Number(rows ?? 0),
    oldestAt: typeof head === 'string' ? parseOutboxEntry(head).at : null,
  }
}

export interface StoreOptions {
  /** rows per insert, at most (a group is never split: one larger than this goes alone) */
  maxRows: number
  /** how long the store lock holds without being renewed (ms) */
  lockTtlMs?: number
  /** after a batch's rows are in ClickHouse, before it leaves the outbox; may run again for it */
  afterInsert?: (groups: readonly StoredGroup[]) => Promise<void>
}

export interface StoreResult {
  groups: number
  rows: number
  insertMs: number
}

/** A batch as recorded in Redis while it is being stored. */
interface Batch {
  id: string
  entries: string[]
}

const MAX_GROUPS_PER_BATCH = 1000

// KEYS: store lock, batch, outbox. ARGV: token, lock ttl (ms), max rows, a new batch id.
// Returns {'busy'} when another storer holds the lock, {'empty'}, or {'batch', json}: the
// batch a storer left unfinished, else a new one of the oldest groups.
const BEGIN = `
local holder = redis.call('GET', KEYS[1])
if holder and holder ~= ARGV[1] then return { 'busy' } end
redis.call('SET', KEYS[1], ARGV[1], 'PX', ARGV[2])
local batch = redis.call('GET', KEYS[2])
if batch then return { 'batch', batch } end
local entries = redis.call('LRANGE', KEYS[3], 0, ${MAX_GROUPS_PER_BATCH - 1})
if #entries == 0 then
  redis.call('DEL', KEYS[1])
  return { 'empty' }
end
local take, rows = {}, 0
for _, e in ipairs(entries) do
  local n = tonumber(string.match(e, '^%S+ (%d+)'))
  if #take > 0 and rows + n > tonumber(ARGV[3]) then break end
  table.insert(take, e)
  rows = rows + n
end
batch = cjson.encode({ id = ARGV[4], entries = take })
redis.call('SET', KEYS[2], batch)
return { 'batch', batch }
`

// KEYS: store lock, batch, outbox, outbox rows, the batch's group records, then the stats
// hashes of the users whose rows these are. ARGV: token, batch id, rows, now (ms), the stats
// channel, those users (JSON), then the batch's entries. The batch leaves the outbox only if
// this storer still holds the lock and the batch is the recorded one, at the outbox's head;
// the stats of those who are referrers then say when their reports last changed (stored_at),
// and their streams hear of it. Returns 1, or -1 when the lock or the batch is no longer this storer's.
const FINISH = `
if redis.call('GET', KEYS[1]) ~= ARGV[1] then return -1 end
local batch = redis.call('GET', KEYS[2])
if not batch or cjson.decode(batch).id ~= ARGV[2] then return -1 end
local n = #ARGV - 6
local head = redis.call('LRANGE', KEYS[3], 0, n - 1)
for i = 1, n do
  if head[i] ~= ARGV[6 + i] then return redis.error_reply('the outbox head is not the recorded batch') end
end
redis.call('LTRIM', KEYS[3], n, -1)
redis.call('DECRBY', KEYS[4], ARGV[3])
for i = 5, 4 + n do redis.call('DEL', KEYS[i]) end
for i = 5 + n, #KEYS do
  if redis.call('EXISTS', KEYS[i]) == 1 then redis.call('HSET', KEYS[i], 'stored_at', ARGV[4]) end
end
if #KEYS > 4 + n then redis.call('PUBLISH', ARGV[5], ARGV[6]) end
redis.call('DEL', KEYS[2], KEYS[1])
return 1
`

// KEYS[1] lock, ARGV[1] token: delete the lock only if it is still ours.
const RELEASE = `
if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('DEL', KEYS[1]) end
return 0
`

/**
 * Stores one batch of the outbox into ClickHouse: the one a storer left recorded, else the
 * oldest groups up to `maxRows` rows. Returns null when the outbox is empty or another
 * storer is at work.
 */
export async function storeOutbox(
  redis: Redis,
  keys: Keys,
  ch: ClickHouse,
  opts: StoreOptions,
): Promise<StoreResult | null> {
  const token = randomUUID()
  const ttl = opts.lockTtlMs ?? 10_000
  const begun = (await redis.eval(
    BEGIN,
    3,
    keys.storeLock(),
    keys.storeBatch(),
    keys.outbox(),
    token,
    ttl,
    opts.maxRows,
    newId(),
  )) as [string, string?]
  if (begun[0] !== 'batch' || begun[1] === undefined) return null
  try {
    return await storeBatch(redis, keys, ch, opts, token, JSON.parse(begun[1]) as Batch)
  } catch (e) {
    // a storer that fails (ClickHouse away) lets the next try begin at once; the batch stays recorded
    await redis.eval(RELEASE, 1, keys.storeLock(), token)
    throw e
  }
}

async function storeBatch(
  redis: Redis,
  keys: Keys,
  ch: ClickHouse,
  opts: StoreOptions,
  token: string,
  batch: Batch,
): Promise<StoreResult> {
  const entries = batch.entries.map(parseOutboxEntry)
  const records = await readGroups(
    redis,
    keys,
    entries.map((e) => e.groupId),
  )
  const t0 = performance.now()
  // one insert per set of columns (groups of like events share one); the token names it
  const byColumns = new Map<number, Buffer[]>()
  for (const r of records) {
    if (r.events.length === 0) continue
    const list = byColumns.get(r.eventColumns) ?? []
    list.push(r.events)
    byColumns.set(r.eventColumns, list)
  }
  for (const [columns, bodies] of byColumns) {
    await ch.insertTsv({
      table: 'events',
      columns: eventColumnsOf(columns),
      body: Buffer.concat(bodies),
      dedupToken: `events:${batch.id}:${columns}`,
    })
  }
  await ch.insertTsv({
    table: 'ledger',
    columns: LEDGER_COLUMNS,
    body: Buffer.concat(records.map((r) => r.ledger)),
    dedupToken: `ledger:${batch.id}`,
  })
  const insertMs = performance.now() - t0
  await opts.afterInsert?.(records)
  const rows = entries.reduce((a, e) => a + e.rows, 0)
  const users = [...new Set(records.flatMap((r) => r.changed))]
  // one array, not spread into the call: a batch of many referrers has tens of thousands of keys
  const args: Array<string | number> = [FINISH, 4 + entries.length + users.length]
  args.push(keys.storeLock(), keys.storeBatch(), keys.outbox(), keys.outboxRows())
  for (const e of entries) args.push(keys.group(e.groupId))
  for (const u of users) args.push(keys.stats(u))
  args.push(token, batch.id, rows, Date.now(), keys.statsChannel(), JSON.stringify(users))
  for (const e of batch.entries) args.push(e)
  const done = await redis.call('EVAL', args)
  if (Number(done) !== 1) throw new Error('the store lock was lost before the batch was finished')
  return { groups: entries.length, rows, insertMs }
}

/** The group records of a batch (a record already gone counts as empty: it was stored). */
async function readGroups(redis: Redis, keys: Keys, groupIds: readonly string[]): Promise<StoredGroup[]> {
  const p = redis.pipeline()
  for (const g of groupIds) p.hmgetBuffer(keys.group(g), 'events', 'ledger', 'meta')
  const results = (await p.exec()) ?? []
  const none = Buffer.alloc(0)
  return results.map(([err, v]) => {
    if (err) throw err
    const [events, ledger, meta] = v as Array<Buffer | null>
    const m =
      meta === null || meta === undefined
        ? null
        : (JSON.parse(meta.toString()) as Omit<StoredGroup, 'events' | 'ledger'>)
    return {
      events: events ?? none,
      eventColumns: m?.eventColumns ?? 0,
      ledger: ledger ?? none,
      rows: m?.rows ?? 0,
      expiries: m?.expiries ?? [],
      webhooks: m?.webhooks ?? [],
      changed: m?.changed ?? [],
    }
  })
}

export interface StoreLoopOptions extends StoreOptions {
  /** a group waits at most this long before its rows are inserted (ms) */
  flushMs: number
  log: Logger
  /** adds what each batch took (for /metrics) */
  stats?: { inserts: number; storedRows: number; insertMs: number; storeFailures: number }
}

export interface StoreLoop {
  /** stores what is waiting until the outbox is empty (or `deadline`), then stops */
  close(deadline?: number): Promise<void>
}

const POLL_MS = 50

/**
 * Stores the outbox as it fills: a batch as soon as `maxRows` rows wait, or when the oldest
 * group has waited `flushMs`. A failed insert (ClickHouse away) is tried again with a
 * growing pause; the rows wait in Redis meanwhile.
 */
export function startStoreLoop(redis: Redis, keys: Keys, ch: ClickHouse, opts: StoreLoopOptions): StoreLoop {
  let closing = false
  let deadline = Number.POSITIVE_INFINITY
  let pause = 0
  const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms))
  const loop = (async () => {
    for (;;) {
      try {
        const s = await outboxStatus(redis, keys)
        if (s.groups === 0) {
          if (closing) return
          await sleep(POLL_MS)
          continue
        }
        const age = s.oldestAt === null ? 0 : Date.now() - s.oldestAt
        if (!closing && s.rows < opts.maxRows && age < opts.flushMs) {
          await sleep(Math.min(POLL_MS, opts.flushMs - age))
          continue
        }
        const r = await storeOutbox(redis, keys, ch, opts)
        if (r === null) await sleep(POLL_MS)
        else if (opts.stats !== undefined) {
          opts.stats.inserts++
          opts.stats.storedRows += r.rows
          opts.stats.insertMs += r.insertMs
        }
        pause = 0
      } catch (e) {
        if (opts.stats !== undefined) opts.stats.storeFailures++
        pause = Math.min(5_000, Math.max(200, pause * 2))
        opts.log.warn(
          { err: e instanceof Error ? e.message : String(e), retryInMs: pause },
          'storing the outbox in ClickHouse failed; its rows wait in Redis',
        )
        if (closing && Date.now() + pause > deadline) return
        await sleep(pause)
      }
      if (closing && Date.now() > deadline) return
    }
  })()
  return {
    close: async (until = Number.POSITIVE_INFINITY) => {
      closing = true
      deadline = until
      await loop
    },
  }
}
