import { ConfigError, makeLogger, type ProcessRole, parseConfig } from '@referral/core'
import { SignJWT } from 'jose'
import { DemoClient, seedHistory, startLiveTraffic } from './demo.ts'
import { RedisBinaryMissing } from './redis-server.ts'
import { resolveSecrets } from './secrets.ts'
import { startService } from './service.ts'

/** `npm start`: everything in one process; `--role=api` or `--role=workers` for a split deployment. */
async function main(): Promise<void> {
  const roleArg = process.argv.find((a) => a.startsWith('--role='))?.slice('--role='.length) ?? 'all'
  if (roleArg !== 'all' && roleArg !== 'api' && roleArg !== 'workers') {
    throw new ConfigError([`--role must be all, api or workers (got ${roleArg})`])
  }
  const role: ProcessRole = roleArg
  const { config, generated } = resolveSecrets(parseConfig(process.env))
  const log = makeLogger(config)
  const service = await startService({ config, role, log })

  let stopping = false
  const shutdown = (signal: string) => {
    if (stopping) return
    stopping = true
    log.info({ signal, graceMs: config.shutdownGraceMs }, 'shutting down')
    const deadline = setTimeout(() => {
      log.error('shutdown deadline passed, exiting now')
      process.exit(1)
    }, config.shutdownGraceMs)
    deadline.unref()
    service.stop().then(
      () => process.exit(0),
      (e: Error) => {
        log.error({ err: e.message }, 'shutdown failed')
        process.exit(1)
      },
    )
  }
  process.on('SIGTERM', () => shutdown('SIGTERM'))
  process.on('SIGINT', () => shutdown('SIGINT'))

  if (service.url !== undefined) {
    const lines = [
      '',
      `  Referral analytics is running (${role === 'all' ? 'API + workers' : role}).`,
      `  Dashboard:   ${config.publicUrl}/`,
      `  Landing:     ${config.landingUrl}`,
      `  Ingest:      POST ${config.publicUrl}/v1/events`,
      `  Data:        ${config.dataDir} (ClickHouse: ${service.ch?.mode ?? 'none'}, Redis: ${service.redisServer ? 'embedded' : config.redis.url})`,
    ]
    if (generated.length > 0) {
      const demoToken = await new SignJWT({ role: 'referrer' })
        .setProtectedHeader({ alg: 'HS256' })
        .setSubject('demo-user')
        .setExpirationTime('30d')
        .sign(new TextEncoder().encode(config.jwtSecret))
      lines.push(
        '',
        '  Generated for local use (kept in DATA_DIR/secrets.json; set them in the environment in production):',
        ...(generated.includes('INGEST_API_KEY') ? [`    INGEST_API_KEY=${config.ingestApiKey}`] : []),
        ...(generated.includes('AUTH_JWT_SECRET') ? [`    AUTH_JWT_SECRET=${config.jwtSecret}`] : []),
        `  A referrer token for user "demo-user": ${demoToken}`,
      )
    }
    if (config.demoLogin) {
      lines.push(
        '',
        `  Demo login:  ${config.publicUrl}/demo-login?user=demo-user   (growth team: ${config.publicUrl}/demo-login?user=growth&role=admin)`,
      )
    }
    process.stdout.write(`${lines.join('\n')}\n\n`)
  } else {
    log.info({ role }, 'workers running')
  }

  if (process.argv.includes('--demo') && service.url !== undefined) {
    const client = new DemoClient(service.url, config)
    const summary = await seedHistory(client, { days: 90, referrers: 8, clicksPerDay: 12 })
    log.info({ events: summary.events }, 'demo history sent; live demo traffic every 1.5 s')
    const stopTraffic = startLiveTraffic(client, summary.referrers)
    process.once('SIGTERM', stopTraffic)
    process.once('SIGINT', stopTraffic)
  }
}

main().catch((e: unknown) => {
  if (e instanceof ConfigError || e instanceof RedisBinaryMissing) {
    process.stderr.write(`${e.message}\n`)
  } else {
    process.stderr.write(`failed to start: ${e instanceof Error ? (e.stack ?? e.message) : String(e)}\n`)
  }
  process.exit(1)
})
