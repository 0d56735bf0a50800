import { randomInt } from 'node:crypto'

/** Crockford base32 without I, L, O, U. */
export const CODE_ALPHABET = '0123456789ABCDEFGHJKMNPQRSTVWXYZ'
export const CODE_LENGTH = 8
const CODE_RE = /^[0-9A-HJKMNP-TV-Z]{8}$/

/** A new code from the OS's CSPRNG: one code says nothing about another. */
export function makeReferralCode(): string {
  let out = ''
  for (let i = 0; i < CODE_LENGTH; i++) out += CODE_ALPHABET[randomInt(CODE_ALPHABET.length)]
  return out
}

/** The canonical (upper-case) form of a code, or undefined when it is malformed. */
export function normalizeCode(input: string): string | undefined {
  const up = input.trim().toUpperCase()
  return CODE_RE.test(up) ? up : undefined
}

export function referralLink(landingUrl: string, code: string): string {
  const url = new URL(landingUrl)
  url.searchParams.set('ref', code)
  return url.toString()
}
