import { readdirSync, readFileSync } from 'node:fs'
import { setPriority } from 'node:os'
import type { Logger } from '@referral/core'

/** Node's own threads (main, V8's platform workers, libuv's pool, worker threads) keep their priority. */
export const isNodeThread = (name: string): boolean => /^(node|libuv|V8 |Worker|inspector)/.test(name)

export interface EngineThreads {
  /** threads lowered so far (a thread counts once while it lives, however often it is checked) */
  readonly lowered: number
  stop(): void
}

/**
 * chDB runs ClickHouse inside this process, with thread pools of its own (inserts, merges,
 * background schedules: ThreadPool, MergeMutate, BgSchPool...). At the same priority their
 * bursts took cores from the event loop: under a steady 5k events/s a 10 ms timer ran 1.8-6.3
 * ms late at p99, 1.7-3.6 with them lowered (BENCHMARKS.md, 2026-12-07). This lowers every
 * thread that is not Node's own to `nice` (Linux, per thread, through /proc/self/task), so
 * that the scheduler gives the event loop a core first and ClickHouse what is left: applied
 * rows wait in the outbox meanwhile (the live counters are Redis's and do not wait). The
 * pools start threads as they grow, some from Node's threads (which keep priority 0), so the
 * scan repeats every `everyMs`. ClickHouse raises its MemoryWorker (RSS accounting) to -20
 * where it may: it is lowered too; a late read only delays its memory tracker. Where there is
 * no /proc (not Linux), it says so once and does nothing.
 */
export function lowerEngineThreads(opts: {
  nice: number
  everyMs: number
  log: Logger
  /** the process's threads (a test points it where there are none) */
  taskDir?: string
}): EngineThreads {
  const taskDir = opts.taskDir ?? '/proc/self/task'
  // never lowered, whatever it is called (process.title renames it)
  const mainTid = String(process.pid)
  const seen = new Set<string>()
  let timer: NodeJS.Timeout | undefined
  const state = {
    lowered: 0,
    stop() {
      if (timer !== undefined) clearInterval(timer)
      timer = undefined
    },
  }
  if (opts.nice === 0) return state

  /**
   * threads that two scans in a row found needing nothing (Node's own, or already low enough):
   * not read again. Twice, because a new thread bears its creator's name until it names itself,
   * and ClickHouse raises its MemoryWorker once it starts; Linux does not reuse a thread id
   * before pid_max's wrap.
   */
  const quiet = new Map<string, number>()
  const scan = (): boolean => {
    let tids: string[]
    try {
      tids = readdirSync(taskDir)
    } catch (e) {
      opts.log.info(
        { err: (e as Error).message },
        "no per-thread priority here: chDB's threads keep the process's",
      )
      return false
    }
    const listed = new Set(tids)
    for (const tid of quiet.keys()) if (!listed.has(tid)) quiet.delete(tid)
    for (const tid of seen) if (!listed.has(tid)) seen.delete(tid)
    for (const tid of tids) {
      if (tid === mainTid || (quiet.get(tid) ?? 0) >= 2) continue
      const thread = readThread(`${taskDir}/${tid}/stat`)
      if (thread === null) continue // gone since the listing
      if (isNodeThread(thread.name) || thread.nice >= opts.nice) {
        quiet.set(tid, (quiet.get(tid) ?? 0) + 1)
        continue
      }
      quiet.set(tid, 0)
      try {
        setPriority(Number(tid), opts.nice)
      } catch {
        continue // it ended meanwhile
      }
      if (!seen.has(tid)) {
        seen.add(tid)
        state.lowered++
      }
    }
    return true
  }
  if (scan()) {
    timer = setInterval(scan, opts.everyMs)
    timer.unref()
  }
  return state
}

/** A thread's name and nice from /proc/.../stat, or null once it has exited. */
export function readThread(statPath: string): { name: string; nice: number } | null {
  let stat: string
  try {
    stat = readFileSync(statPath, 'utf8')
  } catch {
    return null
  }
  // "tid (name) state ppid ...": the name may hold spaces and parentheses; nice is field 19
  const open = stat.indexOf('(')
  const close = stat.lastIndexOf(')')
  const fields = stat.slice(close + 2).split(' ')
  const nice = Number(fields[16])
  if (open < 0 || close < open || !Number.isInteger(nice)) return null
  return { name: stat.slice(open + 1, close), nice }
}
