import { z } from 'zod'

/**
 * The one place that reads the environment. `parseConfig` is called once, at start,
 * with `process.env` (or a test's own object), and the result is passed down.
 */

const optionalString = z
  .string()
  .optional()
  .transform((v) => (v === undefined || v.trim() === '' ? undefined : v.trim()))

const intFrom = (def: number, min: number, max: number) =>
  z.coerce.number().int().min(min).max(max).default(def)

const envSchema = z.object({
  PORT: intFrom(3000, 0, 65535),
  HOST: z.string().default('0.0.0.0'),
  PUBLIC_URL: optionalString.pipe(z.url().optional()),
  DATA_DIR: z.string().min(1).default('./data'),
  CLICKHOUSE_URL: optionalString.pipe(z.url().optional()),
  CLICKHOUSE_DATABASE: z
    .string()
    .regex(/^[A-Za-z_][A-Za-z0-9_]*$/, 'a plain identifier')
    .default('referral'),
  CLICKHOUSE_USER: optionalString,
  CLICKHOUSE_CLUSTER: optionalString.pipe(
    z
      .string()
      .regex(/^[A-Za-z_][A-Za-z0-9_]*$/, 'a plain identifier')
      .optional(),
  ),
  CLICKHOUSE_PASSWORD: optionalString,
  REDIS_URL: optionalString.pipe(z.url().optional()),
  REDIS_SERVER_BIN: z.string().default('redis-server'),
  REDIS_APPENDFSYNC: z.enum(['always', 'everysec']).default('always'),
  REDIS_AOF_REWRITE_PERCENTAGE: intFrom(400, 10, 10_000),
  INGEST_API_KEY: optionalString.pipe(z.string().min(16, 'at least 16 characters').optional()),
  AUTH_JWT_SECRET: optionalString.pipe(z.string().min(32, 'at least 32 characters').optional()),
  LANDING_URL: optionalString.pipe(z.url().optional()),
  ATTRIBUTION_WINDOW_DAYS: intFrom(30, 1, 365),
  DEDUP_WINDOW_DAYS: intFrom(8, 7, 90),
  STRIPE_SECRET_KEY: optionalString,
  STRIPE_WEBHOOK_SECRET: optionalString,
  STRIPE_API_URL: optionalString.pipe(z.url().optional()),
  AUTO_PAYOUT_CRON: optionalString,
  DEMO_LOGIN: z.enum(['true', 'false']).optional(),
  MIGRATE_ON_START: z.enum(['true', 'false']).default('true'),
  QUEUE_PREFIX: z
    .string()
    .regex(/^[A-Za-z0-9_-]+$/)
    .default('ra'),
  CLICK_RATE_LIMIT_PER_MINUTE: intFrom(120, 1, 1_000_000),
  MAX_QUEUED_JOBS: intFrom(20_000, 0, 100_000_000),
  INGEST_PACE_AFTER_MS: intFrom(2_000, 0, 3_600_000),
  STATS_CACHE_MS: intFrom(2_000, 0, 600_000),
  // at most a second: fetched jobs hold their lock (15 s) without renewal while they wait
  WORKER_LINGER_MS: intFrom(50, 0, 1_000),
  CLICKHOUSE_FLUSH_MS: intFrom(1_000, 0, 60_000),
  CLICKHOUSE_BATCH_ROWS: intFrom(50_000, 1, 1_000_000),
  SHUTDOWN_GRACE_MS: intFrom(10_000, 100, 600_000),
  REQUEST_TIMEOUT_MS: intFrom(30_000, 500, 600_000),
  FRAUD_HOLD: z.enum(['true', 'false']).default('true'),
  FRAUD_MAX_SIGNUPS_PER_IP: intFrom(3, 1, 1_000_000),
  FRAUD_MAX_SIGNUPS_PER_VISITOR: intFrom(1, 1, 1_000_000),
  FRAUD_SIGNUP_WINDOW_MINUTES: intFrom(60, 1, 7 * 24 * 60),
  FRAUD_MAX_CLICKS_PER_MINUTE: intFrom(30, 1, 1_000_000),
  FRAUD_REFUND_RATE_PERCENT: intFrom(25, 1, 100),
  FRAUD_REFUND_MIN_PURCHASES: intFrom(4, 1, 1_000_000),
  FRAUD_DISPOSABLE_DOMAINS: optionalString,
  WEBHOOK_URL: optionalString,
  /** first retry delay of a failed webhook delivery, doubling to 6 hours (tests shorten it) */
  WEBHOOK_RETRY_BASE_MS: intFrom(10_000, 1, 3_600_000),
  WEBHOOK_SECRET: optionalString.pipe(z.string().min(16, 'at least 16 characters').optional()),
  WORKER_THREAD: z.enum(['true', 'false']).default('false'),
  WORKER_THREAD_NICE: intFrom(10, 0, 19),
  CHDB_THREAD_NICE: intFrom(19, 0, 19),
  LOG_LEVEL: z.enum(['fatal', 'error', 'warn', 'info', 'debug', 'trace', 'silent']).default('info'),
})

