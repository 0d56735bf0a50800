// The first module of a worker thread: TypeScript through tsx (as `npm start` runs the main
// thread), then the thread's own entry, named in workerData.entry.
import { workerData } from 'node:worker_threads'
import { register } from 'tsx/esm/api'

register()
await import(workerData.entry)
