import { type ChildProcess, spawn } from 'node:child_process'
import { readFileSync, rmSync } from 'node:fs'
import { createServer } from 'node:net'
import { join } from 'node:path'

/**
 * Child processes and temp dirs of one bench run. Every child is spawned in its own process
 * group (so a SIGKILL to the group also ends what it spawned, e.g. the service's
 * redis-server) and is killed when the bench exits, however it exits.
 */

export interface ExitInfo {
  code: number | null
  signal: NodeJS.Signals | null
}

export interface Child {
  name: string
  proc: ChildProcess
  pid: number
  exited: Promise<ExitInfo>
  /** the last lines of stdout and stderr */
  lines: string[]
  /** lines that look like warnings or errors (pino level >= 40, or plain stderr text) */
  problems: string[]
  /** resolves with the first stdout line that satisfies `match` */
  waitForLine(match: (line: string) => boolean, timeoutMs: number): Promise<string>
}

const children = new Set<Child>()
const started: Child[] = []
const extraPids = new Set<number>()
const tmpDirs = new Set<string>()

const MAX_LINES = 200

/** Running (a zombie, killed but not yet reaped, counts as gone). */
function isAlive(pid: number): boolean {
  try {
    process.kill(pid, 0)
  } catch (e) {
    return (e as NodeJS.ErrnoException).code === 'EPERM'
  }
  try {
    return !/^\d+ \(.*\) Z/.test(readFileSync(`/proc/${pid}/stat`, 'utf8'))
  } catch {
    return false
  }
}

function isProblem(line: string, stream: 'stdout' | 'stderr'): boolean {
  const m = line.match(/"level":(\d+)/)
  if (m?.[1] !== undefined) return Number(m[1]) >= 40
  return stream === 'stderr' && line.trim() !== ''
}

export function startChild(
  name: string,
  cmd: string,
  args: string[],
  opts: { env: NodeJS.ProcessEnv; cwd: string },
): Child {
  const proc = spawn(cmd, args, { ...opts, detached: true, stdio: ['ignore', 'pipe', 'pipe'] })
  const pid = proc.pid
  if (pid === undefined) throw new Error(`${name}: spawn failed`)
  const lines: string[] = []
  const problems: string[] = []
  const watchers = new Set<(line: string) => void>()
  const onData = (stream: 'stdout' | 'stderr') => {
    let rest = ''
    return (chunk: Buffer) => {
      const parts = (rest + chunk.toString('utf8')).split('\n')
      rest = parts.pop() ?? ''
      for (const line of parts) {
        lines.push(line)
        if (lines.length > MAX_LINES) lines.shift()
        if (isProblem(line, stream) && problems.length < MAX_LINES) problems.push(line)
        if (stream === 'stdout') for (const w of watchers) w(line)
      }
    }
  }
  proc.stdout?.on('data', onData('stdout'))
  proc.stderr?.on('data', onData('stderr'))
  const exited = new Promise<ExitInfo>((resolve) => {
    proc.once('exit', (code, signal) => resolve({ code, signal }))
  })
  const child: Child = {
    name,
    proc,
    pid,
    exited,
    lines,
    problems,
    waitForLine: (match, timeoutMs) =>
      new Promise<string>((resolve, reject) => {
        const timer = setTimeout(() => {
          watchers.delete(w)
          reject(new Error(`${name}: no matching output in ${timeoutMs} ms`))
        }, timeoutMs)
        const w = (line: string) => {
          if (!match(line)) return
          clearTimeout(timer)
          watchers.delete(w)
          resolve(line)
        }
        watchers.add(w)
        void exited.then(({ code, signal }) => {
          clearTimeout(timer)
          reject(new Error(`${name} exited (code ${code}, signal ${signal}): ${lines.slice(-10).join('\n')}`))
        })
      }),
  }
  children.add(child)
  started.push(child)
  void exited.then(() => children.delete(child))
  return child
}

/** For a failed run: how each child ended (or that it still runs) and its last lines of output. */
export function childrenReport(lastLines = 30): string {
  return started
    .map((c) => {
      const { exitCode, signalCode } = c.proc
      const state =
        exitCode === null && signalCode === null
          ? 'still running'
          : `exited: code ${exitCode}, signal ${signalCode}`
      return [`--- ${c.name} (pid ${c.pid}) ${state}`, ...c.lines.slice(-lastLines)].join('\n')
    })
    .join('\n')
}

/** A process one of our children started (the service's redis-server): killed at exit too. */
export function trackPid(pid: number): void {
  extraPids.add(pid)
}

/** Removed when the bench exits; returns the folder. */
export function trackTmpDir(dir: string): string {
  tmpDirs.add(dir)
  return dir
}

export { isAlive }

/** Sends `signal` to the child only; SIGKILLs its whole process group after `killAfterMs`. */
export async function stopChild(
  child: Child,
  signal: NodeJS.Signals,
  killAfterMs: number,
): Promise<ExitInfo & { ms: number; killed: boolean }> {
  const t0 = performance.now()
  if (child.proc.exitCode !== null || child.proc.signalCode !== null) {
    return { code: child.proc.exitCode, signal: child.proc.signalCode, ms: 0, killed: false }
  }
  child.proc.kill(signal)
  let killed = false
  const timer = setTimeout(() => {
    killed = true
    killGroup(child.pid)
  }, killAfterMs)
  const info = await child.exited
  clearTimeout(timer)
  return { ...info, ms: performance.now() - t0, killed }
}

