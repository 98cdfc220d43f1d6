//! The store contract: one story per port, run against every adapter (SQLite and PostgreSQL
//! today). A third backend is added by making `open_*` for it and passing this suite, as
//! atuin's `tests-database` does for its `Database` trait.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // tests fail loudly by design
// Fresh database names come from v4 UUIDs.
#![allow(clippy::disallowed_methods)]

use medmesh_audit::{AuditEntry, Outcome};
use medmesh_fhir::search::{Handling, parse_query};
use medmesh_policy::access::{Edge, EdgeKind};
use medmesh_store::{
    ExportJob, HistoryQuery, HistoryScope, KeyState, NewVersion, Notification, PageRequest,
    SealedKey, UserKey, UserRecord, WrappedKeyRecord,
};
use medmesh_store_sql::{StoreOptions, Stores};
use serde_json::json;

/// A fresh SQLite store in a temporary folder (kept alive with the stores).
async fn sqlite() -> (Stores, tempfile::TempDir) {
    let dir = tempfile::tempdir().unwrap();
    let stores = medmesh_store_sql::open_with(None, dir.path(), &StoreOptions::default())
        .await
        .unwrap();
    (stores, dir)
}

/// A fresh PostgreSQL database on the suite's server.
async fn postgres() -> Stores {
    let url = postgres_url().await;
    medmesh_store_sql::open_with(
        Some(&url),
        std::path::Path::new("."),
        &StoreOptions::default(),
    )
    .await
    .unwrap()
}

/// Creates a fresh PostgreSQL database and returns its URL.
async fn postgres_url() -> String {
    let admin = std::env::var("MEDMESH_TEST_POSTGRES")
        .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432".into());
    let name = format!("medmesh_contract_{}", uuid::Uuid::new_v4().simple());
    let pool = sqlx::postgres::PgPoolOptions::new()
        .max_connections(1)
        .connect(&format!("{admin}/postgres"))
        .await
        .expect("PostgreSQL must be running for the contract suite");
    sqlx::query(sqlx::AssertSqlSafe(format!("CREATE DATABASE {name}")))
        .execute(&pool)
        .await
        .unwrap();
    format!("{admin}/{name}")
}

/// Runs each story on both adapters.
macro_rules! contract {
    ($($story:ident),* $(,)?) => {
        $(
            mod $story {
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn sqlite() {
                    let (stores, _dir) = super::sqlite().await;
                    super::$story(stores).await;
                }
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn postgres() {
                    super::$story(super::postgres().await).await;
                }
            }
        )*
    };
}

fn entry(op: &str, patient: &str) -> AuditEntry {
    let mut e = AuditEntry::new(1_000, op, "tester", "create", Outcome::Success);
    e.patients = vec![patient.to_string()];
    e
}

fn version(rt: &str, id: &str, v: i64, at: i64, body: serde_json::Value) -> NewVersion {
    let defs = medmesh_fhir::definitions::definitions().unwrap();
    NewVersion {
        resource_type: rt.into(),
        id: id.into(),
        version: v,
        last_updated: at,
        deleted: false,
        index: medmesh_fhir::index::extract(defs, &body),
        body: serde_json::to_vec(&body).unwrap(),
    }
}

/// Resources: a write commits its version, index rows and audit entry together; a dropped
/// transaction leaves nothing; reads, versions, history and search see what was committed.
async fn resource_store(stores: Stores) {
    let s = stores.records.clone();
    s.ping().await.unwrap();
    let before = stores.audit.log_head().await.unwrap().size;
    let patient = json!({"resourceType": "Patient", "id": "p1", "name": [{"family": "Quill"}]});
    let mut tx = s.begin().await.unwrap();
    assert_eq!(tx.head("Patient", "p1").await.unwrap(), None);
    tx.put(version("Patient", "p1", 1, 10, patient.clone()))
        .await
        .unwrap();
    tx.append_audit(&entry("op-1", "p1")).await.unwrap();
    tx.commit().await.unwrap();
    // Rolled back: dropped without commit.
    let mut tx = s.begin().await.unwrap();
    tx.put(version(
        "Patient",
        "p2",
        1,
        11,
        json!({"resourceType": "Patient", "id": "p2"}),
    ))
    .await
    .unwrap();
    tx.append_audit(&entry("op-2", "p2")).await.unwrap();
    drop(tx);
    assert!(s.read("Patient", "p2").await.unwrap().is_none());
    assert_eq!(stores.audit.log_head().await.unwrap().size, before + 1);

    let mut tx = s.begin().await.unwrap();
    let head = tx.head("Patient", "p1").await.unwrap().unwrap();
    assert_eq!((head.version, head.deleted), (1, false));
    let renamed = json!({"resourceType": "Patient", "id": "p1", "name": [{"family": "Quillon"}]});
    tx.put(version("Patient", "p1", 2, 20, renamed))
        .await
        .unwrap();
    tx.commit().await.unwrap();

    let current = s.read("Patient", "p1").await.unwrap().unwrap();
    assert_eq!((current.version, current.last_updated), (2, 20));
    let first = s.vread("Patient", "p1", 1).await.unwrap().unwrap();
    assert_eq!(
        serde_json::from_slice::<serde_json::Value>(&first.body).unwrap(),
        patient
    );
    let history = s
        .history(&HistoryQuery {
            scope: HistoryScope::Instance("Patient".into(), "p1".into()),
            since: None,
            at: None,
            count: 10,
            cursor: None,
        })
        .await
        .unwrap();
    assert_eq!(
        history
            .versions
            .iter()
            .map(|v| v.version)
            .collect::<Vec<_>>(),
        [2, 1]
    );

    let defs = medmesh_fhir::definitions::definitions().unwrap();
    let page = |family: &str| {
        parse_query(
            defs,
            "Patient",
            &[("family".to_string(), family.to_string())],
            Handling::Strict,
        )
        .unwrap()
    };
    let request = PageRequest {
        count: 10,
        cursor: None,
        with_total: true,
        snapshot: true,
    };
    let found = s.search(&page("quillon"), &request).await.unwrap();
    assert_eq!(found.matches, [("Patient".to_string(), "p1".to_string())]);
    assert_eq!(found.total, Some(1));
    let old = s.search(&page("quilt"), &request).await.unwrap();
    assert!(
        old.matches.is_empty(),
        "only the current version is indexed"
    );
    // `_id` is answered from `resources` (no index row), as the only criterion and beside one.
    let by_id = |id: &str| {
        parse_query(
            defs,
            "Patient",
            &[
                ("_id".to_string(), id.to_string()),
                ("family".to_string(), "quillon".to_string()),
            ],
            Handling::Strict,
        )
        .unwrap()
    };
    let found = s.search(&by_id("p1"), &request).await.unwrap();
    assert_eq!(found.matches, [("Patient".to_string(), "p1".to_string())]);
    assert!(
        s.search(&by_id("p2"), &request)
            .await
            .unwrap()
            .matches
            .is_empty()
    );
    let mut only_id = by_id("p1,p2");
    only_id.criteria.truncate(1);
    assert_eq!(s.search(&only_id, &request).await.unwrap().total, Some(1));
    let many = s
        .read_many(&[
            ("Patient".into(), "p1".into()),
            ("Patient".into(), "p2".into()),
        ])
        .await
        .unwrap();
    assert_eq!(many.len(), 1);
    // Several types at once, in the caller's order, whatever the database returns first.
    let mut tx = s.begin().await.unwrap();
    for (rt, id) in [
        ("Observation", "o1"),
        ("Patient", "p3"),
        ("Observation", "o2"),
    ] {
        tx.put(version(
            rt,
            id,
            1,
            30,
            json!({"resourceType": rt, "id": id}),
        ))
        .await
        .unwrap();
    }
    tx.commit().await.unwrap();
    let keys: Vec<(String, String)> = [
        ("Observation", "o2"),
        ("Patient", "p1"),
        ("Observation", "o1"),
        ("Patient", "p3"),
    ]
    .iter()
    .map(|(t, i)| (t.to_string(), i.to_string()))
    .collect();
    let ordered: Vec<(String, String)> = s
        .read_many(&keys)
        .await
        .unwrap()
        .into_iter()
        .map(|v| (v.resource_type, v.id))
        .collect();
    assert_eq!(ordered, keys);
    // A search with its matches' current versions: the page's order (here a sort the table's
    // key does not follow), the same page and versions as `search` then `read_many`.
    for sort in ["-_id", "_id"] {
        let q = parse_query(
            defs,
            "Patient",
            &[("_sort".to_string(), sort.to_string())],
            Handling::Strict,
        )
        .unwrap();
        let (page, versions) = s.search_read(&q, &request).await.unwrap();
        let apart = s.search(&q, &request).await.unwrap();
        assert_eq!(page.matches, apart.matches, "{sort}");
        assert_eq!(page.total, apart.total);
        let read: Vec<(String, String, i64, Vec<u8>)> = versions
            .into_iter()
            .map(|v| (v.resource_type, v.id, v.version, v.body))
            .collect();
        let expected: Vec<(String, String, i64, Vec<u8>)> = s
            .read_many(&apart.matches)
            .await
            .unwrap()
            .into_iter()
            .map(|v| (v.resource_type, v.id, v.version, v.body))
            .collect();
        assert_eq!(read, expected, "{sort}");
        let ids: Vec<&str> = read.iter().map(|(_, id, _, _)| id.as_str()).collect();
        let mut sorted = ids.clone();
        sorted.sort_unstable();
        if sort.starts_with('-') {
            sorted.reverse();
        }
        assert_eq!(ids, sorted, "{sort}");
        assert!(ids.len() >= 2, "p1 and p3 at least");
        assert!(
            read.iter()
                .any(|(_, id, version, _)| id == "p1" && *version == 2),
            "the current version of p1"
        );
    }

    // A first page without a total takes its snapshot in its own page query: the pages after
    // it see no resource written since, in `rid` order and sorted, and an empty first page
    // has no next.
    let put_patients = |ids: &'static [&'static str]| {
        let s = s.clone();
        async move {
            let mut tx = s.begin().await.unwrap();
            for id in ids {
                tx.put(version(
                    "Patient",
                    id,
                    1,
                    40,
                    json!({"resourceType": "Patient", "id": id, "name": [{"family": "Pager"}]}),
                ))
                .await
                .unwrap();
            }
            tx.commit().await.unwrap();
        }
    };
    put_patients(&["pg1", "pg2", "pg3"]).await;
    let mut existing = vec!["pg1", "pg2", "pg3"];
    for sort in [None, Some("-_id")] {
        let mut params = vec![("family".to_string(), "pager".to_string())];
        params.extend(sort.map(|s| ("_sort".to_string(), s.to_string())));
        let q = parse_query(defs, "Patient", &params, Handling::Strict).unwrap();
        let mut request = PageRequest {
            count: 2,
            cursor: None,
            with_total: false,
            snapshot: true,
        };
        let first = s.search(&q, &request).await.unwrap();
        assert_eq!(first.matches.len(), 2, "{sort:?}");
        assert_eq!(first.total, None);
        // Written after page 1: pg4 has a higher `rid` and sorts after; pg0 sorts before.
        let later: &'static [&'static str] = if sort.is_none() { &["pg4"] } else { &["pg0"] };
        put_patients(later).await;
        request.cursor = first.next.clone();
        assert!(request.cursor.is_some(), "{sort:?}");
        let second = s.search(&q, &request).await.unwrap();
        let mut seen: Vec<String> = first
            .matches
            .iter()
            .chain(&second.matches)
            .map(|(_, id)| id.clone())
            .collect();
        let mut rest = second;
        while let Some(next) = rest.next.clone() {
            request.cursor = Some(next);
            rest = s.search(&q, &request).await.unwrap();
            seen.extend(rest.matches.iter().map(|(_, id)| id.clone()));
        }
        let in_order = seen.clone();
        seen.sort_unstable();
        assert_eq!(seen, existing, "{sort:?}: nothing written after page 1");
        if sort.is_some() {
            assert_eq!(in_order, ["pg4", "pg3", "pg2", "pg1"]);
        }
        existing.extend(later);
        existing.sort_unstable();
    }
    let nobody = parse_query(
        defs,
        "Patient",
        &[("family".to_string(), "nobody".to_string())],
        Handling::Strict,
    )
    .unwrap();
    let none = s
        .search(
            &nobody,
            &PageRequest {
                count: 2,
                cursor: None,
                with_total: false,
                snapshot: true,
            },
        )
        .await
        .unwrap();
    assert!(none.matches.is_empty() && none.next.is_none());
}

