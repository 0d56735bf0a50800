-- Where a click came from (a CDN's country header, when the site sends one)
ALTER TABLE events ADD COLUMN IF NOT EXISTS country LowCardinality(String) AFTER user_agent;

-- Which credit a ledger entry moved (spends record one entry per credit they drew on)
ALTER TABLE ledger ADD COLUMN IF NOT EXISTS credit_id String AFTER source_user_id;

-- Everything per hour (UTC), for the growth team's time series and today-vs-yesterday.
-- Inserts carry a dedup token; with deduplicate_blocks_in_dependent_materialized_views and a
-- dedup window on these tables too, a retried insert adds nothing here either.
CREATE TABLE IF NOT EXISTS rollup_hourly
(
    hour DateTime('UTC'),
    clicks UInt64,
    bot_clicks UInt64,
    signups UInt64,
    referred_signups UInt64,
    conversions UInt64,
    purchases UInt64,
    revenue_cents Int64,
    referred_revenue_cents Int64,
    commission_cents Int64
)
ENGINE = SummingMergeTree
ORDER BY hour
SETTINGS non_replicated_deduplication_window = 100000;

CREATE MATERIALIZED VIEW IF NOT EXISTS rollup_hourly_mv TO rollup_hourly AS
SELECT
    toStartOfHour(ts) AS hour,
    countIf(type = 'click' AND counted = 1) AS clicks,
    countIf(type = 'click' AND is_bot = 1) AS bot_clicks,
    countIf(type = 'signup') AS signups,
    countIf(type = 'signup' AND counted = 1) AS referred_signups,
    countIf(type = 'purchase' AND first_purchase = 1) AS conversions,
    countIf(type = 'purchase') AS purchases,
    sumIf(amount_cents, type = 'purchase') AS revenue_cents,
    sumIf(amount_cents, type = 'purchase' AND referrer_id != '') AS referred_revenue_cents,
    sumIf(commission_cents, type IN ('purchase', 'refund')) AS commission_cents
FROM events
GROUP BY hour;

-- Per referrer per day (UTC), for top referrers over any range.
CREATE TABLE IF NOT EXISTS rollup_referrer_daily
(
    day Date,
    referrer_id String,
    clicks UInt64,
    signups UInt64,
    conversions UInt64,
    revenue_cents Int64,
    commission_cents Int64
)
ENGINE = SummingMergeTree
ORDER BY (day, referrer_id)
SETTINGS non_replicated_deduplication_window = 100000;

CREATE MATERIALIZED VIEW IF NOT EXISTS rollup_referrer_daily_mv TO rollup_referrer_daily AS
SELECT
    toDate(ts) AS day,
    referrer_id,
    countIf(type = 'click' AND counted = 1) AS clicks,
    countIf(type = 'signup' AND counted = 1) AS signups,
    countIf(type = 'purchase' AND first_purchase = 1) AS conversions,
    sumIf(amount_cents, type = 'purchase') AS revenue_cents,
    sumIf(commission_cents, type IN ('purchase', 'refund')) AS commission_cents
FROM events
WHERE referrer_id != ''
GROUP BY day, referrer_id;
