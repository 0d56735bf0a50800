import type { IncomingMessage } from 'node:http'
import { AppError, MAX_BODY_BYTES } from '@referral/core'
import type { Context } from 'hono'

/**
 * The request body as text, at most `limit` bytes (413 past it). On Node it is read from
 * the socket's IncomingMessage, which spares building a web Request and its stream for every
 * event; in-process tests (app.request) have none and read the web Request.
 */
export async function readBody(c: Context, limit = MAX_BODY_BYTES): Promise<string> {
  const incoming = nodeRequest(c)
  if (incoming !== undefined) return readIncoming(incoming, limit)
  const declared = Number(c.req.header('content-length') ?? Number.NaN)
  if (declared > limit) throw tooLarge()
  const bytes = new Uint8Array(await c.req.arrayBuffer())
  if (bytes.byteLength > limit) throw tooLarge()
  return utf8(bytes)
}

/** A node:http request's body as text, at most `limit` bytes (413 past it, 400 if not UTF-8). */
export function readIncoming(incoming: IncomingMessage, limit = MAX_BODY_BYTES): Promise<string> {
  const declared = Number(incoming.headers['content-length'] ?? Number.NaN)
  if (declared > limit) return Promise.reject(tooLarge())
  // listeners rather than an async iterator: most bodies are one chunk, and the iterator's
  // promises per chunk were a visible share of a single event's cost
  return new Promise((resolve, reject) => {
    const chunks: Buffer[] = []
    let size = 0
    const onData = (chunk: Buffer) => {
      size += chunk.length
      if (size > limit) {
        incoming.off('data', onData)
        incoming.destroy()
        reject(tooLarge())
        return
      }
      chunks.push(chunk)
    }
    incoming.on('data', onData)
    incoming.once('error', reject)
    // a client gone before the end of its body: nothing to answer (settles once, like the rest)
    incoming.once('close', () => {
      if (!incoming.complete) reject(new Error('the request closed before its body ended'))
    })
    incoming.once('end', () => {
      try {
        resolve(
          utf8(chunks.length === 1 && chunks[0] !== undefined ? chunks[0] : Buffer.concat(chunks, size)),
        )
      } catch (e) {
        reject(e)
      }
    })
  })
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
export function readJson(c: Context): Promise<unknown> {
  return parseJsonBody(c.req.header('content-type'), () => readBody(c))
}

/** What `readJson` does, given the Content-Type header and a way to read the body. */
export async function parseJsonBody(
  contentType: string | undefined,
  readText: () => Promise<string>,
): Promise<unknown> {
  if (!/^application\/json\s*(;|$)/i.test(contentType ?? '')) {
    throw new AppError('unsupported_media_type', 'send Content-Type: application/json')
  }
  const text = await readText()
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
