-- The audit log becomes a Merkle tree (RFC 9162 hashing). Each row is one leaf: the entry's
-- canonical JSON, which is exactly the hashed bytes, and the hashes of the tree nodes that
-- appending it completed (the leaf hash first, then each parent it closed). Node
-- (level, index) therefore lives in the row of its subtree's last leaf.
-- The rows of the first log format move over at startup, in their order (see store.rs).
ALTER TABLE audit_log RENAME TO audit_log_v1;

CREATE TABLE audit_log (
    leaf_index INTEGER PRIMARY KEY,
    time_micros INTEGER NOT NULL,
    actor TEXT NOT NULL,
    entry BLOB NOT NULL,
    nodes BLOB NOT NULL
);
CREATE INDEX audit_log_actor ON audit_log (actor, leaf_index);

-- Which patients an entry concerns, for the patient's own log.
CREATE TABLE audit_patient (
    patient_id TEXT NOT NULL,
    leaf_index INTEGER NOT NULL,
    PRIMARY KEY (patient_id, leaf_index)
);

-- The writer's frontier: tree size and the peaks of its perfect subtrees. One row; appends
-- lock it, which serializes them across replicas.
CREATE TABLE audit_head (
    id INTEGER PRIMARY KEY CHECK (id = 1),
    size INTEGER NOT NULL,
    peaks BLOB NOT NULL
);
INSERT INTO audit_head (id, size, peaks) VALUES (1, 0, X'');

-- Signed tree heads (C2SP checkpoints).
CREATE TABLE audit_checkpoints (
    tree_size INTEGER PRIMARY KEY,
    checkpoint TEXT NOT NULL,
    signed_micros INTEGER NOT NULL
);

-- The node's log-signing key (Ed25519).
CREATE TABLE audit_keys (
    name TEXT PRIMARY KEY,
    secret BLOB NOT NULL,
    public BLOB NOT NULL,
    created_micros INTEGER NOT NULL
);
