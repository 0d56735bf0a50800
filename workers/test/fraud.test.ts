import type { QueuedEvent } from '@referral/core'
import { describe, expect, it } from 'vitest'
import { DEFAULT_FRAUD, isDisposable, slide } from '../src/fraud.ts'
import type { StateSnapshot } from '../src/state.ts'
import { DAY, ev, run, T0 } from './resolve-support.ts'

const MIN = 60_000
const owners = (s: StateSnapshot) => {
  s.codes.set('AAAAAAAA', 'alice')
  s.codes.set('BBBBBBBB', 'bob')
}
const opts = { attributionWindowMs: 30 * DAY, fraud: DEFAULT_FRAUD }
const flagsOf = (r: ReturnType<typeof run>, id: string) => r.rows.find((row) => row.id === id)?.flags ?? []

/** Normal traffic: distinct people from distinct places, at a human pace. */
function normalTraffic(n: number): QueuedEvent[] {
  const out: QueuedEvent[] = [
    ev.signup('s-alice', 'alice', { ip: '203.0.113.1', email: 'alice@acme.io', visitor_id: 'va' }),
  ]
  for (let i = 0; i < n; i++) {
    const t = T0 + i * 10 * MIN
    out.push(ev.click(`c${i}`, 'AAAAAAAA', `v${i}`, t, { ip: `198.51.100.${i + 1}` }))
    out.push(ev.click(`c${i}b`, 'AAAAAAAA', `v${i}`, t + 20_000, { ip: `198.51.100.${i + 1}` }))
    out.push(
      ev.signup(
        `s${i}`,
        `u${i}`,
        { visitor_id: `v${i}`, ip: `198.51.100.${i + 1}`, email: `u${i}@gmail.com` },
        t + MIN,
      ),
    )
    out.push(ev.purchase(`p${i}`, `u${i}`, 2000, t + 2 * MIN))
  }
  return out
}

