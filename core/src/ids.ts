import { randomFillSync } from 'node:crypto'

/**
 * Time-ordered random ids (48-bit ms time + 80 random bits, base32 like ULID), so generated
 * event ids sort by arrival and never collide in practice.
 */
const B32 = '0123456789ABCDEFGHJKMNPQRSTVWXYZ'

export function newId(now: number = Date.now()): string {
  let time = ''
  let t = now
  for (let i = 0; i < 10; i++) {
    time = B32[t % 32] + time
    t = Math.floor(t / 32)
  }
  const rnd = nextRandom10()
  let rand = ''
  // 80 bits -> 16 base32 characters, 5 bits each
  let acc = 0
  let bits = 0
  for (const byte of rnd) {
    acc = (acc << 8) | byte
    bits += 8
    while (bits >= 5) {
      bits -= 5
      rand += B32[(acc >> bits) & 31]
    }
    acc &= (1 << bits) - 1
  }
  return time + rand
}

// CSPRNG bytes drawn 4 KiB at a time: one system call per 409 ids instead of one per id
const pool = Buffer.alloc(4096)
let poolOffset = pool.length

function nextRandom10(): Buffer {
  if (poolOffset + 10 > pool.length) {
    randomFillSync(pool)
    poolOffset = 0
  }
  const out = pool.subarray(poolOffset, poolOffset + 10)
  poolOffset += 10
  return out
}

/** The time (epoch ms) a newId was made at: its first ten characters. NaN for other ids. */
export function idTime(id: string): number {
  if (id.length < 10) return Number.NaN
  let t = 0
  for (let i = 0; i < 10; i++) {
    const v = B32.indexOf(id[i] ?? '')
    if (v < 0) return Number.NaN
    t = t * 32 + v
  }
  return t
}
