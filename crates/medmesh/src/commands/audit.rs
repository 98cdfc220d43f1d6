//! `medmesh audit ...`: verifying the log, and resealing the node's secrets after
//! re-encryption.

use crate::commands::keys;
use crate::config::Config;
use crate::wiring::*;
use medmesh_store_sql::Stores;
use std::time::Instant;

/// After `keys reencrypt`: seals the node's own secrets again under a fresh data key
/// (signing keys, TOTP seeds, every audit log key), those stored in clear before included.
pub(crate) async fn reseal_node_secrets(stores: &Stores, cfg: &Config) -> anyhow::Result<()> {
    let Some(ring) = keys::open_key_ring(stores, cfg, keys::Sealing::Normal).await? else {
        return Ok(());
    };
    ring.at_rest
        .replace_key(medmesh_at_rest::NODE_SECRETS_OWNER)
        .await
        .map_err(|e| anyhow::anyhow!("cannot make a fresh key for the node's secrets: {e}"))?;
    let sealer = secret_sealer(Some(&ring));
    let identity = identity_service_with(stores, cfg, cfg.issuer.clone(), sealer.clone()).await?;
    let mut resealed = identity
        .reseal_secrets()
        .await
        .map_err(|e| anyhow::anyhow!("cannot re-seal the signing keys and TOTP seeds: {e}"))?;
    let names = stores
        .audit
        .log_public_keys()
        .await
        .map_err(|e| anyhow::anyhow!("cannot read the audit log keys: {e}"))?;
    for (name, _) in names {
        audit_log_service(stores, &name, sealer.clone(), Default::default())
            .await?
            .reseal_key()
            .await
            .map_err(|e| anyhow::anyhow!("cannot re-seal an audit log key: {e}"))?;
        resealed += 1;
    }
    outln!("re-sealed {resealed} node secrets (signing keys, TOTP seeds, audit log keys)");
    Ok(())
}

pub(crate) async fn audit_verify(cfg: Config, trusted_keys: &[String]) -> anyhow::Result<bool> {
    without_huge_pages();
    let trusted = trusted_keys
        .iter()
        .map(|k| {
            medmesh_audit::checkpoint::LogVerifierKey::from_note_key(k).map_err(|_| {
                anyhow::anyhow!("--trusted-key: expected name+hash+base64 Ed25519 key")
            })
        })
        .collect::<anyhow::Result<Vec<_>>>()?;
    let stores = open_store(&cfg).await?;
    // The map secret comes with the log's key (sealed under the KEK when encryption is on).
    let log = node_audit_log(&stores, &cfg).await?;
    #[allow(clippy::disallowed_methods)] // A stopwatch for the report, not a time of record.
    let started = Instant::now();
    let report = medmesh_audit_log::verify_log(
        stores.audit.as_ref(),
        &trusted,
        log.map_secret(),
        &medmesh_kernel::random::OsRandom,
    )
    .await
    .map_err(|e| anyhow::anyhow!("cannot read the audit log: {e}"))?;
    match report {
        Ok(r) => {
            let secs = started.elapsed().as_secs_f64();
            outln!(
                "audit log OK: {} entries, {} signed checkpoints, root {} ({:.2}s, {:.0} entries/s)",
                r.entries,
                r.checkpoints,
                r.root.map(hex_hash).unwrap_or_else(|| "(empty)".into()),
                secs,
                r.entries as f64 / secs.max(1e-9)
            );
            Ok(true)
        }
        Err(problem) => {
            eprintln!("audit log FAILED: {problem}");
            Ok(false)
        }
    }
}

/// The node's own audit log (the one `serve` signs with), its key opened as `serve` opens it.
pub(crate) async fn node_audit_log(
    stores: &Stores,
    cfg: &Config,
) -> anyhow::Result<std::sync::Arc<medmesh_audit_log::AuditLogService>> {
    let origin = audit_origin(cfg, &public_origin(cfg, cfg.listen));
    let ring = keys::open_key_ring(stores, cfg, keys::Sealing::Normal).await?;
    audit_log_service(
        stores,
        &origin,
        secret_sealer(ring.as_ref()),
        Default::default(),
    )
    .await
}

