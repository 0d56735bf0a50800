-- One row per accepted event id: what arrived, and how the pipeline resolved it.
-- `counted` says whether the event moved the live counters; `note` says why not when it did not.
CREATE TABLE IF NOT EXISTS events
(
    id String,
    type LowCardinality(String),
    ts DateTime64(3, 'UTC'),
    received_at DateTime64(3, 'UTC'),
    referrer_id String,
    code LowCardinality(String),
    user_id String,
    visitor_id String,
    counted UInt8,
    first_purchase UInt8,
    note LowCardinality(String),
    amount_cents Int64,
    commission_cents Int64,
    track LowCardinality(String),
    currency LowCardinality(String),
    plan LowCardinality(String),
    purchase_id String,
    url String,
    referrer_url String,
    utm_source LowCardinality(String),
    utm_medium LowCardinality(String),
    utm_campaign LowCardinality(String),
    ip String,
    user_agent String,
    is_bot UInt8
)
ENGINE = MergeTree
PARTITION BY toYYYYMM(ts)
ORDER BY (referrer_id, type, ts, id)
-- a retried insert with the same insert_deduplication_token adds nothing
SETTINGS non_replicated_deduplication_window = 100000;
