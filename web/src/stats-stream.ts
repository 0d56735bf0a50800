import { createSignal, onCleanup } from 'solid-js'
import type { Stats } from './api.ts'

export type StreamState = 'connecting' | 'live' | 'reconnecting'

/**
 * The referrer's stats, kept live from GET /v1/me/stream. EventSource reconnects by itself;
 * the state says so while it does. Call inside a component or createRoot.
 */
export function createStatsStream(url = '/v1/me/stream', makeSource = (u: string) => new EventSource(u)) {
  const [stats, setStats] = createSignal<Stats | undefined>()
  const [state, setState] = createSignal<StreamState>('connecting')
  const [updatedAt, setUpdatedAt] = createSignal<Date | undefined>()
  const source = makeSource(url)
  source.addEventListener('stats', (e) => {
    setStats(JSON.parse((e as MessageEvent<string>).data) as Stats)
    setUpdatedAt(new Date())
    setState('live')
  })
  source.addEventListener('error', () => setState('reconnecting'))
  onCleanup(() => source.close())
  return { stats, state, updatedAt }
}
