-- The trust graph: edges derived from FHIR resources (CareTeam members, general
-- practitioners, accepted referral Tasks, Encounters, Consents) and break-glass
-- declarations. An edge opens `patient_id` to `principal`; `source` is the resource it comes
-- from, and every edge of a source is replaced when that resource is written.
CREATE TABLE policy_edges (
    source TEXT NOT NULL,
    patient_id TEXT NOT NULL,
    principal TEXT NOT NULL,
    kind TEXT NOT NULL,
    since_micros BIGINT NOT NULL,
    until_micros BIGINT,
    detail TEXT
);
CREATE INDEX policy_edges_principal ON policy_edges (principal, kind);
CREATE INDEX policy_edges_patient ON policy_edges (patient_id);
CREATE INDEX policy_edges_source ON policy_edges (source);

-- Active patient-privacy Consents, by patient, as the PDP reads them.
CREATE TABLE policy_consents (
    source TEXT PRIMARY KEY,
    patient_id TEXT NOT NULL,
    body TEXT NOT NULL
);
CREATE INDEX policy_consents_patient ON policy_consents (patient_id);

-- Notifications to patients (break-glass now; document opens and care events later).
CREATE TABLE notifications (
    id TEXT PRIMARY KEY,
    patient_id TEXT NOT NULL,
    kind TEXT NOT NULL,
    message TEXT NOT NULL,
    created_micros BIGINT NOT NULL,
    read_micros BIGINT
);
CREATE INDEX notifications_patient ON notifications (patient_id, created_micros);
