//! The patient's care team: its members with their roles and periods, added and ended
//! through the record service as the caller. Membership is a care relationship for the
//! PDP (`medmesh_policy::access`), so it opens and closes the record on the next request.

use medmesh_kernel::RequestContext;
use medmesh_policy::Action;
use medmesh_records::RecordError;
use medmesh_records::reading::Names;
use serde_json::json;

use crate::plan::TeamRole;
use crate::service::{
    CareService, MemberView, NewMember, TeamView, date, id_of, practitioner_of, precise_instant,
    push, reference_of, without_meta,
};

impl CareService {
    /// The patient's care team: its members, current and past, by name.
    ///
    /// # Errors
    /// A refusal when the caller may not read the patient's care team.
    pub async fn care_team(
        &self,
        ctx: &RequestContext,
        patient: &str,
    ) -> Result<TeamView, RecordError> {
        let Some((team, _)) = self.team_of(ctx, patient).await? else {
            return Ok(TeamView::default());
        };
        let now = self.records.core().now();
        let mut names = Names::new();
        let mut members = Vec::new();
        for p in team["participant"].as_array().into_iter().flatten() {
            let Some(member) = reference_of(&p["member"]).map(str::to_string) else {
                continue;
            };
            let role = p["role"][0]["coding"]
                .as_array()
                .into_iter()
                .flatten()
                .find(|c| c["system"] == crate::plan::TEAM_ROLE_SYSTEM)
                .and_then(|c| c["code"].as_str())
                .and_then(TeamRole::parse);
            members.push(MemberView {
                name: names.of(&self.records, ctx, &member).await,
                role,
                role_text: p["role"][0]["text"]
                    .as_str()
                    .or_else(|| p["role"][0]["coding"][0]["display"].as_str())
                    .unwrap_or_default()
                    .to_string(),
                start: p["period"]["start"].as_str().map(str::to_string),
                end: p["period"]["end"].as_str().map(str::to_string),
                active: medmesh_policy::access::members_at(&team, now).contains(&member),
                member,
            });
        }
        members.sort_by(|a, b| b.active.cmp(&a.active).then_with(|| a.name.cmp(&b.name)));
        Ok(TeamView {
            id: Some(id_of(&team)),
            members,
        })
    }

