-- The growth team's funnel and breakdowns read this instead of the events table: the steps
-- of a visitor's way to a purchase, one narrow row per step, sorted by step then time, so a
-- range is one contiguous read and no report joins or filters the whole events table.
--   step 1: a counted click, with the attributes the breakdowns group by (computed once here)
--   step 2: a counted signup (user_id, and the visitor it came from)
--   step 3: a first purchase (user_id; its visitor is the buyer's signup visitor, joined at read)
-- `visitor` is sipHash64(visitor_id), 0 for none: grouping by 8 bytes instead of a string.
-- Two visitor ids sharing a 64-bit hash would be counted as one (odds ~3e-6 over 10M visitors).
-- Inserts into events carry a dedup token; with deduplicate_blocks_in_dependent_materialized_views
-- and a dedup window here too, a retried insert adds nothing here either.
CREATE TABLE IF NOT EXISTS funnel_steps
(
    step UInt8,
    ts DateTime64(3, 'UTC'),
    visitor UInt64,
    user_id String,
    utm_source LowCardinality(String),
    utm_medium LowCardinality(String),
    utm_campaign LowCardinality(String),
    referrer_domain LowCardinality(String),
    country LowCardinality(String),
    device LowCardinality(String),
    browser LowCardinality(String)
)
ENGINE = MergeTree
PARTITION BY toYYYYMM(ts)
ORDER BY (step, ts)
SETTINGS non_replicated_deduplication_window = 100000;

CREATE MATERIALIZED VIEW IF NOT EXISTS funnel_steps_mv TO funnel_steps AS
SELECT
    multiIf(type = 'click', 1, type = 'signup', 2, 3) AS step,
    ts,
    if(visitor_id = '', 0, sipHash64(visitor_id)) AS visitor,
    if(type = 'click', '', user_id) AS user_id,
    utm_source,
    utm_medium,
    utm_campaign,
    domainWithoutWWW(referrer_url) AS referrer_domain,
    country,
    multiIf(match(user_agent, '(?i)ipad|tablet'), 'tablet', match(user_agent, '(?i)mobile|iphone|android'), 'mobile', user_agent = '', 'unknown', 'desktop') AS device,
    multiIf(match(user_agent, 'Edg/'), 'Edge', match(user_agent, 'OPR/'), 'Opera', match(user_agent, 'Firefox/'), 'Firefox', match(user_agent, 'Chrome/'), 'Chrome', match(user_agent, 'Safari/'), 'Safari', user_agent = '', 'unknown', 'other') AS browser
FROM events
WHERE (type IN ('click', 'signup') AND counted = 1) OR (type = 'purchase' AND first_purchase = 1);

-- What was there before the view existed (migrations run before any worker starts)
INSERT INTO funnel_steps
SELECT
    multiIf(type = 'click', 1, type = 'signup', 2, 3) AS step,
    ts,
    if(visitor_id = '', 0, sipHash64(visitor_id)) AS visitor,
    if(type = 'click', '', user_id) AS user_id,
    utm_source,
    utm_medium,
    utm_campaign,
    domainWithoutWWW(referrer_url) AS referrer_domain,
    country,
    multiIf(match(user_agent, '(?i)ipad|tablet'), 'tablet', match(user_agent, '(?i)mobile|iphone|android'), 'mobile', user_agent = '', 'unknown', 'desktop') AS device,
    multiIf(match(user_agent, 'Edg/'), 'Edge', match(user_agent, 'OPR/'), 'Opera', match(user_agent, 'Firefox/'), 'Firefox', match(user_agent, 'Chrome/'), 'Chrome', match(user_agent, 'Safari/'), 'Safari', user_agent = '', 'unknown', 'other') AS browser
FROM events
WHERE (type IN ('click', 'signup') AND counted = 1) OR (type = 'purchase' AND first_purchase = 1);
