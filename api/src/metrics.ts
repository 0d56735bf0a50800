/**
 * Prometheus text exposition of what this process knows: a registry of named readers, so
 * each component contributes its own figures without the HTTP layer knowing them.
 */
export interface Metric {
  name: string
  help: string
  type: 'counter' | 'gauge'
  read: () => number | Promise<number>
}

export class Metrics {
  private readonly metrics: Metric[] = []

  add(m: Metric): void {
    this.metrics.push(m)
  }

  async render(): Promise<string> {
    const lines: string[] = []
    for (const m of this.metrics) {
      let value: number
      try {
        value = await m.read()
      } catch {
        // a reader whose source is away (Redis down) is left out of this scrape
        continue
      }
      lines.push(`# HELP ${m.name} ${m.help}`, `# TYPE ${m.name} ${m.type}`, `${m.name} ${value}`)
    }
    return `${lines.join('\n')}\n`
  }
}
