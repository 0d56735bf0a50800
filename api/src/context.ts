import type { ClickHouse } from '@referral/clickhouse'
import type { JobPayloads, Keys, Logger, ResolvedConfig, Stripe } from '@referral/core'
import type { Queue } from 'bullmq'
import type { Redis } from 'ioredis'
import type { Backlog } from './backlog.ts'
import type { EventSink } from './group-commit.ts'
import type { Metrics } from './metrics.ts'
import type { RawStats } from './routes/me.ts'
import type { StatsCache } from './stats-cache.ts'
import type { StatsHub } from './stats-hub.ts'

/** What the HTTP layer needs from the process; built once in server/ and passed in. */
export interface ApiDeps {
  config: ResolvedConfig
  /** the `command` role client */
  redis: Redis
  keys: Keys
  events: EventSink
  /** set when the process is shutting down: responses then close their connection */
  lifecycle: { draining: boolean }
  /** what GET /metrics reports */
  metrics: Metrics
  /** wakes SSE streams when a user's stats change */
  hub: StatsHub
  /** the stats last read per user, until the hub hears they changed */
  statsCache: StatsCache<RawStats>
  /** refuses new events while the ingest queue is too deep */
  backlog: Backlog
  /** null when this process does not reach ClickHouse */
  ch: ClickHouse | null
  log: Logger
  /** folder of the built dashboard, served at / */
  webRoot: string
  /** null when STRIPE_SECRET_KEY is not set: Stripe features answer 503 */
  stripe: Stripe | null
  payouts: Queue<JobPayloads['payouts']>
  /** every queue, for the queue dashboard at /admin/queues */
  queues: readonly Queue[]
}

export interface AuthInfo {
  userId: string
  role: 'referrer' | 'admin'
}

declare module 'hono' {
  interface ContextVariableMap {
    auth: AuthInfo
  }
}
