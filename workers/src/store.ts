import type { ClickHouse, LedgerRow } from '@referral/clickhouse'
import type { AppliedGroup } from './apply.ts'

/**
 * Writes a group's rows to ClickHouse. The dedup token is derived from the group id, and a
 * retried job writes exactly the same rows (its group's stored resolution), so a retry after
 * a crash between insert and acknowledgement adds nothing (non_replicated_deduplication_window).
 */
export async function storeGroup(ch: ClickHouse, group: AppliedGroup): Promise<void> {
  const { rows, ledger } = group.resolution
  if (rows.length > 0) {
    await ch.client.insert({
      table: 'events',
      values: rows,
      format: 'JSONEachRow',
      clickhouse_settings: {
        insert_deduplication_token: `events:${group.groupId}`,
        deduplicate_blocks_in_dependent_materialized_views: 1,
      },
    })
  }
  if (ledger.length > 0) {
    await ch.client.insert({
      table: 'ledger',
      values: ledger,
      format: 'JSONEachRow',
      clickhouse_settings: {
        insert_deduplication_token: `ledger:${group.groupId}`,
        deduplicate_blocks_in_dependent_materialized_views: 1,
      },
    })
  }
}

/** Ledger entries written outside the ingest pipeline (payouts, expiries): one insert each, its id as token. */
export async function insertLedgerEntry(ch: ClickHouse, entry: LedgerRow): Promise<void> {
  await ch.client.insert({
    table: 'ledger',
    values: [entry],
    format: 'JSONEachRow',
    clickhouse_settings: {
      insert_deduplication_token: entry.entry_id,
      deduplicate_blocks_in_dependent_materialized_views: 1,
    },
  })
}
