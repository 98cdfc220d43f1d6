//! Test vectors: logs built in memory exactly as the node builds them (the same chainer,
//! tree, map and checkpoint signer), served as the API serves them, intact and tampered in
//! each way an operator could try. This verifier's verdict on each is written to
//! `vectors/patient-log.json`; the browser's verifier (`audit-verify.js`) must reach the same
//! verdict on every case (`tests/browser/audit.test.mjs`). The file is checked in: this test
//! fails if what it generates differs, so neither verifier can change its mind unnoticed.
//! `MEDMESH_WRITE_VECTORS=1` rewrites it.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // tests fail loudly by design

use std::collections::HashMap;

use base64::Engine;
use base64::engine::general_purpose::STANDARD as B64;
use medmesh_audit::chain::{Chainer, PatientHead};
use medmesh_audit::checkpoint::{Cosigner, LogSigner, TreeHead};
use medmesh_audit::map::{DerivedMap, MapSecret};
use medmesh_audit::merkle::{self, Frontier, Hash, MerkleError, NodeId, nodes_completed_by};
use medmesh_audit::{AuditEntry, Outcome};
use medmesh_patient_log_verifier::{
    Cosigned, MapProofJson, Page, PageEntry, Problem, Remembered, Verified, WitnessPolicy,
    Witnesses, verify,
};
use serde_json::{Value, json};

const ORIGIN: &str = "vectors.example/audit";

/// A log as a node keeps it.
#[derive(Clone)]
struct MemLog {
    signer: LogSigner,
    secret: MapSecret,
    frontier: Frontier,
    nodes: HashMap<NodeId, Hash>,
    chainer: Chainer,
    map: DerivedMap,
    leaves: Vec<Vec<u8>>,
    /// The `audit_patient` rows: (patient, leaf index).
    rows: Vec<(String, u64)>,
    time: i64,
}

impl MemLog {
    fn new(signing: u8) -> Self {
        Self {
            signer: LogSigner::new(ORIGIN, [signing; 32]),
            secret: MapSecret::derive(&[signing; 32]),
            frontier: Frontier::new(),
            nodes: HashMap::new(),
            chainer: Chainer::default(),
            map: DerivedMap::default(),
            leaves: Vec::new(),
            rows: Vec::new(),
            time: 1_764_000_000_000_000,
        }
    }

    fn fork(&self) -> Self {
        self.clone()
    }

    fn append(&mut self, actor: &str, action: &str, patients: &[&str]) -> u64 {
        self.time += 1_000_000;
        let mut e = AuditEntry::new(self.time, "op-vector", actor, action, Outcome::Success);
        e.resource_type = Some("Observation".into());
        e.resource_ids = vec!["Observation/o1".into()];
        e.patients = patients.iter().map(|p| p.to_string()).collect();
        let index = self.frontier.size();
        let (bytes, hash) = self.chainer.link(&mut e, index);
        self.add_leaf(bytes, hash);
        for p in &e.patients {
            let head = self.chainer.head(p).unwrap();
            self.map.set(self.secret.key(p), head);
            self.rows.push((p.clone(), index));
        }
        index
    }

    /// Puts a leaf into the tree and keeps its bytes and the nodes it completed.
    fn add_leaf(&mut self, bytes: Vec<u8>, hash: Hash) {
        let index = self.frontier.size();
        let hashes = self.frontier.push(hash);
        for (id, h) in nodes_completed_by(index).into_iter().zip(hashes) {
            self.nodes.insert(id, h);
        }
        self.leaves.push(bytes);
    }

    /// An entry as a node wrote it before the chains: no links. The appender's fallback
    /// counts it into the patients' heads.
    fn append_unlinked(&mut self, actor: &str, patients: &[&str]) -> u64 {
        self.time += 1_000_000;
        let mut e = AuditEntry::new(self.time, "op-vector", actor, "read", Outcome::Success);
        e.patients = patients.iter().map(|p| p.to_string()).collect();
        let bytes = e.to_leaf();
        let index = self.frontier.size();
        let hash = merkle::leaf_hash(&bytes);
        let mut heads = self.chainer.clone().into_heads();
        for p in &e.patients {
            let count = heads.get(p).map_or(0, |h| h.count) + 1;
            let head = PatientHead { count, index, hash };
            heads.insert(p.clone(), head);
            self.map.set(self.secret.key(p), head);
            self.rows.push((p.clone(), index));
        }
        self.chainer = Chainer::new(heads);
        self.add_leaf(bytes, hash);
        index
    }

