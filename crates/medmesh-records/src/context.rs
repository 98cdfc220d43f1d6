//! Who is asking, and the injected clock and id source.

use std::sync::atomic::{AtomicU64, Ordering};

use medmesh_policy::Actor;

/// The request context every interaction carries.
#[derive(Debug, Clone)]
pub struct RequestContext {
    /// The authenticated actor.
    pub actor: Actor,
    /// The request's operation id (also in logs and audit entries).
    pub operation_id: String,
    /// Source IP, for the audit entry.
    pub source_ip: Option<String>,
    /// The FHIR base URL, for `fullUrl`s and links (`http://host/fhir`).
    pub base_url: String,
}

/// The time source. Injected so tests are deterministic.
pub trait Clock: Send + Sync + 'static {
    /// Microseconds since the Unix epoch.
    fn now_micros(&self) -> i64;
}

/// The system clock.
#[derive(Debug, Clone, Default)]
pub struct SystemClock;

impl Clock for SystemClock {
    fn now_micros(&self) -> i64 {
        i64::try_from(time::OffsetDateTime::now_utc().unix_timestamp_nanos() / 1000)
            .unwrap_or(i64::MAX)
    }
}

/// A clock that never goes backwards: if the system clock steps back, or two writes fall in
/// the same microsecond, time still advances, so `meta.lastUpdated` orders versions.
#[derive(Debug, Default)]
pub struct MonotonicClock<C> {
    inner: C,
    last: AtomicU64,
}

impl<C: Clock> MonotonicClock<C> {
    /// Wraps a clock.
    pub fn new(inner: C) -> Self {
        Self {
            inner,
            last: AtomicU64::new(0),
        }
    }
}

impl<C: Clock> Clock for MonotonicClock<C> {
    fn now_micros(&self) -> i64 {
        let now = self.inner.now_micros().max(0) as u64;
        let mut prev = self.last.load(Ordering::Relaxed);
        loop {
            let next = now.max(prev + 1);
            match self
                .last
                .compare_exchange_weak(prev, next, Ordering::Relaxed, Ordering::Relaxed)
            {
                Ok(_) => return next as i64,
                Err(p) => prev = p,
            }
        }
    }
}

/// The source of new logical ids. Injected so tests are deterministic.
pub trait IdSource: Send + Sync + 'static {
    /// A fresh id.
    fn new_id(&self) -> String;
}

/// Random UUIDs.
#[derive(Debug, Clone, Default)]
pub struct UuidIds;

impl IdSource for UuidIds {
    fn new_id(&self) -> String {
        uuid::Uuid::new_v4().to_string()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    struct Fixed;
    impl Clock for Fixed {
        fn now_micros(&self) -> i64 {
            100
        }
    }

    #[test]
    fn monotonic_clock_always_advances() {
        let c = MonotonicClock::new(Fixed);
        let a = c.now_micros();
        let b = c.now_micros();
        assert_eq!((a, b), (100, 101));
    }
}
