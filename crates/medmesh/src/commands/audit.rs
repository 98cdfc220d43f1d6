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
        audit_log_service(stores, &name, sealer.clone())
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
    let trusted = trusted_keys
        .iter()
        .map(|k| {
            medmesh_audit::checkpoint::LogVerifierKey::from_note_key(k).map_err(|_| {
                anyhow::anyhow!("--trusted-key: expected name+hash+base64 Ed25519 key")
            })
        })
        .collect::<anyhow::Result<Vec<_>>>()?;
    let stores = open_store(&cfg).await?;
    #[allow(clippy::disallowed_methods)] // A stopwatch for the report, not a time of record.
    let started = Instant::now();
    let report = medmesh_audit_log::verify_log(
        stores.audit.as_ref(),
        &trusted,
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

pub(crate) fn hex_hash(h: [u8; 32]) -> String {
    h.iter().map(|b| format!("{b:02x}")).collect()
}
