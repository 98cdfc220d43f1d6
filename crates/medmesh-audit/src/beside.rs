//! The fields of an entry that the store keeps beside it, read from the leaf bytes.
//!
//! `audit verify` reads these for every entry of the log, so they are read without building
//! the whole entry. Most leaves are exactly what [`crate::AuditEntry::to_leaf`] wrote:
//! compact JSON, ASCII, no escapes. A narrow reader takes those in one pass, borrowing every
//! string. Anything else it meets (whitespace, an escape, a byte outside ASCII, a duplicate
//! field, a number that is not a plain integer, a value of an unexpected kind) makes it give
//! up, and `serde_json` reads the leaf instead. So the result never depends on which reader
//! ran: the narrow one accepts only leaves on which it agrees with `serde_json`, and a test
//! holds it to that over generated and damaged leaves.

use std::borrow::Cow;

use serde::Deserialize;

use crate::chain::{ChainFold, LinkProblem, LinkRef, PrevEntry, b64_hash};
use crate::merkle::Hash;

/// The fields of an entry that the store keeps beside it (the `time_micros` and `actor`
/// columns, the `audit_patient` rows), and its chain links.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct StoredBeside<'a> {
    /// When.
    pub time_micros: i64,
    /// Who.
    #[serde(borrow)]
    pub actor: Cow<'a, str>,
    /// Whose record.
    #[serde(borrow, default)]
    pub patients: Vec<Cow<'a, str>>,
    /// The entry's place in each patient's chain.
    #[serde(borrow, default)]
    pub chain: Vec<LinkBeside<'a>>,
}

/// One chain link as read from a leaf ([`crate::chain::ChainLink`], borrowed).
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct LinkBeside<'a> {
    /// The patient.
    #[serde(borrow)]
    pub patient: Cow<'a, str>,
    /// The entry's position in the patient's chain, from 1.
    pub seq: u64,
    /// The patient's previous entry; absent for their first.
    #[serde(default)]
    pub prev: Option<PrevEntry>,
}

impl LinkBeside<'_> {
    /// The link as the chain fold takes it.
    pub fn as_ref(&self) -> LinkRef<'_> {
        LinkRef {
            patient: &self.patient,
            seq: self.seq,
            prev: self.prev,
        }
    }
}

impl StoredBeside<'_> {
    /// Folds the entry into `fold` as entry `index` with leaf hash `hash`
    /// ([`ChainFold::feed`]).
    pub fn fold_into(&self, fold: &mut ChainFold, index: u64, hash: Hash) -> Option<LinkProblem> {
        let patients: Vec<&str> = self.patients.iter().map(|p| &**p).collect();
        let chain: Vec<LinkRef<'_>> = self.chain.iter().map(LinkBeside::as_ref).collect();
        fold.feed(index, hash, &patients, &chain)
    }
}

impl<'a> StoredBeside<'a> {
    /// Reads them from an entry's leaf bytes.
    ///
    /// # Errors
    /// When the bytes are not an entry.
    pub fn from_leaf(bytes: &'a [u8]) -> Result<Self, serde_json::Error> {
        match Reader::read(bytes) {
            Some(fields) => Ok(fields),
            None => serde_json::from_slice(bytes),
        }
    }
}

/// The narrow reader: `None` means "not a leaf in the form `to_leaf` writes; ask serde_json".
struct Reader<'a> {
    bytes: &'a [u8],
    /// The same bytes as text (they are printable ASCII, checked once).
    text: &'a str,
    at: usize,
}

impl<'a> Reader<'a> {
    /// Reads the leaf's fields, or `None` to leave it to serde_json.
    fn read(bytes: &'a [u8]) -> Option<StoredBeside<'a>> {
        // Printable ASCII only, checked once for the whole leaf: every string is then valid
        // UTF-8 as it stands, holds no control character (which JSON forbids unescaped),
        // and no multi-byte character can hide a quote or a backslash.
        if !printable_ascii(bytes) {
            return None;
        }
        let text = std::str::from_utf8(bytes).ok()?;
        Self { bytes, text, at: 0 }.entry()
    }

    fn entry(mut self) -> Option<StoredBeside<'a>> {
        let mut time_micros = None;
        let mut actor = None;
        let mut patients = None;
        let mut chain = None;
        self.object(|r, key| match key {
            "time_micros" => once(&mut time_micros, r.int().and_then(|n| n.signed())?),
            "actor" => once(&mut actor, Cow::Borrowed(r.string()?)),
            "patients" => once(&mut patients, r.strings()?),
            "chain" => once(&mut chain, r.links()?),
            _ => r.skip(),
        })?;
        // Nothing may follow the entry (serde_json allows whitespace; `to_leaf` writes none).
        if self.at != self.bytes.len() {
            return None;
        }
        Some(StoredBeside {
            time_micros: time_micros?,
            actor: actor?,
            patients: patients.unwrap_or_default(),
            chain: chain.unwrap_or_default(),
        })
    }

