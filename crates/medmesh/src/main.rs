//! `medmesh`: one binary. `serve` runs a node, `import` loads FHIR files, `admin token`
//! mints an access token, `admin create-user` creates an account.
//!
//! The command line is defined in `cli.rs`, the services are built in `wiring.rs`, each
//! command group lives in `commands/`, the background workers `serve` starts
//! in `workers.rs`, and the document client in `doc.rs`.

mod config;

use clap::Parser;
use medmesh_auth::Role;
use medmesh_identity::accounts::NewUser;

/// Writes a line to stdout. A closed pipe (`medmesh import ... | head`) ends the output
/// quietly instead of panicking.
macro_rules! outln {
    ($($arg:tt)*) => {{
        use std::io::Write as _;
        let _ = writeln!(std::io::stdout(), $($arg)*);
    }};
}

mod cli;
mod commands;
mod wiring;
mod workers;

use crate::cli::*;
use crate::commands::*;
use crate::wiring::*;

/// mimalloc: FHIR processing allocates many small JSON values, and glibc's allocator spent a
/// third of import CPU time on them (see bench/README.md).
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

#[tokio::main]
async fn main() -> std::process::ExitCode {
    let cli = Cli::parse();
    let result = run(cli).await;
    match result {
        Ok(true) => std::process::ExitCode::SUCCESS,
        Ok(false) => std::process::ExitCode::from(1),
        Err(e) => {
            eprintln!("medmesh: {e:#}");
            std::process::ExitCode::from(2)
        }
    }
}

async fn run(cli: Cli) -> anyhow::Result<bool> {
    match cli.command {
        Command::Doc { command } => run_doc(command).await,
        Command::Hl7 { store, command } => {
            let cfg = load_config(&store.into(), None)?;
            init_logging("warn");
            commands::hl7::run(&cfg, command).await
        }
        Command::Devices { store, command } => {
            let cfg = load_config(&store.into(), None)?;
            init_logging("warn");
            commands::devices::run(&cfg, command).await
        }
        Command::Notifications { store, command } => {
            let cfg = load_config(&store.into(), None)?;
            init_logging("warn");
            commands::notifications::run(&cfg, command).await
        }
        Command::Verify {
            file,
            provenance,
            key,
        } => verify_file(&file, &provenance, key.as_deref()).await,
        Command::VerifyPrescription {
            signed,
            directory,
            prescription,
        } => verify_prescription(&signed, directory.as_deref(), prescription.as_deref()),
        Command::Serve {
            store,
            listen,
            mllp_listen,
        } => {
            let mut cfg = load_config(&store, listen)?;
            if mllp_listen.is_some() {
                cfg.mllp_listen = mllp_listen;
            }
            init_logging(&cfg.log);
            serve(cfg).await?;
            Ok(true)
        }
        Command::Audit {
            command:
                AuditCommand::Verify {
                    store,
                    trusted_keys,
                },
        } => {
            let cfg = load_config(&store, None)?;
            init_logging("warn");
            audit_verify(cfg, &trusted_keys).await
        }
        Command::Audit {
            command: AuditCommand::Checkpoint { store },
        } => {
            let cfg = load_config(&store, None)?;
            init_logging("warn");
            let stores = open_store(&cfg).await?;
            let log = commands::audit::node_audit_log(&stores, &cfg).await?;
            match log.checkpoint_now().await? {
                Some(c) => outln!("{}", c.text),
                None => outln!("the log is empty; nothing to sign"),
            }
            Ok(true)
        }
        Command::Audit {
            command:
                AuditCommand::VerifyPatient {
                    node,
                    patient,
                    log_key,
                    state,
                },
        } => {
            init_logging("warn");
            commands::audit::verify_patient(&node, &patient, log_key.as_deref(), state.as_deref())
                .await
        }
        Command::Audit {
            command:
                AuditCommand::Witness {
                    log,
                    state,
                    key,
                    name,
                },
        } => {
            init_logging("warn");
            commands::audit::witness(&log, &state, &key, &name).await
        }
        Command::Audit {
            command:
                AuditCommand::WitnessServer {
                    listen,
                    state,
                    key,
                    name,
                    log_keys,
                },
        } => {
            init_logging("info");
            commands::audit::witness_server(listen, &state, &key, &name, &log_keys).await
        }
        Command::Keys { command } => {
            let (store, sealing) = match &command {
                KeysCommand::Reencrypt { store } => (store, keys::Sealing::Migrating),
                KeysCommand::Status { store }
                | KeysCommand::Rotate { store, .. }
                | KeysCommand::Retire { store } => (store, keys::Sealing::Normal),
            };
            let cfg = load_config(store, None)?;
            init_logging("warn");
            let stores = open_store(&cfg).await?;
            let ring = keys::open_key_ring(&stores, &cfg, sealing).await?;
            let records = record_service_with(&stores, &cfg, ring.as_ref())?;
            let key_admin = key_administration(&stores, &cfg, &records)?;
            match command {
                KeysCommand::Status { .. } => keys::status(&key_admin, ring).await?,
                KeysCommand::Rotate { keep_old, .. } => {
                    keys::rotate(&key_admin, ring, keep_old).await?
                }
                KeysCommand::Retire { .. } => keys::retire_old(&key_admin, ring).await?,
                KeysCommand::Reencrypt { .. } => {
                    keys::reencrypt(&key_admin, ring, &stores).await?;
                    reseal_node_secrets(&stores, &cfg).await?;
                }
            }
            Ok(true)
        }
        Command::Admin {
            command:
                AdminCommand::ErasePatient {
                    store,
                    patient,
                    confirm,
                },
        } => {
            let cfg = load_config(&store, None)?;
            init_logging("warn");
            let stores = open_store(&cfg).await?;
            let ring = keys::open_key_ring(&stores, &cfg, keys::Sealing::Normal).await?;
            let records = record_service_with(&stores, &cfg, ring.as_ref())?;
            let key_admin = key_administration(&stores, &cfg, &records)?;
            keys::erase_patient(&key_admin, ring, &patient, &confirm).await?;
            Ok(true)
        }
        Command::Import {
            store,
            paths,
            jobs,
            batch,
            id_map,
        } => {
            let cfg = load_config(&store, None)?;
            init_logging(&cfg.log);
            import(cfg, paths, jobs, batch, id_map).await
        }
        Command::Admin {
            command:
                AdminCommand::Token {
                    store,
                    scope,
                    ttl,
                    user,
                    patient,
                },
        } => {
            let cfg = load_config(&store, None)?;
            init_logging("warn");
            admin_token(cfg, scope, ttl.into(), user, patient).await?;
            Ok(true)
        }
        Command::Admin {
            command:
                AdminCommand::CreateUser {
                    store,
                    role,
                    username,
                    patient,
                    practitioner,
                    practitioner_role,
                    specialty,
                    organization,
                    verification,
                },
        } => {
            let cfg = load_config(&store, None)?;
            init_logging("warn");
            let role: Role = role.parse().map_err(|e| {
                anyhow::anyhow!(
                    "{e}; one of patient, practitioner, org-admin, researcher, node-admin"
                )
            })?;
            let verification = verification.parse().map_err(|e| anyhow::anyhow!("{e}"))?;
            create_user(
                cfg,
                NewUser {
                    role: Some(role),
                    username,
                    password: String::new(),
                    patient_id: patient,
                    practitioner_id: practitioner,
                    practitioner_role_id: practitioner_role,
                    specialty,
                    organization,
                    verification,
                },
            )
            .await?;
            Ok(true)
        }
    }
}
