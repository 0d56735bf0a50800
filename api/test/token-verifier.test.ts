import { SignJWT } from 'jose'
import { afterEach, describe, expect, it, vi } from 'vitest'
import { tokenVerifier, verifyToken } from '../src/middleware/auth.ts'

const SECRET = 'token-verifier-secret-0123456789abcdef0123456789'
const sign = (sub: string, exp: number, secret = SECRET, role?: string) =>
  new SignJWT(role === undefined ? {} : { role })
    .setProtectedHeader({ alg: 'HS256' })
    .setSubject(sub)
    .setExpirationTime(exp)
    .sign(new TextEncoder().encode(secret))
const now = () => Math.floor(Date.now() / 1000)

/** A token that passed is remembered; what is remembered must not let anything else through. */
describe('tokenVerifier', () => {
  afterEach(() => {
    vi.useRealTimers()
  })

  it('checks a token once, then remembers it while it is valid', async () => {
    let checks = 0
    const verify = tokenVerifier(SECRET, (token, key) => {
      checks++
      return verifyToken(token, key)
    })
    const token = await sign('u0', now() + 60)
    for (let i = 0; i < 5; i++) expect((await verify(token)).userId).toBe('u0')
    expect(checks).toBe(1)
    // a refused token is not remembered: checked every time
    const wrong = await sign('u0', now() + 60, 'another-secret-0123456789abcdef0123456789ab')
    for (let i = 0; i < 2; i++) await expect(verify(wrong)).rejects.toMatchObject({ code: 'unauthorized' })
    expect(checks).toBe(3)
  })

  it('refuses a remembered token once it has expired', async () => {
    const verify = tokenVerifier(SECRET)
    const exp = now() + 60
    const token = await sign('u1', exp)
    expect(await verify(token)).toEqual({ userId: 'u1', role: 'referrer', exp })
    expect(await verify(token)).toEqual({ userId: 'u1', role: 'referrer', exp })
    vi.useFakeTimers({ toFake: ['Date'] })
    vi.setSystemTime((exp - 1) * 1000)
    expect((await verify(token)).userId).toBe('u1')
    vi.setSystemTime(exp * 1000)
    await expect(verify(token)).rejects.toMatchObject({
      code: 'unauthorized',
      message: 'the token has expired',
    })
    // and stays refused (checked again by jose, which also finds it expired)
    await expect(verify(token)).rejects.toMatchObject({ code: 'unauthorized' })
  })

  it('lets through only the very token that passed: another signature, secret or claim is checked', async () => {
    const verify = tokenVerifier(SECRET)
    const exp = now() + 600
    const good = await sign('u2', exp)
    await verify(good)
    const [header, payload] = good.split('.')
    const forged = `${header}.${payload}.${'A'.repeat(43)}`
    await expect(verify(forged)).rejects.toMatchObject({ code: 'unauthorized' })
    await expect(
      verify(await sign('u2', exp, 'another-secret-0123456789abcdef0123456789ab')),
    ).rejects.toMatchObject({
      code: 'unauthorized',
    })
    // the same user as admin is a different token: its role comes from its own check
    expect((await verify(await sign('u2', exp, SECRET, 'admin'))).role).toBe('admin')
    expect((await verify(good)).role).toBe('referrer')
  })
})
