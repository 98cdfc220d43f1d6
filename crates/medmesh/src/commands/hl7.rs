//! `medmesh hl7 ...`: the interface engine's senders, its message store and dead letters,
//! from the operator's shell.

use std::sync::Arc;

use anyhow::{Context, bail};
use medmesh_fhir::datetime::format_instant;
use medmesh_interface_engine::{InterfaceEngine, Sender, hash_secret};
use medmesh_kernel::{OperationId, RequestContext};
use medmesh_records::RecordService;
use medmesh_store::{Hl7Filter, Hl7MessageRow, Hl7SenderRow};

use crate::cli::{Hl7Command, Hl7DeadLettersCommand, Hl7FilterArgs, Hl7SendersCommand};
use crate::config::Config;
use crate::wiring::{interface_engine, open_store, record_service};

fn micros(rfc3339: &str) -> anyhow::Result<i64> {
    medmesh_fhir::datetime::parse_rfc3339_micros(rfc3339)
        .with_context(|| format!("'{rfc3339}' is not an RFC 3339 time"))
}

fn filter(args: &Hl7FilterArgs, status: Option<&str>) -> anyhow::Result<Hl7Filter> {
    Ok(Hl7Filter {
        sender: args.sender.clone(),
        message_type: args.message_type.clone(),
        status: status.map(str::to_string).or_else(|| args.status.clone()),
        control_id: args.control_id.clone(),
        since: args.since.as_deref().map(micros).transpose()?,
        until: args.until.as_deref().map(micros).transpose()?,
    })
}

fn print_rows(rows: &[Hl7MessageRow]) {
    outln!("id\treceived\tsender\ttype\tcontrol id\tstatus\tack\tattempts");
    for r in rows {
        outln!(
            "{}\t{}\t{}\t{}\t{}\t{}\t{}\t{}",
            r.id,
            format_instant(r.received_micros),
            r.sender,
            r.message_type,
            r.control_id,
            r.status,
            r.ack_code.as_deref().unwrap_or("-"),
            r.attempts
        );
    }
}

/// The record service and the interface engine over it, for the commands that open,
/// replay or judge stored messages.
async fn engine(
    cfg: &Config,
    stores: &medmesh_store_sql::Stores,
) -> anyhow::Result<(Arc<RecordService>, Arc<InterfaceEngine>)> {
    let records = record_service(stores, cfg).await?;
    let hub = crate::wiring::notification_hub(cfg, stores, &records, "")?;
    let knowledge = crate::wiring::medication_knowledge(cfg)?;
    let medications = crate::wiring::medications(stores, &records, hub.clone(), knowledge);
    let engine = interface_engine(cfg, stores, &records, "", hub, medications).await?;
    Ok((records, engine))
}

/// The operator's context: the CLI acts as the node's operator.
fn operator() -> RequestContext {
    #[allow(clippy::disallowed_methods)] // The CLI is the node's operator.
    let actor = medmesh_kernel::Actor::local_operator();
    RequestContext::new(actor, OperationId::new("cli-hl7"), None, "")
}

/// Runs `medmesh hl7 ...`; false when asked for something that does not exist.
pub(crate) async fn run(cfg: &Config, command: Hl7Command) -> anyhow::Result<bool> {
    let stores = open_store(cfg).await?;
    match command {
        Hl7Command::Senders { command } => senders(cfg, &stores, command).await,
        Hl7Command::Messages { filter: args } => {
            let rows = stores
                .hl7
                .hl7_messages(&filter(&args, None)?, args.limit)
                .await?;
            print_rows(&rows);
            Ok(true)
        }
        Hl7Command::Counts => {
            outln!("sender\tstatus\tmessages");
            for (sender, status, n) in stores.hl7.hl7_counts().await? {
                outln!("{sender}\t{status}\t{n}");
            }
            outln!();
            outln!("channel\tstatus\tmessages");
            for (channel, status, n) in stores.hl7_outbox.hl7_outbound_counts().await? {
                outln!("{channel}\t{status}\t{n}");
            }
            Ok(true)
        }
        Hl7Command::Prune { older_than_days } => {
            let now = crate::wiring::now_micros();
            let before = now - i64::from(older_than_days) * 86_400 * 1_000_000;
            let n = stores.hl7.hl7_prune(before).await?;
            outln!("{n} messages deleted");
            Ok(true)
        }
        Hl7Command::Show { id } => show(cfg, &stores, &id).await,
        Hl7Command::Alerts { window_minutes } => {
            let (_, engine) = engine(cfg, &stores).await?;
            let silence = i64::try_from(cfg.hl7_silence_alert.as_micros()).unwrap_or(i64::MAX);
            let alerts = engine
                .alerts(
                    window_minutes.max(1) * 60_000_000,
                    silence,
                    cfg.hl7_queue_alert_depth,
                )
                .await?;
            for a in &alerts {
                outln!("{a}");
            }
            Ok(alerts.is_empty())
        }
        Hl7Command::DeadLetters { command } => match command {
            Hl7DeadLettersCommand::List { filter: args } => {
                let (_, engine) = engine(cfg, &stores).await?;
                let rows = stores
                    .hl7
                    .hl7_messages(&filter(&args, Some("dead"))?, args.limit)
                    .await?;
                outln!("id\treceived\tsender\ttype\tcontrol id\tattempts\treason");
                for r in rows {
                    let reason = engine.outcome_of(&r).await?.error.unwrap_or_default();
                    outln!(
                        "{}\t{}\t{}\t{}\t{}\t{}\t{}",
                        r.id,
                        format_instant(r.received_micros),
                        r.sender,
                        r.message_type,
                        r.control_id,
                        r.attempts,
                        reason
                    );
                }
                Ok(true)
            }
            Hl7DeadLettersCommand::Show { id } => show(cfg, &stores, &id).await,
            Hl7DeadLettersCommand::Replay {
                id,
                filter: args,
                max,
            } => {
                let (records, engine) = engine(cfg, &stores).await?;
                let ctx = operator();
                let permit = records.interface_messages(&ctx)?;
                let ids: Vec<String> = match id {
                    Some(id) => vec![id],
                    None => stores
                        .hl7
                        .hl7_messages(&filter(&args, Some("dead"))?, max)
                        .await?
                        .into_iter()
                        .rev()
                        .map(|r| r.id)
                        .collect(),
                };
                let mut applied = 0;
                for id in &ids {
                    match engine.replay(&ctx, &permit, id).await {
                        Ok(reply) => {
                            if reply.code == medmesh_hl7v2::AckCode::AA {
                                applied += 1;
                            }
                            outln!("{id}\t{}", reply.code.as_str());
                        }
                        Err(medmesh_interface_engine::EngineError::NotFound) => {
                            outln!("{id}\tno such message");
                        }
                        Err(e) => return Err(e.into()),
                    }
                }
                outln!("{applied} of {} applied", ids.len());
                Ok(true)
            }
        },
    }
}