/// The ids `q` finds on `store` (a first page of ten): in its order when it sorts, else
/// sorted.
async fn found_ids(
    store: &std::sync::Arc<dyn medmesh_store::RecordStore>,
    q: medmesh_fhir::search::SearchQuery,
) -> Vec<String> {
    let request = PageRequest {
        count: 10,
        cursor: None,
        with_total: true,
        snapshot: true,
    };
    let mut found: Vec<String> = store
        .search(&q, &request)
        .await
        .unwrap()
        .matches
        .into_iter()
        .map(|(_, id)| id)
        .collect();
    if q.sort.is_empty() {
        found.sort();
    }
    found
}

/// An Observation search of `params`.
fn observation_query(params: &[(&str, &str)]) -> medmesh_fhir::search::SearchQuery {
    let defs = medmesh_fhir::definitions::definitions().unwrap();
    parse_query(
        defs,
        "Observation",
        &params
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect::<Vec<_>>(),
        Handling::Strict,
    )
    .unwrap()
}

/// An Observation search of one criterion inside a group of alternatives, as a
/// practitioner's reach writes them.
fn observation_group_query(param: &str, value: &str) -> medmesh_fhir::search::SearchQuery {
    let defs = medmesh_fhir::definitions::definitions().unwrap();
    let mut q = parse_query(defs, "Observation", &[], Handling::Strict).unwrap();
    q.criteria
        .push(medmesh_fhir::search::Criterion::AnyOf(vec![vec![
            medmesh_fhir::search::parse_criterion(defs, "Observation", param, value).unwrap(),
        ]]));
    q
}

/// Several local references of one parameter (`$find`'s `schedule=Schedule/a,Schedule/b,...`)
/// are one subquery: as the driver, as a per-row check beside another driver, and in a group
/// of alternatives. References of mixed types, or with no type, still mean each what
/// it says.
async fn reference_lists(stores: Stores) {
    let s = stores.records.clone();
    let obs = |id: &str, subject: Option<&str>| {
        let mut o = json!({"resourceType": "Observation", "id": id, "status": "final",
            "code": {"text": "x"}, "performer": [{"reference": "Practitioner/x"}]});
        if let Some(r) = subject {
            o["subject"] = json!({"reference": r});
        }
        o
    };
    let mut tx = s.begin().await.unwrap();
    for (id, subject) in [
        ("oa", Some("Patient/a")),
        ("ob", Some("Patient/b")),
        ("oc", Some("Patient/c")),
        ("ga", Some("Group/a")),
        ("none", None),
    ] {
        tx.put(version("Observation", id, 1, 10, obs(id, subject)))
            .await
            .unwrap();
    }
    tx.commit().await.unwrap();
    let ids = |params: &[(&str, &str)]| found_ids(&s, observation_query(params));
    assert_eq!(
        ids(&[("subject", "Patient/a,Patient/b")]).await,
        ["oa", "ob"]
    );
    assert_eq!(ids(&[("subject", "Patient/a,Patient/zz")]).await, ["oa"]);
    // No type: any resource with that id.
    assert_eq!(ids(&[("subject", "a,b")]).await, ["ga", "oa", "ob"]);
    // Two types: each as written.
    assert_eq!(ids(&[("subject", "Patient/a,Group/a")]).await, ["ga", "oa"]);
    // Checked per row beside another driver.
    assert_eq!(
        ids(&[
            ("performer", "Practitioner/x"),
            ("subject", "Patient/b,Patient/c")
        ])
        .await,
        ["ob", "oc"]
    );
    assert_eq!(
        ids(&[
            ("performer", "Practitioner/y"),
            ("subject", "Patient/b,Patient/c")
        ])
        .await,
        Vec::<String>::new()
    );
    let in_group = |param: &str, value: &str| found_ids(&s, observation_group_query(param, value));
    assert_eq!(
        in_group("subject", "Patient/a,Patient/c").await,
        ["oa", "oc"]
    );
}

