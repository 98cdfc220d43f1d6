-- The key directory: users' public keys as they published them, each with the statement
-- ("this key, of this kind, is this owner's") signed by the owner's Ed25519 signing key.
-- Ed25519 signing keys sign uploads; X25519 sealing and recovery keys receive the content
-- keys of end-to-end sealed documents. No private key is ever stored here.
CREATE TABLE user_keys (
    key_id TEXT PRIMARY KEY,
    owner TEXT NOT NULL,
    account_id TEXT NOT NULL,
    kind TEXT NOT NULL,
    public_key TEXT NOT NULL,
    statement_time TEXT NOT NULL,
    signature TEXT NOT NULL,
    created_micros BIGINT NOT NULL,
    revoked_micros BIGINT
);
CREATE INDEX user_keys_owner ON user_keys (owner);

-- Sealed documents' content keys, HPKE-wrapped for each recipient's sealing key. The node
-- cannot unwrap them. Revoking a share deletes its row.
CREATE TABLE sealed_keys (
    document_id TEXT NOT NULL,
    recipient_key_id TEXT NOT NULL,
    recipient TEXT NOT NULL,
    wrapped TEXT NOT NULL,
    added_by TEXT NOT NULL,
    added_micros BIGINT NOT NULL,
    PRIMARY KEY (document_id, recipient_key_id)
);
CREATE INDEX sealed_keys_recipient ON sealed_keys (recipient);
