//! Waiting for another SQLite connection's lock in small steps.
//!
//! SQLite's own busy timeout sleeps 1, 2, 5, 10, 15, 20, 25 ms… between attempts, so a waiter
//! notices a released lock up to 25 ms late. The node's writer waits like this behind a WAL
//! restart (a ~2 ms hold), and every audited read waits on the writer's next commit; the
//! restart itself waits for the readers to leave. Here a waiter retries every ~200 µs for its
//! first 20 ms, then every 2 ms, until its budget is spent (bench/README.md, "Issue 14
//! measured again, and the WAL restart").

use std::cell::Cell;
use std::time::Duration;

use rusqlite::Connection;

/// Attempts made at the short step before the long one.
const SHORT_STEPS: i32 = 100;
const SHORT_STEP: Duration = Duration::from_micros(200);
const LONG_STEP: Duration = Duration::from_millis(2);

thread_local! {
    /// How long the wait on this thread may sleep in all. A busy handler is a plain function,
    /// called on the thread running the statement, so its budget travels beside it.
    static BUDGET: Cell<Duration> = const { Cell::new(Duration::ZERO) };
    /// How many times the last wait on this thread found the lock held.
    static ATTEMPTS: Cell<i32> = const { Cell::new(0) };
}

/// How many times the last [`waiting_in_steps`] on this thread found a lock held.
pub(crate) fn attempts_waited() -> i32 {
    ATTEMPTS.with(Cell::get)
}

/// The sleep before attempt `attempt + 1`, and the sleeps before it in all.
fn steps(attempt: i32) -> (Duration, Duration) {
    let short = attempt.clamp(0, SHORT_STEPS).unsigned_abs();
    let long = (attempt - SHORT_STEPS).max(0).unsigned_abs();
    let slept = SHORT_STEP * short + LONG_STEP * long;
    let next = if attempt < SHORT_STEPS {
        SHORT_STEP
    } else {
        LONG_STEP
    };
    (next, slept)
}

/// SQLite's busy handler: sleeps a step and tries again, until the budget is spent. (Sleeps
/// overrun a little, so the wait is at least the budget.)
fn wait_a_step(attempt: i32) -> bool {
    ATTEMPTS.with(|a| a.set(attempt + 1));
    let budget = BUDGET.with(Cell::get);
    let (next, slept) = steps(attempt);
    if slept >= budget {
        return false;
    }
    std::thread::sleep(next.min(budget - slept));
    true
}

/// Runs `work` on `conn` with lock waits of at most `wait`, in small steps; afterwards the
/// connection fails at once on a held lock again (`busy_timeout` zero).
///
/// # Errors
/// `work`'s, or setting the handler's.
pub(crate) fn waiting_in_steps<T>(
    conn: &Connection,
    wait: Duration,
    work: impl FnOnce(&Connection) -> rusqlite::Result<T>,
) -> rusqlite::Result<T> {
    BUDGET.with(|b| b.set(wait));
    ATTEMPTS.with(|a| a.set(0));
    let done = conn
        .busy_handler(Some(wait_a_step))
        .and_then(|()| work(conn));
    BUDGET.with(|b| b.set(Duration::ZERO));
    let restored = conn.busy_timeout(Duration::ZERO);
    let done = done?;
    restored?;
    Ok(done)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pair(dir: &std::path::Path) -> (Connection, Connection) {
        let path = dir.join("b.db");
        let a = Connection::open(&path).unwrap();
        a.execute_batch("PRAGMA journal_mode=WAL; CREATE TABLE t (k TEXT)")
            .unwrap();
        let b = Connection::open(&path).unwrap();
        b.busy_timeout(Duration::ZERO).unwrap();
        (a, b)
    }

    /// A lock released while the waiter waits is taken.
    #[test]
    fn a_released_lock_is_taken() {
        let dir = tempfile::tempdir().unwrap();
        let (a, b) = pair(dir.path());
        a.execute_batch("BEGIN IMMEDIATE").unwrap();
        let (held, release) = std::sync::mpsc::channel::<()>();
        let holder = std::thread::spawn(move || {
            release.recv().unwrap();
            std::thread::sleep(Duration::from_millis(3));
            a.execute_batch("COMMIT").unwrap();
        });
        held.send(()).unwrap();
        waiting_in_steps(&b, Duration::from_secs(30), |c| {
            c.execute_batch("BEGIN IMMEDIATE; COMMIT")
        })
        .unwrap();
        holder.join().unwrap();
    }

    #[test]
    fn the_steps_are_short_first_then_long() {
        assert_eq!(steps(0), (SHORT_STEP, Duration::ZERO));
        assert_eq!(steps(1), (SHORT_STEP, SHORT_STEP));
        assert_eq!(steps(SHORT_STEPS), (LONG_STEP, SHORT_STEP * 100));
        assert_eq!(
            steps(SHORT_STEPS + 3),
            (LONG_STEP, SHORT_STEP * 100 + LONG_STEP * 3)
        );
    }

    /// A lock held past the deadline is an error (busy), and the connection goes back to
    /// failing at once.
    #[test]
    fn a_lock_held_past_the_deadline_is_busy() {
        let dir = tempfile::tempdir().unwrap();
        let (a, b) = pair(dir.path());
        a.execute_batch("BEGIN IMMEDIATE").unwrap();
        let got = waiting_in_steps(&b, Duration::from_millis(30), |c| {
            c.execute_batch("BEGIN IMMEDIATE")
        });
        assert!(got.is_err());
        assert!(b.execute_batch("BEGIN IMMEDIATE").is_err());
    }
}
