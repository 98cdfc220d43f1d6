//! The per-patient chain inside the log. Every entry that concerns a patient names, for each
//! such patient, that patient's previous entry: its leaf index and leaf hash, and the entry's
//! own position in the patient's chain (`seq`, from 1). The link is part of the hashed leaf,
//! so a patient who holds their newest entry can walk back to the first one, and a deleted,
//! hidden or swapped entry breaks the walk.
//!
//! The appender keeps nothing in memory between batches: before a batch, the store reads
//! each patient's head (their newest entry) and [`Chainer`] links the batch onto it.

use std::collections::HashMap;

use serde::{Deserialize, Deserializer, Serialize, Serializer};

use crate::AuditEntry;
use crate::merkle::{Hash, leaf_hash};

/// A patient's newest entry: what the next entry about them links to, and what the map
/// commits to ([`crate::map`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct PatientHead {
    /// How many entries concern the patient (the newest entry's `seq`).
    pub count: u64,
    /// The newest entry's leaf index.
    pub index: u64,
    /// The newest entry's leaf hash.
    #[serde(with = "b64_hash")]
    pub hash: Hash,
}

/// One link of an entry: its place in one patient's chain.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ChainLink {
    /// The patient.
    pub patient: String,
    /// This entry's position in the patient's chain, from 1.
    pub seq: u64,
    /// The patient's previous entry; absent for their first.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub prev: Option<PrevEntry>,
}

/// The previous entry of a patient's chain.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct PrevEntry {
    /// Its leaf index.
    pub index: u64,
    /// Its leaf hash.
    #[serde(with = "b64_hash")]
    pub hash: Hash,
}

impl From<PatientHead> for PrevEntry {
    fn from(h: PatientHead) -> Self {
        Self {
            index: h.index,
            hash: h.hash,
        }
    }
}

/// Links a batch of entries onto the patients' heads, in order.
#[derive(Debug, Default, Clone)]
pub struct Chainer {
    heads: HashMap<String, PatientHead>,
}

impl Chainer {
    /// A chainer that starts from the heads the store read (patients without a head have no
    /// entry yet).
    pub fn new(heads: HashMap<String, PatientHead>) -> Self {
        Self { heads }
    }

    /// The distinct patients a batch concerns, sorted: the heads the store must read.
    pub fn patients_of(entries: &[AuditEntry]) -> Vec<String> {
        let mut out: Vec<String> = entries
            .iter()
            .flat_map(|e| e.patients.iter().cloned())
            .collect();
        out.sort_unstable();
        out.dedup();
        out
    }

    /// Links `entry`, to be appended at leaf `index`: sorts and de-duplicates its patients,
    /// sets one link per patient, and returns its leaf bytes and leaf hash (the tree takes
    /// the hash as it is). The heads move to this entry.
    pub fn link(&mut self, entry: &mut AuditEntry, index: u64) -> (Vec<u8>, Hash) {
        if entry.patients.len() > 1 {
            entry.patients.sort_unstable();
            entry.patients.dedup();
        }
        entry.chain = entry
            .patients
            .iter()
            .map(|p| {
                let prev = self.heads.get(p).copied();
                ChainLink {
                    patient: p.clone(),
                    seq: prev.map_or(1, |h| h.count + 1),
                    prev: prev.map(PrevEntry::from),
                }
            })
            .collect();
        let bytes = entry.to_leaf();
        let hash = leaf_hash(&bytes);
        for link in &entry.chain {
            self.heads.insert(
                link.patient.clone(),
                PatientHead {
                    count: link.seq,
                    index,
                    hash,
                },
            );
        }
        (bytes, hash)
    }

    /// A patient's head after the entries linked so far.
    pub fn head(&self, patient: &str) -> Option<PatientHead> {
        self.heads.get(patient).copied()
    }

    /// The heads after every linked entry.
    pub fn into_heads(self) -> HashMap<String, PatientHead> {
        self.heads
    }
}