    fn peek(&self) -> Option<u8> {
        self.bytes.get(self.at).copied()
    }

    fn eat(&mut self, byte: u8) -> Option<()> {
        (self.peek()? == byte).then(|| self.at += 1)
    }

    /// `{"key":value,...}`, each value read by `field` (which sees the key).
    fn object(&mut self, mut field: impl FnMut(&mut Self, &str) -> Option<()>) -> Option<()> {
        self.list(b'{', b'}', |r| {
            let key = r.string()?;
            r.eat(b':')?;
            field(r, key)
        })
    }

    /// `[item,...]`, each item read by `item`.
    fn array(&mut self, item: impl FnMut(&mut Self) -> Option<()>) -> Option<()> {
        self.list(b'[', b']', item)
    }

    /// `open`, items read by `item` and separated by commas, `close`.
    fn list(
        &mut self,
        open: u8,
        close: u8,
        mut item: impl FnMut(&mut Self) -> Option<()>,
    ) -> Option<()> {
        self.eat(open)?;
        if self.eat(close).is_some() {
            return Some(());
        }
        loop {
            item(self)?;
            if self.eat(b',').is_none() {
                return self.eat(close);
            }
        }
    }

    /// A string without escapes, borrowed.
    fn string(&mut self) -> Option<&'a str> {
        self.eat(b'"')?;
        let start = self.at;
        let len = memchr::memchr2(b'"', b'\\', self.bytes.get(start..)?)?;
        if self.bytes.get(start + len) != Some(&b'"') {
            return None;
        }
        self.at = start + len + 1;
        self.text.get(start..start + len)
    }

    fn strings(&mut self) -> Option<Vec<Cow<'a, str>>> {
        let mut out = Vec::new();
        self.array(|r| {
            out.push(Cow::Borrowed(r.string()?));
            Some(())
        })?;
        Some(out)
    }

    /// A plain JSON integer: an optional minus, then `0` or digits not starting with `0`,
    /// not followed by a fraction or an exponent.
    fn int(&mut self) -> Option<Int> {
        let negative = self.eat(b'-').is_some();
        let start = self.at;
        let mut value: u64 = 0;
        while let Some(d) = self.peek().filter(u8::is_ascii_digit) {
            value = value.checked_mul(10)?.checked_add(u64::from(d - b'0'))?;
            self.at += 1;
        }
        let digits = self.at - start;
        if digits == 0 || (digits > 1 && self.bytes[start] == b'0') {
            return None;
        }
        if matches!(self.peek(), Some(b'.' | b'e' | b'E')) {
            return None;
        }
        Some(Int { negative, value })
    }

    fn links(&mut self) -> Option<Vec<LinkBeside<'a>>> {
        let mut out = Vec::new();
        self.array(|r| {
            let mut patient = None;
            let mut seq = None;
            let mut prev = None;
            r.object(|r, key| match key {
                "patient" => once(&mut patient, Cow::Borrowed(r.string()?)),
                "seq" => once(&mut seq, r.int()?.unsigned()?),
                "prev" => once(&mut prev, r.prev()?),
                _ => None,
            })?;
            out.push(LinkBeside {
                patient: patient?,
                seq: seq?,
                prev,
            });
            Some(())
        })?;
        Some(out)
    }

    fn prev(&mut self) -> Option<PrevEntry> {
        let mut index = None;
        let mut hash: Option<Hash> = None;
        self.object(|r, key| match key {
            "index" => once(&mut index, r.int()?.unsigned()?),
            "hash" => once(&mut hash, b64_hash::decode(r.string()?)?),
            _ => None,
        })?;
        Some(PrevEntry {
            index: index?,
            hash: hash?,
        })
    }

    /// Skips a value of a field the reader does not keep: a string, an array of strings,
    /// an integer or `null`; anything else gives up.
    fn skip(&mut self) -> Option<()> {
        match self.peek()? {
            b'"' => self.string().map(drop),
            b'[' => self.array(|r| r.string().map(drop)),
            b'n' => {
                let rest = self.bytes.get(self.at..self.at + 4)?;
                (rest == b"null").then(|| self.at += 4)
            }
            _ => self.int().map(drop),
        }
    }
}