/** Every environment variable the service reads (for .env.example and the docs). */
export const CONFIG_VARIABLES = Object.keys(envSchema.shape)

/** The thresholds of the fraud rules (README, "Fraud signals", explains each). */
export interface FraudConfig {
  /** hold flagged commissions until an admin decides; false: flag only */
  hold: boolean
  maxSignupsPerIp: number
  maxSignupsPerVisitor: number
  signupWindowMs: number
  maxClicksPerMinute: number
  /** a referrer whose referred purchases are refunded above this share (0..1) */
  refundRate: number
  /** ... once they have at least this many referred purchases */
  refundMinPurchases: number
  /** added to the built-in list of disposable email domains */
  disposableDomains: string[]
}

export interface WebhookEndpoint {
  url: string
  secret: string
}

export type ProcessRole = 'all' | 'api' | 'workers'

export interface Config {
  port: number
  host: string
  /** Where the service can be reached by a browser, for links it prints and builds. */
  publicUrl: string
  dataDir: string
  clickhouse: {
    /** unset: embedded chDB under `${dataDir}/clickhouse` */
    url: string | undefined
    database: string
    user: string | undefined
    password: string | undefined
    /**
     * a cluster of the servers' remote_servers: migrations then create replicated local
     * tables and Distributed tables ON CLUSTER (needs CLICKHOUSE_URL); unset: one server
     */
    cluster?: string | undefined
  }
  redis: {
    /** unset: a redis-server child process under `${dataDir}/redis` */
    url: string | undefined
    serverBin: string
    appendfsync: 'always' | 'everysec'
    /**
     * the embedded redis-server rewrites its AOF once it has grown by this much (%) since the
     * last rewrite (auto-aof-rewrite-percentage): higher, fewer rewrites, a larger AOF on disk
     */
    aofRewritePercentage: number
  }
  /** unset: generated at start and stored under `${dataDir}` (see secrets.ts in server/) */
  ingestApiKey: string | undefined
  jwtSecret: string | undefined
  landingUrl: string
  attributionWindowDays: number
  dedupWindowDays: number
  stripe: { secretKey: string | undefined; webhookSecret: string | undefined; apiUrl: string | undefined }
  /**
   * GET /demo-login signs in as whichever user is asked for: only for local use. DEMO_LOGIN=true|false;
   * unset: on exactly when AUTH_JWT_SECRET is not set and the service generates one.
   */
  demoLogin: boolean | undefined
  /** apply ClickHouse migrations at start (off when a one-shot migrate job does it) */
  migrateOnStart: boolean
  /** cron pattern of the automatic payout run (e.g. "0 9 1 * *"); unset: payouts only on request */
  autoPayoutCron: string | undefined
  queuePrefix: string
  clickRateLimitPerMinute: number
  /** ingest jobs waiting past which POST /v1/events answers 503; 0: no limit */
  maxQueuedJobs: number
  /**
   * once the oldest waiting ingest job is older than this (ms), each 202 is held back by the
   * excess (at most 1 s): senders slow down to what the workers take. 0: never
   */
  ingestPaceAfterMs: number
  /**
   * an API process answers GET /v1/me/stats from what it last read of the user until the
   * workers say it changed (api/src/stats-cache.ts), and reads again at least this often
   * (ms) whatever they said. 0: every answer reads Redis
   */
  statsCacheMs: number
  /**
   * the ingest worker, finding the queue empty after a group's first jobs, waits until the
   * first is this old (ms) for more before applying them: under a trickle, fewer and larger
   * groups (each costs Redis round trips and fsyncs whatever its size); under a backlog it
   * never waits. 0: applies at once
   */
  workerLingerMs: number
  /**
   * applied events reach ClickHouse through the outbox (workers/src/outbox.ts): a batch is
   * inserted once `batchRows` rows wait or the oldest has waited `flushMs`. The live counters
   * do not wait for it; the ClickHouse-backed reports lag by up to flushMs
   */
  store: { flushMs: number; batchRows: number }
  shutdownGraceMs: number
  /** a request whose headers and body have not arrived in this time gets 408 (slow clients) */
  requestTimeoutMs: number
  fraud: FraudConfig
  /** where outgoing webhooks go (WEBHOOK_URL, comma-separated for several); empty: none */
  webhooks: WebhookEndpoint[]
  webhookRetryBaseMs: number
  /** role all: run the workers on their own thread, off the API's event loop (off by default: see BENCHMARKS.md) */
  workerThread: boolean
  /**
   * how much lower than the API's the workers thread's CPU priority is (Linux nice, per
   * thread): under a burst the API answers first and the queue takes up the difference; the
   * workers catch up once the API leaves them the CPU. 0: the same priority
   */
  workerThreadNice: number
  /**
   * on the embedded default, how much lower than Node's chDB's own threads run (Linux nice,
   * per thread): the event loop gets a core first, and ClickHouse's inserts and merges take
   * what is left while the outbox holds their rows. 0: the same
   */
  chdbThreadNice: number
  logLevel: 'fatal' | 'error' | 'warn' | 'info' | 'debug' | 'trace' | 'silent'
}

