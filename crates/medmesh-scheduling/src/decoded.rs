//! Directory resources as last decoded, so that `$find` does not open and parse the same
//! Schedules, PractitionerRoles and Locations on every call.
//!
//! `$find` over 200 practitioners read about 400 directory resources per call and spent a
//! third of its CPU opening, parsing and freeing them (bench/README.md, issue 18). They
//! rarely change. Each call still reads them from the store, so it sees every write, on this
//! node or another over the same database; only the decoding of a version already seen is
//! skipped. A version never changes once written, so `(type, id, version)` names its body.
//!
//! The calendars compiled from them are kept too ([`CompiledCalendars`]), for the bodies
//! they were compiled from.
//!
//! Only directory data is kept here: Schedules, Slots, PractitionerRoles, Locations,
//! Organizations and plans, which name no patient.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use serde_json::Value;

use crate::calendar::Calendar;

/// At most this many resources are kept. A directory larger than this is decoded again, part
/// by part, as before; the bound keeps the memory fixed whatever is searched.
pub const MAX_DECODED: usize = 16_384;

/// A map of at most [`MAX_DECODED`] entries: when full, a new key lets everything go first
/// (the next calls compute again). A poisoned lock only means another call panicked while
/// holding it; the map is still a valid cache, and a miss is always safe.
#[derive(Debug)]
struct Bounded<V> {
    entries: Mutex<HashMap<String, V>>,
}

impl<V> Default for Bounded<V> {
    fn default() -> Self {
        Self {
            entries: Mutex::new(HashMap::new()),
        }
    }
}

impl<V> Bounded<V> {
    fn with<T>(&self, f: impl FnOnce(&mut HashMap<String, V>) -> T) -> T {
        let mut entries = match self.entries.lock() {
            Ok(e) => e,
            Err(poisoned) => poisoned.into_inner(),
        };
        f(&mut entries)
    }

    fn insert(&self, key: String, value: V) {
        self.with(|entries| {
            if entries.len() >= MAX_DECODED && !entries.contains_key(&key) {
                entries.clear();
            }
            entries.insert(key, value);
        });
    }

    fn len(&self) -> usize {
        self.with(|entries| entries.len())
    }
}

/// Decoded directory resources by `Type/id`, each with the version it was decoded from.
#[derive(Debug, Default)]
pub struct DecodedDirectory {
    entries: Bounded<(i64, Arc<Value>)>,
}

impl DecodedDirectory {
    /// The body of `key` (`Type/id`) at `version`, if it was decoded before.
    pub fn get(&self, key: &str, version: i64) -> Option<Arc<Value>> {
        self.entries.with(|entries| {
            entries
                .get(key)
                .filter(|(v, _)| *v == version)
                .map(|(_, body)| Arc::clone(body))
        })
    }

    /// Keeps the body of `key` at `version`, in place of any other version of it.
    pub fn put(&self, key: String, version: i64, body: Arc<Value>) {
        self.entries.insert(key, (version, body));
    }

    /// How many resources are kept.
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    /// Whether nothing is kept.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// What a calendar was compiled from: its Schedule, PractitionerRole and Location, as the
/// bodies [`DecodedDirectory`] handed out.
pub type CompiledFrom = [Option<Arc<Value>>; 3];

/// Calendars compiled from their Schedule, PractitionerRole and Location
/// ([`crate::calendar::calendar`], a pure function of the three), by the Schedule's
/// `Type/id`. An entry is used only for the very bodies it was compiled from: the same
/// allocations, which [`DecodedDirectory`] hands out again for as long as their versions are
/// current, and which the entry keeps alive so that no other body can take their place.
#[derive(Debug, Default)]
pub struct CompiledCalendars {
    entries: Bounded<(CompiledFrom, Arc<Calendar>)>,
}

fn same(a: &CompiledFrom, b: &[Option<&Arc<Value>>; 3]) -> bool {
    a.iter().zip(b).all(|(x, y)| match (x, y) {
        (Some(x), Some(y)) => Arc::ptr_eq(x, y),
        (None, None) => true,
        _ => false,
    })
}

impl CompiledCalendars {
    /// The calendar of `key` compiled from exactly `from`, if there is one.
    pub fn get(&self, key: &str, from: [Option<&Arc<Value>>; 3]) -> Option<Arc<Calendar>> {
        self.entries.with(|entries| {
            entries
                .get(key)
                .filter(|(was, _)| same(was, &from))
                .map(|(_, cal)| Arc::clone(cal))
        })
    }

