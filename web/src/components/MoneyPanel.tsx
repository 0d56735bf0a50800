import { createResource, createSignal, For, Show } from 'solid-js'
import {
  ApiError,
  formatCents,
  formatDate,
  getJson,
  type Insights,
  type Payout,
  postJson,
  type Stats,
  type WalletCredit,
} from '../api.ts'

const MIN_PAYOUT = 2500

/** Wallet credit, the Partner track and cash payouts, with what to expect. */
export function MoneyPanel(props: { stats: Stats | undefined; refreshKey: () => unknown }) {
  const key = () => props.refreshKey() ?? 0
  const [wallet] = createResource(key, () =>
    getJson<{ balance_cents: number; credits: WalletCredit[] }>('/v1/me/wallet'),
  )
  const [payouts, { refetch: refetchPayouts }] = createResource(key, () =>
    getJson<{ payouts: Payout[] }>('/v1/me/payouts'),
  )
  const [insights] = createResource(key, () => getJson<Insights>('/v1/me/insights'))
  const [message, setMessage] = createSignal<string | undefined>()
  const partner = () => props.stats?.track === 'partner'
  // what is left to spend, soonest to expire first; spent credits only count in the total
  const openCredits = () => (wallet()?.credits ?? []).filter((c) => c.remaining_cents !== 0)
  const shownCredits = () =>
    [...openCredits()]
      .sort(
        (a, b) =>
          (a.expires_at ?? '9999').localeCompare(b.expires_at ?? '9999') ||
          b.granted_at.localeCompare(a.granted_at),
      )
      .slice(0, 5)
  const cash = () => props.stats?.cash_balance_cents ?? 0

  const upgrade = async () => {
    setMessage(undefined)
    try {
      const r = await postJson<{ onboarding_url: string }>('/v1/me/partner')
      window.open(r.onboarding_url, '_blank', 'noopener')
      setMessage('You are on the Partner track. Finish the Stripe onboarding to receive payouts.')
    } catch (e) {
      setMessage(e instanceof ApiError ? e.message : 'The upgrade failed; try again.')
    }
  }
  const cashOut = async () => {
    setMessage(undefined)
    try {
      const p = await postJson<Payout>('/v1/me/payouts')
      setMessage(`Payout of ${formatCents(p.amount_cents)} requested.`)
      await refetchPayouts()
    } catch (e) {
      setMessage(e instanceof ApiError ? e.message : 'The payout failed; try again.')
    }
  }

  return (
    <section class="panel money">
      <h2>Earnings and payouts</h2>
      <div class="money-grid">
        <div>
          <h3>Track: {partner() ? 'Partner (10% cash)' : 'Basic (5% credit)'}</h3>
          <Show
            when={partner()}
            fallback={
              <>
                <Show when={insights()}>
                  {(i) => (
                    <p>
                      On Partner, your sales so far would have paid{' '}
                      <strong>{formatCents(i().what_if_partner.at_partner_rate_cents)}</strong> in cash
                      instead of {formatCents(i().what_if_partner.earned_as_basic_cents)} in credit.
                    </p>
                  )}
                </Show>
                <button type="button" onClick={() => void upgrade()}>
                  Upgrade to Partner
                </button>
              </>
            }
          >
            <p>
              Cash <strong>{formatCents(cash())}</strong>
            </p>
            <button type="button" disabled={cash() < MIN_PAYOUT} onClick={() => void cashOut()}>
              Cash out
            </button>
            <Show when={cash() < MIN_PAYOUT}>
              <p class="muted">
                Payouts start at {formatCents(MIN_PAYOUT)}.
                <Show when={insights()?.payout_forecast.expected_date}>
                  {(d) => <> At your recent pace you get there around {formatDate(d())}.</>}
                </Show>
              </p>
            </Show>
          </Show>
          <Show when={message()}>
            <p role="status">{message()}</p>
          </Show>
        </div>
        <div>
          <h3>Wallet credit {formatCents(wallet()?.balance_cents ?? 0)}</h3>
          <Show when={(wallet()?.credits.length ?? 0) > 0} fallback={<p class="muted">No credit yet.</p>}>
            <ul class="plain">
              <For each={shownCredits()}>
                {(c) => (
                  <li>
                    {formatCents(c.remaining_cents)} of {formatCents(c.amount_cents)} ·{' '}
                    {c.source.replace('_', ' ')}
                    {c.expires_at ? ` · expires ${formatDate(c.expires_at)}` : ''}
                  </li>
                )}
              </For>
            </ul>
            <Show when={openCredits().length > shownCredits().length}>
              <p class="muted">and {openCredits().length - shownCredits().length} more</p>
            </Show>
          </Show>
        </div>
        <div>
          <h3>Payouts</h3>
          <Show when={(payouts()?.payouts.length ?? 0) > 0} fallback={<p class="muted">No payouts yet.</p>}>
            <ul class="plain">
              <For each={payouts()?.payouts}>
                {(p) => (
                  <li>
                    {formatCents(p.amount_cents)} · {formatDate(p.created_at)} ·{' '}
                    <span class={`pill ${p.status}`}>{p.status}</span>
                  </li>
                )}
              </For>
            </ul>
          </Show>
        </div>
      </div>
    </section>
  )
}
