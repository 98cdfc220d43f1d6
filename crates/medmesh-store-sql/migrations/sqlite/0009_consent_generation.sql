-- A second counter in policy_generation (row 2) that rises only when stored consents change.
-- A write prepared before the write lock depends on the patients' consents (its sharing
-- tags) but not on trust edges, which nearly every import bundle changes (its Encounters):
-- checked against row 1, almost every prepared write would be thrown away.
INSERT INTO policy_generation (id, generation) VALUES (2, 0);
