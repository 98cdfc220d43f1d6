//! The time source, injected so tests are deterministic. `clippy.toml` bans reading the wall
//! clock anywhere else.

use std::sync::atomic::{AtomicU64, Ordering};

/// The time source.
pub trait Clock: Send + Sync + 'static {
    /// Microseconds since the Unix epoch.
    fn now_micros(&self) -> i64;

    /// Whole seconds since the Unix epoch.
    fn now_secs(&self) -> i64 {
        self.now_micros().div_euclid(1_000_000)
    }
}

/// The system clock: the one place the node reads the wall clock.
#[derive(Debug, Clone, Copy, Default)]
pub struct SystemClock;

impl Clock for SystemClock {
    #[allow(clippy::disallowed_methods)] // This is the clock.
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

    #[test]
    fn seconds_round_down_even_before_the_epoch() {
        struct Before;
        impl Clock for Before {
            fn now_micros(&self) -> i64 {
                -1
            }
        }
        assert_eq!(Before.now_secs(), -1);
        assert_eq!(Fixed.now_secs(), 0);
    }
}
