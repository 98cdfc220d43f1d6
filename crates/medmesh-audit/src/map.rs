//! The patient map: a verifiable map from a keyed hash of each patient id to that patient's
//! head (entry count, newest leaf index, newest leaf hash), whose root every checkpoint
//! signs. With it a patient proves not only that the entries shown are in the log, but that
//! none of theirs is missing: the head says how many there are and which is the newest.
//!
//! ## Construction
//!
//! A sparse Merkle tree of fixed depth over 2^16 buckets:
//!
//! - **Key**: `HMAC-SHA256(map secret, patient id)` ([`MapSecret`]). The secret never leaves
//!   the node, so neither the root nor a proof tells who is in the map.
//! - **Value hash**: `SHA-256(0x12 || count || index || leaf hash)`, integers big-endian. The
//!   leaf hash is unpredictable, so a value hash does not reveal the count.
//! - **Bucket**: the key's first 16 bits. Its hash is `SHA-256(0x10 || key1 || value hash1 ||
//!   key2 || ...)` over its members sorted by key, or all zeros when empty.
//! - **Interior node**: `SHA-256(0x11 || left || right)`, or all zeros when both are. Level 0
//!   are the buckets, level 16 the root.
//!
//! A proof of a key is the other members of its bucket (keys and value hashes only) and the
//! 16 siblings on the way up. It proves absence too: the key is not among the members.
//!
//! Why buckets rather than a 256-level tree with collapsed single-leaf subtrees: every node
//! has a fixed place `(level, index)`, so an update reads the siblings it needs in one query
//! and writes at most 17 rows per changed bucket, with no leaves moving as the map grows.
//! The cost is the bucket: about 15 members at a million patients, so a proof is about 1.5 KB,
//! 150 members (10 KB) at ten million.
//!
//! The domain prefixes (0x10 to 0x12) differ from the log's (0x00, 0x01), so no map hash can
//! stand for a log node.

use std::collections::{BTreeMap, BTreeSet, HashMap};

use hmac::{Hmac, KeyInit, Mac};
use sha2::{Digest, Sha256};

use crate::chain::PatientHead;
use crate::merkle::Hash;

/// Bits of the key that choose the bucket: the tree's depth.
pub const DEPTH: u32 = 16;
/// The hash of an empty bucket or subtree.
pub const EMPTY: Hash = [0; 32];

/// A node of the map: `(level, index)`, level 0 being the buckets and [`DEPTH`] the root.
pub type MapNodeId = (u32, u64);

/// A patient's key in the map: a keyed hash of their id.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct MapKey(pub [u8; 32]);

impl MapKey {
    /// The bucket the key falls in.
    pub fn bucket(&self) -> u64 {
        u64::from(u16::from_be_bytes([self.0[0], self.0[1]]))
    }

    /// The smallest key of bucket `b`, or `None` past the last bucket: a bucket's keys run
    /// from its first key up to the next bucket's (the inverse of [`Self::bucket`]).
    pub fn first_in(b: u64) -> Option<MapKey> {
        let b = u16::try_from(b).ok()?;
        let mut key = [0u8; 32];
        key[..2].copy_from_slice(&b.to_be_bytes());
        Some(MapKey(key))
    }
}

/// The node secret under which patient ids become map keys.
#[derive(Clone)]
pub struct MapSecret([u8; 32]);

impl std::fmt::Debug for MapSecret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("MapSecret([redacted])")
    }
}

type HmacSha256 = Hmac<Sha256>;

fn hmac(key: &[u8], data: &[&[u8]]) -> [u8; 32] {
    // HMAC takes a key of any length; `new_from_slice` cannot fail for it.
    let mut mac = <HmacSha256 as KeyInit>::new_from_slice(key)
        .unwrap_or_else(|_| <HmacSha256 as KeyInit>::new(&Default::default()));
    for d in data {
        mac.update(d);
    }
    mac.finalize().into_bytes().into()
}

