-- FHIR's `combo-*` parameters of Observation are unions of two others (`combo-code` is `code`
-- and `component-code`; `medmesh_fhir::SearchParamDef::union_of`): search now reads their
-- members' rows, and writes no longer repeat them (a fifth of an import's index rows). The
-- rows written before are removed. Composite rows are named `code#component`.
DELETE FROM idx_token WHERE res_type = 'Observation' AND param IN ('combo-code', 'combo-data-absent-reason', 'combo-value-concept', 'combo-code-value-concept#0', 'combo-code-value-concept#1', 'combo-code-value-quantity#0');
DELETE FROM idx_quantity WHERE res_type = 'Observation' AND param IN ('combo-value-quantity', 'combo-code-value-quantity#1');
