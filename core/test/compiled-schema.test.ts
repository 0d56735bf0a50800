import fc from 'fast-check'
import { describe, expect, it } from 'vitest'
import { eventInput, eventInputSchema } from '../src/events.ts'

/**
 * POST /v1/events validates with the compiled schema (zod's generated parser, falling back to
 * the runtime for what it refuses). Over generated events, valid and nearly valid, it must
 * answer exactly what the runtime parser answers: the same output, or the same issues.
 */
describe('the compiled event schema', () => {
  const text = (max: number) =>
    fc.oneof(
      fc.string({ maxLength: max }),
      fc.string({ maxLength: 8, unit: 'grapheme' }),
      fc.constantFrom('', ' ', '\u0000x', 'a\nb', 'é', 'x'.repeat(max), 'x'.repeat(max + 1)),
    )
  const code = fc.oneof(
    fc.constantFrom('AB12CD34', 'ab12cd34', ' AB12CD34 ', 'AB12CD3I', 'AB12CD3', 'zzzzzzzz'),
    fc.string({ maxLength: 10 }),
  )
  const ts = fc.oneof(
    fc.integer({ min: Date.UTC(1999, 0, 1), max: Date.now() + 2 * 86_400_000 }),
    fc.constantFrom('2026-01-02T03:04:05.678Z', '2026-13-40', 'yesterday', 1.5, -1, Number.MAX_SAFE_INTEGER),
  )
  const ip = fc.oneof(fc.ipV4(), fc.ipV6(), fc.constantFrom('999.1.1.1', '::g', '1.2.3'))
  const maybe = <T>(a: fc.Arbitrary<T>) => fc.option(a, { nil: undefined, freq: 2 })
  const wrong = fc.oneof(fc.constant(null), fc.integer(), fc.boolean(), fc.constant([]))
  const event = fc.oneof(
    fc.record(
      {
        type: fc.constant('click'),
        id: maybe(text(130)),
        code,
        visitor_id: maybe(text(130)),
        url: maybe(text(2050)),
        referrer: maybe(text(2050)),
        utm_source: maybe(text(258)),
        utm_medium: maybe(text(10)),
        utm_campaign: maybe(text(10)),
        ip: maybe(ip),
        user_agent: maybe(text(1030)),
        country: maybe(fc.constantFrom('fr', 'FR', 'F', 'FRA', '12')),
        ts: maybe(ts),
        extra: maybe(fc.string()),
      },
      { requiredKeys: ['type'] },
    ),
    fc.record(
      {
        type: fc.constant('signup'),
        id: maybe(text(10)),
        user_id: text(130),
        ref: maybe(code),
        visitor_id: maybe(text(10)),
        email: maybe(fc.oneof(fc.emailAddress(), fc.string())),
        ip: maybe(ip),
        ts: maybe(ts),
      },
      { requiredKeys: ['type'] },
    ),
    fc.record(
      {
        type: fc.constant('purchase'),
        id: text(10),
        user_id: text(10),
        amount_cents: fc.oneof(fc.integer({ min: -5, max: 20_000_000_000 }), fc.double()),
        currency: maybe(fc.constantFrom('usd', 'USD', 'eur', '')),
        plan: maybe(text(130)),
        ts: maybe(ts),
      },
      { requiredKeys: ['type'] },
    ),
    fc.record(
      {
        type: fc.constantFrom('refund', 'Refund', 'spend'),
        id: text(10),
        purchase_id: fc.oneof(text(10), wrong),
        amount_cents: fc.oneof(fc.integer({ min: -5, max: 100_000 }), wrong),
        ts: maybe(ts),
      },
      { requiredKeys: ['type'] },
    ),
    fc.oneof(wrong, fc.dictionary(fc.string(), fc.string())),
  )

  it('answers what the runtime parser answers', () => {
    let valid = 0
    fc.assert(
      fc.property(event, (e) => {
        const compiled = eventInput.safeParse(e)
        const runtime = eventInputSchema.safeParse(e)
        expect(compiled.success).toBe(runtime.success)
        if (runtime.success) {
          valid++
          expect(compiled.data).toEqual(runtime.data)
        } else expect(compiled.error?.issues).toEqual(runtime.error.issues)
      }),
      { numRuns: 3000 },
    )
    // the generators reach both answers
    expect(valid).toBeGreaterThan(100)
  })
})
