//! The trust network and what it opens: care relationships derived from FHIR resources
//! (edges), and a practitioner's compiled access to one patient ([`PatientAccess`]).
//!
//! Edges are derived when a resource is written ([`edges_from`]) and stored relationally,
//! replaced whenever their source resource changes:
//!
//! | source | edge |
//! |---|---|
//! | `CareTeam` (active) | each participant member → the team's patient, within the team's period and the member's own |
//! | `Patient.generalPractitioner` | the GP (practitioner or organization) → the patient |
//! | `Task` (accepted, in progress) focused on a referral `ServiceRequest` | the owner → the patient |
//! | `Encounter` with a `serviceProvider` | the organization → the patient, until the end plus the window |
//! | `Appointment` (pending, booked, arrived, checked in, fulfilled, no-show) | each practitioner, role or organization taking part → the patient, until the end plus the window |
//! | `Consent` (patient-privacy, active) | each actor a permit names → the patient (a consent edge) |
//! | break-glass declaration | the practitioner → the patient, for a few hours |
//!
//! A practitioner's principals are their own reference, their organizations, and (found by a
//! recursive query over `CareTeam` edges) every care team they belong to, directly or through
//! another team or organization.

use std::sync::Arc;

use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::consent::{Access, ConsentRule, Provision, parse_consent};

/// What kind of relationship an edge is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum EdgeKind {
    /// A member of the patient's CareTeam.
    CareTeam,
    /// The patient's general practitioner.
    GeneralPractitioner,
    /// An accepted referral.
    Referral,
    /// An encounter at the organization, within the window.
    Encounter,
    /// An appointment the practitioner takes part in, until its end plus the window.
    Appointment,
    /// A consent that permits the actor.
    Consent,
    /// A sharing rule: only resources written later and tagged for the actor.
    Shared,
    /// A declared emergency.
    BreakGlass,
    /// A prescription routed to a pharmacy (while it is active or on hold), or a dispense by
    /// it (for the window after): opens the patient's medication record only.
    Dispensing,
}

impl EdgeKind {
    /// A stable code (stored).
    pub fn code(self) -> &'static str {
        match self {
            Self::CareTeam => "care-team",
            Self::GeneralPractitioner => "general-practitioner",
            Self::Referral => "referral",
            Self::Encounter => "encounter",
            Self::Appointment => "appointment",
            Self::Consent => "consent",
            Self::Shared => "shared",
            Self::BreakGlass => "break-glass",
            Self::Dispensing => "dispensing",
        }
    }

    /// Parses a stored code.
    pub fn parse(code: &str) -> Option<Self> {
        Some(match code {
            "care-team" => Self::CareTeam,
            "general-practitioner" => Self::GeneralPractitioner,
            "referral" => Self::Referral,
            "encounter" => Self::Encounter,
            "appointment" => Self::Appointment,
            "consent" => Self::Consent,
            "shared" => Self::Shared,
            "break-glass" => Self::BreakGlass,
            "dispensing" => Self::Dispensing,
            _ => return None,
        })
    }

    /// Whether the edge is a care relationship (opens the record at the normal level).
    pub fn is_care(self) -> bool {
        !matches!(self, Self::Consent | Self::Shared | Self::Dispensing)
    }
}

/// One edge of the trust graph.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Edge {
    /// The patient id.
    pub patient: String,
    /// Who it opens to: `Practitioner/x`, `Organization/o`, `CareTeam/c`.
    pub principal: String,
    /// What kind.
    pub kind: EdgeKind,
    /// The resource it comes from (`CareTeam/c`, `Task/t`, `Consent/k`), or
    /// `break-glass/<id>`.
    pub source: String,
    /// From when, microseconds (0: always).
    pub since: i64,
    /// Until when, microseconds; `None`: open.
    pub until: Option<i64>,
    /// Safe detail: the referrer for a referral, the reason for break-glass.
    pub detail: Option<String>,
}

impl Edge {
    /// Whether the edge holds at `now`.
    pub fn holds_at(&self, now: i64) -> bool {
        self.since <= now && self.until.is_none_or(|u| now < u)
    }
}

fn reference(v: Option<&Value>) -> Option<String> {
    v?.get("reference")?.as_str().map(str::to_string)
}