impl MapSecret {
    /// A secret from 32 bytes.
    pub fn new(bytes: [u8; 32]) -> Self {
        Self(bytes)
    }

    /// The map secret of a log, derived from its signing secret (so it is kept, sealed and
    /// replicated with it, and needs no key of its own).
    pub fn derive(log_secret: &[u8; 32]) -> Self {
        Self(hmac(log_secret, &[b"medmesh audit patient map key v1"]))
    }

    /// A patient's key.
    pub fn key(&self, patient: &str) -> MapKey {
        MapKey(hmac(&self.0, &[patient.as_bytes()]))
    }
}

/// The hash of a head, as a bucket lists it.
pub fn value_hash(head: &PatientHead) -> Hash {
    let mut h = Sha256::new();
    h.update([0x12]);
    h.update(head.count.to_be_bytes());
    h.update(head.index.to_be_bytes());
    h.update(head.hash);
    h.finalize().into()
}

/// The hash of a bucket whose members are `members`, sorted by key.
pub fn bucket_hash<'a>(members: impl IntoIterator<Item = (&'a MapKey, &'a Hash)>) -> Hash {
    let mut h = Sha256::new();
    h.update([0x10]);
    let mut any = false;
    for (key, value) in members {
        any = true;
        h.update(key.0);
        h.update(value);
    }
    if any { h.finalize().into() } else { EMPTY }
}

/// The hash of an interior node.
pub fn node_hash(left: &Hash, right: &Hash) -> Hash {
    if *left == EMPTY && *right == EMPTY {
        return EMPTY;
    }
    let mut h = Sha256::new();
    h.update([0x11]);
    h.update(left);
    h.update(right);
    h.finalize().into()
}

/// The siblings a proof for a key in `bucket` lists, level 0 first.
pub fn proof_nodes(bucket: u64) -> Vec<MapNodeId> {
    (0..DEPTH)
        .map(|level| (level, (bucket >> level) ^ 1))
        .collect()
}

/// What is wrong with a map proof.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum MapError {
    /// Not 16 siblings.
    #[error("the map proof has {0} siblings, not 16")]
    Siblings(usize),
    /// A listed member is not in the key's bucket, is listed twice or out of order, or is
    /// the key itself.
    #[error("the map proof's bucket is malformed")]
    Bucket,
    /// The proof leads to another root.
    #[error("the map proof does not lead to the signed root")]
    Root,
}

/// A proof of one key's head (or of its absence) in the map.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MapProof {
    /// The key.
    pub key: MapKey,
    /// Its head, `None` when the map has no such key.
    pub head: Option<PatientHead>,
    /// The other members of the bucket, sorted by key: key and value hash.
    pub others: Vec<(MapKey, Hash)>,
    /// The siblings on the way up, level 0 first.
    pub siblings: Vec<Hash>,
}

impl MapProof {
    /// Builds a proof from the bucket's stored members and the stored nodes.
    pub fn build(
        key: MapKey,
        members: &BTreeMap<MapKey, PatientHead>,
        nodes: &HashMap<MapNodeId, Hash>,
    ) -> Self {
        Self {
            key,
            head: members.get(&key).copied(),
            others: members
                .iter()
                .filter(|(k, _)| **k != key)
                .map(|(k, v)| (*k, value_hash(v)))
                .collect(),
            siblings: proof_nodes(key.bucket())
                .iter()
                .map(|id| nodes.get(id).copied().unwrap_or(EMPTY))
                .collect(),
        }
    }

