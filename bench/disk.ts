import { open, unlink } from 'node:fs/promises'
import { join } from 'node:path'

/**
 * The disk alone, as redis-server with `appendfsync always` uses it: a small append, then
 * fdatasync, `ratePerSec` times a second for `durationMs`, into a file of its own under
 * `dir` (on the filesystem DATA_DIR is on). Latencies in ms, sorted. Run while nothing else
 * loads the machine: it is the baseline of redis-server's own fsync stalls.
 */
export async function fdatasyncProbe(dir: string, ratePerSec: number, durationMs: number): Promise<number[]> {
  const path = join(dir, 'fdatasync-probe')
  const file = await open(path, 'a')
  const line = Buffer.alloc(200, 'x')
  const samples: number[] = []
  const every = 1000 / ratePerSec
  const t0 = performance.now()
  try {
    for (let i = 0; ; i++) {
      const due = t0 + i * every
      if (due - t0 >= durationMs) break
      const wait = due - performance.now()
      if (wait > 0) await new Promise((r) => setTimeout(r, wait))
      await file.write(line)
      const t = performance.now()
      await file.datasync()
      samples.push(performance.now() - t)
    }
  } finally {
    await file.close()
    await unlink(path)
  }
  return samples.sort((a, b) => a - b)
}