/// Union parameters (`combo-*`) have no index rows of their own: search reads their members'
/// (`combo-code` is `code` and `component-code`), for values, composites, `:not`,
/// `:missing` and `_sort`, alone and beside another criterion.
async fn union_search(stores: Stores) {
    let s = stores.records.clone();
    let loinc = "http://loinc.org";
    let bp = json!({"resourceType": "Observation", "id": "bp", "status": "final",
    "code": {"coding": [{"system": loinc, "code": "85354-9"}]},
    "component": [
        {"code": {"coding": [{"system": loinc, "code": "8480-6"}]},
         "valueQuantity": {"value": 120, "system": "http://unitsofmeasure.org", "code": "mm[Hg]"}},
        {"code": {"coding": [{"system": loinc, "code": "8462-4"}]},
         "valueQuantity": {"value": 80, "system": "http://unitsofmeasure.org", "code": "mm[Hg]"}}
    ]});
    let hr = json!({"resourceType": "Observation", "id": "hr", "status": "final",
        "code": {"coding": [{"system": loinc, "code": "8867-4"}]},
        "valueQuantity": {"value": 72, "system": "http://unitsofmeasure.org", "code": "/min"}});
    let note = json!({"resourceType": "Observation", "id": "note", "status": "preliminary",
        "code": {"coding": [{"system": loinc, "code": "8480-6"}]}});
    let mut tx = s.begin().await.unwrap();
    for (id, body) in [("bp", &bp), ("hr", &hr), ("note", &note)] {
        let v = version("Observation", id, 1, 10, body.clone());
        assert!(
            v.index.iter().all(|r| !r.param.starts_with("combo-")),
            "a union parameter has no rows of its own"
        );
        tx.put(v).await.unwrap();
    }
    tx.commit().await.unwrap();

    let ids = |params: &[(&str, &str)]| found_ids(&s, observation_query(params));
    // The root code and a component's code.
    assert_eq!(ids(&[("combo-code", "8480-6")]).await, ["bp", "note"]);
    assert_eq!(ids(&[("combo-code", "85354-9,8867-4")]).await, ["bp", "hr"]);
    assert_eq!(
        ids(&[("combo-code", "8480-6"), ("status", "final")]).await,
        ["bp"]
    );
    assert_eq!(ids(&[("combo-code:not", "8480-6")]).await, ["hr"]);
    // `:not` of several values excludes each, with and without a system.
    assert_eq!(ids(&[("code:not", "85354-9,8867-4")]).await, ["note"]);
    assert_eq!(
        ids(&[("code:not", "85354-9,http://loinc.org|8867-4")]).await,
        ["note"]
    );
    assert_eq!(ids(&[("code:not", "85354-9,0000-0")]).await, ["hr", "note"]);
    // The same inside a group of alternatives, as a practitioner's reach puts the labels
    // hidden from them: bare codes are one subquery there, read from where the parameter's
    // rows are (`_id`'s from `resources`).
    let in_group = |param: &str, value: &str| found_ids(&s, observation_group_query(param, value));
    assert_eq!(in_group("code:not", "85354-9,8867-4").await, ["note"]);
    assert_eq!(
        in_group("code:not", "85354-9,http://loinc.org|8867-4").await,
        ["note"]
    );
    assert_eq!(in_group("code:not", "85354-9,0000-0").await, ["hr", "note"]);
    assert_eq!(in_group("_id:not", "bp,hr").await, ["note"]);
    // Several bare codes without `:not` are one subquery too (a chart's probe for the labels
    // consent hides), as the driver, as a per-row check beside another driver, and in a group.
    assert_eq!(ids(&[("code", "85354-9,8867-4")]).await, ["bp", "hr"]);
    assert_eq!(ids(&[("code", "85354-9,0000-0")]).await, ["bp"]);
    assert_eq!(
        ids(&[("status", "final"), ("code", "8867-4,0000-0")]).await,
        ["hr"]
    );
    assert_eq!(
        ids(&[("_id", "bp,note"), ("code", "85354-9,8867-4")]).await,
        ["bp"]
    );
    assert_eq!(in_group("code", "85354-9,8867-4").await, ["bp", "hr"]);
    assert_eq!(in_group("_id", "bp,hr").await, ["bp", "hr"]);
    assert_eq!(in_group("_id:not", "bp").await, ["hr", "note"]);
    assert_eq!(
        ids(&[("combo-code:not", "8480-6,8867-4")]).await,
        Vec::<String>::new()
    );
    assert_eq!(
        ids(&[("status", "final"), ("code:not", "8867-4,0000-0")]).await,
        ["bp"]
    );
    // A value at the root or in a component.
    assert_eq!(ids(&[("combo-value-quantity", "gt100")]).await, ["bp"]);
    assert_eq!(ids(&[("combo-value-quantity", "lt90")]).await, ["bp", "hr"]);
    assert_eq!(
        ids(&[("combo-value-quantity:missing", "true")]).await,
        ["note"]
    );
    assert_eq!(
        ids(&[("combo-value-quantity:missing", "false")]).await,
        ["bp", "hr"]
    );
    // A composite pairs a code with its own value: 8462-4 is 80, not 120.
    assert_eq!(
        ids(&[("combo-code-value-quantity", "8480-6$gt100")]).await,
        ["bp"]
    );
    assert!(
        ids(&[("combo-code-value-quantity", "8462-4$gt100")])
            .await
            .is_empty()
    );
    assert_eq!(
        ids(&[("combo-code-value-quantity", "8867-4$72")]).await,
        ["hr"]
    );
    // Sorted by the smallest value of either member.
    assert_eq!(
        ids(&[
            ("combo-value-quantity:missing", "false"),
            ("_sort", "combo-value-quantity")
        ])
        .await,
        ["hr", "bp"]
    );
    assert_eq!(
        ids(&[
            ("combo-value-quantity:missing", "false"),
            ("_sort", "-combo-value-quantity")
        ])
        .await,
        ["bp", "hr"]
    );
}

/// The trust network: the edges a resource contributes replace its earlier ones; the reach
/// of a practitioner holds the edges to them that hold now; break-glass is queued.
async fn trust_edge_store(stores: Stores) {
    let s = stores.records.clone();
    let edge = |kind: EdgeKind, source: &str, until: Option<i64>| Edge {
        patient: "p1".into(),
        principal: "Practitioner/dr".into(),
        kind,
        source: source.into(),
        since: 0,
        until,
        detail: None,
    };
    let before = s.policy_generation().await.unwrap();
    let mut tx = s.begin().await.unwrap();
    tx.replace_policy_facts(
        "CareTeam/ct",
        &[edge(EdgeKind::CareTeam, "CareTeam/ct", None)],
        None,
    )
    .await
    .unwrap();
    tx.replace_policy_facts(
        "break-glass/bg1",
        &[edge(EdgeKind::BreakGlass, "break-glass/bg1", Some(5_000))],
        None,
    )
    .await
    .unwrap();
    assert_eq!(
        s.policy_generation().await.unwrap(),
        before,
        "not raised before the commit"
    );
    tx.commit().await.unwrap();
    let raised = s.policy_generation().await.unwrap();
    assert!(
        raised > before,
        "a change to the edges raises the generation"
    );
    // A source with no facts that gets none changes nothing.
    let mut tx = s.begin().await.unwrap();
    tx.replace_policy_facts("Encounter/none", &[], None)
        .await
        .unwrap();
    tx.commit().await.unwrap();
    assert_eq!(s.policy_generation().await.unwrap(), raised);
    assert_eq!(s.patient_edges("p1").await.unwrap().len(), 2);
    let (_, now) = s.reach(&["Practitioner/dr".into()], 1_000).await.unwrap();
    assert_eq!(now.len(), 2);
    let (_, later) = s.reach(&["Practitioner/dr".into()], 10_000).await.unwrap();
    assert_eq!(later.len(), 1, "the break-glass access ended");
    assert_eq!(s.break_glass_since(0).await.unwrap().len(), 1);
    // The care team is rewritten without the practitioner: their edge goes.
    let mut tx = s.begin().await.unwrap();
    tx.replace_policy_facts("CareTeam/ct", &[], None)
        .await
        .unwrap();
    tx.commit().await.unwrap();
    assert_eq!(s.patient_edges("p1").await.unwrap().len(), 1);
    assert!(
        s.policy_generation().await.unwrap() > raised,
        "removing an edge raises it too"
    );
    // Edges leave the consent generation be; a consent going or coming raises both.
    let consents_before = s.consent_generation().await.unwrap();
    assert_eq!(consents_before, 0, "no edge change above touched it");
    let mut fresh = s.begin().await.unwrap();
    assert_eq!(fresh.freshness().await.unwrap().consent_generation, 0);
    drop(fresh);
    let policy_before = s.policy_generation().await.unwrap();
    let mut tx = s.begin().await.unwrap();
    tx.replace_policy_facts("Consent/c1", &[], Some(("p1", "{}")))
        .await
        .unwrap();
    tx.commit().await.unwrap();
    assert_eq!(s.consent_generation().await.unwrap(), consents_before + 1);
    assert!(s.policy_generation().await.unwrap() > policy_before);
    let mut tx = s.begin().await.unwrap();
    assert_eq!(
        tx.freshness().await.unwrap().consent_generation,
        consents_before + 1
    );
    tx.replace_policy_facts("Consent/c1", &[], None)
        .await
        .unwrap();
    tx.commit().await.unwrap();
    assert_eq!(
        s.consent_generation().await.unwrap(),
        consents_before + 2,
        "a consent withdrawn raises it"
    );
    // With audit entries in the same transaction (on PostgreSQL one statement writes them and
    // raises the generations): the entries, their patients' rows and chains, and the raised
    // generations commit together, or not at all.
    let log_before = stores.audit.log_head().await.unwrap().size;
    let (policy_before, consents_before) = (
        s.policy_generation().await.unwrap(),
        s.consent_generation().await.unwrap(),
    );
    // The same transaction twice: dropped first, then committed.
    for commit in [false, true] {
        let mut tx = s.begin().await.unwrap();
        tx.replace_policy_facts("Consent/c2", &[], Some(("p1", "{}")))
            .await
            .unwrap();
        tx.append_audit(&entry("op-consent", "p1")).await.unwrap();
        tx.append_audit(&entry("op-consent-2", "p2")).await.unwrap();
        if commit {
            tx.commit().await.unwrap();
        } else {
            drop(tx);
            assert_eq!(stores.audit.log_head().await.unwrap().size, log_before);
            assert_eq!(s.policy_generation().await.unwrap(), policy_before);
        }
    }
    assert_eq!(stores.audit.log_head().await.unwrap().size, log_before + 2);
    assert_eq!(s.policy_generation().await.unwrap(), policy_before + 1);
    assert_eq!(s.consent_generation().await.unwrap(), consents_before + 1);
    let mut tx = s.begin().await.unwrap();
    tx.replace_policy_facts(
        "Encounter/e1",
        &[edge(EdgeKind::CareTeam, "Encounter/e1", None)],
        None,
    )
    .await
    .unwrap();
    tx.append_audit(&entry("op-edge", "p1")).await.unwrap();
    tx.commit().await.unwrap();
    assert_eq!(s.policy_generation().await.unwrap(), policy_before + 2);
    assert_eq!(s.consent_generation().await.unwrap(), consents_before + 1);
    let mine = stores
        .audit
        .log_entries_for_patient("p1", None, 10)
        .await
        .unwrap();
    assert_eq!(mine.len(), 2, "each entry is in its patient's rows");
    assert_eq!(stores.audit.log_head().await.unwrap().size, log_before + 3);
    let mut seqs: Vec<u64> = mine
        .iter()
        .map(|l| {
            let e = AuditEntry::from_leaf(&l.entry).unwrap();
            e.chain.iter().find(|c| c.patient == "p1").unwrap().seq
        })
        .collect();
    seqs.sort_unstable();
    assert_eq!(seqs, [1, 2], "the patient's chain moved once per entry");
}

