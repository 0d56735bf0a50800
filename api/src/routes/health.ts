import { Hono } from 'hono'
import type { ApiDeps } from '../context.ts'

const withTimeout = <T>(p: Promise<T>, ms: number): Promise<T> =>
  Promise.race([
    p,
    new Promise<T>((_, reject) => setTimeout(() => reject(new Error(`no answer in ${ms} ms`)), ms)),
  ])

export function healthRoutes(deps: ApiDeps): Hono {
  const app = new Hono()
  app.get('/healthz', (c) => c.json({ status: 'ok' }))
  app.get('/readyz', async (c) => {
    const checks: Record<string, string> = {}
    const probe = async (name: string, f: () => Promise<unknown>) => {
      try {
        await withTimeout(f(), 2000)
        checks[name] = 'ok'
      } catch (e) {
        checks[name] = (e as Error).message
      }
    }
    await Promise.all([
      probe('redis', () => deps.redis.ping()),
      deps.ch === null
        ? Promise.resolve()
        : probe('clickhouse', async () => {
            const ch = deps.ch
            if (ch === null) return
            const r = await ch.client.ping()
            if (!r.success) throw r.error
          }),
    ])
    const ok = Object.values(checks).every((v) => v === 'ok')
    return c.json({ status: ok ? 'ready' : 'not ready', checks }, ok ? 200 : 503)
  })
  return app
}
