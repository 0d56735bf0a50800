-- The funnel's levels read this instead of grouping every click of the range by visitor:
-- per hour, visitor and fraud flag, the first and last click and signup, in seconds (as
-- windowFunnel compares them: toDateTime of the step's time). Those settle the level of a
-- visitor whose clicks are all before or all after its signups; for the few others the
-- funnel reads every click and signup time of their hours (`clicks`, `signups`), a tenth of
-- the bytes of their steps in funnel_steps (api/src/admin-reports.ts, funnel).
-- The same steps as funnel_steps (0005, 0008): counted clicks and signups with a visitor,
-- `visitor` the same sipHash64 of visitor_id, `flagged` whether the event was flagged.
-- A row without a click holds first_click 4294967295 and last_click 0 (likewise for
-- signups), so min and max merge rows as they should.
-- Every column is a min, a max or a union of times: merging a row twice changes nothing the
-- funnel reads (windowFunnel takes the times as a set), and inserts into events carry a dedup
-- token (deduplicate_blocks_in_dependent_materialized_views, with a dedup window here too).
CREATE TABLE IF NOT EXISTS funnel_hours
(
    hour DateTime('UTC'),
    visitor UInt64,
    flagged UInt8,
    first_click SimpleAggregateFunction(min, UInt32),
    last_click SimpleAggregateFunction(max, UInt32),
    first_signup SimpleAggregateFunction(min, UInt32),
    last_signup SimpleAggregateFunction(max, UInt32),
    clicks SimpleAggregateFunction(groupArrayArray, Array(UInt32)),
    signups SimpleAggregateFunction(groupArrayArray, Array(UInt32))
)
ENGINE = AggregatingMergeTree
PARTITION BY toYYYYMM(hour)
ORDER BY (hour, visitor, flagged)
SETTINGS non_replicated_deduplication_window = 100000;

CREATE MATERIALIZED VIEW IF NOT EXISTS funnel_hours_mv TO funnel_hours AS
SELECT
    toStartOfHour(toDateTime(ts)) AS hour,
    sipHash64(visitor_id) AS visitor,
    notEmpty(flags) AS flagged,
    min(if(type = 'click', toUInt32(toDateTime(ts)), 4294967295)) AS first_click,
    max(if(type = 'click', toUInt32(toDateTime(ts)), 0)) AS last_click,
    min(if(type = 'signup', toUInt32(toDateTime(ts)), 4294967295)) AS first_signup,
    max(if(type = 'signup', toUInt32(toDateTime(ts)), 0)) AS last_signup,
    groupArrayIf(toUInt32(toDateTime(ts)), type = 'click') AS clicks,
    groupArrayIf(toUInt32(toDateTime(ts)), type = 'signup') AS signups
FROM events
WHERE type IN ('click', 'signup') AND counted = 1 AND visitor_id != ''
GROUP BY hour, visitor, flagged;

-- What was there before the view existed (migrations run before any worker starts): a row
-- per step, not grouped (a GROUP BY over the whole history would hold it all in memory at
-- once); merges fold them per key, and the funnel reads unmerged rows as merged ones.
INSERT INTO funnel_hours
SELECT
    toStartOfHour(toDateTime(ts)) AS hour,
    sipHash64(visitor_id) AS visitor,
    notEmpty(flags) AS flagged,
    if(type = 'click', toUInt32(toDateTime(ts)), 4294967295) AS first_click,
    if(type = 'click', toUInt32(toDateTime(ts)), 0) AS last_click,
    if(type = 'signup', toUInt32(toDateTime(ts)), 4294967295) AS first_signup,
    if(type = 'signup', toUInt32(toDateTime(ts)), 0) AS last_signup,
    if(type = 'click', [toUInt32(toDateTime(ts))], []) AS clicks,
    if(type = 'signup', [toUInt32(toDateTime(ts))], []) AS signups
FROM events
WHERE type IN ('click', 'signup') AND counted = 1 AND visitor_id != '';
