import { createSignal, For, onCleanup, Show } from 'solid-js'
import { formatCents } from '../api.ts'

interface FeedItem {
  type: string
  id: string
  referrer_id: string
  amount_cents: number
  commission_cents: number
  counted: boolean
  note: string
  ts: number
}

/** Events as the workers apply them, newest first (the last 50). */
export function LiveFeed(props: { makeSource?: (url: string) => EventSource }) {
  const [items, setItems] = createSignal<FeedItem[]>([])
  const [live, setLive] = createSignal(false)
  const source = (props.makeSource ?? ((u: string) => new EventSource(u)))('/v1/admin/stream')
  source.addEventListener('ready', () => setLive(true))
  source.addEventListener('error', () => setLive(false))
  source.addEventListener('events', (e) => {
    const batch = JSON.parse((e as MessageEvent<string>).data) as FeedItem[]
    setItems([...batch.reverse(), ...items()].slice(0, 50))
  })
  onCleanup(() => source.close())
  const describe = (i: FeedItem) => {
    const who = i.referrer_id === '' ? 'no referrer' : i.referrer_id
    const money = i.type === 'purchase' || i.type === 'refund' ? ` · ${formatCents(i.amount_cents)}` : ''
    return `${i.type} · ${who}${money}${i.note ? ` · ${i.note.replaceAll('_', ' ')}` : ''}`
  }
  return (
    <section class="panel">
      <div class="chart-head">
        <h2>Live events</h2>
        <span class="status" data-state={live() ? 'live' : 'reconnecting'}>
          {live() ? 'Live' : 'Connecting…'}
        </span>
      </div>
      <Show when={items().length > 0} fallback={<p class="muted">Waiting for events…</p>}>
        <ul class="plain feed" aria-live="polite">
          <For each={items()}>
            {(i) => (
              <li data-feed-type={i.type}>
                <span class="muted">{new Date(i.ts).toLocaleTimeString()}</span> {describe(i)}
              </li>
            )}
          </For>
        </ul>
      </Show>
    </section>
  )
}
