import { existsSync } from 'node:fs'
import { serveStatic } from '@hono/node-server/serve-static'
import { type Context, Hono } from 'hono'
import { requestId } from 'hono/request-id'
import { secureHeaders } from 'hono/secure-headers'
import type { ApiDeps } from './context.ts'
import { makeErrorHandler, notFound } from './errors.ts'
import { jwtAuth, tokenVerifier } from './middleware/auth.ts'
import { REQUEST_ID_MAX, requestLog } from './middleware/request-log.ts'
import { DOCS_HTML, openApiDocument } from './openapi.ts'
import { QUEUE_BOARD_PATH, queueBoard } from './queue-board.ts'
import { adminRoutes } from './routes/admin.ts'
import { adminFraudRoutes } from './routes/admin-fraud.ts'
import { adminWebhookRoutes } from './routes/admin-webhooks.ts'
import { eventRoutes } from './routes/events.ts'
import { healthRoutes } from './routes/health.ts'
import { meRoutes } from './routes/me.ts'
import { meAnalyticsRoutes } from './routes/me-analytics.ts'
import { partnerRoutes } from './routes/partner.ts'
import { sessionRoutes } from './routes/session.ts'
import { stripeWebhookRoutes } from './routes/stripe-webhooks.ts'
import { trackRoutes } from './routes/track.ts'
import { walletRoutes } from './routes/wallet.ts'

/** The whole HTTP surface; tests call `app.request()` on it without a socket. */
export function createApp(deps: ApiDeps): Hono {
  const app = new Hono()
  app.onError(makeErrorHandler(deps.log))
  app.notFound(notFound)
  // an incoming X-Request-Id is kept when it is short and plain, else one is made
  app.use('*', requestId({ limitLength: REQUEST_ID_MAX }))
  app.use('*', requestLog(deps.log))
  // while shutting down, every answer ends its keep-alive connection so the server can close
  app.use('*', async function drain(c, next) {
    await next()
    if (deps.lifecycle.draining) c.header('Connection', 'close')
  })
  // browser-facing responses; the marketplace's ingest calls are spared the header work
  const headers = secureHeaders({ crossOriginResourcePolicy: false })
  app.use('*', async function secure(c, next) {
    if (c.req.path === '/v1/events') return next()
    return headers(c, next)
  })

  const verify = tokenVerifier(deps.config.jwtSecret)
  // every /v1/me route is the referrer's own data: the JWT's sub is the only user it reads
  app.use('/v1/me/*', jwtAuth(verify))
  // every /v1/admin route is the growth team's: an admin token or session
  app.use('/v1/admin/*', jwtAuth(verify, { role: 'admin' }))

  app.get('/metrics', async (c) =>
    c.body(await deps.metrics.render(), 200, { 'Content-Type': 'text/plain; version=0.0.4; charset=utf-8' }),
  )
  app.get('/openapi.json', (c) => c.json(openApiDocument(deps.config.publicUrl)))
  app.get('/docs', (c) => c.html(DOCS_HTML))

  app.route('/', healthRoutes(deps))
  app.route(
    '/',
    eventRoutes({ ingestApiKey: deps.config.ingestApiKey, backlog: deps.backlog, events: deps.events }),
  )
  app.route('/', trackRoutes(deps))
  app.route('/', meRoutes(deps))
  app.route('/', meAnalyticsRoutes(deps))
  app.route('/', walletRoutes(deps))
  app.route('/', partnerRoutes(deps))
  app.route('/', stripeWebhookRoutes(deps))
  app.route('/', adminRoutes(deps))
  app.route('/', adminFraudRoutes(deps))
  app.route('/', adminWebhookRoutes(deps))
  app.route('/', sessionRoutes(deps, verify))

  // the queue dashboard: the growth team's admin token or session only
  const admin = jwtAuth(verify, { role: 'admin' })
  app.use(QUEUE_BOARD_PATH, admin)
  app.use(`${QUEUE_BOARD_PATH}/*`, admin)
  // handed to an app of its own, not merged in: Bull Board's routes name their parameters
  // differently at the same place, which Hono's RegExpRouter refuses, and a refusal puts every
  // request of the service through the slower TrieRouter
  const board = new Hono().route(QUEUE_BOARD_PATH, queueBoard(deps.queues))
  // the service's error model there too (a Hono of its own would answer with Hono's defaults)
  board.onError(makeErrorHandler(deps.log))
  board.notFound(notFound)
  const toBoard = (c: Context) => board.fetch(c.req.raw, c.env)
  app.all(QUEUE_BOARD_PATH, toBoard)
  app.all(`${QUEUE_BOARD_PATH}/*`, toBoard)

  if (existsSync(deps.webRoot)) {
    app.get('/landing', serveStatic({ root: deps.webRoot, path: 'landing.html' }))
    // the dashboard's own pages (client-side routes)
    app.get('/admin', serveStatic({ root: deps.webRoot, path: 'index.html' }))
    app.use('/*', serveStatic({ root: deps.webRoot }))
  }
  return app
}