/// Notifications: queued in a transaction, listed newest first, read once.
async fn notification_store(stores: Stores) {
    let s = stores.records.clone();
    let note = |id: &str, at: i64| Notification {
        id: id.into(),
        patient_id: "p1".into(),
        kind: "break-glass".into(),
        message: "someone opened your record".into(),
        created_micros: at,
        read_micros: None,
    };
    let mut tx = s.begin().await.unwrap();
    tx.notify(&note("n1", 10)).await.unwrap();
    tx.notify(&note("n2", 20)).await.unwrap();
    tx.commit().await.unwrap();
    let list = s.notifications("p1").await.unwrap();
    assert_eq!(
        list.iter().map(|n| n.id.as_str()).collect::<Vec<_>>(),
        ["n2", "n1"]
    );
    assert!(s.mark_notification_read("p1", "n1", 30).await.unwrap());
    assert!(s.mark_notification_read("p1", "n1", 40).await.unwrap());
    assert!(
        !s.mark_notification_read("p2", "n1", 50).await.unwrap(),
        "not their inbox"
    );
    let read = s.notifications("p1").await.unwrap();
    assert_eq!(read[1].read_micros, Some(30), "the first reading is kept");
    assert!(s.notifications("p2").await.unwrap().is_empty());
}

/// Export jobs: saved, updated, and found again after a restart while unfinished.
async fn export_job_store(stores: Stores) {
    let s = stores.records.clone();
    let mut job = ExportJob {
        id: "job-1".into(),
        state: "queued".into(),
        request: "{}".into(),
        output: None,
        error: None,
        created: 1,
        updated: 1,
    };
    s.put_export_job(&job).await.unwrap();
    assert_eq!(s.export_job("job-1").await.unwrap(), Some(job.clone()));
    assert_eq!(s.unfinished_export_jobs().await.unwrap().len(), 1);
    job.state = "complete".into();
    job.output = Some("[]".into());
    job.updated = 2;
    s.put_export_job(&job).await.unwrap();
    assert!(s.unfinished_export_jobs().await.unwrap().is_empty());
    assert_eq!(s.export_job("job-1").await.unwrap(), Some(job));
    assert_eq!(s.export_job("job-2").await.unwrap(), None);
}

/// The key directory: a key published twice stays one; revocation is by its owner only;
/// a sealed document's wrapped keys are added, replaced and removed.
async fn key_directory_store(stores: Stores) {
    let s = stores.records.clone();
    let key = UserKey {
        key_id: "k1".into(),
        owner: "Patient/p1".into(),
        account_id: "u1".into(),
        kind: "signing".into(),
        public_key: "pk".into(),
        statement_time: "2026-01-01T00:00:00Z".into(),
        signature: "sig".into(),
        created_micros: 1,
        revoked_micros: None,
    };
    let mut tx = s.begin().await.unwrap();
    tx.put_user_key(&key).await.unwrap();
    tx.put_user_key(&key).await.unwrap();
    tx.commit().await.unwrap();
    assert_eq!(
        s.user_keys("Patient/p1").await.unwrap(),
        std::slice::from_ref(&key)
    );
    let mut tx = s.begin().await.unwrap();
    assert!(!tx.revoke_user_key("Patient/p2", "k1", 5).await.unwrap());
    assert!(tx.revoke_user_key("Patient/p1", "k1", 5).await.unwrap());
    tx.commit().await.unwrap();
    assert_eq!(
        s.user_key("k1").await.unwrap().unwrap().revoked_micros,
        Some(5)
    );

    let sealed = SealedKey {
        document_id: "b1".into(),
        recipient_key_id: "k1".into(),
        recipient: "Patient/p1".into(),
        wrapped: "enc.ct".into(),
        added_by: "Patient/p1".into(),
        added_micros: 1,
    };
    let mut tx = s.begin().await.unwrap();
    tx.put_sealed_key(&sealed).await.unwrap();
    tx.commit().await.unwrap();
    assert_eq!(s.sealed_keys("b1").await.unwrap(), [sealed]);
    let mut tx = s.begin().await.unwrap();
    assert!(tx.delete_sealed_key("b1", "k1").await.unwrap());
    assert!(!tx.delete_sealed_key("b1", "k1").await.unwrap());
    tx.commit().await.unwrap();
    assert!(s.sealed_keys("b1").await.unwrap().is_empty());
}

/// Data keys: one active key per owner, whoever inserts first wins; erasure destroys them.
async fn key_store(stores: Stores) {
    let record = |id: &str| WrappedKeyRecord {
        key_id: id.into(),
        owner: "p1".into(),
        kek_id: Some("kek-1".into()),
        wrapped: Some(vec![1, 2, 3]),
        state: KeyState::Active,
        created_micros: 1,
        changed_micros: 1,
    };
    let mut tx = stores.records.begin().await.unwrap();
    tx.insert_data_key(&record("aa")).await.unwrap();
    tx.insert_data_key(&record("bb")).await.unwrap();
    assert_eq!(
        tx.active_data_key("p1").await.unwrap().unwrap().key_id,
        "aa"
    );
    tx.commit().await.unwrap();
    assert_eq!(
        stores.keys.active_key("p1").await.unwrap().unwrap().key_id,
        "aa"
    );
    assert_eq!(stores.keys.destroy_keys("p1", 9).await.unwrap(), 1);
    let gone = stores.keys.key("aa").await.unwrap().unwrap();
    assert_eq!((gone.state, gone.wrapped), (KeyState::Destroyed, None));
    assert!(stores.keys.active_key("p1").await.unwrap().is_none());
}

/// Accounts: a user name is taken once; a user is found by id and name.
/// Calendar feeds: one per user, found by the token's digest, a new one replacing the old.
async fn calendar_feeds(stores: Stores) {
    let id = &stores.identity;
    assert!(id.calendar_feed("h1").await.unwrap().is_none());
    id.replace_calendar_feed("u1", "h1", "busy", 1)
        .await
        .unwrap();
    assert_eq!(
        id.calendar_feed("h1").await.unwrap(),
        Some(("u1".into(), "busy".into()))
    );
    id.replace_calendar_feed("u1", "h2", "detailed", 2)
        .await
        .unwrap();
    assert!(id.calendar_feed("h1").await.unwrap().is_none());
    assert_eq!(
        id.calendar_feed("h2").await.unwrap(),
        Some(("u1".into(), "detailed".into()))
    );
    assert!(id.remove_calendar_feed("u1").await.unwrap());
    assert!(!id.remove_calendar_feed("u1").await.unwrap());
    assert!(id.calendar_feed("h2").await.unwrap().is_none());
}

