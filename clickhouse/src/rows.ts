/** The shapes of rows as written to ClickHouse (JSONEachRow); times are epoch milliseconds. */

export interface EventRow {
  id: string
  type: 'click' | 'signup' | 'purchase' | 'refund' | 'spend' | 'decision'
  ts: number
  received_at: number
  referrer_id: string
  code: string
  user_id: string
  visitor_id: string
  counted: 0 | 1
  first_purchase: 0 | 1
  note: string
  amount_cents: number
  commission_cents: number
  track: string
  currency: string
  plan: string
  purchase_id: string
  url: string
  referrer_url: string
  utm_source: string
  utm_medium: string
  utm_campaign: string
  ip: string
  user_agent: string
  country: string
  is_bot: 0 | 1
  /** fraud flags (workers/src/fraud.ts); absent when none */
  flags?: string[]
  /** on a first purchase, the buyer's signup (0009): its visitor, time and whether it was flagged */
  signup_visitor_id?: string
  signed_up_at?: number
  signup_flagged?: 0 | 1
  /** a decision's admin and stated reason */
  actor?: string
  reason?: string
}

/** A row with nothing set but what every row has: the empty values are the columns' defaults. */
export function emptyEventRow(id: string, type: EventRow['type'], ts: number, receivedAt: number): EventRow {
  return {
    id,
    type,
    ts,
    received_at: receivedAt,
    referrer_id: '',
    code: '',
    user_id: '',
    visitor_id: '',
    counted: 0,
    first_purchase: 0,
    note: '',
    amount_cents: 0,
    commission_cents: 0,
    track: '',
    currency: '',
    plan: '',
    purchase_id: '',
    url: '',
    referrer_url: '',
    utm_source: '',
    utm_medium: '',
    utm_campaign: '',
    ip: '',
    user_agent: '',
    country: '',
    is_bot: 0,
  }
}

export type LedgerKind =
  | 'commission'
  | 'commission_reversal'
  | 'signup_bonus'
  | 'bonus_expiry'
  | 'spend'
  | 'payout'
  | 'payout_failure'
  | 'hold_release'
  | 'commission_approved'
  | 'commission_rejected'

/** The ledger kinds that make a referrer's earnings (net of refunds and rejected holds). */
export const EARNING_KINDS_SQL = "('commission', 'commission_reversal', 'commission_rejected')"
/** The ledger kinds that bring a Partner's cash in (with account = 'cash'): commissions, approved holds, less refunds. */
export const CASH_EARNING_KINDS_SQL = "('commission', 'commission_reversal', 'commission_approved')"

export interface LedgerRow {
  entry_id: string
  kind: LedgerKind
  user_id: string
  /** held: a flagged commission until an admin approves (wallet or cash) or rejects it */
  account: 'wallet' | 'cash' | 'held'
  amount_cents: number
  event_id: string
  source_user_id: string
  /** the wallet credit a spend drew on (one entry per credit) */
  credit_id?: string
  ts: number
}

/**
 * Rows as ClickHouse's TabSeparated text, the format the worker inserts and keeps in Redis
 * until the rows are stored: one line per row, the columns in the order listed here
 * (`INSERT INTO events (EVENT_COLUMNS) FORMAT TabSeparated`). chDB parses it about twice as
 * fast as JSONEachRow and takes it as one buffer, off the event loop.
 */
export const EVENT_COLUMNS = [
  'id',
  'type',
  'ts',
  'received_at',
  'referrer_id',
  'code',
  'user_id',
  'visitor_id',
  'counted',
  'first_purchase',
  'note',
  'amount_cents',
  'commission_cents',
  'track',
  'currency',
  'plan',
  'purchase_id',
  'url',
  'referrer_url',
  'utm_source',
  'utm_medium',
  'utm_campaign',
  'ip',
  'user_agent',
  'country',
  'is_bot',
  'flags',
  'signup_visitor_id',
  'signed_up_at',
  'signup_flagged',
  'actor',
  'reason',
] as const satisfies ReadonlyArray<keyof EventRow>

