-- Walk a patient's compartment in rid order, a page at a time ($everything, patient export).
CREATE INDEX idx_reference_target_rid ON idx_reference (target_id, target_type, rid);
DROP INDEX idx_reference_target;
