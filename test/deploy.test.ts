import { readFileSync } from 'node:fs'
import { join } from 'node:path'
import { CONFIG_VARIABLES } from '@referral/core'
import { describe, expect, it } from 'vitest'
import { parse } from 'yaml'

const ROOT = join(import.meta.dirname, '..')
const read = (f: string) => readFileSync(join(ROOT, f), 'utf8')

interface Service {
  image?: string
  build?: unknown
  command?: string[]
  depends_on?: Record<string, { condition: string }>
  healthcheck?: { test: string[] }
  volumes?: string[]
  environment?: Record<string, string>
}

/** The deployment files wire what the README says; no Docker engine is needed to check that. */
describe('deployment files', () => {
  const compose = parse(read('docker-compose.yml'), { merge: true }) as { services: Record<string, Service> }
  const s = compose.services

  it('pins ClickHouse and Redis, with data volumes and health checks', () => {
    expect(s.clickhouse?.image).toMatch(/^clickhouse\/clickhouse-server:\d+\.\d+\.\d+\.\d+-lts$/)
    expect(s.redis?.image).toMatch(/^redis:\d+\.\d+\.\d+/)
    for (const name of ['clickhouse', 'redis']) {
      expect(s[name]?.volumes?.length).toBeGreaterThan(0)
      expect(s[name]?.healthcheck?.test.length).toBeGreaterThan(0)
    }
  })

  it('runs Redis with AOF on every write and no eviction', () => {
    const cmd = s.redis?.command?.join(' ') ?? ''
    expect(cmd).toContain('--appendonly yes')
    expect(cmd).toContain('--appendfsync always')
    expect(cmd).toContain('--maxmemory-policy noeviction')
  })

  it('migrates once, then starts the API and the workers as separate services on the server', () => {
    expect(s.migrate?.command).toEqual(['npm', 'run', 'migrate'])
    expect(s.api?.command).toEqual(['npm', 'run', 'start:api'])
    expect(s.workers?.command).toEqual(['npm', 'run', 'start:workers'])
    for (const name of ['api', 'workers']) {
      expect(s[name]?.build).toBe('.')
      expect(s[name]?.depends_on?.migrate?.condition).toBe('service_completed_successfully')
      expect(s[name]?.depends_on?.redis?.condition).toBe('service_healthy')
      expect(s[name]?.environment?.CLICKHOUSE_URL).toBe('http://clickhouse:8123')
      expect(s[name]?.environment?.REDIS_URL).toBe('redis://redis:6379')
      expect(s[name]?.environment?.MIGRATE_ON_START).toBe('false')
    }
    expect(s.api?.healthcheck?.test.join(' ')).toContain('/readyz')
  })

  it('builds an image that runs as a non-root user, with a health check', () => {
    const dockerfile = read('Dockerfile')
    expect(dockerfile).toMatch(/^USER node$/m)
    expect(dockerfile).toMatch(/^HEALTHCHECK /m)
    expect(dockerfile).toContain('npm run build')
  })

  it('documents every setting in .env.example', () => {
    const documented = new Set(
      read('.env.example')
        .split('\n')
        .filter((l) => /^[A-Z_]+=/.test(l))
        .map((l) => l.split('=')[0]),
    )
    expect(CONFIG_VARIABLES.filter((v) => !documented.has(v))).toEqual([])
  })
})
