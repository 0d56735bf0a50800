import { migrate, openClickHouse } from '@referral/clickhouse'
import { parseConfig } from '@referral/core'

/** `npm run migrate`: apply the ClickHouse migrations once (the compose file's one-shot job). */
async function main(): Promise<void> {
  const ch = await openClickHouse(parseConfig(process.env))
  try {
    const m = await migrate(ch)
    process.stdout.write(
      `applied: ${m.applied.join(', ') || 'nothing'}; already applied: ${m.alreadyApplied.length}\n`,
    )
  } finally {
    await ch.close()
  }
}

main().catch((e: unknown) => {
  process.stderr.write(`migration failed: ${e instanceof Error ? e.message : String(e)}\n`)
  process.exit(1)
})
