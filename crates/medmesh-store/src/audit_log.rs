//! The audit log port: the Merkle-tree rows, the writer's head, signed checkpoints and the
//! log-signing key. Appends go through [`crate::RecordStore::append_audit`] and
//! [`crate::RecordTx::append_audit`], so an entry commits with what it describes; this trait
//! is the read side (proofs, the patient's log, `audit verify`) plus checkpoint keeping.

use std::collections::{BTreeMap, HashMap};

use async_trait::async_trait;
use medmesh_audit::chain::PatientHead;
use medmesh_audit::map::{MapChanges, MapKey, MapNodeId};
use medmesh_audit::merkle::{Hash, NodeId};

use crate::StoreError;

/// One stored leaf.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LoggedEntry {
    /// Leaf index, from 0.
    pub index: u64,
    /// The entry's canonical bytes (the hashed leaf).
    pub entry: Vec<u8>,
    /// The node hashes appending it completed, leaf hash first.
    pub nodes: Vec<u8>,
}

/// The columns and rows stored beside one leaf that a reader trusts without hashing: a
/// patient's log is found through `patients`, lists show `actor` and `time_micros`.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct DerivedRow {
    /// Leaf index.
    pub index: u64,
    /// The `time_micros` column (`None`: no log row at this index).
    pub time_micros: Option<i64>,
    /// The `actor` column.
    pub actor: Option<String>,
    /// The patients whose log lists this leaf (`audit_patient`), sorted.
    pub patients: Vec<String>,
}

/// Leaves as a full pass (`audit verify`) reads them, a page at a time: each leaf's hashed
/// bytes, the nodes appending it completed, and the columns stored beside it, packed into
/// one buffer per page (a million leaves read as three buffers each were a fifth of the pass,
/// most of it allocating and freeing them).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct LeafPage {
    bytes: Vec<u8>,
    leaves: Vec<PackedLeaf>,
}

/// Where one leaf of a [`LeafPage`] lies in its buffer (it starts where the last one ends).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct PackedLeaf {
    index: u64,
    time_micros: i64,
    entry_end: usize,
    nodes_end: usize,
    actor_end: usize,
}

/// One leaf of a [`LeafPage`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ScannedLeaf<'a> {
    /// Leaf index, from 0.
    pub index: u64,
    /// The entry's canonical bytes (the hashed leaf).
    pub entry: &'a [u8],
    /// The node hashes appending it completed, leaf hash first.
    pub nodes: &'a [u8],
    /// The `time_micros` column.
    pub time_micros: i64,
    /// The `actor` column's bytes (compared with the entry's actor, never shown).
    pub actor: &'a [u8],
}

impl LeafPage {
    /// An empty page with room for `leaves` leaves of a typical size.
    pub fn with_capacity(leaves: usize) -> Self {
        /// An entry of one access (~430 bytes), its nodes and its actor fit.
        const TYPICAL_LEAF_BYTES: usize = 512;
        Self {
            bytes: Vec::with_capacity(leaves * TYPICAL_LEAF_BYTES),
            leaves: Vec::with_capacity(leaves),
        }
    }

    /// Adds the next leaf.
    pub fn push(&mut self, leaf: ScannedLeaf<'_>) {
        self.bytes.extend_from_slice(leaf.entry);
        let entry_end = self.bytes.len();
        self.bytes.extend_from_slice(leaf.nodes);
        let nodes_end = self.bytes.len();
        self.bytes.extend_from_slice(leaf.actor);
        self.leaves.push(PackedLeaf {
            index: leaf.index,
            time_micros: leaf.time_micros,
            entry_end,
            nodes_end,
            actor_end: self.bytes.len(),
        });
    }

    /// Leaves on the page.
    pub fn len(&self) -> usize {
        self.leaves.len()
    }

    /// Whether the page holds no leaf.
    pub fn is_empty(&self) -> bool {
        self.leaves.is_empty()
    }

    /// The leaves, in order.
    pub fn iter(&self) -> impl Iterator<Item = ScannedLeaf<'_>> {
        let starts = std::iter::once(0).chain(self.leaves.iter().map(|l| l.actor_end));
        self.leaves
            .iter()
            .zip(starts)
            .map(|(l, start)| ScannedLeaf {
                index: l.index,
                entry: self.bytes.get(start..l.entry_end).unwrap_or_default(),
                nodes: self.bytes.get(l.entry_end..l.nodes_end).unwrap_or_default(),
                time_micros: l.time_micros,
                actor: self.bytes.get(l.nodes_end..l.actor_end).unwrap_or_default(),
            })
    }
}

/// Pages of leaves, read ahead of the caller.
pub type LeafPages = futures::stream::BoxStream<'static, Result<LeafPage, StoreError>>;

/// A witness's newest cosignature on one of the log's checkpoints.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredCosignature {
    /// The witness's key name.
    pub witness: String,
    /// The cosigned tree's size.
    pub size: u64,
    /// The checkpoint: the node's signed note with the witness's cosignature line.
    pub checkpoint: String,
}

