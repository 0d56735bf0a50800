/** What every growth report shares: its rows, its range, the fraud-flag filter. */

export type Row = Record<string, string | number | null>

export type Range = {
  from: number
  to: number
}

/**
 * Which events a report counts by their fraud flags: all of them, only the unflagged, or only
 * the flagged. Every growth report takes it (`?flagged=`).
 */
export const FLAG_FILTERS = ['include', 'exclude', 'only'] as const
export type FlagFilter = (typeof FLAG_FILTERS)[number]
/** the filter as a condition on raw events */
export const FLAGGED_EVENTS: Record<FlagFilter, string> = {
  include: '1',
  exclude: 'empty(flags)',
  only: 'notEmpty(flags)',
}

/** The named columns of a result row as numbers (ClickHouse answers 64-bit integers as strings). */
export const numbers = (r: Record<string, string>, keys: readonly string[]) =>
  Object.fromEntries(keys.map((k) => [k, Number(r[k] ?? 0)])) as Record<string, number>
