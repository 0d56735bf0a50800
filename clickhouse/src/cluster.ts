import type { Migration } from './migrate.ts'

/**
 * Cluster mode (CLICKHOUSE_CLUSTER): the migrations are written once, as the single-node DDL
 * that chDB and a lone server run, and compiled here into the DDL of a cluster:
 *
 * - `CREATE TABLE t (...) ENGINE = XMergeTree` becomes a local table on every node,
 *   `t_local ON CLUSTER c ... ENGINE = ReplicatedXMergeTree('/clickhouse/tables/{shard}/db/t_local',
 *   '{replica}')`, with `replicated_deduplication_window` in place of
 *   `non_replicated_deduplication_window`, plus `t ON CLUSTER c AS t_local ENGINE =
 *   Distributed(c, db, t_local, <sharding key>)`. The service keeps using the plain name `t`:
 *   it reads across shards and writes through the Distributed table.
 * - a materialized view is created on every node, reads the local source table and writes
 *   into the local target table: each shard rolls up the rows it received.
 * - `ALTER TABLE t` alters the local and the Distributed table, on every node.
 * - `DROP VIEW v` (a view about to be redefined) drops it on every node.
 * - `INSERT INTO t SELECT ... FROM u` (a backfill) goes through the Distributed tables as it is.
 *
 * Anything else is refused, so a new kind of statement in a migration gets a deliberate
 * cluster form instead of a silently single-node one. The checksums stay those of the files.
 *
 * Inserts through a Distributed table are sent to the shards synchronously
 * (`insert_distributed_sync`, set by the client in cluster mode) with the caller's
 * `insert_deduplication_token`: each shard's replicated table keeps the token of the part it
 * received in its deduplication log, so a retried group adds nothing on any shard. The
 * sharding keys are deterministic (never rand()), so a retry splits the rows the same way.
 */

/**
 * Where each table's rows go. A table missing here cannot be compiled: choose its key when
 * adding it (a function of the row only).
 */
export const SHARDING_KEYS: Readonly<Record<string, string>> = {
  // events spread evenly; a referrer's rows are on every shard and their reads fan out
  events: 'cityHash64(id)',
  // a user's ledger on one shard: balances and earnings per user read one shard's rows
  ledger: 'cityHash64(user_id)',
  // the rollups are written on each shard by the views; these keys only route backfills
  rollup_hourly: 'toUInt32(hour)',
  rollup_referrer_daily: 'cityHash64(referrer_id)',
  rollup_referrer_hourly: 'cityHash64(referrer_id)',
  rollup_earnings_hourly: 'cityHash64(user_id)',
  // like the rollups, routes backfills only (the view writes on the shard of each event):
  // by visitor (a purchase's is its buyer's signup visitor, 0009), by user when there is none
  funnel_steps: 'if(visitor = 0, cityHash64(user_id), visitor)',
  // routes backfills only, as above: by visitor (0010)
  funnel_hours: 'visitor',
}

export interface ClusterTarget {
  /** a cluster named in the servers' remote_servers */
  cluster: string
  database: string
}

const IDENT = /^[A-Za-z_][A-Za-z0-9_]*$/

export const localName = (table: string) => `${table}_local`

export function replicatedEngine(engine: string, table: string, target: ClusterTarget): string {
  const m = engine.match(/^(\w*MergeTree)\s*(?:\((.*)\))?$/s)
  if (m?.[1] === undefined) throw new Error(`cannot replicate engine ${engine} of ${table}`)
  const args = [`'/clickhouse/tables/{shard}/${target.database}/${table}'`, `'{replica}'`]
  if (m[2] !== undefined && m[2].trim() !== '') args.push(m[2].trim())
  return `Replicated${m[1]}(${args.join(', ')})`
}

