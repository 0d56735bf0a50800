import { describe, expect, it } from 'vitest'
import { makeKeys } from '../src/keys.ts'
import { taggedName } from '../src/redis-layout.ts'

/** Redis Cluster's slot of a key: CRC16 (XMODEM) of its hash tag, or of the whole key, mod 16384. */
function slot(key: string): number {
  const open = key.indexOf('{')
  const close = open < 0 ? -1 : key.indexOf('}', open + 1)
  const hashed = open >= 0 && close > open + 1 ? key.slice(open + 1, close) : key
  let crc = 0
  for (const byte of Buffer.from(hashed)) {
    crc ^= byte << 8
    for (let i = 0; i < 8; i++) crc = crc & 0x8000 ? ((crc << 1) ^ 0x1021) & 0xffff : (crc << 1) & 0xffff
  }
  return crc % 16384
}

describe('key layout for Redis Cluster', () => {
  const keys = makeKeys('ra')

  it('computes slots as Redis does', () => {
    // CLUSTER KEYSLOT answers, from a redis-server
    expect(slot('123456789')).toBe(12739)
    expect(slot('{user1000}.following')).toBe(slot('{user1000}.followers'))
    // empty braces: the whole key is hashed, not what follows them
    expect(slot('foo{}{bar}')).toBe(8363)
    expect(slot('bar')).toBe(5061)
  })

  it('puts every key a commit, spend or payout script touches in one slot', () => {
    const state = [
      keys.applyLock(),
      keys.takenOn(20_000),
      keys.code('ABC123'),
      keys.user('u1'),
      keys.user('someone-else'),
      keys.visitor('v1'),
      keys.purchase('p1'),
      keys.heldRefunds('p1'),
      keys.wallet('u2'),
      keys.spend('u2', 'order-1'),
      keys.balance('u3'),
      keys.payout('po1'),
      keys.userPayouts('u3'),
      keys.pendingPayouts(),
      keys.partners(),
      keys.stripeAccount('acct_1'),
      keys.stats('u4'),
      keys.globalStats(),
      keys.group('g1'),
      keys.outbox(),
      keys.outboxRows(),
      keys.storeBatch(),
      keys.storeLock(),
      keys.layout(),
      // an id that itself holds braces does not move its key
      keys.user('{evil}'),
    ]
    expect(new Set(state.map(slot))).toEqual(new Set([slot('{ra}')]))
  })

  it('keeps each queue in one slot, apart from the state, and spreads rate-limit windows', () => {
    const bull = ['wait', 'active', 'meta', 'id', '123', '123:lock', 'events'].map(
      (s) => `${keys.bullPrefix()}:ingest:${s}`,
    )
    expect(new Set(bull.map(slot)).size).toBe(1)
    expect(slot(bull[0] ?? '')).not.toBe(slot(keys.user('u1')))
    const windows = Array.from({ length: 50 }, (_, i) => slot(keys.rateLimit(`click:10.0.0.${i}`, 1)))
    expect(new Set(windows).size).toBeGreaterThan(40)
  })

  it('maps the names of the untagged layout to the tagged ones', () => {
    expect(taggedName('ra', 'ra:user:u1')).toBe(keys.user('u1'))
    expect(taggedName('ra', 'ra:ev:click:e1')).toBe('{ra}:ev:click:e1')
    expect(taggedName('ra', 'ra:bull:ingest:wait')).toBe(`${keys.bullPrefix()}:ingest:wait`)
    expect(taggedName('ra', 'ra:rl:click:1.2.3.4:99')).toBeNull()
    expect(taggedName('ra', '{ra}:user:u1')).toBeNull()
    expect(taggedName('ra', 'rab:user:u1')).toBeNull()
  })
})
