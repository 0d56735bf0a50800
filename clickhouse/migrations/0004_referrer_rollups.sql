-- A referrer's own series read these: sorted by referrer, then time, so one referrer's
-- 30 days are a few hundred rows instead of a scan of their raw events.
CREATE TABLE IF NOT EXISTS rollup_referrer_hourly
(
    referrer_id String,
    hour DateTime('UTC'),
    clicks UInt64,
    signups UInt64,
    conversions UInt64
)
ENGINE = SummingMergeTree
ORDER BY (referrer_id, hour)
SETTINGS non_replicated_deduplication_window = 100000;

CREATE MATERIALIZED VIEW IF NOT EXISTS rollup_referrer_hourly_mv TO rollup_referrer_hourly AS
SELECT
    referrer_id,
    toStartOfHour(ts) AS hour,
    countIf(type = 'click' AND counted = 1) AS clicks,
    countIf(type = 'signup' AND counted = 1) AS signups,
    countIf(type = 'purchase' AND first_purchase = 1) AS conversions
FROM events
WHERE referrer_id != ''
GROUP BY referrer_id, hour;

-- Earnings come from the ledger: a refund held until its purchase arrived is reversed there.
CREATE TABLE IF NOT EXISTS rollup_earnings_hourly
(
    user_id String,
    hour DateTime('UTC'),
    earnings_cents Int64
)
ENGINE = SummingMergeTree
ORDER BY (user_id, hour)
SETTINGS non_replicated_deduplication_window = 100000;

CREATE MATERIALIZED VIEW IF NOT EXISTS rollup_earnings_hourly_mv TO rollup_earnings_hourly AS
SELECT user_id, toStartOfHour(ts) AS hour, sum(amount_cents) AS earnings_cents
FROM ledger
WHERE kind IN ('commission', 'commission_reversal')
GROUP BY user_id, hour;

-- What was there before these views existed (migrations run before any worker starts)
INSERT INTO rollup_referrer_hourly
SELECT referrer_id, toStartOfHour(ts) AS hour, countIf(type = 'click' AND counted = 1),
       countIf(type = 'signup' AND counted = 1), countIf(type = 'purchase' AND first_purchase = 1)
FROM events WHERE referrer_id != '' GROUP BY referrer_id, hour;

INSERT INTO rollup_earnings_hourly
SELECT user_id, toStartOfHour(ts) AS hour, sum(amount_cents)
FROM ledger WHERE kind IN ('commission', 'commission_reversal') GROUP BY user_id, hour;
