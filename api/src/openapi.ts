import { eventInput, MAX_EVENTS_PER_REQUEST } from '@referral/core'
import { z } from 'zod'
import { adminQuery } from './routes/admin.ts'
import { decisionBody } from './routes/admin-fraud.ts'
import { earningsQuery, referralsQuery } from './routes/me-analytics.ts'
import { spendInput } from './routes/wallet.ts'

/**
 * The OpenAPI 3.1 document, built from the same zod schemas the routes validate with, so
 * the reference cannot drift from what the service accepts.
 */

type Auth = 'ingest' | 'jwt' | 'admin' | 'public' | 'stripe'

interface Operation {
  method: 'get' | 'post'
  path: string
  summary: string
  auth: Auth
  body?: z.ZodType
  query?: z.ZodObject
  responses: Record<string, string>
}

type JsonSchema = Record<string, unknown>
const schema = (s: z.ZodType): JsonSchema =>
  z.toJSONSchema(s, { io: 'input', unrepresentable: 'any' }) as JsonSchema

const batch = z.object({ events: z.array(eventInput).min(1).max(MAX_EVENTS_PER_REQUEST) })

const OPERATIONS: Operation[] = [
  {
    method: 'post',
    path: '/v1/events',
    summary: `Ingest one event, or {"events": [...]} with at most ${MAX_EVENTS_PER_REQUEST}; 202 once all are durably queued`,
    auth: 'ingest',
    body: z.union([eventInput, batch]),
    responses: {
      '202': 'accepted: {accepted, ids}',
      '400': 'one detail per invalid event; nothing queued',
      '401': 'no or bad ingest key',
      '413': 'over 1 MiB or over 1000 events',
      '415': 'not application/json',
      '503': 'the queue cannot take them (nothing accepted) or is too deep; see Retry-After',
    },
  },
  {
    method: 'get',
    path: '/r/{code}',
    summary: 'Short link: 302 to LANDING_URL?ref=CODE, cookie, click counted',
    auth: 'public',
    responses: { '302': 'redirect' },
  },
  {
    method: 'post',
    path: '/v1/track/click',
    summary: "The landing page's click beacon (CORS, rate-limited per client)",
    auth: 'public',
    body: z.object({
      code: z.string(),
      visitor_id: z.string().optional(),
      url: z.string().optional(),
      referrer: z.string().optional(),
    }),
    responses: { '202': 'accepted', '400': 'invalid', '429': 'too many clicks from this client' },
  },
  {
    method: 'get',
    path: '/v1/me/referral',
    summary: 'Code, link, track, share links (the code is created on first need)',
    auth: 'jwt',
    responses: { '200': 'ok' },
  },
  {
    method: 'get',
    path: '/v1/me/stats',
    summary:
      "The six metrics, track, wallet and cash balances, as_of, and reports_as_of (when the reports last took in this referrer's events)",
    auth: 'jwt',
    responses: { '200': 'ok' },
  },
  {
    method: 'get',
    path: '/v1/me/earnings',
    summary: 'Earnings, conversions, signups, clicks per bucket; every bucket present',
    auth: 'jwt',
    query: earningsQuery,
    responses: { '200': 'ok', '400': 'bad range, zone or interval; more than 2000 points' },
  },
  {
    method: 'get',
    path: '/v1/me/referrals',
    summary: 'Referred users, newest first, pending or converted, cursor pages',
    auth: 'jwt',
    query: referralsQuery,
    responses: { '200': 'ok', '400': 'bad cursor' },
  },
  {
    method: 'get',
    path: '/v1/me/insights',
    summary: 'Payout forecast and what Partner would have paid',
    auth: 'jwt',
    responses: { '200': 'ok' },
  },
  {
    method: 'get',
    path: '/v1/me/stream',
    summary: 'Server-Sent Events: `stats` at connect and after every change; `ping` heartbeats',
    auth: 'jwt',
    responses: { '200': 'text/event-stream' },
  },
  {
    method: 'post',
    path: '/v1/me/partner',
    summary: 'Upgrade to Partner: {track, onboarding_url}',
    auth: 'jwt',
    responses: { '200': 'ok', '503': 'Stripe not configured or unavailable' },
  },
  {
    method: 'get',
    path: '/v1/me/payouts',
    summary: 'Payouts with status',
    auth: 'jwt',
    responses: { '200': 'ok' },
  },
  {
    method: 'post',
    path: '/v1/me/payouts',
    summary: 'Pay out the whole cash balance',
    auth: 'jwt',
    responses: { '201': 'the payout, pending', '409': 'below 2500 cents or no payout-ready Stripe account' },
  },
  {
    method: 'get',
    path: '/v1/users/{user_id}/wallet',
    summary: 'Balance and credits with expiry',
    auth: 'ingest',
    responses: { '200': 'ok' },
  },
  {
    method: 'post',
    path: '/v1/users/{user_id}/wallet/spend',
    summary: 'Spend credit, soonest-expiring first; idempotent by id',
    auth: 'ingest',
    body: spendInput,
    responses: { '200': 'the new balance and the credits drawn on', '409': 'balance too low' },
  },
  {
    method: 'post',
    path: '/v1/webhooks/stripe',
    summary: 'invoice.paid, checkout.session.completed, charge.refunded, account.updated',
    auth: 'stripe',
    responses: { '200': 'received', '400': 'bad signature; nothing changes' },
  },
  ...(['overview', 'timeseries', 'funnel', 'referrers', 'breakdown', 'credits', 'export.csv'] as const).map(
    (name): Operation => ({
      method: 'get',
      path: `/v1/admin/${name}`,
      summary: `Growth team: ${name}`,
      auth: 'admin',
      query: adminQuery,
      responses: {
        '200': name === 'export.csv' ? 'text/csv' : 'ok',
        '400': 'bad parameters',
        '403': 'not an admin token',
      },
    }),
  ),
  {
    method: 'get',
    path: '/v1/admin/stream',
    summary: 'Server-Sent Events: `events`, each batch of events as the workers apply it',
    auth: 'admin',
    responses: { '200': 'text/event-stream', '403': 'not an admin token' },
  },
  {
    method: 'get',
    path: '/v1/admin/holds',
    summary: 'Commissions held by the fraud rules, awaiting a decision (oldest first)',
    auth: 'admin',
    responses: { '200': '{holds, held_cents}', '403': 'not an admin token' },
  },
  ...(['approve', 'reject'] as const).map(
    (decision): Operation => ({
      method: 'post',
      path: `/v1/admin/holds/{purchase_id}/${decision}`,
      summary:
        decision === 'approve'
          ? 'Pay a held commission (what refunds left of it) into the wallet or cash; a ledger entry'
          : 'Write a held commission off: the earnings lose it; a ledger entry',
      auth: 'admin',
      body: decisionBody,
      responses: {
        '200': 'applied: {purchase_id, decision, status}',
        '202': 'queued, not yet applied',
        '400': 'bad body',
        '404': 'no held commission for this purchase',
        '409': 'already decided',
      },
    }),
  ),
  {
    method: 'get',
    path: '/v1/admin/fraud',
    summary: 'What each fraud rule flagged, the decisions taken, referrers past the refund-rate alert',
    auth: 'admin',
    responses: { '200': 'ok', '403': 'not an admin token' },
  },
  {
    method: 'get',
    path: '/v1/admin/webhooks',
    summary: 'Outgoing webhook endpoints (WEBHOOK_URL) and their delivery queue',
    auth: 'admin',
    responses: { '200': '{endpoints, signature_header, queue}', '403': 'not an admin token' },
  },
  {
    method: 'get',
    path: '/v1/admin/webhooks/deliveries',
    summary: 'The delivery log, newest attempt first: status, attempts, last HTTP status and error',
    auth: 'admin',
    responses: { '200': '{deliveries}', '403': 'not an admin token' },
  },
  {
    method: 'post',
    path: '/v1/admin/webhooks/deliveries/{id}/replay',
    summary: 'Send a delivery again now (same event id and body, fresh signature)',
    auth: 'admin',
    responses: { '202': 'queued', '404': 'no such delivery in the log' },
  },
  { method: 'get', path: '/healthz', summary: 'Process up', auth: 'public', responses: { '200': 'ok' } },
  {
    method: 'get',
    path: '/readyz',
    summary: 'Redis and ClickHouse reachable',
    auth: 'public',
    responses: { '200': 'ready', '503': 'not ready' },
  },
]

