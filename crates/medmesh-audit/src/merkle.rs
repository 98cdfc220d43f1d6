//! The audit log as a Merkle tree in the manner of RFC 9162 (Certificate Transparency v2),
//! laid out for a database.
//!
//! Hashing is RFC 9162's: a leaf is `SHA-256(0x00 || entry)`, an interior node
//! `SHA-256(0x01 || left || right)`. The store keeps only *complete* subtrees: node
//! `(level, index)` covers leaves `[index·2^level, (index+1)·2^level)` and, once written, never
//! changes. Appending a leaf adds at most `log2 n` nodes ([`nodes_completed_by`]). Every
//! subtree RFC 9162 needs for a root or a proof splits into such aligned complete subtrees, so
//! roots and proofs are assembled from stored nodes, `O(log² n)` lookups at worst.
//!
//! Proof generation is ours (it reads stored nodes); verification is delegated to the
//! `ct-merkle` crate, an independent implementation of the same RFC, and the tests hold each
//! against the other.

use sha2::{Digest, Sha256};

/// A SHA-256 digest.
pub type Hash = [u8; 32];

/// A stored node: `(level, index)`, level 0 being the leaves.
pub type NodeId = (u32, u64);

/// The hash of a leaf (an audit entry's canonical bytes).
pub fn leaf_hash(entry: &[u8]) -> Hash {
    let mut h = Sha256::new();
    h.update([0x00]);
    h.update(entry);
    h.finalize().into()
}

/// The hash of an interior node.
pub fn node_hash(left: &Hash, right: &Hash) -> Hash {
    let mut h = Sha256::new();
    h.update([0x01]);
    h.update(left);
    h.update(right);
    h.finalize().into()
}

/// The complete subtrees that appending leaf number `leaf` (0-based) completes, from the
/// leaf itself upward: `(0, leaf)`, then `(1, leaf/2)` if `leaf` is odd, and so on. Each is
/// the hash of its two children, both already stored.
pub fn nodes_completed_by(leaf: u64) -> Vec<NodeId> {
    let mut out = vec![(0, leaf)];
    let mut level = 0;
    let mut index = leaf;
    while index % 2 == 1 {
        level += 1;
        index /= 2;
        out.push((level, index));
    }
    out
}

/// A failure to assemble a root or a proof.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum MerkleError {
    /// A node the computation needs is not available (a store that lost a row).
    #[error("missing tree node at level {0}, index {1}")]
    MissingNode(u32, u64),
    /// The sizes or index are out of range.
    #[error("tree sizes or index out of range")]
    OutOfRange,
    /// A proof did not verify.
    #[error("the proof does not verify")]
    Invalid,
}

/// Largest power of two strictly less than `n` (`n >= 2`).
fn split(n: u64) -> u64 {
    1 << (63 - (n - 1).leading_zeros())
}

/// Walks the computation of RFC 9162's MTH over leaves `[start, start+size)`, asking `node`
/// for each aligned complete subtree.
fn subtree(
    start: u64,
    size: u64,
    node: &mut dyn FnMut(NodeId) -> Result<Hash, MerkleError>,
) -> Result<Hash, MerkleError> {
    if size.is_power_of_two() && start.is_multiple_of(size) {
        return node((size.trailing_zeros(), start / size));
    }
    let k = split(size);
    let left = subtree(start, k, node)?;
    let right = subtree(start + k, size - k, node)?;
    Ok(node_hash(&left, &right))
}

/// The root of a tree of `size` leaves (`size >= 1`).
///
/// # Errors
/// [`MerkleError::MissingNode`] or [`MerkleError::OutOfRange`].
pub fn root(
    size: u64,
    node: &mut dyn FnMut(NodeId) -> Result<Hash, MerkleError>,
) -> Result<Hash, MerkleError> {
    if size == 0 {
        return Err(MerkleError::OutOfRange);
    }
    subtree(0, size, node)
}

/// RFC 9162 section 2.1.3.1 PATH(m, D[start:start+size]), leaf side first.
fn path(
    m: u64,
    start: u64,
    size: u64,
    node: &mut dyn FnMut(NodeId) -> Result<Hash, MerkleError>,
    out: &mut Vec<Hash>,
) -> Result<(), MerkleError> {
    if size <= 1 {
        return Ok(());
    }
    let k = split(size);
    if m < k {
        path(m, start, k, node, out)?;
        out.push(subtree(start + k, size - k, node)?);
    } else {
        path(m - k, start + k, size - k, node, out)?;
        out.push(subtree(start, k, node)?);
    }
    Ok(())
}

