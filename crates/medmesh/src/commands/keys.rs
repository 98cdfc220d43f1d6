//! Encryption at rest from the command line: opening the key ring for `serve` and the other
//! commands, and `medmesh keys ...` / `medmesh admin erase-patient`.

use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, bail};
use medmesh_at_rest::AtRest;
use medmesh_crypto::OsRandom;
use medmesh_kek::{KeyFile, KmsKek, LocalKek};
use medmesh_kernel::{MonotonicClock, RequestContext, SystemClock};
use medmesh_key_admin::KeyAdministration;
use medmesh_store::KekProvider;
use medmesh_store_sql::Stores;

use crate::config::Config;

/// The key job that marks a database being sealed for the first time.
const LEGACY_JOB: &str = "legacy-migration";

/// How a command opens the key ring.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Sealing {
    /// Serving, importing, administering: the database must be fully sealed.
    Normal,
    /// `keys reencrypt`: plaintext bodies from before encryption at rest may be opened.
    Migrating,
}

/// The key ring, and the KEK behind it, when encryption at rest is on.
pub(crate) struct KeyRing {
    pub(crate) at_rest: Arc<AtRest>,
    pub(crate) kek: Kek,
}

/// Where the key-encryption key is: the local key file, or an external key service.
pub(crate) enum Kek {
    /// The 0600 key file.
    File(Arc<LocalKek>),
    /// AWS KMS or a KMS-compatible service.
    Kms(Arc<KmsKek>),
}

impl Kek {
    fn provider(&self) -> Arc<dyn KekProvider> {
        match self {
            Self::File(k) => k.clone(),
            Self::Kms(k) => k.clone(),
        }
    }

    fn current_kek(&self) -> String {
        self.provider().current_kek()
    }

    /// The key file, for the commands that write KEKs into it.
    fn file(&self) -> anyhow::Result<&KeyFile> {
        match self {
            Self::File(k) => Ok(k.file()),
            Self::Kms(_) => bail!(
                "the key-encryption key is in KMS: make a new KMS key, set kms_key_id to it and run `medmesh keys rotate`; then schedule the old key's deletion in KMS"
            ),
        }
    }
}

/// Opens the key ring as the configuration says, after checking the database agrees.
pub(crate) async fn open_key_ring(
    stores: &Stores,
    cfg: &Config,
    sealing: Sealing,
) -> anyhow::Result<Option<KeyRing>> {
    let initialized = AtRest::is_initialized(stores.keys.as_ref())
        .await
        .map_err(|e| anyhow::anyhow!("cannot read the key store: {e}"))?;
    let has_records = !stores
        .records
        .bodies_after(0, 1)
        .await
        .map_err(|e| anyhow::anyhow!("cannot read the store: {e}"))?
        .is_empty();
    if !cfg.encryption_at_rest {
        if initialized {
            bail!(
                "this database is encrypted at rest; it cannot be opened with encryption_at_rest = false"
            );
        }
        return Ok(None);
    }
    let migrating = stores
        .keys
        .job_cursor(LEGACY_JOB)
        .await
        .map_err(|e| anyhow::anyhow!("cannot read the key store: {e}"))?
        .is_some_and(|(_, state)| state == "running");
    if sealing == Sealing::Normal && ((!initialized && has_records) || migrating) {
        bail!(
            "this database holds records written without encryption at rest; stop every node and run `medmesh keys reencrypt` once to seal them (or set encryption_at_rest = false)"
        );
    }
    let kek = match &cfg.kms {
        Some(kms) => Kek::Kms(Arc::new(
            KmsKek::new(kms.clone()).map_err(|e| anyhow::anyhow!("cannot use KMS: {e}"))?,
        )),
        None => {
            if initialized && !cfg.master_key_file.exists() {
                bail!(
                    "the key file {} is missing: this database's data keys cannot be unwrapped without it (set master_key_file or MEDMESH_MASTER_KEY_FILE)",
                    cfg.master_key_file.display()
                );
            }
            let file = KeyFile::open_or_create(&cfg.master_key_file, &OsRandom)
                .context("cannot open the key-encryption-key file")?;
            Kek::File(Arc::new(LocalKek::new(file, Arc::new(OsRandom))))
        }
    };
    if sealing == Sealing::Migrating && !initialized && has_records {
        stores
            .keys
            .save_job_cursor(LEGACY_JOB, 0, "running", 0)
            .await
            .map_err(|e| anyhow::anyhow!("cannot write the key store: {e}"))?;
    }
    let mut at_rest = AtRest::load(
        stores.keys.clone(),
        kek.provider(),
        Arc::new(OsRandom),
        Arc::new(MonotonicClock::new(SystemClock)),
    )
    .await
    .map_err(|e| anyhow::anyhow!("cannot open the data keys: {e}"))?;
    if sealing == Sealing::Migrating {
        at_rest = at_rest.accepting_plaintext();
    }
    Ok(Some(KeyRing {
        at_rest: Arc::new(at_rest),
        kek,
    }))
}

