/**
 * Pauses that end early when their owner closes. A pause is forgotten as soon as it ends:
 * none is kept on a promise that lives as long as the owner. (`Promise.race` with such a
 * promise leaves a reaction on it for every pause, ~300 bytes each, kept until the owner
 * closes: under a trickle of events the ingest worker pauses a few times a second.)
 */
export class Sleeps {
  private readonly pending = new Set<() => void>()
  private closed = false

  /** pauses under way */
  get size(): number {
    return this.pending.size
  }

  /** Resolves after `ms`, or at once when closed (or already closed). */
  sleep(ms: number): Promise<void> {
    if (this.closed) return Promise.resolve()
    return new Promise<void>((resolve) => {
      const end = () => {
        clearTimeout(timer)
        this.pending.delete(end)
        resolve()
      }
      const timer = setTimeout(end, ms)
      this.pending.add(end)
    })
  }

  /** Ends every pause under way, and every later one at once. */
  close(): void {
    this.closed = true
    for (const end of [...this.pending]) end()
  }
}