/// Whether every byte is printable ASCII (0x20 to 0x7e). Checked 32 bytes at a time
/// without stopping early, which the compiler turns into vector instructions: a byte-at-a-time
/// loop with an early exit was half of the reader's time.
fn printable_ascii(bytes: &[u8]) -> bool {
    let printable = |chunk: &[u8]| {
        chunk
            .iter()
            .fold(true, |ok, &b| ok & (b.wrapping_sub(0x20) < 0x5f))
    };
    let mut chunks = bytes.chunks_exact(32);
    chunks.all(printable) && printable(chunks.remainder())
}

/// Sets a field read once; a second time gives up (serde_json calls it a duplicate).
fn once<T>(slot: &mut Option<T>, value: T) -> Option<()> {
    match slot {
        Some(_) => None,
        None => {
            *slot = Some(value);
            Some(())
        }
    }
}

/// An integer as read, before its type is known.
struct Int {
    negative: bool,
    value: u64,
}

impl Int {
    fn signed(self) -> Option<i64> {
        match (self.negative, i64::try_from(self.value)) {
            // `-0` is left to serde_json.
            (true, _) if self.value == 0 => None,
            (true, Ok(v)) => Some(-v),
            (true, Err(_)) => (self.value == i64::MIN.unsigned_abs()).then_some(i64::MIN),
            (false, Ok(v)) => Some(v),
            (false, Err(_)) => None,
        }
    }

    fn unsigned(self) -> Option<u64> {
        (!self.negative).then_some(self.value)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::chain::ChainLink;
    use crate::{AuditEntry, Outcome};
    use proptest::prelude::*;

    fn serde_reads(bytes: &[u8]) -> Option<StoredBeside<'_>> {
        serde_json::from_slice(bytes).ok()
    }

    fn entry(actor: &str, patients: &[&str], chain: Vec<ChainLink>) -> AuditEntry {
        let mut e = AuditEntry::new(-17, "op", actor, "read", Outcome::Success);
        e.resource_ids = vec!["Observation/1".into()];
        e.source_ip = Some("10.0.0.1".into());
        e.patients = patients.iter().map(|p| p.to_string()).collect();
        e.chain = chain;
        e
    }

    fn link(patient: &str, seq: u64, prev: Option<(u64, u8)>) -> ChainLink {
        ChainLink {
            patient: patient.into(),
            seq,
            prev: prev.map(|(index, b)| PrevEntry {
                index,
                hash: [b; 32],
            }),
        }
    }

    /// The leaves `to_leaf` writes are read by the narrow reader, borrowing every string.
    #[test]
    fn a_written_leaf_is_read_without_serde() {
        let e = entry(
            "u-1",
            &["p1", "p2"],
            vec![link("p1", 3, Some((9, 7))), link("p2", 1, None)],
        );
        let leaf = e.to_leaf();
        let read = Reader::read(&leaf).expect("the narrow reader takes it");
        assert_eq!(Some(&read), serde_reads(&leaf).as_ref());
        assert_eq!(read.time_micros, -17);
        assert!(matches!(read.actor, Cow::Borrowed("u-1")));
        assert_eq!(read.chain[0].prev.map(|p| p.index), Some(9));
    }

