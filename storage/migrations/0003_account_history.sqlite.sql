-- The account's equity and day P&L over the day, recorded by storage/history.py (at most one
-- point per user per ACCOUNT_HISTORY_INTERVAL, pruned after 24 hours). Money is kept as exact
-- decimal text; timestamps are ISO 8601 UTC (they sort as text).
CREATE TABLE account_snapshots (
    user_id    INTEGER NOT NULL REFERENCES users(id) ON DELETE CASCADE,
    at         TEXT NOT NULL,
    equity     TEXT NOT NULL,
    day_pnl    TEXT,
    PRIMARY KEY (user_id, at)
);
CREATE INDEX account_snapshots_at ON account_snapshots(at);
