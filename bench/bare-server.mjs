// Baseline for the ingest benchmark: node:http reading the body and answering 202, no other work.
import { createServer } from 'node:http'

const port = Number(process.argv[2] ?? 0)
createServer((req, res) => {
  req.on('data', () => {})
  req.on('end', () => {
    res.writeHead(202, { 'content-type': 'application/json' })
    res.end('{"accepted":1,"ids":["x"]}')
  })
}).listen(port, '127.0.0.1', () => process.stdout.write('ready\n'))
