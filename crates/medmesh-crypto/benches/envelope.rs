//! AES-256-GCM envelopes: seal and open throughput at the sizes medmesh stores (a 1 KiB
//! Observation, a 16 KiB bundle entry, a 1 MiB document chunk), and one blind-index token.
//! `bench/aead.sh` runs this beside `openssl speed -evp aes-256-gcm`.

#![allow(missing_docs, clippy::unwrap_used)]
// A benchmark times itself with the wall clock.
#![allow(clippy::disallowed_methods)]

use criterion::{BenchmarkId, Criterion, Throughput, criterion_group, criterion_main};
use medmesh_crypto::{BlindIndexKey, DataKey, Envelope, KeyId, OsRandom};

fn envelopes(c: &mut Criterion) {
    let key = DataKey::random(&OsRandom);
    let id = KeyId::random(&OsRandom);
    let mut g = c.benchmark_group("envelope");
    for size in [1024usize, 16 * 1024, 1024 * 1024] {
        let plain = vec![7u8; size];
        let sealed = Envelope::seal(&key, &id, b"Observation/1/_history/1", &plain, &OsRandom);
        g.throughput(Throughput::Bytes(size as u64));
        g.bench_with_input(BenchmarkId::new("seal", size), &plain, |b, p| {
            b.iter(|| Envelope::seal(&key, &id, b"Observation/1/_history/1", p, &OsRandom));
        });
        g.bench_with_input(BenchmarkId::new("open", size), &sealed, |b, s| {
            b.iter(|| Envelope::open(&key, b"Observation/1/_history/1", s).unwrap());
        });
    }
    g.finish();
    let family = BlindIndexKey::random(&OsRandom).domain("family");
    c.bench_function("blind-index prefix tokens of a 12-letter name", |b| {
        b.iter(|| family.prefixes("montgomeryes", 3, 32));
    });
}

criterion_group!(benches, envelopes);
criterion_main!(benches);
