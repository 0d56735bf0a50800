import { existsSync } from 'node:fs'
import { dirname, join } from 'node:path'
import { fileURLToPath } from 'node:url'

/**
 * A folder of the repository (the migrations, the dashboard), found from the module asking:
 * the nearest `relative` in its folder or above. The same code runs from its TypeScript
 * source (core/src/..., under tsx or vitest) and bundled (server/dist/main.mjs), so a fixed
 * number of `..` would hold for one of them only.
 */
export function repoPath(moduleUrl: string, relative: string): string {
  const start = dirname(fileURLToPath(moduleUrl))
  for (let dir = start; ; dir = dirname(dir)) {
    const candidate = join(dir, relative)
    if (existsSync(candidate)) return candidate
    if (dirname(dir) === dir) throw new Error(`${relative} not found above ${start}`)
  }
}
