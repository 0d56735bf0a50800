import { describe, expect, it } from 'vitest'
import { Sleeps } from '../src/sleeps.ts'

describe('Sleeps: pauses that end early when their owner closes', () => {
  it('forgets each pause once it has ended, however many there were', async () => {
    const sleeps = new Sleeps()
    for (let i = 0; i < 1_000; i++) await sleeps.sleep(0)
    expect(sleeps.size).toBe(0)
    const a = sleeps.sleep(5)
    const b = sleeps.sleep(5)
    expect(sleeps.size).toBe(2)
    await Promise.all([a, b])
    expect(sleeps.size).toBe(0)
  })

  it('ends the pauses under way at close, and every later one at once', async () => {
    const sleeps = new Sleeps()
    const t0 = performance.now()
    const long = sleeps.sleep(60_000)
    setTimeout(() => sleeps.close(), 20)
    await long
    expect(performance.now() - t0).toBeLessThan(5_000)
    expect(sleeps.size).toBe(0)
    const t1 = performance.now()
    await sleeps.sleep(60_000)
    expect(performance.now() - t1).toBeLessThan(1_000)
  })
})
