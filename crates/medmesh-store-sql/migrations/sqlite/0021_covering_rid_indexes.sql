-- A search's per-row checks and sort keys look up one resource's rows of one parameter
-- (`EXISTS (... c.rid = r.rid AND c.param = 'category' AND c.code = ...)`, `MAX(o.hi) ... o.rid =
-- r.rid AND o.param = 'date'`). On `(rid)` alone each lookup read every row of the resource and
-- then the table; with the parameter and the value in the index it is one covering probe
-- (`/record`'s 1,000 newest results: 15 ms of SQL down to 9 ms; bench/README.md).
DROP INDEX idx_token_rid;
CREATE INDEX idx_token_rid ON idx_token (rid, param, code);
DROP INDEX idx_date_rid;
CREATE INDEX idx_date_rid ON idx_date (rid, param, lo, hi);
