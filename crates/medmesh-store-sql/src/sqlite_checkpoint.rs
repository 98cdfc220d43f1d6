//! Copying the SQLite WAL back to the database beside the writers, on a connection of its own.
//!
//! The commits never checkpoint (`wal_autocheckpoint=0`): a committing writer would copy the
//! WAL back and fsync the database while every read waiting on that commit's audit entry
//! stalled (~180 ms each time at 1M resources). A `PASSIVE` checkpoint copies what it can
//! without blocking anyone. But the WAL only starts over when a writer finds no reader on it,
//! which never happens under steady reads, and a writer that never pauses (an import) keeps a
//! passive checkpoint from catching up: so past [`WAL_FRAMES_BOUND`] frames a `RESTART`
//! checkpoint takes the write lock, waits for the readers and makes the next writer start the
//! WAL over (its file then cut back to `journal_size_limit`).
//!
//! Every commit queued behind the restart waits as long as it holds the write lock, so it is
//! kept short: passive checkpoints first catch up until a few frames are left to copy, and the
//! restart waits for readers in small steps (`sqlite_busy`), not in SQLite's 1, 2, 5, 10 ms
//! sleeps. A failed or busy checkpoint is retried at the next tick: the WAL keeps everything
//! until one succeeds.

use std::sync::Weak;
use std::time::{Duration, Instant};

use rusqlite::Connection;

use crate::sqlite::BUSY_TIMEOUT;
use crate::sqlite_busy::{attempts_waited, waiting_in_steps};

/// How often the WAL is copied back to the database.
const CHECKPOINT_EVERY: Duration = Duration::from_millis(500);
/// WAL frames (4 KiB pages) past which the WAL is restarted: 64 MB. Below it checkpoints never
/// block anyone.
const WAL_FRAMES_BOUND: i64 = 16_384;
/// WAL frames (256 MB) past which a `RESTART` checkpoint waits as long as any statement would
/// ([`BUSY_TIMEOUT`]): the WAL must start over even if a writer that never pauses keeps it
/// waiting.
const WAL_FRAMES_HARD_BOUND: i64 = 65_536;
/// How long a `RESTART` checkpoint may wait below [`WAL_FRAMES_HARD_BOUND`] before it gives up
/// until the next tick. While it waits for readers it holds the write lock: no commit starts.
const RESTART_WAIT_SHORT: Duration = Duration::from_millis(100);
/// Passive checkpoints in a row, at most, to catch up before a restart.
const CATCH_UP_ROUNDS: usize = 6;
/// WAL frames a catch-up checkpoint copied at which a restart goes ahead (1 MB): about what
/// the restart then copies under the write lock.
const RESTART_BEHIND: i64 = 256;

/// Checkpoints the WAL on `conn` every [`CHECKPOINT_EVERY`] until the backend (`alive`) is
/// dropped. The work runs on a blocking thread: a restart may wait.
pub(crate) async fn checkpoint_beside(conn: Connection, alive: Weak<()>) {
    let mut tick = tokio::time::interval(CHECKPOINT_EVERY);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut conn = Some(conn);
    loop {
        tick.tick().await;
        if alive.upgrade().is_none() {
            return;
        }
        let Some(c) = conn.take() else { return };
        match tokio::task::spawn_blocking(move || {
            checkpoint_once(&c);
            c
        })
        .await
        {
            Ok(c) => conn = Some(c),
            Err(e) => {
                tracing::error!(error = %e, "the WAL checkpointer stopped");
                return;
            }
        }
    }
}

