//! `medmesh admin ...`: tokens and accounts.

use crate::commands::keys;
use crate::config::Config;
use crate::wiring::*;
use anyhow::{Context, bail};
use medmesh_identity::accounts::NewUser;
use medmesh_identity::oauth::IssuedGrant;
use medmesh_records::RecordService;
use std::time::Duration;

/// Mints a token. With `--user NAME` naming an account, the token speaks for that account:
/// its id, role and FHIR user, with the scopes cut to what the role allows.
pub(crate) async fn admin_token(
    cfg: Config,
    scope: String,
    ttl: Duration,
    user: String,
    patient: Option<String>,
) -> anyhow::Result<()> {
    if medmesh_auth::parse_scopes(&scope).is_empty() {
        bail!(
            "--scope must hold at least one SMART scope such as 'system/*.*' or 'user/Patient.rs'"
        );
    }
    let stores = open_store(&cfg).await?;
    let identity = identity_service(&stores, &cfg, cfg.issuer.clone()).await?;
    let account = stores
        .identity
        .user_by_username(&user)
        .await
        .map_err(|e| anyhow::anyhow!("{e}"))?;
    let grant = match account {
        Some(u) => {
            let requested: Vec<String> = scope.split_whitespace().map(str::to_string).collect();
            let scope = medmesh_identity::oauth::scopes_for_user(&u, &requested).join(" ");
            if medmesh_auth::parse_scopes(&scope).is_empty() {
                bail!("the role '{}' allows none of those scopes", u.role);
            }
            IssuedGrant {
                subject: u.id.clone(),
                scope,
                patient: if u.role == "patient" {
                    u.patient_id.clone()
                } else {
                    patient
                },
                role: Some(u.role.clone()),
                client_id: None,
                fhir_user: medmesh_identity::oauth::fhir_user_of(&u),
                ttl: Some(i64::try_from(ttl.as_secs()).unwrap_or(i64::MAX / 2)),
            }
        }
        None => IssuedGrant {
            subject: user,
            scope,
            patient,
            role: None,
            client_id: None,
            fhir_user: None,
            ttl: Some(i64::try_from(ttl.as_secs()).unwrap_or(i64::MAX / 2)),
        },
    };
    let (token, _) = identity
        .mint_access(&grant)
        .map_err(|e| anyhow::anyhow!("{e}"))?;
    outln!("{token}");
    Ok(())
}

/// The one Patient with an identifier (`SYSTEM|VALUE`, or a bare value): how an account is
/// linked to a record imported from a file, whose ids the node assigned.
pub(crate) async fn patient_by_identifier(
    records: &RecordService,
    identifier: &str,
) -> anyhow::Result<String> {
    let ctx = keys::local_ctx("create-user");
    let bundle = records
        .search(
            &ctx,
            "Patient",
            &[
                ("identifier".to_string(), identifier.to_string()),
                ("_count".to_string(), "2".to_string()),
            ],
            medmesh_fhir::search::Handling::Strict,
        )
        .await
        .map_err(|e| anyhow::anyhow!("cannot search for the patient: {e}"))?;
    let ids: Vec<String> = bundle["entry"]
        .as_array()
        .into_iter()
        .flatten()
        .filter(|e| e["search"]["mode"] == "match")
        .filter_map(|e| e["resource"]["id"].as_str().map(str::to_string))
        .collect();
    match ids.as_slice() {
        [one] => Ok(one.clone()),
        [] => bail!("no Patient has that identifier"),
        _ => bail!("several Patients have that identifier; name one by id"),
    }
}

/// Creates an account, reading the password from stdin.
pub(crate) async fn create_user(cfg: Config, new: NewUser) -> anyhow::Result<()> {
    let stores = open_store(&cfg).await?;
    // The linked records must exist.
    let records = record_service(&stores, &cfg).await?;
    let mut new = new;
    if let Some(wanted) = new
        .patient_id
        .as_deref()
        .and_then(|p| p.strip_prefix("identifier="))
    {
        new.patient_id = Some(patient_by_identifier(&records, wanted).await?);
    }
    for (rt, id) in [
        ("Patient", &new.patient_id),
        ("Practitioner", &new.practitioner_id),
    ] {
        // Read as the operator, through the PDP and the audit log like any read.
        if let Some(id) = id
            && records
                .read(&keys::local_ctx("create-user"), rt, id)
                .await
                .is_err()
        {
            bail!("{rt}/{id} does not exist; create it first");
        }
    }
    let identity = identity_service(&stores, &cfg, cfg.issuer.clone()).await?;
    let mut password = String::new();
    std::io::stdin()
        .read_line(&mut password)
        .context("cannot read the password from stdin")?;
    new.password = password.trim_end_matches(['\r', '\n']).to_string();
    let created = identity
        .create_user(new)
        .await
        .map_err(|e| anyhow::anyhow!("{e}"))?;
    outln!("{}", created.id);
    if let Some(uri) = created.totp_uri {
        outln!("{uri}");
    }
    Ok(())
}