fn patient_of(v: Option<&Value>) -> Option<String> {
    reference(v)?.strip_prefix("Patient/").map(str::to_string)
}

fn period(v: Option<&Value>) -> (i64, Option<i64>) {
    let at = |k: &str| {
        v.and_then(|p| p.get(k))
            .and_then(Value::as_str)
            .and_then(medmesh_fhir::datetime::parse_range)
    };
    (at("start").map_or(0, |r| r.lo), at("end").map(|r| r.hi))
}

/// The members of a CareTeam at `now`: the principals its edges open the record to then
/// (the team active, within the team's period and the member's own). The services that
/// address a team use this, so a member is who the PDP says is one.
pub fn members_at(team: &Value, now: i64) -> Vec<String> {
    let mut out: Vec<String> = edges_from(team, 0)
        .into_iter()
        .filter(|e| e.kind == EdgeKind::CareTeam && e.holds_at(now))
        .map(|e| e.principal)
        .collect();
    out.dedup();
    out
}

/// The edges a resource creates. `encounter_window` (microseconds) is how long after an
/// encounter its organization keeps access.
pub fn edges_from(resource: &Value, encounter_window: i64) -> Vec<Edge> {
    let rt = resource
        .get("resourceType")
        .and_then(Value::as_str)
        .unwrap_or_default();
    let id = resource
        .get("id")
        .and_then(Value::as_str)
        .unwrap_or_default();
    let source = format!("{rt}/{id}");
    let status = resource.get("status").and_then(Value::as_str);
    let edge = |patient: &str, principal: String, kind, (since, until), detail| Edge {
        patient: patient.to_string(),
        principal,
        kind,
        source: source.clone(),
        since,
        until,
        detail,
    };
    let mut out = Vec::new();
    match rt {
        "CareTeam" if matches!(status, None | Some("active")) => {
            if let Some(p) = patient_of(resource.get("subject")) {
                let when = period(resource.get("period"));
                for m in resource
                    .get("participant")
                    .and_then(Value::as_array)
                    .into_iter()
                    .flatten()
                {
                    if let Some(member) = reference(m.get("member")) {
                        // A member's own period narrows the team's: one who left has no
                        // access after their end, one who joins none before their start.
                        let (start, end) = period(m.get("period"));
                        let since = when.0.max(start);
                        let until = match (when.1, end) {
                            (Some(a), Some(b)) => Some(a.min(b)),
                            (a, b) => a.or(b),
                        };
                        out.push(edge(&p, member, EdgeKind::CareTeam, (since, until), None));
                    }
                }
            }
        }
        "Patient" => {
            for gp in resource
                .get("generalPractitioner")
                .and_then(Value::as_array)
                .into_iter()
                .flatten()
            {
                if let Some(r) = reference(Some(gp)) {
                    out.push(edge(id, r, EdgeKind::GeneralPractitioner, (0, None), None));
                }
            }
        }
        "Task" if matches!(status, Some("accepted" | "in-progress")) => {
            let focus = reference(resource.get("focus")).unwrap_or_default();
            if let (Some(p), Some(owner), true) = (
                patient_of(resource.get("for")),
                reference(resource.get("owner")),
                focus.starts_with("ServiceRequest/"),
            ) {
                let requester = reference(resource.get("requester"));
                out.push(edge(
                    &p,
                    owner,
                    EdgeKind::Referral,
                    (0, None),
                    Some(format!("{focus} from {}", requester.unwrap_or_default())),
                ));
            }
        }
        "Encounter" if !matches!(status, Some("cancelled" | "entered-in-error")) => {
            if let (Some(p), Some(org)) = (
                patient_of(resource.get("subject")),
                reference(resource.get("serviceProvider")),
            ) {
                let (start, end) = period(resource.get("period"));
                let until = end.unwrap_or(start).saturating_add(encounter_window);
                out.push(edge(
                    &p,
                    org,
                    EdgeKind::Encounter,
                    (start, Some(until)),
                    None,
                ));
            }
        }
        "Appointment"
            if matches!(
                status,
                Some("pending" | "booked" | "arrived" | "checked-in" | "fulfilled" | "noshow")
            ) =>
        {
            let actors: Vec<String> = resource
                .get("participant")
                .and_then(Value::as_array)
                .into_iter()
                .flatten()
                .filter(|p| p.get("status").and_then(Value::as_str) != Some("declined"))
                .filter_map(|p| reference(p.get("actor")))
                .collect();
            if let Some(p) = actors.iter().find_map(|a| a.strip_prefix("Patient/")) {
                let end = resource
                    .get("end")
                    .or_else(|| resource.get("start"))
                    .and_then(Value::as_str)
                    .and_then(medmesh_fhir::datetime::parse_range)
                    .map_or(0, |r| r.hi);
                let until = end.saturating_add(encounter_window);
                for a in actors.iter().filter(|a| {
                    a.starts_with("Practitioner/")
                        || a.starts_with("PractitionerRole/")
                        || a.starts_with("Organization/")
                        || a.starts_with("CareTeam/")
                }) {
                    out.push(edge(
                        p,
                        a.clone(),
                        EdgeKind::Appointment,
                        (0, Some(until)),
                        None,
                    ));
                }
            }
        }
        // A prescription routed to a pharmacy opens the patient's medication record to it
        // while it can be dispensed.
        "MedicationRequest" if matches!(status, Some("active" | "on-hold")) => {
            if let (Some(p), Some(pharmacy)) = (
                patient_of(resource.get("subject")),
                reference(resource.pointer("/dispenseRequest/performer")),
            ) && pharmacy.starts_with("Organization/")
            {
                out.push(edge(&p, pharmacy, EdgeKind::Dispensing, (0, None), None));
            }
        }
        // A pharmacy keeps seeing what it dispensed for the window after.
        "MedicationDispense" if !matches!(status, Some("entered-in-error")) => {
            if let Some(p) = patient_of(resource.get("subject")) {
                let when = ["whenHandedOver", "whenPrepared"]
                    .iter()
                    .find_map(|k| {
                        resource
                            .get(*k)
                            .and_then(Value::as_str)
                            .and_then(medmesh_fhir::datetime::parse_range)
                    })
                    .map_or(0, |r| r.hi);
                let until = when.saturating_add(encounter_window);
                for actor in resource
                    .get("performer")
                    .and_then(Value::as_array)
                    .into_iter()
                    .flatten()
                    .filter_map(|p| reference(p.get("actor")))
                    .filter(|a| a.starts_with("Organization/"))
                {
                    out.push(edge(
                        &p,
                        actor,
                        EdgeKind::Dispensing,
                        (0, Some(until)),
                        None,
                    ));
                }
            }
        }
        "Consent" => {
            if let Some(c) = parse_consent(resource) {
                let mut permitted = Vec::new();
                c.root.permitted_actors(&mut permitted);
                permitted.sort();
                permitted.dedup();
                for a in permitted {
                    out.push(edge(&c.patient, a, EdgeKind::Consent, (0, None), None));
                }
                let mut rules = Vec::new();
                c.root.sharing_rules(&mut rules);
                let mut shared: Vec<String> = rules
                    .iter()
                    .flat_map(|r| r.actors.iter().cloned())
                    .collect();
                shared.sort();
                shared.dedup();
                for a in shared {
                    out.push(edge(&c.patient, a, EdgeKind::Shared, (0, None), None));
                }
            }
        }
        _ => {}
    }
    out
}

