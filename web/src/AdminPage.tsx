import { createResource, createSignal, For, Show } from 'solid-js'
import { formatCents, getJson } from './api.ts'
import { Chart } from './components/Chart.tsx'
import { FraudPanel } from './components/FraudPanel.tsx'
import { LiveFeed } from './components/LiveFeed.tsx'

type Row = Record<string, string | number>
const DAY = 86_400_000
const WINDOWS = [
  { label: '1 hour', s: 3600 },
  { label: '1 day', s: 86_400 },
  { label: '7 days', s: 7 * 86_400 },
  { label: '30 days', s: 30 * 86_400 },
]
const DIMENSIONS = [
  'utm_source',
  'utm_medium',
  'utm_campaign',
  'referrer_domain',
  'country',
  'device',
  'browser',
]

/** The growth team's page: funnel, time series, top referrers, breakdowns, credit lifecycle. */
export function AdminPage() {
  const to = Date.now()
  const range = `from=${to - 30 * DAY}&to=${to}`
  const [window, setWindow] = createSignal(7 * 86_400)
  const [dimension, setDimension] = createSignal('utm_source')
  const [rankBy, setRankBy] = createSignal('earnings')
  /** every chart counts all events, leaves the flagged ones out, or shows only them */
  const [flagged, setFlagged] = createSignal<'include' | 'exclude' | 'only'>('include')
  const q = () => `${range}&flagged=${flagged()}`

  const [series] = createResource(q, (qs) =>
    getJson<{ points: Row[] }>(`/v1/admin/timeseries?interval=day&${qs}`),
  )
  const [funnel] = createResource(
    () => `window=${window()}&${q()}`,
    (qs) =>
      getJson<{
        steps: Array<{ step: string; visitors: number; of_clicks: number }>
        time_to_convert: Row[]
      }>(`/v1/admin/funnel?${qs}`),
  )
  const [referrers] = createResource(
    () => `by=${rankBy()}&${q()}`,
    (qs) => getJson<{ referrers: Row[] }>(`/v1/admin/referrers?${qs}`),
  )
  const [breakdown] = createResource(
    () => `by=${dimension()}&${q()}`,
    (qs) => getJson<{ rows: Row[] }>(`/v1/admin/breakdown?${qs}`),
  )
  const [overview] = createResource(q, (qs) => getJson<{ periods: Row[] }>(`/v1/admin/overview?${qs}`))
  const [credits] = createResource(q, (qs) =>
    getJson<{ lifecycle: Row[]; effect: Row[] }>(`/v1/admin/credits?${qs}`),
  )
  const csv = (report: string, extra = '') => `/v1/admin/export.csv?report=${report}&${q()}${extra}`
  const all = () => overview()?.periods[0]

  return (
    <main>
      <header class="top">
        <h1>Growth</h1>
        <span class="muted">last 30 days</span>
        <label>
          Fraud flags{' '}
          <select
            aria-label="Fraud flags"
            value={flagged()}
            onChange={(e) => setFlagged(e.currentTarget.value as 'include' | 'exclude' | 'only')}
          >
            <option value="include">all events</option>
            <option value="exclude">without flagged</option>
            <option value="only">flagged only</option>
          </select>
        </label>
      </header>
      <Show when={all()}>
        {(p) => (
          <p class="muted" data-summary="flagged">
            Conversion rate {(Number(p().conversion_rate_all) * 100).toFixed(1)}% with flagged,{' '}
            {(Number(p().conversion_rate_unflagged) * 100).toFixed(1)}% without · {p().flagged_signups}{' '}
            flagged referrals
          </p>
        )}
      </Show>

      <section class="panel">
        <div class="chart-head">
          <h2>Funnel: clicks → signups → first purchase</h2>
          <label>
            Window{' '}
            <select
              aria-label="Funnel window"
              value={window()}
              onChange={(e) => setWindow(Number(e.currentTarget.value))}
            >
              <For each={WINDOWS}>{(w) => <option value={w.s}>{w.label}</option>}</For>
            </select>
          </label>
          <a class="button secondary" href={csv('funnel', `&window=${window()}`)}>
            CSV
          </a>
        </div>
        <ol class="funnel" aria-label="Funnel steps">
          <For each={funnel()?.steps}>
            {(s) => (
              <li data-step={s.step}>
                <span>{s.step.replace('_', ' ')}</span> <strong>{s.visitors.toLocaleString('en-US')}</strong>{' '}
                <span class="muted">{(s.of_clicks * 100).toFixed(1)}%</span>
              </li>
            )}
          </For>
        </ol>
        <Chart
          label="Funnel"
          height={220}
          points={funnel()?.steps.length}
          option={
            funnel() && {
              grid: { left: 110, right: 24, top: 8, bottom: 24 },
              xAxis: { type: 'value' },
              yAxis: { type: 'category', inverse: true, data: funnel()?.steps.map((s) => s.step) },
              series: [{ type: 'bar', data: funnel()?.steps.map((s) => s.visitors) }],
            }
          }
        />
      </section>

      <section class="panel">
        <div class="chart-head">
          <h2>Clicks, signups, conversions per day</h2>
          <a class="button secondary" href={csv('timeseries', '&interval=day')}>
            CSV
          </a>
        </div>
        <Chart
          label="Time series"
          points={series()?.points.length}
          option={
            series() && {
              grid: { left: 48, right: 16, top: 32, bottom: 32 },
              tooltip: { trigger: 'axis' },
              legend: { top: 0 },
              xAxis: { type: 'category', data: series()?.points.map((p) => String(p.t).slice(0, 10)) },
              yAxis: { type: 'value' },
              series: ['clicks', 'signups', 'conversions'].map((k) => ({
                name: k,
                type: 'line',
                data: series()?.points.map((p) => p[k]),
              })),
            }
          }
        />
      </section>

      <section class="panel">
        <div class="chart-head">
          <h2>Top referrers</h2>
          <label>
            By{' '}
            <select aria-label="Rank by" value={rankBy()} onChange={(e) => setRankBy(e.currentTarget.value)}>
              <option value="earnings">earnings</option>
              <option value="conversions">conversions</option>
              <option value="conversion_rate">conversion rate</option>
            </select>
          </label>
          <a class="button secondary" href={csv('referrers', `&by=${rankBy()}`)}>
            CSV
          </a>
        </div>
        <Show
          when={(referrers()?.referrers.length ?? 0) > 0}
          fallback={<p class="muted">No referrers in this range.</p>}
        >
          <table class="table">
            <thead>
              <tr>
                <th scope="col">Referrer</th>
                <th scope="col">Clicks</th>
                <th scope="col">Signups</th>
                <th scope="col">Conversions</th>
                <th scope="col">Rate</th>
                <th scope="col">Commission</th>
              </tr>
            </thead>
            <tbody>
              <For each={referrers()?.referrers}>
                {(r) => (
                  <tr>
                    <td>{r.referrer_id}</td>
                    <td class="num">{r.clicks}</td>
                    <td class="num">{r.signups}</td>
                    <td class="num">{r.conversions}</td>
                    <td class="num">{(Number(r.conversion_rate) * 100).toFixed(1)}%</td>
                    <td class="num">{formatCents(Number(r.commission_cents))}</td>
                  </tr>
                )}
              </For>
            </tbody>
          </table>
        </Show>
      </section>

      <section class="panel">
        <div class="chart-head">
          <h2>Where clicks come from</h2>
          <label>
            By{' '}
            <select
              aria-label="Breakdown"
              value={dimension()}
              onChange={(e) => setDimension(e.currentTarget.value)}
            >
              <For each={DIMENSIONS}>{(d) => <option value={d}>{d.replace('_', ' ')}</option>}</For>
            </select>
          </label>
          <a class="button secondary" href={csv('breakdown', `&by=${dimension()}`)}>
            CSV
          </a>
        </div>
        <Chart
          label="Breakdown"
          height={260}
          points={breakdown()?.rows.length}
          option={
            breakdown() && {
              grid: { left: 48, right: 16, top: 32, bottom: 48 },
              tooltip: { trigger: 'axis' },
              legend: { top: 0 },
              xAxis: { type: 'category', data: breakdown()?.rows.map((r) => String(r.value) || '(none)') },
              yAxis: { type: 'value' },
              series: ['clicks', 'signups', 'conversions'].map((k) => ({
                name: k,
                type: 'bar',
                data: breakdown()?.rows.map((r) => r[k]),
              })),
            }
          }
        />
      </section>

      <FraudPanel range={range} />

      <LiveFeed />

      <section class="panel">
        <div class="chart-head">
          <h2>Signup credit</h2>
          <a class="button secondary" href={csv('credits')}>
            CSV
          </a>
        </div>
        <Show when={credits()}>
          {(c) => (
            <>
              <p>
                Granted <strong>{formatCents(Number(c().lifecycle[0]?.granted_cents ?? 0))}</strong> · used{' '}
                <strong>{formatCents(Number(c().lifecycle[0]?.used_cents ?? 0))}</strong> · expired{' '}
                <strong>{formatCents(Number(c().lifecycle[0]?.expired_cents ?? 0))}</strong> · open{' '}
                <strong>{formatCents(Number(c().lifecycle[0]?.open_cents ?? 0))}</strong>
              </p>
              <ul class="plain">
                <For each={c().effect}>
                  {(e) => (
                    <li>
                      {e.used_credit === 'yes' ? 'Used the credit' : 'Did not use it'}: {e.users} users,{' '}
                      {(Number(e.conversion_rate) * 100).toFixed(1)}% converted
                    </li>
                  )}
                </For>
              </ul>
            </>
          )}
        </Show>
      </section>
    </main>
  )
}
