import { describe, expect, it } from 'vitest'
import { applyRate, commissionFor, reversalFor } from '../src/money.ts'

describe('money', () => {
  it('rounds commissions half up to the cent', () => {
    expect(commissionFor(1999, 'basic')).toBe(100) // 99.95
    expect(commissionFor(1990, 'basic')).toBe(100) // 99.5
    expect(commissionFor(1989, 'basic')).toBe(99) // 99.45
    expect(commissionFor(1995, 'partner')).toBe(200) // 199.5
    expect(commissionFor(1, 'partner')).toBe(0) // 0.1
    expect(commissionFor(5, 'partner')).toBe(1) // 0.5
    expect(applyRate(0, 500)).toBe(0)
  })

  it('refuses amounts that are not whole cents', () => {
    expect(() => applyRate(10.5, 500)).toThrow(RangeError)
    expect(() => applyRate(-1, 500)).toThrow(RangeError)
  })

  it('reverses the refunded share of a commission, and all of it on a full refund', () => {
    // 1000 cents at 5% = 50; refund 500 reverses 25
    expect(reversalFor(50, 1000, 0, 500, 0)).toBe(25)
    // three refunds of a third each sum to the whole commission, never more
    const c = commissionFor(999, 'basic') // 49.95 -> 50
    const r1 = reversalFor(c, 999, 0, 333, 0)
    const r2 = reversalFor(c, 999, 333, 333, r1)
    const r3 = reversalFor(c, 999, 666, 333, r1 + r2)
    expect([r1, r2, r3]).toEqual([17, 16, 17])
    expect(r1 + r2 + r3).toBe(c)
    // refunding more than was bought reverses no more than the commission
    expect(reversalFor(50, 1000, 0, 5000, 0)).toBe(50)
    expect(reversalFor(50, 1000, 1000, 100, 50)).toBe(0)
  })
})
