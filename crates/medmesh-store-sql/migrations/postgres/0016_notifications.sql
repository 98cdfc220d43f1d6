-- The notification hub. Each account's choices (channels per category: no personal data)
-- and its e-mail address, sealed.
CREATE TABLE notification_settings (
    account TEXT PRIMARY KEY,
    choices TEXT NOT NULL,
    email BYTEA,
    updated_micros BIGINT NOT NULL
);

-- The outbox every notification is delivered from: one row per channel, unique by what it
-- is about, its text sealed. A worker claims due rows for a lease, so two nodes on one
-- database deliver each once.
CREATE TABLE notification_outbox (
    id TEXT PRIMARY KEY,
    account TEXT NOT NULL,
    category TEXT NOT NULL,
    channel TEXT NOT NULL,
    dedupe_key TEXT NOT NULL,
    payload BYTEA NOT NULL,
    status TEXT NOT NULL,
    attempts BIGINT NOT NULL,
    next_attempt_micros BIGINT NOT NULL,
    lease_owner TEXT,
    lease_until BIGINT NOT NULL,
    last_error TEXT,
    created_micros BIGINT NOT NULL,
    UNIQUE (channel, dedupe_key)
);
CREATE INDEX notification_outbox_due ON notification_outbox (status, next_attempt_micros);