/// The context of a CLI command: the local operator, under an operation id naming the
/// command.
#[allow(clippy::disallowed_methods)] // The CLI acts as the node's operator.
pub(crate) fn local_ctx(what: &str) -> RequestContext {
    RequestContext::new(
        medmesh_policy::Actor::local_operator(),
        medmesh_kernel::OperationId::new(format!("{what}-{}", uuid::Uuid::new_v4())),
        None,
        String::new(),
    )
}

/// The PDP's permit for key administration, which it gives the CLI's local operator.
fn admin(key_admin: &KeyAdministration) -> anyhow::Result<medmesh_policy::KeyAdmin> {
    Ok(key_admin.permit(&local_ctx("keys"))?)
}

fn ring(ring: Option<KeyRing>) -> anyhow::Result<KeyRing> {
    ring.ok_or_else(|| anyhow::anyhow!("encryption at rest is off (encryption_at_rest = false)"))
}

/// `keys status`.
pub(crate) async fn status(
    key_admin: &KeyAdministration,
    ring: Option<KeyRing>,
) -> anyhow::Result<()> {
    let ring = self::ring(ring)?;
    match &ring.kek {
        Kek::File(k) => {
            outln!("key file: {}", k.file().path().display());
            for (i, id) in k.file().ids().iter().enumerate() {
                outln!("  KEK {id}{}", if i == 0 { " (current)" } else { " (old)" });
            }
        }
        Kek::Kms(k) => outln!("KEK in KMS: {} (current)", k.current_kek()),
    }
    for (kek, n) in key_admin.keys_per_kek(&admin(key_admin)?).await? {
        outln!("data keys wrapped under {kek}: {n}");
    }
    match key_admin.reencrypt_state(&admin(key_admin)?).await? {
        Some((cursor, state)) => outln!("re-encryption: {state} (row {cursor})"),
        None => outln!("re-encryption: never run"),
    }
    Ok(())
}

/// Re-wraps every data key under the current KEK, then (unless `keep_old`) removes older
/// KEKs from the file once no data key is wrapped under them. Returns whether it removed
/// them.
async fn rewrap_and_retire(
    key_admin: &KeyAdministration,
    ring: &KeyRing,
    keep_old: bool,
) -> anyhow::Result<bool> {
    let report = key_admin.rewrap_all_keys(&admin(key_admin)?).await?;
    outln!(
        "re-wrapped {} data keys under KEK {} ({} already were)",
        report.rewrapped,
        ring.kek.current_kek(),
        report.current
    );
    if keep_old {
        outln!(
            "older KEKs kept in the key file; run `medmesh keys retire` once every replica has the new file"
        );
        return Ok(false);
    }
    retire(key_admin, ring).await
}

/// Removes older KEKs if nothing is wrapped under them. A node that read the key file just
/// before the rotation may still be wrapping one new key under the old KEK: wait a moment,
/// re-wrap stragglers, and check again before removing.
async fn retire(key_admin: &KeyAdministration, ring: &KeyRing) -> anyhow::Result<bool> {
    let current = ring.kek.current_kek();
    for attempt in 0..3 {
        let stragglers: u64 = key_admin
            .keys_per_kek(&admin(key_admin)?)
            .await?
            .into_iter()
            .filter(|(k, _)| *k != current && !k.is_empty())
            .map(|(_, n)| n)
            .sum();
        if stragglers == 0 && attempt > 0 {
            let removed = ring.kek.file()?.retire_old()?;
            for id in &removed {
                outln!("removed old KEK {id} from the key file");
            }
            return Ok(true);
        }
        if stragglers > 0 {
            key_admin.rewrap_all_keys(&admin(key_admin)?).await?;
        }
        tokio::time::sleep(Duration::from_secs(2)).await;
    }
    bail!(
        "data keys are still being wrapped under an old KEK; is a node running with an old copy of the key file?"
    )
}

