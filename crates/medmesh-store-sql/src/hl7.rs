//! The interface engine's tables (`hl7_messages`, `hl7_senders`): the same SQL on both
//! databases.

use async_trait::async_trait;
use medmesh_store::{
    Hl7Filter, Hl7MessageRow, Hl7OutboundRow, Hl7OutboxStore, Hl7SenderRow, Hl7Store, StoreError,
};

use crate::exec::Exec;
use crate::sql::{Arg, Col, Dialect, Row, Sql};
use crate::store::{Backend, SqlStore};

const MESSAGE_SELECT: &str = "SELECT id, sender, control_id, message_type, received_micros, status, \
     ack_code, raw, detail, patient_token, attempts, updated_micros FROM hl7_messages";
const MESSAGE_COLS: [Col; 12] = [
    Col::Str,
    Col::Str,
    Col::Str,
    Col::Str,
    Col::I64,
    Col::Str,
    Col::OptStr,
    Col::Bytes,
    Col::Bytes,
    Col::OptStr,
    Col::I64,
    Col::I64,
];

fn message(mut r: Row) -> Result<Hl7MessageRow, StoreError> {
    let raw = r.take_bytes(7)?;
    let detail = r.take_bytes(8)?;
    Ok(Hl7MessageRow {
        id: r.string(0)?,
        sender: r.string(1)?,
        control_id: r.string(2)?,
        message_type: r.string(3)?,
        received_micros: r.i64(4)?,
        status: r.string(5)?,
        ack_code: r.opt_string(6)?,
        raw,
        detail: (!detail.is_empty()).then_some(detail),
        patient_token: r.opt_string(9)?,
        attempts: r.i64(10)?,
        updated_micros: r.i64(11)?,
    })
}

/// The WHERE clause of a message filter, for a list and for a count alike.
fn filter_where(sql: &mut Sql, filter: &Hl7Filter) {
    sql.push(" WHERE 1 = 1");
    if let Some(s) = &filter.sender {
        sql.push(" AND sender = ").str(s);
    }
    if let Some(t) = &filter.message_type {
        if t.contains('^') {
            sql.push(" AND message_type = ").str(t);
        } else {
            sql.push(" AND message_type LIKE ")
                .str(&format!("{}^%", crate::sql::like_escape(t)))
                .push(" ESCAPE '\\'");
        }
    }
    if let Some(s) = &filter.status {
        sql.push(" AND status = ").str(s);
    }
    if let Some(c) = &filter.control_id {
        sql.push(" AND control_id = ").str(c);
    }
    if let Some(t) = filter.since {
        sql.push(" AND received_micros >= ").int(t);
    }
    if let Some(t) = filter.until {
        sql.push(" AND received_micros < ").int(t);
    }
}

const SENDER_SELECT: &str = "SELECT name, application, facility, addresses, secret_hash, profile, \
     created_micros, ack_destination FROM hl7_senders";
const SENDER_COLS: [Col; 8] = [
    Col::Str,
    Col::Str,
    Col::Str,
    Col::Str,
    Col::OptStr,
    Col::Str,
    Col::I64,
    Col::OptStr,
];

fn sender(r: &Row) -> Result<Hl7SenderRow, StoreError> {
    Ok(Hl7SenderRow {
        name: r.string(0)?,
        application: r.string(1)?,
        facility: r.string(2)?,
        addresses: r.string(3)?,
        secret_hash: r.opt_string(4)?,
        profile: r.string(5)?,
        created_micros: r.i64(6)?,
        ack_destination: r.opt_string(7)?,
    })
}

impl<B: Backend> SqlStore<B> {
    /// One statement in a write transaction of its own: committed (and so durable) when
    /// this returns.
    pub(crate) async fn write(&self, sql: Sql) -> Result<u64, StoreError> {
        let mut tx = self.backend().begin().await?;
        let n = tx.execute(sql).await?;
        B::commit(tx).await?;
        Ok(n)
    }

