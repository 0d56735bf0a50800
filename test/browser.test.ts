import { mkdirSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { freePort } from '@referral/server'
import { type Browser, chromium, type Page } from 'playwright-core'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { type ChildService, startChild } from './support/child.ts'
import { BROWSER_UA, codeFor, http, statsFor, tokenFor } from './support/client.ts'
import { tempDir } from './support/env.ts'

const CHROMIUM = '/usr/bin/chromium'
/** Where the pictures go: a temporary folder, or `docs/` for the README (`npm run screenshots`). */
const SHOTS = process.env.SCREENSHOT_DIR ?? join(tmpdir(), 'referral-shots')

/** The dashboard as a person uses it: Debian's Chromium against `npm start`'s service. */
describe('referrer dashboard in a browser', () => {
  const dir = tempDir()
  let child: ChildService
  let browser: Browser
  let page: Page

  beforeAll(async () => {
    child = await startChild(join(dir.path, 'data'), await freePort(), { DEMO_LOGIN: 'true' })
    browser = await chromium.launch({
      executablePath: CHROMIUM,
      args: ['--no-sandbox', '--disable-background-networking', '--disable-gpu', '--no-first-run'],
    })
    const context = await browser.newContext({ viewport: { width: 1200, height: 900 } })
    await context.grantPermissions(['clipboard-read', 'clipboard-write'], { origin: child.url })
    page = await context.newPage()
  }, 120_000)
  afterAll(async () => {
    await browser?.close()
    child?.proc.kill('SIGTERM')
    await child?.exited
    dir.remove()
  })

  const card = (key: string) => page.locator(`[data-stat="${key}"] .card-value`)

  it('signs in, shows the six numbers the API has, and updates them live', async () => {
    const api = http(child.url)
    const code = await codeFor(api, 'pw-user')
    await api.post('/v1/events', {
      events: [
        { type: 'click', id: 'b1', code, visitor_id: 'bv1', user_agent: BROWSER_UA },
        { type: 'signup', id: 'bs1', user_id: 'pw-friend', visitor_id: 'bv1' },
        { type: 'purchase', id: 'bp1', user_id: 'pw-friend', amount_cents: 4000 },
      ],
    })
    await expect
      .poll(async () => (await statsFor(api, 'pw-user')).total_earnings_cents, { timeout: 15_000 })
      .toBe(200)

    await page.goto(`${child.url}/demo-login?user=pw-user`)
    await page.locator('.status[data-state="live"]').waitFor({ timeout: 15_000 })
    const stats = await statsFor(api, 'pw-user')
    expect(await card('referrals').textContent()).toBe(String(stats.total_referrals))
    expect(await card('conversions').textContent()).toBe(String(stats.conversions))
    expect(await card('earnings').textContent()).toBe('$2.00')
    expect(await card('rate').textContent()).toBe('100.0%')
    expect(await card('clicks').textContent()).toBe(String(stats.total_clicks))
    expect(await card('pending').textContent()).toBe(String(stats.pending_referrals))

    // a click arrives: the card changes without a reload
    const before = Number(await card('clicks').textContent())
    await api.post('/v1/events', { type: 'click', id: 'b2', code, user_agent: BROWSER_UA })
    await expect
      .poll(async () => Number(await card('clicks').textContent()), { timeout: 5000 })
      .toBe(before + 1)
    mkdirSync(SHOTS, { recursive: true })
    await page.screenshot({ path: join(SHOTS, 'referrer-dashboard.png'), fullPage: true })
  })

  it('copies the link to the clipboard and says so', async () => {
    await page.getByRole('button', { name: 'Copy' }).click()
    await page.getByRole('status').filter({ hasText: 'Link copied' }).waitFor()
    const copied = String(await page.evaluate('navigator.clipboard.readText()'))
    expect(copied).toMatch(/\/landing\?ref=[0-9A-HJKMNP-TV-Z]{8}$/)
  })

  it('switches the chart interval and range', async () => {
    const chart = page.locator('.chart')
    await expect.poll(async () => Number(await chart.getAttribute('data-points'))).toBeGreaterThan(0)
    await page.getByRole('button', { name: '24h' }).click()
    await expect.poll(async () => Number(await chart.getAttribute('data-points'))).toBeGreaterThanOrEqual(24)
    await page.getByLabel('Interval').selectOption('month')
    await expect.poll(async () => Number(await chart.getAttribute('data-points'))).toBeLessThanOrEqual(2)
    await page.getByRole('button', { name: 'Activity' }).click()
    await page.getByRole('heading', { name: 'Clicks, signups and conversions' }).waitFor()
  })

  it('shows referrals, money and the Partner upgrade on the referrer page', async () => {
    await page.getByRole('heading', { name: 'Referrals', exact: true }).waitFor()
    await page.getByRole('heading', { name: 'Referral dashboard' }).waitFor()
    await page.getByRole('cell', { name: 'pw…nd' }).waitFor()
    await page.getByRole('heading', { name: 'Track: Basic (5% credit)' }).waitFor()
    await page.getByRole('button', { name: 'Upgrade to Partner' }).waitFor()
    // keyboard reachable: from the top of the page, Tab reaches Copy and Upgrade
    await page.evaluate('document.activeElement && document.activeElement.blur(); window.scrollTo(0, 0)')
    const reached = new Set<string>()
    for (let i = 0; i < 40 && reached.size < 2; i++) {
      await page.keyboard.press('Tab')
      const text = String(
        await page.evaluate('document.activeElement ? document.activeElement.textContent : ""'),
      )
      if (text === 'Copy' || text === 'Upgrade to Partner') reached.add(text)
    }
    expect([...reached].sort()).toEqual(['Copy', 'Upgrade to Partner'])
  })

  it("shows the growth team's funnel to an admin", async () => {
    const admin = await browser.newPage({ viewport: { width: 1200, height: 900 } })
    try {
      await admin.goto(`${child.url}/demo-login?user=growth&role=admin&next=/admin`)
      await admin.getByRole('heading', { name: 'Funnel: clicks → signups → first purchase' }).waitFor()
      const step = (s: string) => admin.locator(`[data-step="${s}"] strong`)
      await expect.poll(async () => await step('click').textContent(), { timeout: 10_000 }).toBe('1')
      expect(await step('signup').textContent()).toBe('1')
      expect(await step('first_purchase').textContent()).toBe('1')
      await admin.getByRole('cell', { name: 'pw-user' }).waitFor()
      // the live feed shows an event as it is applied
      await admin.locator('.status', { hasText: 'Live' }).first().waitFor()
      await http(child.url).post('/v1/events', {
        type: 'click',
        id: 'b-feed',
        code: await codeFor(http(child.url), 'pw-user'),
        user_agent: BROWSER_UA,
      })
      await admin.locator('[data-feed-type="click"]').first().waitFor({ timeout: 5000 })
    } finally {
      await admin.close()
    }
  })

  it('lets an admin approve a held commission and leave flagged referrals out of the charts', async () => {
    const api = http(child.url)
    const code = await codeFor(api, 'pw-fraud')
    const seeded = await api.post('/v1/events', {
      events: [
        { type: 'signup', id: 'pw-fs0', user_id: 'pw-fraud', ip: '192.0.2.44' },
        { type: 'signup', id: 'pw-fs1', user_id: 'pw-sock', ref: code, ip: '192.0.2.44' },
        { type: 'purchase', id: 'pw-fp1', user_id: 'pw-sock', amount_cents: 10_000 },
      ],
    })
    expect(seeded.status).toBe(202)
    await expect
      .poll(async () => (await statsFor(api, 'pw-fraud')).total_earnings_cents, { timeout: 10_000 })
      .toBe(500)
    // the growth page reads ClickHouse, which has the rows a moment after the counters
    const adminAuth = { authorization: `Bearer ${await tokenFor('growth', { role: 'admin' })}` }
    await expect
      .poll(
        async () => {
          const res = await api.get('/v1/admin/fraud', adminAuth)
          const body = (await res.json()) as { rules: Array<{ flag: string; referrals: number }> }
          return body.rules.find((r) => r.flag === 'same_ip')?.referrals ?? 0
        },
        { timeout: 10_000 },
      )
      .toBe(1)
    const admin = await browser.newPage({ viewport: { width: 1200, height: 900 } })
    try {
      await admin.goto(`${child.url}/demo-login?user=growth&role=admin&next=/admin`)
      const row = admin.locator('[data-hold="pw-fp1"]')
      await row.waitFor({ timeout: 10_000 })
      expect(await row.locator('.badge').allTextContents()).toEqual(['same ip'])
      const summary = admin.locator('[data-summary="flagged"]')
      await expect.poll(async () => await summary.textContent()).toContain('1 flagged referrals')

      // without flagged: the funnel's signups lose the flagged one (the earlier pw-user signup stays)
      await admin.getByLabel('Fraud flags').selectOption('exclude')
      await expect
        .poll(async () => await admin.locator('[data-step="signup"] strong').textContent(), {
          timeout: 10_000,
        })
        .toBe('1')
      await admin.getByLabel('Fraud flags').selectOption('only')
      await expect
        .poll(async () => await admin.locator('[data-step="signup"] strong').textContent(), {
          timeout: 10_000,
        })
        .toBe('0')

      // the README's picture of the growth page: a held commission waiting for review
      await admin.getByLabel('Fraud flags').selectOption('include')
      await expect
        .poll(async () => await admin.locator('[data-step="signup"] strong').textContent(), {
          timeout: 10_000,
        })
        .toBe('1')
      await admin.waitForTimeout(1200) // the charts' redraw animation, for the picture only
      await admin.screenshot({ path: join(SHOTS, 'growth-dashboard.png'), fullPage: true })
      await row.getByRole('button', { name: 'Approve' }).click()
      await admin.getByRole('status').filter({ hasText: 'pw-fp1: approved' }).waitFor({ timeout: 10_000 })
      await row.waitFor({ state: 'detached', timeout: 10_000 })
      const stats = (await (
        await api.get('/v1/me/stats', { authorization: `Bearer ${await tokenFor('pw-fraud')}` })
      ).json()) as { wallet_balance_cents: number; held_cents: number }
      expect(stats).toMatchObject({ wallet_balance_cents: 500, held_cents: 0 })
    } finally {
      await admin.close()
    }
  })

  it('fits a phone-width screen without sideways scrolling', async () => {
    const phone = await browser.newPage({ viewport: { width: 375, height: 800 } })
    try {
      await phone.goto(`${child.url}/demo-login?user=pw-user`)
      await phone.locator('.status[data-state="live"]').waitFor({ timeout: 15_000 })
      const overflow = await phone.evaluate(
        'document.documentElement.scrollWidth - document.documentElement.clientWidth',
      )
      expect(Number(overflow)).toBeLessThanOrEqual(0)
    } finally {
      await phone.close()
    }
  })

  it('the click script on the landing page counts one click per visit and hands over the visitor', async () => {
    const api = http(child.url)
    const code = await codeFor(api, 'script-ref')
    // a browser's own user agent: headless Chromium's says HeadlessChrome, rightly a bot
    const context = await browser.newContext({ userAgent: BROWSER_UA })
    const landing = await context.newPage()
    try {
      await landing.goto(`${child.url}/landing?ref=${code.toLowerCase()}`)
      await landing.getByText('You were invited').waitFor()
      await expect
        .poll(async () => (await statsFor(api, 'script-ref')).total_clicks, { timeout: 10_000 })
        .toBe(1)
      await landing.reload() // the same visit: no second click
      await landing.getByText('You were invited').waitFor()
      const visitor = String(await landing.evaluate('window.referral.visitorId()'))
      expect(String(await landing.evaluate('window.referral.code()'))).toBe(code)
      const cookies = await context.cookies(child.url)
      expect(cookies.find((c) => c.name === 'ra_ref')?.value).toBe(code)
      // the marketplace passes the visitor id on at signup: the referral is attributed
      await api.post('/v1/events', {
        type: 'signup',
        id: 'script-signup',
        user_id: 'script-friend',
        visitor_id: visitor,
      })
      await expect
        .poll(async () => (await statsFor(api, 'script-ref')).total_referrals, { timeout: 10_000 })
        .toBe(1)
      expect((await statsFor(api, 'script-ref')).total_clicks).toBe(1)
    } finally {
      await context.close()
    }
  })
})
