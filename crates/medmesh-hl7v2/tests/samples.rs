//! Every public sample message parses, round-trips through the encoder, and the parser
//! never panics on any mutation of them or of the kept corpus (`tests/corpus/`): the
//! bounded, in-CI equivalent of a fuzzing run.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // tests fail loudly by design

use std::path::{Path, PathBuf};

use medmesh_hl7v2::{Batch, Message};
use proptest::prelude::*;

fn shared() -> PathBuf {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../../shared/testdata");
    assert!(
        dir.is_dir(),
        "the shared test data is missing: {} (see the README)",
        dir.display()
    );
    dir
}

/// Every sample file and every corpus file.
fn inputs() -> Vec<(String, Vec<u8>)> {
    let mut out = Vec::new();
    let mut dirs = vec![Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/corpus")];
    for entry in std::fs::read_dir(shared()).unwrap() {
        let p = entry.unwrap().path();
        if p.file_name()
            .unwrap()
            .to_string_lossy()
            .starts_with("hl7v2-")
        {
            dirs.push(p);
        }
    }
    for dir in dirs {
        for entry in std::fs::read_dir(&dir).unwrap() {
            let p = entry.unwrap().path();
            out.push((p.display().to_string(), std::fs::read(&p).unwrap()));
        }
    }
    out.sort();
    out
}

/// The sample files that hold messages (`uuencoded_escaped.txt` is one escaped value, for
/// the escape test below).
fn samples() -> Vec<(String, Vec<u8>)> {
    inputs()
        .into_iter()
        .filter(|(n, _)| !n.contains("/corpus/") && !n.ends_with("uuencoded_escaped.txt"))
        .collect()
}

#[test]
fn every_sample_parses_and_round_trips() {
    let samples = samples();
    assert!(samples.len() > 140, "expected the shared HL7 v2 samples");
    let mut messages = 0;
    for (name, bytes) in &samples {
        let batch = Batch::parse(bytes).unwrap_or_else(|e| panic!("{name}: {e}"));
        assert!(!batch.messages.is_empty(), "{name}");
        for m in &batch.messages {
            messages += 1;
            assert_eq!(m.msh().name(), "MSH", "{name}");
            assert!(!m.message_type().0.is_empty(), "{name}: no MSH-9");
            let again = Message::parse_str(&m.encode()).unwrap_or_else(|e| panic!("{name}: {e}"));
            assert_eq!(again.segments(), m.segments(), "{name}");
            // Every value of every field decodes without loss of structure.
            for s in m.segments() {
                for f in 1..=s.field_count() {
                    for r in s.field(f).repetitions() {
                        for c in 1..=r.component_count() {
                            let _ = r.text(c);
                        }
                    }
                }
            }
        }
    }
    assert!(messages >= samples.len());
}

#[test]
fn a_sample_with_a_bom_and_escapes_reads_as_sent() {
    let bytes =
        std::fs::read(shared().join("hl7v2-microsoft-fhir-converter/ADT01-23.hl7")).unwrap();
    assert!(bytes.starts_with(b"\xEF\xBB\xBF"));
    let m = Message::parse(&bytes).unwrap();
    assert_eq!(m.message_type().0, "ADT");
    let lab =
        std::fs::read(shared().join("hl7v2-microsoft-fhir-converter/ORU-R01-01.hl7")).unwrap();
    let m = Message::parse(&lab).unwrap();
    let nte = m.segment("NTE").unwrap();
    assert!(nte.get(3, 1).contains("O157:H7 & other STECs"));
}

#[test]
fn a_long_escaped_value_decodes() {
    let raw =
        std::fs::read_to_string(shared().join("hl7v2-hapi-hl7v2/uuencoded_escaped.txt")).unwrap();
    let d = medmesh_hl7v2::Delimiters::default();
    let decoded = medmesh_hl7v2::escape::decode(raw.trim_end(), &d);
    assert!(decoded.starts_with("begin 644 WAV.DAT\r\n"));
    assert!(!decoded.contains("\\X0D\\"));
}

fn mutate(bytes: &[u8], ops: &[(u8, usize, u8)]) -> Vec<u8> {
    let mut b = bytes.to_vec();
    for &(op, at, byte) in ops {
        let len = b.len();
        let at = if len == 0 { 0 } else { at % len };
        match op % 4 {
            0 if len > 0 => b[at] = byte,
            1 => b.insert(at, byte),
            2 if len > 0 => {
                b.remove(at);
            }
            _ => b.truncate(at),
        }
    }
    b
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 2000, .. ProptestConfig::default() })]

    #[test]
    fn the_parser_never_panics_on_mutated_input(
        pick in any::<prop::sample::Index>(),
        ops in prop::collection::vec((any::<u8>(), any::<usize>(), prop_oneof![
            Just(b'|'), Just(b'^'), Just(b'~'), Just(b'\\'), Just(b'&'), Just(b'\r'),
            Just(b'\n'), Just(0u8), Just(0xC3), Just(0xFF), any::<u8>()]), 0..12),
    ) {
        let inputs = inputs();
        let (_, bytes) = &inputs[pick.index(inputs.len())];
        let mutated = mutate(bytes, &ops);
        if let Ok(m) = Message::parse(&mutated) {
            let again = Message::parse_str(&m.encode()).unwrap();
            prop_assert_eq!(again.segments().len(), m.segments().len(), "{:?}\n{:?}", m.encode(), again.encode());
            let _ = (m.message_type(), m.control_id(), m.version());
        }
        let _ = Batch::parse(&mutated);
    }

    #[test]
    fn the_parser_never_panics_on_random_bytes(bytes in prop::collection::vec(any::<u8>(), 0..400)) {
        let mut with_header = b"MSH|^~\\&|".to_vec();
        with_header.extend_from_slice(&bytes);
        let _ = Message::parse(&bytes);
        let _ = Message::parse(&with_header);
        let _ = Batch::parse(&with_header);
    }
}
