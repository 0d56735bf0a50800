-- Fraud flags (workers/src/fraud.ts) on the events that raised or inherited them: a click
-- faster than a person clicks, a flagged referral's signup, its purchases and refunds, and an
-- admin's decision on a held commission (type 'decision').
ALTER TABLE events ADD COLUMN IF NOT EXISTS flags Array(LowCardinality(String)) AFTER note;

-- Who decided on a held commission, and why (decision rows only).
ALTER TABLE events ADD COLUMN IF NOT EXISTS actor String AFTER flags, ADD COLUMN IF NOT EXISTS reason String AFTER actor;

-- What of each rollup was flagged, so that every growth chart can leave it out. A rejected
-- commission (a 'decision' row) takes its amount off the commission like a reversal.
-- The flagged sums name `ev.commission_cents`: the bare name is the alias of another sum.
ALTER TABLE rollup_hourly
    ADD COLUMN IF NOT EXISTS flagged_clicks UInt64,
    ADD COLUMN IF NOT EXISTS flagged_signups UInt64,
    ADD COLUMN IF NOT EXISTS flagged_conversions UInt64,
    ADD COLUMN IF NOT EXISTS flagged_revenue_cents Int64,
    ADD COLUMN IF NOT EXISTS flagged_commission_cents Int64;

DROP VIEW IF EXISTS rollup_hourly_mv;

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
    sumIf(commission_cents, type IN ('purchase', 'refund', 'decision')) AS commission_cents,
    countIf(type = 'click' AND counted = 1 AND notEmpty(flags)) AS flagged_clicks,
    countIf(type = 'signup' AND counted = 1 AND notEmpty(flags)) AS flagged_signups,
    countIf(type = 'purchase' AND first_purchase = 1 AND notEmpty(flags)) AS flagged_conversions,
    sumIf(amount_cents, type = 'purchase' AND referrer_id != '' AND notEmpty(flags)) AS flagged_revenue_cents,
    sumIf(ev.commission_cents, type IN ('purchase', 'refund', 'decision') AND notEmpty(flags)) AS flagged_commission_cents
FROM events AS ev
GROUP BY hour;

ALTER TABLE rollup_referrer_daily
    ADD COLUMN IF NOT EXISTS flagged_clicks UInt64,
    ADD COLUMN IF NOT EXISTS flagged_signups UInt64,
    ADD COLUMN IF NOT EXISTS flagged_conversions UInt64,
    ADD COLUMN IF NOT EXISTS flagged_revenue_cents Int64,
    ADD COLUMN IF NOT EXISTS flagged_commission_cents Int64;

DROP VIEW IF EXISTS rollup_referrer_daily_mv;

CREATE MATERIALIZED VIEW IF NOT EXISTS rollup_referrer_daily_mv TO rollup_referrer_daily AS
SELECT
    toDate(ts) AS day,
    referrer_id,
    countIf(type = 'click' AND counted = 1) AS clicks,
    countIf(type = 'signup' AND counted = 1) AS signups,
    countIf(type = 'purchase' AND first_purchase = 1) AS conversions,
    sumIf(amount_cents, type = 'purchase') AS revenue_cents,
    sumIf(commission_cents, type IN ('purchase', 'refund', 'decision')) AS commission_cents,
    countIf(type = 'click' AND counted = 1 AND notEmpty(flags)) AS flagged_clicks,
    countIf(type = 'signup' AND counted = 1 AND notEmpty(flags)) AS flagged_signups,
    countIf(type = 'purchase' AND first_purchase = 1 AND notEmpty(flags)) AS flagged_conversions,
    sumIf(amount_cents, type = 'purchase' AND notEmpty(flags)) AS flagged_revenue_cents,
    sumIf(ev.commission_cents, type IN ('purchase', 'refund', 'decision') AND notEmpty(flags)) AS flagged_commission_cents
FROM events AS ev
WHERE referrer_id != ''
GROUP BY day, referrer_id;

-- A rejected commission leaves the referrer's earnings like a reversal.
DROP VIEW IF EXISTS rollup_earnings_hourly_mv;

CREATE MATERIALIZED VIEW IF NOT EXISTS rollup_earnings_hourly_mv TO rollup_earnings_hourly AS
SELECT user_id, toStartOfHour(ts) AS hour, sum(amount_cents) AS earnings_cents
FROM ledger
WHERE kind IN ('commission', 'commission_reversal', 'commission_rejected')
GROUP BY user_id, hour;
