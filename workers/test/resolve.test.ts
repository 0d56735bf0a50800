import { describe, expect, it } from 'vitest'
import type { StateSnapshot } from '../src/state.ts'
import { DAY, ev, run, T0 } from './resolve-support.ts'

const owners = (s: StateSnapshot) => {
  s.codes.set('AAAAAAAA', 'alice')
  s.codes.set('BBBBBBBB', 'bob')
}

describe('attribution', () => {
  it('uses the signup ref first, else the visitor last click inside the window', () => {
    const r = run(
      [
        ev.click('c1', 'AAAAAAAA', 'v1', T0),
        ev.click('c2', 'BBBBBBBB', 'v1', T0 + 1000),
        ev.signup('s1', 'u1', { visitor_id: 'v1' }, T0 + 2000),
        ev.signup('s2', 'u2', { ref: 'AAAAAAAA', visitor_id: 'v1' }, T0 + 3000),
      ],
      owners,
    )
    expect(r.users.get('u1')?.referrer).toBe('bob') // last click wins
    expect(r.users.get('u2')?.referrer).toBe('alice') // the ref on the signup wins over clicks
  })

  it('ignores a click older than the window', () => {
    const r = run(
      [ev.click('c1', 'AAAAAAAA', 'v1', T0), ev.signup('s1', 'u1', { visitor_id: 'v1' }, T0 + 31 * DAY)],
      owners,
    )
    expect(r.users.get('u1')?.referrer).toBeUndefined()
    expect(r.rows[1]?.note).toBe('unattributed')
  })

  it('never lets a user refer themselves, and keeps unknown codes unattributed', () => {
    const r = run(
      [ev.signup('s1', 'alice', { ref: 'AAAAAAAA' }), ev.signup('s2', 'zed', { ref: 'ZZZZZZZZ' })],
      owners,
    )
    expect(r.rows.map((x) => [x.note, x.counted])).toEqual([
      ['self_referral', 0],
      ['unknown_code', 0],
    ])
    expect(r.counters.size).toBe(0)
  })

  it('refers a user once: the first valid referral is never reassigned', () => {
    const r = run(
      [ev.signup('s1', 'u1', { ref: 'AAAAAAAA' }), ev.signup('s2', 'u1', { ref: 'BBBBBBBB' })],
      owners,
    )
    expect(r.users.get('u1')?.referrer).toBe('alice')
    expect(r.rows[1]?.note).toBe('already_signed_up')
    expect(r.counters.get('bob')).toBeUndefined()
  })
})

describe('commissions and refunds', () => {
  it('pays the referrer by their track at the time of purchase, and counts one conversion', () => {
    const r = run(
      [
        ev.signup('s1', 'u1', { ref: 'AAAAAAAA' }),
        ev.purchase('p1', 'u1', 1999),
        ev.purchase('p2', 'u1', 3000),
      ],
      (s) => {
        owners(s)
        s.users.set('alice', { track: 'partner' })
      },
    )
    expect(r.ledger.map((l) => [l.entry_id, l.account, l.amount_cents])).toEqual([
      ['signup_bonus:s1', 'wallet', 250],
      ['commission:p1', 'cash', 200],
      ['commission:p2', 'cash', 300],
    ])
    expect(r.counters.get('alice')).toEqual({ signups: 1, conversions: 1, earnings_cents: 500 })
  })

  it("writes the buyer's signup into a first purchase: with its visitor, with none when the signup had none, not when the state predates it", () => {
    const firstPurchase = (r: ReturnType<typeof run>, id: string) => {
      const row = r.rows.find((x) => x.id === id)
      return { first: row?.first_purchase, visitor: row?.signup_visitor_id, at: row?.signed_up_at }
    }
    const signedUp = T0 - DAY
    const r = run(
      [
        ev.signup('s1', 'u1', { ref: 'AAAAAAAA', visitor_id: 'v1' }, signedUp),
        ev.signup('s2', 'u2', { ref: 'AAAAAAAA' }, signedUp),
        ev.purchase('p1', 'u1', 1000),
        ev.purchase('p2', 'u2', 1000),
        ev.purchase('p3', 'u3', 1000),
      ],
      (s) => {
        owners(s)
        // referred before signups recorded their visitor: no visitor field at all
        s.users.set('u3', { referrer: 'bob', signedUpAt: signedUp, referredAt: signedUp })
      },
    )
    expect(firstPurchase(r, 'p1')).toEqual({ first: 1, visitor: 'v1', at: signedUp })
    expect(firstPurchase(r, 'p2')).toEqual({ first: 1, visitor: '', at: signedUp })
    // funnel_steps joins this one to the signup stored there, which knows its visitor
    expect(firstPurchase(r, 'p3')).toEqual({ first: 1, visitor: undefined, at: undefined })
  })

  it('holds a refund that arrives before its purchase and applies it when the purchase comes', () => {
    const r = run(
      [
        ev.refund('r1', 'p1', 1000),
        ev.signup('s1', 'u1', { ref: 'AAAAAAAA' }),
        ev.purchase('p1', 'u1', 2000),
      ],
      owners,
    )
    expect(r.rows[0]?.note).toBe('held_until_purchase')
    expect(r.ledger.map((l) => [l.entry_id, l.amount_cents])).toEqual([
      ['signup_bonus:s1', 250],
      ['commission:p1', 100],
      ['commission_reversal:r1', -50],
    ])
    expect(r.counters.get('alice')?.earnings_cents).toBe(50)
    expect(r.held.get('p1')).toEqual([])
  })

  it('takes each event id once, in a batch and against earlier batches', () => {
    const r = run(
      [ev.click('c1', 'AAAAAAAA', 'v'), ev.click('c1', 'AAAAAAAA', 'v'), ev.click('c2', 'AAAAAAAA', 'v')],
      (s) => {
        owners(s)
        s.taken.add('click:c2')
      },
    )
    expect(r.taken).toEqual(['click:c1'])
    expect(r.counters.get('alice')).toEqual({ clicks: 1 })
  })

  it('reverses no more than the commission for a refund larger than the purchase', () => {
    const r = run(
      [
        ev.signup('s1', 'u1', { ref: 'AAAAAAAA' }),
        ev.purchase('p1', 'u1', 2000),
        ev.refund('r1', 'p1', 5000),
        ev.refund('r2', 'p1', 100),
      ],
      owners,
    )
    expect(
      r.ledger.filter((l) => l.kind !== 'signup_bonus').map((l) => [l.entry_id, l.amount_cents]),
    ).toEqual([
      ['commission:p1', 100],
      ['commission_reversal:r1', -100],
    ])
    expect(r.rows[3]?.note).toBe('nothing_to_refund')
    expect(r.counters.get('alice')?.earnings_cents).toBe(0)
  })

  it('pays the Basic rate on purchases dated before the upgrade', () => {
    const since = T0 + 1000
    const r = run(
      [
        ev.signup('s1', 'u1', { ref: 'AAAAAAAA' }),
        ev.purchase('p1', 'u1', 1000, T0),
        ev.purchase('p2', 'u1', 1000, since),
      ],
      (s) => {
        owners(s)
        s.users.set('alice', { track: 'partner', partnerSince: since })
      },
    )
    expect(
      r.ledger.filter((l) => l.kind === 'commission').map((l) => [l.entry_id, l.account, l.amount_cents]),
    ).toEqual([
      ['commission:p1', 'wallet', 50],
      ['commission:p2', 'cash', 100],
    ])
  })
})