    /// Checks the proof against a signed root and returns the head it proves.
    ///
    /// # Errors
    /// [`MapError`].
    pub fn verify(&self, root: &Hash) -> Result<Option<PatientHead>, MapError> {
        if self.siblings.len() != DEPTH as usize {
            return Err(MapError::Siblings(self.siblings.len()));
        }
        let bucket = self.key.bucket();
        let mut members: BTreeMap<MapKey, Hash> = BTreeMap::new();
        let mut last: Option<MapKey> = None;
        for (k, v) in &self.others {
            if k.bucket() != bucket || *k == self.key || last.is_some_and(|l| l >= *k) {
                return Err(MapError::Bucket);
            }
            last = Some(*k);
            members.insert(*k, *v);
        }
        if let Some(head) = &self.head {
            members.insert(self.key, value_hash(head));
        }
        let mut hash = bucket_hash(&members);
        for (level, sibling) in self.siblings.iter().enumerate() {
            hash = if (bucket >> level) & 1 == 0 {
                node_hash(&hash, sibling)
            } else {
                node_hash(sibling, &hash)
            };
        }
        if hash == *root {
            Ok(self.head)
        } else {
            Err(MapError::Root)
        }
    }
}

/// An update of the map by the heads that changed since its last root.
#[derive(Debug, Clone)]
pub struct MapUpdate {
    changed: BTreeMap<MapKey, PatientHead>,
    /// The nodes the update rewrites, per level, each level sorted without repeats. (Sorted
    /// vectors, not sets and hash maps: `audit verify` derives the whole map of 50,000
    /// patients in one update, and the sets' allocating and hashing were most of its end.)
    affected: Vec<Vec<u64>>,
}

/// What an update writes: the changed heads, the rewritten nodes, and the new root.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MapChanges {
    /// The heads to store.
    pub heads: Vec<(MapKey, PatientHead)>,
    /// The nodes to store, buckets (level 0) up to the root.
    pub nodes: Vec<(MapNodeId, Hash)>,
    /// The new root.
    pub root: Hash,
}

impl MapUpdate {
    /// An update setting each key in `changed` to its head.
    pub fn new(changed: BTreeMap<MapKey, PatientHead>) -> Self {
        let mut affected: Vec<Vec<u64>> = Vec::with_capacity(DEPTH as usize + 1);
        // Keys are sorted, and a key's bucket is its first bytes: the buckets come sorted.
        let mut buckets: Vec<u64> = changed.keys().map(MapKey::bucket).collect();
        buckets.dedup();
        affected.push(buckets);
        for level in 0..DEPTH as usize {
            let mut up: Vec<u64> = affected[level].iter().map(|i| i / 2).collect();
            up.dedup();
            affected.push(up);
        }
        Self { changed, affected }
    }

    /// The buckets whose stored members the update needs.
    pub fn buckets(&self) -> Vec<u64> {
        self.affected.first().cloned().unwrap_or_default()
    }

    /// The stored nodes the update needs: the siblings it does not rewrite itself.
    pub fn nodes_needed(&self) -> Vec<MapNodeId> {
        if self.changed.is_empty() {
            return vec![(DEPTH, 0)]; // nothing changes: the root stays
        }
        let mut out = Vec::new();
        for (level, set) in self.affected.iter().enumerate().take(DEPTH as usize) {
            for i in set {
                if set.binary_search(&(i ^ 1)).is_err() {
                    out.push((level as u32, i ^ 1));
                }
            }
        }
        out
    }