/// The inclusion proof of leaf `index` in the tree of `size` leaves.
///
/// # Errors
/// [`MerkleError::OutOfRange`] or [`MerkleError::MissingNode`].
pub fn inclusion_proof(
    index: u64,
    size: u64,
    node: &mut dyn FnMut(NodeId) -> Result<Hash, MerkleError>,
) -> Result<Vec<Hash>, MerkleError> {
    if index >= size {
        return Err(MerkleError::OutOfRange);
    }
    let mut out = Vec::new();
    path(index, 0, size, node, &mut out)?;
    Ok(out)
}

/// RFC 9162 section 2.1.4.1 SUBPROOF(m, D[start:start+size], b).
fn subproof(
    m: u64,
    start: u64,
    size: u64,
    whole: bool,
    node: &mut dyn FnMut(NodeId) -> Result<Hash, MerkleError>,
    out: &mut Vec<Hash>,
) -> Result<(), MerkleError> {
    if m == size {
        if !whole {
            out.push(subtree(start, size, node)?);
        }
        return Ok(());
    }
    let k = split(size);
    if m <= k {
        subproof(m, start, k, whole, node, out)?;
        out.push(subtree(start + k, size - k, node)?);
    } else {
        subproof(m - k, start + k, size - k, false, node, out)?;
        out.push(subtree(start, k, node)?);
    }
    Ok(())
}

/// The consistency proof from the tree of `old_size` leaves to the tree of `new_size`.
///
/// # Errors
/// [`MerkleError::OutOfRange`] unless `0 < old_size <= new_size`.
pub fn consistency_proof(
    old_size: u64,
    new_size: u64,
    node: &mut dyn FnMut(NodeId) -> Result<Hash, MerkleError>,
) -> Result<Vec<Hash>, MerkleError> {
    if old_size == 0 || old_size > new_size {
        return Err(MerkleError::OutOfRange);
    }
    let mut out = Vec::new();
    subproof(old_size, 0, new_size, true, node, &mut out)?;
    Ok(out)
}

/// The nodes a computation will ask for, found by running it with a recorder. A store calls
/// this first, fetches them all in one query, then runs the computation on the result.
pub fn nodes_needed(
    run: impl FnOnce(&mut dyn FnMut(NodeId) -> Result<Hash, MerkleError>) -> Result<(), MerkleError>,
) -> Vec<NodeId> {
    let mut wanted = Vec::new();
    let mut record = |id: NodeId| {
        wanted.push(id);
        Ok([0u8; 32])
    };
    // Recording cannot fail: the recorder always answers.
    let _ = run(&mut record);
    wanted.sort_unstable();
    wanted.dedup();
    wanted
}

/// The right edge of a tree: the roots of its perfect subtrees, largest first (one per set
/// bit of the size). Enough to append leaves and to compute the root, in `O(log n)` memory,
/// which is what the writer keeps between appends and what `audit verify` streams with.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Frontier {
    size: u64,
    peaks: Vec<Hash>,
}

impl Frontier {
    /// The frontier of the empty tree.
    pub fn new() -> Self {
        Self::default()
    }

    /// Rebuilds a frontier from its size and concatenated peaks (as stored).
    ///
    /// # Errors
    /// [`MerkleError::OutOfRange`] when the peaks do not fit the size.
    pub fn from_bytes(size: u64, peaks: &[u8]) -> Result<Self, MerkleError> {
        if peaks.len() != 32 * size.count_ones() as usize {
            return Err(MerkleError::OutOfRange);
        }
        let peaks = peaks
            .chunks_exact(32)
            .map(|c| {
                let mut h = [0u8; 32];
                h.copy_from_slice(c);
                h
            })
            .collect();
        Ok(Self { size, peaks })
    }

    /// The peaks, concatenated (for storage).
    pub fn to_bytes(&self) -> Vec<u8> {
        self.peaks.concat()
    }

    /// Number of leaves.
    pub fn size(&self) -> u64 {
        self.size
    }

    /// Appends a leaf hash. Returns the hashes of the nodes it completes, in the order of
    /// [`nodes_completed_by`]: the leaf first, then each parent it closes.
    pub fn push(&mut self, leaf: Hash) -> Vec<Hash> {
        let mut completed = Vec::new();
        self.push_into(leaf, &mut completed);
        completed
    }

