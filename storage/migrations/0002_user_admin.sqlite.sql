-- Users can be disabled (no login, sessions refused); operator actions are audited.
ALTER TABLE users ADD COLUMN disabled_at TEXT;
CREATE TABLE audit_log (
    id     INTEGER PRIMARY KEY AUTOINCREMENT,
    at     TEXT NOT NULL,
    actor  TEXT NOT NULL,
    action TEXT NOT NULL,
    target TEXT NOT NULL,
    detail TEXT NOT NULL DEFAULT ''
);
