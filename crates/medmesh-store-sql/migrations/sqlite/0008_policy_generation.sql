-- A counter of changes to the trust graph and the stored consents. Every transaction that
-- changes policy_edges or policy_consents raises it before it commits, so a node that keeps
-- a practitioner's compiled access knows, with one read, whether it still holds (a write
-- by this node, another replica or the CLI alike).
CREATE TABLE policy_generation (
    id INTEGER PRIMARY KEY,
    generation BIGINT NOT NULL
);
INSERT INTO policy_generation (id, generation) VALUES (1, 0);
