//! The record's change feed: the versions written to some types after a point, for systems
//! that turn the record's events into messages (an outbound HL7 v2 channel sends a booked
//! Appointment as SIU^S12, a final DiagnosticReport as ORU^R01). Each type is a read that
//! passes the PDP; what the grant does not reach is left out; what is returned is audited.

use medmesh_audit::Outcome;
use medmesh_policy::Action;
use serde_json::Value;

use crate::context::RequestContext;
use crate::error::RecordError;
use crate::service::RecordService;

/// One version from the change feed.
#[derive(Debug, Clone)]
pub struct Change {
    /// The row's place in the feed (the cursor to read after).
    pub seq: i64,
    /// When it was written, microseconds.
    pub last_updated: i64,
    /// Resource type.
    pub resource_type: String,
    /// Logical id.
    pub id: String,
    /// Version number.
    pub version: i64,
    /// The resource, when the caller's grant reaches it (`None`: the row is passed over).
    pub resource: Option<Value>,
}

/// The most rows one call reads.
const MAX_CHANGES: u32 = 500;

/// How long after a version was written a reader's cursor may pass it: PostgreSQL can commit
/// a row after a later-numbered one, so rows younger than this are read again (not acted on
/// again) until they are older.
pub const FEED_SETTLE_MICROS: i64 = 60_000_000;

/// What a reader of the change feed keeps between reads: the rows after its stored cursor
/// it has acted on already (younger than [`FEED_SETTLE_MICROS`], so the cursor could not
/// pass them). Each reader of the feed (an outbound channel, the subscriptions) keeps one.
#[derive(Debug, Clone, Default)]
pub struct FeedSeen(std::collections::BTreeSet<i64>);

impl FeedSeen {
    /// The rows after `cursor` already acted on, to pass to [`RecordService::changes`] as
    /// `already` (those at or before the cursor are forgotten).
    pub fn after(&mut self, cursor: i64) -> std::collections::BTreeSet<i64> {
        self.0.retain(|s| *s > cursor);
        self.0.clone()
    }

    /// After acting on `changes` (read after `cursor`): the new cursor, the last row of an
    /// unbroken run of rows written before `settled_before`; the rows after it are
    /// remembered as acted on.
    pub fn advance(&mut self, changes: &[Change], cursor: i64, settled_before: i64) -> i64 {
        let new_cursor = changes
            .iter()
            .take_while(|c| c.last_updated < settled_before)
            .last()
            .map_or(cursor, |c| c.seq);
        self.0
            .extend(changes.iter().map(|c| c.seq).filter(|s| *s > new_cursor));
        new_cursor
    }
}

impl RecordService {
    /// Versions of `types` written after feed row `after_seq`, oldest first, at most `limit`
    /// (up to 500). Every type must be readable by the caller; one audit entry names what
    /// was returned. Rows in `already` (which the caller read before and reads again only
    /// to move past them) are listed without their resource, and not read again.
    ///
    /// # Errors
    /// [`RecordError::Forbidden`] when the PDP refuses a type, or as the store fails.
    pub async fn changes(
        &self,
        ctx: &RequestContext,
        types: &[String],
        after_seq: i64,
        already: &std::collections::BTreeSet<i64>,
        limit: u32,
    ) -> Result<Vec<Change>, RecordError> {
        let mut grants = std::collections::HashMap::new();
        for rt in types {
            self.check_type(rt)?;
            grants.insert(
                rt.clone(),
                self.authorize(ctx, Action::Read, Some(rt)).await?,
            );
        }
        let rows = self
            .store
            .versions_after(after_seq, types, limit.clamp(1, MAX_CHANGES))
            .await?;
        let mut out = Vec::with_capacity(rows.len());
        let mut ids = Vec::new();
        let mut patients = Vec::new();
        for row in rows {
            let v = row.version;
            let resource = match grants.get(&v.resource_type) {
                _ if already.contains(&row.seq) => None,
                Some(grant) => match self.decode(&v).await {
                    Ok(r) if self.admits(grant, &v.resource_type, &r) => Some(r),
                    Ok(_) | Err(RecordError::Erased) => None,
                    Err(e) => return Err(e),
                },
                None => None,
            };
            if let Some(r) = &resource {
                ids.push(format!(
                    "{}/{}/_history/{}",
                    v.resource_type, v.id, v.version
                ));
                patients.extend(self.compartment_owners(&v.resource_type, r));
            }
            out.push(Change {
                seq: row.seq,
                last_updated: v.last_updated,
                resource_type: v.resource_type,
                id: v.id,
                version: v.version,
                resource,
            });
        }
        if !ids.is_empty() {
            patients.sort();
            patients.dedup();
            let mut entry = self.entry(ctx, "changes", None, ids, Outcome::Success);
            entry.patients = patients;
            self.audit.append(vec![entry]).await?;
        }
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn change(seq: i64, last_updated: i64) -> Change {
        Change {
            seq,
            last_updated,
            resource_type: "Appointment".into(),
            id: format!("a{seq}"),
            version: 1,
            resource: None,
        }
    }

    #[test]
    fn the_cursor_passes_only_settled_rows_and_the_rest_are_remembered() {
        let mut seen = FeedSeen::default();
        assert!(seen.after(0).is_empty());
        // Rows 1 and 2 are settled (written before 100), 3 is not, 4 is but follows it.
        let read = [change(1, 10), change(2, 20), change(3, 150), change(4, 30)];
        assert_eq!(seen.advance(&read, 0, 100), 2);
        assert_eq!(seen.after(2).into_iter().collect::<Vec<_>>(), [3, 4]);
        // Nothing settled: the cursor stays.
        assert_eq!(seen.advance(&[change(5, 200)], 2, 100), 2);
        assert_eq!(seen.after(2).into_iter().collect::<Vec<_>>(), [3, 4, 5]);
        // Later, all settled: the cursor moves past them and they are forgotten.
        assert_eq!(seen.advance(&read[2..], 2, 1_000), 4);
        assert_eq!(seen.after(4).into_iter().collect::<Vec<_>>(), [5]);
    }
}
