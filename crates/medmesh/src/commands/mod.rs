//! One module per command group; `main.rs` dispatches to them.

pub(crate) mod admin;
pub(crate) mod audit;
pub(crate) mod devices;
pub(crate) mod doc_command;
pub(crate) mod hl7;
pub(crate) mod import;
pub(crate) mod keys;
pub(crate) mod notifications;
pub(crate) mod serve;

pub(crate) use admin::*;
pub(crate) use audit::*;
pub(crate) use doc_command::*;
pub(crate) use import::*;
pub(crate) use serve::*;
