import { describe, expect, it } from 'vitest'
import { openApiDocument } from '../src/openapi.ts'

describe('OpenAPI document', () => {
  const doc = openApiDocument('http://localhost:3000') as {
    paths: Record<
      string,
      Record<string, { security: unknown[]; requestBody?: { content: Record<string, { schema: unknown }> } }>
    >
  }

  it('lists every endpoint of the contract', () => {
    const ops = Object.entries(doc.paths).flatMap(([path, methods]) =>
      Object.keys(methods).map((m) => `${m.toUpperCase()} ${path}`),
    )
    for (const op of [
      'POST /v1/events',
      'GET /r/{code}',
      'POST /v1/track/click',
      'GET /v1/me/referral',
      'GET /v1/me/stats',
      'GET /v1/me/earnings',
      'GET /v1/me/referrals',
      'GET /v1/me/stream',
      'POST /v1/me/partner',
      'GET /v1/me/payouts',
      'POST /v1/me/payouts',
      'GET /v1/users/{user_id}/wallet',
      'POST /v1/users/{user_id}/wallet/spend',
      'POST /v1/webhooks/stripe',
      'GET /v1/admin/overview',
      'GET /v1/admin/funnel',
      'GET /v1/admin/referrers',
      'GET /v1/admin/breakdown',
      'GET /v1/admin/timeseries',
      'GET /v1/admin/export.csv',
      'GET /healthz',
      'GET /readyz',
    ]) {
      expect(ops).toContain(op)
    }
  })

  it('describes request bodies from the zod schemas the routes validate with', () => {
    const body = JSON.stringify(
      doc.paths['/v1/events']?.post?.requestBody?.content['application/json']?.schema,
    )
    for (const type of ['click', 'signup', 'purchase', 'refund']) expect(body).toContain(`"const":"${type}"`)
    expect(body).toContain('"amount_cents"')
    expect(body).toContain('"maxItems":1000')
    const spend = JSON.stringify(
      doc.paths['/v1/users/{user_id}/wallet/spend']?.post?.requestBody?.content['application/json']?.schema,
    )
    expect(spend).toContain('"required":["id","amount_cents"]')
  })

  it('marks who may call what', () => {
    expect(doc.paths['/v1/admin/overview']?.get?.security).toEqual([{ referrerJwt: [] }, { session: [] }])
    expect(doc.paths['/v1/events']?.post?.security).toEqual([{ ingestKey: [] }])
    expect(doc.paths['/healthz']?.get?.security).toEqual([])
  })
})
