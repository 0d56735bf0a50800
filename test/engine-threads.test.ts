import { readdirSync, writeFileSync } from 'node:fs'
import { join } from 'node:path'
import { makeLogger } from '@referral/core'
import { freePort, isNodeThread, lowerEngineThreads, readThread } from '@referral/server'
import { afterAll, afterEach, describe, expect, it } from 'vitest'
import { type ChildService, startChild } from './support/child.ts'
import { codeFor, eventually, http, statsFor } from './support/client.ts'
import { tempDir } from './support/env.ts'

interface Thread {
  tid: number
  name: string
  nice: number
}

/** A process's threads as Linux has them now: ClickHouse's (chDB's), and Node's own. */
function threadsOf(pid: number): { engine: Thread[]; node: Thread[] } {
  const all: Thread[] = []
  for (const tid of readdirSync(`/proc/${pid}/task`)) {
    const t = readThread(`/proc/${pid}/task/${tid}/stat`)
    if (t !== null) all.push({ tid: Number(tid), ...t })
  }
  return { engine: all.filter((t) => !isNodeThread(t.name)), node: all.filter((t) => isNodeThread(t.name)) }
}

const loweredMetric = async (url: string): Promise<number> =>
  Number((await (await fetch(`${url}/metrics`)).text()).match(/^ra_chdb_threads_lowered_total (\d+)$/m)?.[1])

/** 200 clicks through the API into ClickHouse: chDB's insert and merge threads have run. */
async function clicksStored(child: ChildService): Promise<void> {
  const api = http(child.url)
  const code = await codeFor(api, 'nice-ref')
  const events = Array.from({ length: 200 }, (_, i) => ({ type: 'click', id: `n-${i}`, code }))
  expect((await api.post('/v1/events', { events })).status).toBe(202)
  await eventually(async () => expect((await statsFor(api, 'nice-ref')).total_clicks).toBe(200))
}

/**
 * On the embedded default, chDB's threads run at CHDB_THREAD_NICE (server/src/engine-threads.ts)
 * while Node's keep the process's priority: the service as `npm start` runs it, its threads
 * read from /proc.
 */
describe("chDB's threads at a lower CPU priority", () => {
  const dir = tempDir()
  let child: ChildService | undefined
  afterEach(async () => {
    child?.proc.kill('SIGTERM') // it stops its redis-server too
    await child?.exited
    child = undefined
  })
  afterAll(() => dir.remove())

  it("runs every one of ClickHouse's threads at CHDB_THREAD_NICE, and Node's threads at 0", async () => {
    child = await startChild(join(dir.path, 'lowered'), await freePort(), { CLICKHOUSE_FLUSH_MS: '100' })
    const pid = child.proc.pid ?? 0
    await clicksStored(child)
    // a thread started since the last scan is lowered by the next (every second)
    const { engine, node } = await eventually(async () => {
      const t = threadsOf(pid)
      expect(t.engine.length).toBeGreaterThan(0)
      expect(t.engine.filter((x) => x.nice !== 19)).toEqual([])
      return t
    }, 5_000)
    expect(node.find((t) => t.tid === pid)?.nice).toBe(0)
    expect(node.filter((t) => t.nice !== 0)).toEqual([])
    expect(await loweredMetric(child.url)).toBeGreaterThanOrEqual(engine.length)
  })

  it('leaves them at the priorities ClickHouse gave them with CHDB_THREAD_NICE=0', async () => {
    const env = { CLICKHOUSE_FLUSH_MS: '100', CHDB_THREAD_NICE: '0' }
    child = await startChild(join(dir.path, 'same'), await freePort(), env)
    await clicksStored(child)
    await new Promise((r) => setTimeout(r, 1_500)) // longer than a scan's interval
    const { engine } = threadsOf(child.proc.pid ?? 0)
    expect(engine.length).toBeGreaterThan(0)
    // as ClickHouse left them: some at 0, its MemoryWorker raised to -20 where it may (root)
    expect(engine.filter((x) => x.nice > 0)).toEqual([])
    expect(await loweredMetric(child.url)).toBe(0)
  })

  it('reads a name with spaces and parentheses, and says so once where there is no /proc', () => {
    const stat = join(dir.path, 'stat')
    const after = '1 1 1 0 -1 4194368 100 0 0 0 5 2 0 0 20 7 41 0 12345'
    writeFileSync(stat, `4242 (V8 Worker (2)) S ${after}\n`)
    expect(readThread(stat)).toEqual({ name: 'V8 Worker (2)', nice: 7 })
    expect(readThread(join(dir.path, 'gone'))).toBeNull()

    const lines: string[] = []
    const log = makeLogger({ logLevel: 'info' }, { write: (s: string) => lines.push(s) })
    const engine = lowerEngineThreads({ nice: 19, everyMs: 10, log, taskDir: join(dir.path, 'no-proc') })
    engine.stop()
    expect(engine.lowered).toBe(0)
    expect(lines.map((l) => (JSON.parse(l) as { msg: string }).msg)).toEqual([
      "no per-thread priority here: chDB's threads keep the process's",
    ])
  })
})