/// One link of an entry as the fold reads it ([`ChainLink`], borrowed).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LinkRef<'a> {
    /// The patient.
    pub patient: &'a str,
    /// The entry's position in the patient's chain, from 1.
    pub seq: u64,
    /// The patient's previous entry; absent for their first.
    pub prev: Option<PrevEntry>,
}

impl ChainLink {
    /// The link as the fold reads it.
    pub fn as_ref(&self) -> LinkRef<'_> {
        LinkRef {
            patient: &self.patient,
            seq: self.seq,
            prev: self.prev,
        }
    }
}

/// The chains re-derived over the whole log, entry by entry in leaf order (`audit verify`):
/// each entry's links must name exactly its patients, each in sequence after the patient's
/// previous entry. Entries from before chains existed (no links at all) may only come first.
///
/// Each patient is looked up once per entry: their id maps to a slot that holds the head
/// and what the fold knows of it.
#[derive(Debug, Default)]
pub struct ChainFold {
    slots: foldhash::HashMap<Box<str>, Slot>,
    /// Patients whose head moved since [`Self::drain_moved`] last ran.
    moved: Vec<Box<str>>,
    chained: bool,
}

/// A patient's place in the fold (made at their first entry).
#[derive(Debug)]
struct Slot {
    /// Their newest entry.
    head: PatientHead,
    /// Whether the head is an entry from before the chains.
    legacy: bool,
    /// Whether the patient is listed in `moved`.
    moved: bool,
}

/// How an entry's links differ from the chains before it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LinkProblem {
    /// An entry with patients but no links after chained entries.
    Unlinked,
    /// The links do not name exactly the entry's patients.
    WrongPatients,
    /// A link's sequence number or previous entry is not the patient's head.
    WrongPrevious,
}

impl ChainFold {
    /// The heads so far, each with whether it is a linked entry (not one from before the
    /// chains): the appender keeps a head row for exactly those.
    pub fn heads(&self) -> impl Iterator<Item = (&str, &PatientHead, bool)> {
        self.slots.iter().map(|(p, s)| (&**p, &s.head, !s.legacy))
    }

    /// Hands `f` each patient whose head moved since the last call, with the new head, and
    /// forgets them.
    pub fn drain_moved(&mut self, mut f: impl FnMut(&str, PatientHead)) {
        for patient in self.moved.drain(..) {
            if let Some(slot) = self.slots.get_mut(&patient) {
                slot.moved = false;
                f(&patient, slot.head);
            }
        }
    }

