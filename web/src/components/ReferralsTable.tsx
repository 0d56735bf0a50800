import { createResource, createSignal, For, Show } from 'solid-js'
import { formatCents, formatDate, getJson, type ReferralRow } from '../api.ts'

type Filter = 'all' | 'pending' | 'converted'

/** The people the referrer brought, newest first, a page at a time. */
export function ReferralsTable(props: { refreshKey: () => unknown }) {
  const [filter, setFilter] = createSignal<Filter>('all')
  const [extra, setExtra] = createSignal<ReferralRow[]>([])
  const [cursor, setCursor] = createSignal<string | null>(null)
  const first = () => `/v1/me/referrals?limit=10${filter() === 'all' ? '' : `&status=${filter()}`}`
  // fetched again when the filter or the refresh key changes (the same URL would not refetch)
  const source = () => ({ url: first(), key: props.refreshKey() })
  const [page] = createResource(source, async ({ url }) => {
    const p = await getJson<{ referrals: ReferralRow[]; next_cursor: string | null }>(url)
    setExtra([])
    setCursor(p.next_cursor)
    return p.referrals
  })
  const more = async () => {
    const c = cursor()
    if (c === null) return
    const p = await getJson<{ referrals: ReferralRow[]; next_cursor: string | null }>(
      `${first()}&cursor=${c}`,
    )
    setExtra([...extra(), ...p.referrals])
    setCursor(p.next_cursor)
  }
  const rows = () => [...(page() ?? []), ...extra()]
  return (
    <section class="panel">
      <div class="chart-head">
        <h2>Referrals</h2>
        <fieldset class="segmented">
          <legend class="sr-only">Show</legend>
          <For each={['all', 'pending', 'converted'] as Filter[]}>
            {(f) => (
              <button type="button" aria-pressed={filter() === f} onClick={() => setFilter(f)}>
                {f[0]?.toUpperCase()}
                {f.slice(1)}
              </button>
            )}
          </For>
        </fieldset>
      </div>
      <Show when={page.error}>
        <p class="error" role="alert">
          Could not load referrals. Reload the page to try again.
        </p>
      </Show>
      <Show
        when={rows().length > 0}
        fallback={
          <p class="muted">
            {page.loading ? 'Loading…' : 'No referrals yet: share your link to get the first one.'}
          </p>
        }
      >
        <table class="table">
          <thead>
            <tr>
              <th scope="col">User</th>
              <th scope="col">Status</th>
              <th scope="col">Signed up</th>
              <th scope="col">First purchase</th>
              <th scope="col">Earned</th>
            </tr>
          </thead>
          <tbody>
            <For each={rows()}>
              {(r) => (
                <tr>
                  <td>{r.user}</td>
                  <td>
                    <span class={`pill ${r.status}`}>{r.status}</span>
                  </td>
                  <td>{formatDate(r.signed_up_at)}</td>
                  <td>{formatDate(r.first_purchase_at)}</td>
                  <td class="num">{formatCents(r.earnings_cents)}</td>
                </tr>
              )}
            </For>
          </tbody>
        </table>
        <Show when={cursor() !== null}>
          <button type="button" class="secondary" onClick={() => void more()}>
            Load more
          </button>
        </Show>
      </Show>
    </section>
  )
}
