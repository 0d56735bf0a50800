import { existsSync } from 'node:fs'
import { serveStatic } from '@hono/node-server/serve-static'
import { MAX_BODY_BYTES } from '@referral/core'
import { Hono } from 'hono'
import { bodyLimit } from 'hono/body-limit'
import { requestId } from 'hono/request-id'
import { secureHeaders } from 'hono/secure-headers'
import type { ApiDeps } from './context.ts'
import { makeErrorHandler, notFound } from './errors.ts'
import { eventRoutes } from './routes/events.ts'
import { healthRoutes } from './routes/health.ts'
import { meRoutes } from './routes/me.ts'
import { trackRoutes } from './routes/track.ts'

/** The whole HTTP surface; tests call `app.request()` on it without a socket. */
export function createApp(deps: ApiDeps): Hono {
  const app = new Hono()
  app.onError(makeErrorHandler(deps.log))
  app.notFound(notFound)
  app.use('*', requestId())
  app.use('*', secureHeaders({ crossOriginResourcePolicy: false }))
  app.use('/v1/*', bodyLimit({ maxSize: MAX_BODY_BYTES }))

  app.route('/', healthRoutes(deps))
  app.route('/', eventRoutes(deps))
  app.route('/', trackRoutes(deps))
  app.route('/', meRoutes(deps))

  if (existsSync(deps.webRoot)) {
    app.get('/landing', serveStatic({ root: deps.webRoot, path: 'landing.html' }))
    app.use('/*', serveStatic({ root: deps.webRoot }))
  }
  return app
}
