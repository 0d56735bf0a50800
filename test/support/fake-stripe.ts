import { createServer, type IncomingMessage, type Server } from 'node:http'

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
