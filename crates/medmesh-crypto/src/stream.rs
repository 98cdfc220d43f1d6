//! Blob streams: documents of any size sealed in 64 KiB chunks, so a 2 GB upload never sits in
//! memory.
//!
//! The construction is STREAM (Hoang, Reyhanitabar, Rogaway and Vizár, 2015) over
//! AES-256-GCM, from RustCrypto's `aead-stream` (big-endian 32-bit counter). Each chunk's
//! nonce is a random 7-byte prefix, the chunk counter and a last-chunk flag, so chunks
//! cannot be reordered, dropped, repeated, or cut off at a chunk boundary without the open
//! failing.
//!
//! Layout: `b"mmb\x01"`, the 16-byte [`KeyId`], the 7-byte nonce prefix, then frames of
//! [`FRAME`] bytes (a sealed [`CHUNK`]) and one last, shorter or equal, frame (which may hold
//! no plaintext at all). The associated data of every chunk is the header plus a caller's
//! context, as for [`crate::Envelope`].
//!
//! [`StreamSealer`] and [`StreamOpener`] are push-based: the caller feeds bytes as they
//! arrive from the network or the object store and gets sealed (or opened) bytes back. They
//! hold at most one chunk.

use aead_stream::{DecryptorBE32, EncryptorBE32};
use aes_gcm::Aes256Gcm;
use aes_gcm::aead::{Buffer, KeyInit};

use crate::data_keys::{DataKey, KeyId};
use crate::random::{Random, array};

/// The first bytes of every sealed blob (version 1).
pub const MAGIC: [u8; 4] = *b"mmb\x01";
/// Plaintext bytes per chunk.
pub const CHUNK: usize = 64 * 1024;
/// AES-GCM tag length.
const TAG: usize = 16;
/// Sealed bytes per full chunk.
pub const FRAME: usize = CHUNK + TAG;
/// Header length: magic, key id, nonce prefix.
pub const HEADER: usize = 4 + 16 + 7;

/// Why a sealed blob does not open.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum StreamError {
    /// Not a sealed blob, or the header is cut short.
    #[error("not a sealed blob")]
    Malformed,
    /// A chunk does not authenticate: altered, reordered, truncated, or the wrong key.
    #[error("sealed blob does not authenticate")]
    Unauthentic,
}

/// The key id a sealed blob names, read from its header.
pub fn key_id_of(header: &[u8]) -> Result<KeyId, StreamError> {
    if header.len() < HEADER || header[..4] != MAGIC {
        return Err(StreamError::Malformed);
    }
    let mut id = [0u8; 16];
    id.copy_from_slice(&header[4..20]);
    Ok(KeyId(id))
}

/// The bytes of `vec` from `start` on, as the buffer an AEAD seals or opens in place. A chunk
/// is copied onto the output once and sealed or opened where it lies: copying it into a
/// buffer of its own, sealing that into a new one and copying the result onto the output
/// cost three passes over every byte, on the one task that streams a document.
struct TailOf<'a> {
    vec: &'a mut Vec<u8>,
    start: usize,
}

impl AsRef<[u8]> for TailOf<'_> {
    fn as_ref(&self) -> &[u8] {
        &self.vec[self.start..]
    }
}

impl AsMut<[u8]> for TailOf<'_> {
    fn as_mut(&mut self) -> &mut [u8] {
        &mut self.vec[self.start..]
    }
}

impl Buffer for TailOf<'_> {
    fn extend_from_slice(&mut self, other: &[u8]) -> aes_gcm::aead::Result<()> {
        self.vec.extend_from_slice(other);
        Ok(())
    }

    fn truncate(&mut self, len: usize) {
        self.vec.truncate(self.start + len);
    }
}

/// Copies `bytes` onto the end of `out` and seals or opens them there with `in_place`; when
/// that fails, `out` is left as it was (no unauthenticated plaintext stays behind).
fn onto_in_place(
    out: &mut Vec<u8>,
    bytes: &[u8],
    in_place: impl FnOnce(&mut dyn Buffer) -> aes_gcm::aead::Result<()>,
) -> Result<(), StreamError> {
    let start = out.len();
    // Room for a tag too, so sealing never grows the buffer.
    out.reserve(bytes.len() + TAG);
    out.extend_from_slice(bytes);
    in_place(&mut TailOf { vec: out, start }).map_err(|_| {
        out.truncate(start);
        StreamError::Unauthentic
    })
}

/// Feeds `data` in units of `unit` bytes, holding the latest unit in `pending`: a unit goes
/// to `step` only once more bytes show it is not the last (the last is sealed or opened
/// differently, by `finish`), and straight from `data` when a whole unit and more is at hand.
fn feed_units(
    pending: &mut Vec<u8>,
    mut data: &[u8],
    unit: usize,
    mut step: impl FnMut(&[u8]) -> Result<(), StreamError>,
) -> Result<(), StreamError> {
    while !data.is_empty() {
        if pending.len() == unit {
            step(pending)?;
            pending.clear();
        }
        if pending.is_empty() && data.len() > unit {
            step(&data[..unit])?;
            data = &data[unit..];
            continue;
        }
        let take = (unit - pending.len()).min(data.len());
        pending.extend_from_slice(&data[..take]);
        data = &data[take..];
    }
    Ok(())
}

