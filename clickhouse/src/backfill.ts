import { randomUUID } from 'node:crypto'
import { type ClickHouse, queryRows } from './client.ts'
import { loadMigrations, type Migration } from './migrate.ts'

/**
 * Rebuilds the rollups of a time range from the raw rows they are computed from, with the
 * very SELECT of each materialized view (read from the migrations: one definition).
 *
 * For each rollup it compares, per key, what the raw rows give with what the rollup holds,
 * inserts only where they differ, and a second run finds nothing to insert, so running it
 * twice leaves the same rollups. Two kinds of rollup:
 * - SummingMergeTree (counters): it inserts (raw) - (held): missing rows are added,
 *   double-counted ones taken back. A correction row is summed into its key on read (every
 *   query sums) and on merge. A negative correction of a UInt64 counter is stored as its two's
 *   complement (a CAST), and UInt64 sums wrap the same way, so the sum comes out right.
 * - AggregatingMergeTree whose columns are all SimpleAggregateFunction(min | max |
 *   groupArrayArray) (funnel_hours): merging a row again changes no min or max, and adds no
 *   value that was not there to a union (its readers take it as a set), so it inserts the raw
 *   row of each key that is missing or differs. A min below the raw rows', a max above or a
 *   value they do not have cannot be taken back (nothing writes these but the view and this).
 * Rows arriving in the range while it runs may be counted by the view and by the backfill:
 * run it on a past range, or run it again.
 *
 * Works through the Distributed tables on a cluster as on one server.
 */

export interface Rollup {
  view: string
  /** the rollup table the view writes into */
  table: string
  /** the raw table the view reads */
  source: string
  /** the view's SELECT */
  select: string
  /** the view's GROUP BY columns: the rollup's key */
  keys: string[]
  /** the key column that is a time bucket (hour or day) */
  bucket: 'hour' | 'day'
  /** how its rows merge: summed counters, or min / max / union columns (see above) */
  merge: 'sum' | 'simple'
}

export function rollupsOf(migrations: readonly Migration[] = loadMigrations()): Rollup[] {
  // a later migration may drop a view and create it again: its last definition is the one
  const views = new Map<string, Rollup>()
  const engines = new Map<string, string>()
  for (const m of migrations) {
    for (const s of m.statements) {
      const table = s.match(/^CREATE TABLE IF NOT EXISTS (\w+)\s*\([\s\S]*\)\s*ENGINE = (\w+)/)
      if (table?.[1] !== undefined && table[2] !== undefined) engines.set(table[1], table[2])
      const dropped = s.match(/^DROP VIEW IF EXISTS (\w+)$/)?.[1]
      if (dropped !== undefined) views.delete(dropped)
      const r = rollupOf(s, engines)
      if (r !== null) views.set(r.view, r)
    }
  }
  return [...views.values()]
}

function rollupOf(s: string, engines: ReadonlyMap<string, string>): Rollup | null {
  const v = s.match(/^CREATE MATERIALIZED VIEW IF NOT EXISTS (\w+) TO (\w+) AS\s+([\s\S]*)$/)
  if (v === null) return null
  const [, view = '', table = '', select = ''] = v
  const source = select.match(/\bFROM (\w+)/)?.[1]
  const groupBy = select.match(/\bGROUP BY ([\w\s,]+)$/)?.[1]
  // a view that copies rows without aggregating (funnel_steps) is not a rollup to rebuild
  if (groupBy === undefined && !/\bGROUP BY\b/.test(select)) return null
  if (source === undefined || groupBy === undefined) throw new Error(`cannot read the view ${view}`)
  const keys = groupBy.split(',').map((k) => k.trim())
  const bucket = keys.find((k): k is 'hour' | 'day' => k === 'hour' || k === 'day')
  if (bucket === undefined) throw new Error(`the view ${view} has no hour or day bucket`)
  const engine = engines.get(table)
  if (engine !== 'SummingMergeTree' && engine !== 'AggregatingMergeTree') {
    throw new Error(`the view ${view} writes into ${table}, whose engine ${engine} is no rollup's`)
  }
  return {
    view,
    table,
    source,
    select,
    keys,
    bucket,
    merge: engine === 'SummingMergeTree' ? 'sum' : 'simple',
  }
}

/** A value column of a rollup and how a reader merges its rows into one value per key. */
export interface RollupColumn {
  name: string
  /** the column's rows merged per key (sum, min, max, or a union as a sorted set) */
  merged: string
}

