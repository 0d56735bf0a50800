import { Metrics } from '@referral/api'
import { afterEach, describe, expect, it } from 'vitest'
import { addRuntimeMetrics } from '../src/service-metrics.ts'

/** The event loop and GC gauges of /metrics, on this very thread. */
describe('runtime metrics', () => {
  let stop: () => void = () => {}
  afterEach(() => stop())

  const scrape = async (metrics: Metrics) => {
    const text = await metrics.render()
    return (name: string) => Number(text.match(new RegExp(`^${name} (\\S+)$`, 'm'))?.[1])
  }
  const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms))

  it('reports a blocked event loop and the GC pauses of the last window', async () => {
    const metrics = new Metrics()
    stop = addRuntimeMetrics(metrics, 400)
    const before = await scrape(metrics)
    expect(before('ra_nodejs_eventloop_delay_max_seconds')).toBe(0) // no window has ended yet
    const scavenges = before('ra_nodejs_gc_scavenges_total')
    // garbage for the young generation, then the loop held for 80 ms
    let keep = 0
    for (let i = 0; i < 2_000_000; i++) keep += [i, String(i)].length
    expect(keep).toBe(4_000_000)
    await sleep(20)
    const until = performance.now() + 80
    while (performance.now() < until) {
      // busy: the monitor's timer cannot run
    }
    // each window's figures show for one window once it has ended: watch for the one holding the block
    let delayMax = 0
    let gcMax = 0
    let quietestP99 = Number.POSITIVE_INFINITY
    for (let t = 0; t < 1_400; t += 50) {
      await sleep(50)
      const m = await scrape(metrics)
      delayMax = Math.max(delayMax, m('ra_nodejs_eventloop_delay_max_seconds'))
      gcMax = Math.max(gcMax, m('ra_nodejs_gc_pause_max_seconds'))
      quietestP99 = Math.min(quietestP99, m('ra_nodejs_eventloop_delay_p99_seconds'))
      expect(m('ra_nodejs_eventloop_delay_p99_seconds')).toBeLessThanOrEqual(
        m('ra_nodejs_eventloop_delay_max_seconds'),
      )
    }
    expect(delayMax).toBeGreaterThanOrEqual(0.05)
    expect(delayMax).toBeLessThan(5)
    expect(gcMax).toBeGreaterThan(0)
    // a window of sleeps: the timer is late by little, its own 10 ms not counted
    expect(quietestP99).toBeLessThan(0.009)
    const after = await scrape(metrics)
    expect(after('ra_nodejs_gc_scavenges_total')).toBeGreaterThan(scavenges)
    expect(after('ra_nodejs_gc_scavenge_seconds_total')).toBeGreaterThan(0)
  })
})
