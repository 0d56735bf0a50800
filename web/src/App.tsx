import { createResource, ErrorBoundary, Match, Show, Switch } from 'solid-js'
import { AdminPage } from './AdminPage.tsx'
import { ApiError, formatCents, getJson, type Referral } from './api.ts'
import { EarningsChart } from './components/EarningsChart.tsx'
import { MoneyPanel } from './components/MoneyPanel.tsx'
import { ReferralLink } from './components/ReferralLink.tsx'
import { ReferralsTable } from './components/ReferralsTable.tsx'
import { StatCards } from './components/StatCards.tsx'
import { createStatsStream } from './stats-stream.ts'

interface Session {
  user_id: string
  role: 'referrer' | 'admin'
  demo: boolean
}

function SignIn() {
  return (
    <main class="signin">
      <h1>Referral dashboard</h1>
      <p>Open the dashboard from your account on the marketplace to see your referrals.</p>
      <p class="muted">
        Running locally? <a href="/demo-login?user=demo-user">Sign in as demo-user</a>
      </p>
    </main>
  )
}

function Dashboard(props: { session: Session }) {
  const [referral] = createResource(() => getJson<Referral>('/v1/me/referral'))
  const live = createStatsStream()
  const updated = () => live.updatedAt()?.toLocaleTimeString() ?? '—'
  return (
    <main>
      <header class="top">
        <h1>Referral dashboard</h1>
        <div class="status" data-state={live.state()}>
          <Switch>
            <Match when={live.state() === 'live'}>Live · updated {updated()}</Match>
            <Match when={live.state() === 'reconnecting'}>Connection lost, reconnecting…</Match>
            <Match when={live.state() === 'connecting'}>Connecting…</Match>
          </Switch>
        </div>
        <span class="muted">{props.session.user_id}</span>
      </header>
      <Show when={referral()} fallback={<section class="panel">Loading your link…</section>}>
        {(r) => <ReferralLink referral={r()} />}
      </Show>
      <StatCards stats={live.stats()} />
      <section class="balances">
        <span>
          Wallet credit <strong>{formatCents(live.stats()?.wallet_balance_cents ?? 0)}</strong>
        </span>
        <span>
          Cash <strong>{formatCents(live.stats()?.cash_balance_cents ?? 0)}</strong>
        </span>
        <span>
          Track <strong>{live.stats()?.track === 'partner' ? 'Partner' : 'Basic'}</strong>
        </span>
      </section>
      {/* the chart and the referrals read ClickHouse: fetched again once new events are there */}
      <EarningsChart refreshKey={() => live.stats()?.reports_as_of} />
      <MoneyPanel stats={live.stats()} refreshKey={() => live.stats()?.as_of} />
      <ReferralsTable refreshKey={() => live.stats()?.reports_as_of} />
    </main>
  )
}

export function App() {
  const [session] = createResource(() =>
    getJson<Session>('/v1/session').catch((e: unknown) => {
      if (e instanceof ApiError && e.status === 401) return null
      throw e
    }),
  )
  return (
    <ErrorBoundary fallback={(e) => <p class="error">Something went wrong: {String(e)}. Reload the page.</p>}>
      <Show when={!session.loading} fallback={<p class="muted">Loading…</p>}>
        <Show when={session()} fallback={<SignIn />}>
          {(s) => (
            <Show when={location.pathname.startsWith('/admin')} fallback={<Dashboard session={s()} />}>
              <Show
                when={s().role === 'admin'}
                fallback={<p class="error">This page is for the growth team (an admin token).</p>}
              >
                <AdminPage />
              </Show>
            </Show>
          )}
        </Show>
      </Show>
    </ErrorBoundary>
  )
}
