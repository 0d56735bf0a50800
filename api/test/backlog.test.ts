import { AppError } from '@referral/core'
import { describe, expect, it } from 'vitest'
import { Backlog } from '../src/backlog.ts'

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
})
