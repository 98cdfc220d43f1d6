//! The directory: who can be booked, found by specialty, distance from a place, insurance
//! plan accepted, language, and the next free time.
//!
//! It reads directory resources only (PractitionerRole, Practitioner, Location, Organization,
//! InsurancePlan, Schedule), which hold no patient data:
//!
//! - **specialty**: `PractitionerRole.specialty` (or the role's Schedules' `specialty`);
//! - **distance**: `Location.position` of the role's locations, great-circle km;
//! - **insurance**: an `InsurancePlan` whose `network` lists the role's organization (the
//!   plan is named by id, identifier value or name);
//! - **language**: `Practitioner.communication` (a BCP 47 code such as `de` or `pt-BR`;
//!   `pt` matches `pt-BR`);
//! - **next free time**: the soonest proposal `$find` would make on the role's schedules.

use std::collections::BTreeMap;

use medmesh_kernel::RequestContext;
use medmesh_policy::Action;
use medmesh_records::RecordError;
use serde::Serialize;
use serde_json::Value;

use crate::calendar::concept_matches;
use crate::{FindRequest, SchedulingService};

/// The earth's mean radius, km.
const EARTH_KM: f64 = 6371.0088;

/// What the directory is asked.
#[derive(Debug, Clone, Default)]
pub struct DirectoryQuery {
    /// Specialty tokens (`code` or `system|code`, or the specialty's text).
    pub specialty: Option<String>,
    /// From where, `(latitude, longitude)` in degrees.
    pub near: Option<(f64, f64)>,
    /// How far from `near`, km (default 25).
    pub within_km: Option<f64>,
    /// An insurance plan: its id, an identifier value or its name.
    pub insurance: Option<String>,
    /// A language (BCP 47).
    pub language: Option<String>,
    /// Whether to look up each one's next free time.
    pub next_free: bool,
    /// At most this many (default and cap 100).
    pub limit: usize,
}

/// One practitioner role the directory found.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct DirectoryEntry {
    /// `PractitionerRole/r`.
    pub role: String,
    /// `Practitioner/p`, when the role names one.
    pub practitioner: Option<String>,
    /// The practitioner's name, as written.
    pub name: Option<String>,
    /// Specialties, as their display or text.
    pub specialties: Vec<String>,
    /// The organization's name.
    pub organization: Option<String>,
    /// The first location's name.
    pub location: Option<String>,
    /// The first location's address, one line.
    pub address: Option<String>,
    /// Distance from the place asked about, km (one decimal).
    pub distance_km: Option<f64>,
    /// Languages (BCP 47).
    pub languages: Vec<String>,
    /// Insurance plans accepted, by name.
    pub plans: Vec<String>,
    /// The next free time, a FHIR instant.
    pub next_free: Option<String>,
}

/// The great-circle distance between two points, km (haversine).
pub fn distance_km(a: (f64, f64), b: (f64, f64)) -> f64 {
    let (la1, lo1) = (a.0.to_radians(), a.1.to_radians());
    let (la2, lo2) = (b.0.to_radians(), b.1.to_radians());
    let h = ((la2 - la1) / 2.0).sin().powi(2)
        + la1.cos() * la2.cos() * ((lo2 - lo1) / 2.0).sin().powi(2);
    2.0 * EARTH_KM * h.sqrt().min(1.0).asin()
}

fn reference(v: &Value) -> Option<String> {
    v.get("reference")
        .and_then(Value::as_str)
        .map(str::to_string)
}

fn references(v: Option<&Value>) -> Vec<String> {
    v.and_then(Value::as_array)
        .map(|a| a.iter().filter_map(reference).collect())
        .unwrap_or_default()
}

fn concept_words(c: &Value) -> Option<String> {
    c.get("text")
        .or_else(|| c.pointer("/coding/0/display"))
        .or_else(|| c.pointer("/coding/0/code"))
        .and_then(Value::as_str)
        .map(str::to_string)
}

/// A person's name as written: its text, else prefixes, given names and family.
pub(crate) fn human_name(p: &Value) -> Option<String> {
    let n = p.get("name")?.as_array()?.first()?;
    if let Some(t) = n.get("text").and_then(Value::as_str) {
        return Some(t.to_string());
    }
    let mut parts: Vec<&str> = Vec::new();
    for k in ["prefix", "given"] {
        parts.extend(
            n.get(k)
                .and_then(Value::as_array)
                .into_iter()
                .flatten()
                .filter_map(Value::as_str),
        );
    }
    parts.extend(n.get("family").and_then(Value::as_str));
    (!parts.is_empty()).then(|| parts.join(" "))
}