fn aad(header: &[u8], context: &[u8]) -> Vec<u8> {
    let mut aad = Vec::with_capacity(HEADER + context.len());
    aad.extend_from_slice(&header[..HEADER]);
    aad.extend_from_slice(context);
    aad
}

/// Seals a stream of bytes, chunk by chunk.
pub struct StreamSealer {
    encryptor: EncryptorBE32<Aes256Gcm>,
    aad: Vec<u8>,
    pending: Vec<u8>,
}

impl std::fmt::Debug for StreamSealer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("StreamSealer")
            .field("pending", &self.pending.len())
            .finish_non_exhaustive()
    }
}

impl StreamSealer {
    /// Starts a sealed blob under `key` (named `key_id`) for `context`. The header bytes are
    /// written to `out`.
    pub fn start(
        key: &DataKey,
        key_id: &KeyId,
        context: &[u8],
        random: &dyn Random,
        out: &mut Vec<u8>,
    ) -> Self {
        let prefix: [u8; 7] = array(random);
        let mut header = Vec::with_capacity(HEADER);
        header.extend_from_slice(&MAGIC);
        header.extend_from_slice(&key_id.0);
        header.extend_from_slice(&prefix);
        out.extend_from_slice(&header);
        let cipher = Aes256Gcm::new(&(*key.bytes()).into());
        Self {
            encryptor: EncryptorBE32::from_aead(cipher, &prefix.into()),
            aad: aad(&header, context),
            pending: Vec::with_capacity(CHUNK),
        }
    }

    /// Feeds plaintext; every chunk completed (and known not to be the last) is sealed onto
    /// `out`.
    ///
    /// # Errors
    /// [`StreamError::Unauthentic`] only if the counter overflows (past 256 TiB).
    pub fn push(&mut self, data: &[u8], out: &mut Vec<u8>) -> Result<(), StreamError> {
        let Self {
            encryptor,
            aad,
            pending,
        } = self;
        feed_units(pending, data, CHUNK, |chunk| {
            onto_in_place(out, chunk, |b| encryptor.encrypt_next_in_place(aad, b))
        })
    }

    /// Seals the last chunk (possibly empty) onto `out`.
    ///
    /// # Errors
    /// As [`Self::push`].
    pub fn finish(self, out: &mut Vec<u8>) -> Result<(), StreamError> {
        let Self {
            encryptor,
            aad,
            pending,
        } = self;
        onto_in_place(out, &pending, |b| encryptor.encrypt_last_in_place(&aad, b))
    }
}

/// Opens a sealed blob as its bytes arrive.
pub struct StreamOpener {
    decryptor: DecryptorBE32<Aes256Gcm>,
    aad: Vec<u8>,
    pending: Vec<u8>,
}

impl std::fmt::Debug for StreamOpener {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("StreamOpener")
            .field("pending", &self.pending.len())
            .finish_non_exhaustive()
    }
}

impl StreamOpener {
    /// Starts opening, given the blob's first [`HEADER`] bytes and the key its header names.
    ///
    /// # Errors
    /// [`StreamError::Malformed`] when `header` is not a sealed-blob header.
    pub fn start(key: &DataKey, header: &[u8], context: &[u8]) -> Result<Self, StreamError> {
        key_id_of(header)?;
        let mut prefix = [0u8; 7];
        prefix.copy_from_slice(&header[20..HEADER]);
        let cipher = Aes256Gcm::new(&(*key.bytes()).into());
        Ok(Self {
            decryptor: DecryptorBE32::from_aead(cipher, &prefix.into()),
            aad: aad(header, context),
            pending: Vec::with_capacity(FRAME + 1),
        })
    }

    /// Feeds sealed bytes (after the header); every chunk known not to be the last is opened
    /// onto `out`.
    ///
    /// # Errors
    /// [`StreamError::Unauthentic`] when a chunk does not authenticate.
    pub fn push(&mut self, data: &[u8], out: &mut Vec<u8>) -> Result<(), StreamError> {
        let Self {
            decryptor,
            aad,
            pending,
        } = self;
        feed_units(pending, data, FRAME, |frame| {
            onto_in_place(out, frame, |b| decryptor.decrypt_next_in_place(aad, b))
        })
    }

