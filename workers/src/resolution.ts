import type { EventRow, LedgerRow } from '@referral/clickhouse'
import type { Counters, FraudConfig } from '@referral/core'
import {
  type CreditExpiry,
  emptyNeeds,
  type HeldRefund,
  type Needs,
  type PurchaseState,
  type StateKind,
  type StateSnapshot,
  type UserState,
  type VisitorState,
  type WalletCredit,
} from './state.ts'

/**
 * What the resolver (resolve.ts) produces, and the view through which it reads state: the
 * batch's own changes first, then the snapshot loaded from Redis, noting every key the
 * snapshot lacks.
 */

export interface ResolveOptions {
  attributionWindowMs: number
  /** thresholds of the fraud rules; the defaults when absent */
  fraud?: FraudConfig
}

/** A fraud window's times and how long Redis keeps them. */
export interface RecentTimes {
  times: number[]
  ttlMs: number
}

export interface Resolution {
  rows: EventRow[]
  ledger: LedgerRow[]
  /** marker ids (`type:id`) of the events this batch takes */
  taken: string[]
  users: Map<string, UserState>
  visitors: Map<string, VisitorState>
  purchases: Map<string, PurchaseState>
  /** an empty list means the key is deleted */
  held: Map<string, HeldRefund[]>
  counters: Map<string, Partial<Counters>>
  global: Partial<Counters>
  /** wallet credits granted (or, negative, taken back) by this batch, per user */
  credits: Map<string, WalletCredit[]>
  /** cash balance changes per user (Partner commissions and their reversals) */
  cash: Map<string, number>
  /** held balance changes per user (flagged commissions until an admin decides) */
  onHold: Map<string, number>
  /** purchase ids whose commission became held (true) or was decided (false) */
  holds: Map<string, boolean>
  /** fraud windows to write back */
  recent: Map<string, RecentTimes>
  /** credits that expire, for the expiry job to be scheduled */
  expiries: CreditExpiry[]
}

export interface ResolveResult {
  /** null when every key the batch needed was in the snapshot */
  needs: Needs | null
  resolution: Resolution
}

export class View {
  readonly needs = emptyNeeds()
  missing = false
  private readonly takenHere = new Set<string>()
  constructor(
    private readonly snap: StateSnapshot,
    private readonly out: Resolution,
  ) {}

  private read<K extends StateKind>(
    kind: K,
    key: string,
  ): StateSnapshot[K] extends Map<string, infer V> ? V | undefined : never {
    const map = this.snap[kind] as Map<string, unknown>
    // a loaded key never maps to undefined (absent values are null, {} or []): one lookup
    const v = map.get(key)
    if (v === undefined) {
      this.needs[kind].add(key)
      this.missing = true
    }
    return v as never
  }

  /** whether the event with this marker id (`type:id`) was taken, before or in this batch */
  taken(k: string): boolean {
    return this.takenHere.has(k) || this.snap.taken.has(k)
  }
  take(k: string): void {
    this.takenHere.add(k)
    this.out.taken.push(k)
  }
  codeOwner(code: string): string | null {
    return this.read('codes', code) ?? null
  }
  user(id: string): UserState {
    return this.out.users.get(id) ?? this.read('users', id) ?? {}
  }
  visitor(id: string): VisitorState | null {
    return this.out.visitors.get(id) ?? this.read('visitors', id) ?? null
  }
  purchase(id: string): PurchaseState | null {
    return this.out.purchases.get(id) ?? this.read('purchases', id) ?? null
  }
  held(purchaseId: string): HeldRefund[] {
    return this.out.held.get(purchaseId) ?? this.read('held', purchaseId) ?? []
  }
  recent(key: string): number[] {
    return this.out.recent.get(key)?.times ?? this.read('recent', key) ?? []
  }
}

export function emptyResolution(): Resolution {
  return {
    rows: [],
    ledger: [],
    taken: [],
    users: new Map(),
    visitors: new Map(),
    purchases: new Map(),
    held: new Map(),
    counters: new Map(),
    global: {},
    credits: new Map(),
    cash: new Map(),
    onHold: new Map(),
    holds: new Map(),
    recent: new Map(),
    expiries: [],
  }
}
