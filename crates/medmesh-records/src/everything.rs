//! `Patient/[id]/$everything`: the patient and everything in their compartment, paged.
//!
//! Pages walk the compartment in storage order with a keyset cursor, so a patient with 100k
//! resources costs one index range scan per page, never a full materialization.

use std::collections::HashMap;

use medmesh_audit::Outcome;
use medmesh_fhir::datetime::{self, format_instant};
use medmesh_fhir::{IssueType, SearchParamType, fhirpath, index};
use medmesh_policy::{Action, Grant};
use serde_json::{Value, json};

use crate::bundle::with_query;
use crate::context::RequestContext;
use crate::error::RecordError;
use crate::service::{DEFAULT_COUNT, MAX_COUNT, RecordService};

impl RecordService {
    /// Whether a resource's clinical date (its `date` search parameter, where the type has one)
    /// overlaps `[start, end)`. Resources without one are kept.
    fn in_care_period(&self, r: &Value, start: Option<i64>, end: Option<i64>) -> bool {
        let Some(rt) = r.get("resourceType").and_then(Value::as_str) else {
            return true;
        };
        let Some(def) = self
            .defs
            .search_param(rt, "date")
            .filter(|d| d.kind == SearchParamType::Date)
        else {
            return true;
        };
        let Some(expr) = &def.expression else {
            return true;
        };
        let values = index::values_of(SearchParamType::Date, &fhirpath::evaluate(expr, r));
        if values.is_empty() {
            return true;
        }
        values.iter().any(|v| match v {
            index::IndexValue::Date { lo, hi } => {
                start.is_none_or(|s| *hi > s) && end.is_none_or(|e| *lo < e)
            }
            _ => true,
        })
    }

    /// `GET Patient/[id]/$everything`.
    pub async fn everything(
        &self,
        ctx: &RequestContext,
        patient_id: &str,
        params: &[(String, String)],
    ) -> Result<Value, RecordError> {
        let grant = self.authorize(ctx, Action::Read, Some("Patient")).await?;
        // A confined actor reaches their own patient only; anyone else's answers as absent.
        if grant.compartment().is_some_and(|p| p != patient_id) {
            return Err(RecordError::NotFound);
        }
        let bad =
            |p: &str| RecordError::invalid(IssueType::Value, format!("invalid value for {p}"));
        let (mut since, mut start, mut end, mut types, mut count, mut cursor) =
            (None, None, None, Vec::new(), DEFAULT_COUNT, None);
        for (k, v) in params {
            match k.as_str() {
                "_since" => since = Some(datetime::parse_range(v).ok_or_else(|| bad("_since"))?.lo),
                "start" => start = Some(datetime::parse_range(v).ok_or_else(|| bad("start"))?.lo),
                "end" => end = Some(datetime::parse_range(v).ok_or_else(|| bad("end"))?.hi),
                "_type" => types.extend(v.split(',').map(str::to_string)),
                "_count" => {
                    count = v
                        .parse::<u32>()
                        .map_err(|_| bad("_count"))?
                        .clamp(1, MAX_COUNT)
                }
                "_page" => cursor = Some(v.clone()),
                "_format" | "_pretty" => {}
                other => {
                    return Err(RecordError::invalid(
                        IssueType::NotSupported,
                        format!("unknown $everything parameter '{other}'"),
                    ));
                }
            }
        }
        match self.store.read("Patient", patient_id).await? {
            // A practitioner's grant must reach the patient themself, or the record is absent.
            Some(p) if !p.deleted && self.admits(&grant, "Patient", &self.decode(&p).await?) => {}
            _ => return Err(RecordError::NotFound),
        }
        // Only types the actor may read are included; their grants also judge each resource.
        let wanted: Vec<String> = self
            .defs
            .patient_compartment()
            .keys()
            .filter(|t| types.is_empty() || types.contains(t))
            .cloned()
            .collect();
        let owned = self.quiet_grants(ctx, Action::Read, &wanted).await?;
        let grants: HashMap<&String, Grant> = self
            .defs
            .patient_compartment()
            .keys()
            .filter_map(|t| owned.get(t).map(|g| (t, g.clone())))
            .collect();
        let links: Vec<(String, Vec<String>)> = self
            .defs
            .patient_compartment()
            .iter()
            .filter(|(t, _)| grants.contains_key(t))
            .map(|(t, p)| (t.clone(), p.clone()))
            .collect();
        let mut type_filter = types.clone();
        if !types.is_empty() && !types.iter().any(|t| t == "Patient") {
            type_filter.retain(|t| t != "Patient");
        }
        let page = self
            .store
            .compartment_page(
                patient_id,
                &links,
                since,
                &type_filter,
                count,
                cursor.as_deref(),
            )
            .await?;
        let found = self.store.read_many(&page.matches).await?;
        let mut entries = Vec::new();
        let mut ids = Vec::new();
        let decoded = self.decode_many(&found.iter().collect::<Vec<_>>()).await?;
        for (v, r) in found.iter().zip(decoded) {
            if (start.is_some() || end.is_some()) && !self.in_care_period(&r, start, end) {
                continue;
            }
            // Granular scopes (`patient/Observation.rs?category=...`) limit within a type.
            let reach = grants.get(&v.resource_type);
            if !reach.is_some_and(|g| self.admits(g, &v.resource_type, &r)) {
                continue;
            }
            ids.push(format!("{}/{}", v.resource_type, v.id));
            entries.push(medmesh_fhir::json::search_entry(
                Some(format!("{}/{}/{}", ctx.base_url(), v.resource_type, v.id)),
                r,
                "match",
            ));
        }
        let mut entry = self.entry(ctx, "everything", Some("Patient"), ids, Outcome::Success);
        entry.patients = vec![patient_id.to_string()];
        self.audit.append(vec![entry]).await?;
        let path = format!("{}/Patient/{patient_id}/$everything", ctx.base_url());
        let kept: Vec<(String, String)> = params
            .iter()
            .filter(|(k, _)| k != "_page")
            .cloned()
            .collect();
        let mut links = vec![json!({"relation": "self", "url": with_query(&path, &kept)})];
        if let Some(next) = page.next {
            let mut p = kept;
            p.push(("_page".into(), next));
            links.push(json!({"relation": "next", "url": with_query(&path, &p)}));
        }
        Ok(medmesh_fhir::json::searchset(
            self.ids.new_id(),
            format_instant(self.now()),
            links,
            entries,
        ))
    }
}
