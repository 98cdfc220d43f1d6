//! Care coordination on the record service.
//!
//! - **Care plans** ([`CareService::create_plan`], [`CareService::plan`]): a FHIR
//!   `CarePlan` per condition or episode, with `Goal`s whose progress is read from the
//!   record's observations and activities that are `Task`s owned by a care-team member or
//!   by the patient, each with a due date and a status.
//! - **Collaboration** ([`CareService::change`], [`CareService::decide`]): the plan's
//!   author and the patient's GP change it directly; any other member of its care team
//!   proposes a change, which one of them accepts or declines. Every change is a
//!   `Provenance` naming who made it (and who accepted it), so the plan keeps its history.
//! - **Care teams** ([`CareService::add_member`], [`CareService::end_member`]): membership
//!   with a role and a period; the PDP reads it as a care relationship, so adding a member
//!   opens the record to them and ending it closes it, on the next request.
//! - **Worklists** ([`CareService::worklist`]): a clinician's open Tasks across patients,
//!   overdue first.
//!
//! The rules with no I/O are in [`plan`]. Every read and write goes through the record
//! service as the caller: the PDP decides, bodies are sealed, and each step's audit entry
//! commits with its data.

pub mod plan;
mod service;
mod team;
mod worklist;
pub mod write_rule;

pub use plan::{
    ActivityStatus, Comparator, GoalEnd, NewActivity, NewGoal, PlanChange, PlanStatus, Progress,
    Reading, Target, TeamRole, WorkItem,
};
pub use service::{
    ActivityView, CareAccounts, CareService, Changed, GoalView, HistoryEntry, MAX_READ,
    MAX_WORKLIST, MemberView, NewMember, NewPlan, PlanSummary, PlanView, ProposalView, TeamView,
};
