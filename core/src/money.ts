/** Money is integer cents. Rates are basis points (1% = 100 bps) so that no float touches money. */

export type Track = 'basic' | 'partner'

export const SIGNUP_BONUS_CENTS = 250
export const SIGNUP_BONUS_DAYS = 30
export const MIN_PAYOUT_CENTS = 2500
export const RATE_BPS: Record<Track, number> = { basic: 500, partner: 1000 }

/** round_half_up(amount * bps / 10000) for non-negative amounts, exact in integers. */
export function applyRate(amountCents: number, bps: number): number {
  assertCents(amountCents)
  if (amountCents < 0) throw new RangeError('amount must not be negative')
  return Math.floor((amountCents * bps + 5000) / 10000)
}

export function commissionFor(amountCents: number, track: Track): number {
  return applyRate(amountCents, RATE_BPS[track])
}

/**
 * The share of a commission reversed by a refund of `refundCents` out of `purchaseCents`,
 * given what earlier refunds already reversed. The sum of all reversals never exceeds the
 * commission, and a full refund reverses exactly the commission.
 */
export function reversalFor(
  commissionCents: number,
  purchaseCents: number,
  refundedBeforeCents: number,
  refundCents: number,
  reversedBeforeCents: number,
): number {
  const refundedAfter = Math.min(purchaseCents, refundedBeforeCents + refundCents)
  // reversal owed in total after this refund, rounded half up, minus what was already reversed
  const owed = Math.floor((commissionCents * refundedAfter * 2 + purchaseCents) / (2 * purchaseCents))
  return Math.max(0, Math.min(commissionCents, owed) - reversedBeforeCents)
}

export function assertCents(n: number): void {
  if (!Number.isSafeInteger(n)) throw new RangeError(`not an integer number of cents: ${n}`)
}
