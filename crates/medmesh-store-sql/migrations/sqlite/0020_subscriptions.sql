-- FHIR Subscriptions (R4 backport, rest-hook). The Subscription as its client wrote it (its
-- filters may name a patient, its endpoint and headers may hold a secret) is sealed in
-- `body`; what stays in clear is whose it is, its topic's canonical URL and its state.
CREATE TABLE fhir_subscriptions (
    id TEXT PRIMARY KEY,
    owner TEXT NOT NULL,
    topic TEXT NOT NULL,
    status TEXT NOT NULL,
    body BLOB NOT NULL,
    events INTEGER NOT NULL,
    last_error TEXT,
    created_micros INTEGER NOT NULL,
    updated_micros INTEGER NOT NULL
);
CREATE INDEX fhir_subscriptions_owner ON fhir_subscriptions (owner);
CREATE INDEX fhir_subscriptions_status ON fhir_subscriptions (status);

-- Each event a subscription was told of, numbered once (events-since-subscription-start),
-- so a change read twice (after a crash, or by two replicas) keeps its number.
CREATE TABLE fhir_subscription_events (
    subscription_id TEXT NOT NULL,
    event_key TEXT NOT NULL,
    number INTEGER NOT NULL,
    PRIMARY KEY (subscription_id, event_key)
);

-- How far the subscriptions have read the record's change feed (a resource_versions seq).
CREATE TABLE fhir_subscription_cursor (
    name TEXT PRIMARY KEY,
    seq INTEGER NOT NULL,
    updated_micros INTEGER NOT NULL
);