/// `keys rotate`.
pub(crate) async fn rotate(
    key_admin: &KeyAdministration,
    ring: Option<KeyRing>,
    keep_old: bool,
) -> anyhow::Result<()> {
    let ring = self::ring(ring)?;
    if let Kek::Kms(_) = &ring.kek {
        // KMS rotates its own key material; a new key (kms_key_id) takes over by re-wrapping.
        outln!(
            "re-wrapping every data key under {}",
            ring.kek.current_kek()
        );
        key_admin.rewrap_all_keys(&admin(key_admin)?).await?;
        return Ok(());
    }
    let file = ring.kek.file()?;
    let new = file.add_current(&OsRandom)?;
    outln!("new KEK {new} written to {}", file.path().display());
    rewrap_and_retire(key_admin, &ring, keep_old).await?;
    Ok(())
}

/// `keys retire`.
pub(crate) async fn retire_old(
    key_admin: &KeyAdministration,
    ring: Option<KeyRing>,
) -> anyhow::Result<()> {
    let ring = self::ring(ring)?;
    retire(key_admin, &ring).await?;
    Ok(())
}

/// `keys reencrypt`.
pub(crate) async fn reencrypt(
    key_admin: &KeyAdministration,
    ring: Option<KeyRing>,
    stores: &Stores,
) -> anyhow::Result<()> {
    let _ring = self::ring(ring)?;
    let bar = indicatif::ProgressBar::new_spinner();
    let report = key_admin
        .reencrypt(&admin(key_admin)?, &|n| {
            bar.set_message(format!("{n} versions sealed"))
        })
        .await?;
    bar.finish_and_clear();
    stores
        .keys
        .save_job_cursor(LEGACY_JOB, 0, "done", 0)
        .await
        .map_err(|e| anyhow::anyhow!("cannot write the key store: {e}"))?;
    // The versions just replaced must not survive in free pages or the WAL.
    stores
        .keys
        .purge_replaced_data()
        .await
        .map_err(|e| anyhow::anyhow!("cannot compact the database after re-encryption: {e}"))?;
    outln!(
        "{}sealed {} stored versions ({} were plaintext), rebuilt the index of {}, sealed {} consents and reasons and {} document blobs, {} new data keys",
        if report.resumed { "resumed; " } else { "" },
        report.bodies,
        report.from_plaintext,
        report.reindexed,
        report.texts,
        report.blobs,
        report.new_keys
    );
    Ok(())
}

/// `admin erase-patient`.
pub(crate) async fn erase_patient(
    key_admin: &KeyAdministration,
    ring: Option<KeyRing>,
    patient: &str,
    confirm: &str,
) -> anyhow::Result<()> {
    let ring = self::ring(ring)?;
    if patient != confirm {
        bail!("to erase Patient/{patient}, repeat its id: --confirm {patient}");
    }
    let report = key_admin
        .erase_patient(&local_ctx("erase"), patient)
        .await
        .map_err(|e| anyhow::anyhow!("erasure failed: {e}"))?;
    outln!(
        "erased Patient/{patient}: {} resources deleted, {} data keys destroyed",
        report.resources,
        report.keys
    );
    // The destroyed keys' wrapped bytes may survive in backups and free pages: rotating the
    // KEK away makes them useless.
    if let Kek::Kms(k) = &ring.kek {
        outln!(
            "the KEK is in KMS ({}): for the erasure to reach backups, make a new KMS key, set kms_key_id to it, run `medmesh keys rotate`, then schedule the old key's deletion",
            k.current_kek()
        );
        return Ok(());
    }
    let new = ring.kek.file()?.add_current(&OsRandom)?;
    outln!("new KEK {new}; re-wrapping every other data key under it");
    rewrap_and_retire(key_admin, &ring, false).await?;
    Ok(())
}