    fn leaf(&self, index: u64) -> Vec<u8> {
        self.leaves[index as usize].clone()
    }

    fn head(&mut self) -> TreeHead {
        TreeHead {
            origin: ORIGIN.into(),
            size: self.frontier.size(),
            root: self.frontier.root().unwrap(),
            timestamp_micros: self.time,
            patient_map: Some(self.map.root()),
        }
    }

    fn checkpoint(&mut self) -> String {
        let head = self.head();
        self.signer.sign(&head)
    }

    /// The checkpoint as it is now, cosigned by `witnesses`.
    fn cosigned(&mut self, witnesses: &[&Cosigner]) -> String {
        let head = self.head();
        let mut note = self.signer.sign(&head);
        for w in witnesses {
            note.push_str(&w.cosign(&head, 1_800_000_000));
        }
        note
    }

    /// A proof from the stored nodes, base64.
    fn proof_from_nodes(
        &self,
        make: impl FnOnce(
            &mut dyn FnMut(NodeId) -> Result<Hash, MerkleError>,
        ) -> Result<Vec<Hash>, MerkleError>,
    ) -> Vec<String> {
        let mut lookup = |id: NodeId| {
            self.nodes
                .get(&id)
                .copied()
                .ok_or(MerkleError::MissingNode(id.0, id.1))
        };
        make(&mut lookup)
            .unwrap()
            .iter()
            .map(|h| B64.encode(h))
            .collect()
    }

    fn proof(&self, index: u64, size: u64) -> Vec<String> {
        self.proof_from_nodes(|n| merkle::inclusion_proof(index, size, n))
    }

    fn consistency(&self, from: u64, to: u64) -> Vec<String> {
        self.proof_from_nodes(|n| merkle::consistency_proof(from, to, n))
    }

    /// The pages a patient is served: `rows` as the store holds them, `per_page` entries each.
    fn pages(&mut self, patient: &str, per_page: usize) -> Vec<Page> {
        let checkpoint = self.checkpoint();
        let size = self.frontier.size();
        let mut indices: Vec<u64> = self
            .rows
            .iter()
            .filter(|(p, _)| p == patient)
            .map(|(_, i)| *i)
            .collect();
        indices.sort_unstable_by(|a, b| b.cmp(a));
        let proof = self.map.proof(self.secret.key(patient));
        let map = MapProofJson {
            key: B64.encode(proof.key.0),
            head: proof.head,
            others: proof
                .others
                .iter()
                .map(|(k, v)| [B64.encode(k.0), B64.encode(v)])
                .collect(),
            siblings: proof.siblings.iter().map(|h| B64.encode(h)).collect(),
        };
        let chunks: Vec<&[u64]> = if indices.is_empty() {
            vec![&[]]
        } else {
            indices.chunks(per_page).collect()
        };
        let count = chunks.len();
        chunks
            .into_iter()
            .enumerate()
            .map(|(n, chunk)| Page {
                checkpoint: checkpoint.clone(),
                map: (n == 0).then(|| map.clone()),
                entries: chunk
                    .iter()
                    .map(|i| PageEntry {
                        index: *i,
                        leaf: B64.encode(self.leaf(*i)),
                        proof: self.proof(*i, size),
                    })
                    .collect(),
                next_before: (n + 1 < count).then(|| *chunk.last().unwrap()),
                witnesses: None,
            })
            .collect()
    }
}

/// A log where patient `a` has five entries among others', `b` two, `c` none.
fn base() -> MemLog {
    let mut log = MemLog::new(1);
    log.append("dr-x", "read", &["a"]);
    log.append("dr-y", "read", &["b"]);
    log.append("dr-x", "search", &["a", "b"]);
    log.append("system", "export", &[]);
    log.append("dr-z", "update", &["a"]);
    log.append("dr-x", "read", &["a"]);
    log.append("dr-y", "read", &["a"]);
    log
}

