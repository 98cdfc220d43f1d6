-- `_id` is searched in `resources` (its unique (res_type, res_id) key), not in index rows: each
-- resource's `_id` token row went to a random page of idx_token's value index, the costliest
-- index row of a write. The rows written before are removed; the value index finds them by
-- (res_type, param), so this touches only them.
DELETE FROM idx_token WHERE res_type IN (SELECT DISTINCT res_type FROM resources) AND param = '_id';