async fn identity_store(stores: Stores) {
    let user = UserRecord {
        id: "u1".into(),
        username: "quill".into(),
        role: "patient".into(),
        password_hash: None,
        totp_secret: None,
        totp_confirmed: false,
        totp_last_step: None,
        patient_id: Some("p1".into()),
        practitioner_id: None,
        practitioner_role_id: None,
        verification: "unverified".into(),
        specialty: None,
        organization: None,
        external_subject: None,
        disabled: false,
        created: 1,
    };
    stores.identity.insert_user(&user).await.unwrap();
    let again = UserRecord {
        id: "u2".into(),
        ..user.clone()
    };
    assert!(matches!(
        stores.identity.insert_user(&again).await,
        Err(medmesh_store::StoreError::Conflict)
    ));
    assert!(stores.identity.user_by_id("u1").await.unwrap() == Some(user.clone()));
    assert!(stores.identity.user_by_username("quill").await.unwrap() == Some(user.clone()));
    // A TOTP step is claimed once.
    assert!(stores.identity.claim_totp_step("u1", 7).await.unwrap());
    assert!(!stores.identity.claim_totp_step("u1", 7).await.unwrap());
    // Practitioners by role, organization and verification, by user name, bounded.
    for (id, org, verification) in [
        ("d3", "north", "unverified"),
        ("d1", "north", "verified"),
        ("d2", "south", "unverified"),
        ("d4", "north", "unverified"),
    ] {
        let d = UserRecord {
            id: id.into(),
            username: format!("dr-{id}"),
            role: "practitioner".into(),
            patient_id: None,
            practitioner_id: Some(id.into()),
            verification: verification.into(),
            organization: Some(org.into()),
            ..user.clone()
        };
        stores.identity.insert_user(&d).await.unwrap();
    }
    let names = |users: Vec<UserRecord>| users.into_iter().map(|u| u.username).collect::<Vec<_>>();
    let with = |org, verification, limit| {
        stores
            .identity
            .users_with_role("practitioner", org, verification, limit)
    };
    assert_eq!(
        names(with(None, None, 10).await.unwrap()),
        ["dr-d1", "dr-d2", "dr-d3", "dr-d4"]
    );
    assert_eq!(
        names(with(Some("north"), Some("unverified"), 10).await.unwrap()),
        ["dr-d3", "dr-d4"]
    );
    assert_eq!(
        names(with(None, Some("unverified"), 2).await.unwrap()),
        ["dr-d2", "dr-d3"]
    );
}

/// The audit log: entries appended outside a write are durable and counted; a patient's
/// entries are found by patient.
async fn audit_log_store(stores: Stores) {
    let before = stores.audit.log_head().await.unwrap().size;
    stores
        .records
        .append_audit(&[entry("op-a", "p1"), entry("op-b", "p2")])
        .await
        .unwrap();
    assert_eq!(stores.audit.log_head().await.unwrap().size, before + 2);
    let mine = stores
        .audit
        .log_entries_for_patient("p1", None, 10)
        .await
        .unwrap();
    assert_eq!(mine.len(), 1);

    // A full pass reads every leaf once, in order, with its columns, across page boundaries;
    // and every patient row, in whatever order.
    use futures::StreamExt;
    let many: Vec<AuditEntry> = (0..9_000)
        .map(|i| {
            let mut e = entry(&format!("op-{i}"), &format!("p{}", i % 3));
            e.time_micros = 2_000 + i;
            if i % 10 == 0 {
                e.patients.push("shared".into());
            }
            e
        })
        .collect();
    stores.records.append_audit(&many).await.unwrap();
    let size = stores.audit.log_head().await.unwrap().size;
    assert_eq!(size, before + 2 + 9_000);
    let mut leaves = 0;
    let mut pages = stores.audit.scan_leaves(0, size);
    while let Some(page) = pages.next().await {
        for leaf in page.unwrap().iter() {
            assert_eq!(leaf.index, leaves);
            let e = AuditEntry::from_leaf(leaf.entry).unwrap();
            assert_eq!(
                (leaf.time_micros, leaf.actor),
                (e.time_micros, "tester".as_bytes())
            );
            assert!(!leaf.nodes.is_empty() && leaf.nodes.len() % 32 == 0);
            leaves += 1;
        }
    }
    assert_eq!(leaves, size);
    let mut part = Vec::new();
    let mut pages = stores.audit.scan_leaves(before + 5, before + 10);
    while let Some(page) = pages.next().await {
        part.extend(page.unwrap().iter().map(|l| l.index));
    }
    assert_eq!(part, ((before + 5)..(before + 10)).collect::<Vec<_>>());
    let mut rows = std::collections::BTreeSet::new();
    let mut pages = stores.audit.scan_patient_rows();
    while let Some(page) = pages.next().await {
        for (index, patient) in page.unwrap().iter() {
            assert!(
                rows.insert((index, patient.to_string())),
                "a row read twice"
            );
        }
    }
    assert_eq!(rows.len(), 2 + 9_000 + 900);
    assert!(rows.contains(&(before + 2 + 10, "shared".to_string())));
    assert!(rows.contains(&(before + 2 + 10, "p1".to_string())));
}

/// Two writers on one database (two replicas, or two processes on one SQLite file) append
/// to the same patients' chains in turn. Each keeps the heads its last append left; the
/// other's appends in between must make it read them again, or the chains would fork.
async fn two_writers_keep_the_chains_whole(a: Stores, b: Stores) {
    use futures::StreamExt;
    use medmesh_audit::chain::walk;
    let mut n = 0;
    let mut append = |s: &Stores, patients: &[&str]| {
        n += 1;
        let mut e = entry(&format!("op-{n}"), patients[0]);
        e.patients = patients.iter().map(|p| p.to_string()).collect();
        let records = s.records.clone();
        async move { records.append_audit(&[e]).await.unwrap() }
    };
    append(&a, &["p1"]).await;
    append(&a, &["p1"]).await;
    append(&b, &["p1"]).await;
    append(&a, &["p1", "p2"]).await;
    append(&b, &["p2"]).await;
    append(&b, &["p2"]).await;
    append(&a, &["p2", "p1"]).await;
    append(&a, &["p1"]).await;
    let mut heads = std::collections::HashMap::new();
    let mut pages = a.audit.scan_chain_heads();
    while let Some(page) = pages.next().await {
        heads.extend(page.unwrap());
    }
    for (patient, count) in [("p1", 6), ("p2", 4)] {
        let rows = b
            .audit
            .log_entries_for_patient(patient, None, 100)
            .await
            .unwrap();
        assert_eq!(rows.len(), count, "{patient}");
        let shown: Vec<(u64, &[u8])> = rows.iter().map(|r| (r.index, r.entry.as_slice())).collect();
        walk(patient, Some(&heads[patient]), &shown).unwrap_or_else(|e| panic!("{patient}: {e}"));
    }
}

