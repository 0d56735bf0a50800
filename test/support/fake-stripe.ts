import { createServer, type IncomingMessage, type Server } from 'node:http'
import { makeStripe, type Stripe } from '@referral/core'
import { type Http, tokenFor } from './client.ts'

/**
 * A stateful stand-in for the parts of Stripe's API the service calls, on loopback. It keeps
 * what it created and honours Idempotency-Key like Stripe: the same key returns the first
 * answer and creates nothing new.
 */
export interface FakeStripe {
  url: string
  accounts: Map<string, { id: string; metadata: Record<string, string>; payouts_enabled: boolean }>
  transfers: Array<{
    id: string
    amount: number
    currency: string
    destination: string
    metadata: Record<string, string>
  }>
  /** requests answered, by method and path */
  calls: string[]
  /** the next N transfer calls answer this error */
  failTransfers(n: number, kind: 'server' | 'invalid'): void
  close(): Promise<void>
}

function parseForm(body: string): Record<string, unknown> {
  const out: Record<string, unknown> = {}
  for (const [k, v] of new URLSearchParams(body)) {
    const m = k.match(/^([^[]+)\[([^\]]+)\]$/)
    if (m?.[1] !== undefined && m[2] !== undefined) {
      const inner = (out[m[1]] as Record<string, string> | undefined) ?? {}
      inner[m[2]] = v
      out[m[1]] = inner
    } else out[k] = v
  }
  return out
}

async function readAll(req: IncomingMessage): Promise<string> {
  const chunks: Buffer[] = []
  for await (const c of req) chunks.push(c as Buffer)
  return Buffer.concat(chunks).toString()
}

export async function startFakeStripe(): Promise<FakeStripe> {
  const accounts: FakeStripe['accounts'] = new Map()
  const transfers: FakeStripe['transfers'] = []
  const calls: string[] = []
  const idempotent = new Map<string, { status: number; body: unknown }>()
  let seq = 0
  let failing = 0
  let failKind: 'server' | 'invalid' = 'server'

  const handle = (
    method: string,
    path: string,
    form: Record<string, unknown>,
  ): { status: number; body: unknown } => {
    const metadata = (form.metadata as Record<string, string> | undefined) ?? {}
    if (method === 'POST' && path === '/v1/accounts') {
      const acct = { id: `acct_fake${++seq}`, metadata, payouts_enabled: false }
      accounts.set(acct.id, acct)
      return { status: 200, body: { object: 'account', type: form.type ?? 'express', ...acct } }
    }
    const acctMatch = path.match(/^\/v1\/accounts\/(acct_\w+)$/)
    if (method === 'GET' && acctMatch?.[1] !== undefined) {
      const acct = accounts.get(acctMatch[1])
      return acct ? { status: 200, body: { object: 'account', ...acct } } : notFound('account')
    }
    if (method === 'POST' && path === '/v1/account_links') {
      const account = String(form.account)
      if (!accounts.has(account)) return notFound('account')
      return {
        status: 200,
        body: { object: 'account_link', url: `https://connect.stripe.test/setup/${account}`, expires_at: 0 },
      }
    }
    if (method === 'POST' && path === '/v1/transfers') {
      if (failing > 0) {
        failing--
        return failKind === 'server'
          ? { status: 500, body: { error: { type: 'api_error', message: 'fake outage' } } }
          : {
              status: 400,
              body: {
                error: { type: 'invalid_request_error', message: 'destination cannot receive transfers' },
              },
            }
      }
      const t = {
        id: `tr_fake${++seq}`,
        amount: Number(form.amount),
        currency: String(form.currency),
        destination: String(form.destination),
        metadata,
      }
      transfers.push(t)
      return { status: 200, body: { object: 'transfer', ...t } }
    }
    return notFound(path)
  }

  const server: Server = createServer(async (req, res) => {
    const body = await readAll(req)
    const method = req.method ?? 'GET'
    const path = (req.url ?? '/').split('?')[0] ?? '/'
    calls.push(`${method} ${path}`)
    const key = req.headers['idempotency-key']
    const idemKey = typeof key === 'string' ? `${method} ${path} ${key}` : undefined
    let answer = idemKey === undefined ? undefined : idempotent.get(idemKey)
    if (answer === undefined) {
      answer = handle(method, path, parseForm(body))
      // Stripe keeps the answer of a key unless the request failed on its side (5xx)
      if (idemKey !== undefined && answer.status < 500) idempotent.set(idemKey, answer)
    }
    res.writeHead(answer.status, { 'content-type': 'application/json', 'request-id': `req_${seq}` })
    res.end(JSON.stringify(answer.body))
  })
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', () => r()))
  const addr = server.address()
  const port = typeof addr === 'object' && addr !== null ? addr.port : 0
  return {
    url: `http://127.0.0.1:${port}`,
    accounts,
    transfers,
    calls,
    failTransfers: (n, kind) => {
      failing = n
      failKind = kind
    },
    close: () => new Promise<void>((r) => server.close(() => r())),
  }
}

