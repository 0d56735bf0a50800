import { readFileSync } from 'node:fs'

/**
 * `tsx bench/profile-summary.ts <file.cpuprofile> [top]`: where a V8 CPU profile's time went,
 * by function (self time) and by package or source folder.
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

const file = process.argv[2]
if (file === undefined) throw new Error('usage: profile-summary <file.cpuprofile> [top]')
const top = Number(process.argv[3] ?? 25)
const p = JSON.parse(readFileSync(file, 'utf8')) as Profile
const byId = new Map(p.nodes.map((n) => [n.id, n]))
const self = new Map<number, number>()
p.samples.forEach((id, i) => {
  self.set(id, (self.get(id) ?? 0) + (p.timeDeltas[i] ?? 0))
})
const total = [...self.values()].reduce((a, b) => a + b, 0)

const where = (url: string) => {
  if (url === '') return '(native/vm)'
  const m = url.match(/node_modules\/((?:@[^/]+\/)?[^/]+)/)
  if (m?.[1] !== undefined) return m[1]
  const w = url.match(/wt-[^/]+\/([^/]+\/[^/]+)/) ?? url.match(/\/(\w+\/src)\//)
  if (w?.[1] !== undefined) return w[1]
  return url.startsWith('node:') ? `node:${url.slice(5).split('/')[0]}` : url.slice(-40)
}
const fns = new Map<string, number>()
const pkgs = new Map<string, number>()
for (const [id, us] of self) {
  const n = byId.get(id)
  if (n === undefined) continue
  const { functionName, url, lineNumber } = n.callFrame
  const key = `${functionName || '(anonymous)'} ${where(url)}:${lineNumber + 1}`
  fns.set(key, (fns.get(key) ?? 0) + us)
  pkgs.set(where(url), (pkgs.get(where(url)) ?? 0) + us)
}
const show = (m: Map<string, number>, n: number) =>
  [...m.entries()]
    .sort((a, b) => b[1] - a[1])
    .slice(0, n)
    .map(
      ([k, us]) =>
        `${((100 * us) / total).toFixed(1).padStart(5)}%  ${(us / 1000).toFixed(0).padStart(7)} ms  ${k}`,
    )
    .join('\n')
process.stdout.write(
  `total ${(total / 1000).toFixed(0)} ms sampled\n\nby package / folder:\n${show(pkgs, 20)}\n\nby function (self):\n${show(fns, top)}\n`,
)