    async fn fetch_messages(&self, sql: Sql) -> Result<Vec<Hl7MessageRow>, StoreError> {
        let mut conn = self.backend().conn().await?;
        conn.fetch(sql, &MESSAGE_COLS)
            .await?
            .into_iter()
            .map(message)
            .collect()
    }
}

#[async_trait]
impl<B: Backend> Hl7Store for SqlStore<B> {
    async fn hl7_insert(&self, row: &Hl7MessageRow) -> Result<bool, StoreError> {
        self.write(insert_message(self.dialect(), row))
            .await
            .map(|n| n == 1)
    }

    async fn hl7_message(&self, id: &str) -> Result<Option<Hl7MessageRow>, StoreError> {
        let mut sql = Sql::new(self.dialect(), MESSAGE_SELECT);
        sql.push(" WHERE id = ").str(id);
        Ok(self.fetch_messages(sql).await?.pop())
    }

    async fn hl7_message_by_control(
        &self,
        sender: &str,
        control_id: &str,
    ) -> Result<Option<Hl7MessageRow>, StoreError> {
        let mut sql = Sql::new(self.dialect(), MESSAGE_SELECT);
        sql.push(" WHERE sender = ")
            .str(sender)
            .push(" AND control_id = ")
            .str(control_id);
        Ok(self.fetch_messages(sql).await?.pop())
    }

    async fn hl7_update(&self, row: &Hl7MessageRow) -> Result<(), StoreError> {
        self.write(update_message(self.dialect(), row))
            .await
            .map(|_| ())
    }

    async fn hl7_messages(
        &self,
        filter: &Hl7Filter,
        limit: u32,
    ) -> Result<Vec<Hl7MessageRow>, StoreError> {
        let mut sql = Sql::new(self.dialect(), MESSAGE_SELECT);
        filter_where(&mut sql, filter);
        sql.push(" ORDER BY received_micros DESC, id DESC")
            .limit(i64::from(limit));
        self.fetch_messages(sql).await
    }

    async fn hl7_pending(&self, limit: u32) -> Result<Vec<Hl7MessageRow>, StoreError> {
        let mut sql = Sql::new(self.dialect(), MESSAGE_SELECT);
        sql.push(" WHERE status = 'received' ORDER BY received_micros, id")
            .limit(i64::from(limit));
        self.fetch_messages(sql).await
    }

    async fn hl7_prune(&self, before_micros: i64) -> Result<u64, StoreError> {
        let mut sql = Sql::new(
            self.dialect(),
            "DELETE FROM hl7_messages WHERE status <> 'received' AND received_micros < ",
        );
        sql.int(before_micros);
        self.write(sql).await
    }

    async fn hl7_counts(&self) -> Result<Vec<(String, String, i64)>, StoreError> {
        let sql = Sql::new(
            self.dialect(),
            "SELECT sender, status, COUNT(*) FROM hl7_messages GROUP BY sender, status \
             ORDER BY sender, status",
        );
        let mut conn = self.backend().conn().await?;
        conn.fetch(sql, &[Col::Str, Col::Str, Col::I64])
            .await?
            .iter()
            .map(|r| Ok((r.string(0)?, r.string(1)?, r.i64(2)?)))
            .collect()
    }

    async fn hl7_count(&self, filter: &Hl7Filter) -> Result<i64, StoreError> {
        let mut sql = Sql::new(self.dialect(), "SELECT COUNT(*) FROM hl7_messages");
        filter_where(&mut sql, filter);
        let mut conn = self.backend().conn().await?;
        conn.fetch(sql, &[Col::I64])
            .await?
            .first()
            .map_or(Ok(0), |r| r.i64(0))
    }

    async fn hl7_senders(&self) -> Result<Vec<Hl7SenderRow>, StoreError> {
        let mut sql = Sql::new(self.dialect(), SENDER_SELECT);
        sql.push(" ORDER BY name");
        let mut conn = self.backend().conn().await?;
        conn.fetch(sql, &SENDER_COLS)
            .await?
            .iter()
            .map(sender)
            .collect()
    }