    /// [`Self::push`] into the caller's buffer (cleared first): `audit verify` pushes every
    /// leaf of the log and reuses one.
    pub fn push_into(&mut self, leaf: Hash, completed: &mut Vec<Hash>) {
        completed.clear();
        completed.push(leaf);
        let mut hash = leaf;
        let mut index = self.size;
        while index % 2 == 1 {
            // A set low bit means a left sibling peak of the same size is waiting.
            let Some(left) = self.peaks.pop() else { break };
            hash = node_hash(&left, &hash);
            completed.push(hash);
            index /= 2;
        }
        self.peaks.push(hash);
        self.size += 1;
    }

    /// The tree head: RFC 9162's MTH over all leaves; `None` for the empty tree.
    pub fn root(&self) -> Option<Hash> {
        let mut peaks = self.peaks.iter().rev();
        let mut acc = *peaks.next()?;
        for p in peaks {
            acc = node_hash(p, &acc);
        }
        Some(acc)
    }
}

/// Where a stored node lives when each leaf row keeps the nodes it completed: node
/// `(level, index)` was completed by its subtree's last leaf, at position `level` of that
/// leaf's list. Returns `(leaf, position)`.
pub fn home_of(node: NodeId) -> (u64, usize) {
    let (level, index) = node;
    (((index + 1) << level) - 1, level as usize)
}

/// Checks that `entry` is leaf `index` of the tree with `root` and `size`, using `proof`.
///
/// # Errors
/// [`MerkleError::Invalid`].
pub fn verify_inclusion(
    entry: &[u8],
    index: u64,
    size: u64,
    root: &Hash,
    proof: &[Hash],
) -> Result<(), MerkleError> {
    let root = ct_merkle::RootHash::<Sha256>::new((*root).into(), size);
    let proof = ct_merkle::InclusionProof::<Sha256>::try_from_bytes(proof.concat())
        .map_err(|_| MerkleError::Invalid)?;
    root.verify_inclusion(&entry, index, &proof)
        .map_err(|_| MerkleError::Invalid)
}

