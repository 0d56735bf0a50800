import type { IncomingMessage } from 'node:http'
import { AppError, MAX_BODY_BYTES } from '@referral/core'
import type { Context } from 'hono'

/**
 * The request body as text, at most `limit` bytes (413 past it). On Node it is read from
 * the socket's IncomingMessage, which spares building a web Request and its stream for every
 * event; in-process tests (app.request) have none and read the web Request.
 */
export async function readBody(c: Context, limit = MAX_BODY_BYTES): Promise<string> {
  const declared = Number(c.req.header('content-length') ?? Number.NaN)
  if (declared > limit) throw tooLarge()
  const incoming = nodeRequest(c)
  if (incoming === undefined) {
    const bytes = new Uint8Array(await c.req.arrayBuffer())
    if (bytes.byteLength > limit) throw tooLarge()
    return utf8(bytes)
  }
  const chunks: Buffer[] = []
  let size = 0
  for await (const chunk of incoming) {
    const buf = chunk as Buffer
    size += buf.length
    if (size > limit) throw tooLarge()
    chunks.push(buf)
  }
  return utf8(Buffer.concat(chunks, size))
}

const strictUtf8 = new TextDecoder('utf-8', { fatal: true })

/** Bytes that are not UTF-8 are refused, not silently replaced with U+FFFD. */
function utf8(bytes: Uint8Array): string {
  try {
    return strictUtf8.decode(bytes)
  } catch {
    throw new AppError('invalid_json', 'the body is not valid UTF-8')
  }
}

/** The body as JSON, or 415 (not JSON) / 400 (malformed) / 413 (over 1 MiB). */
export async function readJson(c: Context): Promise<unknown> {
  const type = c.req.header('content-type') ?? ''
  if (!/^application\/json\s*(;|$)/i.test(type)) {
    throw new AppError('unsupported_media_type', 'send Content-Type: application/json')
  }
  const text = await readBody(c)
  try {
    return JSON.parse(text) as unknown
  } catch (e) {
    throw new AppError('invalid_json', `the body is not valid JSON: ${(e as Error).message}`)
  }
}

function nodeRequest(c: Context): IncomingMessage | undefined {
  const env: unknown = c.env
  if (typeof env !== 'object' || env === null || !('incoming' in env)) return undefined
  const incoming = (env as { incoming: unknown }).incoming
  return typeof incoming === 'object' && incoming !== null && 'socket' in incoming
    ? (incoming as IncomingMessage)
    : undefined
}

function tooLarge(): AppError {
  return new AppError(
    'payload_too_large',
    `the request body is larger than ${MAX_BODY_BYTES / 1024 / 1024} MiB`,
  )
}
