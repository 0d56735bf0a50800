import { readFileSync } from 'node:fs'
import { cannon } from './load.ts'
import { startChild, stopChild } from './proc.ts'

const bare = startChild('bare', process.execPath, ['--import', 'tsx', 'bench/bare-server.ts'], {
  env: { ...process.env, PORT: '0' },
  cwd: process.cwd(),
})
const line = await bare.waitForLine((l) => l.startsWith('{"port"'), 20_000)
const url = `http://127.0.0.1:${(JSON.parse(line) as { port: number }).port}/v1/events`
const cpu = (pid: number) => {
  const f = readFileSync(`/proc/${pid}/stat`, 'utf8').split(') ')[1]?.split(' ') ?? []
  return (Number(f[11]) + Number(f[12])) / 100
}
const t = {
  url,
  headers: { 'content-type': 'application/json' },
  connections: 50,
  body: '{"type":"click","code":"AAAAAAAA","visitor_id":"v1"}',
}
await cannon({ ...t, durationS: 1 })
const c0 = cpu(bare.pid),
  s0 = process.cpuUsage()
const r = await cannon({ ...t, durationS: 5 })
const s1 = process.cpuUsage(s0)
console.log(
  `bare ${Math.round(r.okPerSec)} req/s; bare server cpu ${(cpu(bare.pid) - c0).toFixed(2)} s, autocannon ${((s1.user + s1.system) / 1e6).toFixed(2)} s over 5 s; per request: server ${(((cpu(bare.pid) - c0) / (r.okPerSec * 5)) * 1e6).toFixed(1)} us`,
)
await stopChild(bare, 'SIGTERM', 5000)