const SECURITY: Record<Auth, Array<Record<string, string[]>>> = {
  ingest: [{ ingestKey: [] }],
  jwt: [{ referrerJwt: [] }, { session: [] }],
  admin: [{ referrerJwt: [] }, { session: [] }],
  public: [],
  stripe: [{ stripeSignature: [] }],
}

export function openApiDocument(serverUrl: string): Record<string, unknown> {
  const paths: Record<string, Record<string, unknown>> = {}
  for (const op of OPERATIONS) {
    const params: Array<{ name: string; in: string; required: boolean; schema: JsonSchema }> = Object.entries(
      op.query?.shape ?? {},
    ).map(([name, s]) => ({
      name,
      in: 'query',
      required: false,
      schema: schema(s as z.ZodType),
    }))
    for (const m of op.path.matchAll(/\{(\w+)\}/g))
      params.push({ name: m[1] ?? '', in: 'path', required: true, schema: { type: 'string' } })
    paths[op.path] = {
      ...(paths[op.path] ?? {}),
      [op.method]: {
        summary: op.summary,
        security: SECURITY[op.auth],
        ...(params.length > 0 ? { parameters: params } : {}),
        ...(op.body
          ? { requestBody: { required: true, content: { 'application/json': { schema: schema(op.body) } } } }
          : {}),
        responses: Object.fromEntries(
          Object.entries(op.responses).map(([code, description]) => [
            code,
            code >= '400'
              ? {
                  description,
                  content: { 'application/json': { schema: { $ref: '#/components/schemas/Error' } } },
                }
              : { description },
          ]),
        ),
      },
    }
  }
  return {
    openapi: '3.1.0',
    info: {
      title: 'Referral analytics',
      version: '1',
      description: 'The product contract: shared/CONTRACT.md. Money is integer cents (usd).',
    },
    servers: [{ url: serverUrl }],
    paths,
    components: {
      securitySchemes: {
        ingestKey: { type: 'http', scheme: 'bearer', description: 'INGEST_API_KEY' },
        referrerJwt: {
          type: 'http',
          scheme: 'bearer',
          bearerFormat: 'JWT',
          description: 'HS256 with AUTH_JWT_SECRET; sub, exp, role',
        },
        session: {
          type: 'apiKey',
          in: 'cookie',
          name: 'ra_session',
          description: 'set by GET /session?token=...',
        },
        stripeSignature: { type: 'apiKey', in: 'header', name: 'Stripe-Signature' },
      },
      schemas: {
        Error: {
          type: 'object',
          properties: {
            error: {
              type: 'object',
              properties: {
                code: { type: 'string' },
                message: { type: 'string' },
                details: {
                  type: 'array',
                  items: {
                    type: 'object',
                    properties: {
                      index: { type: 'integer' },
                      path: { type: 'string' },
                      message: { type: 'string' },
                    },
                  },
                },
              },
            },
          },
        },
      },
    },
  }
}

