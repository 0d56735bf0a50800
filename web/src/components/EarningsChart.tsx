import { createMemo, createResource, createSignal, For, Show } from 'solid-js'
import { type EarningsPoint, formatCents, getJson, type Interval, viewerTimeZone } from '../api.ts'
import { Chart, type ChartOption } from './Chart.tsx'

const PRESETS: Array<{ label: string; ms: number; interval: Interval }> = [
  { label: '24h', ms: 86_400_000, interval: 'hour' },
  { label: '7d', ms: 7 * 86_400_000, interval: 'day' },
  { label: '30d', ms: 30 * 86_400_000, interval: 'day' },
  { label: '90d', ms: 90 * 86_400_000, interval: 'week' },
  { label: '1y', ms: 365 * 86_400_000, interval: 'month' },
]

/** Earnings (or clicks, signups, conversions) over time, in the viewer's time zone. */
export function EarningsChart(props: { refreshKey: () => unknown }) {
  const [preset, setPreset] = createSignal(
    PRESETS[2] ?? { label: '30d', ms: 30 * 86_400_000, interval: 'day' as Interval },
  )
  const [interval, setInterval] = createSignal<Interval>('day')
  const [view, setView] = createSignal<'earnings' | 'activity'>('earnings')
  const tz = viewerTimeZone()
  const query = () => {
    props.refreshKey()
    const to = Date.now()
    return `/v1/me/earnings?interval=${interval()}&tz=${encodeURIComponent(tz)}&from=${to - preset().ms}&to=${to}`
  }
  const [data] = createResource(query, (q) => getJson<{ points: EarningsPoint[] }>(q))
  const option = createMemo((): ChartOption | undefined => {
    const points = data()?.points
    if (points === undefined) return undefined
    const labels = points.map((p) => p.t.slice(0, interval() === 'hour' ? 16 : 10).replace('T', ' '))
    const series =
      view() === 'earnings'
        ? [{ name: 'Earnings', type: 'bar', data: points.map((p) => p.earnings_cents / 100) }]
        : [
            { name: 'Clicks', type: 'line', data: points.map((p) => p.clicks) },
            { name: 'Signups', type: 'line', data: points.map((p) => p.signups) },
            { name: 'Conversions', type: 'line', data: points.map((p) => p.conversions) },
          ]
    return {
      grid: { left: 48, right: 16, top: 32, bottom: 32 },
      tooltip: {
        trigger: 'axis',
        valueFormatter: (v: unknown) =>
          view() === 'earnings' ? formatCents(Math.round(Number(v) * 100)) : String(v),
      },
      legend: { show: view() === 'activity', top: 0 },
      xAxis: { type: 'category', data: labels },
      yAxis: { type: 'value' },
      series,
    }
  })

  return (
    <section class="panel">
      <div class="chart-head">
        <h2>{view() === 'earnings' ? 'Earnings over time' : 'Clicks, signups and conversions'}</h2>
        <fieldset class="segmented">
          <legend class="sr-only">View</legend>
          <button type="button" aria-pressed={view() === 'earnings'} onClick={() => setView('earnings')}>
            Earnings
          </button>
          <button type="button" aria-pressed={view() === 'activity'} onClick={() => setView('activity')}>
            Activity
          </button>
        </fieldset>
      </div>
      <div class="chart-controls">
        <fieldset class="segmented">
          <legend class="sr-only">Range</legend>
          <For each={PRESETS}>
            {(p) => (
              <button
                type="button"
                aria-pressed={preset().label === p.label}
                onClick={() => {
                  setPreset(p)
                  setInterval(p.interval)
                }}
              >
                {p.label}
              </button>
            )}
          </For>
        </fieldset>
        <label>
          Interval{' '}
          <select
            value={interval()}
            onChange={(e) => setInterval(e.currentTarget.value as Interval)}
            aria-label="Interval"
          >
            <option value="hour">Hour</option>
            <option value="day">Day</option>
            <option value="week">Week</option>
            <option value="month">Month</option>
          </select>
        </label>
        <span class="muted">{tz}</span>
      </div>
      <Show when={data.error}>
        <p class="error" role="alert">
          Could not load the chart: {String((data.error as Error).message)}. Try a shorter range or a longer
          interval.
        </p>
      </Show>
      <Chart label="Earnings over time" option={option()} points={data()?.points.length ?? 0} />
    </section>
  )
}