export class ConfigError extends Error {
  constructor(public readonly problems: string[]) {
    super(`invalid configuration:\n  ${problems.join('\n  ')}`)
    this.name = 'ConfigError'
  }
}

export function parseConfig(env: Record<string, string | undefined>): Config {
  const parsed = envSchema.safeParse(env)
  if (!parsed.success) {
    throw new ConfigError(parsed.error.issues.map((i) => `${i.path.join('.')}: ${i.message}`))
  }
  const e = parsed.data
  const webhookUrls = (e.WEBHOOK_URL ?? '')
    .split(',')
    .map((u) => u.trim())
    .filter((u) => u !== '')
  const problems: string[] = []
  for (const u of webhookUrls) {
    if (!z.url({ protocol: /^https?$/ }).safeParse(u).success)
      problems.push(`WEBHOOK_URL: not an http(s) URL: ${u}`)
  }
  if (webhookUrls.length > 0 && e.WEBHOOK_SECRET === undefined) {
    problems.push('WEBHOOK_SECRET: required when WEBHOOK_URL is set (receivers check the signature with it)')
  }
  if (e.CLICKHOUSE_CLUSTER !== undefined && e.CLICKHOUSE_URL === undefined) {
    problems.push('CLICKHOUSE_CLUSTER: needs CLICKHOUSE_URL (the embedded chDB is one node)')
  }
  if (problems.length > 0) throw new ConfigError(problems)
  const publicUrl = (e.PUBLIC_URL ?? `http://localhost:${e.PORT}`).replace(/\/$/, '')
  return {
    port: e.PORT,
    host: e.HOST,
    publicUrl,
    dataDir: e.DATA_DIR,
    clickhouse: {
      url: e.CLICKHOUSE_URL,
      database: e.CLICKHOUSE_DATABASE,
      user: e.CLICKHOUSE_USER,
      password: e.CLICKHOUSE_PASSWORD,
      cluster: e.CLICKHOUSE_CLUSTER,
    },
    redis: {
      url: e.REDIS_URL,
      serverBin: e.REDIS_SERVER_BIN,
      appendfsync: e.REDIS_APPENDFSYNC,
      aofRewritePercentage: e.REDIS_AOF_REWRITE_PERCENTAGE,
    },
    ingestApiKey: e.INGEST_API_KEY,
    jwtSecret: e.AUTH_JWT_SECRET,
    landingUrl: e.LANDING_URL ?? `${publicUrl}/landing`,
    attributionWindowDays: e.ATTRIBUTION_WINDOW_DAYS,
    dedupWindowDays: e.DEDUP_WINDOW_DAYS,
    stripe: {
      secretKey: e.STRIPE_SECRET_KEY,
      webhookSecret: e.STRIPE_WEBHOOK_SECRET,
      apiUrl: e.STRIPE_API_URL,
    },
    autoPayoutCron: e.AUTO_PAYOUT_CRON,
    demoLogin: e.DEMO_LOGIN === undefined ? undefined : e.DEMO_LOGIN === 'true',
    migrateOnStart: e.MIGRATE_ON_START === 'true',
    queuePrefix: e.QUEUE_PREFIX,
    clickRateLimitPerMinute: e.CLICK_RATE_LIMIT_PER_MINUTE,
    maxQueuedJobs: e.MAX_QUEUED_JOBS,
    ingestPaceAfterMs: e.INGEST_PACE_AFTER_MS,
    statsCacheMs: e.STATS_CACHE_MS,
    workerLingerMs: e.WORKER_LINGER_MS,
    store: { flushMs: e.CLICKHOUSE_FLUSH_MS, batchRows: e.CLICKHOUSE_BATCH_ROWS },
    shutdownGraceMs: e.SHUTDOWN_GRACE_MS,
    requestTimeoutMs: e.REQUEST_TIMEOUT_MS,
    fraud: {
      hold: e.FRAUD_HOLD === 'true',
      maxSignupsPerIp: e.FRAUD_MAX_SIGNUPS_PER_IP,
      maxSignupsPerVisitor: e.FRAUD_MAX_SIGNUPS_PER_VISITOR,
      signupWindowMs: e.FRAUD_SIGNUP_WINDOW_MINUTES * 60_000,
      maxClicksPerMinute: e.FRAUD_MAX_CLICKS_PER_MINUTE,
      refundRate: e.FRAUD_REFUND_RATE_PERCENT / 100,
      refundMinPurchases: e.FRAUD_REFUND_MIN_PURCHASES,
      disposableDomains: (e.FRAUD_DISPOSABLE_DOMAINS ?? '')
        .split(',')
        .map((d) => d.trim().toLowerCase())
        .filter((d) => d !== ''),
    },
    webhooks: webhookUrls.map((url) => ({ url, secret: e.WEBHOOK_SECRET ?? '' })),
    webhookRetryBaseMs: e.WEBHOOK_RETRY_BASE_MS,
    workerThread: e.WORKER_THREAD === 'true',
    workerThreadNice: e.WORKER_THREAD_NICE,
    chdbThreadNice: e.CHDB_THREAD_NICE,
    logLevel: e.LOG_LEVEL,
  }
}

/** A config whose secrets are known: what the running service works with. */
export interface ResolvedConfig extends Config {
  ingestApiKey: string
  jwtSecret: string
  demoLogin: boolean
}
