import type { ClickHouse } from '@referral/clickhouse'
import type { Keys, Logger, ResolvedConfig } from '@referral/core'
import type { Redis } from 'ioredis'
import type { EventSink } from './group-commit.ts'

/** What the HTTP layer needs from the process; built once in server/ and passed in. */
export interface ApiDeps {
  config: ResolvedConfig
  /** the `command` role client */
  redis: Redis
  keys: Keys
  events: EventSink
  /** null when this process does not reach ClickHouse */
  ch: ClickHouse | null
  log: Logger
  /** folder of the built dashboard, served at / */
  webRoot: string
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
