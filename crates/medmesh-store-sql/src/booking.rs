//! Claimed time (`booking_calendars`, `booking_claims`): the same SQL on both databases.
//!
//! A claim first upserts each calendar's row, which locks it until the transaction ends (on
//! SQLite, `BEGIN IMMEDIATE` already serializes writers), then looks for another holder's
//! live overlapping claim, and only then inserts, under the provisional holder. Two
//! concurrent claims on one calendar are therefore judged one after the other, whichever
//! node made them. Confirming renames the provisional rows to the appointment's.

use async_trait::async_trait;
use medmesh_store::{BookingStore, ClaimedTime, StoreError, TimeClaim, provisional};

use crate::exec::Exec;
use crate::sql::{Arg, Col, Dialect, Sql};
use crate::store::{Backend, SqlStore};

/// The live-claim condition at `now`: booked, or held past `now`.
fn live(sql: &mut Sql, now: i64) {
    sql.push(" AND (expires_micros IS NULL OR expires_micros > ")
        .int(now)
        .push(")");
}

pub(crate) async fn claim_time(
    tx: &mut (impl Exec + ?Sized),
    d: Dialect,
    holder: &str,
    claims: &[TimeClaim],
    now: i64,
) -> Result<bool, StoreError> {
    if claims
        .iter()
        .any(|c| c.holder != holder || c.end_micros <= c.start_micros)
    {
        return Err(StoreError::Invalid(
            "a claim of another holder or of no time".into(),
        ));
    }
    if d == Dialect::Postgres {
        // The commit of a provisional claim does not wait for the WAL's flush, so a hot
        // calendar's lock is not held through an fsync (bench/README.md, "The calendar's
        // lock"). Nothing answered rests on it alone: the claim lapses unless the write
        // transaction that stores the Appointment confirms it, and that commit waits for the
        // flush, which takes every earlier WAL record, this claim's commit among them. A
        // server crash can lose only a claim whose booking was never acknowledged (then a
        // call refused for it was refused for a time that is free again).
        tx.execute(Sql::new(d, "SET LOCAL synchronous_commit = off"))
            .await?;
    }
    let temporary = provisional(holder);
    let mut calendars: Vec<&str> = claims.iter().map(|c| c.calendar.as_str()).collect();
    calendars.sort_unstable();
    calendars.dedup();
    // Locked in one order, so two claims over the same calendars cannot deadlock.
    for calendar in &calendars {
        let mut lock = Sql::new(
            d,
            "INSERT INTO booking_calendars (calendar, claims) VALUES (",
        );
        lock.str(calendar).push(
            ", 1) ON CONFLICT (calendar) DO UPDATE SET claims = booking_calendars.claims + 1",
        );
        tx.execute(lock).await?;
    }
    if d == Dialect::Postgres {
        return judge_and_claim(tx, d, &temporary, holder, claims, &calendars, now).await;
    }
    for c in claims {
        let mut overlap = Sql::new(d, "SELECT COUNT(*) FROM booking_claims WHERE calendar = ");
        overlap
            .str(&c.calendar)
            .push(" AND holder <> ")
            .str(holder)
            .push(" AND holder <> ")
            .str(&temporary)
            .push(" AND start_micros < ")
            .int(c.end_micros)
            .push(" AND end_micros > ")
            .int(c.start_micros);
        live(&mut overlap, now);
        let taken = tx.fetch(overlap, &[Col::I64]).await?;
        if taken.first().map(|r| r.i64(0)).transpose()?.unwrap_or(0) > 0 {
            return Ok(false);
        }
    }
    // Lapsed holds on these calendars go while they are locked.
    for calendar in &calendars {
        let mut lapsed = Sql::new(d, "DELETE FROM booking_claims WHERE calendar = ");
        lapsed
            .str(calendar)
            .push(" AND expires_micros IS NOT NULL AND expires_micros <= ")
            .int(now);
        tx.execute(lapsed).await?;
    }
    release_time(tx, d, &temporary).await?;
    for c in claims {
        let mut insert = Sql::new(
            d,
            "INSERT INTO booking_claims (calendar, holder, start_micros, end_micros, \
             expires_micros) VALUES (",
        );
        insert
            .str(&c.calendar)
            .push(", ")
            .str(&temporary)
            .push(", ")
            .int(c.start_micros)
            .push(", ")
            .int(c.end_micros)
            .push(", ")
            .bind(Arg::OptI64(c.expires_micros))
            .push(")");
        tx.execute(insert).await?;
    }
    Ok(true)
}