/** The cluster form of one statement, given the tables created before it (mutated). */
export function clusterStatement(sql: string, target: ClusterTarget, tables: Set<string>): string[] {
  const on = `ON CLUSTER ${target.cluster}`
  const create = sql.match(
    /^CREATE TABLE IF NOT EXISTS (\w+)\s*(\([\s\S]*\))\s*ENGINE = (\w+(?:\([^)]*\))?)\s*([\s\S]*)$/,
  )
  if (create !== null) {
    const [, name = '', columns = '', engine = '', rest = ''] = create
    const key = SHARDING_KEYS[name]
    if (key === undefined) throw new Error(`no sharding key for table ${name}: add one to SHARDING_KEYS`)
    if (/\breplicated_deduplication_window\b/.test(rest.replace(/non_replicated_/g, ''))) {
      throw new Error(`${name}: set non_replicated_deduplication_window; the cluster form derives the other`)
    }
    tables.add(name)
    const local = localName(name)
    const settings = rest.replace(
      /\bnon_replicated_deduplication_window\b/g,
      'replicated_deduplication_window',
    )
    return [
      `CREATE TABLE IF NOT EXISTS ${local} ${on}\n${columns}\nENGINE = ${replicatedEngine(engine, local, target)}\n${settings}`,
      `CREATE TABLE IF NOT EXISTS ${name} ${on} AS ${local}\nENGINE = Distributed(${target.cluster}, ${target.database}, ${local}, ${key})`,
    ]
  }
  const view = sql.match(/^CREATE MATERIALIZED VIEW IF NOT EXISTS (\w+) TO (\w+) AS\s+([\s\S]*)$/)
  if (view !== null) {
    const [, name = '', to = '', select = ''] = view
    if (!tables.has(to)) throw new Error(`view ${name} writes into ${to}, which no migration created`)
    const localSelect = select.replace(/\b(FROM|JOIN)\s+(\w+)\b/g, (whole, kw: string, t: string) =>
      tables.has(t) ? `${kw} ${localName(t)}` : whole,
    )
    return [`CREATE MATERIALIZED VIEW IF NOT EXISTS ${name} ${on} TO ${localName(to)} AS\n${localSelect}`]
  }
  const alter = sql.match(/^ALTER TABLE (\w+)\s+([\s\S]*)$/)
  if (alter !== null) {
    const [, name = '', change = ''] = alter
    if (!tables.has(name)) throw new Error(`ALTER of ${name}, which no migration created`)
    return [`ALTER TABLE ${localName(name)} ${on} ${change}`, `ALTER TABLE ${name} ${on} ${change}`]
  }
  const drop = sql.match(/^DROP VIEW IF EXISTS (\w+)$/)
  if (drop !== null) return [`DROP VIEW IF EXISTS ${drop[1]} ${on}`]
  if (/^INSERT INTO (\w+)\s/.test(sql)) return [sql]
  throw new Error(`no cluster form for this statement:\n${sql.slice(0, 200)}`)
}

/** The migrations as a cluster runs them: same versions, names and checksums. */
export function clusterMigrations(migrations: readonly Migration[], target: ClusterTarget): Migration[] {
  if (!IDENT.test(target.cluster) || !IDENT.test(target.database)) {
    throw new Error('the cluster and database names must be plain identifiers')
  }
  const tables = new Set<string>()
  return migrations.map((m) => ({
    ...m,
    statements: m.statements.flatMap((s) => clusterStatement(s, target, tables)),
  }))
}

/** Where migrate() records what it applied: one table replicated to every node of the cluster. */
export function migrationsTableDdl(target: ClusterTarget | null): string {
  const columns = `(version UInt32, name String, checksum String, applied_at DateTime64(3, 'UTC') DEFAULT now64(3))`
  if (target === null)
    return `CREATE TABLE IF NOT EXISTS schema_migrations ${columns} ENGINE = MergeTree ORDER BY version`
  return (
    `CREATE TABLE IF NOT EXISTS schema_migrations ON CLUSTER ${target.cluster} ${columns} ` +
    `ENGINE = ReplicatedMergeTree('/clickhouse/tables/all/${target.database}/schema_migrations', '{shard}-{replica}') ORDER BY version`
  )
}