/// A practitioner as the consent rules see them.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Principal {
    /// `Practitioner/x`.
    pub practitioner: Option<String>,
    /// Every reference that stands for them: their own, their organizations', and the care
    /// teams they belong to.
    pub references: Vec<String>,
}

/// Why a patient's data is open to an actor, and how far.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PatientAccess {
    patient: String,
    principal: Principal,
    edges: Vec<Edge>,
    consents: Vec<Arc<ConsentRule>>,
    purpose: String,
    now: i64,
    care: bool,
    dispensing: bool,
}

impl PatientAccess {
    /// Compiles access to `patient` from the edges that reach the actor (already filtered to
    /// their principals) and the patient's consents. `None` when nothing opens it.
    pub fn compile(
        patient: &str,
        principal: &Principal,
        edges: &[Edge],
        consents: &[Arc<ConsentRule>],
        now: i64,
    ) -> Option<Self> {
        let edges: Vec<Edge> = edges
            .iter()
            .filter(|e| e.patient == patient && e.holds_at(now))
            .cloned()
            .collect();
        if edges.is_empty() {
            return None;
        }
        let care = edges.iter().any(|e| e.kind.is_care());
        let dispensing = edges.iter().any(|e| e.kind == EdgeKind::Dispensing);
        let purpose = if edges
            .iter()
            .all(|e| e.kind == EdgeKind::BreakGlass || !e.kind.is_care())
            && edges.iter().any(|e| e.kind == EdgeKind::BreakGlass)
        {
            "ETREAT"
        } else {
            "TREAT"
        };
        Some(Self {
            patient: patient.to_string(),
            principal: principal.clone(),
            edges,
            consents: consents
                .iter()
                .filter(|c| c.patient == patient)
                .cloned()
                .collect(),
            purpose: purpose.to_string(),
            now,
            care,
            dispensing,
        })
    }