    /// Folds entry `index` (leaf hash `hash`) in; returns what is wrong with its links, and
    /// moves the heads of its patients to it whatever they say, so one bad entry is reported
    /// once.
    pub fn feed(
        &mut self,
        index: u64,
        hash: Hash,
        patients: &[&str],
        chain: &[LinkRef<'_>],
    ) -> Option<LinkProblem> {
        let mut problem = None;
        if chain.is_empty() {
            if self.chained && !patients.is_empty() {
                problem = Some(LinkProblem::Unlinked);
            }
            let mut seen: Vec<&str> = patients.to_vec();
            seen.sort_unstable();
            seen.dedup();
            for p in seen {
                self.move_head(p, true, |prev| {
                    let count = prev.map_or(0, |h| h.count) + 1;
                    (PatientHead { count, index, hash }, ())
                });
            }
            return problem;
        }
        self.chained = true;
        // Most entries name one patient: compared without sorting into new vectors.
        let same = match (patients, chain) {
            ([p], [l]) => *p == l.patient,
            _ => {
                let mut named: Vec<&str> = patients.to_vec();
                named.sort_unstable();
                named.dedup();
                named.iter().copied().eq(chain.iter().map(|l| l.patient))
            }
        };
        if !same {
            problem = Some(LinkProblem::WrongPatients);
        }
        for link in chain {
            let in_sequence = self.move_head(link.patient, false, |prev| {
                let expected_seq = prev.map_or(1, |h| h.count + 1);
                let head = PatientHead {
                    count: link.seq,
                    index,
                    hash,
                };
                (
                    head,
                    link.seq == expected_seq && link.prev == prev.map(PrevEntry::from),
                )
            });
            if !in_sequence {
                problem = problem.or(Some(LinkProblem::WrongPrevious));
            }
        }
        problem
    }

    /// Moves `patient`'s head to the one `f` makes from their previous head (`None` before
    /// their first entry), records whether it is an entry from before the chains (`legacy`),
    /// and lists them as moved. One lookup when the patient has a slot.
    fn move_head<R>(
        &mut self,
        patient: &str,
        legacy: bool,
        f: impl FnOnce(Option<PatientHead>) -> (PatientHead, R),
    ) -> R {
        let (out, listed) = match self.slots.get_mut(patient) {
            Some(slot) => {
                let (head, out) = f(Some(slot.head));
                slot.head = head;
                slot.legacy = legacy;
                (out, std::mem::replace(&mut slot.moved, true))
            }
            None => {
                let (head, out) = f(None);
                self.slots.insert(
                    patient.into(),
                    Slot {
                        head,
                        legacy,
                        moved: true,
                    },
                );
                (out, false)
            }
        };
        if !listed {
            self.moved.push(patient.into());
        }
        out
    }
}

/// What is wrong with a patient's chain as shown.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ChainError {
    /// An entry does not link for the patient.
    #[error("entry {0} has no link for the patient")]
    Unlinked(u64),
    /// An entry is not the one the next entry (or the head) names.
    #[error("entry {0} is not the entry its successor names (removed, swapped or moved)")]
    Broken(u64),
    /// An entry's position in the chain is not one less than its successor's.
    #[error("entry {0} is out of sequence")]
    Sequence(u64),
    /// The chain ends before its first entry.
    #[error("the chain stops at entry {0}: earlier entries are missing")]
    Incomplete(u64),
    /// Entries remain after the first one.
    #[error("entry {0} lies before the patient's first entry")]
    Extra(u64),
}

/// Walks a patient's chain from `head` back to the first entry. `entries` are the shown
/// entries newest first, as `(leaf index, leaf bytes)`. Each must be the entry the one after
/// it names (index and hash), in sequence, and the last must be the patient's first.
///
/// A log that began before the chains holds entries with no links at all. When the walk
/// reaches one (the one the oldest linked entry names), the rest of what is shown must be
/// such entries of the patient, older each, and exactly as many as the linked entry's place
/// says: they are proven by count, not by links.
///
/// # Errors
/// The first [`ChainError`].
pub fn walk(
    patient: &str,
    head: Option<&PatientHead>,
    entries: &[(u64, &[u8])],
) -> Result<(), ChainError> {
    let Some(head) = head else {
        return match entries.first() {
            Some((index, _)) => Err(ChainError::Extra(*index)),
            None => Ok(()),
        };
    };
    let mut want = Some((head.index, head.hash, head.count));
    for (n, (index, bytes)) in entries.iter().enumerate() {
        let Some((want_index, want_hash, want_seq)) = want else {
            return Err(ChainError::Extra(*index));
        };
        if *index != want_index || leaf_hash(bytes) != want_hash {
            return Err(ChainError::Broken(want_index));
        }
        let entry = AuditEntry::from_leaf(bytes).map_err(|_| ChainError::Unlinked(*index))?;
        if entry.chain.is_empty() {
            return walk_unlinked(patient, want_seq, &entries[n..]);
        }
        let link = entry
            .chain
            .iter()
            .find(|l| l.patient == patient)
            .ok_or(ChainError::Unlinked(*index))?;
        if link.seq != want_seq {
            return Err(ChainError::Sequence(*index));
        }
        want = match link.prev {
            Some(prev) if link.seq > 1 => Some((prev.index, prev.hash, link.seq - 1)),
            None if link.seq == 1 => None,
            _ => return Err(ChainError::Sequence(*index)),
        };
    }
    match want {
        Some((index, _, _)) => Err(ChainError::Incomplete(index)),
        None => Ok(()),
    }
}