/** The value columns of a rollup (all but its keys), from the table as it is. */
export async function rollupColumns(ch: ClickHouse, r: Rollup): Promise<RollupColumn[]> {
  const columns = await queryRows<{ name: string; type: string }>(
    ch,
    'SELECT name, type FROM system.columns WHERE database = currentDatabase() AND table = {t:String} ORDER BY position',
    { t: r.table },
  )
  return columns
    .filter((c) => !r.keys.includes(c.name))
    .map(({ name, type }) => {
      if (r.merge === 'sum') return { name, merged: `sum(${name})` }
      const fn = type.match(/^SimpleAggregateFunction\((\w+),/)?.[1]
      if (fn === 'min' || fn === 'max') return { name, merged: `${fn}(${name})` }
      if (fn === 'groupArrayArray')
        return { name, merged: `arraySort(arrayDistinct(groupArrayArray(${name})))` }
      throw new Error(`${r.table}.${name} (${type}): no way to merge it for a backfill`)
    })
}

/** The view's SELECT over the source rows of [from, to) only. */
export function rangedSelect(r: Rollup): string {
  const range = 'ts >= fromUnixTimestamp64Milli({from:Int64}) AND ts < fromUnixTimestamp64Milli({to:Int64})'
  const at = r.select.lastIndexOf('GROUP BY')
  const head = r.select.slice(0, at).trimEnd()
  const where = head.match(/\bWHERE\b([\s\S]*)$/)
  const filtered =
    where === null
      ? `${head}\nWHERE ${range}`
      : `${head.slice(0, where.index)}WHERE (${where[1]?.trim()}) AND ${range}`
  return `${filtered}\n${r.select.slice(at)}`
}

export interface BackfillResult {
  table: string
  /** keys whose rollup differed from the raw rows and were corrected */
  corrected: number
}

const DAY_MS = 86_400_000

export async function backfillRollups(
  ch: ClickHouse,
  range: { from: number; to: number },
  rollups: readonly Rollup[] = rollupsOf(),
): Promise<BackfillResult[]> {
  if (range.from % DAY_MS !== 0 || range.to % DAY_MS !== 0 || range.to <= range.from) {
    throw new Error('the range must be whole UTC days, from before to')
  }
  const out: BackfillResult[] = []
  for (const r of rollups) {
    const columns = await rollupColumns(ch, r)
    const values = columns.map((c) => c.name)
    const keyList = r.keys.join(', ')
    const held = `SELECT ${keyList}, ${columns.map((c) => `${c.merged} AS ${c.name}`).join(', ')} FROM ${r.table}
      WHERE ${r.bucket} >= fromUnixTimestamp64Milli({from:Int64}) AND ${r.bucket} < fromUnixTimestamp64Milli({to:Int64})
      GROUP BY ${keyList}`
    // a raw row's union compared as its reader sees the held one: a sorted set
    const raw = (c: RollupColumn) =>
      c.merged.startsWith('arraySort(') ? `arraySort(arrayDistinct(e.${c.name}))` : `e.${c.name}`
    const differs = columns.map((c) => `${raw(c)} != r.${c.name}`).join(' OR ')
    const corrections =
      r.merge === 'sum'
        ? `SELECT ${keyList}, ${values.map((v) => `e.${v} - r.${v} AS ${v}`).join(', ')}
      FROM (${rangedSelect(r)}) AS e FULL OUTER JOIN (${held}) AS r USING (${keyList})
      WHERE ${differs}`
        : // keys the raw rows do not have are left alone: nothing to insert would take them back
          `SELECT ${keyList}, ${values.map((v) => `e.${v} AS ${v}`).join(', ')}
      FROM (${rangedSelect(r)}) AS e LEFT JOIN (${held}) AS r USING (${keyList})
      WHERE ${differs}`
    const params = { from: range.from, to: range.to }
    const [n] = await queryRows<{ n: string }>(ch, `SELECT count() AS n FROM (${corrections})`, params)
    const corrected = Number(n?.n ?? 0)
    if (corrected > 0) {
      await ch.client.command({
        query: `INSERT INTO ${r.table} (${[...r.keys, ...values].join(', ')}) ${corrections}`,
        query_params: params,
        // a correction equal to an earlier one is still a correction: a token of its own, so
        // that block dedup never drops it (and no token left by an earlier insert applies:
        // chDB keeps a query's settings in its session)
        clickhouse_settings: { insert_deduplication_token: `backfill:${r.table}:${randomUUID()}` },
      })
    }
    out.push({ table: r.table, corrected })
  }
  return out
}
