//! The notification hub's tables (`notification_settings`, `notification_outbox`): the same
//! SQL on both databases.

use async_trait::async_trait;
use medmesh_store::{
    NotificationHubStore, NotificationOutboxRow, NotificationSettingsRow, StoreError,
};

use crate::exec::Exec;
use crate::sql::{Arg, Col, Dialect, Row, Sql};
use crate::store::{Backend, SqlStore};

const OUTBOX_SELECT: &str = "SELECT id, account, category, channel, dedupe_key, payload, status, \
     attempts, next_attempt_micros, last_error, created_micros FROM notification_outbox";
const OUTBOX_COLS: [Col; 11] = [
    Col::Str,
    Col::Str,
    Col::Str,
    Col::Str,
    Col::Str,
    Col::Bytes,
    Col::Str,
    Col::I64,
    Col::I64,
    Col::OptStr,
    Col::I64,
];

fn outbox(mut r: Row) -> Result<NotificationOutboxRow, StoreError> {
    let payload = r.take_bytes(5)?;
    Ok(NotificationOutboxRow {
        id: r.string(0)?,
        account: r.string(1)?,
        category: r.string(2)?,
        channel: r.string(3)?,
        dedupe_key: r.string(4)?,
        payload,
        status: r.string(6)?,
        attempts: r.i64(7)?,
        next_attempt_micros: r.i64(8)?,
        last_error: r.opt_string(9)?,
        created_micros: r.i64(10)?,
    })
}

/// Queues a notification unless one with its channel and key is queued already; the same
/// statement outside and inside a record transaction.
pub(crate) async fn enqueue(
    tx: &mut (impl Exec + ?Sized),
    d: Dialect,
    row: &NotificationOutboxRow,
) -> Result<bool, StoreError> {
    let mut sql = Sql::new(
        d,
        "INSERT INTO notification_outbox (id, account, category, channel, dedupe_key, \
         payload, status, attempts, next_attempt_micros, lease_owner, lease_until, \
         last_error, created_micros) VALUES (",
    );
    sql.str(&row.id)
        .push(", ")
        .str(&row.account)
        .push(", ")
        .str(&row.category)
        .push(", ")
        .str(&row.channel)
        .push(", ")
        .str(&row.dedupe_key)
        .push(", ")
        .bind(Arg::Bytes(row.payload.clone()))
        .push(", ")
        .str(&row.status)
        .push(", ")
        .int(row.attempts)
        .push(", ")
        .int(row.next_attempt_micros)
        .push(", NULL, 0, ")
        .bind(Arg::OptStr(row.last_error.clone()))
        .push(", ")
        .int(row.created_micros)
        .push(") ON CONFLICT (channel, dedupe_key) DO NOTHING");
    Ok(tx.execute(sql).await? == 1)
}

/// Withdraws `account`'s pending notifications whose key starts with `key_prefix` (a
/// cancelled appointment's reminders). Returns how many.
pub(crate) async fn withdraw(
    tx: &mut (impl Exec + ?Sized),
    d: Dialect,
    account: &str,
    key_prefix: &str,
) -> Result<u64, StoreError> {
    let mut sql = Sql::new(
        d,
        "UPDATE notification_outbox SET status = 'withdrawn' WHERE status = 'pending' AND account = ",
    );
    sql.str(account)
        .push(" AND dedupe_key LIKE ")
        .str(&format!("{}%", crate::sql::like_escape(key_prefix)))
        .push(" ESCAPE '\\'");
    tx.execute(sql).await
}

impl<B: Backend> SqlStore<B> {
    async fn fetch_outbox(&self, sql: Sql) -> Result<Vec<NotificationOutboxRow>, StoreError> {
        let mut conn = self.backend().conn().await?;
        conn.fetch(sql, &OUTBOX_COLS)
            .await?
            .into_iter()
            .map(outbox)
            .collect()
    }
}

#[async_trait]
impl<B: Backend> NotificationHubStore for SqlStore<B> {
    async fn notification_settings(
        &self,
        account: &str,
    ) -> Result<Option<NotificationSettingsRow>, StoreError> {
        let mut sql = Sql::new(
            self.dialect(),
            "SELECT account, choices, email, updated_micros, webhook FROM notification_settings \
             WHERE account = ",
        );
        sql.str(account);
        let mut conn = self.backend().conn().await?;
        let rows = conn
            .fetch(sql, &[Col::Str, Col::Str, Col::Bytes, Col::I64, Col::Bytes])
            .await?;
        rows.into_iter()
            .next()
            .map(|mut r| {
                let email = r.take_bytes(2)?;
                let webhook = r.take_bytes(4)?;
                Ok(NotificationSettingsRow {
                    account: r.string(0)?,
                    choices: r.string(1)?,
                    email: (!email.is_empty()).then_some(email),
                    webhook: (!webhook.is_empty()).then_some(webhook),
                    updated_micros: r.i64(3)?,
                })
            })
            .transpose()
    }