struct Case {
    name: &'static str,
    patient: &'static str,
    key: String,
    pages: Vec<Page>,
    remembered: Option<Remembered>,
    consistency: Option<Vec<String>>,
}

fn case(name: &'static str, patient: &'static str, log: &mut MemLog) -> Case {
    Case {
        name,
        patient,
        key: log.signer.verifier().to_note_key(),
        pages: log.pages(patient, 50),
        remembered: None,
        consistency: None,
    }
}

fn cases() -> Vec<Case> {
    let mut out = Vec::new();
    let mut log = base();
    out.push(case("intact", "a", &mut log));
    out.push(case("intact, the other patient", "b", &mut log));
    out.push(case("a patient with no entry", "c", &mut log));
    let mut paged = case("intact, two entries a page", "a", &mut log);
    paged.pages = log.pages("a", 2);
    out.push(paged);

    // Tampering with the rows a patient's log is found through.
    let rows_without = |log: &MemLog, patient: &str, index: u64| {
        let mut l = log.fork();
        l.rows.retain(|(p, i)| !(p == patient && *i == index));
        l
    };
    out.push(case(
        "an audit_patient row deleted (the first entry)",
        "a",
        &mut rows_without(&log, "a", 0),
    ));
    out.push(case(
        "the newest entry withheld",
        "a",
        &mut rows_without(&log, "a", 6),
    ));
    out.push(case(
        "a middle entry removed from the view",
        "a",
        &mut rows_without(&log, "a", 4),
    ));
    let mut moved = log.fork();
    for row in &mut moved.rows {
        if row.0 == "a" && row.1 == 5 {
            row.0 = "b".into();
        }
    }
    out.push(case("an entry moved to another patient", "a", &mut moved));
    out.push(case(
        "an entry moved to another patient, seen by that patient",
        "b",
        &mut moved,
    ));

    // Tampering with the proofs.
    let mut stale = case("a stale head in the map proof", "a", &mut log);
    if let Some(map) = stale.pages[0].map.as_mut() {
        map.head.as_mut().unwrap().count -= 1;
    }
    out.push(stale);
    let mut forged = case("a checkpoint signed by another key", "a", &mut log);
    forged.key = LogSigner::new(ORIGIN, [9; 32]).verifier().to_note_key();
    out.push(forged);
    let mut mixed = case("pages against different checkpoints", "a", &mut log);
    let mut second = log.pages("a", 2);
    log.append("dr-x", "read", &["b"]);
    second[1].checkpoint = log.checkpoint();
    mixed.pages = second;
    out.push(mixed);

    // A log that began before the chains: its first entries have no links.
    let mut legacy = MemLog::new(1);
    legacy.append_unlinked("dr-old", &["a"]);
    legacy.append_unlinked("dr-old", &["b"]);
    legacy.append_unlinked("dr-old", &["a", "b"]);
    legacy.append("dr-x", "read", &["a"]);
    legacy.append("dr-y", "read", &["a"]);
    out.push(case("a log that began before the chains", "a", &mut legacy));
    out.push(case(
        "an entry from before the chains hidden",
        "a",
        &mut rows_without(&legacy, "a", 0),
    ));

    // Second visits: the browser remembers the first.
    let mut log = base();
    let first = verified(&mut log, "a");
    log.append("dr-q", "read", &["a"]);
    log.append("dr-q", "read", &["b"]);
    let mut again = case("a second visit after the log grew", "a", &mut log);
    again.consistency = Some(log.consistency(7, 9));
    again.remembered = Some(first.remember.clone());
    out.push(again);
    let mut same = case("a second visit, nothing new", "a", &mut base());
    same.remembered = Some(first.remember.clone());
    out.push(same);

    // The whole tail rewritten and re-signed with the node's own key: the access at 6 is
    // gone, and more entries make the log longer than the one remembered.
    let mut rewritten = MemLog::new(1);
    rewritten.append("dr-x", "read", &["a"]);
    rewritten.append("dr-y", "read", &["b"]);
    rewritten.append("dr-x", "search", &["a", "b"]);
    rewritten.append("system", "export", &[]);
    rewritten.append("dr-z", "update", &["a"]);
    rewritten.append("dr-x", "read", &["a"]);
    rewritten.append("system", "export", &[]);
    rewritten.append("dr-q", "read", &["a"]);
    rewritten.append("dr-q", "read", &["b"]);
    let mut tail = case(
        "the tail rewritten and re-signed with the node's key",
        "a",
        &mut rewritten,
    );
    tail.consistency = Some(rewritten.consistency(7, 9));
    tail.remembered = Some(first.remember.clone());
    out.push(tail);
    let mut cut = case(
        "the log rolled back below the remembered checkpoint",
        "a",
        &mut rewritten.fork(),
    );
    let mut later = base();
    later.append("dr-q", "read", &["a"]);
    later.append("dr-q", "read", &["a"]);
    later.append("dr-q", "read", &["a"]);
    let mut from_later = verified(&mut later, "a").remember;
    from_later.head = first.remember.head;
    cut.remembered = Some(from_later);
    out.push(cut);
    out.extend(witness_cases());
    out
}

