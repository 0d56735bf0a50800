import { mkdtempSync } from 'node:fs'
import { createServer } from 'node:http'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { GroupCommitter, parseEventsBody } from '@referral/api'
import {
  INGEST_JOB_OPTIONS,
  makeRedis,
  newId,
  QUEUE_NAMES,
  type QueuedEvent,
  whenReady,
} from '@referral/core'
import { startRedisServer } from '@referral/server'
import { Queue } from 'bullmq'
import { cannon } from './load.ts'
import { freePort, installCleanup, sleep, startChild, stopChild, trackPid, trackTmpDir } from './proc.ts'
import { fmt, machine, row, table } from './report.ts'

/**
 * `npm run bench:layers`: what each layer of single-event ingest costs, on raw node:http with
 * nothing else running. Each layer adds one step to the one before, all measured in the same
 * run, interleaved, against the bare server (layer 1):
 *   1 bare: read the body, answer 202
 *   2 + JSON.parse
 *   3 + validation and settling (parseEventsBody), the answer with the ids
 *   4 + the group-committed BullMQ add (redis-server appendfsync everysec)
 *   5 the same with appendfsync always (what `npm start` runs)
 * The service itself adds auth, request ids, logging and the worker on top of layer 5.
 */
const LAYERS = ['bare', 'parse', 'validate', 'queue-everysec', 'queue-always'] as const
type Layer = (typeof LAYERS)[number]
const ROOT = join(import.meta.dirname, '..')

if (process.argv[2] === '--serve') await serve(process.argv[3] as Layer, process.argv[4] ?? '')
else await main()

async function serve(layer: Layer, redisUrl: string): Promise<void> {
  let committer: GroupCommitter<readonly QueuedEvent[]> | undefined
  if (layer.startsWith('queue')) {
    const conn = await whenReady(makeRedis(redisUrl, 'queue'))
    const q = new Queue(QUEUE_NAMES.ingest, { connection: conn, prefix: `layers-${layer}` })
    committer = new GroupCommitter(
      (events: readonly QueuedEvent[]) => events,
      async (parts: Array<readonly QueuedEvent[]>) => {
        await q.add('events', { events: parts.flat() }, { ...INGEST_JOB_OPTIONS, jobId: newId() })
      },
      { maxBatchEvents: 5000, maxInFlight: 4 },
    )
  }
  const server = createServer((req, res) => {
    const chunks: Buffer[] = []
    req.on('data', (c: Buffer) => chunks.push(c))
    req.on('end', () => {
      const send = (body: string) => {
        res.writeHead(202, { 'content-type': 'application/json', 'content-length': Buffer.byteLength(body) })
        res.end(body)
      }
      const text = Buffer.concat(chunks).toString('utf8')
      if (layer === 'bare') return send('{"accepted":1}')
      const body: unknown = JSON.parse(text)
      if (layer === 'parse') return send('{"accepted":1}')
      const events = parseEventsBody(body)
      const answer = () => send(JSON.stringify({ accepted: events.length, ids: events.map((e) => e.id) }))
      if (committer === undefined) return answer()
      committer.submit(events).then(answer, () => {
        res.writeHead(503)
        res.end()
      })
    })
  })
  const port = await freePort()
  server.listen(port, '127.0.0.1', () => process.stdout.write(`${JSON.stringify({ port })}\n`))
}

async function main(): Promise<void> {
  installCleanup()
  const quick = process.argv.includes('--quick')
  const rounds = quick ? 1 : 2
  const durationS = quick ? 3 : 6
  const redis = await startRedisServer({
    dir: trackTmpDir(mkdtempSync(join(tmpdir(), 'ra-layers-'))),
    bin: 'redis-server',
    appendfsync: 'everysec',
  })
  trackPid(redis.pid)
  const admin = await whenReady(makeRedis(redis.url, 'command'))
  const results = new Map<Layer, number[]>(LAYERS.map((l) => [l, []]))
  const p99s = new Map<Layer, number[]>(LAYERS.map((l) => [l, []]))
  for (let r = 0; r < rounds; r++) {
    for (const layer of LAYERS) {
      await admin.config('SET', 'appendfsync', layer === 'queue-always' ? 'always' : 'everysec')
      await admin.flushall()
      const child = startChild(
        layer,
        process.execPath,
        ['--import', 'tsx', join(ROOT, 'bench', 'ingest-layers.ts'), '--serve', layer, redis.url],
        { env: process.env, cwd: ROOT },
      )
      const line = await child.waitForLine((l) => l.startsWith('{"port"'), 30_000)
      const { port } = JSON.parse(line) as { port: number }
      const target = {
        url: `http://127.0.0.1:${port}/v1/events`,
        headers: { 'content-type': 'application/json' },
        body: JSON.stringify({ type: 'click', code: 'ABCDEFGH', visitor_id: 'v1' }),
        connections: 50,
      }
      await cannon({ ...target, durationS: 1 }) // warm-up: JIT
      const run = await cannon({ ...target, durationS })
      results.get(layer)?.push(run.okPerSec)
      p99s.get(layer)?.push(run.p99)
      process.stderr.write(`[layers] round ${r + 1} ${layer}: ${fmt.int(run.okPerSec)} req/s\n`)
      await stopChild(child, 'SIGTERM', 5000)
      await sleep(200)
    }
  }
  admin.disconnect()
  await redis.stop()
  const mean = (xs: number[] | undefined) =>
    (xs ?? []).reduce((a, b) => a + b, 0) / Math.max(1, xs?.length ?? 0)
  const bare = mean(results.get('bare'))
  const rows = LAYERS.map((layer) =>
    row(
      `${layer}: single-event POST, 2xx/s at 50 connections (p99 ${fmt.ms(mean(p99s.get(layer)))})`,
      fmt.int(mean(results.get(layer))),
      {
        baseline: fmt.int(bare),
        ratio: fmt.ratio(mean(results.get(layer)), bare),
      },
    ),
  )
  process.stdout.write(
    [
      '# Single-event ingest, layer by layer',
      '',
      ...machine(),
      `- ${rounds} interleaved round(s) of ${durationS} s per layer; the mean of the rounds`,
      '',
      ...table(rows),
      '',
    ].join('\n'),
  )
  process.exit(0)
}
