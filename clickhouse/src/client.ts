import { mkdirSync } from 'node:fs'
import { join } from 'node:path'
import { type ClickHouseClient, type ClickHouseClientConfigOptions, createClient } from '@clickhouse/client'
import type { Config } from '@referral/core'
import { createChdbConnection } from 'chdb/connection'

export type { ClickHouseClient }

export interface ClickHouse {
  client: ClickHouseClient
  database: string
  /** 'chdb' in the embedded default, 'http' against a ClickHouse server */
  mode: 'chdb' | 'http'
  /** CLICKHOUSE_CLUSTER: tables are replicated local tables behind Distributed ones (cluster.ts) */
  cluster: string | null
  close(): Promise<void>
}

/**
 * One ClickHouse client for the process. Embedded (no CLICKHOUSE_URL): chDB in-process with
 * its data under DATA_DIR/clickhouse, through the same @clickhouse/client API as a server.
 * The database is created if missing and selected, so queries use plain table names.
 */
export async function openClickHouse(config: Pick<Config, 'clickhouse' | 'dataDir'>): Promise<ClickHouse> {
  const { url, database, user, password } = config.clickhouse
  const cluster = config.clickhouse.cluster ?? null
  if (url !== undefined) {
    const admin = createClient({ url, username: user, password, request_timeout: 30_000 })
    const onCluster = cluster === null ? '' : ` ON CLUSTER ${cluster}`
    await admin.command({ query: `CREATE DATABASE IF NOT EXISTS ${database}${onCluster}` })
    await admin.close()
    const client = createClient({
      url,
      username: user,
      password,
      database,
      request_timeout: 30_000,
      clickhouse_settings: {
        date_time_input_format: 'best_effort',
        // on a cluster: an insert returns once every shard has its rows (so a retry with the
        // same dedup token finds them), and a subquery on a Distributed table inside a query
        // on another reads the whole cluster once (GLOBAL) instead of being refused
        ...(cluster === null
          ? {}
          : { insert_distributed_sync: 1, distributed_product_mode: 'global' as const }),
      },
    })
    return { client, database, mode: 'http', cluster, close: () => client.close() }
  }
  const path = join(config.dataDir, 'clickhouse')
  mkdirSync(path, { recursive: true })
  const client = createClient({ connection: asClientConnection(createChdbConnection({ path })) })
  await client.command({ query: `CREATE DATABASE IF NOT EXISTS ${database}` })
  // chDB keeps one session per process: USE sticks for every later query on it.
  await client.command({ query: `USE ${database}` })
  const rs = await client.query({ query: 'SELECT currentDatabase() AS db', format: 'JSONEachRow' })
  const [row] = await rs.json<{ db: string }>()
  if (row?.db !== database) throw new Error(`chDB did not select database ${database} (got ${row?.db})`)
  return { client, database, mode: 'chdb', cluster: null, close: () => client.close() }
}

/**
 * chdb 3.4 types its connection against @clickhouse/client-common 1.23.0, which
 * @clickhouse/client 1.23.1 now bundles as its own copy: the same interface declared twice,
 * with nominally different settings types. The shapes are identical at run time.
 */
function asClientConnection(c: ReturnType<typeof createChdbConnection>): ClientConnection {
  return c as unknown as ClientConnection
}
type ClientConnection = NonNullable<ClickHouseClientConfigOptions['connection']>

/** Rows of a query with bound parameters, as typed objects. */
export async function queryRows<T>(
  ch: ClickHouse,
  query: string,
  params: Record<string, unknown> = {},
): Promise<T[]> {
  const rs = await ch.client.query({ query, query_params: params, format: 'JSONEachRow' })
  return rs.json<T>()
}
