//! Blind indexes: keyed HMAC-SHA256 tokens stored in place of identifying values, so a
//! search can match them without the database ever holding the value.
//!
//! Prefix search follows CipherSweet's approach: a value is stored as one token per prefix
//! length, and a query becomes the single token of its own text. Each search parameter
//! ("domain") has its own subkey, so equal values under different parameters give unrelated
//! tokens. What leaks is equality: two rows with the same name (or the same first three
//! letters) have the same token. See `docs/encryption.md`.

use std::fmt;

use hmac::{Hmac, KeyInit, Mac};
use sha2::Sha256;
use zeroize::Zeroizing;

use crate::random::{Random, array};

type HmacSha256 = Hmac<Sha256>;

/// The node's blind-index key. Zeroed on drop; Debug is redacted.
#[derive(Clone)]
pub struct BlindIndexKey(Zeroizing<[u8; 32]>);

impl fmt::Debug for BlindIndexKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("BlindIndexKey(<redacted>)")
    }
}

impl BlindIndexKey {
    /// A key from its bytes.
    pub fn from_bytes(bytes: [u8; 32]) -> Self {
        Self(Zeroizing::new(bytes))
    }

    /// A fresh random key.
    pub fn random(random: &dyn Random) -> Self {
        Self::from_bytes(array(random))
    }

    /// The raw bytes, for wrapping under the KEK.
    pub fn expose_bytes(&self) -> &[u8; 32] {
        &self.0
    }

    /// The blinder for one domain (a search parameter code).
    pub fn domain(&self, domain: &str) -> Blinder {
        let mut mac = mac_for(&self.0[..]);
        mac.update(b"medmesh/blind/v1\0");
        mac.update(domain.as_bytes());
        let mut subkey = Zeroizing::new([0u8; 32]);
        subkey.copy_from_slice(&mac.finalize().into_bytes());
        Blinder {
            mac: mac_for(&subkey[..]),
        }
    }
}

fn mac_for(key: &[u8]) -> HmacSha256 {
    // HMAC takes keys of any length, so this never fails; the fallback is unreachable.
    <HmacSha256 as KeyInit>::new_from_slice(key)
        .unwrap_or_else(|_| <HmacSha256 as KeyInit>::new(&Default::default()))
}

/// Makes tokens for one domain. Cheap to clone: it holds a keyed HMAC state.
#[derive(Clone)]
pub struct Blinder {
    mac: HmacSha256,
}

impl fmt::Debug for Blinder {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Blinder(<redacted>)")
    }
}

impl Blinder {
    fn token(&self, kind: u8, value: &str) -> String {
        let mut mac = self.mac.clone();
        mac.update(&[kind, 0]);
        mac.update(value.as_bytes());
        // 128 bits: collisions stay negligible. Hex, not base64: a token can then never spell
        // out a name, which keeps "grep the database for names" a meaningful test.
        hex::encode(&mac.finalize().into_bytes()[..16])
    }

    /// The token of a whole value, compared exactly.
    pub fn exact(&self, value: &str) -> String {
        self.token(b'x', value)
    }

    /// The token of a prefix: what a query for `prefix` looks up.
    pub fn prefix(&self, prefix: &str) -> String {
        self.token(b'p', prefix)
    }

    /// The prefix tokens stored for `value`: one per prefix of `min..=max` characters (the
    /// whole value when shorter than `min`). Queries longer than `max` characters are
    /// looked up by their first `max`.
    pub fn prefixes(&self, value: &str, min: usize, max: usize) -> Vec<String> {
        let ends: Vec<usize> = value
            .char_indices()
            .map(|(i, c)| i + c.len_utf8())
            .collect();
        if ends.len() < min {
            return if value.is_empty() {
                Vec::new()
            } else {
                vec![self.prefix(value)]
            };
        }
        ends.iter()
            .skip(min.saturating_sub(1))
            .take(max.saturating_sub(min.saturating_sub(1)))
            .map(|&end| self.prefix(&value[..end]))
            .collect()
    }

    /// The token a prefix query looks up: its own text, cut to `max` characters.
    pub fn query_prefix(&self, query: &str, max: usize) -> String {
        let end = query
            .char_indices()
            .nth(max)
            .map_or(query.len(), |(i, _)| i);
        self.prefix(&query[..end])
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn prefixes_match_queries_of_each_length() {
        let key = BlindIndexKey::from_bytes([3; 32]);
        let family = key.domain("family");
        let stored = family.prefixes("mejía", 3, 32);
        assert_eq!(stored.len(), 3);
        for q in ["mej", "mejí", "mejía"] {
            assert!(stored.contains(&family.query_prefix(q, 32)), "{q}");
        }
        assert!(!stored.contains(&family.query_prefix("me", 32)));
        assert!(!stored.contains(&family.query_prefix("mejias", 32)));
        // Short values are stored whole, and found by their whole text.
        assert_eq!(family.prefixes("li", 3, 32), vec![family.prefix("li")]);
        assert!(family.prefixes("", 3, 32).is_empty());
    }

    #[test]
    fn long_queries_use_their_first_max_characters() {
        let key = BlindIndexKey::from_bytes([3; 32]);
        let line = key.domain("address");
        let stored = line.prefixes("1234 Some Street", 3, 8);
        assert_eq!(stored.len(), 6);
        assert!(stored.contains(&line.query_prefix("1234 Some Street", 8)));
    }

    #[test]
    fn domains_and_keys_separate_tokens() {
        let a = BlindIndexKey::from_bytes([3; 32]);
        let b = BlindIndexKey::from_bytes([4; 32]);
        assert_ne!(
            a.domain("family").exact("Smith"),
            a.domain("given").exact("Smith")
        );
        assert_ne!(
            a.domain("family").exact("Smith"),
            b.domain("family").exact("Smith")
        );
        assert_eq!(
            a.domain("family").exact("Smith"),
            a.domain("family").exact("Smith")
        );
        assert_ne!(
            a.domain("family").exact("smi"),
            a.domain("family").prefix("smi")
        );
        assert_eq!(a.domain("family").exact("Smith").len(), 32);
    }
}
