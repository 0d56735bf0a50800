import { describe, expect, it } from 'vitest'
import { StatsCache } from '../src/stats-cache.ts'

/**
 * The cache's rules, against a store whose reads finish when the test says: what Redis holds
 * is `store`, each read takes the value at its start and answers at `finish`.
 */
function harness(opts = { maxAgeMs: 1000, maxEntries: 100 }) {
  let clock = 0
  const store = new Map<string, number>()
  const reads: Array<{ user: string; finish: () => void; fail: (e: Error) => void }> = []
  const cache = new StatsCache<number>(
    (user) =>
      new Promise<number>((resolve, reject) => {
        const value = store.get(user) ?? 0
        reads.push({ user, finish: () => resolve(value), fail: reject })
      }),
    opts,
    () => clock,
  )
  cache.resume()
  /** finishes every read started so far */
  const settle = async () => {
    for (const r of reads.splice(0)) r.finish()
    await new Promise((r) => setImmediate(r))
  }
  /** a get that is answered once the reads it waits for finish */
  const get = async (user: string) => {
    const p = cache.get(user)
    await settle()
    return p
  }
  return {
    cache,
    store,
    reads,
    settle,
    get,
    tick: (ms: number) => {
      clock += ms
    },
  }
}

describe('stats cache', () => {
  it('answers from memory until the user is invalidated, then from a new read', async () => {
    const h = harness()
    h.store.set('u', 1)
    expect(await h.get('u')).toBe(1)
    h.store.set('u', 2) // a write whose message has not come yet
    expect(await h.get('u')).toBe(1)
    expect(h.reads).toHaveLength(0)
    h.cache.invalidate(['u'])
    // read again at once (asked for lately), before anyone asks
    expect(h.reads.map((r) => r.user)).toEqual(['u'])
    expect(await h.get('u')).toBe(2)
    expect(h.cache.hits).toBe(1)
    expect(h.cache.misses).toBe(2)
  })

  it('makes a request after an invalidation wait for a read started after it', async () => {
    const h = harness()
    h.store.set('u', 1)
    expect(await h.get('u')).toBe(1)
    h.store.set('u', 2)
    h.cache.invalidate(['u'])
    const before = h.reads.splice(0) // the read of 2, still running
    h.store.set('u', 3)
    h.cache.invalidate(['u']) // heard while that read runs: its answer is not enough
    const p = h.cache.get('u')
    for (const r of before) r.finish()
    await h.settle()
    expect(await p).toBe(3)
    expect(await h.get('u')).toBe(3)
  })

  it('does not keep what a read started before an invalidation answered', async () => {
    const h = harness()
    h.store.set('u', 1)
    const first = h.cache.get('u') // reads 1
    h.store.set('u', 2)
    h.cache.invalidate(['u'])
    await h.settle()
    expect(await first).toBe(1) // asked before the change was heard
    h.store.set('u', 3) // no message: the entry must hold 2, the read after the change
    expect(await h.get('u')).toBe(2)
  })

  it('reads again once an entry is maxAgeMs old, whatever the channel said', async () => {
    const h = harness({ maxAgeMs: 1000, maxEntries: 100 })
    h.store.set('u', 1)
    expect(await h.get('u')).toBe(1)
    h.store.set('u', 2) // written by something that does not publish
    h.tick(999)
    expect(await h.get('u')).toBe(1)
    h.tick(1)
    expect(await h.get('u')).toBe(2)
  })

  it('drops an invalidated entry nobody asked for lately, without reading it', async () => {
    const h = harness({ maxAgeMs: 1000, maxEntries: 100 })
    expect(await h.get('u')).toBe(0)
    h.tick(1500)
    h.cache.invalidate(['u'])
    expect(h.reads).toHaveLength(0)
    expect(h.cache.size).toBe(0)
  })

  it('reads every time while suspended, and keeps nothing a read started before resuming', async () => {
    const h = harness()
    h.store.set('u', 1)
    expect(await h.get('u')).toBe(1)
    const inFlight = h.cache.get('u')
    h.tick(2000)
    const stale = h.cache.get('u') // too old: reads again, started before the suspension
    h.cache.suspend() // the subscriber went away: messages may be lost
    expect(h.cache.size).toBe(0)
    h.store.set('u', 2)
    expect(await h.get('u')).toBe(2)
    expect(await h.get('u')).toBe(2)
    expect(h.cache.misses).toBeGreaterThanOrEqual(3)
    h.cache.resume()
    h.store.set('u', 4)
    expect(await h.get('u')).toBe(4) // a new entry, read after resuming
    await inFlight
    await stale
    h.store.set('u', 5)
    expect(await h.get('u')).toBe(4) // held since resuming; the reads from before did not fill it
  })

  it('passes a failed read on and reads again on the next request', async () => {
    const h = harness()
    const p = h.cache.get('u')
    for (const r of h.reads.splice(0)) r.fail(new Error('redis away'))
    await expect(p).rejects.toThrow('redis away')
    h.store.set('u', 7)
    expect(await h.get('u')).toBe(7)
  })

  it('keeps at most maxEntries users, the least recently asked for going first', async () => {
    const h = harness({ maxAgeMs: 1000, maxEntries: 2 })
    await h.get('a')
    await h.get('b')
    await h.get('a') // a is now the most recent
    await h.get('c') // b goes
    expect(h.cache.size).toBe(2)
    const misses = h.cache.misses
    await h.get('a')
    expect(h.cache.misses).toBe(misses)
    await h.get('b')
    expect(h.cache.misses).toBe(misses + 1)
  })

  it('reads every time when maxAgeMs is 0', async () => {
    const h = harness({ maxAgeMs: 0, maxEntries: 100 })
    await h.get('u')
    await h.get('u')
    expect(h.cache.misses).toBe(2)
    expect(h.cache.hits).toBe(0)
  })
})
