import { execFileSync } from 'node:child_process'
import { dirname, join } from 'node:path'
import { fileURLToPath } from 'node:url'

/**
 * vitest's global setup: the server bundle that `npm start` runs, built from the source as
 * it is now (under a second), so that the tests of real processes (support/child.ts) never
 * run an older build.
 */
export default function setup(): void {
  const server = join(dirname(fileURLToPath(import.meta.url)), '..', '..', 'server')
  execFileSync(process.execPath, ['build.mjs'], { cwd: server, stdio: 'inherit' })
}
