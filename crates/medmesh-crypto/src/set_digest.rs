//! A keyed digest of a set, to tell whether two sets are equal when they are read in different
//! orders and are too big to hold: `audit verify` compares the patient rows the entries name
//! (in leaf order) with the `audit_patient` rows (in the table's key order) this way.
//!
//! It is the additive multiset hash (Clarke et al., "Incremental multiset hash functions",
//! 2003) over a keyed pseudo-random function: each item adds its 128-bit SipHash-2-4 to a sum
//! modulo 2^128. Two different sets, each without repeats, give the same sum only if the
//! function's values on the items they differ by cancel, which for a random function has
//! probability 2^-128. The key must be drawn after the data is fixed and never shown: no one
//! can then choose items that cancel (an unkeyed additive hash falls to Wagner's generalised
//! birthday attack), and no one learns anything from a failed attempt. SipHash-2-4 was built
//! as such a function (Aumasson and Bernstein, 2012); its 128-bit output has had less study
//! than its 64-bit one, and even 2^-64 per verification, with no feedback to an attacker, is
//! far below any other risk here. It costs a quarter of HMAC-SHA256 per item, and
//! `audit verify` digests every patient row twice. Repeated items are the caller's to rule
//! out (both sides here come from sets: a table key and a deduplicated list).

use std::hash::Hasher as _;

use siphasher::sip128::{Hasher128 as _, SipHasher24};
use zeroize::Zeroizing;

use crate::random::{Random, array};

/// A running digest of a set of items; two digests made from one [`SetDigestKey`] are equal
/// when their items are (with the probability above).
#[derive(Clone)]
pub struct SetDigest {
    prf: SipHasher24,
    sum: u128,
    count: u64,
}

/// The one-use key two digests share. Zeroed on drop; Debug is redacted.
pub struct SetDigestKey(Zeroizing<[u8; 16]>);

impl std::fmt::Debug for SetDigestKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("SetDigestKey(<redacted>)")
    }
}

impl SetDigestKey {
    /// A fresh key: draw it after the sets to compare are fixed.
    pub fn random(random: &dyn Random) -> Self {
        Self(Zeroizing::new(array(random)))
    }

    /// An empty digest under this key.
    pub fn digest(&self) -> SetDigest {
        SetDigest {
            prf: SipHasher24::new_with_key(&self.0),
            sum: 0,
            count: 0,
        }
    }
}

impl std::fmt::Debug for SetDigest {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SetDigest")
            .field("count", &self.count)
            .finish_non_exhaustive()
    }
}

impl SetDigest {
    /// Adds the item `(number, text)`.
    pub fn add(&mut self, number: u64, text: &[u8]) {
        // The number has a fixed width, so (number, text) pairs map to distinct inputs.
        let mut prf = self.prf;
        prf.write(&number.to_be_bytes());
        prf.write(text);
        self.sum = self.sum.wrapping_add(prf.finish128().as_u128());
        self.count += 1;
    }

    /// How many items were added.
    pub fn count(&self) -> u64 {
        self.count
    }

    /// Adds every item of `other` (made under the same key): the digest of the union of two
    /// disjoint sets.
    pub fn merge(&mut self, other: &SetDigest) {
        self.sum = self.sum.wrapping_add(other.sum);
        self.count += other.count;
    }

    /// Whether `other` digests the same set.
    pub fn same_as(&self, other: &SetDigest) -> bool {
        self.count == other.count && self.sum == other.sum
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::random::OsRandom;

    #[test]
    fn equal_sets_in_any_order_agree_and_any_change_is_seen() {
        let key = SetDigestKey::random(&OsRandom);
        let items: Vec<(u64, String)> = (0..1000).map(|i| (i / 3, format!("p{}", i % 7))).collect();
        let mut forward = key.digest();
        for (n, t) in &items {
            forward.add(*n, t.as_bytes());
        }
        let mut backward = key.digest();
        for (n, t) in items.iter().rev() {
            backward.add(*n, t.as_bytes());
        }
        assert!(forward.same_as(&backward));

        let mut one_missing = key.digest();
        for (n, t) in items.iter().skip(1) {
            one_missing.add(*n, t.as_bytes());
        }
        assert!(!forward.same_as(&one_missing));

        // Same count, one item swapped for another.
        let mut swapped = one_missing.clone();
        swapped.add(999_999, b"p0");
        assert_eq!(swapped.count(), forward.count());
        assert!(!forward.same_as(&swapped));

        // The number and the text are not confused: (1, "2x") is not (12, "x").
        let (mut a, mut b) = (key.digest(), key.digest());
        a.add(1, b"2x");
        b.add(12, b"x");
        assert!(!a.same_as(&b));

        // Halves merged are the whole.
        let (mut first, mut second) = (key.digest(), key.digest());
        for (i, (n, t)) in items.iter().enumerate() {
            if i % 2 == 0 {
                first.add(*n, t.as_bytes())
            } else {
                second.add(*n, t.as_bytes())
            }
        }
        first.merge(&second);
        assert!(first.same_as(&forward));
    }

    #[test]
    fn another_key_gives_another_digest() {
        let (k1, k2) = (
            SetDigestKey::random(&OsRandom),
            SetDigestKey::random(&OsRandom),
        );
        let (mut a, mut b) = (k1.digest(), k2.digest());
        a.add(7, b"p1");
        b.add(7, b"p1");
        assert!(!a.same_as(&b));
    }
}