fn languages(p: &Value) -> Vec<String> {
    p.get("communication")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .filter_map(|c| {
            // R4's Practitioner.communication is a CodeableConcept; R5's a backbone with
            // `language`.
            c.pointer("/coding/0/code")
                .or_else(|| c.pointer("/language/coding/0/code"))
                .and_then(Value::as_str)
                .map(str::to_string)
        })
        .collect()
}

fn speaks(langs: &[String], wanted: &str) -> bool {
    let wanted = wanted.to_ascii_lowercase();
    langs.iter().any(|l| {
        let l = l.to_ascii_lowercase();
        l == wanted || l.split('-').next() == Some(wanted.as_str())
    })
}

fn address_line(l: &Value) -> Option<String> {
    let a = l.get("address")?;
    if let Some(t) = a.get("text").and_then(Value::as_str) {
        return Some(t.to_string());
    }
    let mut parts: Vec<String> = a
        .get("line")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .filter_map(Value::as_str)
        .map(str::to_string)
        .collect();
    parts.extend(
        ["postalCode", "city"]
            .iter()
            .filter_map(|k| a.get(*k).and_then(Value::as_str).map(str::to_string)),
    );
    (!parts.is_empty()).then(|| parts.join(", "))
}

fn position(l: &Value) -> Option<(f64, f64)> {
    let p = l.get("position")?;
    Some((p.get("latitude")?.as_f64()?, p.get("longitude")?.as_f64()?))
}

fn plan_matches(plan: &Value, wanted: &str) -> bool {
    plan.get("id").and_then(Value::as_str) == Some(wanted)
        || plan
            .get("name")
            .and_then(Value::as_str)
            .is_some_and(|n| n.eq_ignore_ascii_case(wanted))
        || plan
            .get("identifier")
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
            .any(|i| i.get("value").and_then(Value::as_str) == Some(wanted))
}