    /// Computes the new nodes and root. `members` are the stored heads of the affected
    /// buckets (as [`Self::buckets`] names them), `nodes` the stored nodes of
    /// [`Self::nodes_needed`]; one that is absent is empty.
    pub fn apply(
        self,
        mut members: BTreeMap<MapKey, PatientHead>,
        nodes: &HashMap<MapNodeId, Hash>,
    ) -> MapChanges {
        for (k, v) in &self.changed {
            members.insert(*k, *v);
        }
        let stored = |id: MapNodeId| nodes.get(&id).copied().unwrap_or(EMPTY);
        let node_count: usize = self.affected.iter().map(Vec::len).sum();
        let mut out_nodes: Vec<(MapNodeId, Hash)> = Vec::with_capacity(node_count);
        // Level 0: each affected bucket's members, in key order (so in bucket order too).
        let mut level: Vec<(u64, Hash)> = Vec::new();
        let mut members = members.iter().peekable();
        let mut bucket_members: Vec<(MapKey, Hash)> = Vec::new();
        for &b in self.affected.first().map(Vec::as_slice).unwrap_or_default() {
            bucket_members.clear();
            while let Some((k, v)) = members.next_if(|(k, _)| k.bucket() <= b) {
                if k.bucket() == b {
                    bucket_members.push((*k, value_hash(v)));
                }
            }
            let hash = bucket_hash(bucket_members.iter().map(|(k, v)| (k, v)));
            level.push((b, hash));
            out_nodes.push(((0, b), hash));
        }
        // Each level above from the one below: a node's children are both rewritten (next
        // to each other in the sorted level) or one is, and the other is stored.
        for above in 1..=DEPTH {
            let below = above - 1;
            let mut up: Vec<(u64, Hash)> = Vec::with_capacity(level.len() / 2 + 1);
            let mut children = level.iter().peekable();
            while let Some(&(c, h)) = children.next() {
                let parent = c / 2;
                let hash = if c % 2 == 0 {
                    let right = match children.next_if(|(r, _)| *r == c + 1) {
                        Some((_, r)) => *r,
                        None => stored((below, c + 1)),
                    };
                    node_hash(&h, &right)
                } else {
                    node_hash(&stored((below, c - 1)), &h)
                };
                up.push((parent, hash));
                out_nodes.push(((above, parent), hash));
            }
            level = up;
        }
        let root = match level.first() {
            Some((0, root)) => *root,
            _ => stored((DEPTH, 0)),
        };
        MapChanges {
            heads: self.changed.into_iter().collect(),
            nodes: out_nodes,
            root,
        }
    }
}

/// A whole map kept in memory and updated as the store updates its own: what `audit
/// verify` re-derives from the log and compares with the stored map and every signed root.
#[derive(Debug, Default, Clone)]
pub struct DerivedMap {
    /// Every key's head, in key order (a bucket's members are one range of it).
    heads: BTreeMap<MapKey, PatientHead>,
    nodes: HashMap<MapNodeId, Hash>,
    pending: BTreeMap<MapKey, PatientHead>,
    root: Hash,
}

impl DerivedMap {
    /// Sets a key's head (applied at the next [`Self::root`]).
    pub fn set(&mut self, key: MapKey, head: PatientHead) {
        self.pending.insert(key, head);
    }

    /// The root, after the pending heads.
    pub fn root(&mut self) -> Hash {
        if self.pending.is_empty() {
            return self.root;
        }
        let update = MapUpdate::new(std::mem::take(&mut self.pending));
        let mut members = BTreeMap::new();
        for b in update.buckets() {
            members.extend(self.bucket(b).map(|(k, v)| (*k, *v)));
        }
        let changes = update.apply(members, &self.nodes);
        self.heads.extend(changes.heads);
        self.nodes.extend(changes.nodes);
        self.root = changes.root;
        self.root
    }

    /// The members of bucket `b`.
    fn bucket(&self, b: u64) -> impl Iterator<Item = (&MapKey, &PatientHead)> {
        use std::ops::Bound;
        // Past the last bucket there are no keys; the last bucket runs to the end.
        let start =
            MapKey::first_in(b).map_or(Bound::Excluded(MapKey([u8::MAX; 32])), Bound::Included);
        let end = MapKey::first_in(b + 1).map_or(Bound::Unbounded, Bound::Excluded);
        self.heads.range((start, end))
    }

    /// A key's head (pending ones included).
    pub fn get(&self, key: &MapKey) -> Option<PatientHead> {
        self.pending
            .get(key)
            .or_else(|| self.heads.get(key))
            .copied()
    }

    /// How many keys the map holds, once the pending heads are applied.
    pub fn len(&mut self) -> usize {
        self.root();
        self.heads.len()
    }

    /// Whether the map is empty.
    pub fn is_empty(&mut self) -> bool {
        self.len() == 0
    }