/// One `audit_patient` row: leaf `index` is in the log of `patient_id`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PatientRow {
    /// Leaf index.
    pub index: u64,
    /// The patient whose log lists the leaf.
    pub patient_id: String,
}

/// `audit_patient` rows as a full pass reads them, a page at a time: each row's leaf index,
/// with the patient ids packed into one buffer. A row for the same patient as the row
/// before shares its id, which the table's order (patient, then leaf) makes the usual case.
/// (A million rows read as a vector of cells and a string each were a twentieth of `audit
/// verify`, most of it allocating and freeing them.)
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PatientRowPage {
    ids: String,
    /// Each row's leaf index and where its patient id lies in `ids`.
    rows: Vec<(u64, std::ops::Range<usize>)>,
}

impl PatientRowPage {
    /// An empty page with room for `rows` rows.
    pub fn with_capacity(rows: usize) -> Self {
        Self {
            ids: String::new(),
            rows: Vec::with_capacity(rows),
        }
    }

    /// Adds the next row.
    pub fn push(&mut self, index: u64, patient_id: &str) {
        let same = self
            .rows
            .last()
            .filter(|(_, r)| self.ids.get(r.clone()) == Some(patient_id))
            .map(|(_, r)| r.clone());
        let range = same.unwrap_or_else(|| {
            let start = self.ids.len();
            self.ids.push_str(patient_id);
            start..self.ids.len()
        });
        self.rows.push((index, range));
    }

    /// Rows on the page.
    pub fn len(&self) -> usize {
        self.rows.len()
    }

    /// Whether the page holds no row.
    pub fn is_empty(&self) -> bool {
        self.rows.is_empty()
    }

    /// The rows, in the order read: leaf index and patient id.
    pub fn iter(&self) -> impl Iterator<Item = (u64, &str)> {
        self.rows
            .iter()
            .map(|(index, r)| (*index, self.ids.get(r.clone()).unwrap_or_default()))
    }
}

/// Pages of `audit_patient` rows, read ahead of the caller.
pub type PatientRowPages = futures::stream::BoxStream<'static, Result<PatientRowPage, StoreError>>;

/// Pages of rows read ahead of the caller, on a reader of the adapter's own. Dropping the
/// stream stops the reader.
pub type RowPages<T> = futures::stream::BoxStream<'static, Result<Vec<T>, StoreError>>;

/// The writer's head: size and frontier peaks.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LogHead {
    /// Number of leaves.
    pub size: u64,
    /// The frontier's peaks, concatenated.
    pub peaks: Vec<u8>,
}

/// The patient map as stored: the log size it is at, and its root.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct MapHead {
    /// The log size whose entries the map covers.
    pub size: u64,
    /// Its root (all zeros when empty).
    pub root: Hash,
}

/// A signed checkpoint as stored.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredCheckpoint {
    /// Tree size it covers.
    pub size: u64,
    /// The checkpoint text (C2SP signed note).
    pub text: String,
    /// When it was signed, microseconds.
    pub signed_micros: i64,
}

/// A log-signing key as stored.
#[derive(Clone, PartialEq, Eq)]
pub struct LogKeyRecord {
    /// The key name (the log's origin).
    pub name: String,
    /// The Ed25519 secret as stored: sealed under the KEK when encryption at rest is on.
    pub secret: Vec<u8>,
    /// Ed25519 public key.
    pub public: [u8; 32],
}

impl std::fmt::Debug for LogKeyRecord {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LogKeyRecord")
            .field("name", &self.name)
            .field("secret", &"[redacted]")
            .finish_non_exhaustive()
    }
}

