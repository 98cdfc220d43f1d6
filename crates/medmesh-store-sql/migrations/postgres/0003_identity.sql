-- Identity: accounts, credentials, sessions, OAuth clients, codes, tokens, invitations.
-- Random secrets (session cookies, codes, refresh tokens, recovery codes) are stored as
-- SHA-256 hashes; passwords as argon2id PHC strings.

CREATE TABLE users (
    id TEXT PRIMARY KEY,
    username TEXT NOT NULL UNIQUE,
    role TEXT NOT NULL,
    password_hash TEXT,
    totp_secret BYTEA,
    totp_confirmed BIGINT NOT NULL DEFAULT 0,
    totp_last_step BIGINT,
    patient_id TEXT,
    practitioner_id TEXT,
    practitioner_role_id TEXT,
    verification TEXT NOT NULL,
    specialty TEXT,
    organization TEXT,
    external_subject TEXT UNIQUE,
    disabled BIGINT NOT NULL DEFAULT 0,
    created BIGINT NOT NULL
);

CREATE TABLE recovery_codes (
    user_id TEXT NOT NULL,
    code_hash TEXT NOT NULL,
    used BIGINT NOT NULL DEFAULT 0,
    PRIMARY KEY (user_id, code_hash)
);

CREATE TABLE sessions (
    id_hash TEXT PRIMARY KEY,
    handle TEXT NOT NULL UNIQUE,
    user_id TEXT NOT NULL,
    csrf TEXT NOT NULL,
    auth_time BIGINT NOT NULL,
    expires BIGINT NOT NULL,
    revoked BIGINT NOT NULL DEFAULT 0,
    user_agent TEXT NOT NULL,
    ip TEXT NOT NULL,
    complete BIGINT NOT NULL
);
CREATE INDEX sessions_user ON sessions (user_id, expires);

CREATE TABLE login_throttle (
    key TEXT PRIMARY KEY,
    failures BIGINT NOT NULL,
    last_failure BIGINT NOT NULL
);

CREATE TABLE oauth_clients (
    client_id TEXT PRIMARY KEY,
    name TEXT NOT NULL,
    kind TEXT NOT NULL,
    secret_hash TEXT,
    redirect_uris TEXT NOT NULL,
    jwks TEXT,
    scope TEXT NOT NULL,
    created BIGINT NOT NULL
);

CREATE TABLE oauth_codes (
    code_hash TEXT PRIMARY KEY,
    client_id TEXT NOT NULL,
    user_id TEXT NOT NULL,
    redirect_uri TEXT NOT NULL,
    scope TEXT NOT NULL,
    patient TEXT,
    code_challenge TEXT NOT NULL,
    nonce TEXT,
    auth_time BIGINT NOT NULL,
    expires BIGINT NOT NULL,
    used BIGINT NOT NULL DEFAULT 0,
    family TEXT NOT NULL
);

CREATE TABLE refresh_tokens (
    token_hash TEXT PRIMARY KEY,
    family TEXT NOT NULL,
    client_id TEXT NOT NULL,
    user_id TEXT NOT NULL,
    scope TEXT NOT NULL,
    patient TEXT,
    expires BIGINT NOT NULL,
    used BIGINT NOT NULL DEFAULT 0,
    revoked BIGINT NOT NULL DEFAULT 0,
    auth_time BIGINT NOT NULL
);
CREATE INDEX refresh_family ON refresh_tokens (family);

CREATE TABLE revoked_tokens (
    jti TEXT PRIMARY KEY,
    expires BIGINT NOT NULL
);

CREATE TABLE assertion_jtis (
    jti TEXT PRIMARY KEY,
    expires BIGINT NOT NULL
);

CREATE TABLE invitations (
    code_hash TEXT PRIMARY KEY,
    role TEXT NOT NULL,
    patient_id TEXT,
    practitioner_id TEXT,
    organization TEXT,
    created_by TEXT NOT NULL,
    expires BIGINT NOT NULL,
    used BIGINT NOT NULL DEFAULT 0
);