/// PostgreSQL, with the calendars locked: the overlap check, the clean-up and the inserts in
/// one statement, so a hot calendar's lock is held for two round trips (this and the commit)
/// instead of five (bench/README.md, "Bookings on PostgreSQL"). The statement's snapshot is
/// taken after the locks are held (an earlier statement took them), so it sees every claim
/// committed before. Its parts touch disjoint rows: the lapsed rows and the provisional
/// rows it clears are never the rows it writes.
async fn judge_and_claim(
    tx: &mut (impl Exec + ?Sized),
    d: Dialect,
    temporary: &str,
    holder: &str,
    claims: &[TimeClaim],
    calendars: &[&str],
    now: i64,
) -> Result<bool, StoreError> {
    let mut sql = Sql::new(
        d,
        "WITH lapsed AS (DELETE FROM booking_claims WHERE calendar IN (",
    );
    sql.str_list(calendars)
        .push(") AND expires_micros IS NOT NULL AND expires_micros <= ")
        .int(now)
        .push(" AND holder <> ")
        .str(temporary)
        .push("), released AS (DELETE FROM booking_claims WHERE holder = ")
        .str(temporary)
        .push(" AND calendar NOT IN (")
        .str_list(calendars)
        // `expires`, not `expires_micros`: the overlap check below names the claims' own
        // columns bare (`live`).
        .push(")), wanted (calendar, start_micros, end_micros, expires) AS (VALUES ");
    for (i, c) in claims.iter().enumerate() {
        sql.push(if i > 0 { ", (" } else { "(" })
            .str(&c.calendar)
            .push(", ")
            .int(c.start_micros)
            .push(", ")
            .int(c.end_micros)
            .push(", CAST(")
            .bind(Arg::OptI64(c.expires_micros))
            .push(" AS BIGINT))");
    }
    sql.push(
        "), claimed AS (INSERT INTO booking_claims (calendar, holder, start_micros, end_micros, \
         expires_micros) SELECT w.calendar, ",
    )
    .str(temporary)
    .push(
        ", w.start_micros, w.end_micros, w.expires FROM wanted w WHERE NOT EXISTS \
         (SELECT 1 FROM booking_claims b JOIN wanted o ON b.calendar = o.calendar \
         WHERE b.holder <> ",
    )
    .str(holder)
    .push(" AND b.holder <> ")
    .str(temporary)
    .push(" AND b.start_micros < o.end_micros AND b.end_micros > o.start_micros");
    live(&mut sql, now);
    sql.push(
        ") ON CONFLICT (calendar, holder) DO UPDATE SET start_micros = excluded.start_micros, \
         end_micros = excluded.end_micros, expires_micros = excluded.expires_micros \
         RETURNING 1) SELECT count(*) FROM claimed",
    );
    let inserted = tx.fetch(sql, &[Col::I64]).await?;
    let inserted = inserted.first().map(|r| r.i64(0)).transpose()?.unwrap_or(0);
    Ok(usize::try_from(inserted).is_ok_and(|n| n == claims.len()))
}

pub(crate) async fn confirm_time(
    tx: &mut (impl Exec + ?Sized),
    d: Dialect,
    holder: &str,
    expires: Option<i64>,
    now: i64,
) -> Result<bool, StoreError> {
    let temporary = provisional(holder);
    let mut count = Sql::new(d, "SELECT COUNT(*) FROM booking_claims WHERE holder = ");
    count.str(&temporary);
    live(&mut count, now);
    let found = tx.fetch(count, &[Col::I64]).await?;
    if found.first().map(|r| r.i64(0)).transpose()?.unwrap_or(0) == 0 {
        return Ok(false);
    }
    release_time(tx, d, holder).await?;
    let mut rename = Sql::new(d, "UPDATE booking_claims SET holder = ");
    rename
        .str(holder)
        .push(", expires_micros = ")
        .bind(Arg::OptI64(expires))
        .push(" WHERE holder = ")
        .str(&temporary);
    tx.execute(rename).await?;
    Ok(true)
}

pub(crate) async fn release_time(
    tx: &mut (impl Exec + ?Sized),
    d: Dialect,
    holder: &str,
) -> Result<u64, StoreError> {
    let mut sql = Sql::new(d, "DELETE FROM booking_claims WHERE holder = ");
    sql.str(holder);
    tx.execute(sql).await
}

#[async_trait]
impl<B: Backend> BookingStore for SqlStore<B> {
    async fn claimed_time(
        &self,
        calendars: &[String],
        from: i64,
        to: i64,
        now: i64,
    ) -> Result<Vec<ClaimedTime>, StoreError> {
        if calendars.is_empty() {
            return Ok(Vec::new());
        }
        let mut sql = Sql::new(
            self.dialect(),
            "SELECT calendar, start_micros, end_micros FROM booking_claims WHERE calendar IN (",
        );
        sql.str_list(calendars)
            .push(") AND start_micros < ")
            .int(to)
            .push(" AND end_micros > ")
            .int(from);
        live(&mut sql, now);
        sql.push(" ORDER BY calendar, start_micros");
        let mut conn = self.backend().conn().await?;
        conn.fetch(sql, &[Col::Str, Col::I64, Col::I64])
            .await?
            .into_iter()
            .map(|r| {
                Ok(ClaimedTime {
                    calendar: r.string(0)?,
                    start_micros: r.i64(1)?,
                    end_micros: r.i64(2)?,
                })
            })
            .collect()
    }

    async fn claims_of(&self, holder: &str, now: i64) -> Result<Vec<TimeClaim>, StoreError> {
        let mut sql = Sql::new(
            self.dialect(),
            "SELECT calendar, start_micros, end_micros, expires_micros FROM booking_claims \
             WHERE holder = ",
        );
        sql.str(holder);
        live(&mut sql, now);
        sql.push(" ORDER BY calendar");
        let mut conn = self.backend().conn().await?;
        conn.fetch(sql, &[Col::Str, Col::I64, Col::I64, Col::OptI64])
            .await?
            .into_iter()
            .map(|r| {
                Ok(TimeClaim {
                    calendar: r.string(0)?,
                    holder: holder.to_string(),
                    start_micros: r.i64(1)?,
                    end_micros: r.i64(2)?,
                    expires_micros: r.opt_i64(3)?,
                })
            })
            .collect()
    }
}