/// Two witnesses: `w1` and `w2` cosign the log at five entries, `w3` is no one's.
fn witness_cases() -> Vec<Case> {
    let w1 = Cosigner::new("witness.example/w1", [11; 32]);
    let w2 = Cosigner::new("witness.example/w2", [12; 32]);
    let w3 = Cosigner::new("witness.example/w3", [13; 32]);
    let policy = |keys: &[&Cosigner], quorum| WitnessPolicy {
        keys: keys.iter().map(|c| c.verifier_key()).collect(),
        quorum,
    };
    let mut at5 = MemLog::new(1);
    for _ in 0..5 {
        at5.append("dr-x", "read", &["a"]);
    }
    let by_both = at5.cosigned(&[&w1, &w2]);
    let mut log = at5.fork();
    log.append("dr-y", "read", &["a"]);
    log.append("dr-y", "read", &["b"]);
    let served = |log: &mut MemLog, policy: WitnessPolicy, checkpoint: &str, proof| {
        let mut pages = log.pages("a", 50);
        pages[0].witnesses = Some(Witnesses {
            policy,
            cosigned: vec![Cosigned {
                checkpoint: checkpoint.to_string(),
                proof,
            }],
        });
        pages
    };
    let mut out = Vec::new();
    let proof = log.consistency(5, 7);

    let mut quorum = case("witnessed by a quorum", "a", &mut log);
    quorum.pages = served(&mut log, policy(&[&w1, &w2], 2), &by_both, proof.clone());
    out.push(quorum);

    let mut short = case("fewer witnesses than the quorum", "a", &mut log);
    short.pages = served(
        &mut log,
        policy(&[&w1, &w2], 2),
        &at5.cosigned(&[&w1]),
        proof.clone(),
    );
    out.push(short);

    let mut stranger = case("cosigned only by an unknown witness", "a", &mut log);
    stranger.pages = served(
        &mut log,
        policy(&[&w1], 1),
        &at5.cosigned(&[&w3]),
        proof.clone(),
    );
    out.push(stranger);

    // The witnesses saw a log whose fifth entry was another: the node shows the patient
    // one history and the witnesses another.
    let mut other = MemLog::new(1);
    for _ in 0..4 {
        other.append("dr-x", "read", &["a"]);
    }
    other.append("dr-x", "read", &["b"]);
    let mut split = case("a witness saw another history (split view)", "a", &mut log);
    split.pages = served(
        &mut log,
        policy(&[&w1], 1),
        &other.cosigned(&[&w1]),
        proof.clone(),
    );
    out.push(split);

    // Second visit: the node stopped serving cosignatures and listing the witnesses; the
    // policy pinned on the first visit still asks for them.
    let first = {
        let key = log.signer.verifier();
        let pages = served(&mut log, policy(&[&w1], 1), &by_both, proof.clone());
        verify(&key, "a", &pages, None, None).unwrap()
    };
    let mut dropped = case("the witnesses dropped after the first visit", "a", &mut log);
    dropped.remembered = Some(first.remember.clone());
    out.push(dropped);
    out
}

