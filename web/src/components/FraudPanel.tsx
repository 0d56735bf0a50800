import { createResource, createSignal, For, Show } from 'solid-js'
import { ApiError, formatCents, getJson, postJson } from '../api.ts'

export interface Hold {
  purchase_id: string
  referrer_id: string
  user_id: string
  track: string
  amount_cents: number
  held_cents: number
  flags: string[]
  held_at: string | null
}

interface FraudSummary {
  rules: Array<{ flag: string; description: string; clicks: number; referrals: number; purchases: number }>
  decisions: { approved: number; approved_cents: number; rejected: number; rejected_cents: number }
  refund_rate_alerts: Array<{ referrer_id: string; purchases: number; refund_rate: number }>
  recent_decisions: Array<{
    purchase_id: string
    referrer_id: string
    decision: string
    amount_cents: number
    by: string
    reason: string | null
    at: string | null
  }>
}

/**
 * Fraud review: the commissions the rules held, each approved (paid) or rejected (written
 * off) by a click, and what each rule flagged in the period.
 */
export function FraudPanel(props: { range: string }) {
  const [holds, { refetch }] = createResource(() =>
    getJson<{ holds: Hold[]; held_cents: number }>('/v1/admin/holds'),
  )
  const [summary, summaryActions] = createResource(() =>
    getJson<FraudSummary>(`/v1/admin/fraud?${props.range}`),
  )
  const [busy, setBusy] = createSignal<string | null>(null)
  const [message, setMessage] = createSignal('')

  const decide = async (h: Hold, decision: 'approve' | 'reject') => {
    setBusy(h.purchase_id)
    try {
      const r = await postJson<{ status: string }>(
        `/v1/admin/holds/${encodeURIComponent(h.purchase_id)}/${decision}`,
      )
      setMessage(`${h.purchase_id}: ${r.status} (${formatCents(h.held_cents)})`)
    } catch (e) {
      setMessage(e instanceof ApiError ? e.message : String(e))
    } finally {
      setBusy(null)
      void refetch()
      void summaryActions.refetch()
    }
  }

  return (
    <section class="panel" aria-label="Fraud review">
      <div class="chart-head">
        <h2>Fraud review</h2>
        <span class="muted">
          {holds()?.holds.length ?? 0} held · {formatCents(holds()?.held_cents ?? 0)}
        </span>
      </div>
      <Show when={message() !== ''}>
        <p role="status">{message()}</p>
      </Show>
      <Show
        when={(holds()?.holds.length ?? 0) > 0}
        fallback={<p class="muted">No commission is waiting for a decision.</p>}
      >
        <table class="table">
          <thead>
            <tr>
              <th scope="col">Purchase</th>
              <th scope="col">Referrer</th>
              <th scope="col">Flags</th>
              <th scope="col">Held</th>
              <th scope="col">Since</th>
              <th scope="col">Decision</th>
            </tr>
          </thead>
          <tbody>
            <For each={holds()?.holds}>
              {(h) => (
                <tr data-hold={h.purchase_id}>
                  <td>{h.purchase_id}</td>
                  <td>{h.referrer_id}</td>
                  <td>
                    <For each={h.flags}>{(f) => <span class="badge">{f.replaceAll('_', ' ')}</span>}</For>
                  </td>
                  <td class="num">{formatCents(h.held_cents)}</td>
                  <td>{h.held_at === null ? '—' : new Date(h.held_at).toLocaleString()}</td>
                  <td>
                    <button
                      type="button"
                      disabled={busy() !== null}
                      onClick={() => void decide(h, 'approve')}
                    >
                      Approve
                    </button>{' '}
                    <button
                      type="button"
                      class="secondary"
                      disabled={busy() !== null}
                      onClick={() => void decide(h, 'reject')}
                    >
                      Reject
                    </button>
                  </td>
                </tr>
              )}
            </For>
          </tbody>
        </table>
      </Show>
      <Show when={summary()}>
        {(s) => (
          <>
            <h3>Flagged in this period</h3>
            <ul class="plain" aria-label="Fraud rules">
              <For each={s().rules}>
                {(r) => (
                  <li title={r.description}>
                    {r.flag.replaceAll('_', ' ')}: {r.referrals} referrals, {r.purchases} purchases,{' '}
                    {r.clicks} clicks
                  </li>
                )}
              </For>
            </ul>
            <p>
              Approved {s().decisions.approved} ({formatCents(s().decisions.approved_cents)}) · rejected{' '}
              {s().decisions.rejected} ({formatCents(s().decisions.rejected_cents)})
            </p>
            <Show when={s().recent_decisions.length > 0}>
              <h3>Recent decisions</h3>
              <ul class="plain" aria-label="Recent decisions">
                <For each={s().recent_decisions.slice(0, 10)}>
                  {(d) => (
                    <li>
                      {d.purchase_id} ({d.referrer_id}): {d.decision} {formatCents(d.amount_cents)} by {d.by}
                      {d.reason === null ? '' : ` — ${d.reason}`}
                    </li>
                  )}
                </For>
              </ul>
            </Show>
            <Show when={s().refund_rate_alerts.length > 0}>
              <p>
                Refund-rate alerts:{' '}
                {s()
                  .refund_rate_alerts.map((a) => `${a.referrer_id} ${(a.refund_rate * 100).toFixed(0)}%`)
                  .join(', ')}
              </p>
            </Show>
          </>
        )}
      </Show>
    </section>
  )
}