    async fn hl7_put_sender(&self, s: &Hl7SenderRow) -> Result<(), StoreError> {
        let mut tx = self.backend().begin().await?;
        let mut del = Sql::new(self.dialect(), "DELETE FROM hl7_senders WHERE name = ");
        del.str(&s.name);
        tx.execute(del).await?;
        let mut sql = Sql::new(
            self.dialect(),
            "INSERT INTO hl7_senders (name, application, facility, addresses, secret_hash, \
             profile, created_micros, ack_destination) VALUES (",
        );
        sql.str(&s.name)
            .push(", ")
            .str(&s.application)
            .push(", ")
            .str(&s.facility)
            .push(", ")
            .str(&s.addresses)
            .push(", ")
            .bind(Arg::OptStr(s.secret_hash.clone()))
            .push(", ")
            .str(&s.profile)
            .push(", ")
            .int(s.created_micros)
            .push(", ")
            .bind(Arg::OptStr(s.ack_destination.clone()))
            .push(")");
        tx.execute(sql).await?;
        B::commit(tx).await
    }

    async fn hl7_remove_sender(&self, name: &str) -> Result<bool, StoreError> {
        let mut sql = Sql::new(self.dialect(), "DELETE FROM hl7_senders WHERE name = ");
        sql.str(name);
        Ok(self.write(sql).await? > 0)
    }
}

const OUTBOUND_SELECT: &str = "SELECT id, channel, source_id, queued_micros, status, payload, \
     attempts, next_attempt_micros, last_error FROM hl7_outbound";
const OUTBOUND_COLS: [Col; 9] = [
    Col::Str,
    Col::Str,
    Col::Str,
    Col::I64,
    Col::Str,
    Col::Bytes,
    Col::I64,
    Col::I64,
    Col::OptStr,
];

fn outbound(mut r: Row) -> Result<Hl7OutboundRow, StoreError> {
    let payload = r.take_bytes(5)?;
    Ok(Hl7OutboundRow {
        id: r.string(0)?,
        channel: r.string(1)?,
        source_id: r.string(2)?,
        queued_micros: r.i64(3)?,
        status: r.string(4)?,
        payload,
        attempts: r.i64(6)?,
        next_attempt_micros: r.i64(7)?,
        last_error: r.opt_string(8)?,
    })
}

#[async_trait]
impl<B: Backend> Hl7OutboxStore for SqlStore<B> {
    async fn hl7_enqueue(&self, row: &Hl7OutboundRow) -> Result<bool, StoreError> {
        let mut sql = Sql::new(
            self.dialect(),
            "INSERT INTO hl7_outbound (id, channel, source_id, queued_micros, status, payload, \
             attempts, next_attempt_micros, last_error) VALUES (",
        );
        sql.str(&row.id)
            .push(", ")
            .str(&row.channel)
            .push(", ")
            .str(&row.source_id)
            .push(", ")
            .int(row.queued_micros)
            .push(", ")
            .str(&row.status)
            .push(", ")
            .bind(Arg::Bytes(row.payload.clone()))
            .push(", ")
            .int(row.attempts)
            .push(", ")
            .int(row.next_attempt_micros)
            .push(", ")
            .bind(Arg::OptStr(row.last_error.clone()))
            .push(") ON CONFLICT (channel, source_id) DO NOTHING");
        self.write(sql).await.map(|n| n == 1)
    }

    async fn hl7_outbound_pending(
        &self,
        channel: &str,
        limit: u32,
    ) -> Result<Vec<Hl7OutboundRow>, StoreError> {
        let mut sql = Sql::new(self.dialect(), OUTBOUND_SELECT);
        sql.push(" WHERE channel = ")
            .str(channel)
            .push(" AND status = 'pending' ORDER BY queued_micros, id")
            .limit(i64::from(limit));
        let mut conn = self.backend().conn().await?;
        conn.fetch(sql, &OUTBOUND_COLS)
            .await?
            .into_iter()
            .map(outbound)
            .collect()
    }

