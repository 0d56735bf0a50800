import { readlinkSync } from 'node:fs'
import { setPriority } from 'node:os'
import { parentPort, workerData } from 'node:worker_threads'
import { makeLogger } from '@referral/core'
import { startService } from './service.ts'
import type { FromThread, ThreadData, ToThread } from './workers-thread.ts'

/** Inside the workers thread (see workers-thread.ts): the workers role, on the process's Redis. */
const port = parentPort
if (port === null) throw new Error('workers-thread-main.ts runs in a worker thread')
const { config, redisUrl } = workerData as ThreadData
const send = (m: FromThread) => port.postMessage(m)
const log = makeLogger(config).child({ thread: 'workers' })
lowerPriority(config.workerThreadNice)

try {
  const service = await startService({
    // the main thread started Redis and ran the migrations
    config: { ...config, redis: { ...config.redis, url: redisUrl }, migrateOnStart: false },
    role: 'workers',
    log,
  })
  const report = () => {
    const w = service.ingestWorker
    if (w !== null) send({ type: 'stats', stats: { ...w.stats } })
  }
  const timer = setInterval(report, 500)
  port.on('message', (m: ToThread) => {
    if (m.type !== 'stop') return
    clearInterval(timer)
    service.stop().then(
      () => {
        report()
        send({ type: 'stopped' })
        port.close()
      },
      (e: Error) => {
        send({ type: 'failed', message: e.message })
        send({ type: 'stopped' })
        port.close()
      },
    )
  })
  send({ type: 'ready' })
} catch (e) {
  send({ type: 'failed', message: e instanceof Error ? e.message : String(e) })
  port.close()
}

/**
 * This thread's CPU priority, `nice` below the process's: Linux schedules threads apart, and
 * /proc/thread-self names this one. Elsewhere (no /proc) the thread keeps the process's.
 */
function lowerPriority(nice: number): void {
  if (nice === 0) return
  let tid: number
  try {
    tid = Number(readlinkSync('/proc/thread-self').split('/').pop())
  } catch (e) {
    log.info(
      { err: (e as Error).message },
      'no per-thread priority here; the workers keep the process priority',
    )
    return
  }
  setPriority(tid, Math.min(19, nice))
  log.debug({ tid, nice }, 'workers thread priority lowered')
}