    /// The nodes, once the pending heads are applied (an absent one is empty).
    pub fn nodes(&mut self) -> &HashMap<MapNodeId, Hash> {
        self.root();
        &self.nodes
    }

    /// A key's proof, once the pending heads are applied.
    pub fn proof(&mut self, key: MapKey) -> MapProof {
        self.root();
        let members: BTreeMap<MapKey, PatientHead> =
            self.bucket(key.bucket()).map(|(k, v)| (*k, *v)).collect();
        MapProof::build(key, &members, &self.nodes)
    }
}

/// The root of a whole map, computed naively: the reference the incremental update and the
/// operator's check are held against.
pub fn root_of(map: &BTreeMap<MapKey, PatientHead>) -> Hash {
    let mut level: BTreeMap<u64, Hash> = BTreeMap::new();
    let mut buckets: BTreeMap<u64, Vec<(MapKey, Hash)>> = BTreeMap::new();
    for (k, v) in map {
        buckets
            .entry(k.bucket())
            .or_default()
            .push((*k, value_hash(v)));
    }
    for (b, m) in buckets {
        level.insert(b, bucket_hash(m.iter().map(|(k, v)| (k, v))));
    }
    for _ in 0..DEPTH {
        let mut up: BTreeMap<u64, Hash> = BTreeMap::new();
        for i in level.keys().map(|i| i / 2).collect::<BTreeSet<_>>() {
            let l = level.get(&(2 * i)).copied().unwrap_or(EMPTY);
            let r = level.get(&(2 * i + 1)).copied().unwrap_or(EMPTY);
            up.insert(i, node_hash(&l, &r));
        }
        level = up;
    }
    level.get(&0).copied().unwrap_or(EMPTY)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn head(count: u64, index: u64) -> PatientHead {
        PatientHead {
            count,
            index,
            hash: [count as u8 ^ index as u8; 32],
        }
    }

    /// A stored map, updated as the store updates it: only the affected buckets' members
    /// and the needed nodes go into each update.
    #[derive(Default)]
    struct Stored {
        heads: BTreeMap<MapKey, PatientHead>,
        nodes: HashMap<MapNodeId, Hash>,
        root: Hash,
    }

    impl Stored {
        fn update(&mut self, changed: BTreeMap<MapKey, PatientHead>) {
            let update = MapUpdate::new(changed);
            let buckets = update.buckets();
            let members = self
                .heads
                .iter()
                .filter(|(k, _)| buckets.contains(&k.bucket()))
                .map(|(k, v)| (*k, *v))
                .collect();
            let needed: HashMap<MapNodeId, Hash> = update
                .nodes_needed()
                .into_iter()
                .filter_map(|id| self.nodes.get(&id).map(|h| (id, *h)))
                .collect();
            let changes = update.apply(members, &needed);
            self.heads.extend(changes.heads);
            self.nodes.extend(changes.nodes);
            self.root = changes.root;
        }

        fn proof(&self, key: MapKey) -> MapProof {
            let members = self
                .heads
                .iter()
                .filter(|(k, _)| k.bucket() == key.bucket())
                .map(|(k, v)| (*k, *v))
                .collect();
            MapProof::build(key, &members, &self.nodes)
        }
    }

    /// A bucket's first key falls in that bucket, below every other key of it; there is none
    /// past the last bucket.
    #[test]
    fn a_buckets_first_key_is_its_smallest() {
        for b in [0u16, 1, 300, u16::MAX] {
            let first = MapKey::first_in(u64::from(b)).unwrap();
            assert_eq!(first.bucket(), u64::from(b));
            assert!(first <= key_in(b, 0));
        }
        assert_eq!(MapKey::first_in(1 << 16), None);
    }

    fn key_in(bucket: u16, tail: u8) -> MapKey {
        let mut k = [tail; 32];
        k[..2].copy_from_slice(&bucket.to_be_bytes());
        MapKey(k)
    }

    #[test]
    fn keys_are_keyed_hashes_and_the_secret_stays_hidden() {
        let s = MapSecret::derive(&[7; 32]);
        assert_eq!(s.key("p1"), MapSecret::derive(&[7; 32]).key("p1"));
        assert_ne!(s.key("p1"), s.key("p2"));
        assert_ne!(s.key("p1"), MapSecret::derive(&[8; 32]).key("p1"));
        assert_eq!(format!("{s:?}"), "MapSecret([redacted])");
    }

    #[test]
    fn the_empty_map_has_the_empty_root_and_proves_absence() {
        let stored = Stored::default();
        assert_eq!(root_of(&BTreeMap::new()), EMPTY);
        assert_eq!(stored.proof(key_in(3, 1)).verify(&EMPTY), Ok(None));
    }

    #[test]
    fn a_proof_shows_the_head_and_refuses_another() {
        let mut stored = Stored::default();
        let (a, b, c) = (key_in(5, 1), key_in(5, 2), key_in(900, 3));
        stored.update([(a, head(1, 0)), (b, head(1, 1)), (c, head(2, 4))].into());
        let proof = stored.proof(a);
        assert_eq!(proof.verify(&stored.root), Ok(Some(head(1, 0))));
        assert_eq!(proof.others.len(), 1, "b shares a's bucket");
        // A stale head, an absent claim, a dropped neighbour: each leads elsewhere.
        let mut stale = proof.clone();
        stale.head = Some(head(0, 0));
        assert_eq!(stale.verify(&stored.root), Err(MapError::Root));
        let mut absent = proof.clone();
        absent.head = None;
        assert_eq!(absent.verify(&stored.root), Err(MapError::Root));
        let mut alone = proof.clone();
        alone.others.clear();
        assert_eq!(alone.verify(&stored.root), Err(MapError::Root));
        // The key itself listed as a neighbour (absent and present at once) is malformed.
        let mut twice = proof.clone();
        twice.others.push((a, value_hash(&head(1, 0))));
        assert_eq!(twice.verify(&stored.root), Err(MapError::Bucket));
        let mut short = proof;
        short.siblings.pop();
        assert_eq!(short.verify(&stored.root), Err(MapError::Siblings(15)));
        // A key the map lacks is proved absent.
        assert_eq!(stored.proof(key_in(5, 9)).verify(&stored.root), Ok(None));
    }

    fn arb_key() -> impl Strategy<Value = MapKey> {
        // Few buckets and tails, so buckets share members and keys repeat across batches.
        (0u16..6, any::<u16>(), 0u8..4).prop_map(|(hi, lo, tail)| {
            let bucket = if hi < 3 { hi } else { lo };
            key_in(bucket, tail)
        })
    }

    proptest! {
        #[test]
        fn incremental_updates_agree_with_the_naive_map(
            batches in prop::collection::vec(
                prop::collection::vec((arb_key(), 1u64..50, 0u64..1000), 0..12), 1..6)
        ) {
            let mut stored = Stored::default();
            let mut derived = DerivedMap::default();
            let mut reference: BTreeMap<MapKey, PatientHead> = BTreeMap::new();
            for batch in batches {
                let changed: BTreeMap<MapKey, PatientHead> =
                    batch.iter().map(|(k, c, i)| (*k, head(*c, *i))).collect();
                reference.extend(changed.clone());
                for (k, v) in &changed {
                    derived.set(*k, *v);
                }
                stored.update(changed);
                prop_assert_eq!(stored.root, root_of(&reference));
                prop_assert_eq!(derived.root(), stored.root);
                prop_assert_eq!(derived.len(), reference.len());
                for (k, v) in &reference {
                    prop_assert_eq!(stored.proof(*k).verify(&stored.root), Ok(Some(*v)));
                }
            }
            prop_assert_eq!(stored.proof(key_in(4, 200)).verify(&stored.root), Ok(None));
            prop_assert_eq!(derived.proof(key_in(4, 200)).verify(&stored.root), Ok(None));
        }
    }
}
