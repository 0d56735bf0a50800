import { describe, expect, it } from 'vitest'
import { bucketStart, buckets, isoInZone, isTimeZone, nextBucket } from '../src/zoned.ts'

const NY = 'America/New_York'

describe('zoned buckets', () => {
  it('knows IANA zones', () => {
    expect(isTimeZone('Europe/Paris')).toBe(true)
    expect(isTimeZone('Mars/Olympus')).toBe(false)
  })

  it('starts days at local midnight, and the DST days are 23 and 25 hours long', () => {
    const springDay = bucketStart(Date.parse('2026-03-08T12:00:00Z'), NY, 'day')
    expect(isoInZone(springDay, NY)).toBe('2026-03-08T00:00:00-05:00')
    expect(nextBucket(springDay, NY, 'day') - springDay).toBe(23 * 3_600_000)
    const fallDay = bucketStart(Date.parse('2026-11-01T12:00:00Z'), NY, 'day')
    expect(isoInZone(fallDay, NY)).toBe('2026-11-01T00:00:00-04:00')
    expect(nextBucket(fallDay, NY, 'day') - fallDay).toBe(25 * 3_600_000)
  })

  it('puts an instant in the local day it falls on, not the UTC one', () => {
    // 03:30 UTC on the 10th is still the 9th in New York
    expect(isoInZone(bucketStart(Date.parse('2026-06-10T03:30:00Z'), NY, 'day'), NY)).toBe(
      '2026-06-09T00:00:00-04:00',
    )
    expect(
      isoInZone(bucketStart(Date.parse('2026-06-10T03:30:00Z'), 'Asia/Kolkata', 'hour'), 'Asia/Kolkata'),
    ).toBe('2026-06-10T09:00:00+05:30')
  })

  it('starts weeks on Monday and months on the 1st, across DST', () => {
    expect(isoInZone(bucketStart(Date.parse('2026-03-11T15:00:00Z'), NY, 'week'), NY)).toBe(
      '2026-03-09T00:00:00-04:00',
    )
    const march = bucketStart(Date.parse('2026-03-20T00:00:00Z'), NY, 'month')
    expect(isoInZone(march, NY)).toBe('2026-03-01T00:00:00-05:00')
    expect(isoInZone(nextBucket(march, NY, 'month'), NY)).toBe('2026-04-01T00:00:00-04:00')
  })

  it('lists every bucket of a range, and refuses too many', () => {
    const days = buckets(
      Date.parse('2026-03-07T12:00:00Z'),
      Date.parse('2026-03-10T12:00:00Z'),
      NY,
      'day',
      100,
    )
    expect(days?.map((d) => isoInZone(d, NY).slice(0, 10))).toEqual([
      '2026-03-07',
      '2026-03-08',
      '2026-03-09',
      '2026-03-10',
    ])
    expect(buckets(0, Date.parse('2026-01-01T00:00:00Z'), 'UTC', 'hour', 1000)).toBeNull()
  })
})