    /// Adds `new` to the patient's care team (made on the first member). Membership opens
    /// the patient's record to them from its start, on their next request; they are told.
    ///
    /// # Errors
    /// [`RecordError::Invalid`] for a practitioner who is not in the directory or is a
    /// member already, or bad dates; a refusal when the caller may not change the team.
    pub async fn add_member(
        &self,
        ctx: &RequestContext,
        patient: &str,
        new: NewMember,
    ) -> Result<TeamView, RecordError> {
        practitioner_of(ctx)?;
        let id = new
            .member
            .strip_prefix("Practitioner/")
            .unwrap_or(&new.member)
            .to_string();
        if !crate::plan::medmesh_fhir_id(&id) {
            return Err(RecordError::rule("a member is a Practitioner/<id>"));
        }
        for d in [&new.start, &new.end].into_iter().flatten() {
            if d.len() != 10 || medmesh_fhir::datetime::parse_range(d).is_none() {
                return Err(RecordError::rule("a date is written YYYY-MM-DD"));
            }
        }
        if matches!((&new.start, &new.end), (Some(s), Some(e)) if e < s) {
            return Err(RecordError::rule("a membership ends after it starts"));
        }
        let member = format!("Practitioner/{id}");
        self.read(ctx, "Patient", patient).await?;
        match self.read(ctx, "Practitioner", &id).await {
            Ok(_) => {}
            Err(RecordError::NotFound | RecordError::Gone { .. }) => {
                return Err(RecordError::rule(
                    "there is no such practitioner in the directory",
                ));
            }
            Err(e) => return Err(e),
        }
        let core = self.records.core();
        let now = core.now();
        let existing = self.team_of(ctx, patient).await?;
        if Self::members_now(existing.as_ref().map(|(t, _)| t), now).contains(&member) {
            return Err(RecordError::rule(
                "they are a member of the care team already",
            ));
        }
        let mut period = json!({"start": new.start.clone().unwrap_or_else(|| date(now))});
        if let Some(e) = &new.end {
            period["end"] = json!(e);
        }
        let participant =
            json!({"role": new.role.to_fhir(), "member": {"reference": member}, "period": period});
        let (team_id, team, head_version) = match existing {
            Some((t, v)) => {
                let mut t = without_meta(t);
                push(&mut t, "participant", participant);
                (id_of(&t), t, Some(v))
            }
            None => {
                let team_id = core.ids().new_id();
                let t = json!({
                    "resourceType": "CareTeam",
                    "id": team_id,
                    "status": "active",
                    "name": "Care team",
                    "subject": {"reference": format!("Patient/{patient}")},
                    "period": {"start": date(now)},
                    "participant": [participant],
                });
                (team_id, t, None)
            }
        };
        core.check_resource("CareTeam", &team)?;
        let action = if head_version.is_some() {
            Action::Update
        } else {
            Action::Create
        };
        let grant = core.authorize(ctx, action, Some("CareTeam")).await?;
        let rows = self
            .notices(
                std::slice::from_ref(&member),
                &format!("care-team:{team_id}"),
            )
            .await?;
        let mut tx = core.begin_write().await?;
        let head = match head_version {
            Some(v) => Self::head_at(&mut tx, "CareTeam", &team_id, v).await?,
            None => None,
        };
        core.write_version(ctx, &mut tx, &grant, "CareTeam", &team_id, team, head)
            .await?;
        self.audit_step(
            ctx,
            &mut tx,
            &grant,
            "care-team-add",
            "CareTeam",
            vec![team_id, member],
            patient,
        )
        .await?;
        for row in &rows {
            tx.queue_notification(row).await?;
        }
        tx.commit().await?;
        self.care_team(ctx, patient).await
    }

    /// Ends `member`'s membership of the patient's care team now: the record closes to
    /// them (unless another relationship opens it) on their next request. The membership
    /// stays in the team's history.
    ///
    /// # Errors
    /// [`RecordError::Invalid`] when they are no current member.
    pub async fn end_member(
        &self,
        ctx: &RequestContext,
        patient: &str,
        member: &str,
    ) -> Result<TeamView, RecordError> {
        practitioner_of(ctx)?;
        let member = if member.starts_with("Practitioner/") {
            member.to_string()
        } else {
            format!("Practitioner/{member}")
        };
        let Some((team, version)) = self.team_of(ctx, patient).await? else {
            return Err(RecordError::rule("the patient has no care team"));
        };
        let core = self.records.core();
        let now = core.now();
        let team_id = id_of(&team);
        let members = medmesh_policy::access::members_at(&team, now);
        let mut team = without_meta(team);
        let mut ended = false;
        for p in team["participant"].as_array_mut().into_iter().flatten() {
            let active = members.contains(&member);
            if reference_of(&p["member"]) == Some(member.as_str()) && active {
                p["period"]["end"] = json!(precise_instant(now));
                ended = true;
            }
        }
        if !ended {
            return Err(RecordError::rule(
                "they are not a current member of the care team",
            ));
        }
        let grant = core
            .authorize(ctx, Action::Update, Some("CareTeam"))
            .await?;
        let mut tx = core.begin_write().await?;
        let head = Self::head_at(&mut tx, "CareTeam", &team_id, version).await?;
        core.write_version(ctx, &mut tx, &grant, "CareTeam", &team_id, team, head)
            .await?;
        self.audit_step(
            ctx,
            &mut tx,
            &grant,
            "care-team-end",
            "CareTeam",
            vec![team_id, member],
            patient,
        )
        .await?;
        tx.commit().await?;
        self.care_team(ctx, patient).await
    }
}