describe('fraud rules', () => {
  it('flag nothing on normal traffic: every referral is counted and every commission is paid', () => {
    const r = run(normalTraffic(12), owners, opts)
    expect(r.rows.filter((row) => row.flags !== undefined)).toEqual([])
    expect(r.holds.size).toBe(0)
    expect(r.onHold.size).toBe(0)
    expect(r.counters.get('alice')).toMatchObject({ signups: 12, conversions: 12, earnings_cents: 12 * 100 })
    expect(r.ledger.filter((l) => l.kind === 'commission').every((l) => l.account === 'wallet')).toBe(true)
  })

  it('flag a referral from the IP, the browser or the company email domain the referrer signed up with', () => {
    const r = run(
      [
        ev.signup('s-alice', 'alice', { ip: '203.0.113.1', visitor_id: 'va', email: 'alice@acme.io' }),
        ev.signup('s1', 'u1', { ref: 'AAAAAAAA', ip: '203.0.113.1' }, T0 + MIN),
        ev.signup('s2', 'u2', { ref: 'AAAAAAAA', visitor_id: 'va' }, T0 + 2 * MIN),
        ev.signup('s3', 'u3', { ref: 'AAAAAAAA', email: 'bob@ACME.io' }, T0 + 3 * MIN),
        // a shared public mailbox domain says nothing
        ev.signup('s-bob', 'bob', { email: 'bob@gmail.com' }),
        ev.signup('s4', 'u4', { ref: 'BBBBBBBB', email: 'carol@gmail.com' }, T0 + 4 * MIN),
      ],
      owners,
      opts,
    )
    expect(flagsOf(r, 's1')).toEqual(['same_ip'])
    expect(flagsOf(r, 's2')).toEqual(['same_visitor'])
    expect(flagsOf(r, 's3')).toEqual(['same_email_domain'])
    expect(flagsOf(r, 's4')).toEqual([])
    // flagged, not dropped: the referrals are counted
    expect(r.counters.get('alice')?.signups).toBe(3)
    expect(r.users.get('u1')).toMatchObject({ referrer: 'alice', flags: ['same_ip'] })
  })

  it('flag signups past the per-IP and per-visitor limits within the window, and not once the window has passed', () => {
    const fromIp = (i: number, t: number) =>
      ev.signup(`ip${i}`, `ip-user${i}`, { ref: 'AAAAAAAA', ip: '192.0.2.7' }, t)
    const r = run(
      [
        fromIp(1, T0),
        fromIp(2, T0 + MIN),
        fromIp(3, T0 + 2 * MIN),
        fromIp(4, T0 + 3 * MIN), // the 4th within an hour: over FRAUD_MAX_SIGNUPS_PER_IP (3)
        fromIp(5, T0 + 3 * MIN + 2 * 3_600_000), // hours later: the window has moved on
        ev.signup('v1', 'v-user1', { ref: 'AAAAAAAA', visitor_id: 'same-browser' }, T0),
        ev.signup('v2', 'v-user2', { ref: 'AAAAAAAA', visitor_id: 'same-browser' }, T0 + MIN),
      ],
      owners,
      opts,
    )
    expect([1, 2, 3].map((i) => flagsOf(r, `ip${i}`))).toEqual([[], [], []])
    expect(flagsOf(r, 'ip4')).toEqual(['signup_burst_ip'])
    expect(flagsOf(r, 'ip5')).toEqual([])
    expect(flagsOf(r, 'v1')).toEqual([])
    expect(flagsOf(r, 'v2')).toEqual(['signup_burst_visitor'])
  })

  it('flag clicks faster than a person clicks, and the referral that came through that visitor', () => {
    const spam = Array.from({ length: 40 }, (_, i) =>
      ev.click(`spam${i}`, 'AAAAAAAA', 'bot-ish', T0 + i * 500),
    )
    const calm = Array.from({ length: 40 }, (_, i) =>
      ev.click(`calm${i}`, 'AAAAAAAA', 'person', T0 + i * 5 * MIN),
    )
    const r = run(
      [
        ...spam,
        ...calm,
        ev.signup('s-spam', 'u-spam', { visitor_id: 'bot-ish' }, T0 + 30 * MIN),
        ev.signup('s-calm', 'u-calm', { visitor_id: 'person' }, T0 + 201 * MIN),
      ],
      owners,
      opts,
    )
    const flagged = spam.filter((e) => flagsOf(r, e.id).includes('click_rate')).length
    expect(flagged).toBe(40 - DEFAULT_FRAUD.maxClicksPerMinute) // the first 30 of the minute pass
    expect(calm.some((e) => flagsOf(r, e.id).length > 0)).toBe(false)
    expect(flagsOf(r, 's-spam')).toEqual(['click_rate'])
    expect(flagsOf(r, 's-calm')).toEqual([])
    // still counted: a flag is for review, not a silent drop
    expect(r.counters.get('alice')?.clicks).toBe(80)
  })

  it('flag disposable email domains (and their subdomains, and configured extras)', () => {
    expect(isDisposable('mailinator.com', [])).toBe(true)
    expect(isDisposable('eu.mailinator.com', [])).toBe(true)
    expect(isDisposable('acme.io', [])).toBe(false)
    expect(isDisposable('burner.test', ['burner.test'])).toBe(true)
    const r = run(
      [
        ev.signup('s1', 'u1', { ref: 'AAAAAAAA', email: 'x@mailinator.com' }),
        ev.signup('s2', 'u2', { ref: 'AAAAAAAA', email: 'y@acme.io' }),
      ],
      owners,
      opts,
    )
    expect(flagsOf(r, 's1')).toEqual(['disposable_email'])
    expect(flagsOf(r, 's2')).toEqual([])
  })

  it('flag the commissions of a referrer whose referred purchases are refunded above the threshold', () => {
    const events: QueuedEvent[] = []
    for (let i = 0; i < 4; i++) {
      events.push(ev.signup(`s${i}`, `u${i}`, { ref: 'AAAAAAAA' }, T0 + i))
      events.push(ev.purchase(`p${i}`, `u${i}`, 1000, T0 + 10 + i))
    }
    // one refund in four purchases: 25%, not above the threshold
    events.push(ev.refund('r0', 'p0', 1000, T0 + 20))
    events.push(ev.signup('s4', 'u4', { ref: 'AAAAAAAA' }, T0 + 30))
    events.push(ev.purchase('p4', 'u4', 1000, T0 + 31))
    // a second refund: 2000 of 5000 refunded, 40%
    events.push(ev.refund('r1', 'p1', 1000, T0 + 40))
    events.push(ev.purchase('p5', 'u4', 1000, T0 + 41))
    const r = run(events, owners, opts)
    expect(flagsOf(r, 'p4')).toEqual([])
    expect(flagsOf(r, 'p5')).toEqual(['refund_rate'])
    expect(r.holds.get('p5')).toBe(true)
  })

  it('slide keeps a bounded window and counts only what falls within it', () => {
    let times: number[] = []
    for (let i = 0; i < 100; i++) times = slide(times, i * 1000, 60_000, 5).times
    expect(times.length).toBe(6)
    expect(slide(times, 100_000, 60_000, 5).count).toBe(7)
    expect(slide(times, 100_000 + 61_000, 60_000, 5).count).toBe(1)
  })
})

