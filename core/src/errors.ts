/**
 * The one error model. Code throws `AppError` with a code; the HTTP layer maps the code to
 * a status with `statusOf` and renders `{"error": {"code", "message", "details"}}`.
 */

export const errorStatus = {
  bad_request: 400,
  invalid_json: 400,
  validation_failed: 400,
  unauthorized: 401,
  forbidden: 403,
  not_found: 404,
  conflict: 409,
  payload_too_large: 413,
  unsupported_media_type: 415,
  rate_limited: 429,
  internal: 500,
  unavailable: 503,
} as const

export type ErrorCode = keyof typeof errorStatus

export interface ErrorDetail {
  /** index of the event in the request, for batch ingestion */
  index?: number
  /** where in the value the problem is, e.g. "amount_cents" or "events.3.code" */
  path: string
  message: string
}

export class AppError extends Error {
  constructor(
    public readonly code: ErrorCode,
    message: string,
    public readonly details: ErrorDetail[] = [],
    options?: { cause?: unknown; headers?: Record<string, string> },
  ) {
    super(message, options?.cause === undefined ? undefined : { cause: options.cause })
    this.name = 'AppError'
    this.headers = options?.headers ?? {}
  }

  readonly headers: Record<string, string>

  get status(): (typeof errorStatus)[ErrorCode] {
    return errorStatus[this.code]
  }

  toBody(): { error: { code: ErrorCode; message: string; details: ErrorDetail[] } } {
    return { error: { code: this.code, message: this.message, details: this.details } }
  }
}

export function isAppError(e: unknown): e is AppError {
  return e instanceof AppError
}
