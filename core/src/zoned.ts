/**
 * Calendar buckets in an IANA time zone, with DST: a day is 23 or 25 hours when the clocks
 * change, a week starts on Monday, a month on the 1st, all at local midnight.
 */

export type Interval = 'hour' | 'day' | 'week' | 'month'

export function isTimeZone(tz: string): boolean {
  try {
    new Intl.DateTimeFormat('en-US', { timeZone: tz })
    return true
  } catch {
    return false
  }
}

const formatters = new Map<string, Intl.DateTimeFormat>()
function formatter(tz: string): Intl.DateTimeFormat {
  let f = formatters.get(tz)
  if (f === undefined) {
    f = new Intl.DateTimeFormat('en-US', {
      timeZone: tz,
      hourCycle: 'h23',
      year: 'numeric',
      month: '2-digit',
      day: '2-digit',
      hour: '2-digit',
      minute: '2-digit',
      second: '2-digit',
    })
    formatters.set(tz, f)
  }
  return f
}

interface Wall {
  y: number
  m: number // 1-12
  d: number
  h: number
  min: number
  s: number
}

function wallTime(ms: number, tz: string): Wall {
  const parts: Record<string, number> = {}
  for (const p of formatter(tz).formatToParts(new Date(ms)))
    if (p.type !== 'literal') parts[p.type] = Number(p.value)
  return {
    y: parts.year ?? 0,
    m: parts.month ?? 1,
    d: parts.day ?? 1,
    h: parts.hour ?? 0,
    min: parts.minute ?? 0,
    s: parts.second ?? 0,
  }
}

/** The zone's offset from UTC at an instant, in ms (positive east of Greenwich). */
export function offsetAt(ms: number, tz: string): number {
  const w = wallTime(ms, tz)
  const asUtc = Date.UTC(w.y, w.m - 1, w.d, w.h, w.min, w.s)
  return asUtc - (ms - (((ms % 1000) + 1000) % 1000))
}

/** The instant of a local wall time; in a gap (spring forward) the first instant after it. */
function instantOf(y: number, m: number, d: number, h: number, tz: string): number {
  const guess = Date.UTC(y, m - 1, d, h)
  let t = guess - offsetAt(guess, tz)
  t = guess - offsetAt(t, tz)
  const w = wallTime(t, tz)
  if (w.h !== ((h % 24) + 24) % 24 && h === 0) {
    // midnight did not exist that day: the day starts at the first instant that did
    return guess - offsetAt(guess + 86_400_000, tz)
  }
  return t
}

/** Start of the bucket holding `ms`. */
export function bucketStart(ms: number, tz: string, interval: Interval): number {
  const w = wallTime(ms, tz)
  switch (interval) {
    case 'hour':
      return ms - (w.min * 60_000 + w.s * 1000 + (((ms % 1000) + 1000) % 1000))
    case 'day':
      return instantOf(w.y, w.m, w.d, 0, tz)
    case 'week': {
      const dow = (new Date(Date.UTC(w.y, w.m - 1, w.d)).getUTCDay() + 6) % 7 // Monday = 0
      const monday = new Date(Date.UTC(w.y, w.m - 1, w.d - dow))
      return instantOf(monday.getUTCFullYear(), monday.getUTCMonth() + 1, monday.getUTCDate(), 0, tz)
    }
    case 'month':
      return instantOf(w.y, w.m, 1, 0, tz)
  }
}

/** Start of the bucket after the one starting at `start`. */
export function nextBucket(start: number, tz: string, interval: Interval): number {
  if (interval === 'hour') return start + 3_600_000
  const w = wallTime(start, tz)
  if (interval === 'day') {
    const n = new Date(Date.UTC(w.y, w.m - 1, w.d + 1))
    return instantOf(n.getUTCFullYear(), n.getUTCMonth() + 1, n.getUTCDate(), 0, tz)
  }
  if (interval === 'week') {
    const n = new Date(Date.UTC(w.y, w.m - 1, w.d + 7))
    return instantOf(n.getUTCFullYear(), n.getUTCMonth() + 1, n.getUTCDate(), 0, tz)
  }
  const n = new Date(Date.UTC(w.y, w.m, 1))
  return instantOf(n.getUTCFullYear(), n.getUTCMonth() + 1, 1, 0, tz)
}

/** Every bucket start from the one holding `from` to the one holding `to` (inclusive). */
export function buckets(
  from: number,
  to: number,
  tz: string,
  interval: Interval,
  max: number,
): number[] | null {
  const out: number[] = []
  for (let t = bucketStart(from, tz, interval); t <= to; t = nextBucket(t, tz, interval)) {
    out.push(t)
    if (out.length > max) return null
  }
  return out
}

/** An ISO-8601 string with the zone's offset at that instant, e.g. 2026-03-08T00:00:00-05:00. */
export function isoInZone(ms: number, tz: string): string {
  const off = offsetAt(ms, tz)
  const w = wallTime(ms, tz)
  const pad = (n: number, l = 2) => String(Math.abs(n)).padStart(l, '0')
  const sign = off >= 0 ? '+' : '-'
  const oh = Math.floor(Math.abs(off) / 3_600_000)
  const om = Math.floor((Math.abs(off) % 3_600_000) / 60_000)
  return `${pad(w.y, 4)}-${pad(w.m)}-${pad(w.d)}T${pad(w.h)}:${pad(w.min)}:${pad(w.s)}${sign}${pad(oh)}:${pad(om)}`
}
