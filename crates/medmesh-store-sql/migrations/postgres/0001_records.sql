-- Current version of each resource. `rid` is the internal key the index rows use.
CREATE TABLE resources (
    rid BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    res_type TEXT NOT NULL,
    res_id TEXT NOT NULL,
    version BIGINT NOT NULL,
    last_updated BIGINT NOT NULL,
    deleted BIGINT NOT NULL DEFAULT 0,
    UNIQUE (res_type, res_id)
);
CREATE INDEX resources_type_updated ON resources (res_type, last_updated);

-- Every version, bodies as opaque (codec-encoded) bytes.
CREATE TABLE resource_versions (
    seq BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    rid BIGINT NOT NULL REFERENCES resources (rid),
    res_type TEXT NOT NULL,
    res_id TEXT NOT NULL,
    version BIGINT NOT NULL,
    last_updated BIGINT NOT NULL,
    deleted BIGINT NOT NULL DEFAULT 0,
    body BYTEA NOT NULL,
    UNIQUE (rid, version)
);
CREATE INDEX resource_versions_type_updated ON resource_versions (res_type, last_updated);
CREATE INDEX resource_versions_updated ON resource_versions (last_updated);

-- Search index, one table per parameter type. `grp` ties composite components to one element.
CREATE TABLE idx_string (rid BIGINT NOT NULL, res_type TEXT NOT NULL, param TEXT NOT NULL, grp BIGINT NOT NULL, norm TEXT NOT NULL, exact TEXT NOT NULL);
CREATE INDEX idx_string_value ON idx_string (res_type, param, norm text_pattern_ops);
CREATE INDEX idx_string_rid ON idx_string (rid);

CREATE TABLE idx_token (rid BIGINT NOT NULL, res_type TEXT NOT NULL, param TEXT NOT NULL, grp BIGINT NOT NULL, system TEXT, code TEXT, text TEXT);
CREATE INDEX idx_token_value ON idx_token (res_type, param, code, system);
CREATE INDEX idx_token_rid ON idx_token (rid);

CREATE TABLE idx_date (rid BIGINT NOT NULL, res_type TEXT NOT NULL, param TEXT NOT NULL, grp BIGINT NOT NULL, lo BIGINT NOT NULL, hi BIGINT NOT NULL);
CREATE INDEX idx_date_value ON idx_date (res_type, param, lo, hi);
CREATE INDEX idx_date_rid ON idx_date (rid);

CREATE TABLE idx_quantity (rid BIGINT NOT NULL, res_type TEXT NOT NULL, param TEXT NOT NULL, grp BIGINT NOT NULL, lo DOUBLE PRECISION NOT NULL, hi DOUBLE PRECISION NOT NULL, system TEXT, code TEXT);
CREATE INDEX idx_quantity_value ON idx_quantity (res_type, param, lo);
CREATE INDEX idx_quantity_rid ON idx_quantity (rid);

CREATE TABLE idx_reference (rid BIGINT NOT NULL, res_type TEXT NOT NULL, param TEXT NOT NULL, grp BIGINT NOT NULL, target_type TEXT, target_id TEXT, url TEXT, ident_system TEXT, ident_value TEXT);
CREATE INDEX idx_reference_value ON idx_reference (res_type, param, target_id, target_type);
CREATE INDEX idx_reference_target ON idx_reference (target_id, target_type);
CREATE INDEX idx_reference_rid ON idx_reference (rid);

CREATE TABLE idx_uri (rid BIGINT NOT NULL, res_type TEXT NOT NULL, param TEXT NOT NULL, grp BIGINT NOT NULL, uri TEXT NOT NULL);
CREATE INDEX idx_uri_value ON idx_uri (res_type, param, uri);
CREATE INDEX idx_uri_rid ON idx_uri (rid);

-- Audit entries: no clinical content. The Merkle log builds on `seq`.
CREATE TABLE audit_log (
    seq BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    time_micros BIGINT NOT NULL,
    operation_id TEXT NOT NULL,
    actor TEXT NOT NULL,
    action TEXT NOT NULL,
    resource_type TEXT,
    resource_ids TEXT NOT NULL,
    outcome TEXT NOT NULL,
    source_ip TEXT
);

CREATE TABLE signing_keys (
    kid TEXT PRIMARY KEY,
    secret BYTEA NOT NULL,
    created_micros BIGINT NOT NULL,
    active BIGINT NOT NULL
);

CREATE TABLE export_jobs (
    id TEXT PRIMARY KEY,
    state TEXT NOT NULL,
    request TEXT NOT NULL,
    output TEXT,
    error TEXT,
    created BIGINT NOT NULL,
    updated BIGINT NOT NULL
);
