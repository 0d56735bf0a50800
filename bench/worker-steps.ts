import { mkdtempSync, rmSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { getOrCreateCode } from '@referral/api'
import { migrate, openClickHouse } from '@referral/clickhouse'
import { makeKeys, makeRedis, newId, type QueuedEvent, whenReady } from '@referral/core'
import { startRedisServer } from '@referral/server'
import { applyJobs, flushOutbox } from '@referral/workers'

/**
 * Times the worker's steps on 5000-event jobs, outside HTTP and BullMQ: applying each job to
 * Redis, and storing the outbox into ClickHouse a 50,000-row batch at a time, as the store
 * loop does.
 */
const dir = mkdtempSync(join(tmpdir(), 'ra-prof-'))
const server = await startRedisServer({
  dir: join(dir, 'redis'),
  bin: 'redis-server',
  appendfsync: (process.env.FSYNC ?? 'always') as 'always' | 'everysec',
})
const redis = await whenReady(makeRedis(server.url, 'transaction'))
const ch = await openClickHouse({
  dataDir: dir,
  clickhouse: { url: undefined, database: 'prof', user: undefined, password: undefined },
})
await migrate(ch)
const keys = makeKeys('p')
const code = await getOrCreateCode(redis, keys, 'ref')
const opts = {
  attributionWindowMs: 30 * 86_400_000,
  dedupWindowSeconds: 8 * 86_400,
}
const N = Number(process.argv[2] ?? 5000)
let tApply = 0
let tStore = 0

/**
 * The longest the event loop went without a turn: what an HTTP request arriving meanwhile
 * (a stats read, a 202) waits for. A timer ticks every millisecond and notes the widest gap.
 */
class LoopBlock {
  private last = performance.now()
  widest = 0
  private readonly timer = setInterval(() => {
    const now = performance.now()
    this.widest = Math.max(this.widest, now - this.last)
    this.last = now
  }, 1)
  reset(): void {
    this.last = performance.now()
    this.widest = 0
  }
  stop(): void {
    clearInterval(this.timer)
  }
}
const block = new LoopBlock()
let blockApply = 0
let blockStore = 0
const JOBS = 10
const STORE_EVERY = Math.max(1, Math.floor(50_000 / N))
for (let j = 0; j < JOBS; j++) {
  const ts = Date.now()
  const events: QueuedEvent[] = Array.from({ length: N }, () => ({
    type: 'click',
    id: newId(),
    code,
    ts,
    received_at: ts,
  }))
  await new Promise((r) => setTimeout(r, 5))
  block.reset()
  const a = performance.now()
  await applyJobs(redis, keys, [{ id: `job-${j}`, events }], opts)
  const b = performance.now()
  blockApply = Math.max(blockApply, block.widest)
  tApply += b - a
  // the store loop inserts the outbox a batch at a time (CLICKHOUSE_BATCH_ROWS, 50,000 rows):
  // here too, every STORE_EVERY jobs
  if ((j + 1) % STORE_EVERY === 0) {
    block.reset()
    await flushOutbox(redis, keys, ch, { maxRows: 50_000 })
    tStore += performance.now() - b
    blockStore = Math.max(blockStore, block.widest)
  }
}
const per = (t: number) =>
  `${(t / JOBS).toFixed(1)} ms/job, ${Math.round((N * JOBS) / (t / 1000)).toLocaleString()} ev/s`
block.stop()
process.stdout.write(
  [
    `apply: ${per(tApply)}; longest event-loop block ${blockApply.toFixed(1)} ms`,
    `store: ${per(tStore)}; longest event-loop block ${blockStore.toFixed(1)} ms`,
    `total: ${per(tApply + tStore)}`,
    '',
  ].join('\n'),
)
redis.disconnect()
await ch.close()
await server.stop()
rmSync(dir, { recursive: true, force: true })
