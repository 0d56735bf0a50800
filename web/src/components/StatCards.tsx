import { For } from 'solid-js'
import { formatCents, type Stats } from '../api.ts'

const CARDS: Array<{ key: string; label: string; value: (s: Stats) => string }> = [
  { key: 'referrals', label: 'Total Referrals', value: (s) => s.total_referrals.toLocaleString('en-US') },
  { key: 'conversions', label: 'Conversions', value: (s) => s.conversions.toLocaleString('en-US') },
  { key: 'earnings', label: 'Total Earnings', value: (s) => formatCents(s.total_earnings_cents) },
  { key: 'rate', label: 'Conversion Rate', value: (s) => `${(s.conversion_rate * 100).toFixed(1)}%` },
  { key: 'clicks', label: 'Total Clicks', value: (s) => s.total_clicks.toLocaleString('en-US') },
  { key: 'pending', label: 'Pending Referrals', value: (s) => s.pending_referrals.toLocaleString('en-US') },
]

/** The six numbers of the contract; a fixed-width figure so a change never moves the layout. */
export function StatCards(props: { stats: Stats | undefined }) {
  return (
    <section class="cards" aria-label="Your referral stats">
      <For each={CARDS}>
        {(card) => (
          <div class="card" data-stat={card.key}>
            <div class="card-label">{card.label}</div>
            <div class="card-value" aria-live="polite">
              {props.stats ? card.value(props.stats) : '—'}
            </div>
          </div>
        )}
      </For>
    </section>
  )
}
