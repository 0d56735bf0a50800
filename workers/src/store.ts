import { type ClickHouse, LEDGER_COLUMNS, type LedgerRow, tsvOf, writeLedger } from '@referral/clickhouse'

/** Ledger entries written outside the ingest pipeline (payouts, expiries): one insert each, its id as token. */
export async function insertLedgerEntry(ch: ClickHouse, entry: LedgerRow): Promise<void> {
  await ch.insertTsv({
    table: 'ledger',
    columns: LEDGER_COLUMNS,
    body: tsvOf([entry], writeLedger),
    dedupToken: entry.entry_id,
  })
}
