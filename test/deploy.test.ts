import { readFileSync } from 'node:fs'
import { join } from 'node:path'
import { CONFIG_VARIABLES } from '@referral/core'
import { describe, expect, it } from 'vitest'
import { parse } from 'yaml'

const ROOT = join(import.meta.dirname, '..')
const read = (f: string) => readFileSync(join(ROOT, f), 'utf8')

interface Service {
  profiles?: string[]
  entrypoint?: string[]
  ports?: string[]
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

  describe('profile "cluster"', () => {
    const nodes = ['clickhouse-s1r1', 'clickhouse-s1r2', 'clickhouse-s2r1', 'clickhouse-s2r2']
    const clusterXml = read('deploy/clickhouse-cluster/cluster.xml')
    const keeperXml = read('deploy/clickhouse-cluster/keeper.xml')
    const inCluster = Object.entries(s).filter(([, v]) => v.profiles?.includes('cluster'))

    it('adds its services to that profile only, the single-server stack staying as it was', () => {
      expect(inCluster.map(([n]) => n).sort()).toEqual(
        ['api-cluster', 'clickhouse-keeper', 'migrate-cluster', 'workers-cluster', ...nodes].sort(),
      )
      for (const name of ['clickhouse', 'redis', 'migrate', 'api', 'workers'])
        expect(s[name]?.profiles).toBeUndefined()
    })

    it('runs four ClickHouse servers of the pinned LTS and a Keeper, with their own volumes', () => {
      expect(s['clickhouse-keeper']?.image).toBe(s.clickhouse?.image)
      expect(s['clickhouse-keeper']?.entrypoint?.slice(0, 2)).toEqual(['clickhouse', 'keeper'])
      expect(s['clickhouse-keeper']?.volumes).toContain(
        './deploy/clickhouse-cluster/keeper.xml:/etc/clickhouse-keeper/keeper.xml:ro',
      )
      const dataVolumes = new Set<string>()
      nodes.forEach((name) => {
        const node = s[name]
        expect(node?.image).toBe(s.clickhouse?.image)
        expect(node?.volumes).toContain(
          './deploy/clickhouse-cluster/cluster.xml:/etc/clickhouse-server/config.d/cluster.xml:ro',
        )
        const data = node?.volumes?.find((v) => v.endsWith(':/var/lib/clickhouse'))
        expect(data).toBeDefined()
        dataVolumes.add(data ?? '')
        expect(node?.depends_on?.['clickhouse-keeper']?.condition).toBe('service_healthy')
        expect(node?.healthcheck?.test.length).toBeGreaterThan(0)
        // each node's macros: its shard and a replica name of its own
        const [, shard] = name.match(/s(\d)r\d/) ?? []
        expect(node?.environment?.CLICKHOUSE_SHARD).toBe(shard)
        expect(node?.environment?.CLICKHOUSE_REPLICA).toBe(name)
      })
      expect(dataVolumes.size).toBe(nodes.length)
    })

    it('lists those servers as 2 shards of 2 replicas, with Keeper and macros, in the config', () => {
      const shards = [...clusterXml.matchAll(/<shard>([\s\S]*?)<\/shard>/g)].map((m) => m[1] ?? '')
      expect(shards).toHaveLength(2)
      const hosts = shards.map((sh) => [...sh.matchAll(/<host>([\w-]+)<\/host>/g)].map((m) => m[1]))
      expect(hosts).toEqual([nodes.slice(0, 2), nodes.slice(2)])
      for (const sh of shards) expect(sh).toContain('<internal_replication>true</internal_replication>')
      expect(clusterXml).toMatch(/<remote_servers>\s*<referral>/)
      expect(clusterXml).toMatch(
        /<zookeeper>\s*<node><host>clickhouse-keeper<\/host><port>9181<\/port><\/node>/,
      )
      expect(clusterXml).toContain('<shard from_env="CLICKHOUSE_SHARD"/>')
      expect(clusterXml).toContain('<replica from_env="CLICKHOUSE_REPLICA"/>')
      expect(keeperXml).toContain('<tcp_port>9181</tcp_port>')
      expect(keeperXml).toMatch(/<raft_configuration>[\s\S]*<hostname>clickhouse-keeper<\/hostname>/)
    })

    it('migrates once in cluster mode, then starts the API and the workers on the cluster', () => {
      expect(s['migrate-cluster']?.command).toEqual(['npm', 'run', 'migrate'])
      for (const n of nodes) expect(s['migrate-cluster']?.depends_on?.[n]?.condition).toBe('service_healthy')
      for (const name of ['migrate-cluster', 'api-cluster', 'workers-cluster']) {
        expect(s[name]?.build).toBe('.')
        expect(s[name]?.environment?.CLICKHOUSE_CLUSTER).toBe('referral')
        expect(s[name]?.environment?.CLICKHOUSE_URL).toBe('http://clickhouse-s1r1:8123')
        expect(s[name]?.environment?.MIGRATE_ON_START).toBe('false')
      }
      for (const name of ['api-cluster', 'workers-cluster']) {
        expect(s[name]?.depends_on?.['migrate-cluster']?.condition).toBe('service_completed_successfully')
        expect(s[name]?.depends_on?.redis?.condition).toBe('service_healthy')
      }
      expect(s['api-cluster']?.command).toEqual(['npm', 'run', 'start:api'])
      expect(s['workers-cluster']?.command).toEqual(['npm', 'run', 'start:workers'])
      expect(s['api-cluster']?.ports).toEqual(['3001:3000'])
    })
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
