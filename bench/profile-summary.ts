import { readFileSync } from 'node:fs'

/**
 * `tsx bench/profile-summary.ts <file.cpuprofile> [top] [--from=s] [--to=s] [--tasks=ms]`:
 * where a V8 CPU profile's time went, by function (self time) and by package or source folder.
 *
 * - `--from` / `--to`: only the samples between these seconds since the profile started
 *   (`npm run bench -- --profile` logs when each phase started, in the service's seconds).
 * - `--tasks=ms`: also the event loop's tasks, a task being a run of samples with no idle
 *   sample between them: how many there were of each length, and in the ones at least `ms`
 *   long, where the time went. A task that long delays every request that arrives during it.
 */
interface Node {
  id: number
  callFrame: { functionName: string; url: string; lineNumber: number }
  children?: number[]
}
interface Profile {
  nodes: Node[]
  samples: number[]
  timeDeltas: number[]
}

const args = process.argv.slice(2)
const flag = (name: string): number | undefined => {
  const a = args.find((x) => x.startsWith(`--${name}=`))
  return a === undefined ? undefined : Number(a.slice(name.length + 3))
}
const [file, topArg] = args.filter((a) => !a.startsWith('--'))
if (file === undefined)
  throw new Error('usage: profile-summary <file.cpuprofile> [top] [--from=s] [--to=s] [--tasks=ms]')
const top = Number(topArg ?? 25)
const fromUs = (flag('from') ?? 0) * 1e6
const toUs = (flag('to') ?? Number.POSITIVE_INFINITY) * 1e6
const taskMs = flag('tasks')

const p = JSON.parse(readFileSync(file, 'utf8')) as Profile
const byId = new Map(p.nodes.map((n) => [n.id, n]))
const IDLE = new Set(p.nodes.filter((n) => n.callFrame.functionName === '(idle)').map((n) => n.id))

const where = (url: string) => {
  if (url === '') return '(native/vm)'
  const m = url.match(/node_modules\/((?:@[^/]+\/)?[^/]+)/)
  if (m?.[1] !== undefined) return m[1]
  const w = url.match(/wt-[^/]+\/([^/]+\/[^/]+)/) ?? url.match(/\/(\w+\/src)\//)
  if (w?.[1] !== undefined) return w[1]
  return url.startsWith('node:') ? `node:${url.slice(5).split('/')[0]}` : url.slice(-40)
}
const fnKey = (n: Node) => {
  const { functionName, url, lineNumber } = n.callFrame
  return `${functionName || '(anonymous)'} ${where(url)}:${lineNumber + 1}`
}

/** self time (µs) by node id, for the samples in the window; and the window's tasks */
const self = new Map<number, number>()
interface Task {
  us: number
  samples: Array<[id: number, us: number]>
}
const tasks: Task[] = []
let task: Task | undefined
let t = 0
p.samples.forEach((id, i) => {
  const us = p.timeDeltas[i] ?? 0
  t += us
  if (t < fromUs || t > toUs) return
  self.set(id, (self.get(id) ?? 0) + us)
  if (IDLE.has(id)) {
    task = undefined
    return
  }
  if (task === undefined) {
    task = { us: 0, samples: [] }
    tasks.push(task)
  }
  task.us += us
  task.samples.push([id, us])
})
const total = [...self.values()].reduce((a, b) => a + b, 0)

const tally = (entries: Iterable<[number, number]>) => {
  const fns = new Map<string, number>()
  const pkgs = new Map<string, number>()
  for (const [id, us] of entries) {
    const n = byId.get(id)
    if (n === undefined) continue
    fns.set(fnKey(n), (fns.get(fnKey(n)) ?? 0) + us)
    pkgs.set(where(n.callFrame.url), (pkgs.get(where(n.callFrame.url)) ?? 0) + us)
  }
  return { fns, pkgs }
}
const show = (m: Map<string, number>, n: number, of: number) =>
  [...m.entries()]
    .sort((a, b) => b[1] - a[1])
    .slice(0, n)
    .map(
      ([k, us]) =>
        `${((100 * us) / of).toFixed(1).padStart(5)}%  ${(us / 1000).toFixed(0).padStart(7)} ms  ${k}`,
    )
    .join('\n')

const all = tally(self)
let out = `total ${(total / 1000).toFixed(0)} ms sampled\n\nby package / folder:\n${show(all.pkgs, 20, total)}\n\nby function (self):\n${show(all.fns, top, total)}\n`

if (taskMs !== undefined) {
  const bounds = [1, 2, 5, 10, 20, 50, Number.POSITIVE_INFINITY]
  const rows = bounds.map((b, i) => {
    const lo = i === 0 ? 0 : (bounds[i - 1] ?? 0)
    const inBin = tasks.filter((k) => k.us / 1000 >= lo && k.us / 1000 < b)
    const ms = inBin.reduce((a, k) => a + k.us, 0) / 1000
    return `  ${`${lo}-${b === Number.POSITIVE_INFINITY ? '' : b} ms`.padEnd(9)} ${String(inBin.length).padStart(7)} tasks, ${ms.toFixed(0).padStart(6)} ms`
  })
  const long = tasks.filter((k) => k.us / 1000 >= taskMs)
  const longUs = long.reduce((a, k) => a + k.us, 0)
  const longest = [...long].sort((a, b) => b.us - a.us).slice(0, 5)
  const { fns } = tally(long.flatMap((k) => k.samples))
  out += `\ntasks (runs of samples with no idle between them) by length:\n${rows.join('\n')}\n`
  out += `\nin the ${long.length} tasks of ${taskMs} ms or more (${(longUs / 1000).toFixed(0)} ms; longest ${longest.map((k) => (k.us / 1000).toFixed(1)).join(', ')} ms), by function (self):\n${show(fns, top, longUs)}\n`
}
process.stdout.write(out)
