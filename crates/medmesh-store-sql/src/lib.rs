//! SQLite and PostgreSQL adapters for the record store port.
//!
//! All SQL of medmesh lives in this crate. Statements are built once ([`sql`],
//! [`search_sql`], [`store`]) and run by either backend ([`sqlite`], [`postgres`]); each
//! backend has its own migrations under `migrations/`.

pub mod exec;
pub mod postgres;
pub mod search_sql;
pub mod sql;
pub mod sqlite;
pub mod store;

use std::path::Path;
use std::sync::Arc;

use medmesh_store::{RecordStore, StoreError};

/// Opens the store: PostgreSQL when `database_url` is given, else SQLite at
/// `data_dir/medmesh.db`.
///
/// # Errors
/// If the database cannot be opened or migrated.
pub async fn open(
    database_url: Option<&str>,
    data_dir: &Path,
) -> Result<Arc<dyn RecordStore>, StoreError> {
    match database_url {
        Some(url) if url.starts_with("postgres://") || url.starts_with("postgresql://") => {
            Ok(Arc::new(store::SqlStore::new(
                postgres::PgBackend::open(url, 16).await?,
            )))
        }
        Some(url) => {
            let path = url
                .strip_prefix("sqlite://")
                .or_else(|| url.strip_prefix("sqlite:"))
                .ok_or_else(|| {
                    StoreError::Backend(
                        "database URL must start with postgres:// or sqlite://".into(),
                    )
                })?;
            Ok(Arc::new(store::SqlStore::new(
                sqlite::SqliteBackend::open(Path::new(path)).await?,
            )))
        }
        None => {
            std::fs::create_dir_all(data_dir)
                .map_err(|e| StoreError::Backend(format!("cannot create data directory: {e}")))?;
            Ok(Arc::new(store::SqlStore::new(
                sqlite::SqliteBackend::open(&data_dir.join("medmesh.db")).await?,
            )))
        }
    }
}
