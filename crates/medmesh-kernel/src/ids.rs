//! The source of new logical ids, injected so tests are deterministic.

/// The source of new logical ids.
pub trait IdSource: Send + Sync + 'static {
    /// A fresh id.
    fn new_id(&self) -> String;
}

/// Random (version 4) UUIDs.
#[derive(Debug, Clone, Copy, Default)]
pub struct UuidIds;

impl IdSource for UuidIds {
    #[allow(clippy::disallowed_methods)] // This is the id source.
    fn new_id(&self) -> String {
        uuid::Uuid::new_v4().to_string()
    }
}
