-- Data-encryption keys, wrapped under the node's key-encryption key (KEK). Every envelope
-- in the database names its key by `key_id`. A patient's keys are owned by the patient's
-- id; the node's own keys (non-patient resources, the blind-index key) by `node:...`.
-- Erasure empties `wrapped` and marks the key destroyed; the KEK is then rotated, so a
-- copy of the old bytes (a backup, a free page) no longer unwraps.
CREATE TABLE data_keys (
    key_id TEXT PRIMARY KEY,
    owner TEXT NOT NULL,
    kek_id TEXT,
    wrapped BYTEA NOT NULL,
    state TEXT NOT NULL,
    created_micros BIGINT NOT NULL,
    changed_micros BIGINT NOT NULL
);
CREATE UNIQUE INDEX data_keys_active_owner ON data_keys (owner) WHERE state = 'active';
CREATE INDEX data_keys_owner ON data_keys (owner);
CREATE INDEX data_keys_kek ON data_keys (kek_id);

-- Progress of resumable key jobs (`medmesh keys reencrypt`).
CREATE TABLE key_jobs (
    name TEXT PRIMARY KEY,
    cursor_value BIGINT NOT NULL,
    state TEXT NOT NULL,
    updated_micros BIGINT NOT NULL
);
