-- Every cent that moves: append-only entries with deterministic ids, e.g. commission:<purchase id>.
-- `account` is the balance it moves: wallet (credit usable on the marketplace) or cash (paid out).
CREATE TABLE IF NOT EXISTS ledger
(
    entry_id String,
    kind LowCardinality(String),
    user_id String,
    account LowCardinality(String),
    amount_cents Int64,
    event_id String,
    source_user_id String,
    ts DateTime64(3, 'UTC'),
    created_at DateTime64(3, 'UTC') DEFAULT now64(3)
)
ENGINE = MergeTree
PARTITION BY toYYYYMM(ts)
ORDER BY (user_id, ts, entry_id)
SETTINGS non_replicated_deduplication_window = 100000;
