//! Content ids: a document's SHA-256 digest, written as a CIDv1 (multiformats), so the same
//! name means the same bytes on any node and in any IPFS-style tool.
//!
//! A CIDv1 here is `b` (multibase base32, lower case, no padding) over the bytes
//! `0x01` (CID version 1), `0x55` (multicodec `raw`), `0x12` (multihash `sha2-256`), `0x20`
//! (32 bytes) and the digest. Every such id starts `bafkrei`.

use std::fmt;
use std::str::FromStr;

use sha2::{Digest, Sha256};

const PREFIX: [u8; 4] = [0x01, 0x55, 0x12, 0x20];

/// The SHA-256 digest of a document's content.
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct ContentId(pub [u8; 32]);

impl ContentId {
    /// The id of `bytes`.
    pub fn of(bytes: &[u8]) -> Self {
        Self(Sha256::digest(bytes).into())
    }

    /// The digest as lower-case hex.
    pub fn hex(&self) -> String {
        hex::encode(self.0)
    }
}

/// Hashes a document as it streams past.
#[derive(Debug, Clone, Default)]
pub struct ContentHasher {
    hasher: Sha256,
    len: u64,
}

impl ContentHasher {
    /// Adds bytes.
    pub fn update(&mut self, bytes: &[u8]) {
        self.hasher.update(bytes);
        self.len += bytes.len() as u64;
    }
    /// Bytes seen so far.
    pub fn len(&self) -> u64 {
        self.len
    }
    /// Whether no byte has been seen.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }
    /// The content id of everything seen.
    pub fn finish(self) -> ContentId {
        ContentId(self.hasher.finalize().into())
    }
}

impl fmt::Display for ContentId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut bytes = Vec::with_capacity(36);
        bytes.extend_from_slice(&PREFIX);
        bytes.extend_from_slice(&self.0);
        write!(
            f,
            "b{}",
            data_encoding::BASE32_NOPAD
                .encode(&bytes)
                .to_ascii_lowercase()
        )
    }
}

impl fmt::Debug for ContentId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "ContentId({self})")
    }
}

/// A string that is not a sha2-256 raw CIDv1.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("not a sha2-256 content id (bafkrei...)")]
pub struct BadContentId;

impl FromStr for ContentId {
    type Err = BadContentId;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let body = s.strip_prefix('b').ok_or(BadContentId)?;
        let bytes = data_encoding::BASE32_NOPAD
            .decode(body.to_ascii_uppercase().as_bytes())
            .map_err(|_| BadContentId)?;
        if bytes.len() != 36 || bytes[..4] != PREFIX {
            return Err(BadContentId);
        }
        let mut d = [0u8; 32];
        d.copy_from_slice(&bytes[4..]);
        Ok(Self(d))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn matches_the_published_cid_of_hello_world() {
        // `ipfs add --cid-version 1 --raw-leaves` of "hello world" (no newline) is
        // bafkreifzjut3te2nhyekklss27nh3k72ysco7y32koao5eei66wof36n5e.
        let id = ContentId::of(b"hello world");
        assert_eq!(
            id.to_string(),
            "bafkreifzjut3te2nhyekklss27nh3k72ysco7y32koao5eei66wof36n5e"
        );
        assert_eq!(id.to_string().parse::<ContentId>(), Ok(id));
        let mut h = ContentHasher::default();
        h.update(b"hello ");
        h.update(b"world");
        assert_eq!(h.len(), 11);
        assert_eq!(h.finish(), id);
        assert!("bafkrei".parse::<ContentId>().is_err());
        assert!("Qm123".parse::<ContentId>().is_err());
    }
}
