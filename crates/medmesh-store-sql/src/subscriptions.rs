//! FHIR Subscriptions (`fhir_subscriptions`, `fhir_subscription_events`,
//! `fhir_subscription_cursor`): the same SQL on both databases.
//!
//! An event is numbered in a transaction that first bumps its subscription's count, which
//! locks the row (on SQLite, `BEGIN IMMEDIATE` already serializes writers), and only then
//! looks for the event's number: two replicas numbering one event agree on one number.

use async_trait::async_trait;
use medmesh_store::{StoreError, SubscriptionRow, SubscriptionStore};

use crate::exec::Exec;
use crate::sql::{Arg, Col, Row, Sql};
use crate::store::{Backend, SqlStore};

const SELECT: &str = "SELECT id, owner, topic, status, body, events, last_error, created_micros, \
     updated_micros FROM fhir_subscriptions";
const COLS: [Col; 9] = [
    Col::Str,
    Col::Str,
    Col::Str,
    Col::Str,
    Col::Bytes,
    Col::I64,
    Col::OptStr,
    Col::I64,
    Col::I64,
];
/// The cursor's row: one feed reader for every subscription on the database.
const CURSOR: &str = "subscriptions";

fn subscription(mut r: Row) -> Result<SubscriptionRow, StoreError> {
    let body = r.take_bytes(4)?;
    Ok(SubscriptionRow {
        id: r.string(0)?,
        owner: r.string(1)?,
        topic: r.string(2)?,
        status: r.string(3)?,
        body,
        events: r.i64(5)?,
        last_error: r.opt_string(6)?,
        created_micros: r.i64(7)?,
        updated_micros: r.i64(8)?,
    })
}

impl<B: Backend> SqlStore<B> {
    async fn fetch_subscriptions(&self, sql: Sql) -> Result<Vec<SubscriptionRow>, StoreError> {
        let mut conn = self.backend().conn().await?;
        conn.fetch(sql, &COLS)
            .await?
            .into_iter()
            .map(subscription)
            .collect()
    }
}

#[async_trait]
impl<B: Backend> SubscriptionStore for SqlStore<B> {
    async fn subscription_put(&self, row: &SubscriptionRow) -> Result<(), StoreError> {
        let mut sql = Sql::new(
            self.dialect(),
            "INSERT INTO fhir_subscriptions (id, owner, topic, status, body, events, \
             last_error, created_micros, updated_micros) VALUES (",
        );
        sql.str(&row.id)
            .push(", ")
            .str(&row.owner)
            .push(", ")
            .str(&row.topic)
            .push(", ")
            .str(&row.status)
            .push(", ")
            .bind(Arg::Bytes(row.body.clone()))
            .push(", ")
            .int(row.events)
            .push(", ")
            .bind(Arg::OptStr(row.last_error.clone()))
            .push(", ")
            .int(row.created_micros)
            .push(", ")
            .int(row.updated_micros)
            .push(
                ") ON CONFLICT (id) DO UPDATE SET owner = excluded.owner, topic = excluded.topic, \
                 status = excluded.status, body = excluded.body, last_error = excluded.last_error, \
                 updated_micros = excluded.updated_micros",
            );
        self.write(sql).await.map(|_| ())
    }

    async fn subscription(&self, id: &str) -> Result<Option<SubscriptionRow>, StoreError> {
        let mut sql = Sql::new(self.dialect(), SELECT);
        sql.push(" WHERE id = ").str(id);
        Ok(self.fetch_subscriptions(sql).await?.into_iter().next())
    }

    async fn subscriptions_of(
        &self,
        owner: &str,
        limit: u32,
    ) -> Result<Vec<SubscriptionRow>, StoreError> {
        let mut sql = Sql::new(self.dialect(), SELECT);
        sql.push(" WHERE owner = ")
            .str(owner)
            .push(" ORDER BY created_micros, id LIMIT ")
            .int(i64::from(limit));
        self.fetch_subscriptions(sql).await
    }

    async fn subscriptions_live(&self) -> Result<Vec<SubscriptionRow>, StoreError> {
        let mut sql = Sql::new(self.dialect(), SELECT);
        sql.push(" WHERE status IN ('requested', 'active', 'error') ORDER BY created_micros, id");
        self.fetch_subscriptions(sql).await
    }

