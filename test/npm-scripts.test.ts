import { spawn } from 'node:child_process'
import { readFileSync } from 'node:fs'
import { join } from 'node:path'
import { freePort } from '@referral/server'
import { afterAll, describe, expect, it } from 'vitest'
import { childEnv } from './support/child.ts'
import { tempDir } from './support/env.ts'

const ROOT = join(import.meta.dirname, '..')

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
      let out = ''
      const npm = spawn('npm', ['run', script], {
        cwd: ROOT,
        env: childEnv(dataDir, port, { LOG_LEVEL: 'info' }),
        stdio: ['ignore', 'pipe', 'pipe'],
      })
      npm.stdout.on('data', (d: Buffer) => {
        out += d.toString()
      })
      npm.stderr.on('data', (d: Buffer) => {
        out += d.toString()
      })
      const exited = new Promise<number | null>((resolve) => npm.once('exit', (code) => resolve(code)))
      try {
        const deadline = Date.now() + 60_000
        for (;;) {
          const ready = await fetch(`http://127.0.0.1:${port}/readyz`).then(
            (r) => r.status === 200,
            () => false,
          )
          if (ready) break
          if (Date.now() > deadline || npm.exitCode !== null) throw new Error(`not ready:\n${out}`)
          await new Promise((r) => setTimeout(r, 100))
        }
        const redis = JSON.parse(readFileSync(join(dataDir, 'redis', 'server.json'), 'utf8')) as {
          pid: number
        }
        expect(alive(redis.pid)).toBe(true)

        npm.kill('SIGTERM')
        expect(await exited).toBe(0)
        expect(out).toContain('"msg":"shutting down"')
        expect(alive(redis.pid)).toBe(false)
        await expect(fetch(`http://127.0.0.1:${port}/healthz`)).rejects.toThrow()
      } finally {
        npm.kill('SIGKILL')
      }
    },
  )
})
