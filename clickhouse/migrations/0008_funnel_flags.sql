-- The funnel and breakdowns (funnel_steps, 0005) take the fraud-flag filter like every other
-- growth report: each step carries whether its event was flagged (events.flags, 0007).
-- Steps stored before this migration count as unflagged (the flags arrived in the same release).
ALTER TABLE funnel_steps ADD COLUMN IF NOT EXISTS flagged UInt8;

DROP VIEW IF EXISTS funnel_steps_mv;

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
    multiIf(match(user_agent, 'Edg/'), 'Edge', match(user_agent, 'OPR/'), 'Opera', match(user_agent, 'Firefox/'), 'Firefox', match(user_agent, 'Chrome/'), 'Chrome', match(user_agent, 'Safari/'), 'Safari', user_agent = '', 'unknown', 'other') AS browser,
    notEmpty(flags) AS flagged
FROM events
WHERE (type IN ('click', 'signup') AND counted = 1) OR (type = 'purchase' AND first_purchase = 1);