export const LEDGER_COLUMNS = [
  'entry_id',
  'kind',
  'user_id',
  'account',
  'amount_cents',
  'event_id',
  'source_user_id',
  'credit_id',
  'ts',
] as const satisfies ReadonlyArray<keyof LedgerRow>

const NEEDS_ESCAPE = /[\\\t\n\r\0]/
const ESCAPES: Record<string, string> = { '\\': '\\\\', '\t': '\\t', '\n': '\\n', '\r': '\\r', '\0': '\\0' }

/** A string as a TabSeparated field: backslash, tab, newline, carriage return and NUL escaped. */
export function tsvString(s: string): string {
  return s.length === 0 || !NEEDS_ESCAPE.test(s) ? s : s.replace(/[\\\t\n\r\0]/g, (c) => ESCAPES[c] ?? c)
}

const TAB = 9
const NL = 10
const BACKSLASH = 92
/** the letter after a backslash for each character TabSeparated escapes (0 for the others) */
const ESCAPE_LETTER = new Uint8Array(128)
ESCAPE_LETTER[0] = 48 // \0
ESCAPE_LETTER[TAB] = 116 // \t
ESCAPE_LETTER[NL] = 110 // \n
ESCAPE_LETTER[13] = 114 // \r
ESCAPE_LETTER[BACKSLASH] = BACKSLASH

/**
 * Builds a TabSeparated body straight into bytes: fields are copied character by character
 * (escaped on the way), without the strings a line per row would make. On this machine a
 * 10,000-row body took ~40 ms as joined template strings and a few ms this way.
 */
export class TsvWriter {
  private buf: Buffer
  private pos = 0
  private lastTime = 0
  private lastTimeAt = 0

  constructor(initialBytes = 64 * 1024) {
    this.buf = Buffer.allocUnsafe(initialBytes)
  }

  get length(): number {
    return this.pos
  }

  private room(bytes: number): void {
    if (this.pos + bytes <= this.buf.length) return
    const next = Buffer.allocUnsafe(Math.max(this.buf.length * 2, this.pos + bytes))
    this.buf.copy(next, 0, 0, this.pos)
    this.buf = next
  }

  /** a string field, escaped (what follows it is the caller's: tab() or end()) */
  str(s: string): this {
    const n = s.length
    this.room(n * 3)
    const b = this.buf
    let p = this.pos
    for (let i = 0; i < n; i++) {
      const c = s.charCodeAt(i)
      if (c >= 128) {
        // the rest has characters beyond ASCII: escaped as text, written as UTF-8
        this.pos = p
        p += b.write(tsvString(s.slice(i)), p, 'utf8')
        break
      }
      const e = ESCAPE_LETTER[c] ?? 0
      if (e !== 0) {
        b[p++] = BACKSLASH
        b[p++] = e
      } else b[p++] = c
    }
    this.pos = p
    return this
  }

  /** an integer field */
  int(n: number): this {
    if (n >= 0 && n < 10) {
      this.room(1)
      this.buf[this.pos++] = 48 + n
      return this
    }
    return this.ascii(String(n))
  }

  /** a DateTime64(3) field from epoch milliseconds */
  time(ms: number): this {
    if (ms < 1e12 || ms >= 1e13) return this.ascii(tsvTime(ms))
    // 13 digits: ten of seconds, a point, three of milliseconds (rows of a batch share times)
    this.room(14)
    const b = this.buf
    const p = this.pos
    if (ms === this.lastTime) {
      // byte by byte: Buffer#copy makes a Uint8Array view of its source each call (~160
      // bytes an event of garbage in the batched bench, and 4x the time for 14 bytes)
      const from = this.lastTimeAt
      for (let i = 0; i < 14; i++) b[p + i] = b[from + i] as number
      this.pos = p + 14
      return this
    }
    this.lastTime = ms
    this.lastTimeAt = p
    let v = ms
    for (let i = 13; i >= 11; i--) {
      b[p + i] = 48 + (v % 10)
      v = Math.floor(v / 10)
    }
    b[p + 10] = 46
    for (let i = 9; i >= 0; i--) {
      b[p + i] = 48 + (v % 10)
      v = Math.floor(v / 10)
    }
    this.pos = p + 14
    return this
  }