async fn show(cfg: &Config, stores: &medmesh_store_sql::Stores, id: &str) -> anyhow::Result<bool> {
    let (records, engine) = engine(cfg, stores).await?;
    let ctx = operator();
    let permit = records.interface_messages(&ctx)?;
    let (row, text, outcome) = match engine.open_message(&ctx, &permit, id).await {
        Ok(found) => found,
        Err(medmesh_interface_engine::EngineError::NotFound) => {
            eprintln!("no message {id}");
            return Ok(false);
        }
        Err(e) => return Err(e.into()),
    };
    print_rows(std::slice::from_ref(&row));
    outln!();
    outln!("{}", text.replace('\r', "\n").trim_end());
    outln!();
    if let Some(e) = &outcome.error {
        outln!("error: {e}");
    }
    for r in &outcome.resources {
        outln!("wrote: {r}");
    }
    for w in &outcome.warnings {
        outln!("tolerated: {w}");
    }
    Ok(true)
}

async fn senders(
    cfg: &Config,
    stores: &medmesh_store_sql::Stores,
    command: Hl7SendersCommand,
) -> anyhow::Result<bool> {
    match command {
        Hl7SendersCommand::List => {
            outln!("name\tsource\tapplication\tfacility\taddresses\thttp\tack destination");
            for s in &cfg.hl7_senders {
                outln!(
                    "{}\tsettings file\t{}\t{}\t{}\t{}\t{}",
                    s.name,
                    or_any(&s.application),
                    or_any(&s.facility),
                    s.addresses.join(","),
                    if s.secret_sha256.is_some() {
                        "yes"
                    } else {
                        "no"
                    },
                    s.ack_destination.as_deref().unwrap_or("-")
                );
            }
            for s in stores.hl7.hl7_senders().await? {
                outln!(
                    "{}\tadded\t{}\t{}\t{}\t{}\t{}",
                    s.name,
                    s.application,
                    s.facility,
                    s.addresses,
                    if s.secret_hash.is_some() { "yes" } else { "no" },
                    s.ack_destination.as_deref().unwrap_or("-")
                );
            }
            Ok(true)
        }
        Hl7SendersCommand::Remove { name } => {
            if stores.hl7.hl7_remove_sender(&name).await? {
                outln!("removed {name}");
                Ok(true)
            } else {
                eprintln!("no sender {name} was added with this command");
                Ok(false)
            }
        }
        Hl7SendersCommand::Add {
            name,
            application,
            facility,
            addresses,
            http_secret,
            profile,
            ack_destination,
        } => {
            if cfg.hl7_senders.iter().any(|s| s.name == name) {
                bail!("{name} is a sender of the settings file; change it there");
            }
            let profile_text = match &profile {
                Some(p) => std::fs::read_to_string(p)
                    .with_context(|| format!("cannot read {}", p.display()))?,
                None => String::new(),
            };
            let secret = http_secret.then(crate::wiring::new_secret);
            let row = Hl7SenderRow {
                name: name.clone(),
                application,
                facility,
                addresses: addresses.join(","),
                secret_hash: secret.as_deref().map(hash_secret),
                profile: profile_text,
                created_micros: crate::wiring::now_micros(),
                ack_destination,
            };
            // Checked as the engine will read it.
            Sender::from_row(&row)?;
            stores.hl7.hl7_put_sender(&row).await?;
            outln!("added {name}");
            if let Some(s) = secret {
                outln!("HTTP secret (shown once; send as Basic credentials {name}:<secret>): {s}");
            }
            Ok(true)
        }
    }
}

fn or_any(s: &str) -> &str {
    if s.is_empty() { "*" } else { s }
}
