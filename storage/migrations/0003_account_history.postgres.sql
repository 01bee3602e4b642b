-- The account's equity and day P&L over the day, recorded by storage/history.py (at most one
-- point per user per ACCOUNT_HISTORY_INTERVAL, pruned after 24 hours).
CREATE TABLE account_snapshots (
    user_id    BIGINT NOT NULL REFERENCES users(id) ON DELETE CASCADE,
    at         TIMESTAMPTZ NOT NULL,
    equity     NUMERIC(20, 2) NOT NULL,
    day_pnl    NUMERIC(20, 2),
    PRIMARY KEY (user_id, at)
);
CREATE INDEX account_snapshots_at ON account_snapshots(at);