function killGroup(pid: number): void {
  try {
    process.kill(-pid, 'SIGKILL')
  } catch (e) {
    if ((e as NodeJS.ErrnoException).code !== 'ESRCH') process.stderr.write(`kill -${pid}: ${String(e)}\n`)
  }
}

/** Synchronous, so it also runs from process.on('exit'). */
export function cleanupAll(): void {
  for (const c of children) killGroup(c.pid)
  children.clear()
  for (const pid of extraPids) {
    if (!isAlive(pid)) continue
    try {
      process.kill(pid, 'SIGKILL')
    } catch (e) {
      process.stderr.write(`kill ${pid}: ${String(e)}\n`)
    }
  }
  extraPids.clear()
  for (const dir of tmpDirs) {
    try {
      rmSync(dir, { recursive: true, force: true, maxRetries: 5, retryDelay: 100 })
    } catch (e) {
      process.stderr.write(`could not remove ${dir}: ${String(e)}\n`)
    }
  }
  tmpDirs.clear()
}

/** SIGKILLs every child's process group, waits (3 s at most) for them to go, then removes the temp dirs. */
export async function shutdownAll(): Promise<void> {
  const deadline = performance.now() + 3_000
  const gone = [...children].map((c) => Promise.race([c.exited, sleep(3_000)]))
  for (const c of children) killGroup(c.pid)
  await Promise.all(gone)
  while (performance.now() < deadline && [...extraPids].some(isAlive)) await sleep(50)
  cleanupAll()
}

export function installCleanup(): void {
  process.on('exit', cleanupAll)
  let stopping = false
  for (const sig of ['SIGINT', 'SIGTERM', 'SIGHUP'] as const) {
    process.on(sig, () => {
      if (stopping) return
      stopping = true
      process.stderr.write(`\nbench: ${sig}, stopping children\n`)
      void shutdownAll().finally(() => process.exit(130))
    })
  }
}

/** VmRSS and VmHWM (peak) of a process, in KiB, or undefined once it is gone. */
export function memoryKb(pid: number): { rss: number; hwm: number } | undefined {
  let text: string
  try {
    text = readFileSync(`/proc/${pid}/status`, 'utf8')
  } catch {
    return undefined
  }
  const field = (name: string) => Number(text.match(new RegExp(`^${name}:\\s+(\\d+) kB`, 'm'))?.[1] ?? 0)
  return { rss: field('VmRSS'), hwm: field('VmHWM') }
}

/**
 * What `npm start` runs after its build (package.json's serve script): its node flags and the
 * bundle, so that the bench measures the service as it is started. Flags given after these
 * override them.
 */
export function npmStart(root: string): { flags: string[]; script: string } {
  const pkg = JSON.parse(readFileSync(join(root, 'package.json'), 'utf8')) as {
    scripts: Record<string, string>
  }
  const start = pkg.scripts.serve ?? ''
  const [node, ...args] = start.replace(/^exec /, '').split(/\s+/)
  const script = args.pop()
  if (node !== 'node' || script === undefined || args.some((a) => !a.startsWith('--')))
    throw new Error(`npm run serve is not "node [--flags] <script>": ${start}`)
  return { flags: args, script: join(root, script) }
}

export function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const srv = createServer()
    srv.on('error', reject)
    srv.listen(0, '127.0.0.1', () => {
      const addr = srv.address()
      srv.close(() =>
        typeof addr === 'object' && addr !== null ? resolve(addr.port) : reject(new Error('no port')),
      )
    })
  })
}

export const sleep = (ms: number) => new Promise<void>((r) => setTimeout(r, ms))

/** Linux's USER_HZ: /proc's CPU times are in these ticks (100 a second on every common kernel). */
const TICKS_PER_SEC = 100

/** CPU time a process (all its threads) has used, in ms; NaN once it is gone. */
export function cpuMs(pid: number): number {
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, 'utf8')
    // the fields after the command name, which may itself hold spaces and parentheses
    const f = stat.slice(stat.lastIndexOf(')') + 2).split(' ')
    return ((Number(f[11]) + Number(f[12])) * 1000) / TICKS_PER_SEC
  } catch {
    return Number.NaN
  }
}

/** CPU per unit of work (µs) of the service, its redis-server and the bench process itself. */
export interface CpuSplit {
  service: number
  redis: number
  /** the bench process: autocannon or the batch loops (the latency probes run apart) */
  loadgen: number
}

/**
 * Measures what a phase cost in CPU: started before it, `per(n)` after it gives the µs
 * each of the n requests or events took in each process, from /proc and process.cpuUsage.
 */
export class CpuMeter {
  private readonly start: { service: number; redis: number; self: NodeJS.CpuUsage }

  constructor(private readonly pids: { service: number; redis?: number }) {
    this.start = {
      service: cpuMs(pids.service),
      redis: pids.redis === undefined ? 0 : cpuMs(pids.redis),
      self: process.cpuUsage(),
    }
  }

  per(n: number): CpuSplit {
    const self = process.cpuUsage(this.start.self)
    const redis = this.pids.redis === undefined ? 0 : cpuMs(this.pids.redis) - this.start.redis
    return {
      service: ((cpuMs(this.pids.service) - this.start.service) * 1000) / n,
      redis: (redis * 1000) / n,
      loadgen: (self.user + self.system) / n,
    }
  }
}
