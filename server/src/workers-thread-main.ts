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
