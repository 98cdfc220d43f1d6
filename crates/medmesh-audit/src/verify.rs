//! Re-deriving the whole log from its rows: what `medmesh audit verify` runs.
//!
//! The verifier is fed the stored rows in leaf order (index, entry bytes, the node hashes
//! the row claims it completed) and the signed checkpoints. It recomputes every leaf and
//! interior node, compares each with what is stored, and checks every checkpoint's root and
//! signature at its size. It keeps only the frontier, so memory is `O(log n)` whatever the
//! size of the log.
//!
//! What it can name: a modified entry (its hash differs from the one stored beside it); a
//! deleted one (a gap in the indices); a reordered or inserted one (the entry at that index
//! does not hash to what was stored there). An attacker who rewrites an entry *and* every
//! stored hash above it is caught by the first signed checkpoint covering it; then the
//! verifier can only name the range between the last good checkpoint and that one.

use crate::checkpoint::{LogVerifierKey, TreeHead};
use crate::merkle::{Frontier, Hash, leaf_hash};

/// The first thing found wrong.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum LogProblem {
    /// A leaf index with no row: the entry was deleted.
    #[error("entry {0} is missing (deleted)")]
    Missing(u64),
    /// A row out of sequence: an entry was inserted or a row renumbered.
    #[error("entry {found} appears where entry {expected} was expected (inserted or reordered)")]
    OutOfSequence {
        /// The index expected next.
        expected: u64,
        /// The index found.
        found: u64,
    },
    /// A row past the end of the tree the writer recorded: added behind its back.
    #[error("entry {0} lies past the recorded end of the log (inserted)")]
    Inserted(u64),
    /// The entry does not hash to the leaf hash stored with it.
    #[error("entry {0} was modified, reordered or replaced (its hash does not match)")]
    Modified(u64),
    /// A stored interior node differs from the one recomputed: something in the range was
    /// rewritten along with its hashes.
    #[error("entries {from}..={to} were rewritten (a stored tree node does not match)")]
    Rewritten {
        /// First entry of the subtree.
        from: u64,
        /// Last entry of the subtree.
        to: u64,
    },
    /// A checkpoint's signature does not verify (or it is not a checkpoint of this log).
    #[error("the signed checkpoint at size {0} does not verify")]
    BadCheckpoint(u64),
    /// The tree recomputed from the rows does not have the root a checkpoint signed.
    #[error(
        "entries after {after} and up to {size} do not match the signed checkpoint at size {size}"
    )]
    RootMismatch {
        /// The last checkpoint size that matched (0 if none).
        after: u64,
        /// The checkpoint that failed.
        size: u64,
    },
    /// The log is shorter than a checkpoint or the stored head says.
    #[error("the log ends at {found} entries but {expected} were recorded")]
    Truncated {
        /// Size recorded in a checkpoint or the head.
        expected: u64,
        /// Rows found.
        found: u64,
    },
    /// The stored head (the writer's frontier) disagrees with the rows.
    #[error("the stored tree head does not match the entries")]
    HeadMismatch,
    /// What is stored beside the entries (the patients' index, the actor and time columns)
    /// disagrees with the hashed entries: an access hidden from a patient's log, or a list
    /// that shows another actor or time than the entry says.
    #[error("{count} stored rows disagree with the entries they derive from: {}", .differences.join("; "))]
    DerivedRows {
        /// How many differences were found.
        count: u64,
        /// The first of them, each naming its entry (never a patient id).
        differences: Vec<String>,
    },
}

/// What a successful verification covered.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VerifyReport {
    /// Entries checked.
    pub entries: u64,
    /// Checkpoints checked.
    pub checkpoints: usize,
    /// The recomputed root, if the log is not empty.
    pub root: Option<Hash>,
}

/// Streams a log's rows and checks them.
#[derive(Debug)]
pub struct LogVerifier {
    frontier: Frontier,
    /// Checkpoints yet to reach, by size ascending.
    pending: Vec<TreeHead>,
    checked: usize,
    last_good: u64,
    /// The nodes the last leaf completed (one buffer for every leaf).
    completed: Vec<Hash>,
}

