import { describe, expect, it } from 'vitest'
import { CODE_ALPHABET, makeReferralCode, normalizeCode, referralLink } from '../src/codes.ts'
import { parseConfig } from '../src/config.ts'
import { eventInput, settleEvent } from '../src/events.ts'
import { idTime, newId } from '../src/ids.ts'

describe('referral codes', () => {
  it('are 8 characters of Crockford base32 without I, L, O, U, and differ', () => {
    const codes = new Set(Array.from({ length: 2000 }, makeReferralCode))
    expect(codes.size).toBe(2000)
    for (const c of codes) expect(c).toMatch(/^[0-9A-HJKMNP-TV-Z]{8}$/)
    expect(CODE_ALPHABET).not.toMatch(/[ILOU]/)
  })

  it('match case-insensitively and refuse malformed ones', () => {
    expect(normalizeCode('ab12cd34')).toBe('AB12CD34')
    expect(normalizeCode('AB12CD3')).toBeUndefined()
    expect(normalizeCode('AB12CD3I')).toBeUndefined()
    expect(normalizeCode('../../x')).toBeUndefined()
  })

  it('build the link on the landing URL', () => {
    expect(referralLink('https://api.market', 'AB12CD34')).toBe('https://api.market/?ref=AB12CD34')
  })
})

describe('event schemas', () => {
  it('accept ISO-8601 and epoch milliseconds and settle ids and times', () => {
    const iso = eventInput.parse({ type: 'signup', user_id: 'u', ts: '2026-01-02T03:04:05.678Z' })
    const ms = eventInput.parse({ type: 'signup', user_id: 'u', ts: Date.UTC(2026, 0, 2, 3, 4, 5, 678) })
    expect(iso.ts).toBe(ms.ts)
    const settled = settleEvent(eventInput.parse({ type: 'click', code: 'ab12cd34' }), 1000, () => 'gen')
    expect(settled).toMatchObject({ id: 'gen', ts: 1000, received_at: 1000, code: 'AB12CD34' })
  })

  it('require caller ids on purchases and refunds', () => {
    expect(eventInput.safeParse({ type: 'purchase', user_id: 'u', amount_cents: 1 }).success).toBe(false)
    expect(eventInput.safeParse({ type: 'refund', purchase_id: 'p', amount_cents: 1 }).success).toBe(false)
  })
})

describe('config', () => {
  it('has the contract defaults', () => {
    const c = parseConfig({})
    expect(c).toMatchObject({ port: 3000, dataDir: './data', attributionWindowDays: 30 })
    expect(c.clickhouse.url).toBeUndefined()
    expect(c.redis.url).toBeUndefined()
    expect(c.landingUrl).toBe('http://localhost:3000/landing')
  })

  it('says what is wrong with a bad environment', () => {
    expect(() => parseConfig({ PORT: 'eighty', REDIS_URL: 'not a url' })).toThrow(/PORT[\s\S]*REDIS_URL/)
  })
})

describe('generated ids', () => {
  it('carry the time they were made at', () => {
    const at = Date.UTC(2026, 11, 1, 12, 34, 56, 789)
    expect(idTime(newId(at))).toBe(at)
    expect(idTime('not-an-id!')).toBeNaN()
  })
})
