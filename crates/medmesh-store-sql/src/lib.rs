//! SQLite and PostgreSQL adapters for the record and identity store ports.
//!
//! All SQL of medmesh lives in this crate. Statements are built once ([`sql`],
//! [`search_sql`], [`store`]) and run by either backend ([`sqlite`], [`postgres`]); each
//! backend has its own migrations under `migrations/`.

pub mod audit_log;
mod booking;
pub mod data_keys;
mod directory;
pub mod exec;
mod hl7;
pub mod identity;
mod notify;
pub mod policy;
pub mod postgres;
pub mod search_sql;
pub mod sql;
pub mod sqlite;
mod sqlite_busy;
mod sqlite_checkpoint;
mod sqlite_writer;
pub mod store;
mod subscriptions;

use std::path::Path;
use std::sync::Arc;

use medmesh_kernel::{Clock, SystemClock};

use medmesh_store::{
    AuditLogStore, BookingStore, Hl7OutboxStore, Hl7Store, IdentityStore, KeyStore,
    NotificationHubStore, RecordStore, StoreError, SubscriptionStore,
};

/// Both ports, served by one database.
#[derive(Clone)]
pub struct Stores {
    /// Clinical records, audit, export jobs.
    pub records: Arc<dyn RecordStore>,
    /// Accounts, sessions, OAuth state, signing keys.
    pub identity: Arc<dyn IdentityStore>,
    /// The audit log's tree, checkpoints and key.
    pub audit: Arc<dyn AuditLogStore>,
    /// Wrapped data-encryption keys.
    pub keys: Arc<dyn KeyStore>,
    /// The HL7 v2 interface engine's messages and senders.
    pub hl7: Arc<dyn Hl7Store>,
    /// The interface engine's outbound queues.
    pub hl7_outbox: Arc<dyn Hl7OutboxStore>,
    /// The notification hub's settings and outbox.
    pub notifications: Arc<dyn NotificationHubStore>,
    /// Claimed appointment time.
    pub bookings: Arc<dyn BookingStore>,
    /// FHIR Subscriptions and their place in the change feed.
    pub subscriptions: Arc<dyn SubscriptionStore>,
}

async fn stores<B: store::Backend>(
    backend: B,
    clock: Arc<dyn Clock>,
) -> Result<Stores, StoreError> {
    let s = Arc::new(store::SqlStore::new(backend, clock));
    s.upgrade_audit_v1().await?;
    Ok(Stores {
        records: s.clone(),
        identity: s.clone(),
        audit: s.clone(),
        keys: s.clone(),
        hl7: s.clone(),
        hl7_outbox: s.clone(),
        notifications: s.clone(),
        bookings: s.clone(),
        subscriptions: s,
    })
}

/// Opens the store: PostgreSQL when `database_url` is given, else SQLite at
/// `data_dir/medmesh.db`.
///
/// # Errors
/// If the database cannot be opened or migrated.
pub async fn open(database_url: Option<&str>, data_dir: &Path) -> Result<Stores, StoreError> {
    open_with(database_url, data_dir, &StoreOptions::default()).await
}

/// How the store bounds the work it is given, and the clock it reads.
#[derive(Clone)]
pub struct StoreOptions {
    /// The longest one statement may run on PostgreSQL before the server cancels it (a
    /// serving node sets it; offline commands such as `audit verify` need none). SQLite has
    /// no such setting: searches are bounded before they reach it.
    pub statement_timeout: Option<std::time::Duration>,
    /// The clock relative search prefixes (`ap`) are measured from.
    pub clock: Arc<dyn Clock>,
}

impl Default for StoreOptions {
    fn default() -> Self {
        Self {
            statement_timeout: None,
            clock: Arc::new(SystemClock),
        }
    }
}

impl std::fmt::Debug for StoreOptions {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("StoreOptions")
            .field("statement_timeout", &self.statement_timeout)
            .finish_non_exhaustive()
    }
}

/// As [`open`], with bounds on the work the store accepts.
///
/// # Errors
/// If the database cannot be opened or migrated.
pub async fn open_with(
    database_url: Option<&str>,
    data_dir: &Path,
    options: &StoreOptions,
) -> Result<Stores, StoreError> {
    match database_url {
        Some(url) if url.starts_with("postgres://") || url.starts_with("postgresql://") => {
            stores(
                postgres::PgBackend::open(url, 16, options.statement_timeout).await?,
                options.clock.clone(),
            )
            .await
        }
        Some(url) => {
            let path = url
                .strip_prefix("sqlite://")
                .or_else(|| url.strip_prefix("sqlite:"))
                .ok_or_else(|| {
                    StoreError::Invalid(
                        "database URL must start with postgres:// or sqlite://".into(),
                    )
                })?;
            stores(
                sqlite::SqliteBackend::open(Path::new(path)).await?,
                options.clock.clone(),
            )
            .await
        }
        None => {
            std::fs::create_dir_all(data_dir).map_err(StoreError::backend)?;
            stores(
                sqlite::SqliteBackend::open(&data_dir.join("medmesh.db")).await?,
                options.clock.clone(),
            )
            .await
        }
    }
}
