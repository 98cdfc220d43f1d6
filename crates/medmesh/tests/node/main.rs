//! The integration suite of the `medmesh` binary: each test spawns the real node on port 0
//! with a fresh store, once on SQLite and once on PostgreSQL, and drives it over HTTP and the
//! CLI.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
// tests fail loudly by design
// The node under test runs on the real clock; the tests read it too, to build tokens and
// wait with deadlines.
#![allow(clippy::disallowed_methods)]

mod harness;

mod architecture;

mod at_rest;
mod audit_log;
mod bad_input;
mod bundles;
mod care;
mod consent;
mod data;
mod devices;
mod documents;
mod export;
mod hardening;
mod hl7v2;
mod identity;
mod interactions;
mod medications;
mod messaging;
mod patient_scopes;
mod scheduling;
mod sealed;
mod search;
mod subscriptions;
mod telehealth;
