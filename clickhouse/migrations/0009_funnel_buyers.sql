-- A first purchase's funnel step carries the buyer's signup: its visitor, time and whether it
-- was flagged. The worker knows all three when it applies the purchase (the buyer's state in
-- Redis), so the funnel reads the step as it is instead of joining every buyer in the range
-- to the signups of all time at read (0005 joined them at read).
-- On events, the three columns are set on first purchases only (empty elsewhere).
-- Steps stored before this migration keep signed_up = 0: the funnel still joins those.
ALTER TABLE events ADD COLUMN IF NOT EXISTS signup_visitor_id String AFTER flags,
    ADD COLUMN IF NOT EXISTS signed_up_at DateTime64(3, 'UTC') AFTER signup_visitor_id,
    ADD COLUMN IF NOT EXISTS signup_flagged UInt8 AFTER signed_up_at;

ALTER TABLE funnel_steps ADD COLUMN IF NOT EXISTS signed_up DateTime64(3, 'UTC'),
    ADD COLUMN IF NOT EXISTS signup_flagged UInt8;

DROP VIEW IF EXISTS funnel_steps_mv;

CREATE MATERIALIZED VIEW IF NOT EXISTS funnel_steps_mv TO funnel_steps AS
SELECT
    multiIf(type = 'click', 1, type = 'signup', 2, 3) AS step,
    ts,
    if(type = 'purchase', if(signup_visitor_id = '', 0, sipHash64(signup_visitor_id)), if(visitor_id = '', 0, sipHash64(visitor_id))) AS visitor,
    if(type = 'click', '', user_id) AS user_id,
    utm_source,
    utm_medium,
    utm_campaign,
    domainWithoutWWW(referrer_url) AS referrer_domain,
    country,
    multiIf(match(user_agent, '(?i)ipad|tablet'), 'tablet', match(user_agent, '(?i)mobile|iphone|android'), 'mobile', user_agent = '', 'unknown', 'desktop') AS device,
    multiIf(match(user_agent, 'Edg/'), 'Edge', match(user_agent, 'OPR/'), 'Opera', match(user_agent, 'Firefox/'), 'Firefox', match(user_agent, 'Chrome/'), 'Chrome', match(user_agent, 'Safari/'), 'Safari', user_agent = '', 'unknown', 'other') AS browser,
    notEmpty(flags) AS flagged,
    signed_up_at AS signed_up,
    signup_flagged
FROM events
WHERE (type IN ('click', 'signup') AND counted = 1) OR (type = 'purchase' AND first_purchase = 1);
