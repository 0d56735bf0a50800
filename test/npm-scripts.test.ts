import { readFileSync } from 'node:fs'
import { join } from 'node:path'
import { freePort } from '@referral/server'
import { afterAll, describe, expect, it } from 'vitest'
import { childEnv, spawnService } from './support/child.ts'
import { tempDir } from './support/env.ts'

const alive = (pid: number): boolean => {
  try {
    process.kill(pid, 0)
    return true
  } catch {
    return false
  }
}

/**
 * The service started the way its deployment starts it, through npm (the Dockerfile runs
 * `npm run start:api`, compose `npm run start:workers`): a SIGTERM to npm, which is what `docker
 * stop` sends to the container's first process, reaches the service, which shuts down in
 * order and exits, its redis-server too. (Each script `exec`s the next: a shell between npm and
 * node took the signal and died, and left the service running.)
 */
describe('the npm scripts pass SIGTERM to the service', () => {
  const dir = tempDir()
  afterAll(() => dir.remove())

  it.each(['serve', 'start:api'])(
    'npm run %s: shuts down, exits 0, stops its redis-server',
    async (script) => {
      const dataDir = join(dir.path, script.replace(':', '-'))
      const port = await freePort()
      const env = childEnv(dataDir, port, { LOG_LEVEL: 'info' })
      const npm = await spawnService('npm', ['run', script], env, port)
      try {
        const redis = JSON.parse(readFileSync(join(dataDir, 'redis', 'server.json'), 'utf8')) as {
          pid: number
        }
        expect(alive(redis.pid)).toBe(true)

        npm.proc.kill('SIGTERM')
        expect(await npm.exited).toBe(0)
        expect(npm.output()).toContain('"msg":"shutting down"')
        expect(alive(redis.pid)).toBe(false)
        await expect(fetch(`${npm.url}/healthz`)).rejects.toThrow()
      } finally {
        npm.proc.kill('SIGKILL')
      }
    },
  )
})
