//! Practitioners' compiled access, kept between requests.
//!
//! Compiling what a practitioner may see reads the trust graph (a recursive query over
//! care-team edges), reads and opens the patients' sealed consents, and compiles each
//! patient's access: most of the cost of a practitioner's read (`bench/compare.sh` measured
//! one at a fifth of a system token's read). The compiled [`Reach`] is kept per actor (the
//! references they start from: their own and their organizations') and compartment, and is
//! used again while all three hold:
//! - the store's policy generation is the one it was compiled at. Every committed change to
//!   the edges or the consents raises it, whichever node, replica or CLI command made it, so
//!   a revoked consent or a removed care-team member counts from the next request; it costs
//!   one read per request;
//! - the clock is before the first instant the facts would judge differently: an edge ends
//!   (a break-glass window, an encounter's window), or a consent provision's period starts or
//!   ends;
//! - it is younger than [`MAX_AGE_MICROS`]. The facts hold the edges that hold when they are
//!   read, so an edge whose period starts later is not among them: such access opens up to
//!   this much late, never early.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use medmesh_policy::Reach;

/// The longest a compiled access is used without reading the facts again.
pub const MAX_AGE_MICROS: i64 = 30_000_000;
/// Entries kept at most; past this the cache starts again empty.
const MAX_ENTRIES: usize = 10_000;

/// The actor's seed references and the grant's compartment.
type ReachKey = (Vec<String>, Option<String>);

#[derive(Debug)]
struct Cached {
    generation: i64,
    until: i64,
    reach: Arc<Reach>,
}

/// Compiled accesses by actor and compartment (see the module docs).
#[derive(Debug, Default)]
pub(crate) struct ReachCache {
    entries: Mutex<HashMap<ReachKey, Cached>>,
}

impl ReachCache {
    /// The kept access, if it still holds at `generation` and `now`.
    pub(crate) fn get(
        &self,
        seeds: &[String],
        compartment: Option<&str>,
        generation: i64,
        now: i64,
    ) -> Option<Arc<Reach>> {
        let entries = self.entries.lock().ok()?;
        let key = (seeds.to_vec(), compartment.map(str::to_string));
        entries
            .get(&key)
            .filter(|c| c.generation == generation && now < c.until)
            .map(|c| c.reach.clone())
    }

    /// Keeps an access compiled at `generation` and `now`, until `changes_at` (the first
    /// instant its facts judge differently) or the maximum age.
    pub(crate) fn put(
        &self,
        seeds: &[String],
        compartment: Option<&str>,
        generation: i64,
        now: i64,
        changes_at: Option<i64>,
        reach: Arc<Reach>,
    ) {
        let Ok(mut entries) = self.entries.lock() else {
            return;
        };
        if entries.len() >= MAX_ENTRIES {
            entries.clear();
        }
        let oldest_end = now.saturating_add(MAX_AGE_MICROS);
        entries.insert(
            (seeds.to_vec(), compartment.map(str::to_string)),
            Cached {
                generation,
                until: changes_at.map_or(oldest_end, |t| t.min(oldest_end)),
                reach,
            },
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn reach() -> Arc<Reach> {
        Arc::new(Reach {
            patients: Vec::new(),
            principals: vec!["Practitioner/dr".into()],
        })
    }

    #[test]
    fn an_access_holds_for_its_generation_until_its_facts_change() {
        let cache = ReachCache::default();
        let seeds = vec!["Practitioner/dr".to_string()];
        cache.put(&seeds, None, 7, 1_000, Some(5_000), reach());
        assert!(cache.get(&seeds, None, 7, 4_999).is_some());
        assert!(cache.get(&seeds, None, 7, 5_000).is_none(), "an edge ended");
        assert!(
            cache.get(&seeds, None, 8, 2_000).is_none(),
            "a write changed the facts"
        );
        assert!(
            cache.get(&seeds, Some("p1"), 7, 2_000).is_none(),
            "another compartment"
        );
        assert!(
            cache
                .get(&["Practitioner/other".to_string()], None, 7, 2_000)
                .is_none()
        );
    }

    #[test]
    fn an_access_with_no_end_in_its_facts_is_read_again_after_the_maximum_age() {
        let cache = ReachCache::default();
        let seeds = vec!["Practitioner/dr".to_string()];
        cache.put(&seeds, None, 1, 0, None, reach());
        assert!(cache.get(&seeds, None, 1, MAX_AGE_MICROS - 1).is_some());
        assert!(cache.get(&seeds, None, 1, MAX_AGE_MICROS).is_none());
    }
}
