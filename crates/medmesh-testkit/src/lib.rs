//! Test support for the application-service crates (records, the vault, the trust network,
//! export, key administration, the audit log): a record service on the real SQLite adapter
//! with a stepping clock and sequential ids, request contexts, and raw reads of the store
//! file as a thief with a copy of it would make. Only ever a dev-dependency.

// Test support fails loudly by design, makes its own actors and steps its own clock.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
#![allow(clippy::disallowed_methods)]

use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};

use medmesh_at_rest::AtRest;
use medmesh_auth::parse_scopes;
use medmesh_crypto::OsRandom;
use medmesh_kernel::{
    Actor, Clock, IdSource, OperationId, RequestContext, SystemClock, VerifiedIdentity,
};
use medmesh_records::RecordService;
use medmesh_store::AuditLogStore;
use serde_json::{Value, json};

pub use medmesh_store_sql::Stores;

/// A clock that moves one second at every reading, from 2023-11-14T22:13:20Z.
#[derive(Debug)]
pub struct StepClock(AtomicI64);

impl Default for StepClock {
    fn default() -> Self {
        Self(AtomicI64::new(1_700_000_000_000_000))
    }
}

impl Clock for StepClock {
    fn now_micros(&self) -> i64 {
        self.0.fetch_add(1_000_000, Ordering::SeqCst)
    }
}

/// Ids `id-1`, `id-2`...
#[derive(Debug)]
pub struct SeqIds(AtomicU64);

impl Default for SeqIds {
    fn default() -> Self {
        Self(AtomicU64::new(1))
    }
}

impl IdSource for SeqIds {
    fn new_id(&self) -> String {
        format!("id-{}", self.0.fetch_add(1, Ordering::SeqCst))
    }
}

/// A record service on the SQLite store in `dir`, sealing under a key file there when
/// `encrypted` (accepting plaintext bodies too when `migrating`).
pub async fn service_at(
    dir: &Path,
    encrypted: bool,
    migrating: bool,
) -> (Arc<RecordService>, Stores) {
    let stores = medmesh_store_sql::open(None, dir).await.unwrap();
    let mut svc = RecordService::new(
        stores.records.clone(),
        medmesh_fhir::definitions().unwrap(),
        Arc::new(StepClock::default()),
        Arc::new(SeqIds::default()),
    );
    if encrypted {
        let file =
            medmesh_kek::KeyFile::open_or_create(&dir.join("master.key"), &OsRandom).unwrap();
        let kek = Arc::new(medmesh_kek::LocalKek::new(file, Arc::new(OsRandom)));
        // The key ring has its own clock, so the service's stepping clock stays predictable.
        let mut at_rest = AtRest::load(
            stores.keys.clone(),
            kek,
            Arc::new(OsRandom),
            Arc::new(SystemClock),
        )
        .await
        .unwrap();
        if migrating {
            at_rest = at_rest.accepting_plaintext();
        }
        svc = svc.with_encryption(Arc::new(at_rest));
    }
    (Arc::new(svc), stores)
}

/// A request from a verified token with these scopes.
pub fn ctx(scopes: &str) -> RequestContext {
    RequestContext::new(
        Actor::from_verified_token(VerifiedIdentity {
            subject: "tester".into(),
            scopes: parse_scopes(scopes),
            patient: None,
            role: None,
            clinician: None,
        }),
        OperationId::new("op-1"),
        None,
        "http://test/fhir",
    )
}

/// A request from the CLI's local operator.
pub fn operator() -> RequestContext {
    RequestContext::new(Actor::local_operator(), OperationId::new("op"), None, "")
}

/// How many entries the audit log holds.
pub async fn audit_count(log: &Arc<dyn AuditLogStore>) -> u64 {
    log.log_head().await.unwrap().size
}

/// Reads raw rows straight from the SQLite file, as a thief with the file would.
pub async fn raw_rows(dir: &Path, sql: &str) -> Vec<Vec<u8>> {
    use sqlx::Row;
    let url = format!("sqlite://{}?mode=ro", dir.join("medmesh.db").display());
    let mut conn = <sqlx::SqliteConnection as sqlx::Connection>::connect(&url)
        .await
        .unwrap();
    sqlx::query(sqlx::AssertSqlSafe(sql.to_string()))
        .fetch_all(&mut conn)
        .await
        .unwrap()
        .into_iter()
        .map(|r| {
            r.try_get::<Vec<u8>, _>(0)
                .or_else(|_| r.try_get::<String, _>(0).map(String::into_bytes))
                .unwrap_or_default()
        })
        .collect()
}

/// Whether any row holds `needle`, in any case.
pub fn contains(haystack: &[Vec<u8>], needle: &str) -> bool {
    let n = needle.as_bytes();
    haystack
        .iter()
        .any(|h| h.windows(n.len()).any(|w| w.eq_ignore_ascii_case(n)))
}

/// A patient whose identifying values must never reach the store in clear.
pub fn mejia() -> Value {
    json!({
        "resourceType": "Patient",
        "identifier": [{"system": "http://hospital.example/mrn", "value": "MRN-4711"}],
        "name": [{"family": "Quixotely", "given": ["Dulcinea"]}],
        "telecom": [{"system": "phone", "value": "555-0142"}],
        "birthDate": "1980-05-17"
    })
}

/// What [`mejia`] holds that identifies her.
pub const SECRETS: [&str; 4] = ["Quixotely", "Dulcinea", "MRN-4711", "555-0142"];
