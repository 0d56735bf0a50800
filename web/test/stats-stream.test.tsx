import { createRoot } from 'solid-js'
import { describe, expect, it } from 'vitest'
import { createStatsStream } from '../src/stats-stream.ts'

/** A stand-in for the browser's EventSource: the test plays the server's part. */
class TestSource extends EventTarget {
  closed = false
  close() {
    this.closed = true
  }
  emit(type: string, data = '') {
    this.dispatchEvent(new MessageEvent(type, { data }))
  }
}

describe('createStatsStream', () => {
  it('follows the stream: connecting, live with each stats event, reconnecting on error', () => {
    const source = new TestSource()
    createRoot((dispose) => {
      const live = createStatsStream('/v1/me/stream', () => source as unknown as EventSource)
      expect(live.state()).toBe('connecting')
      expect(live.stats()).toBeUndefined()
      source.emit('stats', JSON.stringify({ total_clicks: 3 }))
      expect(live.state()).toBe('live')
      expect(live.stats()?.total_clicks).toBe(3)
      expect(live.updatedAt()).toBeInstanceOf(Date)
      source.emit('error')
      expect(live.state()).toBe('reconnecting')
      expect(live.stats()?.total_clicks).toBe(3) // the last numbers stay on screen
      source.emit('stats', JSON.stringify({ total_clicks: 4 }))
      expect(live.state()).toBe('live')
      dispose()
    })
    expect(source.closed).toBe(true)
  })
})
