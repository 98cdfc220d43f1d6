-- The patient map (medmesh_audit::map): for each patient, under a keyed hash of their id, the
-- head of their chain in the log (entry count, newest leaf index, newest leaf hash). Its root
-- is signed in every checkpoint. Only the newest map is kept; it is updated when a checkpoint
-- is signed, from the entries appended since. No column holds a patient id.
CREATE TABLE audit_map_heads (
    bucket BIGINT NOT NULL,
    map_key BYTEA NOT NULL,
    entry_count BIGINT NOT NULL,
    last_index BIGINT NOT NULL,
    last_hash BYTEA NOT NULL,
    PRIMARY KEY (bucket, map_key)
);

-- Each patient's newest entry, as the appender links the next one to it (the chain inside
-- the log; medmesh_audit::chain). Kept apart from audit_patient, which the patient's page
-- reads, so that a row removed there cannot bend the chain of later entries. A patient
-- without a row here (an entry from before the chains) is found through audit_patient.
CREATE TABLE audit_chain_heads (
    patient_id TEXT PRIMARY KEY,
    entry_count BIGINT NOT NULL,
    last_index BIGINT NOT NULL,
    last_hash BYTEA NOT NULL
);

-- The log's size when the chains began: entries below it have no links. Zero on a node
-- that never had such entries, where a patient without a chain head has no entry at all.
CREATE TABLE audit_chain_start (
    id BIGINT PRIMARY KEY CHECK (id = 1),
    size BIGINT NOT NULL
);
INSERT INTO audit_chain_start (id, size) SELECT 1, size FROM audit_head WHERE id = 1;

-- The map's nodes: level 0 are the buckets' hashes, level 16 the root. Absent means empty.
CREATE TABLE audit_map_nodes (
    level BIGINT NOT NULL,
    node_index BIGINT NOT NULL,
    hash BYTEA NOT NULL,
    PRIMARY KEY (level, node_index)
);

-- The log size the map is at, and its root. One row; a map update locks it.
CREATE TABLE audit_map_head (
    id BIGINT PRIMARY KEY CHECK (id = 1),
    size BIGINT NOT NULL,
    root BYTEA NOT NULL
);
INSERT INTO audit_map_head (id, size, root) VALUES (1, 0, decode(repeat('00', 32), 'hex'));
