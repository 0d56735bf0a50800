import type { Keys } from '@referral/core'
import type { Redis } from 'ioredis'

/** Tell every API process that these users' stats (counters or balances) changed. */
export async function publishStatsChanged(
  redis: Redis,
  keys: Keys,
  userIds: readonly string[],
): Promise<void> {
  if (userIds.length > 0) await redis.publish(keys.statsChannel(), JSON.stringify(userIds))
}
