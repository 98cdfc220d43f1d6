//! Live delivery: each sent message or read receipt is published once, with the thread's
//! parties; each open stream (a browser's Server-Sent Events) receives the events of the
//! threads its reader is a party to. Events carry ids and references only, never text.
//!
//! The bus is in the process: a reader connected to another replica sees the change on
//! that replica's next check (the streams also re-read their counts every
//! [`RESYNC_EVERY`]). It also says who is connected, so a reader who is away is told
//! through the notification hub instead.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, MutexGuard};

use tokio::sync::broadcast;

/// How often a stream re-reads its counts even without an event (another replica's
/// messages), seconds.
pub const RESYNC_EVERY: u64 = 15;

/// What happened to a thread.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LiveEvent {
    /// The thread's id.
    pub thread: String,
    /// `message` (a new one) or `read` (a receipt).
    pub kind: &'static str,
    /// The thread's parties (references).
    pub parties: Arc<Vec<String>>,
}

/// The bus.
#[derive(Debug)]
pub struct LiveBus {
    tx: broadcast::Sender<LiveEvent>,
    present: Mutex<HashMap<String, usize>>,
}

impl Default for LiveBus {
    fn default() -> Self {
        Self::new(4096)
    }
}

impl LiveBus {
    /// A bus keeping up to `capacity` events for slow streams (a stream that falls further
    /// behind is told to re-read).
    pub fn new(capacity: usize) -> Self {
        let (tx, _) = broadcast::channel(capacity.max(16));
        Self {
            tx,
            present: Mutex::new(HashMap::new()),
        }
    }

    fn present(&self) -> MutexGuard<'_, HashMap<String, usize>> {
        // A poisoned count is still a count: a panic elsewhere does not stop delivery.
        match self.present.lock() {
            Ok(g) => g,
            Err(p) => p.into_inner(),
        }
    }

    /// Publishes `event` to every stream whose reader is one of its parties.
    pub fn publish(&self, event: LiveEvent) {
        // No stream open: nobody to tell now (the hub tells those who are away).
        let _ = self.tx.send(event);
    }

    /// Whether a stream is open for `reference` (a person's own reference).
    pub fn is_present(&self, reference: &str) -> bool {
        self.present().get(reference).is_some_and(|n| *n > 0)
    }

    /// Opens a stream for a reader: `person` (their own reference, counted as present) and
    /// `principals` (every reference that stands for them: person, organizations, teams).
    pub fn subscribe(self: &Arc<Self>, person: &str, principals: Vec<String>) -> Subscription {
        *self.present().entry(person.to_string()).or_insert(0) += 1;
        Subscription {
            rx: self.tx.subscribe(),
            person: person.to_string(),
            principals,
            bus: self.clone(),
        }
    }
}

/// One reader's open stream.
#[derive(Debug)]
pub struct Subscription {
    rx: broadcast::Receiver<LiveEvent>,
    person: String,
    principals: Vec<String>,
    bus: Arc<LiveBus>,
}

/// What a stream receives next.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Next {
    /// An event of one of the reader's threads.
    Event(LiveEvent),
    /// Events were missed: re-read everything.
    Resync,
    /// The bus is gone.
    Closed,
}

impl Subscription {
    /// The next event for this reader.
    pub async fn next(&mut self) -> Next {
        loop {
            match self.rx.recv().await {
                Ok(e) if e.parties.iter().any(|p| self.principals.contains(p)) => {
                    return Next::Event(e);
                }
                Ok(_) => {}
                Err(broadcast::error::RecvError::Lagged(_)) => return Next::Resync,
                Err(broadcast::error::RecvError::Closed) => return Next::Closed,
            }
        }
    }
}

impl Drop for Subscription {
    fn drop(&mut self) {
        let mut present = self.bus.present();
        if let Some(n) = present.get_mut(&self.person) {
            *n = n.saturating_sub(1);
            if *n == 0 {
                present.remove(&self.person);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_stream_gets_its_readers_threads_only_and_counts_as_presence() {
        let bus = Arc::new(LiveBus::default());
        let mut b = bus.subscribe(
            "Practitioner/b",
            vec!["Practitioner/b".into(), "CareTeam/t".into()],
        );
        assert!(bus.is_present("Practitioner/b"));
        assert!(!bus.is_present("Practitioner/c"));
        bus.publish(LiveEvent {
            thread: "other".into(),
            kind: "message",
            parties: Arc::new(vec!["Practitioner/x".into()]),
        });
        bus.publish(LiveEvent {
            thread: "t1".into(),
            kind: "message",
            parties: Arc::new(vec!["Patient/p".into(), "CareTeam/t".into()]),
        });
        match b.next().await {
            Next::Event(e) => assert_eq!(e.thread, "t1", "the other thread is not theirs"),
            other => panic!("{other:?}"),
        }
        drop(b);
        assert!(
            !bus.is_present("Practitioner/b"),
            "away once the stream closes"
        );
    }

    #[tokio::test]
    async fn a_stream_that_falls_behind_is_told_to_resync() {
        let bus = Arc::new(LiveBus::new(16));
        let mut s = bus.subscribe("Patient/p", vec!["Patient/p".into()]);
        for i in 0..40 {
            bus.publish(LiveEvent {
                thread: format!("t{i}"),
                kind: "message",
                parties: Arc::new(vec!["Patient/p".into()]),
            });
        }
        assert_eq!(s.next().await, Next::Resync);
    }
}