impl SchedulingService {
    /// Searches the directory. What it reads is directory data; the actor needs a scope for
    /// it (every role may read the directory).
    ///
    /// # Errors
    /// [`RecordError::Forbidden`] without a scope for PractitionerRole.
    pub async fn directory(
        &self,
        ctx: &RequestContext,
        q: &DirectoryQuery,
    ) -> Result<Vec<DirectoryEntry>, RecordError> {
        let core = self.records.core();
        core.authorize(ctx, Action::Search, Some("PractitionerRole"))
            .await?;
        let mut params = Vec::new();
        if let Some(s) = q
            .specialty
            .as_ref()
            .filter(|s| s.contains('|') || s.chars().all(|c| c.is_ascii_digit()))
        {
            params.push(("specialty".into(), s.clone()));
        }
        let roles = self.search_directory("PractitionerRole", params).await?;
        let mut wanted: Vec<(String, String)> = Vec::new();
        for r in &roles {
            let mut refs = references(r.get("location"));
            refs.extend(r.get("practitioner").and_then(reference));
            refs.extend(r.get("organization").and_then(reference));
            for x in refs {
                if let Some((t, id)) = x.split_once('/') {
                    wanted.push((t.to_string(), id.to_string()));
                }
            }
        }
        wanted.sort();
        wanted.dedup();
        let around = self.read_directory(wanted).await?;
        let plans = if roles.is_empty() {
            Vec::new()
        } else {
            self.search_directory("InsurancePlan", Vec::new()).await?
        };
        let plans_of = |org: &Option<String>| -> Vec<&Value> {
            plans
                .iter()
                .filter(|p| {
                    org.as_ref()
                        .is_some_and(|o| references(p.get("network")).contains(o))
                })
                .map(|p| &**p)
                .collect()
        };
        let within = q.within_km.unwrap_or(25.0).max(0.0);
        let mut out = Vec::new();
        for r in &roles {
            if r.get("active").and_then(Value::as_bool) == Some(false) {
                continue;
            }
            let practitioner = r.get("practitioner").and_then(reference);
            let person = practitioner
                .as_ref()
                .and_then(|p| around.get(p))
                .map(|p| &**p);
            let organization = r.get("organization").and_then(reference);
            let locations: Vec<&Value> = references(r.get("location"))
                .iter()
                .filter_map(|l| around.get(l))
                .map(|l| &**l)
                .collect();
            if let Some(s) = &q.specialty {
                let specialties = r.get("specialty").and_then(Value::as_array);
                if !specialties
                    .into_iter()
                    .flatten()
                    .any(|c| concept_matches(c, s))
                {
                    continue;
                }
            }
            let langs = person.map(languages).unwrap_or_default();
            if let Some(l) = &q.language
                && !speaks(&langs, l)
            {
                continue;
            }
            let accepted = plans_of(&organization);
            if let Some(i) = &q.insurance
                && !accepted.iter().any(|p| plan_matches(p, i))
            {
                continue;
            }
            let distance = q.near.and_then(|here| {
                locations
                    .iter()
                    .filter_map(|l| position(l))
                    .map(|p| distance_km(here, p))
                    .min_by(f64::total_cmp)
            });
            if q.near.is_some() && distance.is_none_or(|d| d > within) {
                continue;
            }
            out.push(DirectoryEntry {
                role: format!(
                    "PractitionerRole/{}",
                    r.get("id").and_then(Value::as_str).unwrap_or_default()
                ),
                practitioner: practitioner.clone(),
                name: person.and_then(human_name),
                specialties: r
                    .get("specialty")
                    .and_then(Value::as_array)
                    .into_iter()
                    .flatten()
                    .filter_map(concept_words)
                    .collect(),
                organization: organization
                    .as_ref()
                    .and_then(|o| around.get(o))
                    .and_then(|o| o.get("name"))
                    .and_then(Value::as_str)
                    .map(str::to_string),
                location: locations
                    .first()
                    .and_then(|l| l.get("name"))
                    .and_then(Value::as_str)
                    .map(str::to_string),
                address: locations.first().and_then(|l| address_line(l)),
                distance_km: distance.map(|d| (d * 10.0).round() / 10.0),
                languages: langs,
                plans: accepted
                    .iter()
                    .filter_map(|p| p.get("name").and_then(Value::as_str).map(str::to_string))
                    .collect(),
                next_free: None,
            });
        }
        // Nearest first when a place was given, else by name.
        out.sort_by(|a, b| {
            a.distance_km
                .unwrap_or(0.0)
                .total_cmp(&b.distance_km.unwrap_or(0.0))
                .then_with(|| a.name.cmp(&b.name))
        });
        let limit = if q.limit == 0 { 100 } else { q.limit.min(100) };
        out.truncate(limit);
        if q.next_free && !out.is_empty() {
            let practitioners: Vec<String> =
                out.iter().filter_map(|e| e.practitioner.clone()).collect();
            let offers = self
                .find(
                    ctx,
                    &FindRequest {
                        practitioners,
                        per_calendar: 1,
                        limit: crate::MAX_PROPOSALS,
                        ..FindRequest::default()
                    },
                )
                .await?;
            let mut soonest: BTreeMap<String, String> = BTreeMap::new();
            for o in &offers {
                let who = o
                    .get("participant")
                    .and_then(Value::as_array)
                    .into_iter()
                    .flatten()
                    .filter_map(|p| p.pointer("/actor/reference").and_then(Value::as_str))
                    .find(|r| r.starts_with("Practitioner/"));
                if let (Some(who), Some(start)) = (who, o.get("start").and_then(Value::as_str)) {
                    let e = soonest
                        .entry(who.to_string())
                        .or_insert_with(|| start.to_string());
                    if start < e.as_str() {
                        *e = start.to_string();
                    }
                }
            }
            for e in &mut out {
                e.next_free = e
                    .practitioner
                    .as_ref()
                    .and_then(|p| soonest.get(p).cloned());
            }
        }
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn distances_are_great_circle_km() {
        // Berlin Brandenburg Gate to Munich Marienplatz: about 504 km.
        let d = distance_km((52.5163, 13.3777), (48.1374, 11.5755));
        assert!((d - 504.0).abs() < 3.0, "{d}");
        assert!(distance_km((10.0, 10.0), (10.0, 10.0)) < 1e-9);
    }

    #[test]
    fn languages_and_plans_match_loosely() {
        let p = json!({"communication": [{"coding": [{"system": "urn:ietf:bcp:47", "code": "pt-BR"}]}]});
        let l = languages(&p);
        assert!(speaks(&l, "pt") && speaks(&l, "PT-br") && !speaks(&l, "es"));
        let plan = json!({"id": "gold", "name": "Gold Care", "identifier": [{"value": "GC-1"}]});
        assert!(
            plan_matches(&plan, "gold")
                && plan_matches(&plan, "gold care")
                && plan_matches(&plan, "GC-1")
        );
        assert!(!plan_matches(&plan, "silver"));
        assert_eq!(
            human_name(
                &json!({"name": [{"prefix": ["Dr."], "given": ["Ana"], "family": "Ortega"}]})
            )
            .as_deref(),
            Some("Dr. Ana Ortega")
        );
    }
}
