-- Witness cosignatures (C2SP tlog-cosignature/v1) on the audit log's checkpoints: for each
-- witness the node lists, the newest checkpoint it cosigned, kept as the checkpoint text
-- with the node's signature and that witness's line. Served with the patient's log, so a
-- client can ask for a quorum of witnesses; a push to the witness starts from this size.
-- Tree heads only: no patient data.
CREATE TABLE audit_cosignatures (
    witness TEXT PRIMARY KEY,
    tree_size BIGINT NOT NULL,
    checkpoint TEXT NOT NULL
);
