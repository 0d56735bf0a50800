import { cleanup, render, screen } from '@solidjs/testing-library'
import { createSignal } from 'solid-js'
import { afterEach, describe, expect, it } from 'vitest'
import type { Stats } from '../src/api.ts'
import { StatCards } from '../src/components/StatCards.tsx'

const base: Stats = {
  total_clicks: 1200,
  total_referrals: 40,
  conversions: 10,
  pending_referrals: 30,
  conversion_rate: 0.25,
  total_earnings_cents: 123456,
  track: 'basic',
  wallet_balance_cents: 0,
  cash_balance_cents: 0,
  as_of: '2026-11-25T00:00:00.000Z',
  reports_as_of: null,
}

describe('StatCards', () => {
  afterEach(cleanup)

  it('shows the six numbers, formatted', () => {
    render(() => <StatCards stats={base} />)
    const value = (label: string) => screen.getByText(label).nextElementSibling?.textContent
    expect(value('Total Referrals')).toBe('40')
    expect(value('Conversions')).toBe('10')
    expect(value('Total Earnings')).toBe('$1,234.56')
    expect(value('Conversion Rate')).toBe('25.0%')
    expect(value('Total Clicks')).toBe('1,200')
    expect(value('Pending Referrals')).toBe('30')
  })

  it('updates in place when the stats change, and shows a dash before the first', () => {
    const [stats, setStats] = createSignal<Stats | undefined>()
    render(() => <StatCards stats={stats()} />)
    const clicks = () => screen.getByText('Total Clicks').nextElementSibling
    expect(clicks()?.textContent).toBe('—')
    setStats(base)
    const node = clicks()
    expect(node?.textContent).toBe('1,200')
    setStats({ ...base, total_clicks: 1201 })
    expect(clicks()).toBe(node) // the same element: no layout rebuilt
    expect(node?.textContent).toBe('1,201')
  })
})
