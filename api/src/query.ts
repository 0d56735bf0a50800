import type { ClickHouse } from '@referral/clickhouse'
import { AppError } from '@referral/core'
import { z } from 'zod'
import type { ApiDeps } from './context.ts'

/** A point in time in a query string: epoch milliseconds or ISO-8601 with an offset. */
export const instant = z.union([
  z.coerce.number().int(),
  z.iso.datetime({ offset: true }).transform((s) => Date.parse(s)),
])

/** Query parameters through a zod schema, or 400 with one detail per problem. */
export function parseQuery<T extends z.ZodType>(schema: T, query: Record<string, string>): z.output<T> {
  const r = schema.safeParse(query)
  if (!r.success) {
    throw new AppError(
      'validation_failed',
      'invalid query parameters',
      r.error.issues.map((i) => ({ path: i.path.join('.'), message: i.message })),
    )
  }
  return r.data
}

const DAY = 86_400_000

/** A report's period from optional `from`/`to`: up to now, 30 days by default; 400 if from is after to. */
export function rangeOf(q: { from?: number | undefined; to?: number | undefined }): {
  from: number
  to: number
} {
  const to = q.to ?? Date.now()
  const from = q.from ?? to - 30 * DAY
  if (from > to)
    throw new AppError('validation_failed', '"from" is after "to"', [{ path: 'from', message: 'before to' }])
  return { from, to }
}

/** The process's ClickHouse, or 503 where this API process has none (chDB owned by workers). */
export function needClickHouse(deps: ApiDeps): ClickHouse {
  if (deps.ch === null) throw new AppError('unavailable', 'this API process has no ClickHouse connection')
  return deps.ch
}

/** An epoch-ms time as ISO-8601, null staying null. */
export const iso = (ms: number | null): string | null => (ms === null ? null : new Date(ms).toISOString())
