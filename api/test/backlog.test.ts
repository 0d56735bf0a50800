import { AppError } from '@referral/core'
import { describe, expect, it } from 'vitest'
import { Backlog, MAX_PACE_MS } from '../src/backlog.ts'
import { makeIngest } from '../src/routes/events.ts'

describe('ingest backpressure', () => {
  it('refuses new events with 503 and Retry-After once the queue is deeper than the limit', async () => {
    let depth = 10
    const backlog = new Backlog(async () => depth, 100, 5)
    backlog.start()
    try {
      await new Promise((r) => setTimeout(r, 20))
      expect(() => backlog.admit()).not.toThrow()
      depth = 101
      await new Promise((r) => setTimeout(r, 20))
      let refused: unknown
      try {
        backlog.admit()
      } catch (e) {
        refused = e
      }
      expect(refused).toBeInstanceOf(AppError)
      expect((refused as AppError).status).toBe(503)
      expect((refused as AppError).headers['Retry-After']).toBe('2')
      depth = 0
      await new Promise((r) => setTimeout(r, 20))
      expect(() => backlog.admit()).not.toThrow()
    } finally {
      backlog.stop()
    }
  })

  it('keeps the last reading when a sample fails, and counts the failure', async () => {
    let fail = false
    const backlog = new Backlog(
      async () => {
        if (fail) throw new Error('redis away')
        return 500
      },
      100,
      5,
    )
    backlog.start()
    try {
      await new Promise((r) => setTimeout(r, 20))
      fail = true
      await new Promise((r) => setTimeout(r, 20))
      expect(backlog.sampleFailures).toBeGreaterThan(0)
      expect(backlog.waitingJobs).toBe(500)
      expect(() => backlog.admit()).toThrow(AppError)
    } finally {
      backlog.stop()
    }
  })

  it('holds back answers by the lag past paceAfterMs (at most a second), after queueing', async () => {
    let lag = 500
    const backlog = new Backlog(async () => 0, 100, 5, { sample: async () => lag, paceAfterMs: 2_000 })
    const queued: number[] = []
    const ingest = makeIngest({
      ingestApiKey: 'k'.repeat(32),
      backlog,
      events: {
        submit: async (events) => {
          queued.push(events.length)
        },
      },
    })
    const request = {
      authorization: `Bearer ${'k'.repeat(32)}`,
      contentType: 'application/json',
      readText: async () => JSON.stringify({ type: 'click', code: 'AB12CD34' }),
    }
    backlog.start()
    try {
      await new Promise((r) => setTimeout(r, 20))
      expect(backlog.pace()).toBe(0)
      let t0 = performance.now()
      await ingest(request)
      expect(performance.now() - t0).toBeLessThan(200)
      lag = 2_400
      await new Promise((r) => setTimeout(r, 20))
      expect(backlog.pace()).toBe(400)
      t0 = performance.now()
      await ingest(request)
      expect(performance.now() - t0).toBeGreaterThanOrEqual(390)
      lag = 60_000
      await new Promise((r) => setTimeout(r, 20))
      expect(backlog.pace()).toBe(MAX_PACE_MS)
      // paced, never refused: each request's events were queued
      expect(queued).toEqual([1, 1])
    } finally {
      backlog.stop()
    }
  })
})
