import { AppError, opaqueId, spendEventId } from '@referral/core'
import { readWallet, spendWallet, type Wallet } from '@referral/workers'
import { Hono } from 'hono'
import { z } from 'zod'
import type { ApiDeps } from '../context.ts'
import { ingestKeyAuth } from '../middleware/auth.ts'
import { readJson } from '../middleware/json-body.ts'
import { iso } from '../query.ts'
import { statsChanged } from '../stats-cache.ts'

export const spendInput = z.object({
  id: opaqueId,
  amount_cents: z.number().int('whole cents').positive('greater than zero').max(100_000_000_00, 'too large'),
})

/** A wallet as the contract shows it (times as ISO-8601). */
export function walletBody(w: Wallet) {
  return {
    balance_cents: w.balance_cents,
    credits: w.credits.map((cr) => ({
      id: cr.id,
      source: cr.source,
      amount_cents: cr.amount_cents,
      remaining_cents: cr.remaining_cents,
      granted_at: iso(cr.granted_at),
      expires_at: iso(cr.expires_at),
    })),
  }
}

/** The marketplace's view of a user's wallet credit: read it, spend from it. */
export function walletRoutes(deps: ApiDeps): Hono {
  const { config, redis, keys, events } = deps
  const app = new Hono()
  app.use('/v1/users/*', ingestKeyAuth(config.ingestApiKey))

  const userParam = (raw: string) => {
    const r = opaqueId.safeParse(raw)
    if (!r.success) {
      throw new AppError('validation_failed', 'invalid user_id', [
        { path: 'user_id', message: r.error.issues[0]?.message ?? 'invalid' },
      ])
    }
    return r.data
  }

  app.get('/v1/users/:user_id/wallet', async (c) => {
    return c.json(walletBody(await readWallet(redis, keys, userParam(c.req.param('user_id')), Date.now())))
  })

  app.post('/v1/users/:user_id/wallet/spend', async (c) => {
    const userId = userParam(c.req.param('user_id'))
    const body = spendInput.safeParse(await readJson(c))
    if (!body.success) {
      throw new AppError(
        'validation_failed',
        'invalid spend',
        body.error.issues.map((i) => ({ path: i.path.join('.'), message: i.message })),
      )
    }
    const now = Date.now()
    const result = await spendWallet(redis, keys, userId, body.data.id, body.data.amount_cents, {
      now,
      recordTtlSeconds: config.dedupWindowDays * 86_400,
    })
    if (!result.ok) {
      throw new AppError('conflict', `the balance (${result.balanceCents} cents) is lower than the spend`, [
        { path: 'amount_cents', message: `at most ${result.balanceCents}` },
      ])
    }
    const r = result.record
    // the wallet is debited: told before anything else can fail
    await statsChanged(deps, [userId])
    // the ledger entry reaches ClickHouse through the pipeline, once per spend id; a retry
    // of this request finds the recorded spend and queues the same event again (a no-op)
    await events.submit([
      {
        type: 'spend',
        id: spendEventId(userId, r.id),
        user_id: userId,
        spend_id: r.id,
        amount_cents: r.amount_cents,
        allocations: r.allocations,
        ts: r.at,
        received_at: now,
      },
    ])
    return c.json({
      id: r.id,
      amount_cents: r.amount_cents,
      balance_cents: r.balance_cents,
      allocations: r.allocations,
    })
  })
  return app
}
