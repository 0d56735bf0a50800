import { mkdtempSync, rmSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { type ClickHouse, openClickHouse, queryRows } from '../src/client.ts'
import { migrate } from '../src/migrate.ts'
import {
  EVENT_COLUMNS,
  type EventRow,
  emptyEventRow,
  eventColumnsOf,
  eventsTsv,
  LEDGER_COLUMNS,
  type LedgerRow,
  tsvOf,
  writeEvent,
  writeLedger,
} from '../src/rows.ts'

/**
 * The worker writes rows as TabSeparated bytes (TsvWriter): every column in its place, every
 * character that TabSeparated gives a meaning escaped, text beyond ASCII intact. Each row here
 * goes in through insertTsv and comes back as it was.
 */
describe('rows as TabSeparated', () => {
  const dir = mkdtempSync(join(tmpdir(), 'ra-tsv-'))
  let ch: ClickHouse
  beforeAll(async () => {
    ch = await openClickHouse({
      dataDir: dir,
      clickhouse: {
        url: process.env.CLICKHOUSE_URL,
        database: 'tsv_test',
        user: undefined,
        password: undefined,
      },
    })
    await migrate(ch)
  })
  afterAll(async () => {
    await ch?.close()
    rmSync(dir, { recursive: true, force: true })
  })

  /** a server answers 64-bit integers as JSON strings (chDB as numbers): compared as numbers */
  const numbers = (r: Record<string, unknown> | undefined) =>
    Object.fromEntries(
      Object.entries(r ?? {}).map(([k, v]) => [
        k,
        typeof v === 'string' && /^-?\d+$/.test(v) ? Number(v) : v,
      ]),
    )
  const back = (table: string, columns: readonly string[], key: string, id: string) =>
    queryRows<Record<string, unknown>>(
      ch,
      `SELECT ${columns.map((c) => (c === 'ts' || c === 'received_at' || c === 'signed_up_at' ? `toUnixTimestamp64Milli(${c}) AS ${c}` : c)).join(', ')}
       FROM ${table} WHERE ${key} = {id:String}`,
      { id },
    )

  it('keeps every column of an events row, in order, whatever its text holds', async () => {
    // each field different from the others, so that two columns swapped would show
    const row: EventRow = {
      id: 'ev-1\ttab',
      type: 'purchase',
      ts: 1_796_000_000_123,
      received_at: 1_796_000_000_456,
      referrer_id: 'ref\\slash',
      code: 'ABCDEFGH',
      user_id: 'üser-ñ-日本',
      visitor_id: 'v\nnew line',
      counted: 1,
      first_purchase: 1,
      note: 'held',
      amount_cents: 123_456_789,
      commission_cents: -42,
      track: 'partner',
      currency: 'usd',
      plan: 'pro\r\nplan',
      purchase_id: 'p-9',
      url: "https://example.com/a?b=c&d='e'",
      referrer_url: 'https://ref.example/x',
      utm_source: 'news',
      utm_medium: 'mail',
      utm_campaign: 'spring "sale"',
      ip: '2001:db8::1',
      user_agent: 'Mozilla/5.0 (X11) Gecko/20100101 Firefox/125.0',
      country: 'FR',
      is_bot: 0,
      flags: ['same_ip', "quote'd"],
      signup_visitor_id: 'sv-1',
      signed_up_at: 1_795_000_000_789,
      signup_flagged: 1,
      actor: 'admin-1',
      reason: 'looks fine\\n (not a newline)',
    }
    await ch.insertTsv({
      table: 'events',
      columns: EVENT_COLUMNS,
      body: tsvOf([row], writeEvent),
      dedupToken: 't1',
    })
    const [got] = await back('events', EVENT_COLUMNS, 'id', row.id)
    expect(numbers(got)).toEqual(row)
  })

  it('sends only the columns some row sets; the others take their defaults', async () => {
    const base = {
      ...emptyEventRow('', 'click', 1_796_000_000_000, 1_796_000_000_001),
      referrer_id: 'r',
      code: 'ABCDEFGH',
      counted: 1 as const,
    }
    const rows: EventRow[] = [
      { ...base, id: 'sub-1' },
      { ...base, id: 'sub-2', utm_source: 'news', ip: '10.0.0.1', flags: ['click_rate'] },
    ]
    const tsv = eventsTsv(rows)
    expect(eventColumnsOf(tsv.columns)).toEqual([
      'id',
      'type',
      'ts',
      'received_at',
      'referrer_id',
      'code',
      'counted',
      'utm_source',
      'ip',
      'flags',
    ])
    await ch.insertTsv({
      table: 'events',
      columns: eventColumnsOf(tsv.columns),
      body: tsv.body,
      dedupToken: 'sub',
    })
    const cols = [
      'id',
      'referrer_id',
      'counted',
      'utm_source',
      'ip',
      'flags',
      'user_agent',
      'signed_up_at',
    ] as const
    const got = await queryRows<Record<string, unknown>>(
      ch,
      `SELECT ${cols.map((c) => (c === 'signed_up_at' ? `toUnixTimestamp64Milli(${c}) AS ${c}` : c)).join(', ')}
       FROM events WHERE startsWith(id, 'sub-') ORDER BY id`,
    )
    expect(got.map(numbers)).toEqual([
      {
        id: 'sub-1',
        referrer_id: 'r',
        counted: 1,
        utm_source: '',
        ip: '',
        flags: [],
        user_agent: '',
        signed_up_at: 0,
      },
      {
        id: 'sub-2',
        referrer_id: 'r',
        counted: 1,
        utm_source: 'news',
        ip: '10.0.0.1',
        flags: ['click_rate'],
        user_agent: '',
        signed_up_at: 0,
      },
    ])
  })

  it('writes a missing time as the epoch and an absent array as empty', async () => {
    const row: EventRow = {
      ...emptyEventRow('ev-2', 'click', 1_796_000_000_000, 1_796_000_000_000),
      is_bot: 1,
    }
    await ch.insertTsv({
      table: 'events',
      columns: EVENT_COLUMNS,
      body: tsvOf([row], writeEvent),
      dedupToken: 't2',
    })
    const [got] = await back('events', ['flags', 'signed_up_at', 'is_bot', 'ts'], 'id', 'ev-2')
    expect(numbers(got)).toEqual({ flags: [], signed_up_at: 0, is_bot: 1, ts: 1_796_000_000_000 })
  })

  it('keeps every column of a ledger row', async () => {
    const row: LedgerRow = {
      entry_id: 'commission:p\t1',
      kind: 'commission',
      user_id: 'ü1',
      account: 'cash',
      amount_cents: -1999,
      event_id: 'p\\1',
      source_user_id: 'buyer\n1',
      credit_id: 'c-1',
      ts: 1_796_000_001_001,
    }
    await ch.insertTsv({
      table: 'ledger',
      columns: LEDGER_COLUMNS,
      body: tsvOf([row], writeLedger),
      dedupToken: 't3',
    })
    const [got] = await back('ledger', LEDGER_COLUMNS, 'entry_id', row.entry_id)
    expect(numbers(got)).toEqual(row)
  })

  it('adds nothing when the same insert comes again with its token', async () => {
    const rows = Array.from({ length: 3 }, (_, i) => ({
      entry_id: `again-${i}`,
      kind: 'signup_bonus' as const,
      user_id: 'u',
      account: 'wallet' as const,
      amount_cents: 250,
      event_id: `s-${i}`,
      source_user_id: 'r',
      ts: 1_796_000_002_000,
    }))
    for (let i = 0; i < 2; i++)
      await ch.insertTsv({
        table: 'ledger',
        columns: LEDGER_COLUMNS,
        body: tsvOf(rows, writeLedger),
        dedupToken: 'again',
      })
    const [n] = await queryRows<{ n: string }>(
      ch,
      "SELECT count() AS n FROM ledger WHERE startsWith(entry_id, 'again-')",
    )
    expect(Number(n?.n)).toBe(3)
  })
})
