//! Parse throughput on the shared sample messages, beside the `hl7-parser` crate on the same
//! messages (`bench/hl7-parse.sh` runs this and the Python parsers side by side).
//!
//! The corpus is `HL7_BENCH_CORPUS` (messages separated by a blank line, CR inside; written
//! by `bench/hl7_parse.py --prepare`), keeping only messages both parsers accept; the kept
//! set is written back to `HL7_BENCH_KEPT` so the Python parsers time the same messages.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // a benchmark fails loudly

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use medmesh_hl7v2::Message;

fn corpus() -> Vec<String> {
    let path =
        std::env::var("HL7_BENCH_CORPUS").expect("set HL7_BENCH_CORPUS (bench/hl7-parse.sh does)");
    let text = std::fs::read_to_string(path).unwrap();
    let kept: Vec<String> = text
        .split("\n\n")
        .filter(|m| !m.trim().is_empty())
        .filter(|m| {
            Message::parse(m.as_bytes()).is_ok()
                && hl7_parser::parse_message_with_lenient_newlines(m).is_ok()
        })
        .map(str::to_string)
        .collect();
    if let Ok(out) = std::env::var("HL7_BENCH_KEPT") {
        std::fs::write(out, kept.join("\n\n")).unwrap();
    }
    kept
}

fn parse(c: &mut Criterion) {
    let messages = corpus();
    assert!(messages.len() > 100, "only {} messages", messages.len());
    let mut g = c.benchmark_group("hl7v2-parse");
    g.throughput(Throughput::Elements(messages.len() as u64));
    g.bench_function(
        "medmesh-hl7v2 (bytes, charset, then every field's value)",
        |b| {
            b.iter(|| {
                let mut n = 0usize;
                for m in &messages {
                    let parsed = Message::parse(m.as_bytes()).unwrap();
                    // Touch every field, as a mapping does, so lazy splitting is paid for.
                    for s in parsed.segments() {
                        for f in 1..=s.field_count() {
                            n += s.field(f).value().len();
                        }
                    }
                }
                n
            })
        },
    );
    g.bench_function("medmesh-hl7v2 (bytes, charset, segments and fields)", |b| {
        b.iter(|| {
            messages
                .iter()
                .map(|m| Message::parse(m.as_bytes()).unwrap().segments().len())
                .sum::<usize>()
        })
    });
    g.bench_function("hl7-parser 0.3 (full tree)", |b| {
        b.iter(|| {
            messages
                .iter()
                .map(|m| {
                    hl7_parser::parse_message_with_lenient_newlines(m)
                        .unwrap()
                        .segments()
                        .count()
                })
                .sum::<usize>()
        })
    });
    g.finish();
}

criterion_group!(benches, parse);
criterion_main!(benches);