    /// Opens the last chunk onto `out`: the stream has ended.
    ///
    /// # Errors
    /// [`StreamError::Unauthentic`] when it does not authenticate, which is also what a blob
    /// cut off at a chunk boundary gives.
    pub fn finish(self, out: &mut Vec<u8>) -> Result<(), StreamError> {
        let Self {
            decryptor,
            aad,
            pending,
        } = self;
        if pending.len() < TAG {
            return Err(StreamError::Unauthentic);
        }
        onto_in_place(out, &pending, |b| decryptor.decrypt_last_in_place(&aad, b))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::random::testing::Counter;

    fn seal(data: &[u8], piece: usize, context: &[u8]) -> (DataKey, Vec<u8>) {
        let r = Counter::default();
        let key = DataKey::random(&r);
        let id = KeyId::random(&r);
        let mut out = Vec::new();
        let mut s = StreamSealer::start(&key, &id, context, &r, &mut out);
        for part in data.chunks(piece.max(1)) {
            s.push(part, &mut out).unwrap();
        }
        s.finish(&mut out).unwrap();
        (key, out)
    }

    fn open(
        key: &DataKey,
        sealed: &[u8],
        piece: usize,
        context: &[u8],
    ) -> Result<Vec<u8>, StreamError> {
        let mut o = StreamOpener::start(key, &sealed[..HEADER.min(sealed.len())], context)?;
        let mut out = Vec::new();
        for part in sealed[HEADER..].chunks(piece.max(1)) {
            o.push(part, &mut out)?;
        }
        o.finish(&mut out)?;
        Ok(out)
    }

    #[test]
    fn round_trips_at_every_size_around_a_chunk_boundary() {
        for len in [0, 1, CHUNK - 1, CHUNK, CHUNK + 1, 3 * CHUNK, 3 * CHUNK + 7] {
            let data: Vec<u8> = (0..len).map(|i| (i % 251) as u8).collect();
            for piece in [1000, CHUNK, 7 * CHUNK] {
                let (key, sealed) = seal(&data, piece, b"ctx");
                let frames = len.div_ceil(CHUNK).max(1);
                assert_eq!(sealed.len(), HEADER + len + TAG * frames);
                // Pieces smaller than a frame, a frame exactly, a frame and a byte, several
                // frames (opened straight from the input), and the whole blob at once.
                for opened_in in [4099, FRAME, FRAME + 1, 7 * FRAME + 5, sealed.len()] {
                    assert_eq!(
                        open(&key, &sealed, opened_in, b"ctx").unwrap(),
                        data,
                        "len {len}, sealed in {piece}, opened in {opened_in}"
                    );
                }
            }
        }
    }

    /// The chunks sealed in place are the bytes `aead-stream`'s own sealing gives, so blobs
    /// written before (and by any other STREAM implementation) open unchanged.
    #[test]
    fn sealing_in_place_writes_the_bytes_the_library_seals() {
        use aes_gcm::aead::Payload;
        let data: Vec<u8> = (0..3 * CHUNK + 7).map(|i| (i % 241) as u8).collect();
        let (key, sealed) = seal(&data, 5 * CHUNK, b"ctx");
        let mut prefix = [0u8; 7];
        prefix.copy_from_slice(&sealed[20..HEADER]);
        let mut library =
            EncryptorBE32::from_aead(Aes256Gcm::new(&(*key.bytes()).into()), &prefix.into());
        let aad = aad(&sealed[..HEADER], b"ctx");
        let mut expected = sealed[..HEADER].to_vec();
        let chunks: Vec<&[u8]> = data.chunks(CHUNK).collect();
        for chunk in &chunks[..chunks.len() - 1] {
            let frame = library
                .encrypt_next(Payload {
                    msg: chunk,
                    aad: &aad,
                })
                .unwrap();
            expected.extend_from_slice(&frame);
        }
        let last = library
            .encrypt_last(Payload {
                msg: chunks[chunks.len() - 1],
                aad: &aad,
            })
            .unwrap();
        expected.extend_from_slice(&last);
        assert_eq!(sealed, expected);
    }

    #[test]
    fn altered_truncated_or_moved_blobs_fail() {
        let data = vec![7u8; 2 * CHUNK + 10];
        let (key, sealed) = seal(&data, 9000, b"Binary/1");
        let mut flipped = sealed.clone();
        flipped[HEADER + CHUNK + 3] ^= 1;
        for piece in [5000, sealed.len()] {
            assert_eq!(
                open(&key, &flipped, piece, b"Binary/1"),
                Err(StreamError::Unauthentic)
            );
        }
        // Cut off after whole chunks: the last frame seen is not marked last.
        let cut = &sealed[..HEADER + 2 * FRAME];
        assert_eq!(
            open(&key, cut, 5000, b"Binary/1"),
            Err(StreamError::Unauthentic)
        );
        // The same bytes under another context (another patient's blob).
        assert_eq!(
            open(&key, &sealed, 5000, b"Binary/2"),
            Err(StreamError::Unauthentic)
        );
        // Chunks swapped.
        let mut swapped = sealed.clone();
        let (a, b) = (HEADER, HEADER + FRAME);
        let first: Vec<u8> = swapped[a..a + FRAME].to_vec();
        let second: Vec<u8> = swapped[b..b + FRAME].to_vec();
        swapped[a..a + FRAME].copy_from_slice(&second);
        swapped[b..b + FRAME].copy_from_slice(&first);
        assert_eq!(
            open(&key, &swapped, 5000, b"Binary/1"),
            Err(StreamError::Unauthentic)
        );
        assert_eq!(key_id_of(b"nope"), Err(StreamError::Malformed));
    }
}