/// The audit log's storage.
#[async_trait]
pub trait AuditLogStore: Send + Sync + 'static {
    /// The writer's head.
    async fn log_head(&self) -> Result<LogHead, StoreError>;
    /// Stored hashes of the given nodes (missing ones are absent from the map).
    async fn log_nodes(&self, nodes: &[NodeId]) -> Result<HashMap<NodeId, Hash>, StoreError>;
    /// Leaves `from..`, at most `limit`, in order.
    async fn log_entries(&self, from: u64, limit: u32) -> Result<Vec<LoggedEntry>, StoreError>;
    /// What is stored beside the leaves `from..to` and derived from them (the `time_micros`
    /// and `actor` columns, the `audit_patient` rows), in leaf order, for the verifier to
    /// re-derive. A leaf index without a log row appears too, if patient rows name it.
    async fn derived_rows(&self, from: u64, to: u64) -> Result<Vec<DerivedRow>, StoreError>;
    /// Leaves `from..to` with their columns, in leaf order, for one full pass. The adapter
    /// reads ahead while the caller hashes, without handing rows over one by one.
    fn scan_leaves(&self, from: u64, to: u64) -> LeafPages;
    /// Every `audit_patient` row, in whatever order the store keeps them (a full pass checks
    /// them as a set, so it needs no index by leaf).
    fn scan_patient_rows(&self) -> PatientRowPages;
    /// The leaves that concern a patient, newest first, below `before` if given.
    async fn log_entries_for_patient(
        &self,
        patient_id: &str,
        before: Option<u64>,
        limit: u32,
    ) -> Result<Vec<LoggedEntry>, StoreError>;
    /// Keeps a checkpoint (a second one at the same size is ignored).
    async fn put_checkpoint(&self, checkpoint: &StoredCheckpoint) -> Result<(), StoreError>;
    /// Every checkpoint, by size.
    async fn checkpoints(&self) -> Result<Vec<StoredCheckpoint>, StoreError>;
    /// The checkpoint at exactly `size`, or the newest one when `None`.
    async fn checkpoint(&self, size: Option<u64>) -> Result<Option<StoredCheckpoint>, StoreError>;
    /// Keeps a witness's cosigned checkpoint, unless the one kept for that witness is of a
    /// larger tree.
    async fn put_cosignature(&self, cosignature: &StoredCosignature) -> Result<(), StoreError>;
    /// The newest cosigned checkpoint of each witness, by witness name.
    async fn cosignatures(&self) -> Result<Vec<StoredCosignature>, StoreError>;
    /// The log key named `candidate.name`, creating it from `candidate` if there is none.
    async fn log_key(
        &self,
        candidate: &LogKeyRecord,
        now_micros: i64,
    ) -> Result<LogKeyRecord, StoreError>;
    /// Replaces a log key's stored (sealed) secret: `keys reencrypt`.
    async fn replace_log_key_secret(&self, name: &str, secret: &[u8]) -> Result<(), StoreError>;
    /// Every log key's name and public key (for verification), oldest first.
    async fn log_public_keys(&self) -> Result<Vec<(String, [u8; 32])>, StoreError>;

    /// The patient map's size and root.
    async fn map_head(&self) -> Result<MapHead, StoreError>;
    /// The stored heads of every key in the given buckets.
    async fn map_members(
        &self,
        buckets: &[u64],
    ) -> Result<BTreeMap<MapKey, PatientHead>, StoreError>;
    /// Stored map nodes (an absent one is empty).
    async fn map_nodes(&self, ids: &[MapNodeId]) -> Result<HashMap<MapNodeId, Hash>, StoreError>;
    /// Moves the map from log size `from` to `to` and keeps the checkpoint that signs its
    /// root, in one transaction. `false`, and nothing written, when the map is no longer at
    /// `from` (another replica moved it first).
    async fn commit_map(
        &self,
        from: u64,
        to: u64,
        changes: &MapChanges,
        checkpoint: &StoredCheckpoint,
    ) -> Result<bool, StoreError>;
    /// Every stored map head, in key order (`audit verify`).
    fn scan_map_heads(&self) -> RowPages<(MapKey, PatientHead)>;
    /// Every stored chain head (`audit_chain_heads`): patient and head (`audit verify`).
    fn scan_chain_heads(&self) -> RowPages<(String, PatientHead)>;
    /// Every stored map node (`audit verify`; at most 2^17).
    fn scan_map_nodes(&self) -> RowPages<(MapNodeId, Hash)>;
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Each leaf reads back as it was pushed, whatever the lengths (an empty part included).
    #[test]
    fn a_leaf_page_gives_back_what_was_pushed() {
        /// Index, entry, nodes, time and actor.
        type Leaf = (u64, Vec<u8>, Vec<u8>, i64, Vec<u8>);
        let leaves: Vec<Leaf> = (0..50u64)
            .map(|i| {
                let n = usize::try_from(i).unwrap_or_default();
                (
                    i,
                    vec![b'e'; n * 7 % 23],
                    vec![b'n'; 32 * (n % 3)],
                    -5 + i64::try_from(i).unwrap_or_default(),
                    vec![b'a'; n % 4],
                )
            })
            .collect();
        let mut page = LeafPage::with_capacity(2);
        assert!(page.is_empty());
        for (index, entry, nodes, time_micros, actor) in &leaves {
            page.push(ScannedLeaf {
                index: *index,
                entry,
                nodes,
                time_micros: *time_micros,
                actor,
            });
        }
        assert_eq!(page.len(), leaves.len());
        let read: Vec<_> = page
            .iter()
            .map(|l| {
                (
                    l.index,
                    l.entry.to_vec(),
                    l.nodes.to_vec(),
                    l.time_micros,
                    l.actor.to_vec(),
                )
            })
            .collect();
        assert_eq!(read, leaves);
    }

    /// Rows read back as pushed, a repeated patient sharing its id and an empty id kept.
    #[test]
    fn a_patient_row_page_gives_back_what_was_pushed() {
        let rows = [
            (3, "p1"),
            (7, "p1"),
            (2, "p2"),
            (9, ""),
            (1, "p1"),
            (4, "p10"),
        ];
        let mut page = PatientRowPage::with_capacity(1);
        assert!(page.is_empty());
        for (index, id) in rows {
            page.push(index, id);
        }
        assert_eq!(page.len(), rows.len());
        assert_eq!(page.iter().collect::<Vec<_>>(), rows.to_vec());
        // "p1" twice in a row is stored once.
        assert_eq!(page.ids, "p1p2p1p10");
    }
}
