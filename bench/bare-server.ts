import { createServer } from 'node:http'

/**
 * The baseline of `npm run bench`: a bare node:http server that reads the request body and
 * answers 202 with a small JSON body, doing no other work. Listens on 127.0.0.1:$PORT.
 */
const port = Number(process.env.PORT ?? '0')
const reply = JSON.stringify({ accepted: 1 })

const server = createServer((req, res) => {
  let bytes = 0
  req.on('data', (chunk: Buffer) => {
    bytes += chunk.length
  })
  req.on('end', () => {
    res.writeHead(bytes >= 0 ? 202 : 500, {
      'content-type': 'application/json',
      'content-length': Buffer.byteLength(reply),
    })
    res.end(reply)
  })
})

server.listen(port, '127.0.0.1', () => {
  const addr = server.address()
  const bound = typeof addr === 'object' && addr !== null ? addr.port : port
  process.stdout.write(`${JSON.stringify({ port: bound })}\n`)
})

const stop = () => {
  server.close(() => process.exit(0))
  server.closeAllConnections()
}
process.on('SIGTERM', stop)
process.on('SIGINT', stop)
