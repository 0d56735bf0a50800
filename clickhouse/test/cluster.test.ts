import { mkdtempSync, rmSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { parseConfig } from '@referral/core'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { type ClickHouse, openClickHouse, queryRows } from '../src/client.ts'
import { clusterMigrations, clusterStatement, migrationsTableDdl, SHARDING_KEYS } from '../src/cluster.ts'
import { loadMigrations, migrate } from '../src/migrate.ts'

const TARGET = { cluster: 'referral', database: 'referral' }
const single = loadMigrations()
const cluster = clusterMigrations(single, TARGET)
const statements = cluster.flatMap((m) => m.statements)
const creates = statements.filter((s) => s.startsWith('CREATE '))
const tablesOf = (re: RegExp) => creates.flatMap((s) => s.match(re)?.[1] ?? [])

/** The cluster form of the migrations: checked statement by statement, and parsed by ClickHouse. */
describe('cluster DDL', () => {
  it('keeps the versions and checksums of the migration files', () => {
    expect(cluster.map((m) => [m.version, m.name, m.checksum])).toEqual(
      single.map((m) => [m.version, m.name, m.checksum]),
    )
  })

  it('runs every CREATE and ALTER on the whole cluster', () => {
    for (const s of [...creates, ...statements.filter((x) => x.startsWith('ALTER '))]) {
      expect(s).toMatch(
        /^(CREATE|ALTER) (TABLE|MATERIALIZED VIEW) (IF NOT EXISTS )?\w+ ON CLUSTER referral\b/,
      )
    }
    expect(migrationsTableDdl(TARGET)).toMatch(/ON CLUSTER referral .*ENGINE = ReplicatedMergeTree\(/)
  })

  it('makes every MergeTree table a replicated local table with {shard} and {replica}', () => {
    const merges = single.flatMap((m) => m.statements).filter((s) => /ENGINE = \w*MergeTree/.test(s))
    const locals = creates.filter((s) => /ENGINE = \w*MergeTree/.test(s))
    expect(locals).toHaveLength(merges.length)
    for (const s of locals) {
      const [, name, engine, path] =
        s.match(/^CREATE TABLE IF NOT EXISTS (\w+) .*ENGINE = (\w+)\('([^']+)', '\{replica\}'\)/s) ?? []
      expect(name).toMatch(/_local$/)
      expect(engine).toMatch(/^Replicated(Summing|Aggregating)?MergeTree$/)
      expect(path).toBe(`/clickhouse/tables/{shard}/referral/${name}`)
      // dedup of a retried insert through the replicated log, never the single-node setting
      expect(s).toContain('replicated_deduplication_window = 100000')
      expect(s).not.toContain('non_replicated')
    }
    // the rollups keep their summing engine, funnel_hours its aggregating one
    expect(creates.find((s) => s.includes('rollup_hourly_local ON'))).toContain('ReplicatedSummingMergeTree(')
    expect(creates.find((s) => s.includes('funnel_hours_local ON'))).toContain(
      'ReplicatedAggregatingMergeTree(',
    )
  })

  it('puts a Distributed table with the plain name in front of each local table', () => {
    const locals = tablesOf(/^CREATE TABLE IF NOT EXISTS (\w+)_local /)
    expect(locals.sort()).toEqual(Object.keys(SHARDING_KEYS).sort())
    for (const t of locals) {
      const dist = creates.find((s) => s.startsWith(`CREATE TABLE IF NOT EXISTS ${t} ON CLUSTER`))
      expect(dist).toContain(`AS ${t}_local`)
      expect(dist).toContain(`ENGINE = Distributed(referral, referral, ${t}_local, ${SHARDING_KEYS[t]})`)
      expect(SHARDING_KEYS[t]).not.toMatch(/rand/i)
    }
  })

  it('has each materialized view read a local table and write into a local table', () => {
    const views = creates.filter((s) => s.startsWith('CREATE MATERIALIZED VIEW'))
    // six views, four of them redefined by a later migration (dropped, then created again)
    expect(new Set(views.map((v) => v.split(' ')[6]))).toEqual(
      new Set([
        'rollup_hourly_mv',
        'rollup_referrer_daily_mv',
        'rollup_referrer_hourly_mv',
        'rollup_earnings_hourly_mv',
        'funnel_steps_mv',
        'funnel_hours_mv',
      ]),
    )
    const drops = statements.filter((s) => s.startsWith('DROP VIEW'))
    expect(drops).toContain('DROP VIEW IF EXISTS rollup_hourly_mv ON CLUSTER referral')
    for (const v of views) {
      expect(v).toMatch(/ TO \w+_local AS\n/)
      const sources = [...v.matchAll(/\bFROM (\w+)/g)].map((m) => m[1])
      expect(sources.length).toBeGreaterThan(0)
      for (const src of sources) expect(src).toMatch(/_local$/)
    }
  })

  it('alters both the local and the Distributed table', () => {
    const alters = statements.filter((s) => s.startsWith('ALTER '))
    expect(alters).toContain(
      'ALTER TABLE events_local ON CLUSTER referral ADD COLUMN IF NOT EXISTS country LowCardinality(String) AFTER user_agent',
    )
    expect(alters).toContain(
      'ALTER TABLE events ON CLUSTER referral ADD COLUMN IF NOT EXISTS country LowCardinality(String) AFTER user_agent',
    )
  })

  it('refuses what it has no cluster form for', () => {
    const tables = new Set<string>()
    expect(() =>
      clusterStatement(
        'CREATE TABLE IF NOT EXISTS x (a UInt8) ENGINE = MergeTree ORDER BY a',
        TARGET,
        tables,
      ),
    ).toThrow(/no sharding key for table x/)
    expect(() => clusterStatement('DROP TABLE events', TARGET, tables)).toThrow(/no cluster form/)
    expect(() =>
      clusterStatement('CREATE TABLE IF NOT EXISTS events (a UInt8) ENGINE = Log', TARGET, tables),
    ).toThrow(/cannot replicate engine Log/)
    expect(() => clusterMigrations(single, { cluster: 'a;b', database: 'referral' })).toThrow(/identifiers/)
  })

  it('is a setting for a ClickHouse server only', () => {
    expect(() => parseConfig({ CLICKHOUSE_CLUSTER: 'referral' })).toThrow(/needs CLICKHOUSE_URL/)
    const c = parseConfig({ CLICKHOUSE_CLUSTER: 'referral', CLICKHOUSE_URL: 'http://ch:8123' })
    expect(c.clickhouse.cluster).toBe('referral')
    expect(() => parseConfig({ CLICKHOUSE_CLUSTER: 'a b', CLICKHOUSE_URL: 'http://ch:8123' })).toThrow(
      /identifier/,
    )
  })

  describe('on chDB', () => {
    const dir = mkdtempSync(join(tmpdir(), 'ra-cluster-ddl-'))
    let ch: ClickHouse
    beforeAll(async () => {
      ch = await openClickHouse({
        dataDir: dir,
        clickhouse: { url: undefined, database: 'ddl', user: undefined, password: undefined },
      })
    })
    afterAll(async () => {
      await ch.close()
      rmSync(dir, { recursive: true, force: true })
    })

    it('parses every cluster statement (no cluster runs here: ClickHouse formats them back)', async () => {
      for (const query of [migrationsTableDdl(TARGET), ...statements]) {
        const [row] = await queryRows<{ f: string }>(ch, 'SELECT formatQuery({q:String}) AS f', { q: query })
        const formatted = row?.f ?? ''
        if (/^(CREATE|ALTER)/.test(query)) expect(formatted).toContain('ON CLUSTER referral')
        if (query.includes('Replicated'))
          expect(formatted).toMatch(/Replicated\w*MergeTree\('\/clickhouse\/tables\/(\{shard\}|all)\//)
      }
      // and a statement that is not valid SQL is refused by the same check
      await expect(
        queryRows(ch, 'SELECT formatQuery({q:String}) AS f', { q: 'CREATE TABLE x ON CLUSTER (' }),
      ).rejects.toThrow()
    })

    it('still runs the single-node DDL', async () => {
      const result = await migrate(ch, single)
      expect(result.applied).toEqual(single.map((m) => m.name))
      const engines = await queryRows<{ name: string; engine: string }>(
        ch,
        "SELECT name, engine FROM system.tables WHERE database = 'ddl' AND name IN ('events', 'rollup_hourly') ORDER BY name",
      )
      expect(engines).toEqual([
        { name: 'events', engine: 'MergeTree' },
        { name: 'rollup_hourly', engine: 'SummingMergeTree' },
      ])
    })
  })
})