mod two_writers_keep_the_chains_whole {
    use super::*;

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn sqlite() {
        let (a, dir) = super::sqlite().await;
        let b = medmesh_store_sql::open_with(None, dir.path(), &StoreOptions::default())
            .await
            .unwrap();
        super::two_writers_keep_the_chains_whole(a, b).await;
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn postgres() {
        let url = super::postgres_url().await;
        let options = StoreOptions::default();
        let open = || medmesh_store_sql::open_with(Some(&url), std::path::Path::new("."), &options);
        let a = open().await.unwrap();
        let b = open().await.unwrap();
        super::two_writers_keep_the_chains_whole(a, b).await;
    }
}

/// Each witness's newest cosigned checkpoint: a larger tree replaces it, a smaller one does
/// not (a late answer cannot roll a witness back).
async fn witness_cosignatures(stores: Stores) {
    let put = |witness: &str, size: u64| medmesh_store::StoredCosignature {
        witness: witness.into(),
        size,
        checkpoint: format!("log\n{size}\nroot\n\n\u{2014} {witness} sig\n"),
    };
    assert!(stores.audit.cosignatures().await.unwrap().is_empty());
    stores.audit.put_cosignature(&put("w2", 5)).await.unwrap();
    stores.audit.put_cosignature(&put("w1", 7)).await.unwrap();
    stores.audit.put_cosignature(&put("w1", 9)).await.unwrap();
    stores.audit.put_cosignature(&put("w1", 8)).await.unwrap();
    stores.audit.put_cosignature(&put("w2", 5)).await.unwrap();
    let kept = stores.audit.cosignatures().await.unwrap();
    assert_eq!(kept, vec![put("w1", 9), put("w2", 5)]);
}

/// The patient chains the appender writes, its heads, and the patient map's storage.
async fn patient_chain_and_map(stores: Stores) {
    use futures::StreamExt;
    use medmesh_audit::chain::walk;
    use medmesh_audit::map::{DerivedMap, MapSecret, MapUpdate, proof_nodes};
    use medmesh_audit::merkle::leaf_hash;
    use medmesh_store::StoredCheckpoint;

    // Two batches, so the second links onto the heads the first stored.
    let batch = |from: i64| -> Vec<AuditEntry> {
        (from..from + 300)
            .map(|i| {
                let mut e = entry(&format!("op-{i}"), &format!("p{}", i % 7));
                if i % 5 == 0 {
                    e.patients.push("p0".into()); // listed twice in some entries
                    e.patients.push("shared".into());
                }
                e
            })
            .collect()
    };
    stores.records.append_audit(&batch(0)).await.unwrap();
    stores.records.append_audit(&batch(300)).await.unwrap();
    let size = stores.audit.log_head().await.unwrap().size;
    for patient in ["p0", "p3", "shared"] {
        let rows = stores
            .audit
            .log_entries_for_patient(patient, None, 1_000)
            .await
            .unwrap();
        let shown: Vec<(u64, &[u8])> = rows.iter().map(|r| (r.index, r.entry.as_slice())).collect();
        let mut heads = std::collections::HashMap::new();
        let mut pages = stores.audit.scan_chain_heads();
        while let Some(page) = pages.next().await {
            heads.extend(page.unwrap());
        }
        let head = heads[patient];
        assert_eq!(head.count as usize, rows.len(), "{patient}");
        assert_eq!(head.index, rows[0].index);
        assert_eq!(head.hash, leaf_hash(&rows[0].entry));
        walk(patient, Some(&head), &shown).unwrap_or_else(|e| panic!("{patient}: {e}"));
    }

    // The map: a first update, then one that must find the stored members and nodes.
    let secret = MapSecret::new([3; 32]);
    let mut derived = DerivedMap::default();
    let mut from = stores.audit.map_head().await.unwrap();
    assert_eq!(from.size, 0);
    for (round, patients) in [(1u64, 0..40u64), (2, 20..60)] {
        let changed: std::collections::BTreeMap<_, _> = patients
            .map(|p| {
                let head = medmesh_audit::chain::PatientHead {
                    count: round,
                    index: p,
                    hash: [p as u8; 32],
                };
                (secret.key(&format!("m{p}")), head)
            })
            .collect();
        for (k, v) in &changed {
            derived.set(*k, *v);
        }
        let update = MapUpdate::new(changed);
        let members = stores.audit.map_members(&update.buckets()).await.unwrap();
        let nodes = stores
            .audit
            .map_nodes(&update.nodes_needed())
            .await
            .unwrap();
        let changes = update.apply(members, &nodes);
        assert_eq!(changes.root, derived.root(), "round {round}");
        let to = size - 100 + round;
        let checkpoint = StoredCheckpoint {
            size: to,
            text: format!("test/audit\n{to}\nroot\ntimestamp 1\npatient-map x\n\n"),
            signed_micros: 1,
        };
        // A replica whose view of the map is stale writes nothing.
        assert!(
            !stores
                .audit
                .commit_map(from.size + 1, to, &changes, &checkpoint)
                .await
                .unwrap()
        );
        assert!(
            stores
                .audit
                .commit_map(from.size, to, &changes, &checkpoint)
                .await
                .unwrap()
        );
        from = stores.audit.map_head().await.unwrap();
        assert_eq!((from.size, from.root), (to, changes.root));
        assert_eq!(
            stores
                .audit
                .checkpoint(Some(to))
                .await
                .unwrap()
                .unwrap()
                .text,
            checkpoint.text
        );
    }
    let key = secret.key("m25");
    let members = stores.audit.map_members(&[key.bucket()]).await.unwrap();
    let nodes = stores
        .audit
        .map_nodes(&proof_nodes(key.bucket()))
        .await
        .unwrap();
    let proof = medmesh_audit::map::MapProof::build(key, &members, &nodes);
    assert_eq!(proof.verify(&from.root).unwrap().unwrap().count, 2);
    assert_eq!(proof, derived.proof(key));
    let mut stored = 0;
    let mut pages = stores.audit.scan_map_heads();
    while let Some(page) = pages.next().await {
        for (k, v) in page.unwrap() {
            assert_eq!(derived.get(&k), Some(v));
            stored += 1;
        }
    }
    assert_eq!(stored, 60);
    let mut all = std::collections::HashMap::new();
    let mut pages = stores.audit.scan_map_nodes();
    while let Some(page) = pages.next().await {
        all.extend(page.unwrap());
    }
    assert_eq!(&all, derived.nodes());
}

async fn hl7_store(stores: Stores) {
    use medmesh_store::{Hl7Filter, Hl7MessageRow, Hl7SenderRow};
    let h = &stores.hl7;
    let row = |id: &str, control: &str, kind: &str, at: i64| Hl7MessageRow {
        id: id.into(),
        sender: "lab".into(),
        control_id: control.into(),
        message_type: kind.into(),
        received_micros: at,
        status: "received".into(),
        ack_code: None,
        raw: vec![1, 2, 3],
        detail: None,
        patient_token: Some("tok".into()),
        attempts: 0,
        updated_micros: at,
    };
    assert!(h.hl7_insert(&row("m1", "C1", "ORU^R01", 10)).await.unwrap());
    assert!(h.hl7_insert(&row("m2", "C2", "ADT^A01", 20)).await.unwrap());
    // A resend with the same control id is not stored twice.
    assert!(!h.hl7_insert(&row("m3", "C1", "ORU^R01", 30)).await.unwrap());
    assert_eq!(
        h.hl7_message_by_control("lab", "C1")
            .await
            .unwrap()
            .unwrap()
            .id,
        "m1"
    );
    assert_eq!(
        h.hl7_pending(10)
            .await
            .unwrap()
            .iter()
            .map(|r| r.id.as_str())
            .collect::<Vec<_>>(),
        ["m1", "m2"]
    );
    let mut done = row("m1", "C1", "ORU^R01", 10);
    done.status = "applied".into();
    done.ack_code = Some("AA".into());
    done.detail = Some(vec![9; 40]);
    done.attempts = 1;
    done.updated_micros = 15;
    h.hl7_update(&done).await.unwrap();
    assert_eq!(h.hl7_message("m1").await.unwrap().unwrap(), done);
    assert_eq!(h.hl7_pending(10).await.unwrap().len(), 1);
    let by_type = h
        .hl7_messages(
            &Hl7Filter {
                message_type: Some("ORU".into()),
                ..Default::default()
            },
            10,
        )
        .await
        .unwrap();
    assert_eq!(by_type.len(), 1);
    let applied = h
        .hl7_messages(
            &Hl7Filter {
                status: Some("applied".into()),
                since: Some(5),
                until: Some(11),
                ..Default::default()
            },
            10,
        )
        .await
        .unwrap();
    assert_eq!(applied.len(), 1);
    assert_eq!(
        h.hl7_messages(&Hl7Filter::default(), 1).await.unwrap()[0].id,
        "m2"
    );
    assert_eq!(
        h.hl7_counts().await.unwrap(),
        [
            ("lab".to_string(), "applied".to_string(), 1),
            ("lab".to_string(), "received".to_string(), 1)
        ]
    );
    let since_15 = Hl7Filter {
        since: Some(15),
        ..Default::default()
    };
    assert_eq!(h.hl7_count(&since_15).await.unwrap(), 1);
    // Pruning never drops a message not yet applied.
    assert_eq!(h.hl7_prune(100).await.unwrap(), 1);
    assert!(h.hl7_message("m2").await.unwrap().is_some());

    let sender = Hl7SenderRow {
        name: "lab".into(),
        application: "LAB".into(),
        facility: "*".into(),
        addresses: "127.0.0.1, 10.0.0.0/8".into(),
        secret_hash: None,
        profile: String::new(),
        created_micros: 1,
        ack_destination: None,
    };
    h.hl7_put_sender(&sender).await.unwrap();
    let mut changed = sender.clone();
    changed.facility = "HOSP".into();
    changed.ack_destination = Some("127.0.0.1:2575".into());
    h.hl7_put_sender(&changed).await.unwrap();
    assert_eq!(h.hl7_senders().await.unwrap(), [changed]);
    assert!(h.hl7_remove_sender("lab").await.unwrap());
    assert!(!h.hl7_remove_sender("lab").await.unwrap());
}

async fn hl7_outbox_store(stores: Stores) {
    use medmesh_store::Hl7OutboundRow;
    let o = &stores.hl7_outbox;
    let row = |id: &str, source: &str, at: i64| Hl7OutboundRow {
        id: id.into(),
        channel: "lis".into(),
        source_id: source.into(),
        queued_micros: at,
        status: "pending".into(),
        payload: vec![7; 10],
        attempts: 0,
        next_attempt_micros: at,
        last_error: None,
    };
    assert!(o.hl7_enqueue(&row("q2", "m2", 20)).await.unwrap());
    assert!(o.hl7_enqueue(&row("q1", "m1", 10)).await.unwrap());
    // The same message is queued once per channel.
    assert!(!o.hl7_enqueue(&row("q3", "m1", 30)).await.unwrap());
    let pending = o.hl7_outbound_pending("lis", 10).await.unwrap();
    assert_eq!(
        pending.iter().map(|r| r.id.as_str()).collect::<Vec<_>>(),
        ["q1", "q2"]
    );
    let mut tried = pending[0].clone();
    tried.attempts = 1;
    tried.next_attempt_micros = 99;
    tried.last_error = Some("destination unreachable".into());
    o.hl7_outbound_update(&tried).await.unwrap();
    assert_eq!(o.hl7_outbound_pending("lis", 1).await.unwrap()[0], tried);
    tried.status = "delivered".into();
    o.hl7_outbound_update(&tried).await.unwrap();
    assert_eq!(o.hl7_outbound_pending("lis", 10).await.unwrap().len(), 1);
    assert_eq!(
        o.hl7_outbound_counts().await.unwrap(),
        [
            ("lis".to_string(), "delivered".to_string(), 1),
            ("lis".to_string(), "pending".to_string(), 1)
        ]
    );
}

/// The change feed and a channel's cursor on it: versions of the asked types, in the
/// order they were written, after a row; the cursor survives and moves.
async fn change_feed(stores: Stores) {
    let s = stores.records.clone();
    let mut tx = s.begin().await.unwrap();
    tx.put(version(
        "Appointment",
        "a1",
        1,
        10,
        json!({"resourceType": "Appointment", "id": "a1", "status": "booked"}),
    ))
    .await
    .unwrap();
    tx.put(version(
        "Patient",
        "p1",
        1,
        10,
        json!({"resourceType": "Patient", "id": "p1"}),
    ))
    .await
    .unwrap();
    tx.commit().await.unwrap();
    let mut tx = s.begin().await.unwrap();
    tx.put(version(
        "Appointment",
        "a1",
        2,
        20,
        json!({"resourceType": "Appointment", "id": "a1", "status": "cancelled"}),
    ))
    .await
    .unwrap();
    tx.commit().await.unwrap();
    let types = vec!["Appointment".to_string(), "DiagnosticReport".to_string()];
    let feed = s.versions_after(0, &types, 10).await.unwrap();
    assert_eq!(
        feed.iter()
            .map(|b| (b.version.resource_type.as_str(), b.version.version))
            .collect::<Vec<_>>(),
        [("Appointment", 1), ("Appointment", 2)]
    );
    assert!(feed[0].seq < feed[1].seq && !feed[0].current && feed[1].current);
    let after = s.versions_after(feed[0].seq, &types, 10).await.unwrap();
    assert_eq!(after.len(), 1);
    assert_eq!(after[0].version.version, 2);
    assert!(s.versions_after(0, &[], 10).await.unwrap().is_empty());

    let o = &stores.hl7_outbox;
    assert_eq!(o.hl7_event_cursor("ris").await.unwrap(), 0);
    o.hl7_set_event_cursor("ris", feed[0].seq, 5).await.unwrap();
    o.hl7_set_event_cursor("ris", feed[1].seq, 6).await.unwrap();
    assert_eq!(o.hl7_event_cursor("ris").await.unwrap(), feed[1].seq);
    assert_eq!(o.hl7_event_cursor("other").await.unwrap(), 0);
}

/// The notification hub: settings replace each other; a notification is queued once per
/// channel and key; a claim is one worker's until its lease ends or the attempt is
/// recorded; what failed is listed.
async fn notification_hub_store(stores: Stores) {
    use medmesh_store::{NotificationOutboxRow, NotificationSettingsRow};
    let n = &stores.notifications;
    assert!(n.notification_settings("acc-1").await.unwrap().is_none());
    let mut settings = NotificationSettingsRow {
        account: "acc-1".into(),
        choices: r#"{"results":["email"]}"#.into(),
        email: Some(vec![1, 2, 3]),
        webhook: Some(vec![4, 5]),
        updated_micros: 5,
    };
    n.put_notification_settings(&settings).await.unwrap();
    settings.email = None;
    settings.webhook = None;
    settings.choices = "{}".into();
    n.put_notification_settings(&settings).await.unwrap();
    assert_eq!(
        n.notification_settings("acc-1").await.unwrap(),
        Some(settings)
    );

    let row = |id: &str, key: &str, due: i64| NotificationOutboxRow {
        id: id.into(),
        account: "acc-1".into(),
        category: "results".into(),
        channel: "email".into(),
        dedupe_key: key.into(),
        payload: vec![9; 4],
        status: "pending".into(),
        attempts: 0,
        next_attempt_micros: due,
        last_error: None,
        created_micros: due,
    };
    assert!(n.notification_enqueue(&row("n1", "k1", 10)).await.unwrap());
    assert!(n.notification_enqueue(&row("n2", "k2", 20)).await.unwrap());
    assert!(!n.notification_enqueue(&row("n3", "k1", 30)).await.unwrap());
    // Only what is due, and each to one worker while its lease runs.
    let a = n.notification_claim("a", 15, 1_000, 10).await.unwrap();
    assert_eq!(a.iter().map(|r| r.id.as_str()).collect::<Vec<_>>(), ["n1"]);
    let b = n.notification_claim("b", 25, 1_000, 10).await.unwrap();
    assert_eq!(b.iter().map(|r| r.id.as_str()).collect::<Vec<_>>(), ["n2"]);
    // Worker a died: its lease ends and another takes the notification.
    let c = n.notification_claim("c", 2_000, 1_000, 10).await.unwrap();
    assert_eq!(
        c.iter().map(|r| r.id.as_str()).collect::<Vec<_>>(),
        ["n1", "n2"]
    );
    let mut delivered = c[0].clone();
    delivered.status = "delivered".into();
    delivered.attempts = 1;
    n.notification_attempted(&delivered).await.unwrap();
    let mut failed = c[1].clone();
    failed.status = "failed".into();
    failed.attempts = 8;
    failed.last_error = Some("smtp 550".into());
    n.notification_attempted(&failed).await.unwrap();
    assert!(
        n.notification_claim("d", 10_000, 1_000, 10)
            .await
            .unwrap()
            .is_empty()
    );
    assert_eq!(
        n.notifications_in("failed", 10).await.unwrap(),
        [failed.clone()]
    );
    assert_eq!(n.notification("n2").await.unwrap(), Some(failed));
    assert_eq!(
        n.notification_counts().await.unwrap(),
        [
            ("email".to_string(), "delivered".to_string(), 1),
            ("email".to_string(), "failed".to_string(), 1)
        ]
    );
}

/// Claimed time: an overlapping claim of another holder is refused, a lapsed hold is not in
/// the way, a provisional claim becomes the holder's on confirmation (replacing what it
/// had), a lapsed provisional claim cannot be confirmed, a rolled-back claim leaves nothing.
async fn booking_store(stores: Stores) {
    use medmesh_store::{TimeClaim, provisional};
    let claim = |holder: &str, calendar: &str, start: i64, end: i64, expires: i64| TimeClaim {
        calendar: calendar.into(),
        holder: holder.into(),
        start_micros: start,
        end_micros: end,
        expires_micros: Some(expires),
    };
    // Claims provisionally, then confirms with `confirmed` as the end of the claim.
    let book = |holder: &'static str, claims: Vec<TimeClaim>, now: i64, confirmed: Option<i64>| {
        let stores = &stores;
        async move {
            let mut tx = stores.records.begin().await.unwrap();
            if !tx.claim_time(holder, &claims, now).await.unwrap() {
                tx.rollback().await.unwrap();
                return false;
            }
            tx.commit().await.unwrap();
            let mut tx = stores.records.begin().await.unwrap();
            let ok = tx.confirm_time(holder, confirmed, now).await.unwrap();
            tx.commit().await.unwrap();
            ok
        }
    };
    let b = &stores.bookings;
    let on = |cal: &str| vec![cal.to_string()];
    // a holds 100..200 until 150.
    assert!(
        book(
            "a",
            vec![claim("a", "Practitioner/p", 100, 200, 150)],
            0,
            Some(150)
        )
        .await
    );
    // b overlaps it while held, but not once the hold lapsed.
    assert!(
        !book(
            "b",
            vec![claim("b", "Practitioner/p", 150, 250, 1000)],
            149,
            None
        )
        .await
    );
    assert!(
        book(
            "b",
            vec![claim("b", "Practitioner/p", 150, 250, 1000)],
            150,
            None
        )
        .await
    );
    // Touching is not overlapping; another calendar is not in the way.
    assert!(
        book(
            "c",
            vec![claim("c", "Practitioner/p", 250, 300, 1000)],
            150,
            None
        )
        .await
    );
    assert!(
        book(
            "d",
            vec![claim("d", "Practitioner/q", 150, 250, 1000)],
            150,
            None
        )
        .await
    );
    // A claim on two calendars is all or nothing.
    assert!(
        !book(
            "e",
            vec![
                claim("e", "Practitioner/q2", 0, 10, 1000),
                claim("e", "Practitioner/p", 160, 170, 1000)
            ],
            150,
            None
        )
        .await
    );
    assert!(
        b.claimed_time(&on("Practitioner/q2"), 0, 1000, 150)
            .await
            .unwrap()
            .is_empty()
    );
    // A provisional claim is in others' way before it is confirmed.
    let mut tx = stores.records.begin().await.unwrap();
    assert!(
        tx.claim_time("f", &[claim("f", "Practitioner/r", 0, 50, 500)], 150)
            .await
            .unwrap()
    );
    tx.commit().await.unwrap();
    assert!(
        !book(
            "g",
            vec![claim("g", "Practitioner/r", 40, 60, 1000)],
            150,
            None
        )
        .await
    );
    // ...but not once it lapsed, and then it cannot be confirmed.
    assert!(
        book(
            "g",
            vec![claim("g", "Practitioner/r", 40, 60, 1000)],
            500,
            None
        )
        .await
    );
    let mut tx = stores.records.begin().await.unwrap();
    assert!(!tx.confirm_time("f", None, 500).await.unwrap());
    tx.commit().await.unwrap();
    // A holder moving claims its new time (which may overlap its own old time) and, on
    // confirmation, gives up the old.
    assert!(
        book(
            "b",
            vec![claim("b", "Practitioner/p", 200, 240, 1000)],
            150,
            None
        )
        .await
    );
    let live = b
        .claimed_time(
            &["Practitioner/p".into(), "Practitioner/q".into()],
            0,
            1000,
            150,
        )
        .await
        .unwrap();
    let times: Vec<(String, i64, i64)> = live
        .iter()
        .map(|c| (c.calendar.clone(), c.start_micros, c.end_micros))
        .collect();
    assert_eq!(
        times,
        vec![
            ("Practitioner/p".into(), 200, 240),
            ("Practitioner/p".into(), 250, 300),
            ("Practitioner/q".into(), 150, 250)
        ]
    );
    let mine = b.claims_of("b", 150).await.unwrap();
    assert_eq!(mine.len(), 1);
    assert_eq!(mine[0].expires_micros, None);
    assert!(
        b.claims_of(&provisional("b"), 150)
            .await
            .unwrap()
            .is_empty()
    );
    // Released in a transaction that is rolled back: still there; committed: gone.
    let mut tx = stores.records.begin().await.unwrap();
    assert_eq!(tx.release_time("b").await.unwrap(), 1);
    tx.rollback().await.unwrap();
    assert_eq!(b.claims_of("b", 150).await.unwrap().len(), 1);
    let mut tx = stores.records.begin().await.unwrap();
    tx.release_time("b").await.unwrap();
    tx.commit().await.unwrap();
    assert!(b.claims_of("b", 150).await.unwrap().is_empty());
}

