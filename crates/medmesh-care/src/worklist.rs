//! Each clinician's worklist: their open Tasks across the patients the PDP lets them see,
//! overdue first ([`crate::plan::order_worklist`]).

use medmesh_fhir::search::Handling;
use medmesh_kernel::RequestContext;
use medmesh_records::RecordError;
use medmesh_records::reading::Names;

use crate::plan::{PROPOSAL_CODE, WorkItem, due_of, order_worklist, task_kind};
use crate::service::{CareService, MAX_WORKLIST, id_of, practitioner_of, reference_of};

impl CareService {
    /// The calling clinician's open Tasks across the patients the PDP lets them see:
    /// plan activities, proposals to decide, refill requests, adherence reviews and
    /// referrals, overdue first (at most [`MAX_WORKLIST`]).
    ///
    /// # Errors
    /// [`RecordError::Invalid`] (403) for anyone but a practitioner.
    pub async fn worklist(&self, ctx: &RequestContext) -> Result<Vec<WorkItem>, RecordError> {
        let me = practitioner_of(ctx)?;
        let params = vec![
            ("owner".to_string(), me),
            (
                "status".to_string(),
                "requested,received,accepted,ready,in-progress,on-hold".to_string(),
            ),
            ("_count".to_string(), MAX_WORKLIST.to_string()),
        ];
        let bundle = self
            .records
            .search(ctx, "Task", &params, Handling::Strict)
            .await?;
        let mut names = Names::new();
        let mut items = Vec::new();
        for task in bundle["entry"]
            .as_array()
            .into_iter()
            .flatten()
            .filter(|e| e["search"]["mode"] != "outcome")
            .map(|e| &e["resource"])
        {
            let Some(patient) = reference_of(&task["for"])
                .and_then(|r| r.strip_prefix("Patient/"))
                .map(str::to_string)
            else {
                continue;
            };
            let due = due_of(task).map(str::to_string);
            let kind = task_kind(task);
            let plan = if kind == PROPOSAL_CODE {
                reference_of(&task["focus"])
            } else {
                task["basedOn"]
                    .as_array()
                    .and_then(|b| b.first())
                    .and_then(reference_of)
            }
            .and_then(|r| r.strip_prefix("CarePlan/"))
            .map(str::to_string);
            items.push(WorkItem {
                task: id_of(task),
                patient_name: names
                    .of(&self.records, ctx, &format!("Patient/{patient}"))
                    .await,
                patient,
                description: task["description"]
                    .as_str()
                    .or_else(|| task["code"]["coding"][0]["display"].as_str())
                    .unwrap_or_default()
                    .to_string(),
                status: task["status"].as_str().unwrap_or_default().to_string(),
                due_at: due
                    .as_deref()
                    .and_then(medmesh_fhir::datetime::parse_range)
                    .map(|d| d.hi),
                due,
                authored: task["authoredOn"].as_str().unwrap_or_default().to_string(),
                kind,
                plan,
                overdue: false,
            });
        }
        order_worklist(&mut items, self.records.core().now());
        Ok(items)
    }
}
