//! The workspace's shape, checked: the rules of `docs/architecture.md` that the compiler
//! cannot enforce on its own. Read from the crates' manifests and sources.

use std::path::{Path, PathBuf};

fn crates_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .unwrap()
        .to_path_buf()
}

/// The crate's `[dependencies]` (not dev-dependencies), by name.
fn dependencies(krate: &str) -> Vec<String> {
    let manifest = std::fs::read_to_string(crates_dir().join(krate).join("Cargo.toml")).unwrap();
    let table: toml::Table = manifest.parse().unwrap();
    table
        .get("dependencies")
        .and_then(|d| d.as_table())
        .map(|d| d.keys().cloned().collect())
        .unwrap_or_default()
}

fn sources(krate: &str) -> Vec<(PathBuf, String)> {
    fn walk(dir: &Path, out: &mut Vec<(PathBuf, String)>) {
        for entry in std::fs::read_dir(dir).unwrap() {
            let path = entry.unwrap().path();
            if path.is_dir() {
                walk(&path, out);
            } else if path.extension().is_some_and(|e| e == "rs") {
                let text = std::fs::read_to_string(&path).unwrap();
                out.push((path, text));
            }
        }
    }
    let mut out = Vec::new();
    walk(&crates_dir().join(krate).join("src"), &mut out);
    out
}

/// Domain and application crates: no web framework, no SQL driver, no HTTP client.
const INNER: [&str; 29] = [
    "medmesh-kernel",
    "medmesh-fhir",
    "medmesh-auth",
    "medmesh-policy",
    "medmesh-audit",
    "medmesh-crypto",
    "medmesh-store",
    "medmesh-at-rest",
    "medmesh-records",
    "medmesh-vault",
    "medmesh-trust-network",
    "medmesh-export",
    "medmesh-key-admin",
    "medmesh-audit-log",
    "medmesh-identity",
    "medmesh-patient-log-verifier",
    "medmesh-hl7v2",
    "medmesh-hl7v2-fhir",
    "medmesh-interface-engine",
    "medmesh-notifications",
    "medmesh-scheduling",
    "medmesh-subscriptions",
    "medmesh-medications",
    "medmesh-care",
    "medmesh-messaging",
    "medmesh-telehealth",
    "medmesh-device-import",
    "medmesh-glucose",
    "medmesh-devices",
];

#[test]
fn dependencies_point_inward() {
    for krate in INNER {
        let deps = dependencies(krate);
        for outer in ["axum", "sqlx", "reqwest", "hyper", "tower", "tower-http"] {
            assert!(
                !deps.iter().any(|d| d == outer),
                "{krate} depends on {outer}: adapters belong in their own crates"
            );
        }
        for (path, text) in sources(krate) {
            for io in ["tokio::net", "tokio::fs", "std::net::Tcp"] {
                assert!(
                    !text.contains(io),
                    "{} uses {io}: domain and application crates do no I/O of their own",
                    path.display()
                );
            }
        }
    }
    assert!(
        !dependencies("medmesh-identity")
            .iter()
            .any(|d| d == "medmesh-records"),
        "identity and records depend on the kernel, not on each other"
    );
}

/// The record core is the capability crates' door into the record service; the inbound
/// adapters call application methods that take a context or a PDP permit instead.
#[test]
fn adapters_never_open_the_record_core() {
    for krate in ["medmesh-server", "medmesh-portal", "medmesh"] {
        for (path, text) in sources(krate) {
            for door in ["RecordCore", "record_core", ".core()"] {
                assert!(
                    !text.contains(door),
                    "{} reaches into the record core ({door})",
                    path.display()
                );
            }
        }
    }
}

/// SQL lives in the store adapter only.
#[test]
fn sql_stays_in_the_store_adapter() {
    for krate in INNER {
        for (path, text) in sources(krate) {
            for sql in ["SELECT ", "INSERT INTO", "UPDATE ", "DELETE FROM"] {
                let hit = text
                    .lines()
                    .filter(|l| !l.trim_start().starts_with("//"))
                    .any(|l| l.contains(sql) && l.contains('"'));
                assert!(!hit, "{} holds SQL ({sql})", path.display());
            }
        }
    }
}