function notFound(what: string) {
  return { status: 404, body: { error: { type: 'invalid_request_error', message: `No such ${what}` } } }
}

/** The fake Stripe, the service's settings that point at it, and signed webhook deliveries. */
export interface StripeHarness {
  fake: FakeStripe
  /** the official SDK pointed at the fake, as the service makes it */
  client: Stripe
  /** STRIPE_SECRET_KEY, STRIPE_WEBHOOK_SECRET and STRIPE_API_URL for the service */
  env: Record<string, string>
  /** a Stripe event signed as Stripe signs it; ids count up and `created` increases */
  event(
    type: string,
    object: Record<string, unknown>,
    id?: string,
  ): { id: string; payload: string; header: string }
  /** POST /v1/webhooks/stripe with an event */
  deliver(api: Http, e: { payload: string; header: string }): Promise<Response>
  close(): Promise<void>
}

export async function startStripeHarness(webhookSecret: string): Promise<StripeHarness> {
  const fake = await startFakeStripe()
  const env = {
    STRIPE_SECRET_KEY: 'sk_test_fake',
    STRIPE_WEBHOOK_SECRET: webhookSecret,
    STRIPE_API_URL: fake.url,
  }
  const stripe = makeStripe({ stripe: { secretKey: env.STRIPE_SECRET_KEY, webhookSecret, apiUrl: fake.url } })
  if (stripe === null) throw new Error('no stripe client')
  let seq = 0
  return {
    fake,
    client: stripe,
    env,
    event(type, object, id = `evt_${++seq}`) {
      const payload = JSON.stringify({
        id,
        object: 'event',
        type,
        created: Math.floor(Date.now() / 1000) + ++seq,
        data: { object },
      })
      return {
        id,
        payload,
        header: stripe.webhooks.generateTestHeaderString({ payload, secret: webhookSecret }),
      }
    },
    deliver: (api, e) =>
      api.post('/v1/webhooks/stripe', e.payload, { 'stripe-signature': e.header, authorization: '' }),
    close: () => fake.close(),
  }
}

/** Makes `user` a Partner whose Stripe account takes payouts; returns the account's id. */
export async function enablePartner(api: Http, stripe: StripeHarness, user: string): Promise<string> {
  const res = await api.post('/v1/me/partner', {}, { authorization: `Bearer ${await tokenFor(user)}` })
  if (res.status !== 200) throw new Error(`POST /v1/me/partner for ${user}: ${res.status}`)
  const acct = [...stripe.fake.accounts.values()].find((a) => a.metadata.user_id === user)
  if (acct === undefined) throw new Error(`no Stripe account for ${user}`)
  const updated = await stripe.deliver(
    api,
    stripe.event('account.updated', { id: acct.id, payouts_enabled: true, metadata: { user_id: user } }),
  )
  if (updated.status !== 200) throw new Error(`account.updated for ${user}: ${updated.status}`)
  return acct.id
}
