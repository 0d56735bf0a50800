import { AppError, type QueuedEvent, requireStripe, type Stripe } from '@referral/core'
import { Hono } from 'hono'
import type { ApiDeps } from '../context.ts'
import { readBody } from '../middleware/json-body.ts'

/**
 * POST /v1/webhooks/stripe. The signature is checked on the raw body; then
 * - invoice.paid, checkout.session.completed -> a purchase by metadata.user_id,
 * - charge.refunded -> a refund of that purchase, stated as the charge's refunded total,
 * - account.updated -> whether the connected account can receive payouts.
 * Purchases and refunds enter the pipeline with ids derived from Stripe's objects, so each
 * has effect once however often and in whatever order Stripe delivers them. A purchase and
 * its refunds are linked by the payment intent (else the invoice or session id).
 */

// KEYS[1] user; ARGV[1] event created (s), ARGV[2] payouts_enabled (0|1). The newest state wins.
const ACCOUNT_STATE = `
local seen = tonumber(redis.call('HGET', KEYS[1], 'account_updated_at') or '-1')
if tonumber(ARGV[1]) < seen then return 0 end
redis.call('HSET', KEYS[1], 'account_updated_at', ARGV[1], 'payouts_enabled', ARGV[2])
return 1
`

type Obj = Record<string, unknown>
const str = (o: Obj, k: string): string | undefined =>
  typeof o[k] === 'string' ? (o[k] as string) : undefined
const num = (o: Obj, k: string): number | undefined =>
  typeof o[k] === 'number' ? (o[k] as number) : undefined
const obj = (o: Obj, k: string): Obj => (typeof o[k] === 'object' && o[k] !== null ? (o[k] as Obj) : {})
/** an expandable field: an id, or the object holding it */
const ref = (o: Obj, k: string): string | undefined => str(o, k) ?? str(obj(o, k), 'id')

export const purchaseIdOf = (o: Obj): string | undefined => {
  const id = ref(o, 'payment_intent') ?? ref(o, 'invoice') ?? str(o, 'id')
  return id === undefined ? undefined : `stripe:${id}`
}

export function stripeWebhookRoutes(deps: ApiDeps): Hono {
  const { config, redis, keys, events, log } = deps
  const app = new Hono()

  app.post('/v1/webhooks/stripe', async (c) => {
    const stripe = requireStripe(deps.stripe)
    const secret = config.stripe.webhookSecret
    if (secret === undefined) throw new AppError('unavailable', 'STRIPE_WEBHOOK_SECRET is not set')
    const raw = await readBody(c)
    let event: Stripe.Event
    try {
      event = stripe.webhooks.constructEvent(raw, c.req.header('stripe-signature') ?? '', secret)
    } catch (e) {
      throw new AppError('bad_request', `the Stripe signature does not match: ${(e as Error).message}`)
    }
    const o = event.data.object as unknown as Obj
    const now = Date.now()
    const ts = (event.created ?? Math.floor(now / 1000)) * 1000
    const queued: QueuedEvent[] = []
    let ignored: string | undefined

    if (event.type === 'invoice.paid' || event.type === 'checkout.session.completed') {
      const userId = str(obj(o, 'metadata'), 'user_id')
      const amount = event.type === 'invoice.paid' ? num(o, 'amount_paid') : num(o, 'amount_total')
      const id = purchaseIdOf(o)
      if (event.type === 'checkout.session.completed' && str(o, 'payment_status') !== 'paid')
        ignored = 'not paid'
      else if (userId === undefined) ignored = 'no metadata.user_id'
      else if (str(o, 'currency') !== 'usd') ignored = `currency ${str(o, 'currency')}`
      else if (amount === undefined || amount <= 0 || id === undefined) ignored = 'no amount'
      else
        queued.push({
          type: 'purchase',
          id,
          user_id: userId,
          amount_cents: amount,
          currency: 'usd',
          ts,
          received_at: now,
        })
    } else if (event.type === 'charge.refunded') {
      const total = num(o, 'amount_refunded')
      const id = purchaseIdOf(o)
      if (total === undefined || id === undefined) ignored = 'no refunded amount'
      else
        queued.push({
          type: 'refund',
          id: `stripe:${event.id}`,
          purchase_id: id,
          amount_cents: total,
          refunded_total_cents: total,
          ts,
          received_at: now,
        })
    } else if (event.type === 'account.updated') {
      const account = str(o, 'id') ?? ''
      const owner = str(obj(o, 'metadata'), 'user_id') ?? (await redis.get(keys.stripeAccount(account)))
      if (owner === null || owner === undefined) ignored = 'unknown account'
      else {
        const enabled = o.payouts_enabled === true ? '1' : '0'
        await redis.eval(ACCOUNT_STATE, 1, keys.user(owner), event.created ?? 0, enabled)
      }
    } else ignored = 'event type not used'

    if (queued.length > 0) await events.submit(queued)
    if (ignored !== undefined)
      log.info({ stripeEvent: event.id, type: event.type, ignored }, 'stripe event ignored')
    return c.json({ received: true, ...(ignored === undefined ? {} : { ignored }) })
  })
  return app
}