/// The entries from before the chains, newest first: `count` of them, none linked, each
/// naming the patient, each older than the one before.
fn walk_unlinked(patient: &str, count: u64, entries: &[(u64, &[u8])]) -> Result<(), ChainError> {
    let mut last: Option<u64> = None;
    for (index, bytes) in entries {
        let entry = AuditEntry::from_leaf(bytes).map_err(|_| ChainError::Unlinked(*index))?;
        if !entry.chain.is_empty()
            || !entry.patients.iter().any(|p| p == patient)
            || last.is_some_and(|l| l <= *index)
        {
            return Err(ChainError::Extra(*index));
        }
        last = Some(*index);
    }
    match (entries.len() as u64).cmp(&count) {
        std::cmp::Ordering::Equal => Ok(()),
        std::cmp::Ordering::Less => Err(ChainError::Incomplete(last.unwrap_or_default())),
        std::cmp::Ordering::Greater => Err(ChainError::Extra(last.unwrap_or_default())),
    }
}

/// A hash as base64 in JSON, as every other hash the API shows.
pub mod b64_hash {
    use super::{Deserialize, Deserializer, Hash, Serializer};
    use base64::Engine;
    use base64::engine::general_purpose::STANDARD as B64;

    /// Writes a hash.
    ///
    /// # Errors
    /// The serializer's.
    pub fn serialize<S: Serializer>(hash: &Hash, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&B64.encode(hash))
    }

    /// Reads a hash.
    ///
    /// # Errors
    /// Not base64 of 32 bytes.
    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Hash, D::Error> {
        let text = std::borrow::Cow::<str>::deserialize(d)?;
        decode(&text).ok_or_else(|| serde::de::Error::custom("not a base64 SHA-256 hash"))
    }

    /// A hash from its base64 text; `None` unless it is base64 of 32 bytes.
    pub fn decode(text: &str) -> Option<Hash> {
        B64.decode(text.as_bytes())
            .ok()
            .and_then(|v| Hash::try_from(v).ok())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{Outcome, StoredBeside};

    fn entry(patients: &[&str]) -> AuditEntry {
        let mut e = AuditEntry::new(1, "op", "u", "read", Outcome::Success);
        e.patients = patients.iter().map(|p| p.to_string()).collect();
        e
    }

    fn link(patient: &str, seq: u64, prev: Option<(u64, Hash)>) -> ChainLink {
        ChainLink {
            patient: patient.into(),
            seq,
            prev: prev.map(|(index, hash)| PrevEntry { index, hash }),
        }
    }

    fn feed(
        fold: &mut ChainFold,
        index: u64,
        patients: &[&str],
        chain: &[ChainLink],
    ) -> Option<LinkProblem> {
        let chain: Vec<LinkRef<'_>> = chain.iter().map(ChainLink::as_ref).collect();
        fold.feed(index, [index as u8; 32], patients, &chain)
    }

    /// What the fold finds wrong in an entry's links: one patient or several (in any order,
    /// named twice), a link to another patient, a wrong previous entry, and no links at all.
    #[test]
    fn the_fold_names_what_is_wrong_with_links() {
        let mut fold = ChainFold::default();
        assert_eq!(feed(&mut fold, 0, &["a"], &[link("a", 1, None)]), None);
        assert_eq!(
            feed(
                &mut fold,
                1,
                &["b", "a", "b"],
                &[link("a", 2, Some((0, [0; 32]))), link("b", 1, None)]
            ),
            None
        );
        assert_eq!(
            feed(&mut fold, 2, &["a"], &[link("c", 1, None)]),
            Some(LinkProblem::WrongPatients)
        );
        assert_eq!(
            feed(
                &mut fold,
                3,
                &["a", "b"],
                &[link("a", 3, Some((1, [1; 32])))]
            ),
            Some(LinkProblem::WrongPatients)
        );
        // Entry 3 had no link for b: b's head is still entry 1.
        assert_eq!(
            feed(&mut fold, 4, &["b"], &[link("b", 2, Some((1, [1; 32])))]),
            None
        );
        assert_eq!(
            feed(&mut fold, 5, &["b"], &[link("b", 5, Some((4, [4; 32])))]),
            Some(LinkProblem::WrongPrevious)
        );
        assert_eq!(feed(&mut fold, 6, &["a"], &[]), Some(LinkProblem::Unlinked));
        let heads: std::collections::BTreeMap<&str, u64> =
            fold.heads().map(|(p, h, _)| (p, h.index)).collect();
        assert_eq!(heads, [("a", 6), ("b", 5), ("c", 2)].into_iter().collect());
    }

    /// Leaves as `(index, bytes)`.
    type Leaves = Vec<(u64, Vec<u8>)>;

    /// A log of leaves and the heads after it.
    fn log(batch: Vec<AuditEntry>) -> (Leaves, HashMap<String, PatientHead>) {
        let mut chainer = Chainer::default();
        let leaves = batch
            .into_iter()
            .enumerate()
            .map(|(i, mut e)| (i as u64, chainer.link(&mut e, i as u64).0))
            .collect();
        (leaves, chainer.into_heads())
    }

    fn shown<'a>(leaves: &'a [(u64, Vec<u8>)], patient: &str) -> Vec<(u64, &'a [u8])> {
        leaves
            .iter()
            .rev()
            .filter(|(_, b)| {
                AuditEntry::from_leaf(b)
                    .unwrap()
                    .patients
                    .contains(&patient.to_string())
            })
            .map(|(i, b)| (*i, b.as_slice()))
            .collect()
    }

    #[test]
    fn a_patients_chain_walks_back_to_their_first_entry() {
        let (leaves, heads) = log(vec![
            entry(&["a"]),
            entry(&["b", "a", "b"]),
            entry(&[]),
            entry(&["b"]),
            entry(&["a"]),
        ]);
        let second = AuditEntry::from_leaf(&leaves[1].1).unwrap();
        assert_eq!(second.patients, ["a", "b"], "sorted, no duplicates");
        assert_eq!(second.chain[0].seq, 2);
        assert_eq!(second.chain[1].prev, None);
        assert_eq!(heads["a"].count, 3);
        assert_eq!(heads["a"].index, 4);
        assert_eq!(walk("a", heads.get("a"), &shown(&leaves, "a")), Ok(()));
        assert_eq!(walk("b", heads.get("b"), &shown(&leaves, "b")), Ok(()));
        assert_eq!(walk("c", None, &[]), Ok(()));
    }

    #[test]
    fn the_fold_accepts_the_chainers_links_and_names_bad_ones() {
        let (leaves, _) = log(vec![entry(&["a"]), entry(&["a", "b"]), entry(&["b"])]);
        let mut fold = ChainFold::default();
        let mut moves = 0;
        for (i, bytes) in &leaves {
            let e = StoredBeside::from_leaf(bytes).unwrap();
            let problem = e.fold_into(&mut fold, *i, leaf_hash(bytes));
            assert_eq!(problem, None);
            fold.drain_moved(|_, _| moves += 1);
        }
        assert_eq!(moves, 4);
        // A link that skips a place, a patient without a link, an entry without links.
        let mut skip = entry(&["a"]);
        skip.chain = vec![ChainLink {
            patient: "a".into(),
            seq: 5,
            prev: None,
        }];
        let mut missing = entry(&["a", "c"]);
        missing.chain = vec![ChainLink {
            patient: "a".into(),
            seq: 3,
            prev: None,
        }];
        for (e, want) in [
            (skip, LinkProblem::WrongPrevious),
            (missing, LinkProblem::WrongPatients),
            (entry(&["a"]), LinkProblem::Unlinked),
        ] {
            let bytes = e.to_leaf();
            let e = StoredBeside::from_leaf(&bytes).unwrap();
            assert_eq!(e.fold_into(&mut fold, 9, leaf_hash(&bytes)), Some(want));
        }
    }

    #[test]
    fn entries_from_before_the_chains_are_proven_by_count() {
        // Two unlinked entries of a, then the appender links onto the newest of them.
        let old: Vec<(u64, Vec<u8>)> = (0..2).map(|i| (i, entry(&["a"]).to_leaf())).collect();
        let mut chainer = Chainer::new(HashMap::from([(
            "a".to_string(),
            PatientHead {
                count: 2,
                index: 1,
                hash: leaf_hash(&old[1].1),
            },
        )]));
        let new = (2, chainer.link(&mut entry(&["a"]), 2).0);
        let head = chainer.head("a").unwrap();
        assert_eq!(head.count, 3);
        let all = vec![
            (new.0, new.1.as_slice()),
            (1, old[1].1.as_slice()),
            (0, old[0].1.as_slice()),
        ];
        assert_eq!(walk("a", Some(&head), &all), Ok(()));
        // One old entry hidden: the count says so.
        assert_eq!(
            walk("a", Some(&head), &all[..2]),
            Err(ChainError::Incomplete(1))
        );
        // Another patient's old entry slipped in.
        let b = entry(&["b"]).to_leaf();
        let slipped = vec![all[0], all[1], (0, b.as_slice())];
        assert_eq!(walk("a", Some(&head), &slipped), Err(ChainError::Extra(0)));
    }

    proptest::proptest! {
        /// Over random logs: every patient's chain walks whole, the fold finds no fault, and
        /// taking any one entry out of a patient's view breaks the walk.
        #[test]
        fn random_logs_walk_whole_and_any_hidden_entry_breaks_them(
            log_patients in proptest::collection::vec(
                proptest::collection::vec(0u8..5, 0..3), 1..40),
            hide in proptest::prelude::any::<proptest::sample::Index>(),
        ) {
            let names: Vec<Vec<String>> = log_patients
                .iter()
                .map(|ps| ps.iter().map(|p| format!("p{p}")).collect())
                .collect();
            let (leaves, heads) = log(names.iter().map(|ps| {
                let refs: Vec<&str> = ps.iter().map(String::as_str).collect();
                entry(&refs)
            }).collect());
            let mut fold = ChainFold::default();
            for (i, bytes) in &leaves {
                let e = StoredBeside::from_leaf(bytes).unwrap();
                proptest::prop_assert_eq!(
                    e.fold_into(&mut fold, *i, leaf_hash(bytes)),
                    None
                );
            }
            for p in 0..5 {
                let patient = format!("p{p}");
                let all = shown(&leaves, &patient);
                proptest::prop_assert_eq!(walk(&patient, heads.get(&patient), &all), Ok(()));
                if !all.is_empty() {
                    let mut fewer = all.clone();
                    fewer.remove(hide.index(all.len()));
                    proptest::prop_assert!(walk(&patient, heads.get(&patient), &fewer).is_err());
                }
            }
        }
    }

    #[test]
    fn a_hidden_withheld_or_swapped_entry_breaks_the_walk() {
        let (leaves, heads) = log(vec![
            entry(&["a"]),
            entry(&["a"]),
            entry(&["a"]),
            entry(&["b"]),
        ]);
        let all = shown(&leaves, "a");
        let head = heads.get("a");
        // The middle entry removed.
        let middle: Vec<_> = [all[0], all[2]].to_vec();
        assert_eq!(walk("a", head, &middle), Err(ChainError::Broken(1)));
        // The newest withheld, against the true head.
        assert_eq!(walk("a", head, &all[1..]), Err(ChainError::Broken(2)));
        // The first one cut off.
        assert_eq!(walk("a", head, &all[..2]), Err(ChainError::Incomplete(0)));
        // Another patient's entry in its place.
        let moved = vec![all[0], all[1], (0, leaves[3].1.as_slice())];
        assert_eq!(walk("a", head, &moved), Err(ChainError::Broken(0)));
        // Nothing is shown but the head says three.
        assert_eq!(walk("a", head, &[]), Err(ChainError::Incomplete(2)));
        // An entry shown to a patient without a head.
        assert_eq!(walk("c", None, &all), Err(ChainError::Extra(2)));
    }
}
