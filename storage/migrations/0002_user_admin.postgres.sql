-- Users can be disabled (no login, sessions refused); operator actions are audited.
ALTER TABLE users ADD COLUMN disabled_at TIMESTAMPTZ;
CREATE TABLE audit_log (
    id     BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    at     TIMESTAMPTZ NOT NULL,
    actor  TEXT NOT NULL,
    action TEXT NOT NULL,
    target TEXT NOT NULL,
    detail TEXT NOT NULL DEFAULT ''
);