/// `medmesh audit verify-patient`: exit 0 and a summary when the log is proven complete,
/// the first problem and exit 1 when it is not.
pub(crate) async fn verify_patient(
    node: &crate::cli::NodeArgs,
    patient: &str,
    log_key: Option<&str>,
    state: Option<&std::path::Path>,
) -> anyhow::Result<bool> {
    use medmesh_audit_client::AuditClientError;
    match medmesh_audit_client::verify_patient(&node.node, &node.token, patient, log_key, state)
        .await
    {
        Ok(r) => {
            let v = &r.verified;
            outln!(
                "verified: all {} access(es) to the record at checkpoint {} (signed {}){}",
                v.entries.len(),
                v.tree.size,
                medmesh_fhir::datetime::format_instant(v.tree.timestamp_micros),
                if r.against_previous {
                    "; the log only grew since the last run"
                } else {
                    ""
                }
            );
            for w in &v.witnessed {
                outln!(
                    "witnessed by {} at {} entries (cosigned {})",
                    w.name,
                    w.size,
                    i64::try_from(w.time)
                        .map(|t| medmesh_fhir::datetime::format_instant(
                            t.saturating_mul(1_000_000)
                        ))
                        .unwrap_or_default()
                );
            }
            if v.policy_changed {
                outln!(
                    "note: the node now lists other witnesses than the ones pinned in the state file; the pinned ones were required"
                );
            }
            outln!("log key: {}", r.log_key);
            Ok(true)
        }
        Err(e @ AuditClientError::Problem(_)) => {
            eprintln!("{e}");
            Ok(false)
        }
        Err(e) => Err(anyhow::anyhow!(e)),
    }
}

/// `medmesh audit witness`: prints the cosigned checkpoint; exit 1 when the log does not
/// extend the one seen before.
pub(crate) async fn witness(
    log: &str,
    state: &std::path::Path,
    key: &std::path::Path,
    name: &str,
) -> anyhow::Result<bool> {
    use medmesh_audit_client::AuditClientError;
    // The cosignature's time: the wall clock, as a witness states when it saw the log.
    let now = medmesh_kernel::Clock::now_secs(&medmesh_kernel::SystemClock);
    let now = u64::try_from(now).unwrap_or_default();
    match medmesh_audit_client::witness(log, state, key, name, now).await {
        Ok(r) => {
            eprintln!(
                "witnessed {} entries{}; witness key {}",
                r.head.size,
                r.previous
                    .map(|p| format!(", consistent with the {p} seen before"))
                    .unwrap_or_else(|| " (first run: log key pinned)".into()),
                r.witness_key
            );
            match &r.submitted {
                Ok(()) => eprintln!("the node kept the cosignature"),
                Err(why) => eprintln!("the node did not keep the cosignature: {why}"),
            }
            outln!("{}", r.cosigned.trim_end());
            Ok(true)
        }
        Err(e @ AuditClientError::Problem(_)) => {
            eprintln!("{e}");
            Ok(false)
        }
        Err(e) => Err(anyhow::anyhow!(e)),
    }
}

/// `medmesh audit witness-server`: a C2SP witness on `listen` until Ctrl-C or SIGTERM.
pub(crate) async fn witness_server(
    listen: std::net::SocketAddr,
    state: &std::path::Path,
    key: &std::path::Path,
    name: &str,
    log_keys: &[String],
) -> anyhow::Result<bool> {
    let logs = log_keys
        .iter()
        .map(|k| {
            medmesh_audit::checkpoint::LogVerifierKey::from_note_key(k)
                .map_err(|_| anyhow::anyhow!("--log-key {k:?} is not a log verifier key"))
        })
        .collect::<anyhow::Result<Vec<_>>>()?;
    let secret = medmesh_audit_client::witness_secret(key)?;
    let witness = medmesh_witness::Witness::open(
        medmesh_audit::checkpoint::Cosigner::new(name, secret),
        logs,
        state,
        std::sync::Arc::new(medmesh_kernel::SystemClock),
    )?;
    let listener = tokio::net::TcpListener::bind(listen)
        .await
        .map_err(|e| anyhow::anyhow!("cannot listen on {listen}: {e}"))?;
    let addr = listener.local_addr()?;
    outln!("witness key: {}", witness.verifier_key());
    outln!("medmesh witness listening on http://{addr}");
    medmesh_witness::serve(
        listener,
        std::sync::Arc::new(witness),
        crate::wiring::shutdown_signal(),
    )
    .await?;
    Ok(true)
}

pub(crate) fn hex_hash(h: [u8; 32]) -> String {
    h.iter().map(|b| format!("{b:02x}")).collect()
}

/// Turns transparent huge pages off for this process. A full `audit verify` streams the log
/// through pages of rows that are allocated and freed as it goes, and on a kernel that grants
/// huge pages on request (the allocator asks for them) the kernel zeroed a fresh 2 MiB page
/// at each new touch: 1 to 1.9 s of system time in a 2.5 s pass over a million entries, and
/// most of its swing between runs (bench/README.md). The serving node keeps them: its searches
/// measured faster with them.
fn without_huge_pages() {
    #[cfg(target_os = "linux")]
    if let Err(e) = rustix::thread::disable_transparent_huge_pages(true) {
        tracing::debug!(error = %e, "transparent huge pages stay on for this process");
    }
}