  /** an Array(String) field: ['a','b'] (its elements quoted and escaped, the field as it is) */
  array(items: readonly string[] | undefined): this {
    const text = tsvArray(items)
    this.room(text.length * 3)
    this.pos += this.buf.write(text, this.pos, 'utf8')
    return this
  }

  tab(): this {
    this.room(1)
    this.buf[this.pos++] = TAB
    return this
  }

  /** ends a row */
  end(): this {
    this.room(1)
    this.buf[this.pos++] = NL
    return this
  }

  /** the body written so far (a view of the writer's buffer: the writer is done with it) */
  take(): Buffer {
    return this.buf.subarray(0, this.pos)
  }

  private ascii(s: string): this {
    const n = s.length
    this.room(n)
    for (let i = 0; i < n; i++) this.buf[this.pos++] = s.charCodeAt(i)
    return this
  }
}

const EPOCH = '1970-01-01 00:00:00.000'

/**
 * Epoch milliseconds as a DateTime64(3) field: seconds with three decimals. ClickHouse reads a
 * short number as a date instead ("0.000" is refused), so times before 2001 are written out.
 */
export function tsvTime(ms: number): string {
  if (ms === 0) return EPOCH
  if (ms < 1e12) return new Date(ms).toISOString().replace('T', ' ').slice(0, 23)
  const s = Math.floor(ms / 1000)
  const frac = ms - s * 1000
  return `${s}.${frac < 10 ? '00' : frac < 100 ? '0' : ''}${frac}`
}

/** An Array(String) field's text: ['a','b'], each element quoted, its quotes and specials escaped. */
function tsvArray(items: readonly string[] | undefined): string {
  if (items === undefined || items.length === 0) return '[]'
  return `[${items.map((i) => `'${tsvString(i).replaceAll("'", "\\'")}'`).join(',')}]`
}

type EventColumn = (typeof EVENT_COLUMNS)[number]

/** How each events column is written, and whether a row holds anything but its default. */
const EVENT_FIELDS: Record<
  EventColumn,
  { write: (w: TsvWriter, r: EventRow) => void; set: (r: EventRow) => boolean }
> = {
  id: { write: (w, r) => w.str(r.id), set: () => true },
  type: { write: (w, r) => w.str(r.type), set: () => true },
  ts: { write: (w, r) => w.time(r.ts), set: () => true },
  received_at: { write: (w, r) => w.time(r.received_at), set: () => true },
  referrer_id: { write: (w, r) => w.str(r.referrer_id), set: (r) => r.referrer_id !== '' },
  code: { write: (w, r) => w.str(r.code), set: (r) => r.code !== '' },
  user_id: { write: (w, r) => w.str(r.user_id), set: (r) => r.user_id !== '' },
  visitor_id: { write: (w, r) => w.str(r.visitor_id), set: (r) => r.visitor_id !== '' },
  counted: { write: (w, r) => w.int(r.counted), set: (r) => r.counted !== 0 },
  first_purchase: { write: (w, r) => w.int(r.first_purchase), set: (r) => r.first_purchase !== 0 },
  note: { write: (w, r) => w.str(r.note), set: (r) => r.note !== '' },
  amount_cents: { write: (w, r) => w.int(r.amount_cents), set: (r) => r.amount_cents !== 0 },
  commission_cents: { write: (w, r) => w.int(r.commission_cents), set: (r) => r.commission_cents !== 0 },
  track: { write: (w, r) => w.str(r.track), set: (r) => r.track !== '' },
  currency: { write: (w, r) => w.str(r.currency), set: (r) => r.currency !== '' },
  plan: { write: (w, r) => w.str(r.plan), set: (r) => r.plan !== '' },
  purchase_id: { write: (w, r) => w.str(r.purchase_id), set: (r) => r.purchase_id !== '' },
  url: { write: (w, r) => w.str(r.url), set: (r) => r.url !== '' },
  referrer_url: { write: (w, r) => w.str(r.referrer_url), set: (r) => r.referrer_url !== '' },
  utm_source: { write: (w, r) => w.str(r.utm_source), set: (r) => r.utm_source !== '' },
  utm_medium: { write: (w, r) => w.str(r.utm_medium), set: (r) => r.utm_medium !== '' },
  utm_campaign: { write: (w, r) => w.str(r.utm_campaign), set: (r) => r.utm_campaign !== '' },
  ip: { write: (w, r) => w.str(r.ip), set: (r) => r.ip !== '' },
  user_agent: { write: (w, r) => w.str(r.user_agent), set: (r) => r.user_agent !== '' },
  country: { write: (w, r) => w.str(r.country), set: (r) => r.country !== '' },
  is_bot: { write: (w, r) => w.int(r.is_bot), set: (r) => r.is_bot !== 0 },
  flags: { write: (w, r) => w.array(r.flags), set: (r) => r.flags !== undefined && r.flags.length > 0 },
  signup_visitor_id: {
    write: (w, r) => w.str(r.signup_visitor_id ?? ''),
    set: (r) => (r.signup_visitor_id ?? '') !== '',
  },
  signed_up_at: { write: (w, r) => w.time(r.signed_up_at ?? 0), set: (r) => (r.signed_up_at ?? 0) !== 0 },
  signup_flagged: {
    write: (w, r) => w.int(r.signup_flagged ?? 0),
    set: (r) => (r.signup_flagged ?? 0) !== 0,
  },
  actor: { write: (w, r) => w.str(r.actor ?? ''), set: (r) => (r.actor ?? '') !== '' },
  reason: { write: (w, r) => w.str(r.reason ?? ''), set: (r) => (r.reason ?? '') !== '' },
}
const FIELDS = EVENT_COLUMNS.map((c) => EVENT_FIELDS[c])