    /// The patient.
    pub fn patient(&self) -> &str {
        &self.patient
    }

    /// What the access rests on: edge sources and consents, for the audit entry.
    pub fn basis(&self) -> Vec<String> {
        let mut b: Vec<String> = self.edges.iter().map(|e| e.source.clone()).collect();
        b.sort();
        b.dedup();
        b
    }

    /// The purpose of use the access runs under (`TREAT`, or `ETREAT` for break-glass only).
    pub fn purpose(&self) -> &str {
        &self.purpose
    }

    /// Whether a break-glass declaration is part of the basis.
    pub fn break_glass(&self) -> bool {
        self.edges.iter().any(|e| e.kind == EdgeKind::BreakGlass)
    }

    /// Whether only sharing rules open this patient (then only tagged resources are seen).
    pub fn shared_only(&self) -> bool {
        !self.care && !self.dispensing && !self.edges.iter().any(|e| e.kind == EdgeKind::Consent)
    }

    fn rulings(&self, rt: &str, label: Option<&str>) -> (bool, Option<(bool, bool)>) {
        let access = Access {
            principals: &self.principal.references,
            practitioner: self.principal.practitioner.as_deref(),
            resource_type: rt,
            label,
            purpose: &self.purpose,
            now: self.now,
        };
        let mut denied = false;
        let mut permit: Option<(bool, bool)> = None;
        for c in &self.consents {
            match Provision::evaluate(&c.root, &access) {
                Some(r) if !r.permit => denied = true,
                Some(r) => {
                    let (p, l) = permit.unwrap_or((false, false));
                    permit = Some((p || r.names_practitioner, l || r.names_label));
                }
                None => {}
            }
        }
        (denied, permit)
    }

    /// Whether unlabelled data of `rt` is visible (tagged data aside).
    pub fn type_visible(&self, rt: &str) -> bool {
        let (denied, permit) = self.rulings(rt, None);
        let dispensing = self.dispensing && medmesh_auth::PHARMACY_READ_TYPES.contains(&rt);
        !denied && (self.care || dispensing || permit.is_some())
    }

    /// Whether resources of `rt` tagged as shared with the actor are open (no consent
    /// denies the type).
    pub fn tagged_visible(&self, rt: &str) -> bool {
        !self.rulings(rt, None).0
    }

    /// Whether data of `rt` carrying `label` is visible as far as that label goes.
    /// R needs a consent that covers it (or break-glass); V a consent naming the
    /// practitioner; a sensitivity label a consent naming the label.
    pub fn label_visible(&self, rt: &str, label: &str) -> bool {
        let (denied, permit) = self.rulings(rt, Some(label));
        if denied {
            return false;
        }
        match label {
            "R" => permit.is_some() || self.break_glass(),
            "V" => permit.is_some_and(|(named, _)| named),
            _ => permit.is_some_and(|(_, named)| named),
        }
    }

    /// Whether a resource of `rt` with `labels` (restricted ones, see
    /// [`crate::labels::labels_of`]) is visible; `tagged` says whether it carries a
    /// shared-with tag for one of the actor's principals.
    pub fn admits(&self, rt: &str, labels: &[String], tagged: bool) -> bool {
        let base = if self.shared_only() {
            tagged && !self.rulings(rt, None).0
        } else {
            self.type_visible(rt) || (tagged && !self.rulings(rt, None).0)
        };
        base && labels.iter().all(|l| self.label_visible(rt, l))
    }

