import { type FraudConfig, parseConfig } from '@referral/core'

/**
 * The fraud rules' vocabulary and their small pure helpers. The rules themselves run in the
 * resolver (resolve.ts), in event order, so that a flag is decided once, at the event that
 * raises it, and is the same however often the batch is retried.
 *
 * A flag never drops anything: the event is stored and counted as usual, carries its flags
 * into ClickHouse (a filter on every growth chart), and a flagged commission is held until
 * an admin approves or rejects it.
 */

export const FRAUD_FLAGS = {
  same_ip: 'the referred user signed up from the IP address the referrer signed up from',
  same_visitor: "the referred user signed up from the referrer's own browser (visitor id)",
  same_email_domain: "the referred user's email is on the referrer's own (non-public) email domain",
  signup_burst_ip: 'more signups from one IP address than FRAUD_MAX_SIGNUPS_PER_IP in the window',
  signup_burst_visitor: 'more signups from one visitor than FRAUD_MAX_SIGNUPS_PER_VISITOR in the window',
  click_rate:
    'clicks from one visitor or IP faster than FRAUD_MAX_CLICKS_PER_MINUTE (a referral inherits it)',
  refund_rate: "the referrer's referred purchases are refunded above FRAUD_REFUND_RATE_PERCENT",
  disposable_email: 'the signup used a disposable email domain',
} as const
export type FraudFlag = keyof typeof FRAUD_FLAGS

export const DEFAULT_FRAUD: FraudConfig = parseConfig({}).fraud

/** Throwaway-inbox services (the best known; FRAUD_DISPOSABLE_DOMAINS adds more). */
const DISPOSABLE = new Set([
  '10minutemail.com',
  '20minutemail.com',
  'discard.email',
  'dispostable.com',
  'emailondeck.com',
  'fakeinbox.com',
  'getnada.com',
  'guerrillamail.com',
  'guerrillamail.net',
  'guerrillamailblock.com',
  'maildrop.cc',
  'mailinator.com',
  'mailnesia.com',
  'mintemail.com',
  'mohmal.com',
  'moakt.com',
  'sharklasers.com',
  'spamgourmet.com',
  'temp-mail.org',
  'tempmail.com',
  'tempmail.dev',
  'tempmailo.com',
  'throwawaymail.com',
  'trashmail.com',
  'trashmail.de',
  'yopmail.com',
  'yopmail.fr',
])

/** Mailbox providers anyone can use: a shared domain there says nothing about a person. */
const PUBLIC_MAIL = new Set([
  'aol.com',
  'gmail.com',
  'googlemail.com',
  'gmx.com',
  'gmx.de',
  'hotmail.com',
  'icloud.com',
  'live.com',
  'mail.com',
  'mail.ru',
  'me.com',
  'msn.com',
  'outlook.com',
  'proton.me',
  'protonmail.com',
  'qq.com',
  'web.de',
  'yahoo.com',
  'yandex.ru',
  'zoho.com',
])

export function emailDomain(email: string): string {
  return email.slice(email.lastIndexOf('@') + 1).toLowerCase()
}

/** The domain or one of its parents is a disposable-inbox service. */
export function isDisposable(domain: string, extra: readonly string[]): boolean {
  const parts = domain.split('.')
  for (let i = 0; i < parts.length - 1; i++) {
    const d = parts.slice(i).join('.')
    if (DISPOSABLE.has(d) || extra.includes(d)) return true
  }
  return false
}

export function isPublicMailDomain(domain: string): boolean {
  return PUBLIC_MAIL.has(domain)
}

/**
 * A sliding window of event times, oldest first, keeping at most `keep + 1` of them: enough
 * to tell whether more than `keep` events fell within `windowMs` up to `ts`. Returns the new
 * window and how many of its times, this one included, are within `windowMs` up to `ts`.
 */
export function slide(
  times: readonly number[],
  ts: number,
  windowMs: number,
  keep: number,
): { times: number[]; count: number } {
  const all = [...times, ts].sort((a, b) => a - b)
  const count = all.filter((t) => t > ts - windowMs && t <= ts).length
  const newest = all[all.length - 1] ?? ts
  return { times: all.filter((t) => t > newest - windowMs).slice(-(keep + 1)), count }
}
