//! Secure messaging on the record service.
//!
//! - **Threads** ([`MessagingService::create_thread`]): a `Communication` header with its
//!   messages as `Communication`s `partOf` it, between clinicians, or between a patient and
//!   their care team (or their practice's shared inbox; a practice may turn patient
//!   messaging off). A thread about a patient is in that patient's record.
//! - **Access** is the PDP's: a message is open to its parties (`medmesh_policy::PARTY_TYPES`)
//!   and, about a patient, to those who reach the patient; the service lists only the
//!   threads the reader is a party to.
//! - **Sealed threads**: messages are envelopes sealed in the sender's browser for each
//!   party's keys from the key directory (HPKE, as sealed documents); the node stores them
//!   and cannot open them.
//! - **Read receipts** are extensions on the messages, so every device of a reader agrees on
//!   what is unread.
//! - **Live**: [`live::LiveBus`] tells each open stream of its threads' events; parties who
//!   are away are told through the notification hub, without the text.
//!
//! The rules with no I/O are in [`thread`]. Every read and send is audited.

pub mod live;
mod service;
pub mod thread;
pub mod write_rule;

pub use live::{LiveBus, LiveEvent, Next, Subscription};
pub use service::{
    MAX_LISTED, MessageView, MessagingAccounts, MessagingService, NewThread, ThreadSummary,
    ThreadView,
};
pub use thread::Body;