    /// The restricted labels hidden for `rt` (for search), out of `universe`.
    pub fn hidden_labels(&self, rt: &str, universe: &[String]) -> Vec<String> {
        universe
            .iter()
            .filter(|l| !self.label_visible(rt, l))
            .cloned()
            .collect()
    }

    /// The edges behind the access.
    pub fn edges(&self) -> &[Edge] {
        &self.edges
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::consent::tests::consent;
    use crate::labels::restricted_labels;
    use proptest::prelude::*;
    use serde_json::json;

    #[test]
    fn a_routed_prescription_opens_the_medication_record_to_its_pharmacy_only() {
        let rx = json!({"resourceType": "MedicationRequest", "id": "rx", "status": "active",
            "subject": {"reference": "Patient/p1"},
            "dispenseRequest": {"performer": {"reference": "Organization/pharm"}}});
        let edges = edges_from(&rx, 0);
        assert_eq!(edges.len(), 1);
        assert_eq!(edges[0].kind, EdgeKind::Dispensing);
        assert_eq!(edges[0].principal, "Organization/pharm");
        // Stopped, or never routed: no edge.
        let mut stopped = rx.clone();
        stopped["status"] = json!("stopped");
        assert!(edges_from(&stopped, 0).is_empty());
        let pharmacist = Principal {
            practitioner: Some("Practitioner/ph".into()),
            references: vec!["Practitioner/ph".into(), "Organization/pharm".into()],
        };
        let access = PatientAccess::compile("p1", &pharmacist, &edges, &[], 1).unwrap();
        for open in [
            "MedicationRequest",
            "MedicationDispense",
            "AllergyIntolerance",
            "Patient",
        ] {
            assert!(access.type_visible(open), "{open}");
        }
        for closed in ["Observation", "Condition", "DocumentReference", "Encounter"] {
            assert!(!access.type_visible(closed), "{closed}");
        }
        assert!(!access.shared_only());
        // A dispense keeps its pharmacy's view for the window after it was handed over.
        let dispense = json!({"resourceType": "MedicationDispense", "id": "d", "status": "completed",
            "subject": {"reference": "Patient/p1"}, "whenHandedOver": "2026-12-01T10:00:00Z",
            "performer": [{"actor": {"reference": "Organization/pharm"}}, {"actor": {"reference": "Practitioner/ph"}}]});
        let edges = edges_from(&dispense, 1_000_000);
        assert_eq!(edges.len(), 1);
        assert!(edges[0].until.is_some());
    }

    fn dr(x: &str) -> Principal {
        Principal {
            practitioner: Some(format!("Practitioner/{x}")),
            references: vec![format!("Practitioner/{x}"), "Organization/h".into()],
        }
    }

    fn care_team() -> Vec<Edge> {
        edges_from(
            &json!({"resourceType": "CareTeam", "id": "ct", "status": "active",
                "subject": {"reference": "Patient/p"},
                "participant": [{"member": {"reference": "Practitioner/x"}}]}),
            0,
        )
    }

    #[test]
    fn a_care_team_members_own_period_narrows_the_teams() {
        let team = json!({"resourceType": "CareTeam", "id": "ct", "status": "active",
            "subject": {"reference": "Patient/p"},
            "period": {"start": "2026-01-01", "end": "2026-12-31"},
            "participant": [
                {"member": {"reference": "Practitioner/left"},
                 "period": {"start": "2025-06-01", "end": "2026-03-01T10:00:00Z"}},
                {"member": {"reference": "Practitioner/joins"}, "period": {"start": "2026-06-01"}},
                {"member": {"reference": "Practitioner/whole"}}]});
        let edges = edges_from(&team, 0);
        let of = |who: &str| {
            edges
                .iter()
                .find(|e| e.principal == format!("Practitioner/{who}"))
                .cloned()
        };
        let at = |d: &str| {
            medmesh_fhir::datetime::parse_range(d)
                .map(|r| r.lo)
                .unwrap_or_default()
        };
        let left = of("left").unwrap();
        assert!(left.holds_at(at("2026-02-01")));
        assert!(
            !left.holds_at(at("2026-03-01T10:00:01Z")),
            "ended at their end"
        );
        assert!(
            !left.holds_at(at("2025-12-01")),
            "not before the team's start"
        );
        let joins = of("joins").unwrap();
        assert!(!joins.holds_at(at("2026-05-31")) && joins.holds_at(at("2026-06-02")));
        assert!(
            !joins.holds_at(at("2027-01-02")),
            "not after the team's end"
        );
        let whole = of("whole").unwrap();
        assert!(whole.holds_at(at("2026-01-02")) && !whole.holds_at(at("2027-01-02")));
        assert_eq!(
            members_at(&team, at("2026-02-01")),
            ["Practitioner/left", "Practitioner/whole"]
        );
    }

    #[test]
    fn edges_come_from_care_teams_referrals_encounters_and_consents() {
        assert_eq!(care_team()[0].principal, "Practitioner/x");
        let task = json!({"resourceType": "Task", "id": "t", "status": "requested",
            "focus": {"reference": "ServiceRequest/r"}, "for": {"reference": "Patient/p"},
            "owner": {"reference": "Practitioner/card"}, "requester": {"reference": "Practitioner/gp"}});
        assert!(edges_from(&task, 0).is_empty(), "not yet accepted");
        let mut accepted = task.clone();
        accepted["status"] = json!("accepted");
        let e = edges_from(&accepted, 0);
        assert_eq!(
            (e[0].kind, e[0].principal.as_str()),
            (EdgeKind::Referral, "Practitioner/card")
        );
        let appt = json!({"resourceType": "Appointment", "id": "a", "status": "booked",
            "end": "2026-12-07T09:30:00Z",
            "participant": [{"actor": {"reference": "Patient/p"}, "status": "accepted"},
                            {"actor": {"reference": "Practitioner/doc"}, "status": "accepted"},
                            {"actor": {"reference": "Location/room"}, "status": "accepted"},
                            {"actor": {"reference": "Practitioner/no"}, "status": "declined"}]});
        let e = edges_from(&appt, 10);
        assert_eq!(e.len(), 1);
        assert_eq!(
            (e[0].kind, e[0].principal.as_str(), e[0].patient.as_str()),
            (EdgeKind::Appointment, "Practitioner/doc", "p")
        );
        assert!(e[0].holds_at(0) && e[0].until.is_some());
        let mut cancelled = appt.clone();
        cancelled["status"] = json!("cancelled");
        assert!(edges_from(&cancelled, 10).is_empty());
        let enc = json!({"resourceType": "Encounter", "id": "e", "status": "finished",
            "subject": {"reference": "Patient/p"}, "serviceProvider": {"reference": "Organization/h"},
            "period": {"start": "2026-01-01T00:00:00Z", "end": "2026-01-02T00:00:00Z"}});
        let e = edges_from(&enc, 1_000);
        // The end is the instant after the last second the period names.
        assert_eq!(e[0].until, Some(1_767_312_001_000_000 + 1_000));
    }

    #[test]
    fn a_care_relationship_opens_normal_data_only() {
        let a = PatientAccess::compile("p", &dr("x"), &care_team(), &[], 10).unwrap();
        assert!(a.admits("Observation", &[], false));
        for l in ["R", "V", "PSY"] {
            assert!(!a.admits("Observation", &[l.to_string()], false), "{l}");
        }
        assert!(PatientAccess::compile("p", &dr("y"), &[], &[], 10).is_none());
    }

    #[test]
    fn consents_narrow_and_widen() {
        // Permit Dr x R and PSY data, deny them Condition.
        let c = consent(json!({"type": "permit",
            "actor": [{"reference": {"reference": "Practitioner/x"}}],
            "securityLabel": [{"code": "R"}, {"code": "PSY"}],
            "provision": [{"type": "deny", "class": [{"code": "Condition"}]}]}));
        let a = PatientAccess::compile("p", &dr("x"), &care_team(), &[Arc::new(c.clone())], 10)
            .unwrap();
        assert!(a.admits("Observation", &["PSY".into()], false));
        assert!(a.admits("Observation", &["R".into(), "PSY".into()], false));
        assert!(!a.admits("Observation", &["HIV".into()], false));
        assert!(
            !a.admits("Observation", &["V".into()], false),
            "V needs... the practitioner named with V"
        );
        // The deny exception only applies where its parent matched (labelled data).
        assert!(!a.admits("Condition", &["PSY".into()], false));
        // A deny for everyone closes even a care relationship.
        let deny = consent(json!({"type": "deny"}));
        let a = PatientAccess::compile("p", &dr("x"), &care_team(), &[Arc::new(deny)], 10).unwrap();
        assert!(!a.admits("Observation", &[], false));
    }

    #[test]
    fn break_glass_opens_normal_and_restricted_but_not_sensitive() {
        let bg = Edge {
            patient: "p".into(),
            principal: "Practitioner/er".into(),
            kind: EdgeKind::BreakGlass,
            source: "break-glass/1".into(),
            since: 0,
            until: Some(100),
            detail: Some("unconscious".into()),
        };
        let a = PatientAccess::compile("p", &dr("er"), std::slice::from_ref(&bg), &[], 10).unwrap();
        assert_eq!(a.purpose(), "ETREAT");
        assert!(a.admits("Observation", &["R".into()], false));
        assert!(!a.admits("Observation", &["PSY".into()], false));
        assert!(
            PatientAccess::compile("p", &dr("er"), &[bg], &[], 100).is_none(),
            "expired"
        );
    }

    fn arb_label() -> impl Strategy<Value = String> {
        prop::sample::select(vec!["R", "V", "PSY", "HIV", "SEX"]).prop_map(str::to_string)
    }

    fn arb_provision(depth: u32) -> BoxedStrategy<Value> {
        let leaf = (
            any::<bool>(),
            prop::option::of(prop::sample::select(vec![
                "Practitioner/x",
                "Practitioner/y",
                "Organization/h",
            ])),
            prop::option::of(prop::sample::select(vec!["Observation", "Condition"])),
            prop::option::of(arb_label()),
        )
            .prop_map(|(permit, actor, class, label)| {
                let mut p = json!({"type": if permit { "permit" } else { "deny" }});
                if let Some(a) = actor {
                    p["actor"] = json!([{"reference": {"reference": a}}]);
                }
                if let Some(c) = class {
                    p["class"] = json!([{"code": c}]);
                }
                if let Some(l) = label {
                    p["securityLabel"] = json!([{"code": l}]);
                }
                p
            });
        if depth == 0 {
            leaf.boxed()
        } else {
            (leaf, prop::collection::vec(arb_provision(depth - 1), 0..3))
                .prop_map(|(mut p, nested)| {
                    if !nested.is_empty() {
                        p["provision"] = json!(nested);
                    }
                    p
                })
                .boxed()
        }
    }

    proptest! {
        /// What search is confined to (visible type, hidden labels) agrees with the
        /// per-resource decision, for random consents and resources.
        #[test]
        fn search_confinement_agrees_with_the_decision(
            provisions in prop::collection::vec(arb_provision(2), 0..4),
            care in any::<bool>(),
            rt in prop::sample::select(vec!["Observation", "Condition"]),
            labels in prop::collection::btree_set(arb_label(), 0..3),
        ) {
            let consents: Vec<ConsentRule> = provisions.into_iter().map(consent).collect();
            let mut edges = if care { care_team() } else { Vec::new() };
            for c in &consents {
                let mut e = edges_from(&json!({"resourceType": "Consent", "id": "c1", "status": "active",
                    "scope": {"coding": [{"code": "patient-privacy"}]},
                    "patient": {"reference": "Patient/p"}}), 0);
                edges.append(&mut e);
                let mut permitted = Vec::new();
                c.root.permitted_actors(&mut permitted);
                for a in permitted {
                    edges.push(Edge { patient: "p".into(), principal: a, kind: EdgeKind::Consent,
                        source: c.reference.clone(), since: 0, until: None, detail: None });
                }
            }
            let me = dr("x");
            edges.retain(|e| me.references.contains(&e.principal));
            let labels: Vec<String> = labels.into_iter().collect();
            let consents: Vec<Arc<ConsentRule>> = consents.into_iter().map(Arc::new).collect();
            if let Some(a) = PatientAccess::compile("p", &me, &edges, &consents, 10) {
                let hidden = a.hidden_labels(rt, &restricted_labels());
                let by_search = a.type_visible(rt) && labels.iter().all(|l| !hidden.contains(l));
                prop_assert_eq!(by_search, a.admits(rt, &labels, false));
            }
        }
    }
}