fn verified(log: &mut MemLog, patient: &str) -> Verified {
    let key = log.signer.verifier();
    verify(&key, patient, &log.pages(patient, 50), None, None).unwrap()
}

fn run(c: &Case) -> Result<Verified, Problem> {
    let key = medmesh_audit::checkpoint::LogVerifierKey::from_note_key(&c.key).unwrap();
    verify(
        &key,
        c.patient,
        &c.pages,
        c.remembered.as_ref(),
        c.consistency.as_deref(),
    )
}

fn expected(result: &Result<Verified, Problem>) -> Value {
    match result {
        Ok(v) => json!({"ok": true, "entries": v.entries.len(),
                        "count": v.head.map(|h| h.count), "treeSize": v.tree.size,
                        "witnessed": v.witnessed.len()}),
        Err(p) => json!({"ok": false, "code": p.code(), "message": p.to_string()}),
    }
}

#[test]
fn tampered_logs_fail_and_intact_ones_pass() {
    let verdicts: HashMap<&str, Result<Verified, Problem>> =
        cases().iter().map(|c| (c.name, run(c))).collect();
    let code = |name: &str| verdicts[name].as_ref().err().map(Problem::code);
    for name in [
        "intact",
        "intact, the other patient",
        "a patient with no entry",
        "intact, two entries a page",
        "a second visit after the log grew",
        "a second visit, nothing new",
        "a log that began before the chains",
        "witnessed by a quorum",
    ] {
        assert!(verdicts[name].is_ok(), "{name}: {:?}", verdicts[name]);
    }
    assert_eq!(verdicts["intact"].as_ref().unwrap().entries.len(), 5);
    assert_eq!(
        verdicts["intact, two entries a page"]
            .as_ref()
            .unwrap()
            .entries
            .len(),
        5
    );
    for (name, want) in [
        ("an audit_patient row deleted (the first entry)", "chain"),
        ("the newest entry withheld", "chain"),
        ("a middle entry removed from the view", "chain"),
        ("an entry moved to another patient", "chain"),
        (
            "an entry moved to another patient, seen by that patient",
            "chain",
        ),
        ("an entry from before the chains hidden", "chain"),
        ("a stale head in the map proof", "map"),
        ("a checkpoint signed by another key", "checkpoint"),
        ("pages against different checkpoints", "page-checkpoint"),
        (
            "the tail rewritten and re-signed with the node's key",
            "consistency",
        ),
        (
            "the log rolled back below the remembered checkpoint",
            "rollback",
        ),
        ("fewer witnesses than the quorum", "witness-quorum"),
        ("cosigned only by an unknown witness", "witness-quorum"),
        ("a witness saw another history (split view)", "witness-fork"),
        (
            "the witnesses dropped after the first visit",
            "witness-quorum",
        ),
    ] {
        assert_eq!(code(name), Some(want), "{name}: {:?}", verdicts[name]);
    }
}

#[test]
fn the_vectors_file_holds_these_cases_and_verdicts() {
    let cases: Vec<Value> = cases()
        .iter()
        .map(|c| {
            json!({
                "name": c.name,
                "patient": c.patient,
                "logKey": c.key,
                "pages": c.pages,
                "remembered": c.remembered,
                "consistency": c.consistency,
                "expect": expected(&run(c)),
            })
        })
        .collect();
    let text = serde_json::to_string_pretty(&json!({
        "about": "Generated by crates/medmesh-patient-log-verifier/tests/vectors.rs; checked by the Rust and the browser verifiers",
        "cases": cases,
    }))
    .unwrap()
        + "\n";
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/vectors/patient-log.json");
    if std::env::var_os("MEDMESH_WRITE_VECTORS").is_some() {
        std::fs::create_dir_all(concat!(env!("CARGO_MANIFEST_DIR"), "/vectors")).unwrap();
        std::fs::write(path, &text).unwrap();
    }
    let stored = std::fs::read_to_string(path)
        .expect("vectors/patient-log.json: run with MEDMESH_WRITE_VECTORS=1 to write it");
    assert!(
        stored == text,
        "vectors/patient-log.json is out of date: run with MEDMESH_WRITE_VECTORS=1 and review the diff"
    );
}
