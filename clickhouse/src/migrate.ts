import { createHash } from 'node:crypto'
import { readdirSync, readFileSync } from 'node:fs'
import { join } from 'node:path'
import { repoPath } from '@referral/core'
import { type ClickHouse, queryRows } from './client.ts'
import { clusterMigrations, migrationsTableDdl } from './cluster.ts'

export const MIGRATIONS_DIR = repoPath(import.meta.url, join('clickhouse', 'migrations'))

export interface Migration {
  version: number
  name: string
  checksum: string
  statements: string[]
}

/** `NNNN_name.sql` files, in order; statements are separated by a line holding only `;`-ended SQL. */
export function loadMigrations(dir: string = MIGRATIONS_DIR): Migration[] {
  return readdirSync(dir)
    .filter((f) => /^\d{4}_[a-z0-9_]+\.sql$/.test(f))
    .sort()
    .map((file) => {
      const text = readFileSync(join(dir, file), 'utf8')
      const statements = text
        .split(/;\s*$/m)
        .map((s) =>
          s
            .split('\n')
            .filter((l) => !l.trim().startsWith('--'))
            .join('\n')
            .trim(),
        )
        .filter((s) => s.length > 0)
      return {
        version: Number(file.slice(0, 4)),
        name: file.replace(/\.sql$/, ''),
        checksum: createHash('sha256').update(text).digest('hex'),
        statements,
      }
    })
}

export interface MigrateResult {
  applied: string[]
  alreadyApplied: string[]
}

/**
 * Apply what is not yet recorded in `schema_migrations`, in order, recording each.
 * A recorded migration whose file changed is an error: migrations are append-only. On a
 * cluster the same files run in their cluster form (cluster.ts), with the same checksums.
 */
export async function migrate(
  ch: ClickHouse,
  migrations: Migration[] = loadMigrations(),
): Promise<MigrateResult> {
  const target = ch.cluster === null ? null : { cluster: ch.cluster, database: ch.database }
  await ch.client.command({ query: migrationsTableDdl(target) })
  const toRun = target === null ? migrations : clusterMigrations(migrations, target)
  const done = await queryRows<{ version: number; name: string; checksum: string }>(
    ch,
    'SELECT version, name, checksum FROM schema_migrations ORDER BY version',
  )
  const byVersion = new Map(done.map((d) => [Number(d.version), d]))
  const result: MigrateResult = { applied: [], alreadyApplied: [] }
  for (const m of toRun) {
    const prior = byVersion.get(m.version)
    if (prior !== undefined) {
      if (prior.checksum !== m.checksum) {
        throw new Error(`migration ${m.name} was changed after it was applied (checksum differs)`)
      }
      result.alreadyApplied.push(m.name)
      continue
    }
    for (const statement of m.statements) await ch.client.command({ query: statement })
    await ch.client.insert({
      table: 'schema_migrations',
      values: [{ version: m.version, name: m.name, checksum: m.checksum }],
      format: 'JSONEachRow',
    })
    result.applied.push(m.name)
  }
  return result
}
