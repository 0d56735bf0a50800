import { cpus, loadavg, totalmem } from 'node:os'

/** The markdown `npm run bench` prints and writes to bench/results/latest.md. */

export type Verdict = 'pass' | 'FAIL' | 'info'

export interface Row {
  figure: string
  value: string
  baseline: string
  ratio: string
  target: string
  verdict: Verdict
}

export const fmt = {
  int: (n: number) => (Number.isFinite(n) ? Math.round(n).toLocaleString('en-US') : 'n/a'),
  ms: (n: number) => (Number.isFinite(n) ? `${n.toFixed(n < 10 ? 2 : 0)} ms` : 'n/a'),
  s: (ms: number) => (Number.isFinite(ms) ? `${(ms / 1000).toFixed(2)} s` : 'n/a'),
  mb: (bytes: number) => (Number.isFinite(bytes) ? `${(bytes / 1024 / 1024).toFixed(1)} MiB` : 'n/a'),
  ratio: (a: number, b: number) => (b > 0 && Number.isFinite(a) ? `${(a / b).toFixed(2)}` : 'n/a'),
}

export const row = (
  figure: string,
  value: string,
  opts: Partial<Omit<Row, 'figure' | 'value'>> = {},
): Row => ({
  figure,
  value,
  baseline: opts.baseline ?? '',
  ratio: opts.ratio ?? '',
  target: opts.target ?? '',
  verdict: opts.verdict ?? 'info',
})

export const verdict = (ok: boolean): Verdict => (ok ? 'pass' : 'FAIL')

/** Load average when the run started: other work on the machine skews every figure. */
export const loadAtStart = loadavg()

export function machine(): string[] {
  const cpu = cpus()
  const load = (l: number[]) => l.map((n) => n.toFixed(2)).join(' ')
  return [
    `- machine: ${cpu.length} CPUs, ${cpu[0]?.model.trim() ?? 'unknown model'}, ${fmt.mb(totalmem())} RAM`,
    `- node ${process.version}, ${process.platform}/${process.arch}`,
    `- date: ${new Date().toISOString()}`,
    `- load average at start: ${load(loadAtStart)}; at the end: ${load(loadavg())}` +
      (loadAtStart[0] !== undefined && loadAtStart[0] > 1 ? ' (the machine was not idle)' : ''),
  ]
}

const escapeCell = (s: string) => s.replace(/\|/g, '\\|')

export function table(rows: Row[]): string[] {
  const out = [
    '| figure | value | baseline | ratio | target | pass/fail |',
    '| --- | ---: | ---: | ---: | --- | --- |',
  ]
  for (const r of rows) {
    const cells = [r.figure, r.value, r.baseline, r.ratio, r.target, r.verdict === 'info' ? '' : r.verdict]
    out.push(`| ${cells.map(escapeCell).join(' | ')} |`)
  }
  return out
}