/**
 * Rows of the events table as TabSeparated, in the columns that some row sets: `columns` is a
 * bit per EVENT_COLUMNS entry. The others take their defaults ('' and 0, what the rows hold):
 * chDB parses each field it is sent, empty or not, and a click sets 7 to 15 of the 32
 * columns (measured: 5.0 us a row with every column, 1.7 with a click's seven).
 */
export interface EventsTsv {
  columns: number
  body: Buffer
}

export function eventsTsv(rows: readonly EventRow[]): EventsTsv {
  let columns = 0
  for (const r of rows) {
    for (let c = 0; c < FIELDS.length; c++)
      if ((columns & (1 << c)) === 0 && FIELDS[c]?.set(r)) columns |= 1 << c
  }
  const chosen = FIELDS.filter((_, c) => (columns & (1 << c)) !== 0)
  const w = new TsvWriter(Math.max(256, rows.length * 24 * chosen.length))
  for (const r of rows) {
    for (let i = 0; i < chosen.length; i++) {
      if (i > 0) w.tab()
      chosen[i]?.write(w, r)
    }
    w.end()
  }
  return { columns: columns >>> 0, body: w.take() }
}

/** The column names of an EventsTsv's `columns` bits, in EVENT_COLUMNS order. */
export function eventColumnsOf(columns: number): EventColumn[] {
  return EVENT_COLUMNS.filter((_, c) => (columns & (1 << c)) !== 0)
}

/** Appends one events row with every column, in EVENT_COLUMNS order. */
export function writeEvent(w: TsvWriter, r: EventRow): void {
  for (let c = 0; c < FIELDS.length; c++) {
    if (c > 0) w.tab()
    FIELDS[c]?.write(w, r)
  }
  w.end()
}

/** Appends one ledger row, in LEDGER_COLUMNS order. */
export function writeLedger(w: TsvWriter, r: LedgerRow): void {
  w.str(r.entry_id).tab().str(r.kind).tab().str(r.user_id).tab().str(r.account).tab()
  w.int(r.amount_cents).tab().str(r.event_id).tab().str(r.source_user_id).tab()
  w.str(r.credit_id ?? '')
    .tab()
    .time(r.ts)
    .end()
}

/** Rows as one TabSeparated body (empty for none). */
export function tsvOf<R>(rows: readonly R[], write: (w: TsvWriter, r: R) => void): Buffer {
  const w = new TsvWriter(Math.max(256, rows.length * 160))
  for (const r of rows) write(w, r)
  return w.take()
}
