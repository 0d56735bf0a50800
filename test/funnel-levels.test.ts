import { mkdtempSync, rmSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { FLAG_FILTERS, funnel, funnelFromEvents, funnelUndecided, type Range } from '@referral/api'
import { type ClickHouse, loadMigrations, migrate, openClickHouse } from '@referral/clickhouse'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'

const MIN = 60_000
const HOUR = 60 * MIN
const DAY = 24 * HOUR

type Step =
  | { type: 'click'; at: number; flagged?: boolean }
  | { type: 'signup'; at: number; user: string }
  | { type: 'purchase'; at: number; user: string; signedUpAt: number }

/**
 * The funnel's first pass settles a visitor's level from the first and last times of its
 * steps (funnelLevels in api/src/admin-reports.ts), and leaves the others to windowFunnel.
 * Each case below is one rule: its visitors must come out as the raw-events computation says
 * (windowFunnel over the events), and settled by the first pass, so that dropping the rule
 * (they would go to windowFunnel, and the answer stay right) fails the count of undecided
 * visitors, and getting it wrong fails the comparison. Steps are written straight into
 * `events`, so the views fill funnel_steps and funnel_hours as the worker's inserts do.
 */
describe('funnel levels: the first pass over funnel_hours (0010)', () => {
  const dir = mkdtempSync(join(tmpdir(), 'ra-funnel-levels-'))
  let ch: ClickHouse
  let n = 0
  // each case on a day of its own, on the hour
  const day = (k: number) => Date.UTC(2026, 0, 1 + 10 * k, 10)

  beforeAll(async () => {
    ch = await openClickHouse({
      dataDir: dir,
      clickhouse: { url: undefined, database: 'levels', user: undefined, password: undefined },
    })
    await migrate(ch)
  })
  afterAll(async () => {
    await ch.close()
    rmSync(dir, { recursive: true, force: true })
  })

  /** Stores one visitor's steps as the worker writes them (a purchase carries its buyer's signup). */
  const store = async (visitor: string, steps: Step[]) => {
    const row = (s: Step) => {
      const ts = new Date(s.at).toISOString()
      const base = { id: `e${n++}`, type: s.type, ts, received_at: ts, referrer_id: 'ref', counted: 1 }
      if (s.type === 'click') return { ...base, visitor_id: visitor, flags: s.flagged ? ['click_rate'] : [] }
      if (s.type === 'signup') return { ...base, user_id: s.user, visitor_id: visitor }
      return {
        ...base,
        user_id: s.user,
        first_purchase: 1,
        signup_visitor_id: visitor,
        signed_up_at: new Date(s.signedUpAt).toISOString(),
      }
    }
    // a token of its own, as the worker's groups have (chDB keeps the last one in its session)
    await ch.client.insert({
      table: 'events',
      values: steps.map(row),
      format: 'JSONEachRow',
      clickhouse_settings: { insert_deduplication_token: `levels:${visitor}` },
    })
  }

  /** The funnel equals the raw computation over the range, and the first pass left `undecided` visitors. */
  const expectFunnel = async (range: Range, windowSeconds: number, undecided: number) => {
    const got = await funnel(ch, range, windowSeconds)
    expect(got).toEqual(await funnelFromEvents(ch, range, windowSeconds))
    expect(await funnelUndecided(ch, range, windowSeconds)).toBe(undecided)
    return got.steps.map((s) => Number(s.visitors))
  }

  it('clicks all at or before the first signup: level 2 when it is within the window of the last click, else 1', async () => {
    const t = day(0)
    await store('near', [
      { type: 'click', at: t + 2 * MIN },
      { type: 'click', at: t + 5 * MIN },
      { type: 'signup', at: t + 35 * MIN, user: 'u-near' },
      { type: 'signup', at: t + 3 * HOUR, user: 'u-near-2' },
    ])
    await store('far', [
      { type: 'click', at: t },
      { type: 'signup', at: t + 2 * HOUR, user: 'u-far' },
    ])
    expect(await expectFunnel({ from: t - DAY, to: t + DAY }, 3600, 0)).toEqual([2, 1, 0])
  })

  it('a purchase at or after the first signup: level 3 when the first one is within the window of the last click', async () => {
    const t = day(1)
    const s = t + 10 * MIN
    await store('buys', [
      { type: 'click', at: t },
      { type: 'signup', at: s, user: 'u-buys' },
      { type: 'purchase', at: t + 50 * MIN, user: 'u-buys', signedUpAt: s },
    ])
    await store('late', [
      { type: 'click', at: t },
      { type: 'signup', at: s, user: 'u-late' },
      { type: 'purchase', at: t + 90 * MIN, user: 'u-late', signedUpAt: s },
    ])
    expect(await expectFunnel({ from: t - DAY, to: t + DAY }, 3600, 0)).toEqual([2, 2, 1])
  })

  it('a purchase before the first signup of the range and one after: level 3 when the last is within the window', async () => {
    const t = day(2)
    // u-old signed up from the visitor before the range, buys in it; u-new signs up in it
    const old = t - 3 * DAY
    const s = t + 20 * MIN
    const steps = (buyAt: number, who: string): Step[] => [
      { type: 'signup', at: old, user: `${who}-old` },
      { type: 'click', at: t },
      { type: 'purchase', at: t + 2 * MIN, user: `${who}-old`, signedUpAt: old },
      { type: 'signup', at: s, user: `${who}-new` },
      { type: 'purchase', at: buyAt, user: `${who}-new`, signedUpAt: s },
    ]
    await store('last-in', steps(t + 40 * MIN, 'in'))
    expect(await expectFunnel({ from: t - DAY, to: t + DAY }, 3600, 0)).toEqual([1, 1, 1])
    // the last one too late: whether one between would do is not known from first and last
    await store('last-out', steps(t + 70 * MIN, 'out'))
    expect(await expectFunnel({ from: t - DAY, to: t + DAY }, 3600, 1)).toEqual([2, 2, 1])
  })

  it('clicks all after every signup: level 1', async () => {
    const t = day(3)
    await store('after', [
      { type: 'signup', at: t, user: 'u-after' },
      { type: 'click', at: t + 10 * MIN },
      { type: 'click', at: t + 3 * DAY },
    ])
    expect(await expectFunnel({ from: t - DAY, to: t + 4 * DAY }, 86_400, 0)).toEqual([1, 0, 0])
  })

  it('clicks on both sides of a signup, in the same hour or not: windowFunnel decides', async () => {
    const t = day(4)
    await store('same-hour', [
      { type: 'click', at: t + 1 * MIN },
      { type: 'signup', at: t + 30 * MIN, user: 'u-same' },
      { type: 'click', at: t + 40 * MIN },
    ])
    await store('other-hours', [
      { type: 'click', at: t - 5 * HOUR },
      { type: 'signup', at: t, user: 'u-other' },
      { type: 'click', at: t + 5 * HOUR },
      { type: 'purchase', at: t + 30 * MIN, user: 'u-other', signedUpAt: t },
    ])
    // with a 1-hour window the second one's click is too early: 2 visitors clicked, 1 signed up
    expect(await expectFunnel({ from: t - DAY, to: t + DAY }, 3600, 2)).toEqual([2, 1, 0])
    expect(await expectFunnel({ from: t - DAY, to: t + DAY }, 6 * 3600, 2)).toEqual([2, 2, 1])
  })

  it('counts in whole seconds, a click first: a click later in the same second as a signup comes before it', async () => {
    const t = day(5)
    await store('same-second', [
      { type: 'signup', at: t + 100, user: 'u-second' },
      { type: 'click', at: t + 900 },
      { type: 'purchase', at: t + 500, user: 'u-second', signedUpAt: t + 100 },
    ])
    expect(await expectFunnel({ from: t - DAY, to: t + DAY }, 60, 0)).toEqual([1, 1, 1])
  })

  it('reads the partial hours at both ends of a range from funnel_steps, steps outside it not at all', async () => {
    const t = day(6)
    const range = { from: t - 25 * MIN, to: t + 3 * HOUR + 17 * MIN }
    await store('starts-early', [
      { type: 'click', at: t - 20 * MIN },
      { type: 'signup', at: t + 15 * MIN, user: 'u-early' },
    ])
    await store('ends-late', [
      { type: 'click', at: t + HOUR },
      { type: 'signup', at: t + 3 * HOUR + 10 * MIN, user: 'u-late2' },
      { type: 'purchase', at: t + 3 * HOUR + 17 * MIN, user: 'u-late2', signedUpAt: t + 3 * HOUR + 10 * MIN },
    ])
    // its click before the range, in the range's first hour: not counted, nor its signup;
    // and a click after the range, in its last hour
    await store('before', [
      { type: 'click', at: t - 40 * MIN },
      { type: 'signup', at: t + 10 * MIN, user: 'u-before' },
    ])
    await store('after-end', [{ type: 'click', at: t + 3 * HOUR + 30 * MIN }])
    // clicks on both sides of its signup, one of them in the first partial hour: windowFunnel
    // reads that one from funnel_steps too
    await store('edge-undecided', [
      { type: 'click', at: t - 15 * MIN },
      { type: 'signup', at: t + 30 * MIN, user: 'u-edge' },
      { type: 'click', at: t + 2 * HOUR },
    ])
    expect(await expectFunnel(range, 3 * 3600, 1)).toEqual([3, 3, 1])
    // a range inside one hour: funnel_steps alone
    expect(await expectFunnel({ from: t + HOUR - MIN, to: t + HOUR + MIN }, 3600, 0)).toEqual([1, 0, 0])
  })

  it('takes a range from before 1970 to after 2106 (the hours a DateTime holds are whole hours, the rest edges)', async () => {
    const range = { from: -3_600_000, to: Date.UTC(2200, 0, 1) }
    for (const w of [3600, 86_400]) {
      expect(await funnel(ch, range, w)).toEqual(await funnelFromEvents(ch, range, w))
    }
  })

  it('keeps funnel_hours as it was when a retried insert comes again (dedup token, as the worker writes)', async () => {
    const t = day(8)
    const rows = async () => {
      const r = await ch.client.query({
        query: 'SELECT count() AS n FROM funnel_hours WHERE hour >= fromUnixTimestamp64Milli({t:Int64})',
        query_params: { t },
        format: 'JSONEachRow',
      })
      const [x] = await r.json<{ n: string }>()
      return Number(x?.n)
    }
    // no merge may fold the duplicate rows away before they are counted
    await ch.client.command({ query: 'SYSTEM STOP MERGES funnel_hours' })
    try {
      const values = [0, 1].map((i) => ({
        id: `retry-${i}`,
        type: 'click',
        ts: new Date(t + i * HOUR).toISOString(),
        received_at: new Date(t).toISOString(),
        visitor_id: `retry-${i}`,
        counted: 1,
      }))
      const insert = () =>
        ch.client.insert({
          table: 'events',
          values,
          format: 'JSONEachRow',
          clickhouse_settings: {
            insert_deduplication_token: 'events:retried-group',
            deduplicate_blocks_in_dependent_materialized_views: 1,
          },
        })
      await insert()
      expect(await rows()).toBe(2)
      await insert()
      expect(await rows()).toBe(2)
    } finally {
      await ch.client.command({ query: 'SYSTEM START MERGES funnel_hours' })
    }
  })

  it('keeps each click by its own flags', async () => {
    const t = day(7)
    await store('flagged', [
      { type: 'click', at: t, flagged: true },
      { type: 'click', at: t + 2 * HOUR },
      { type: 'signup', at: t + 2 * HOUR + 30 * MIN, user: 'u-flagged' },
    ])
    const range = { from: t - DAY, to: t + DAY }
    for (const flagged of FLAG_FILTERS) {
      expect(await funnel(ch, range, 3600, flagged)).toEqual(await funnelFromEvents(ch, range, 3600, flagged))
    }
    expect((await funnel(ch, range, 3600, 'only')).steps.map((s) => s.visitors)).toEqual([1, 0, 0])
    expect((await funnel(ch, range, 3600, 'exclude')).steps.map((s) => s.visitors)).toEqual([1, 1, 0])
  })

  it('backfills funnel_hours from the events already stored when 0010 runs, a row a step, read as merged', async () => {
    // the steps the cases above stored
    const range = { from: day(0) - DAY, to: day(9) }
    const before = await funnel(ch, range, 3600)
    expect(before.steps[0]?.visitors).toBeGreaterThan(10)
    await ch.client.command({ query: 'DROP TABLE funnel_hours_mv' })
    await ch.client.command({ query: 'DROP TABLE funnel_hours' })
    const m = loadMigrations().find((x) => x.version === 10)
    if (m === undefined) throw new Error('no migration 10')
    for (const statement of m.statements) await ch.client.command({ query: statement })
    for (const w of [3600, 86_400]) {
      expect(await funnel(ch, range, w)).toEqual(await funnelFromEvents(ch, range, w))
    }
    expect(await funnel(ch, range, 3600)).toEqual(before)
  })
})
