//! What authorizing one request costs: verify the access token's signature and claims, parse
//! its scopes, and ask the PDP. Also one login's password check at OWASP's argon2id cost.
//!
//! `cargo bench -p medmesh-policy --bench request_auth`

#![allow(clippy::unwrap_used, clippy::expect_used, missing_docs)]
// A benchmark makes its own actors and reads the wall clock.
#![allow(clippy::disallowed_methods)]

use std::hint::black_box;

use criterion::{Criterion, criterion_group, criterion_main};
use medmesh_auth::credentials::{HashCost, hash_password, verify_password};
use medmesh_auth::token::{self, AUDIENCE};
use medmesh_auth::{AccessClaims, KeyId, TokenSigningKey, parse_scopes};
use medmesh_policy::{Action, Actor, Pdp};

fn bench(c: &mut Criterion) {
    let now = time::OffsetDateTime::now_utc().unix_timestamp();
    // Three published keys, as after two rotations; the newest signed the token.
    let keys: Vec<TokenSigningKey> = (1..=3u8)
        .map(|i| TokenSigningKey::from_secret(KeyId(format!("k{i}")), [i; 32]))
        .collect();
    let verifying: Vec<_> = keys.iter().map(TokenSigningKey::verifying_key).collect();
    let claims = AccessClaims {
        iss: "https://node.example".into(),
        sub: "user-1".into(),
        aud: AUDIENCE.into(),
        exp: now + 300,
        iat: now,
        nbf: now,
        jti: "j".into(),
        scope: "openid fhirUser launch/patient patient/Observation.rs?category=laboratory patient/Patient.rs offline_access".into(),
        patient: Some("p1".into()),
        role: Some("patient".into()),
        client_id: Some("app".into()),
        fhir_user: Some("Patient/p1".into()),
    };
    let jwt = keys[2].sign(&claims).unwrap();
    let pdp = Pdp;
    let authorize = |c: AccessClaims| {
        let actor = Actor::from_verified_token(medmesh_kernel::VerifiedIdentity {
            subject: c.sub,
            scopes: parse_scopes(&c.scope),
            patient: c.patient,
            role: c.role.as_deref().and_then(|r| r.parse().ok()),
            clinician: None,
        });
        black_box(
            pdp.authorize(&actor, Action::Search, Some("Observation"))
                .unwrap(),
        );
    };
    let cache = token::VerifiedTokens::default();
    c.bench_function("request: cached token + scope parse + PDP", |b| {
        b.iter(|| {
            authorize(
                cache
                    .verify(
                        black_box(&jwt),
                        &verifying,
                        &["https://node.example"],
                        now,
                        token::TokenTimes::default(),
                    )
                    .unwrap(),
            )
        })
    });
    c.bench_function(
        "first request: token signature verify + scope parse + PDP",
        |b| {
            b.iter(|| {
                let c = token::verify(
                    black_box(&jwt),
                    &verifying,
                    &["https://node.example"],
                    now,
                    token::TokenTimes::default(),
                )
                .unwrap();
                let actor = Actor::from_verified_token(medmesh_kernel::VerifiedIdentity {
                    subject: c.sub,
                    scopes: parse_scopes(&c.scope),
                    patient: c.patient,
                    role: c.role.as_deref().and_then(|r| r.parse().ok()),
                    clinician: None,
                });
                black_box(
                    pdp.authorize(&actor, Action::Search, Some("Observation"))
                        .unwrap(),
                );
            })
        },
    );

    let phc = hash_password("a long enough passphrase", &[7; 16], HashCost::default()).unwrap();
    let mut g = c.benchmark_group("login");
    g.sample_size(10);
    g.bench_function("argon2id verify (m=19456 KiB, t=2, p=1)", |b| {
        b.iter(|| assert!(verify_password(black_box("a long enough passphrase"), &phc)))
    });
    g.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
