import { mkdtempSync, readdirSync, readFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { SignJWT } from 'jose'
import { batchLoops, cannon, getJson, waitFor200 } from './load.ts'
import { freePort, startChild, stopChild } from './proc.ts'

const KEY = 'k'.repeat(32)
const SECRET = 's'.repeat(48)
const port = await freePort()
const dataDir = mkdtempSync(join(tmpdir(), 'ra-prof-'))
const prof = process.argv.includes('--prof') ? ['--cpu-prof', '--cpu-prof-dir=/tmp/svcprof'] : []
const extra = Object.fromEntries(
  process.argv
    .filter((a) => a.includes('=') && !a.startsWith('--'))
    .map((a) => a.split('=') as [string, string]),
)
const flags = (process.env.NODE_FLAGS ?? '').split(' ').filter(Boolean)
const svc = startChild('service', process.execPath, [...prof, ...flags, 'server/dist/main.mjs'], {
  env: {
    ...process.env,
    DATA_DIR: dataDir,
    PORT: String(port),
    HOST: '127.0.0.1',
    LOG_LEVEL: 'warn',
    INGEST_API_KEY: KEY,
    AUTH_JWT_SECRET: SECRET,
    ...extra,
  },
  cwd: process.cwd(),
})
const base = `http://127.0.0.1:${port}`
await waitFor200(`${base}/readyz`, 60_000, () => svc.proc.exitCode === null)
const jwt = await new SignJWT({})
  .setProtectedHeader({ alg: 'HS256' })
  .setSubject('r')
  .setExpirationTime('1h')
  .sign(new TextEncoder().encode(SECRET))
const auth = { authorization: `Bearer ${jwt}` }
const { code } = await getJson<{ code: string }>(`${base}/v1/me/referral`, auth)
const stat = (path: string) => {
  const raw = readFileSync(path, 'utf8')
  const f = raw.slice(raw.lastIndexOf(')') + 2).split(' ')
  return {
    name: raw.slice(raw.indexOf('(') + 1, raw.lastIndexOf(')')),
    cpu: (Number(f[11]) + Number(f[12])) / 100,
    nice: Number(f[16]),
  }
}
const cpu = (pid: number) => stat(`/proc/${pid}/stat`).cpu
const threads = () => {
  const out: Record<string, number> = {}
  for (const t of readdirSync(`/proc/${svc.pid}/task`)) {
    try {
      const s = stat(`/proc/${svc.pid}/task/${t}/stat`)
      const key = t === String(svc.pid) ? 'main' : s.nice > 0 ? 'workers' : s.name
      out[key] = (out[key] ?? 0) + s.cpu
    } catch {}
  }
  return out
}
const redisPid = JSON.parse(readFileSync(join(dataDir, 'redis', 'server.json'), 'utf8')).pid as number
let peak = { anon: 0, file: 0 }
const sampler = setInterval(() => {
  try {
    const st = readFileSync(`/proc/${svc.pid}/status`, 'utf8')
    const anon = Number(st.match(/RssAnon:\s+(\d+)/)?.[1] ?? 0)
    const file = Number(st.match(/RssFile:\s+(\d+)/)?.[1] ?? 0)
    if (anon + file > peak.anon + peak.file) peak = { anon, file }
  } catch {}
}, 200)
const c0 = { svc: cpu(svc.pid), redis: cpu(redisPid), self: process.cpuUsage(), th: threads() }
const report = (seconds: number, n: number) => {
  const now = threads()
  const th = Object.entries(now)
    .map(([k, v]) => [k, v - (c0.th[k] ?? 0)] as const)
    .filter(([, v]) => v > 0.05)
    .sort((a, b) => b[1] - a[1])
  const self = process.cpuUsage(c0.self)
  console.log(
    `over ${seconds.toFixed(1)} s: service ${(cpu(svc.pid) - c0.svc).toFixed(1)} s, redis ${(cpu(redisPid) - c0.redis).toFixed(1)} s, load gen ${((self.user + self.system) / 1e6).toFixed(1)} s`,
  )
  console.log(`  threads: ${th.map(([k, v]) => `${k} ${v.toFixed(2)}`).join(', ')}`)
  console.log(
    `  per event/request: main ${((((now.main ?? 0) - (c0.th.main ?? 0)) / n) * 1e6).toFixed(1)} us, service ${(((cpu(svc.pid) - c0.svc) / n) * 1e6).toFixed(1)} us, redis ${(((cpu(redisPid) - c0.redis) / n) * 1e6).toFixed(1)} us`,
  )
  console.log(`  peak RSS anon/file MiB ${Math.round(peak.anon / 1024)} / ${Math.round(peak.file / 1024)}`)
}
const t0 = performance.now()
if (process.env.MODE === 'single') {
  const target = {
    url: `${base}/v1/events`,
    headers: { authorization: `Bearer ${KEY}`, 'content-type': 'application/json' },
    connections: 50,
    body: JSON.stringify({ type: 'click', code, visitor_id: 'v1' }),
  }
  const one = await cannon({ ...target, durationS: Number(process.env.S ?? 5) })
  console.log(`single ${Math.round(one.okPerSec)} req/s p50 ${one.p50} p99 ${one.p99}`)
  report((performance.now() - t0) / 1000, one.ok)
} else {
  const ms = Number(process.env.MS ?? 8000)
  const r = await batchLoops({
    url: `${base}/v1/events`,
    headers: { authorization: `Bearer ${KEY}`, 'content-type': 'application/json' },
    code,
    loops: 8,
    batchSize: 1000,
    durationMs: ms,
    idPrefix: 'p',
    checkAccepted: false,
  })
  const tEdge = performance.now()
  for (;;) {
    const s = await getJson<{ total_clicks: number }>(`${base}/v1/me/stats`, auth)
    if (s.total_clicks >= r.accepted) break
    await new Promise((x) => setTimeout(x, 50))
  }
  const tDone = performance.now()
  console.log(
    `accepted ${r.accepted} edge ${Math.round(r.accepted / ((tEdge - t0) / 1000))}/s counted e2e ${Math.round(r.accepted / ((tDone - t0) / 1000))}/s`,
  )
  report((tDone - t0) / 1000, r.accepted)
}
clearInterval(sampler)
if (process.env.STATS) {
  const { Redis } = await import('ioredis')
  const port = JSON.parse(readFileSync(join(dataDir, 'redis', 'server.json'), 'utf8')).port as number
  const r = new Redis({ port, host: '127.0.0.1' })
  const lines = (await r.info('commandstats')).split('\n').filter((l) => l.includes('calls='))
  const parsed = lines
    .map((l) => ({
      cmd: l.split(':')[0],
      calls: Number(l.match(/calls=(\d+)/)?.[1]),
      usec: Number(l.match(/usec=(\d+)/)?.[1]),
    }))
    .sort((a, b) => b.usec - a.usec)
    .slice(0, 12)
  for (const p of parsed)
    console.log(`  ${p.cmd} calls=${p.calls} usec=${p.usec} per=${(p.usec / p.calls).toFixed(1)}`)
  const lua = (await r.info('stats')).split('\n').filter((l) => /total_commands|instantaneous/.test(l))
  console.log(lua.join(' '))
  r.disconnect()
}
await stopChild(svc, 'SIGTERM', 30_000)
