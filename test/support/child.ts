import { type ChildProcess, spawn } from 'node:child_process'
import { readFileSync } from 'node:fs'
import { join } from 'node:path'
import { makeKeys } from '@referral/core'
import { Queue } from 'bullmq'
import { Redis } from 'ioredis'
import { INGEST_KEY, JWT_SECRET } from './env.ts'

const ROOT = join(import.meta.dirname, '..', '..')

export interface ChildService {
  proc: ChildProcess
  url: string
  output: () => string
  exited: Promise<number | null>
}

/** A service process's environment: the embedded default under dataDir, the tests' secrets. */
export function childEnv(
  dataDir: string,
  port: number,
  env: Record<string, string> = {},
): Record<string, string> {
  return {
    PATH: process.env.PATH ?? '',
    HOME: process.env.HOME ?? '',
    DATA_DIR: dataDir,
    PORT: String(port),
    HOST: '127.0.0.1',
    INGEST_API_KEY: INGEST_KEY,
    AUTH_JWT_SECRET: JWT_SECRET,
    LOG_LEVEL: 'warn',
    ...env,
  }
}

/**
 * `npm start` as a real process: the bundle it runs (server/dist, built before the tests by
 * vitest's global setup), embedded Redis and chDB under dataDir; without the start script's
 * node flags, which size V8's young generation and change no behaviour.
 */
export async function startChild(
  dataDir: string,
  port: number,
  env: Record<string, string> = {},
  role: 'all' | 'api' | 'workers' = 'all',
): Promise<ChildService> {
  const args = ['server/dist/main.mjs', `--role=${role}`]
  return spawnService(process.execPath, args, childEnv(dataDir, port, env), port, role === 'workers')
}

/**
 * A service started by `command` (node, or npm with one of its scripts), its output kept,
 * once its /readyz answers 200 (or, with no HTTP, once it has run a moment without failing).
 */
export async function spawnService(
  command: string,
  args: string[],
  env: Record<string, string>,
  port: number,
  noHttp = false,
): Promise<ChildService> {
  let out = ''
  const proc = spawn(command, args, { cwd: ROOT, env, stdio: ['ignore', 'pipe', 'pipe'] })
  proc.stdout?.on('data', (d: Buffer) => {
    out += d.toString()
  })
  proc.stderr?.on('data', (d: Buffer) => {
    out += d.toString()
  })
  const exited = new Promise<number | null>((resolve) => proc.once('exit', (code) => resolve(code)))
  const url = `http://127.0.0.1:${port}`
  if (noHttp) {
    // no HTTP here: ready once it says nothing went wrong for a moment
    await new Promise((r) => setTimeout(r, 3000))
    if (proc.exitCode !== null) throw new Error(`workers exited early (${proc.exitCode}):\n${out}`)
    return { proc, url, output: () => out, exited }
  }
  const deadline = Date.now() + 60_000
  while (Date.now() < deadline) {
    if (proc.exitCode !== null) throw new Error(`service exited early (${proc.exitCode}):\n${out}`)
    const ok = await fetch(`${url}/readyz`).then(
      (r) => r.status === 200,
      () => false,
    )
    if (ok) return { proc, url, output: () => out, exited }
    await new Promise((r) => setTimeout(r, 100))
  }
  proc.kill('SIGKILL')
  throw new Error(`service did not become ready:\n${out}`)
}

/** The ingest queue of a child's embedded Redis (its port is in DATA_DIR/redis/server.json). */
export async function queueDepth(dataDir: string): Promise<number> {
  const { port } = JSON.parse(readFileSync(join(dataDir, 'redis', 'server.json'), 'utf8')) as { port: number }
  const connection = new Redis({ port, host: '127.0.0.1', maxRetriesPerRequest: 1 })
  const q = new Queue('ingest', { connection, prefix: makeKeys('ra').bullPrefix() })
  try {
    const c = await q.getJobCounts('wait', 'active', 'delayed', 'prioritized', 'failed')
    return Object.values(c).reduce((a, b) => a + b, 0)
  } finally {
    await q.close()
    connection.disconnect()
  }
}
