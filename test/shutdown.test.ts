import { join } from 'node:path'
import { freePort } from '@referral/server'
import { afterAll, describe, expect, it } from 'vitest'
import { type ChildService, startChild } from './support/child.ts'
import { BROWSER_UA, codeFor, eventually, http, statsFor } from './support/client.ts'
import { tempDir } from './support/env.ts'

/** SIGTERM while requests are coming in: no 5xx, every 202 kept, exit within the grace period. */
describe('graceful shutdown under load', () => {
  const dir = tempDir()
  const dataDir = join(dir.path, 'data')
  let child: ChildService | undefined
  afterAll(async () => {
    child?.proc.kill('SIGKILL')
    dir.remove()
  })

  it('answers what it accepted, refuses the rest cleanly, and exits in time', async () => {
    const port = await freePort()
    child = await startChild(dataDir, port, { SHUTDOWN_GRACE_MS: '10000' })
    const api = http(child.url)
    const code = await codeFor(api, 'term-ref')
    const statuses = new Map<number, number>()
    let acceptedClicks = 0
    let stop = false
    let n = 0
    const loops = Array.from({ length: 8 }, async () => {
      while (!stop) {
        const i = n++
        const res = await api
          .post('/v1/events', {
            events: Array.from({ length: 10 }, (_, k) => ({
              type: 'click',
              id: `t-${i}-${k}`,
              code,
              user_agent: BROWSER_UA,
            })),
          })
          .catch(() => undefined) // the socket closed: not accepted, and the client would retry
        if (res === undefined) {
          await new Promise((r) => setTimeout(r, 5))
          continue
        }
        statuses.set(res.status, (statuses.get(res.status) ?? 0) + 1)
        if (res.status === 202) acceptedClicks += 10
        await res.arrayBuffer()
      }
    })
    await eventually(async () => expect(acceptedClicks).toBeGreaterThan(500), 20_000, 10)
    const signalled = Date.now()
    child.proc.kill('SIGTERM')
    const code0 = await child.exited
    const took = Date.now() - signalled
    stop = true
    await Promise.all(loops)

    expect(code0).toBe(0)
    expect(took).toBeLessThan(10_000)
    expect([...statuses.keys()].filter((s) => s >= 500 && s !== 503)).toEqual([])

    // every acknowledged click is there after a restart
    child = await startChild(dataDir, port)
    const after = http(child.url)
    await eventually(
      async () => expect((await statsFor(after, 'term-ref')).total_clicks).toBe(acceptedClicks),
      30_000,
      200,
    )
    child.proc.kill('SIGTERM')
    await child.exited
  }, 120_000)
})
