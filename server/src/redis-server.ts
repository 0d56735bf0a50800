import { type ChildProcess, spawn } from 'node:child_process'
import { existsSync, mkdirSync, readFileSync, writeFileSync } from 'node:fs'
import { createServer } from 'node:net'
import { join } from 'node:path'
import { Redis } from 'ioredis'

export interface RedisServerOptions {
  dir: string
  bin: string
  appendfsync: 'always' | 'everysec'
  /** auto-aof-rewrite-percentage (redis's default: 100) */
  aofRewritePercentage?: number
  /** 0: a free port, chosen at start */
  port?: number
  /** more redis-server options, e.g. ['--cluster-enabled', 'yes'] */
  extraArgs?: string[]
}

export interface RedisServer {
  url: string
  port: number
  pid: number
  child: ChildProcess
  /** SHUTDOWN (the AOF is flushed), or SIGKILL after the deadline */
  stop(deadlineMs?: number): Promise<void>
}

export class RedisBinaryMissing extends Error {
  constructor(bin: string) {
    super(
      `'${bin}' was not found. The embedded default starts its own Redis. Install it with\n` +
        '  sudo apt-get install -y redis-server      (Debian, Ubuntu)\n' +
        '  brew install redis                        (macOS)\n' +
        'or point the service at an existing Redis with REDIS_URL=redis://host:6379.',
    )
    this.name = 'RedisBinaryMissing'
  }
}

export function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const srv = createServer()
    srv.unref()
    srv.on('error', reject)
    srv.listen(0, '127.0.0.1', () => {
      const addr = srv.address()
      srv.close(() =>
        typeof addr === 'object' && addr !== null ? resolve(addr.port) : reject(new Error('no port')),
      )
    })
  })
}

function alive(pid: number): boolean {
  try {
    process.kill(pid, 0)
    return true
  } catch (e) {
    if ((e as NodeJS.ErrnoException).code === 'ESRCH') return false
    throw e
  }
}

/**
 * A process left over from a run that was killed would keep appending to the same AOF.
 * Ask it to shut down (it flushes), and only then start a new one on the same directory.
 */
async function stopLeftover(dir: string): Promise<void> {
  const state = join(dir, 'server.json')
  if (!existsSync(state)) return
  const { pid, port } = JSON.parse(readFileSync(state, 'utf8')) as { pid: number; port: number }
  if (!alive(pid)) return
  const probe = new Redis({
    port,
    host: '127.0.0.1',
    lazyConnect: true,
    maxRetriesPerRequest: 0,
    retryStrategy: () => null,
  })
  probe.on('error', (e: Error) => {
    process.stderr.write(`left-over redis-server on port ${port}: ${e.message}\n`)
  })
  try {
    await probe.connect()
    // SHUTDOWN answers by closing the connection, so its promise rejects when it worked
    await probe.call('SHUTDOWN').catch((e: Error) => e)
  } catch {
    // not answering on its port: a signal does the same
    process.kill(pid, 'SIGTERM')
  } finally {
    probe.disconnect()
  }
  for (let i = 0; i < 100 && alive(pid); i++) await new Promise((r) => setTimeout(r, 50))
  if (alive(pid)) process.kill(pid, 'SIGKILL')
}

/** Starts redis-server with AOF on and noeviction, data in `dir`; resolves when it answers PING. */
export async function startRedisServer(opts: RedisServerOptions): Promise<RedisServer> {
  mkdirSync(opts.dir, { recursive: true })
  await stopLeftover(opts.dir)
  const port = opts.port && opts.port > 0 ? opts.port : await freePort()
  const args = [
    '--port',
    String(port),
    '--bind',
    '127.0.0.1',
    '--dir',
    opts.dir,
    '--appendonly',
    'yes',
    '--appendfsync',
    opts.appendfsync,
    '--auto-aof-rewrite-percentage',
    String(opts.aofRewritePercentage ?? 100),
    '--save',
    '',
    '--maxmemory-policy',
    'noeviction',
    '--daemonize',
    'no',
    '--logfile',
    join(opts.dir, 'redis.log'),
    ...(opts.extraArgs ?? []),
  ]
  const child = spawn(opts.bin, args, { stdio: 'ignore' })
  const spawned = await new Promise<number>((resolve, reject) => {
    child.once('spawn', () => resolve(child.pid ?? -1))
    child.once('error', (e: NodeJS.ErrnoException) =>
      reject(e.code === 'ENOENT' ? new RedisBinaryMissing(opts.bin) : e),
    )
  })
  writeFileSync(join(opts.dir, 'server.json'), JSON.stringify({ pid: spawned, port }))
  const url = `redis://127.0.0.1:${port}`
  await waitForPing(port, child)
  const exited = new Promise<void>((resolve) => child.once('exit', () => resolve()))
  return {
    url,
    port,
    pid: spawned,
    child,
    stop: async (deadlineMs = 10_000) => {
      if (child.exitCode !== null || child.signalCode !== null) return
      child.kill('SIGTERM') // redis-server shuts down cleanly on SIGTERM, fsyncing the AOF
      const timer = setTimeout(() => child.kill('SIGKILL'), deadlineMs)
      await exited
      clearTimeout(timer)
    },
  }
}

async function waitForPing(port: number, child: ChildProcess): Promise<void> {
  const deadline = Date.now() + 30_000
  let lastError = 'no answer'
  while (Date.now() < deadline) {
    if (child.exitCode !== null)
      throw new Error(`redis-server exited with code ${child.exitCode} (see its redis.log)`)
    const r = new Redis({
      port,
      host: '127.0.0.1',
      lazyConnect: true,
      maxRetriesPerRequest: 0,
      retryStrategy: () => null,
    })
    r.on('error', (e: Error) => {
      lastError = e.message
    })
    try {
      await r.connect()
      // while the AOF loads, Redis answers LOADING; wait for a real PONG
      if ((await r.ping()) === 'PONG') return
    } catch (e) {
      lastError = (e as Error).message
    } finally {
      r.disconnect()
    }
    await new Promise((res) => setTimeout(res, 50))
  }
  throw new Error(`redis-server on port ${port} did not become ready: ${lastError}`)
}