    async fn hl7_outbound_update(&self, row: &Hl7OutboundRow) -> Result<(), StoreError> {
        let mut sql = Sql::new(self.dialect(), "UPDATE hl7_outbound SET status = ");
        sql.str(&row.status)
            .push(", attempts = ")
            .int(row.attempts)
            .push(", next_attempt_micros = ")
            .int(row.next_attempt_micros)
            .push(", last_error = ")
            .bind(Arg::OptStr(row.last_error.clone()))
            .push(" WHERE id = ")
            .str(&row.id);
        self.write(sql).await.map(|_| ())
    }

    async fn hl7_outbound_counts(&self) -> Result<Vec<(String, String, i64)>, StoreError> {
        let sql = Sql::new(
            self.dialect(),
            "SELECT channel, status, COUNT(*) FROM hl7_outbound GROUP BY channel, status \
             ORDER BY channel, status",
        );
        let mut conn = self.backend().conn().await?;
        conn.fetch(sql, &[Col::Str, Col::Str, Col::I64])
            .await?
            .iter()
            .map(|r| Ok((r.string(0)?, r.string(1)?, r.i64(2)?)))
            .collect()
    }

    async fn hl7_event_cursor(&self, channel: &str) -> Result<i64, StoreError> {
        let mut sql = Sql::new(
            self.dialect(),
            "SELECT seq FROM hl7_event_cursors WHERE channel = ",
        );
        sql.str(channel);
        let mut conn = self.backend().conn().await?;
        let rows = conn.fetch(sql, &[Col::I64]).await?;
        rows.first().map_or(Ok(0), |r| r.i64(0))
    }

    async fn hl7_set_event_cursor(
        &self,
        channel: &str,
        seq: i64,
        now_micros: i64,
    ) -> Result<(), StoreError> {
        let mut sql = Sql::new(
            self.dialect(),
            "INSERT INTO hl7_event_cursors (channel, seq, updated_micros) VALUES (",
        );
        sql.str(channel)
            .push(", ")
            .int(seq)
            .push(", ")
            .int(now_micros)
            .push(
                ") ON CONFLICT (channel) DO UPDATE SET seq = excluded.seq, \
                 updated_micros = excluded.updated_micros",
            );
        self.write(sql).await.map(|_| ())
    }
}

/// The statement that stores a message unless its sender already stored this control id.
pub(crate) fn insert_message(dialect: Dialect, row: &Hl7MessageRow) -> Sql {
    let mut sql = Sql::new(
        dialect,
        "INSERT INTO hl7_messages (id, sender, control_id, message_type, received_micros, \
             status, ack_code, raw, detail, patient_token, attempts, updated_micros) VALUES (",
    );
    sql.str(&row.id)
        .push(", ")
        .str(&row.sender)
        .push(", ")
        .str(&row.control_id)
        .push(", ")
        .str(&row.message_type)
        .push(", ")
        .int(row.received_micros)
        .push(", ")
        .str(&row.status)
        .push(", ")
        .bind(Arg::OptStr(row.ack_code.clone()))
        .push(", ")
        .bind(Arg::Bytes(row.raw.clone()))
        .push(", ")
        .bind(Arg::Bytes(row.detail.clone().unwrap_or_default()))
        .push(", ")
        .bind(Arg::OptStr(row.patient_token.clone()))
        .push(", ")
        .int(row.attempts)
        .push(", ")
        .int(row.updated_micros)
        .push(") ON CONFLICT (sender, control_id) DO NOTHING");
    sql
}

/// The statement that records what became of a message.
pub(crate) fn update_message(dialect: Dialect, row: &Hl7MessageRow) -> Sql {
    let mut sql = Sql::new(dialect, "UPDATE hl7_messages SET status = ");
    sql.str(&row.status)
        .push(", ack_code = ")
        .bind(Arg::OptStr(row.ack_code.clone()))
        .push(", detail = ")
        .bind(Arg::Bytes(row.detail.clone().unwrap_or_default()))
        .push(", patient_token = ")
        .bind(Arg::OptStr(row.patient_token.clone()))
        .push(", attempts = ")
        .int(row.attempts)
        .push(", updated_micros = ")
        .int(row.updated_micros)
        .push(" WHERE id = ")
        .str(&row.id);
    sql
}
