import { randomBytes } from 'node:crypto'
import { existsSync, mkdirSync, readFileSync, writeFileSync } from 'node:fs'
import { join } from 'node:path'
import type { Config, ResolvedConfig } from '@referral/core'

export interface SecretsResult {
  config: ResolvedConfig
  /** names of the secrets that were generated (or reused from an earlier generation) */
  generated: Array<'INGEST_API_KEY' | 'AUTH_JWT_SECRET'>
}

/**
 * Secrets not set in the environment are generated once for local use and kept in
 * DATA_DIR/secrets.json (mode 0600), so a restart keeps working sessions and keys.
 */
export function resolveSecrets(config: Config): SecretsResult {
  const file = join(config.dataDir, 'secrets.json')
  const stored: { ingestApiKey?: string; jwtSecret?: string } = existsSync(file)
    ? (JSON.parse(readFileSync(file, 'utf8')) as { ingestApiKey?: string; jwtSecret?: string })
    : {}
  const generated: SecretsResult['generated'] = []
  const ingestApiKey =
    config.ingestApiKey ?? stored.ingestApiKey ?? `ik_${randomBytes(24).toString('base64url')}`
  const jwtSecret = config.jwtSecret ?? stored.jwtSecret ?? randomBytes(48).toString('base64url')
  if (config.ingestApiKey === undefined) generated.push('INGEST_API_KEY')
  if (config.jwtSecret === undefined) generated.push('AUTH_JWT_SECRET')
  // only generated values go to disk; a secret from the environment stays there
  const toStore = {
    ...(config.ingestApiKey === undefined ? { ingestApiKey } : {}),
    ...(config.jwtSecret === undefined ? { jwtSecret } : {}),
  }
  if (
    generated.length > 0 &&
    (stored.ingestApiKey !== toStore.ingestApiKey || stored.jwtSecret !== toStore.jwtSecret)
  ) {
    mkdirSync(config.dataDir, { recursive: true })
    writeFileSync(file, JSON.stringify(toStore, null, 2), { mode: 0o600 })
  }
  // a generated secret means a local setup: the demo login is on unless switched off
  const demoLogin = config.demoLogin ?? config.jwtSecret === undefined
  return { config: { ...config, ingestApiKey, jwtSecret, demoLogin }, generated }
}
