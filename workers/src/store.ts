import type { ClickHouse } from '@referral/clickhouse'
import type { StoredResolution } from './apply.ts'

/**
 * Writes a job's rows to ClickHouse. The dedup token is derived from the job id, and a
 * retried job writes exactly the same rows (its stored resolution), so a retry after a
 * crash between insert and acknowledgement adds nothing (non_replicated_deduplication_window).
 */
export async function storeResolution(ch: ClickHouse, jobId: string, res: StoredResolution): Promise<void> {
  if (res.rows.length > 0) {
    await ch.client.insert({
      table: 'events',
      values: res.rows,
      format: 'JSONEachRow',
      clickhouse_settings: { insert_deduplication_token: `events:${jobId}` },
    })
  }
  if (res.ledger.length > 0) {
    await ch.client.insert({
      table: 'ledger',
      values: res.ledger,
      format: 'JSONEachRow',
      clickhouse_settings: { insert_deduplication_token: `ledger:${jobId}` },
    })
  }
}