    /// Keeps the calendar of `key` compiled from `from`, in place of any other.
    pub fn put(&self, key: String, from: CompiledFrom, calendar: Arc<Calendar>) {
        self.entries.insert(key, (from, calendar));
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn a_body_is_given_back_only_for_the_version_it_was_decoded_from() {
        let cache = DecodedDirectory::default();
        assert!(cache.get("Schedule/s", 1).is_none());
        cache.put("Schedule/s".into(), 1, Arc::new(json!({"active": true})));
        assert_eq!(cache.get("Schedule/s", 1).unwrap()["active"], true);
        // An update is a new version: the old body is never served for it.
        assert!(cache.get("Schedule/s", 2).is_none());
        cache.put("Schedule/s".into(), 2, Arc::new(json!({"active": false})));
        assert_eq!(cache.get("Schedule/s", 2).unwrap()["active"], false);
        assert!(cache.get("Schedule/s", 1).is_none());
        assert_eq!(cache.len(), 1);
        assert!(cache.get("Schedule/t", 2).is_none());
    }

    #[test]
    fn the_cache_never_holds_more_than_its_bound() {
        let cache = DecodedDirectory::default();
        for i in 0..MAX_DECODED + 10 {
            cache.put(format!("Slot/{i}"), 1, Arc::new(json!({})));
            assert!(cache.len() <= MAX_DECODED);
        }
        // The newest is always kept.
        assert!(cache.get(&format!("Slot/{}", MAX_DECODED + 9), 1).is_some());
        // Replacing a kept key at the bound does not empty the cache.
        let full = DecodedDirectory::default();
        for i in 0..MAX_DECODED {
            full.put(format!("Slot/{i}"), 1, Arc::new(json!({})));
        }
        full.put("Slot/0".into(), 2, Arc::new(json!({})));
        assert_eq!(full.len(), MAX_DECODED);
    }

    #[test]
    fn a_calendar_is_given_back_only_for_the_bodies_it_was_compiled_from() {
        let schedule = Arc::new(json!({"resourceType": "Schedule", "id": "s"}));
        let role = Arc::new(json!({"resourceType": "PractitionerRole", "id": "r"}));
        let cal = crate::calendar::calendar(&schedule, Some(&role), None).unwrap();
        let cache = CompiledCalendars::default();
        cache.put(
            "Schedule/s".into(),
            [Some(Arc::clone(&schedule)), Some(Arc::clone(&role)), None],
            Arc::new(cal),
        );
        assert!(
            cache
                .get("Schedule/s", [Some(&schedule), Some(&role), None])
                .is_some()
        );
        // An equal body decoded again (another version, say) is not the same body.
        let role_again = Arc::new((*role).clone());
        assert!(
            cache
                .get("Schedule/s", [Some(&schedule), Some(&role_again), None])
                .is_none()
        );
        // Nor is a calendar that now has a Location, or lost its role.
        assert!(
            cache
                .get(
                    "Schedule/s",
                    [Some(&schedule), Some(&role), Some(&schedule)]
                )
                .is_none()
        );
        assert!(
            cache
                .get("Schedule/s", [Some(&schedule), None, None])
                .is_none()
        );
        assert!(
            cache
                .get("Schedule/t", [Some(&schedule), Some(&role), None])
                .is_none()
        );
    }
}
