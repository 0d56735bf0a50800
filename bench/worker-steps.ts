import { mkdtempSync, rmSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { getOrCreateCode } from '@referral/api'
import { migrate, openClickHouse } from '@referral/clickhouse'
import { makeKeys, makeRedis, newId, type QueuedEvent, whenReady } from '@referral/core'
import { startRedisServer } from '@referral/server'
import { applyJobs, finishJobs, storeGroup } from '@referral/workers'

/** Times the worker's steps on 5000-event jobs, outside HTTP and BullMQ. */
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
  resolutionTtlSeconds: 3600,
}
const N = Number(process.argv[2] ?? 5000)
let tApply = 0
let tStore = 0
const JOBS = 10
for (let j = 0; j < JOBS; j++) {
  const ts = Date.now()
  const events: QueuedEvent[] = Array.from({ length: N }, () => ({
    type: 'click',
    id: newId(),
    code,
    ts,
    received_at: ts,
  }))
  const a = performance.now()
  const groups = await applyJobs(redis, keys, [{ id: `job-${j}`, events }], opts)
  const b = performance.now()
  for (const g of groups) await storeGroup(ch, g)
  await finishJobs(redis, keys, [`job-${j}`], groups)
  const c = performance.now()
  tApply += b - a
  tStore += c - b
}
const per = (t: number) =>
  `${(t / JOBS).toFixed(1)} ms/job, ${Math.round((N * JOBS) / (t / 1000)).toLocaleString()} ev/s`
process.stdout.write(`apply: ${per(tApply)}\nstore: ${per(tStore)}\ntotal: ${per(tApply + tStore)}\n`)
redis.disconnect()
await ch.close()
await server.stop()
rmSync(dir, { recursive: true, force: true })