impl LogVerifier {
    /// Starts a verification: opens every checkpoint with `key` first (a bad signature is
    /// reported before any row is read).
    ///
    /// # Errors
    /// [`LogProblem::BadCheckpoint`].
    pub fn new(keys: &[LogVerifierKey], checkpoints: &[(u64, String)]) -> Result<Self, LogProblem> {
        let mut pending = Vec::with_capacity(checkpoints.len());
        for (size, text) in checkpoints {
            // The key is the one named like the checkpoint's origin (its first line).
            let origin = text.split('\n').next().unwrap_or_default();
            let head = keys
                .iter()
                .find(|k| k.name() == origin)
                .ok_or(LogProblem::BadCheckpoint(*size))?
                .open(text)
                .map_err(|_| LogProblem::BadCheckpoint(*size))?;
            if head.size != *size {
                return Err(LogProblem::BadCheckpoint(*size));
            }
            pending.push(head);
        }
        pending.sort_by_key(|h| std::cmp::Reverse(h.size));
        let mut v = Self {
            frontier: Frontier::new(),
            pending,
            checked: 0,
            last_good: 0,
            completed: Vec::new(),
        };
        // A checkpoint of the empty log has nothing to check but its signature.
        while v.pending.last().is_some_and(|h| h.size == 0) {
            v.pending.pop();
            v.checked += 1;
        }
        Ok(v)
    }

    /// Feeds the next row.
    ///
    /// # Errors
    /// The first [`LogProblem`] found.
    pub fn feed(&mut self, index: u64, entry: &[u8], stored: &[u8]) -> Result<(), LogProblem> {
        self.feed_hashed(index, leaf_hash(entry), stored)
    }

    /// [`Self::feed`] with the entry's leaf hash already computed (leaf hashes are
    /// independent of each other, so a caller may compute them on other cores).
    ///
    /// # Errors
    /// As [`Self::feed`].
    pub fn feed_hashed(&mut self, index: u64, leaf: Hash, stored: &[u8]) -> Result<(), LogProblem> {
        let expected = self.frontier.size();
        if index > expected {
            return Err(LogProblem::Missing(expected));
        }
        if index < expected {
            return Err(LogProblem::OutOfSequence {
                expected,
                found: index,
            });
        }
        let completed = &mut self.completed;
        self.frontier.push_into(leaf, completed);
        if stored.len() != 32 * completed.len() {
            return Err(LogProblem::Modified(index));
        }
        // The nodes come in the order of `merkle::nodes_completed_by`: at each level, the
        // one whose subtree ends at this leaf.
        for (level, (hash, have)) in completed.iter().zip(stored.chunks_exact(32)).enumerate() {
            let node = index >> level;
            if hash.as_slice() != have {
                return Err(if level == 0 {
                    LogProblem::Modified(index)
                } else {
                    LogProblem::Rewritten {
                        from: node << level,
                        to: ((node + 1) << level) - 1,
                    }
                });
            }
        }
        if self.pending.last().is_some_and(|h| h.size == index + 1)
            && let Some(head) = self.pending.pop()
        {
            if self.frontier.root() != Some(head.root) {
                return Err(LogProblem::RootMismatch {
                    after: self.last_good,
                    size: head.size,
                });
            }
            self.last_good = head.size;
            self.checked += 1;
        }
        Ok(())
    }

