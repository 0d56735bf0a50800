import { randomBytes } from 'node:crypto'

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
  const rnd = randomBytes(10)
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