describe('held commissions', () => {
  const flaggedReferral = [
    ev.signup('s-alice', 'alice', { ip: '203.0.113.1' }),
    ev.signup('s1', 'u1', { ref: 'AAAAAAAA', ip: '203.0.113.1' }, T0 + MIN),
    ev.purchase('p1', 'u1', 10_000, T0 + 2 * MIN),
  ]

  it('hold the commission of a flagged referral: earned, but on the held balance, not the wallet', () => {
    const r = run(flaggedReferral, owners, opts)
    expect(r.ledger.find((l) => l.entry_id === 'commission:p1')).toMatchObject({
      account: 'held',
      amount_cents: 500,
    })
    expect(r.onHold.get('alice')).toBe(500)
    expect(r.credits.get('alice')).toBeUndefined()
    expect(r.counters.get('alice')?.earnings_cents).toBe(500)
    expect(r.purchases.get('p1')).toMatchObject({ hold: 'held', flags: ['same_ip'] })
    expect(r.holds.get('p1')).toBe(true)
  })

  it('only flag, and pay as usual, when FRAUD_HOLD is off', () => {
    const r = run(flaggedReferral, owners, { ...opts, fraud: { ...DEFAULT_FRAUD, hold: false } })
    expect(r.ledger.find((l) => l.entry_id === 'commission:p1')?.account).toBe('wallet')
    expect(flagsOf(r, 'p1')).toEqual(['same_ip'])
    expect(r.holds.size).toBe(0)
  })

  it('approve moves what is left after refunds from held to the wallet, once', () => {
    const r = run(
      [
        ...flaggedReferral,
        ev.refund('r1', 'p1', 2_000, T0 + 3 * MIN), // reverses 100 of the held 500
        ev.decision('p1', 'approve', T0 + 4 * MIN),
        ev.decision('p1', 'reject', T0 + 5 * MIN), // the first decision wins
      ],
      owners,
      opts,
    )
    const entries = r.ledger
      .filter((l) => l.user_id === 'alice')
      .map((l) => [l.kind, l.account, l.amount_cents])
    expect(entries).toEqual([
      ['commission', 'held', 500],
      ['commission_reversal', 'held', -100],
      ['hold_release', 'held', -400],
      ['commission_approved', 'wallet', 400],
    ])
    expect(r.onHold.get('alice')).toBe(0)
    expect(r.credits.get('alice')?.map((c) => [c.id, c.amount_cents, c.expires_at])).toEqual([
      ['commission_approved:p1', 400, null],
    ])
    expect(r.counters.get('alice')?.earnings_cents).toBe(400)
    expect(r.holds.get('p1')).toBe(false)
    expect(r.rows.filter((row) => row.type === 'decision').map((row) => row.note)).toEqual(['approved'])
  })

  it('reject writes off what is held: earnings lose it, and a later refund reverses nothing more', () => {
    const r = run(
      [
        ...flaggedReferral,
        ev.decision('p1', 'reject', T0 + 4 * MIN),
        ev.refund('r1', 'p1', 10_000, T0 + 5 * MIN),
      ],
      owners,
      opts,
    )
    const entries = r.ledger
      .filter((l) => l.user_id === 'alice')
      .map((l) => [l.kind, l.account, l.amount_cents])
    expect(entries).toEqual([
      ['commission', 'held', 500],
      ['commission_rejected', 'held', -500],
    ])
    expect(r.counters.get('alice')?.earnings_cents).toBe(0)
    expect(r.onHold.get('alice')).toBe(0)
    expect(r.purchases.get('p1')).toMatchObject({ hold: 'rejected', refunded: 10_000 })
  })

  it('a decision on a commission that is not held changes nothing', () => {
    const r = run(
      [
        ev.signup('s1', 'u1', { ref: 'AAAAAAAA' }),
        ev.purchase('p1', 'u1', 1000),
        ev.decision('p1', 'reject'),
      ],
      owners,
      opts,
    )
    expect(r.rows.find((row) => row.type === 'decision')?.note).toBe('not_held')
    expect(r.ledger.map((l) => l.kind)).toEqual(['signup_bonus', 'commission'])
    expect(r.counters.get('alice')?.earnings_cents).toBe(50)
  })

  it('a partner commission approved goes to cash', () => {
    const r = run(
      flaggedReferral,
      (s) => {
        owners(s)
        s.users.set('alice', { track: 'partner', partnerSince: T0 - DAY })
      },
      opts,
    )
    expect(r.ledger.find((l) => l.entry_id === 'commission:p1')).toMatchObject({
      account: 'held',
      amount_cents: 1000,
    })
    const approved = run(
      [...flaggedReferral, ev.decision('p1', 'approve', T0 + 9 * MIN)],
      (s) => {
        owners(s)
        s.users.set('alice', { track: 'partner', partnerSince: T0 - DAY })
      },
      opts,
    )
    expect(approved.cash.get('alice')).toBe(1000)
    expect(approved.onHold.get('alice')).toBe(0)
  })
})
