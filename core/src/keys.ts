/**
 * The Redis key layout, in one place. Every key that holds program state is named here.
 *
 * Redis Cluster-safe: a Lua script or MULTI may only touch keys of one hash slot, and the
 * ingest commit (workers/src/apply.ts) writes the markers, state, counters, wallets and
 * balances of every user in its group in one script. So every program-state key carries
 * the hash tag `{prefix}`: it all lives in one slot, on one shard (SCALING.md says what that
 * costs and where the limit is). The other keys spread over the cluster: BullMQ's under
 * `{prefix:bull}` (one slot for the queues, as BullMQ requires), rate-limit windows untagged
 * (one key per MULTI). Pub/sub channels are not keys.
 *
 * Prefixes never overlap, so `prefix + opaque id` cannot collide across kinds.
 */
export interface Keys {
  /**
   * the event ids (`type:id`) the pipeline took on one UTC day (epoch day number), kept for
   * the dedup window after it (set): an id is taken when it is in any of the window's days
   */
  takenOn(day: number): string
  /** code -> owner user id (string) */
  code(code: string): string
  /** per user: code, referrer, signed_up_at, referred_at, converted_at, track (hash) */
  user(userId: string): string
  /** a visitor's last counted click: "CODE ts" (string, TTL = attribution window) */
  visitor(visitorId: string): string
  /** what a refund needs of a purchase (hash) */
  purchase(purchaseId: string): string
  /** refunds that arrived before their purchase (JSON array) */
  heldRefunds(purchaseId: string): string
  /** a user's wallet credits: field = credit id, value = JSON (hash) */
  wallet(userId: string): string
  /** a recorded wallet spend, for idempotency (JSON, TTL = dedup window) */
  spend(userId: string, spendId: string): string
  /** a user's cash balance and held commissions (hash: cash, held) */
  balance(userId: string): string
  /** a payout: user, amount_cents, status, account, transfer_id, times (hash) */
  payout(payoutId: string): string
  /** a user's payout ids, newest first (list) */
  userPayouts(userId: string): string
  /** payouts not yet paid or failed, by creation time (sorted set) */
  pendingPayouts(): string
  /** user ids on the Partner track (set) */
  partners(): string
  /** the user id that owns a Stripe connected account (string) */
  stripeAccount(accountId: string): string
  /** recent event times of a fraud window, e.g. signups from one IP (JSON array, TTL = window) */
  fraudWindow(window: string): string
  /** held commissions awaiting an admin's decision: purchase ids by time (sorted set) */
  pendingHolds(): string
  /** outgoing webhooks: the last sequence number given to an event (string) */
  webhookSequence(): string
  /** events for one user and endpoint not yet delivered, by sequence (sorted set) */
  webhookOrder(endpoint: number, subject: string): string
  /** deliveries by last attempt (sorted set), and one delivery's log (hash, 30 days) */
  webhookLog(): string
  webhookDelivery(id: string): string
  /** a referrer's live counters (hash) */
  stats(userId: string): string
  /** counters over all referrers (hash) */
  globalStats(): string
  /** what a group of jobs resolved, kept until its rows are in ClickHouse (JSON) */
  group(groupId: string): string
  /** groups applied and not yet in ClickHouse, oldest first: "<group id> <rows>" (list) */
  outbox(): string
  /** rows in the outbox's groups (string counter) */
  outboxRows(): string
  /** the groups being inserted into ClickHouse now, and the insert's dedup token (JSON) */
  storeBatch(): string
  /** held by the one process that inserts the outbox into ClickHouse (fencing token) */
  storeLock(): string
  /** held by the one applier that may write program state (fencing token) */
  applyLock(): string
  /** pub/sub channel: JSON array of user ids whose stats changed */
  statsChannel(): string
  /** pub/sub channel: JSON array of the newest events applied (the growth team's live feed) */
  feedChannel(): string
  /** rate-limit window counter */
  rateLimit(bucket: string, window: number): string
  /** BullMQ prefix */
  bullPrefix(): string
  /** the key layout version the data was moved to (string; see redis-layout.ts) */
  layout(): string
}

export function makeKeys(prefix: string): Keys {
  // one hash tag for all program state: the slot every multi-key script works in
  const p = `{${prefix}}:`
  return {
    takenOn: (day) => `${p}evd:${day}`,
    code: (code) => `${p}code:${code}`,
    user: (userId) => `${p}user:${userId}`,
    visitor: (visitorId) => `${p}visitor:${visitorId}`,
    purchase: (purchaseId) => `${p}purchase:${purchaseId}`,
    heldRefunds: (purchaseId) => `${p}held:${purchaseId}`,
    wallet: (userId) => `${p}wallet:${userId}`,
    spend: (userId, spendId) => `${p}spend:${userId.length}:${userId}:${spendId}`,
    balance: (userId) => `${p}balance:${userId}`,
    payout: (payoutId) => `${p}payout:${payoutId}`,
    userPayouts: (userId) => `${p}payouts:${userId}`,
    pendingPayouts: () => `${p}payouts-pending`,
    stripeAccount: (accountId) => `${p}stripe-account:${accountId}`,
    partners: () => `${p}partners`,
    fraudWindow: (window) => `${p}fraud:${window}`,
    pendingHolds: () => `${p}holds-pending`,
    webhookSequence: () => `${p}wh-seq`,
    webhookOrder: (endpoint, subject) => `${p}wh-order:${endpoint}:${subject}`,
    webhookLog: () => `${p}wh-log`,
    webhookDelivery: (id) => `${p}wh-delivery:${id}`,
    stats: (userId) => `${p}stats:${userId}`,
    globalStats: () => `${p}stats-global`,
    group: (groupId) => `${p}group:${groupId}`,
    outbox: () => `${p}outbox`,
    outboxRows: () => `${p}outbox-rows`,
    storeBatch: () => `${p}store-batch`,
    storeLock: () => `${p}store-lock`,
    applyLock: () => `${p}apply-lock`,
    statsChannel: () => `${prefix}:stats-changed`,
    feedChannel: () => `${prefix}:feed`,
    rateLimit: (bucket, window) => `${prefix}:rl:${bucket}:${window}`,
    bullPrefix: () => `{${prefix}:bull}`,
    layout: () => `${p}layout`,
  }
}

/** Counter fields of a stats hash. */
export const COUNTER_FIELDS = ['clicks', 'signups', 'conversions', 'earnings_cents'] as const
export type CounterField = (typeof COUNTER_FIELDS)[number]
export type Counters = Record<CounterField, number>
