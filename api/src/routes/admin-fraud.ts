import { queryRows } from '@referral/clickhouse'
import { AppError, type DecisionEvent, opaqueId } from '@referral/core'
import { FRAUD_FLAGS } from '@referral/workers'
import { Hono } from 'hono'
import { z } from 'zod'
import type { ApiDeps } from '../context.ts'
import { readJson } from '../middleware/json-body.ts'
import { instant, iso, needClickHouse, parseQuery, rangeOf } from '../query.ts'

/**
 * Fraud review for the growth team: the commissions held because their referral or
 * referrer was flagged, the decision on each (approve pays it, reject writes it off; a
 * ledger entry either way), and what the rules flagged over a period.
 */

/** how long a decision request waits to answer with the applied outcome */
const DECISION_WAIT_MS = 5_000

export const decisionBody = z
  .object({ reason: z.string().max(500, 'at most 500 characters').optional() })
  .strict()
const rangeQuery = z.object({ from: instant.optional(), to: instant.optional() })

export interface HoldView {
  purchase_id: string
  referrer_id: string
  user_id: string
  track: string
  amount_cents: number
  commission_cents: number
  /** what is still held: the commission less what refunds reversed */
  held_cents: number
  flags: string[]
  status: string
  held_at: string | null
}

export function adminFraudRoutes(deps: ApiDeps): Hono {
  const { redis, keys } = deps
  const app = new Hono()

  const readHold = async (purchaseId: string, heldAt: number | null): Promise<HoldView | null> => {
    const h = await redis.hgetall(keys.purchase(purchaseId))
    if (h.user === undefined) return null
    const commission = Number(h.commission ?? 0)
    return {
      purchase_id: purchaseId,
      referrer_id: h.referrer ?? '',
      user_id: h.user,
      track: h.track ?? '',
      amount_cents: Number(h.amount ?? 0),
      commission_cents: commission,
      held_cents: h.hold === 'held' ? commission - Number(h.reversed ?? 0) : 0,
      flags: h.flags === undefined || h.flags === '' ? [] : h.flags.split(','),
      status: h.hold === undefined || h.hold === '' ? 'not_held' : h.hold,
      held_at: iso(heldAt),
    }
  }

  app.get('/v1/admin/holds', async (c) => {
    const ids = await redis.zrange(keys.pendingHolds(), 0, 499, 'WITHSCORES')
    const reads: Array<Promise<HoldView | null>> = []
    for (let i = 0; i + 1 < ids.length; i += 2) reads.push(readHold(ids[i] ?? '', Number(ids[i + 1])))
    // sent together: ioredis writes them in one batch, one round trip
    const holds = (await Promise.all(reads)).filter((h): h is HoldView => h !== null)
    return c.json({
      holds,
      held_cents: holds.reduce((a, h) => a + h.held_cents, 0),
    })
  })

  app.get('/v1/admin/holds/:purchase_id', async (c) => {
    const id = opaqueId.safeParse(c.req.param('purchase_id'))
    const hold = id.success
      ? await redis
          .zscore(keys.pendingHolds(), id.data)
          .then((score) => readHold(id.data, score === null ? null : Number(score)))
      : null
    if (hold === null || hold.status === 'not_held')
      throw new AppError('not_found', 'no held commission for this purchase')
    return c.json(hold)
  })

  app.post('/v1/admin/holds/:purchase_id/:decision{approve|reject}', async (c) => {
    const id = opaqueId.safeParse(c.req.param('purchase_id'))
    const decision = c.req.param('decision') === 'approve' ? 'approve' : 'reject'
    // a body is optional: no Content-Type and no content means no reason
    const hasBody =
      c.req.header('content-type') !== undefined || Number(c.req.header('content-length') ?? 0) > 0
    const body = decisionBody.safeParse(hasBody ? await readJson(c) : {})
    if (!body.success) {
      throw new AppError(
        'validation_failed',
        'invalid decision',
        body.error.issues.map((i) => ({ path: i.path.join('.'), message: i.message })),
      )
    }
    const before = id.success ? await readHold(id.data, null) : null
    if (before === null || before.status === 'not_held' || !id.success) {
      throw new AppError('not_found', 'no held commission for this purchase')
    }
    if (before.status !== 'held') {
      throw new AppError('conflict', `this commission was already ${before.status}`, [
        { path: 'purchase_id', message: before.status },
      ])
    }
    const now = Date.now()
    const event: DecisionEvent = {
      type: 'decision',
      id: id.data,
      purchase_id: id.data,
      decision,
      by: c.get('auth').userId,
      ts: now,
      received_at: now,
      ...(body.data.reason === undefined ? {} : { reason: body.data.reason }),
    }
    await deps.events.submit([event])
    // the worker applies it in order with the purchase's refunds; wait a moment for the outcome
    const deadline = Date.now() + DECISION_WAIT_MS
    while (Date.now() < deadline) {
      const status = await redis.hget(keys.purchase(id.data), 'hold')
      if (status !== 'held') return c.json({ purchase_id: id.data, decision, status }, 200)
      await new Promise((r) => setTimeout(r, 50))
    }
    return c.json({ purchase_id: id.data, decision, status: 'queued' }, 202)
  })

  /** What the rules flagged over a period, the decisions taken, and referrers past the refund-rate alert. */
  app.get('/v1/admin/fraud', async (c) => {
    const ch = needClickHouse(deps)
    const range = rangeOf(parseQuery(rangeQuery, c.req.query()))
    const { fraud } = deps.config
    const [flags, decisions, refunds, recent] = await Promise.all([
      queryRows<{ flag: string; type: string; events: string }>(
        ch,
        `SELECT arrayJoin(flags) AS flag, type, count() AS events FROM events
         WHERE notEmpty(flags) AND type IN ('click', 'signup', 'purchase')
           AND ts >= fromUnixTimestamp64Milli({from:Int64}) AND ts <= fromUnixTimestamp64Milli({to:Int64})
         GROUP BY flag, type ORDER BY flag, type`,
        range,
      ),
      queryRows<{ note: string; decisions: string; cents: string }>(
        ch,
        `SELECT note, count() AS decisions, sum(amount_cents) AS cents FROM events
         WHERE type = 'decision' AND counted = 1
           AND ts >= fromUnixTimestamp64Milli({from:Int64}) AND ts <= fromUnixTimestamp64Milli({to:Int64})
         GROUP BY note`,
        range,
      ),
      queryRows<{ referrer_id: string; purchases: string; purchased: string; refunded: string }>(
        ch,
        `SELECT referrer_id, countIf(type = 'purchase') AS purchases,
                sumIf(amount_cents, type = 'purchase') AS purchased,
                sumIf(amount_cents, type = 'refund' AND note != 'nothing_to_refund') AS refunded
         FROM events WHERE referrer_id != '' AND type IN ('purchase', 'refund')
         GROUP BY referrer_id
         HAVING purchases >= {min:UInt32} AND purchased > 0 AND refunded / purchased > {rate:Float64}
         ORDER BY refunded / purchased DESC LIMIT 100`,
        { min: fraud.refundMinPurchases, rate: fraud.refundRate },
      ),
      queryRows<{
        purchase_id: string
        referrer_id: string
        decision: string
        amount_cents: string
        flags: string[]
        actor: string
        reason: string
        at: string
      }>(
        ch,
        `SELECT purchase_id, referrer_id, note AS decision, amount_cents, flags, actor, reason,
                toUnixTimestamp64Milli(ts) AS at
         FROM events WHERE type = 'decision' AND counted = 1
         ORDER BY ts DESC LIMIT 50`,
      ),
    ])
    const by = (note: string) => decisions.find((d) => d.note === note)
    return c.json({
      from: iso(range.from),
      to: iso(range.to),
      rules: Object.entries(FRAUD_FLAGS).map(([flag, description]) => ({
        flag,
        description,
        clicks: Number(flags.find((f) => f.flag === flag && f.type === 'click')?.events ?? 0),
        referrals: Number(flags.find((f) => f.flag === flag && f.type === 'signup')?.events ?? 0),
        purchases: Number(flags.find((f) => f.flag === flag && f.type === 'purchase')?.events ?? 0),
      })),
      decisions: {
        approved: Number(by('approved')?.decisions ?? 0),
        approved_cents: Number(by('approved')?.cents ?? 0),
        rejected: Number(by('rejected')?.decisions ?? 0),
        rejected_cents: Number(by('rejected')?.cents ?? 0),
      },
      recent_decisions: recent.map((r) => ({
        purchase_id: r.purchase_id,
        referrer_id: r.referrer_id,
        decision: r.decision,
        amount_cents: Number(r.amount_cents),
        flags: r.flags,
        by: r.actor,
        reason: r.reason === '' ? null : r.reason,
        at: iso(Number(r.at)),
      })),
      refund_rate_alerts: refunds.map((r) => ({
        referrer_id: r.referrer_id,
        purchases: Number(r.purchases),
        purchased_cents: Number(r.purchased),
        refunded_cents: Number(r.refunded),
        refund_rate: Number(r.refunded) / Number(r.purchased),
      })),
      thresholds: fraud,
    })
  })
  return app
}
