//! What a patient's consent keeps from a practitioner: the categories of their record
//! (a whole resource type, or one sensitivity label within it) that hold data the actor's
//! reach does not admit. A chart shows these as "restricted by the patient's consent"
//! rather than leaving them silently missing.

use medmesh_audit::Outcome;
use medmesh_fhir::search::{self, Criterion, Handling, SearchQuery};
use medmesh_policy::Action;
use medmesh_policy::labels::restricted_labels;
use medmesh_store::PageRequest;

use crate::confine::compartment_criterion;
use crate::context::RequestContext;
use crate::error::RecordError;
use crate::service::RecordService;

/// One category of a patient's data that consent withholds from the actor.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Withheld {
    /// The resource type.
    pub resource_type: String,
    /// The restricted label (`R`, `V`, or a sensitivity code such as `PSY`) when only the
    /// data carrying it is withheld; `None` when the whole type is.
    pub label: Option<String>,
}

/// How the actor reaches one patient's chart: what consent withholds, and whether (and
/// until when) the access is an emergency (break-glass) one.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct ChartAccess {
    /// The categories withheld.
    pub withheld: Vec<Withheld>,
    /// The end (microseconds) of the actor's break-glass access, while one holds.
    pub emergency_until: Option<i64>,
}

impl RecordService {
    /// How the actor reaches `patient`: the categories of their data, among `types`, that
    /// hold something the actor may not see, and the end of an emergency access. Each type
    /// is judged by the PDP as a search of it (a refusal is audited as any); the answer
    /// names categories, never resources or how many there are, and is itself audited as
    /// one `withheld` entry about the patient.
    ///
    /// # Errors
    /// [`RecordError::NotFound`] when nothing opens the patient to the actor at all (the
    /// same answer as for a patient who does not exist), or a storage failure.
    pub async fn chart_access(
        &self,
        ctx: &RequestContext,
        patient: &str,
        types: &[&str],
    ) -> Result<ChartAccess, RecordError> {
        let labels = restricted_labels();
        // The types are judged and probed at once: a chart asks about seven of them, and one
        // after the other their probes took longer than reading the record
        // (bench/README.md, issue 16).
        let judged = futures::future::try_join_all(
            types
                .iter()
                .map(|rt| self.withheld_of_type(ctx, patient, rt, &labels)),
        )
        .await?;
        let mut out = Vec::new();
        let mut emergency_until = None;
        for (withheld, until) in judged {
            out.extend(withheld);
            emergency_until = emergency_until.max(until);
        }
        let mut entry = self.entry(ctx, "withheld", None, Vec::new(), Outcome::Success);
        entry.patients = vec![patient.to_string()];
        self.audit.append(vec![entry]).await?;
        Ok(ChartAccess {
            withheld: out,
            emergency_until,
        })
    }

    /// What consent withholds of one type of `patient`'s data from the actor, and the end
    /// of the actor's break-glass access to the patient, if one holds.
    async fn withheld_of_type(
        &self,
        ctx: &RequestContext,
        patient: &str,
        rt: &str,
        labels: &[String],
    ) -> Result<(Vec<Withheld>, Option<i64>), RecordError> {
        self.check_type(rt)?;
        let grant = self.authorize(ctx, Action::Search, Some(rt)).await?;
        // An unrestricted grant (an operator) or a patient's own compartment: nothing
        // is withheld by consent.
        let Some(reach) = grant.reach() else {
            return Ok((Vec::new(), None));
        };
        let Some(access) = reach.patient(patient) else {
            return Err(RecordError::NotFound);
        };
        let emergency_until = access
            .edges()
            .iter()
            .filter(|e| e.kind == medmesh_policy::access::EdgeKind::BreakGlass)
            .filter_map(|e| e.until)
            .max();
        // The criterion a compartment search uses, so the probes read the same rows.
        let Some(compartment) = compartment_criterion(
            self.definitions().patient_compartment(),
            "Patient",
            patient,
            rt,
        ) else {
            return Ok((Vec::new(), emergency_until));
        };
        let mut out = Vec::new();
        if !access.type_visible(rt) {
            if self.holds_any(rt, Some(compartment), &[]).await? {
                out.push(Withheld {
                    resource_type: rt.to_string(),
                    label: None,
                });
            }
            return Ok((out, emergency_until));
        }
        let hidden = access.hidden_labels(rt, labels);
        // The hidden labels are probed all at once, first across the node (an index seek:
        // most nodes hold few labelled resources of a type, often none), then in the
        // patient's compartment (which reads the type's part of it), and only then label by
        // label. One probe per label per type, one after the other, was most of a chart's
        // time (bench/README.md, issue 16).
        if hidden.is_empty()
            || !self.holds_any(rt, None, &hidden).await?
            || !self
                .holds_any(rt, Some(compartment.clone()), &hidden)
                .await?
        {
            return Ok((out, emergency_until));
        }
        for label in hidden {
            if self
                .holds_any(rt, Some(compartment.clone()), std::slice::from_ref(&label))
                .await?
            {
                out.push(Withheld {
                    resource_type: rt.to_string(),
                    label: Some(label),
                });
            }
        }
        Ok((out, emergency_until))
    }

    /// Whether the patient's compartment (the node, without one) holds a resource of `rt`
    /// carrying any of `labels` (any resource of `rt` when `labels` is empty). The answer
    /// without a compartment only decides whether to ask with one: it is never shown.
    async fn holds_any(
        &self,
        rt: &str,
        compartment: Option<Criterion>,
        labels: &[String],
    ) -> Result<bool, RecordError> {
        let mut q: SearchQuery =
            search::parse_query(self.definitions(), rt, &[], Handling::Strict)?;
        q.criteria.extend(compartment);
        if !labels.is_empty() {
            // A comma between values is FHIR's "or"; the labels are bare codes.
            q.criteria.push(
                search::parse_criterion(self.definitions(), rt, "_security", &labels.join(","))
                    .map_err(|_| RecordError::Forbidden)?,
            );
        }
        self.blind(&mut q)?;
        let page = PageRequest {
            count: 1,
            cursor: None,
            with_total: false,
            snapshot: false,
        };
        Ok(!self.store.search(&q, &page).await?.matches.is_empty())
    }
}
