import Stripe from 'stripe'
import type { Config } from './config.ts'
import { AppError } from './errors.ts'

export type { Stripe }

/**
 * The Stripe client, or null when STRIPE_SECRET_KEY is not set. STRIPE_API_URL points the
 * SDK elsewhere (a fake on loopback in tests).
 */
export function makeStripe(config: Pick<Config, 'stripe'>): Stripe | null {
  const { secretKey, apiUrl } = config.stripe
  if (secretKey === undefined) return null
  if (apiUrl === undefined) return new Stripe(secretKey, { maxNetworkRetries: 2, timeout: 20_000 })
  const url = new URL(apiUrl)
  return new Stripe(secretKey, {
    host: url.hostname,
    port: url.port || (url.protocol === 'https:' ? 443 : 80),
    protocol: url.protocol === 'http:' ? 'http' : 'https',
    maxNetworkRetries: 2,
    timeout: 20_000,
  })
}

export function requireStripe(stripe: Stripe | null): Stripe {
  if (stripe === null) {
    throw new AppError('unavailable', 'Stripe is not configured on this service (set STRIPE_SECRET_KEY)')
  }
  return stripe
}
