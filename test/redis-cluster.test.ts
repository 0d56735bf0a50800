import { join } from 'node:path'
import { makeKeys, makeRedis, QUEUE_NAMES, whenReady } from '@referral/core'
import { type RedisServer, startRedisServer } from '@referral/server'
import { Queue } from 'bullmq'
import type { Redis } from 'ioredis'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { BROWSER_UA, codeFor, eventually, type Http, http, statsFor, tokenFor } from './support/client.ts'
import { tempDir } from './support/env.ts'
import { enablePartner, type StripeHarness, startStripeHarness } from './support/fake-stripe.ts'
import { count, drained, startTestService } from './support/service.ts'

const WEBHOOK_SECRET = 'whsec_test_cluster_0123'

/**
 * A redis-server in cluster mode that owns all 16384 slots. Like every node of a Redis
 * Cluster it refuses a command, MULTI or script whose keys are not all in one slot (CROSSSLOT),
 * and a script that reaches a key of another slot; since it owns every slot, a plain client
 * needs no redirects. The whole program runs on it: every multi-key call of the service, its
 * scripts and BullMQ's, is checked by Redis itself.
 */
async function startClusterModeRedis(dir: string): Promise<RedisServer> {
  const server = await startRedisServer({
    dir,
    bin: process.env.REDIS_SERVER_BIN ?? 'redis-server',
    appendfsync: 'always',
    extraArgs: ['--cluster-enabled', 'yes', '--cluster-config-file', join(dir, 'nodes.conf')],
  })
  const admin = await whenReady(makeRedis(server.url, 'command', 'cluster-setup'))
  try {
    await admin.call('CLUSTER', 'ADDSLOTSRANGE', '0', '16383')
    await eventually(async () =>
      expect(String(await admin.call('CLUSTER', 'INFO'))).toContain('cluster_state:ok'),
    )
  } finally {
    admin.disconnect()
  }
  return server
}

describe('the service on a cluster-mode Redis (one slot per multi-key call)', () => {
  const dir = tempDir()
  let redisServer: RedisServer
  let svc: Awaited<ReturnType<typeof startTestService>>
  let stripe: StripeHarness
  let api: Http
  let redis: Redis

  const asUser = async (user: string) => ({ authorization: `Bearer ${await tokenFor(user)}` })
  const deliver = (type: string, object: Record<string, unknown>) =>
    stripe.deliver(api, stripe.event(type, object))

  beforeAll(async () => {
    stripe = await startStripeHarness(WEBHOOK_SECRET)
    redisServer = await startClusterModeRedis(`${dir.path}/redis`)
    svc = await startTestService(`${dir.path}/data`, redisServer.url, {
      ...stripe.env,
      CLICK_RATE_LIMIT_PER_MINUTE: '3',
    })
    api = http(svc.url)
    redis = await whenReady(makeRedis(redisServer.url, 'command'))
  })
  afterAll(async () => {
    redis?.disconnect()
    await svc?.service.stop()
    await redisServer?.stop()
    await stripe?.close()
    dir.remove()
  })

  it('is a server that refuses keys of two slots in one call', async () => {
    expect(await redis.info('cluster')).toContain('cluster_enabled:1')
    await expect(redis.eval('return 1', 2, 'ra:a', 'ra:b')).rejects.toThrow(/CROSSSLOT/)
    await expect(redis.mget('ra:user:a', 'ra:user:b')).rejects.toThrow(/CROSSSLOT/)
    // keys that share the hash tag are one slot
    const keys = makeKeys('ra')
    expect(await redis.mget(keys.user('a'), keys.wallet('b'), keys.takenOn(20_000))).toEqual([
      null,
      null,
      null,
    ])
  })

  it('runs the program on it: codes, clicks, the group commit, wallets, Partner payouts, expiry', async () => {
    const code = await codeFor(api, 'kim') // a script on the user's hash and the code's key
    // rate-limited clicks: INCR and EXPIRE in one MULTI on one key
    const clicks = await Promise.all(
      [1, 2, 3, 4].map(() =>
        api.post(
          '/v1/track/click',
          { code, visitor_id: 'kim-v0' },
          { 'user-agent': BROWSER_UA, authorization: '' },
        ),
      ),
    )
    expect(clicks.map((r) => r.status).sort()).toEqual([202, 202, 202, 429])

    // the friend's credit expires 3 s from now; many users' state in one commit
    const signedUp = Date.now() - 30 * 86_400_000 + 3000
    const events = [
      {
        type: 'click',
        id: 'kim-c1',
        code,
        visitor_id: 'kim-v',
        user_agent: BROWSER_UA,
        ts: signedUp - 60_000,
      },
      { type: 'signup', id: 'kim-s1', user_id: 'kim-friend', visitor_id: 'kim-v', ts: signedUp },
      ...Array.from({ length: 20 }, (_, i) => ({
        type: 'signup',
        id: `kim-s-${i}`,
        user_id: `kim-f${i}`,
        ref: code,
      })),
    ]
    expect((await api.post('/v1/events', { events })).status).toBe(202)
    await drained(svc.service)
    expect(await statsFor(api, 'kim')).toMatchObject({ total_referrals: 21 })

    const spent = await api.post('/v1/users/kim-friend/wallet/spend', { id: 'kim-order', amount_cents: 100 })
    expect(spent.status).toBe(200)

    await enablePartner(api, stripe, 'kim')
    const invoice = { id: 'in_k', payment_intent: 'pi_k', amount_paid: 30000, currency: 'usd' }
    expect((await deliver('invoice.paid', { ...invoice, metadata: { user_id: 'kim-friend' } })).status).toBe(
      200,
    )
    expect(
      (await deliver('charge.refunded', { id: 'ch_k', payment_intent: 'pi_k', amount_refunded: 1000 }))
        .status,
    ).toBe(200)
    await drained(svc.service)
    // 10% of 30000 = 3000 cash, less 10% of the 1000 refunded
    expect(await statsFor(api, 'kim')).toMatchObject({ cash_balance_cents: 2900, conversions: 1 })

    const paid = await api.post('/v1/me/payouts', {}, await asUser('kim'))
    expect(paid.status).toBe(201)
    await eventually(async () => {
      const list = (await (await api.get('/v1/me/payouts', await asUser('kim'))).json()) as {
        payouts: Array<{ status: string }>
      }
      expect(list.payouts[0]?.status).toBe('paid')
    })
    expect(stripe.fake.transfers.map((t) => t.amount)).toEqual([2900])

    const wallet = async () =>
      ((await (await api.get('/v1/users/kim-friend/wallet')).json()) as { balance_cents: number })
        .balance_cents
    await eventually(async () => expect(await wallet()).toBe(0), 20_000, 200) // 250 - 100 spent - 150 expired
    await eventually(async () =>
      expect(await count(svc.ch, "SELECT sum(amount_cents) AS n FROM ledger WHERE user_id = 'kim'")).toBe(
        await statsFor(api, 'kim').then((s) => s.total_earnings_cents - 2900),
      ),
    )

    // nothing failed on the way: no job refused by Redis
    const prefix = makeKeys('ra').bullPrefix()
    for (const name of Object.values(QUEUE_NAMES)) {
      const q = new Queue(name, { connection: redis, prefix })
      expect(await q.getFailedCount()).toBe(0)
      await q.close()
    }
  })
})