    async fn put_notification_settings(
        &self,
        row: &NotificationSettingsRow,
    ) -> Result<(), StoreError> {
        let mut sql = Sql::new(
            self.dialect(),
            "INSERT INTO notification_settings (account, choices, email, updated_micros, webhook) \
             VALUES (",
        );
        sql.str(&row.account)
            .push(", ")
            .str(&row.choices)
            .push(", ")
            // No address is stored as no bytes (read back as none).
            .bind(Arg::Bytes(row.email.clone().unwrap_or_default()))
            .push(", ")
            .int(row.updated_micros)
            .push(", ")
            .bind(Arg::Bytes(row.webhook.clone().unwrap_or_default()))
            .push(
                ") ON CONFLICT (account) DO UPDATE SET choices = excluded.choices, \
                 email = excluded.email, updated_micros = excluded.updated_micros, \
                 webhook = excluded.webhook",
            );
        self.write(sql).await.map(|_| ())
    }

    async fn notification_enqueue(&self, row: &NotificationOutboxRow) -> Result<bool, StoreError> {
        let mut tx = self.backend().begin().await?;
        let queued = enqueue(&mut tx, self.dialect(), row).await?;
        B::commit(tx).await?;
        Ok(queued)
    }

    async fn notification_claim(
        &self,
        worker: &str,
        now: i64,
        lease_micros: i64,
        limit: u32,
    ) -> Result<Vec<NotificationOutboxRow>, StoreError> {
        let until = now + lease_micros;
        // The outer WHERE repeats the inner one: on PostgreSQL a row another worker claimed
        // meanwhile is checked again after its lock, and left to that worker.
        let mut claim = Sql::new(
            self.dialect(),
            "UPDATE notification_outbox SET lease_owner = ",
        );
        claim
            .str(worker)
            .push(", lease_until = ")
            .int(until)
            .push(" WHERE status = 'pending' AND next_attempt_micros <= ")
            .int(now)
            .push(" AND lease_until <= ")
            .int(now)
            .push(
                " AND id IN (SELECT id FROM notification_outbox WHERE status = 'pending' \
                 AND next_attempt_micros <= ",
            )
            .int(now)
            .push(" AND lease_until <= ")
            .int(now)
            .push(" ORDER BY next_attempt_micros, id")
            .limit(i64::from(limit))
            .push(")");
        self.write(claim).await?;
        let mut sql = Sql::new(self.dialect(), OUTBOX_SELECT);
        sql.push(" WHERE status = 'pending' AND lease_owner = ")
            .str(worker)
            .push(" AND lease_until = ")
            .int(until)
            .push(" ORDER BY next_attempt_micros, id");
        self.fetch_outbox(sql).await
    }

    async fn notification_attempted(&self, row: &NotificationOutboxRow) -> Result<(), StoreError> {
        let mut sql = Sql::new(self.dialect(), "UPDATE notification_outbox SET status = ");
        sql.str(&row.status)
            .push(", attempts = ")
            .int(row.attempts)
            .push(", next_attempt_micros = ")
            .int(row.next_attempt_micros)
            .push(", last_error = ")
            .bind(Arg::OptStr(row.last_error.clone()))
            .push(", lease_owner = NULL, lease_until = 0 WHERE id = ")
            .str(&row.id);
        self.write(sql).await.map(|_| ())
    }

    async fn notifications_in(
        &self,
        status: &str,
        limit: u32,
    ) -> Result<Vec<NotificationOutboxRow>, StoreError> {
        let mut sql = Sql::new(self.dialect(), OUTBOX_SELECT);
        sql.push(" WHERE status = ")
            .str(status)
            .push(" ORDER BY created_micros DESC, id")
            .limit(i64::from(limit.clamp(1, 1000)));
        self.fetch_outbox(sql).await
    }

    async fn notification(&self, id: &str) -> Result<Option<NotificationOutboxRow>, StoreError> {
        let mut sql = Sql::new(self.dialect(), OUTBOX_SELECT);
        sql.push(" WHERE id = ").str(id);
        Ok(self.fetch_outbox(sql).await?.pop())
    }

    async fn notification_counts(&self) -> Result<Vec<(String, String, i64)>, StoreError> {
        let sql = Sql::new(
            self.dialect(),
            "SELECT channel, status, COUNT(*) FROM notification_outbox GROUP BY channel, status \
             ORDER BY channel, status",
        );
        let mut conn = self.backend().conn().await?;
        conn.fetch(sql, &[Col::Str, Col::Str, Col::I64])
            .await?
            .iter()
            .map(|r| Ok((r.string(0)?, r.string(1)?, r.i64(2)?)))
            .collect()
    }
}