    /// Ends the verification against the stored head (size and frontier bytes).
    ///
    /// # Errors
    /// [`LogProblem::Truncated`] or [`LogProblem::HeadMismatch`].
    pub fn finish(self, head_size: u64, head_peaks: &[u8]) -> Result<VerifyReport, LogProblem> {
        let found = self.frontier.size();
        if let Some(h) = self.pending.last() {
            return Err(LogProblem::Truncated {
                expected: h.size,
                found,
            });
        }
        if head_size > found {
            return Err(LogProblem::Truncated {
                expected: head_size,
                found,
            });
        }
        if head_size != found || head_peaks != self.frontier.to_bytes().as_slice() {
            return Err(LogProblem::HeadMismatch);
        }
        Ok(VerifyReport {
            entries: found,
            checkpoints: self.checked,
            root: self.frontier.root(),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::checkpoint::LogSigner;

    struct Log {
        rows: Vec<(u64, Vec<u8>, Vec<u8>)>,
        frontier: Frontier,
        checkpoints: Vec<(u64, String)>,
    }

    fn log(n: u64, checkpoint_every: u64) -> (Log, LogVerifierKey) {
        let signer = LogSigner::new("test/audit", [5; 32]);
        let mut frontier = Frontier::new();
        let mut rows = Vec::new();
        let mut checkpoints = Vec::new();
        for i in 0..n {
            let e = format!("entry {i}").into_bytes();
            let nodes = frontier.push(leaf_hash(&e)).concat();
            rows.push((i, e, nodes));
            if (i + 1) % checkpoint_every == 0 {
                let head = TreeHead {
                    origin: "test/audit".into(),
                    size: i + 1,
                    root: frontier.root().unwrap_or_default(),
                    timestamp_micros: 0,
                    patient_map: None,
                };
                checkpoints.push((i + 1, signer.sign(&head)));
            }
        }
        (
            Log {
                rows,
                frontier,
                checkpoints,
            },
            signer.verifier(),
        )
    }

    fn run(l: &Log, key: &LogVerifierKey) -> Result<VerifyReport, LogProblem> {
        let mut v = LogVerifier::new(std::slice::from_ref(key), &l.checkpoints)?;
        for (i, e, n) in &l.rows {
            v.feed(*i, e, n)?;
        }
        v.finish(l.frontier.size(), &l.frontier.to_bytes())
    }

    #[test]
    fn an_intact_log_verifies() {
        let (l, key) = log(100, 10);
        let r = run(&l, &key).unwrap();
        assert_eq!((r.entries, r.checkpoints), (100, 10));
    }

    #[test]
    fn each_kind_of_tampering_is_named() {
        let (l, key) = log(100, 10);

        let mut modified = log(100, 10).0;
        modified.rows[37].1 = b"entry 37 (edited)".to_vec();
        assert_eq!(run(&modified, &key), Err(LogProblem::Modified(37)));

        let mut deleted = log(100, 10).0;
        deleted.rows.remove(37);
        assert_eq!(run(&deleted, &key), Err(LogProblem::Missing(37)));

        let mut reordered = log(100, 10).0;
        let (a, b) = (reordered.rows[40].1.clone(), reordered.rows[41].1.clone());
        reordered.rows[40].1 = b;
        reordered.rows[41].1 = a;
        assert_eq!(run(&reordered, &key), Err(LogProblem::Modified(40)));

        let mut inserted = log(100, 10).0;
        inserted
            .rows
            .insert(51, (51, b"forged".to_vec(), vec![0; 32]));
        assert_eq!(run(&inserted, &key), Err(LogProblem::Modified(51)));
        let mut duplicated = log(100, 10).0;
        duplicated
            .rows
            .insert(51, (50, b"forged".to_vec(), vec![0; 32]));
        assert_eq!(
            run(&duplicated, &key),
            Err(LogProblem::OutOfSequence {
                expected: 51,
                found: 50
            })
        );

        // Leaf 39 completes a node at each of levels 0 to 3; the one at level 2 covers
        // entries 36 to 39.
        let mut node_edited = log(100, 10).0;
        node_edited.rows[39].2[64] ^= 1;
        assert_eq!(
            run(&node_edited, &key),
            Err(LogProblem::Rewritten { from: 36, to: 39 })
        );
        let mut node_dropped = log(100, 10).0;
        node_dropped.rows[39].2.truncate(96);
        assert_eq!(run(&node_dropped, &key), Err(LogProblem::Modified(39)));

        let mut truncated = log(100, 10).0;
        truncated.rows.truncate(95);
        assert_eq!(
            run(&truncated, &key),
            Err(LogProblem::Truncated {
                expected: 100,
                found: 95
            })
        );

        // Rewriting an entry and every hash stored above it: the checkpoint catches it.
        let mut rewritten = Log {
            rows: Vec::new(),
            frontier: Frontier::new(),
            checkpoints: l.checkpoints.clone(),
        };
        for (i, e, _) in &l.rows {
            let e = if *i == 33 {
                b"forged".to_vec()
            } else {
                e.clone()
            };
            let nodes = rewritten.frontier.push(leaf_hash(&e)).concat();
            rewritten.rows.push((*i, e, nodes));
        }
        assert_eq!(
            run(&rewritten, &key),
            Err(LogProblem::RootMismatch {
                after: 30,
                size: 40
            })
        );

        let mut forged_cp = log(100, 10).0;
        forged_cp.checkpoints[3].1 = forged_cp.checkpoints[3].1.replacen("\n40\n", "\n41\n", 1);
        assert_eq!(run(&forged_cp, &key), Err(LogProblem::BadCheckpoint(40)));
    }
}