/// One tick: a passive checkpoint, and past the bound a restart.
fn checkpoint_once(conn: &Connection) {
    let (frames, copied) = match passive(conn) {
        Ok(counts) => counts,
        Err(e) => {
            tracing::warn!(error = %e, "WAL checkpoint failed; retried");
            return;
        }
    };
    if frames <= WAL_FRAMES_BOUND {
        return;
    }
    let wait = if frames > WAL_FRAMES_HARD_BOUND {
        BUSY_TIMEOUT
    } else {
        RESTART_WAIT_SHORT
    };
    // A passive checkpoint reports the WAL as it found it when it began; while it copied,
    // the writers went on. So the catch-up goes on until one had little to copy: then little
    // can have been written since, and the restart copies about that much under the lock.
    let mut copied_before = copied;
    let mut behind = frames - copied;
    for _ in 0..CATCH_UP_ROUNDS {
        match passive(conn) {
            Ok((frames, copied)) => {
                behind = frames - copied;
                let just_copied = copied - copied_before;
                copied_before = copied;
                if (0..=RESTART_BEHIND).contains(&just_copied) {
                    break;
                }
            }
            Err(e) => {
                tracing::warn!(error = %e, "WAL checkpoint failed; retried");
                return;
            }
        }
    }
    #[allow(clippy::disallowed_methods)] // A log line's stopwatch, not the node's time.
    let started = Instant::now();
    let restarted = restart(conn, wait);
    let elapsed_ms = started.elapsed().as_secs_f64() * 1000.0;
    let waits = attempts_waited();
    match restarted {
        Ok(true) => tracing::debug!(frames, behind, elapsed_ms, waits, "WAL restarted"),
        Ok(false) => {
            tracing::debug!(
                frames,
                behind,
                elapsed_ms,
                waits,
                "WAL restart busy; retried"
            );
        }
        Err(e) => tracing::warn!(error = %e, "WAL checkpoint (restart) failed; retried"),
    }
}

/// A `RESTART` checkpoint that waits at most `wait` for the writer and the readers: whether
/// it restarted the WAL (false: busy, nothing lost).
fn restart(conn: &Connection, wait: Duration) -> rusqlite::Result<bool> {
    let busy = waiting_in_steps(conn, wait, |c| {
        c.query_row("PRAGMA wal_checkpoint(RESTART)", [], |row| {
            row.get::<_, i64>(0)
        })
    })?;
    Ok(busy == 0)
}

/// A `PASSIVE` checkpoint: the WAL's frames, and how many of them are copied back.
fn passive(conn: &Connection) -> rusqlite::Result<(i64, i64)> {
    conn.query_row("PRAGMA wal_checkpoint(PASSIVE)", [], |row| {
        Ok((row.get(1)?, row.get(2)?))
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sqlite_writer::open_connection;

    const WAL: &[(&str, &str)] = &[("journal_mode", "WAL"), ("wal_autocheckpoint", "0")];

    fn wal_frames(conn: &Connection) -> i64 {
        passive(conn).unwrap().0
    }

    /// A restart waits only its budget while a reader holds the WAL, and the reader keeps its
    /// snapshot; once the reader leaves, a restart makes the next writer start the WAL over.
    #[test]
    fn a_restart_waits_for_readers_then_starts_the_wal_over() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("c.db");
        let writer = Connection::open(&path).unwrap();
        writer
            .execute_batch(
                "PRAGMA journal_mode=WAL; PRAGMA wal_autocheckpoint=0;
                 CREATE TABLE t (x INTEGER); INSERT INTO t VALUES (1)",
            )
            .unwrap();
        let reader = open_connection(&path, WAL).unwrap();
        let checkpoints = open_connection(&path, WAL).unwrap();
        reader.execute_batch("BEGIN").unwrap();
        let count = |c: &Connection| -> i64 {
            c.query_row("SELECT COUNT(*) FROM t", [], |r| r.get(0))
                .unwrap()
        };
        assert_eq!(count(&reader), 1);
        writer.execute_batch("INSERT INTO t VALUES (2)").unwrap();
        assert!(!restart(&checkpoints, Duration::from_millis(20)).unwrap());
        assert_eq!(count(&reader), 1, "the reader kept its snapshot");
        reader.execute_batch("COMMIT").unwrap();
        assert!(wal_frames(&checkpoints) > 0);
        assert!(restart(&checkpoints, RESTART_WAIT_SHORT).unwrap());
        writer.execute_batch("INSERT INTO t VALUES (3)").unwrap();
        assert_eq!(wal_frames(&checkpoints), 1, "the WAL started over");
        assert_eq!(count(&reader), 3);
        // The connection fails at once on a held lock again.
        let (a, b) = (&writer, &checkpoints);
        a.execute_batch("BEGIN IMMEDIATE").unwrap();
        assert!(b.execute_batch("BEGIN IMMEDIATE").is_err());
        a.execute_batch("COMMIT").unwrap();
    }
}
