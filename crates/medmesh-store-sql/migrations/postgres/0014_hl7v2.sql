-- The HL7 v2 interface engine: every message received, sealed (raw, detail), with its
-- state, and the configured senders. In clear: the sender's configured name, MSH-10,
-- MSH-9 and the engine's state; the patient is a blind-index token.
CREATE TABLE hl7_messages (
    id TEXT PRIMARY KEY,
    sender TEXT NOT NULL,
    control_id TEXT NOT NULL,
    message_type TEXT NOT NULL,
    received_micros BIGINT NOT NULL,
    status TEXT NOT NULL,
    ack_code TEXT,
    raw BYTEA NOT NULL,
    detail BYTEA,
    patient_token TEXT,
    attempts BIGINT NOT NULL,
    updated_micros BIGINT NOT NULL,
    UNIQUE (sender, control_id)
);
CREATE INDEX hl7_messages_received ON hl7_messages (received_micros);
CREATE INDEX hl7_messages_status ON hl7_messages (status, received_micros);

CREATE TABLE hl7_senders (
    name TEXT PRIMARY KEY,
    application TEXT NOT NULL,
    facility TEXT NOT NULL,
    addresses TEXT NOT NULL,
    secret_hash TEXT,
    profile TEXT NOT NULL,
    created_micros BIGINT NOT NULL
);

-- Outbound channels' queues: sealed payloads, in order per channel.
CREATE TABLE hl7_outbound (
    id TEXT PRIMARY KEY,
    channel TEXT NOT NULL,
    source_id TEXT NOT NULL,
    queued_micros BIGINT NOT NULL,
    status TEXT NOT NULL,
    payload BYTEA NOT NULL,
    attempts BIGINT NOT NULL,
    next_attempt_micros BIGINT NOT NULL,
    last_error TEXT,
    UNIQUE (channel, source_id)
);
CREATE INDEX hl7_outbound_pending ON hl7_outbound (channel, status, queued_micros);