    /// Leaves the narrow reader does not take are read by serde_json, with the same result
    /// where serde_json reads them and the same refusal where it does not.
    #[test]
    fn other_leaves_go_to_serde() {
        let cases: &[&[u8]] = &[
            br#"{"time_micros":1,"actor":"caf\u00e9"}"#,
            "{\"time_micros\":1,\"actor\":\"caf\u{e9}\"}".as_bytes(),
            br#"{ "time_micros": 1, "actor": "a" }"#,
            br#"{"time_micros":1,"actor":"a","actor":"b"}"#,
            br#"{"time_micros":1.0,"actor":"a"}"#,
            br#"{"time_micros":-0,"actor":"a"}"#,
            br#"{"time_micros":01,"actor":"a"}"#,
            br#"{"time_micros":1,"actor":"a","patients":null}"#,
            br#"{"time_micros":1,"actor":"a","x":{"y":true}}"#,
            br#"{"time_micros":1,"actor":"a","chain":[{"patient":"p","seq":1,"prev":null}]}"#,
            br#"{"time_micros":1,"actor":"a","chain":[{"patient":"p","seq":1,"extra":1}]}"#,
            br#"{"time_micros":1,"actor":"a"} "#,
            br#"{"time_micros":1,"actor":"a"}x"#,
            br#"{"time_micros":9223372036854775808,"actor":"a"}"#,
            br#"{"time_micros":-9223372036854775808,"actor":"a"}"#,
            br#"{"actor":"a"}"#,
            br#"{"time_micros":1,"actor":"a","chain":[{"patient":"p","seq":1,"prev":{"index":1,"hash":"AA=="}}]}"#,
        ];
        for case in cases {
            let fast = Reader::read(case);
            let slow = serde_reads(case);
            if let Some(fast) = &fast {
                assert_eq!(
                    Some(fast),
                    slow.as_ref(),
                    "{}",
                    String::from_utf8_lossy(case)
                );
            }
            assert_eq!(
                StoredBeside::from_leaf(case).ok(),
                slow,
                "{}",
                String::from_utf8_lossy(case)
            );
        }
    }

    /// The printable check, at its bounds and in every position of a long input.
    #[test]
    fn printable_means_0x20_to_0x7e() {
        for b in 0u8..=255 {
            let want = (0x20..0x7f).contains(&b);
            assert_eq!(printable_ascii(&[b]), want, "{b:#x}");
            for at in [0, 31, 32, 40, 69] {
                let mut long = vec![b'a'; 70];
                long[at] = b;
                assert_eq!(printable_ascii(&long), want, "{b:#x} at {at}");
            }
        }
        assert!(printable_ascii(b""));
    }

    fn any_text() -> impl Strategy<Value = String> {
        prop_oneof![
            "[a-z0-9-]{0,12}",
            any::<String>(),
            Just("quote \" back \\ tab \t".to_string()),
        ]
    }

    fn any_entry() -> impl Strategy<Value = AuditEntry> {
        (
            any::<i64>(),
            any_text(),
            prop::collection::vec(any_text(), 0..4),
            prop::collection::vec(
                (
                    any_text(),
                    any::<u64>(),
                    prop::option::of((any::<u64>(), any::<u8>())),
                ),
                0..4,
            ),
            prop::option::of(any_text()),
        )
            .prop_map(|(time, actor, patients, links, reason)| {
                let mut e = AuditEntry::new(time, "op", &actor, "read", Outcome::Denied);
                e.patients = patients;
                e.chain = links
                    .into_iter()
                    .map(|(p, seq, prev)| ChainLink {
                        patient: p,
                        seq,
                        prev: prev.map(|(index, b)| PrevEntry {
                            index,
                            hash: [b; 32],
                        }),
                    })
                    .collect();
                e.reason = reason;
                e
            })
    }

    proptest! {
        /// Over written entries, and the same bytes cut short or with one byte changed: the
        /// narrow reader either gives up or agrees with serde_json, and `from_leaf` always
        /// agrees with serde_json.
        #[test]
        fn the_narrow_reader_agrees_with_serde(
            e in any_entry(),
            cut in any::<prop::sample::Index>(),
            at in any::<prop::sample::Index>(),
            byte in prop_oneof![any::<u8>(), Just(b'"'), Just(b','), Just(b'0'), Just(b'}')],
        ) {
            let leaf = e.to_leaf();
            let mut changed = leaf.clone();
            let i = at.index(changed.len());
            changed[i] = byte;
            let short = &leaf[..cut.index(leaf.len())];
            for bytes in [&leaf[..], &changed[..], short] {
                let slow = serde_reads(bytes);
                if let Some(fast) = Reader::read(bytes) {
                    prop_assert_eq!(Some(&fast), slow.as_ref());
                }
                prop_assert_eq!(StoredBeside::from_leaf(bytes).ok(), slow);
            }
            prop_assert!(StoredBeside::from_leaf(&leaf).is_ok());
        }
    }
}
