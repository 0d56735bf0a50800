import { AppError } from '@referral/core'
import type { Context } from 'hono'

/** The request body as JSON, or 415 (not JSON) / 400 (malformed). Size is capped by bodyLimit. */
export async function readJson(c: Context): Promise<unknown> {
  const type = c.req.header('content-type') ?? ''
  if (!/^application\/json\s*(;|$)/i.test(type)) {
    throw new AppError('unsupported_media_type', 'send Content-Type: application/json')
  }
  const text = await c.req.text()
  try {
    return JSON.parse(text) as unknown
  } catch (e) {
    throw new AppError('invalid_json', `the body is not valid JSON: ${(e as Error).message}`)
  }
}