/// Checks that the tree `(old_root, old_size)` is a prefix of `(new_root, new_size)`.
///
/// # Errors
/// [`MerkleError::Invalid`].
pub fn verify_consistency(
    old_root: &Hash,
    old_size: u64,
    new_root: &Hash,
    new_size: u64,
    proof: &[Hash],
) -> Result<(), MerkleError> {
    let old = ct_merkle::RootHash::<Sha256>::new((*old_root).into(), old_size);
    let new = ct_merkle::RootHash::<Sha256>::new((*new_root).into(), new_size);
    let proof = ct_merkle::ConsistencyProof::<Sha256>::try_from_bytes(proof.concat())
        .map_err(|_| MerkleError::Invalid)?;
    new.verify_consistency(&old, &proof)
        .map_err(|_| MerkleError::Invalid)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use std::collections::HashMap;

    /// A store's view: the nodes appends wrote.
    fn build(entries: &[Vec<u8>]) -> HashMap<NodeId, Hash> {
        let mut nodes = HashMap::new();
        for (i, e) in entries.iter().enumerate() {
            for (level, index) in nodes_completed_by(i as u64) {
                let h = if level == 0 {
                    leaf_hash(e)
                } else {
                    node_hash(
                        &nodes[&(level - 1, 2 * index)],
                        &nodes[&(level - 1, 2 * index + 1)],
                    )
                };
                nodes.insert((level, index), h);
            }
        }
        nodes
    }

    fn lookup(
        nodes: &HashMap<NodeId, Hash>,
    ) -> impl FnMut(NodeId) -> Result<Hash, MerkleError> + '_ {
        |id| {
            nodes
                .get(&id)
                .copied()
                .ok_or(MerkleError::MissingNode(id.0, id.1))
        }
    }

    fn entries(n: usize) -> Vec<Vec<u8>> {
        (0..n).map(|i| format!("entry {i}").into_bytes()).collect()
    }

    #[test]
    fn roots_match_ct_merkle_and_an_empty_string_leaf_matches_rfc6962() {
        // RFC 6962 test vector: the hash of an empty leaf.
        assert_eq!(
            hex::encode(leaf_hash(b"")),
            "6e340b9cffb37a989ca544e6bb780a2c78901d3fb33738768511a30617afa01d"
        );
        for n in 1..70 {
            let e = entries(n);
            let nodes = build(&e);
            let mut oracle = ct_merkle::mem_backed_tree::MemoryBackedTree::<Sha256, Vec<u8>>::new();
            for x in &e {
                oracle.push(x.clone());
            }
            let ours = root(n as u64, &mut lookup(&nodes)).unwrap();
            assert_eq!(
                ours.as_slice(),
                oracle.root().as_bytes().as_slice(),
                "size {n}"
            );
        }
    }

    #[test]
    fn a_missing_node_is_reported() {
        let e = entries(5);
        let mut nodes = build(&e);
        nodes.remove(&(2, 0));
        assert_eq!(
            root(5, &mut lookup(&nodes)),
            Err(MerkleError::MissingNode(2, 0))
        );
    }

    #[test]
    fn nodes_needed_lists_exactly_what_is_read() {
        let e = entries(1000);
        let nodes = build(&e);
        let wanted = nodes_needed(|n| inclusion_proof(123, 1000, n).map(|_| ()));
        assert!(wanted.len() <= 2 * 10 * 10, "O(log² n)");
        let subset: HashMap<NodeId, Hash> = wanted.iter().map(|id| (*id, nodes[id])).collect();
        assert!(inclusion_proof(123, 1000, &mut lookup(&subset)).is_ok());
    }

    #[test]
    fn the_frontier_agrees_with_the_node_store() {
        for n in 1..130usize {
            let e = entries(n);
            let nodes = build(&e);
            let mut f = Frontier::new();
            for (i, x) in e.iter().enumerate() {
                let completed = f.push(leaf_hash(x));
                let ids = nodes_completed_by(i as u64);
                assert_eq!(completed.len(), ids.len());
                for (id, h) in ids.iter().zip(&completed) {
                    assert_eq!(nodes[id], *h);
                    assert_eq!(home_of(*id), (i as u64, id.0 as usize));
                }
            }
            assert_eq!(f.root(), Some(root(n as u64, &mut lookup(&nodes)).unwrap()));
            let again = Frontier::from_bytes(f.size(), &f.to_bytes()).unwrap();
            assert_eq!(again, f);
        }
        assert_eq!(Frontier::new().root(), None);
        assert!(Frontier::from_bytes(3, &[0u8; 32]).is_err());
    }

    proptest! {
        #[test]
        fn inclusion_proofs_verify_and_tampering_fails(n in 1usize..300, pick in 0usize..300) {
            let e = entries(n);
            let nodes = build(&e);
            let i = pick % n;
            let r = root(n as u64, &mut lookup(&nodes)).unwrap();
            let proof = inclusion_proof(i as u64, n as u64, &mut lookup(&nodes)).unwrap();
            prop_assert!(verify_inclusion(&e[i], i as u64, n as u64, &r, &proof).is_ok());
            prop_assert!(verify_inclusion(b"modified", i as u64, n as u64, &r, &proof).is_err());
            if n > 1 {
                let other = (i + 1) % n;
                prop_assert!(verify_inclusion(&e[i], other as u64, n as u64, &r, &proof).is_err(), "reordered");
            }
        }

        #[test]
        fn consistency_proofs_verify_and_rewrites_fail(old in 1usize..200, extra in 0usize..200) {
            let new = old + extra;
            let e = entries(new);
            let nodes = build(&e);
            let old_root = root(old as u64, &mut lookup(&nodes)).unwrap();
            let new_root = root(new as u64, &mut lookup(&nodes)).unwrap();
            let proof = consistency_proof(old as u64, new as u64, &mut lookup(&nodes)).unwrap();
            prop_assert!(verify_consistency(&old_root, old as u64, &new_root, new as u64, &proof).is_ok());
            // A history rewritten under the old head is caught.
            let mut forged = e.clone();
            forged[old - 1] = b"rewritten".to_vec();
            let forged_nodes = build(&forged);
            let forged_root = root(new as u64, &mut lookup(&forged_nodes)).unwrap();
            let forged_proof = consistency_proof(old as u64, new as u64, &mut lookup(&forged_nodes)).unwrap();
            prop_assert!(verify_consistency(&old_root, old as u64, &forged_root, new as u64, &forged_proof).is_err());
        }
    }
}