    async fn subscription_set_status(
        &self,
        id: &str,
        status: &str,
        last_error: Option<&str>,
        now_micros: i64,
    ) -> Result<bool, StoreError> {
        let mut sql = Sql::new(self.dialect(), "UPDATE fhir_subscriptions SET status = ");
        sql.str(status)
            .push(", last_error = ")
            .bind(Arg::OptStr(last_error.map(str::to_string)))
            .push(", updated_micros = ")
            .int(now_micros)
            .push(" WHERE id = ")
            .str(id);
        Ok(self.write(sql).await? == 1)
    }

    async fn subscription_delete(&self, id: &str) -> Result<bool, StoreError> {
        let d = self.dialect();
        let mut tx = self.backend().begin().await?;
        let mut events = Sql::new(
            d,
            "DELETE FROM fhir_subscription_events WHERE subscription_id = ",
        );
        events.str(id);
        tx.execute(events).await?;
        let mut sql = Sql::new(d, "DELETE FROM fhir_subscriptions WHERE id = ");
        sql.str(id);
        let n = tx.execute(sql).await?;
        B::commit(tx).await?;
        Ok(n == 1)
    }

    async fn subscription_event_number(
        &self,
        id: &str,
        event_key: &str,
        now_micros: i64,
    ) -> Result<Option<i64>, StoreError> {
        let d = self.dialect();
        let mut tx = self.backend().begin().await?;
        // Locks the subscription's row before anything is read.
        let mut bump = Sql::new(
            d,
            "UPDATE fhir_subscriptions SET events = events + 1, updated_micros = ",
        );
        bump.int(now_micros).push(" WHERE id = ").str(id);
        if tx.execute(bump).await? == 0 {
            B::rollback(tx).await?;
            return Ok(None);
        }
        let mut known = Sql::new(
            d,
            "SELECT number FROM fhir_subscription_events WHERE subscription_id = ",
        );
        known.str(id).push(" AND event_key = ").str(event_key);
        if let Some(row) = tx.fetch(known, &[Col::I64]).await?.first() {
            let number = row.i64(0)?;
            B::rollback(tx).await?;
            return Ok(Some(number));
        }
        let mut count = Sql::new(d, "SELECT events FROM fhir_subscriptions WHERE id = ");
        count.str(id);
        let number = tx
            .fetch(count, &[Col::I64])
            .await?
            .first()
            .map(|r| r.i64(0))
            .transpose()?
            .ok_or_else(|| StoreError::Invalid("the subscription has no count".into()))?;
        let mut insert = Sql::new(
            d,
            "INSERT INTO fhir_subscription_events (subscription_id, event_key, number) VALUES (",
        );
        insert
            .str(id)
            .push(", ")
            .str(event_key)
            .push(", ")
            .int(number)
            .push(")");
        tx.execute(insert).await?;
        B::commit(tx).await?;
        Ok(Some(number))
    }

    async fn subscription_cursor(&self) -> Result<i64, StoreError> {
        let mut sql = Sql::new(
            self.dialect(),
            "SELECT seq FROM fhir_subscription_cursor WHERE name = ",
        );
        sql.str(CURSOR);
        let mut conn = self.backend().conn().await?;
        let rows = conn.fetch(sql, &[Col::I64]).await?;
        rows.first().map_or(Ok(0), |r| r.i64(0))
    }

    async fn subscription_set_cursor(&self, seq: i64, now_micros: i64) -> Result<(), StoreError> {
        let mut sql = Sql::new(
            self.dialect(),
            "INSERT INTO fhir_subscription_cursor (name, seq, updated_micros) VALUES (",
        );
        sql.str(CURSOR)
            .push(", ")
            .int(seq)
            .push(", ")
            .int(now_micros)
            .push(
                ") ON CONFLICT (name) DO UPDATE SET seq = excluded.seq, \
                 updated_micros = excluded.updated_micros",
            );
        self.write(sql).await.map(|_| ())
    }

    async fn change_feed_head(&self) -> Result<i64, StoreError> {
        let sql = Sql::new(
            self.dialect(),
            "SELECT COALESCE(MAX(seq), 0) FROM resource_versions",
        );
        let mut conn = self.backend().conn().await?;
        let rows = conn.fetch(sql, &[Col::I64]).await?;
        rows.first().map_or(Ok(0), |r| r.i64(0))
    }
}