/// Subscriptions: kept and replaced (their count kept), listed per owner and while live,
/// their status set; each event numbered once, in order, whoever numbers it again; deleted
/// with their numbers; the change feed's cursor and head.
async fn subscription_store(stores: Stores) {
    let s = &stores.subscriptions;
    let row = |id: &str, owner: &str, status: &str, at: i64| medmesh_store::SubscriptionRow {
        id: id.into(),
        owner: owner.into(),
        topic: "https://medmesh.dev/fhir/SubscriptionTopic/appointment".into(),
        status: status.into(),
        body: vec![1, 2, 3],
        events: 0,
        last_error: None,
        created_micros: at,
        updated_micros: at,
    };
    s.subscription_put(&row("s1", "u1", "requested", 1))
        .await
        .unwrap();
    s.subscription_put(&row("s2", "u1", "off", 2))
        .await
        .unwrap();
    s.subscription_put(&row("s3", "u2", "active", 3))
        .await
        .unwrap();
    assert_eq!(
        s.subscription("s1").await.unwrap().unwrap().body,
        vec![1, 2, 3]
    );
    assert!(s.subscription("nope").await.unwrap().is_none());
    let of_u1: Vec<String> = s
        .subscriptions_of("u1", 10)
        .await
        .unwrap()
        .into_iter()
        .map(|r| r.id)
        .collect();
    assert_eq!(of_u1, ["s1", "s2"]);
    assert_eq!(s.subscriptions_of("u1", 1).await.unwrap().len(), 1);
    let live: Vec<String> = s
        .subscriptions_live()
        .await
        .unwrap()
        .into_iter()
        .map(|r| r.id)
        .collect();
    assert_eq!(live, ["s1", "s3"]);
    // Numbers: one per event, in order; the same event keeps its number.
    assert_eq!(
        s.subscription_event_number("s1", "Appointment/a/_history/1", 5)
            .await
            .unwrap(),
        Some(1)
    );
    assert_eq!(
        s.subscription_event_number("s1", "Appointment/a/_history/2", 6)
            .await
            .unwrap(),
        Some(2)
    );
    assert_eq!(
        s.subscription_event_number("s1", "Appointment/a/_history/1", 7)
            .await
            .unwrap(),
        Some(1)
    );
    assert_eq!(
        s.subscription_event_number("nope", "x", 7).await.unwrap(),
        None
    );
    assert_eq!(s.subscription("s1").await.unwrap().unwrap().events, 2);
    // Replacing keeps the count; the status and its error are set.
    let mut changed = row("s1", "u1", "requested", 1);
    changed.body = vec![9];
    s.subscription_put(&changed).await.unwrap();
    let kept = s.subscription("s1").await.unwrap().unwrap();
    assert_eq!((kept.events, kept.body), (2, vec![9]));
    assert!(
        s.subscription_set_status("s1", "error", Some("the receiver answered 500"), 8)
            .await
            .unwrap()
    );
    let in_error = s.subscription("s1").await.unwrap().unwrap();
    assert_eq!(in_error.status, "error");
    assert_eq!(
        in_error.last_error.as_deref(),
        Some("the receiver answered 500")
    );
    assert!(
        !s.subscription_set_status("nope", "off", None, 8)
            .await
            .unwrap()
    );
    // Concurrent numbering of one event gives one number.
    let numbers = number_one_event_at_once(s.clone()).await;
    assert!(numbers.iter().all(|n| *n == numbers[0]), "{numbers:?}");
    assert_eq!(s.subscription("s3").await.unwrap().unwrap().events, 1);
    // Deleted with its numbers: a new subscription of the same id starts again.
    assert!(s.subscription_delete("s1").await.unwrap());
    assert!(!s.subscription_delete("s1").await.unwrap());
    s.subscription_put(&row("s1", "u1", "requested", 9))
        .await
        .unwrap();
    assert_eq!(
        s.subscription_event_number("s1", "Appointment/a/_history/1", 10)
            .await
            .unwrap(),
        Some(1)
    );
    // The cursor, and the feed's head.
    assert_eq!(s.subscription_cursor().await.unwrap(), 0);
    s.subscription_set_cursor(42, 11).await.unwrap();
    s.subscription_set_cursor(43, 12).await.unwrap();
    assert_eq!(s.subscription_cursor().await.unwrap(), 43);
    assert_eq!(s.change_feed_head().await.unwrap(), 0);
    let mut tx = stores.records.begin().await.unwrap();
    tx.put(version(
        "Appointment",
        "a1",
        1,
        10,
        json!({"resourceType": "Appointment", "id": "a1"}),
    ))
    .await
    .unwrap();
    tx.commit().await.unwrap();
    assert!(s.change_feed_head().await.unwrap() > 0);
}

/// Eight tasks number one event of `s3` at once.
async fn number_one_event_at_once(
    s: std::sync::Arc<dyn medmesh_store::SubscriptionStore>,
) -> Vec<i64> {
    let mut tasks = Vec::new();
    for i in 0..8 {
        let s = s.clone();
        tasks.push(tokio::spawn(async move {
            s.subscription_event_number("s3", "DiagnosticReport/r/_history/1", 20 + i)
                .await
                .unwrap()
                .unwrap()
        }));
    }
    let mut out = Vec::new();
    for t in tasks {
        out.push(t.await.unwrap());
    }
    out
}

contract!(
    calendar_feeds,
    subscription_store,
    booking_store,
    notification_hub_store,
    change_feed,
    hl7_outbox_store,
    hl7_store,
    witness_cosignatures,
    patient_chain_and_map,
    resource_store,
    union_search,
    reference_lists,
    trust_edge_store,
    notification_store,
    export_job_store,
    key_directory_store,
    key_store,
    identity_store,
    audit_log_store,
);