/** A readable reference page, drawn from /openapi.json by a few lines of script (no CDN). */
export const DOCS_HTML = `<!doctype html>
<html lang="en"><head><meta charset="utf-8"><meta name="viewport" content="width=device-width, initial-scale=1">
<title>Referral analytics API</title>
<style>
body{font:15px/1.5 system-ui,sans-serif;max-width:960px;margin:2rem auto;padding:0 1rem;color:#1f2933}
h2{margin-top:2rem;border-bottom:1px solid #d9e2ec}
.op{margin:1rem 0;padding:.75rem 1rem;border:1px solid #d9e2ec;border-radius:8px}
.m{display:inline-block;min-width:3.5rem;font-weight:700;text-transform:uppercase}
.get{color:#0b7285}.post{color:#5f3dc4}code{background:#f0f4f8;padding:0 .25rem;border-radius:4px}
details pre{background:#f8fafc;padding:.5rem;overflow:auto;font-size:12px}
</style></head><body><h1>Referral analytics API</h1>
<p>The OpenAPI document is at <a href="/openapi.json">/openapi.json</a>. Errors are <code>{"error": {"code", "message", "details"}}</code>.</p>
<div id="ops">Loading…</div>
<script>
fetch('/openapi.json').then(function (r) { return r.json() }).then(function (doc) {
  var root = document.getElementById('ops'); root.textContent = ''
  Object.keys(doc.paths).forEach(function (path) {
    Object.keys(doc.paths[path]).forEach(function (method) {
      var op = doc.paths[path][method]
      var el = document.createElement('div'); el.className = 'op'
      var head = document.createElement('div')
      var m = document.createElement('span'); m.className = 'm ' + method; m.textContent = method
      var p = document.createElement('code'); p.textContent = path
      head.append(m, ' ', p); el.append(head)
      var s = document.createElement('p'); s.textContent = op.summary; el.append(s)
      var codes = document.createElement('p'); codes.textContent = 'Responses: ' + Object.keys(op.responses).map(function (c) { return c + ' ' + op.responses[c].description }).join('; ')
      el.append(codes)
      if (op.parameters || op.requestBody) {
        var d = document.createElement('details'); var sum = document.createElement('summary'); sum.textContent = 'Schema'
        var pre = document.createElement('pre'); pre.textContent = JSON.stringify({ parameters: op.parameters, body: op.requestBody && op.requestBody.content['application/json'].schema }, null, 2)
        d.append(sum, pre); el.append(d)
      }
      root.append(el)
    })
  })
})
</script></body></html>`
