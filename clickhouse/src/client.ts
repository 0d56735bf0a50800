import { mkdirSync } from 'node:fs'
import { join } from 'node:path'
import { Readable } from 'node:stream'
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
  /**
   * Inserts a TabSeparated body into the named columns. With a dedup token, the same insert
   * again adds nothing (the tables set non_replicated_deduplication_window, and the views
   * they feed dedup with them). On chDB the body goes to the engine as one buffer, parsed on
   * its own threads; over HTTP it is the request body.
   */
  insertTsv(insert: TsvInsert): Promise<void>
  close(): Promise<void>
}

export interface TsvInsert {
  table: string
  columns: readonly string[]
  /** lines ended by newlines, in `columns` order */
  body: Buffer
  dedupToken: string
}

const dedupSettings = (token: string) => ({
  insert_deduplication_token: token,
  deduplicate_blocks_in_dependent_materialized_views: 1 as const,
})

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
    const insertTsv = async (i: TsvInsert) => {
      if (i.body.length === 0) return
      await client.insert({
        table: i.table,
        columns: nonEmpty(i.columns),
        values: Readable.from([i.body]),
        format: 'TabSeparated',
        clickhouse_settings: dedupSettings(i.dedupToken),
      })
    }
    return { client, database, mode: 'http', cluster, insertTsv, close: () => client.close() }
  }
  const path = join(config.dataDir, 'clickhouse')
  mkdirSync(path, { recursive: true })
  const connection = createChdbConnection({ path })
  const client = createClient({ connection: asClientConnection(connection) })
  await client.command({ query: `CREATE DATABASE IF NOT EXISTS ${database}` })
  // chDB keeps one session per process: USE sticks for every later query on it.
  await client.command({ query: `USE ${database}` })
  const rs = await client.query({ query: 'SELECT currentDatabase() AS db', format: 'JSONEachRow' })
  const [row] = await rs.json<{ db: string }>()
  if (row?.db !== database) throw new Error(`chDB did not select database ${database} (got ${row?.db})`)
  const insertTsv = async (i: TsvInsert) => {
    if (i.body.length === 0) return
    await connection.chdb.rawInsert({
      table: i.table,
      columns: i.columns,
      values: i.body,
      format: 'TabSeparated',
      settings: dedupSettings(i.dedupToken),
    })
  }
  return { client, database, mode: 'chdb', cluster: null, insertTsv, close: () => client.close() }
}

function nonEmpty(columns: readonly string[]): [string, ...string[]] {
  const [first, ...rest] = columns
  if (first === undefined) throw new Error('an insert needs at least one column')
  return [first, ...rest]
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
