//! The key store: wrapped data keys and key-job cursors.

use async_trait::async_trait;
use medmesh_store::{KeyState, KeyStore, StoreError, WrappedKeyRecord};

use crate::exec::Exec;
use crate::sql::{Arg, Col, Dialect, Row, Sql};
use crate::store::{Backend, SqlStore};

const KEY_SELECT: &str =
    "SELECT key_id, owner, kek_id, wrapped, state, created_micros, changed_micros FROM data_keys";
const KEY_COLS: [Col; 7] = [
    Col::Str,
    Col::Str,
    Col::OptStr,
    Col::Bytes,
    Col::Str,
    Col::I64,
    Col::I64,
];

fn key_from(mut r: Row) -> Result<WrappedKeyRecord, StoreError> {
    let state = KeyState::parse(&r.string(4)?)
        .ok_or_else(|| StoreError::Invalid("data_keys: unknown state".into()))?;
    let wrapped = r.take_bytes(3)?;
    Ok(WrappedKeyRecord {
        key_id: r.string(0)?,
        owner: r.string(1)?,
        kek_id: r.opt_string(2)?,
        wrapped: (state != KeyState::Destroyed).then_some(wrapped),
        state,
        created_micros: r.i64(5)?,
        changed_micros: r.i64(6)?,
    })
}

fn insert_sql(d: Dialect, k: &WrappedKeyRecord) -> Sql {
    let mut sql = Sql::new(
        d,
        "INSERT INTO data_keys (key_id, owner, kek_id, wrapped, state, created_micros, changed_micros) VALUES (",
    );
    sql.str(&k.key_id)
        .push(", ")
        .str(&k.owner)
        .push(", ")
        .bind(Arg::OptStr(k.kek_id.clone()))
        .push(", ")
        .bind(Arg::Bytes(k.wrapped.clone().unwrap_or_default()))
        .push(", ")
        .str(k.state.code())
        .push(", ")
        .int(k.created_micros)
        .push(", ")
        .int(k.changed_micros)
        .push(")");
    sql
}

/// The owner's active key, on any executor.
/// The columns of [`job_cursor_query`].
const JOB_CURSOR_COLS: [Col; 2] = [Col::I64, Col::Str];

/// Reads a key job's cursor and state.
fn job_cursor_query(d: Dialect, job: &str) -> Sql {
    let mut sql = Sql::new(d, "SELECT cursor_value, state FROM key_jobs WHERE name = ");
    sql.str(job);
    sql
}

fn job_cursor_from(rows: &[Row]) -> Result<Option<(i64, String)>, StoreError> {
    rows.first()
        .map(|r| Ok((r.i64(0)?, r.string(1)?)))
        .transpose()
}

/// A key job's cursor and state, read in a transaction.
pub(crate) async fn job_cursor_in(
    tx: &mut (impl Exec + ?Sized),
    d: Dialect,
    job: &str,
) -> Result<Option<(i64, String)>, StoreError> {
    job_cursor_from(&tx.fetch(job_cursor_query(d, job), &JOB_CURSOR_COLS).await?)
}

pub(crate) async fn active_key_in(
    exec: &mut (impl Exec + ?Sized),
    d: Dialect,
    owner: &str,
) -> Result<Option<WrappedKeyRecord>, StoreError> {
    let mut sql = Sql::new(d, &format!("{KEY_SELECT} WHERE owner = "));
    sql.str(owner).push(" AND state = 'active'");
    exec.fetch(sql, &KEY_COLS)
        .await?
        .into_iter()
        .next()
        .map(key_from)
        .transpose()
}

/// Inserts an active key unless its owner has one already.
pub(crate) async fn insert_key_in(
    exec: &mut (impl Exec + ?Sized),
    d: Dialect,
    key: &WrappedKeyRecord,
) -> Result<(), StoreError> {
    let mut sql = insert_sql(d, key);
    sql.push(" ON CONFLICT (owner) WHERE state = 'active' DO NOTHING");
    exec.execute(sql).await.map(|_| ())
}

/// Destroys an owner's keys.
pub(crate) async fn destroy_in(
    exec: &mut (impl Exec + ?Sized),
    d: Dialect,
    owner: &str,
    now: i64,
) -> Result<u64, StoreError> {
    let mut sql = Sql::new(
        d,
        "UPDATE data_keys SET state = 'destroyed', kek_id = NULL, wrapped = ",
    );
    sql.bind(Arg::Bytes(Vec::new()))
        .push(", changed_micros = ")
        .int(now)
        .push(" WHERE owner = ")
        .str(owner)
        .push(" AND state <> 'destroyed'");
    exec.execute(sql).await
}

impl<B: Backend> SqlStore<B> {
    async fn keys_where(
        &self,
        column: &str,
        value: &str,
        extra: &str,
    ) -> Result<Vec<WrappedKeyRecord>, StoreError> {
        let mut sql = self.sql(&format!("{KEY_SELECT} WHERE {column} = "));
        sql.str(value).push(extra);
        self.fetch(sql, &KEY_COLS)
            .await?
            .into_iter()
            .map(key_from)
            .collect()
    }
}

#[async_trait]
impl<B: Backend> KeyStore for SqlStore<B> {
    async fn active_key(&self, owner: &str) -> Result<Option<WrappedKeyRecord>, StoreError> {
        let mut conn = self.backend().conn().await?;
        active_key_in(&mut conn, self.dialect(), owner).await
    }

    async fn key(&self, key_id: &str) -> Result<Option<WrappedKeyRecord>, StoreError> {
        Ok(self
            .keys_where("key_id", key_id, "")
            .await?
            .into_iter()
            .next())
    }

    async fn insert_active_key(
        &self,
        key: &WrappedKeyRecord,
    ) -> Result<WrappedKeyRecord, StoreError> {
        let mut conn = self.backend().conn().await?;
        insert_key_in(&mut conn, self.dialect(), key).await?;
        active_key_in(&mut conn, self.dialect(), &key.owner)
            .await?
            .ok_or(StoreError::Conflict)
    }

    async fn live_keys_page(
        &self,
        after: Option<&str>,
        limit: u32,
    ) -> Result<Vec<WrappedKeyRecord>, StoreError> {
        let mut sql = self.sql(&format!(
            "{KEY_SELECT} WHERE state <> 'destroyed' AND key_id > "
        ));
        sql.str(after.unwrap_or(""))
            .push(" ORDER BY key_id")
            .limit(i64::from(limit));
        self.fetch(sql, &KEY_COLS)
            .await?
            .into_iter()
            .map(key_from)
            .collect()
    }

    async fn rewrap(
        &self,
        key_id: &str,
        old_kek: &str,
        new_kek: &str,
        wrapped: &[u8],
        now: i64,
    ) -> Result<bool, StoreError> {
        let mut sql = self.sql("UPDATE data_keys SET kek_id = ");
        sql.str(new_kek)
            .push(", wrapped = ")
            .bind(Arg::Bytes(wrapped.to_vec()))
            .push(", changed_micros = ")
            .int(now)
            .push(" WHERE key_id = ")
            .str(key_id)
            .push(" AND kek_id = ")
            .str(old_kek)
            .push(" AND state <> 'destroyed'");
        Ok(self.execute(sql).await? == 1)
    }

    async fn replace_active_key(&self, replacement: &WrappedKeyRecord) -> Result<(), StoreError> {
        let mut tx = self.backend().begin().await?;
        let mut retire = self.sql("UPDATE data_keys SET state = 'retired', changed_micros = ");
        retire
            .int(replacement.created_micros)
            .push(" WHERE owner = ")
            .str(&replacement.owner)
            .push(" AND state = 'active'");
        tx.execute(retire).await?;
        tx.execute(insert_sql(self.dialect(), replacement)).await?;
        B::commit(tx).await
    }

    async fn destroy_keys(&self, owner: &str, now: i64) -> Result<u64, StoreError> {
        let mut conn = self.backend().conn().await?;
        destroy_in(&mut conn, self.dialect(), owner, now).await
    }

    async fn keys_per_kek(&self) -> Result<Vec<(String, u64)>, StoreError> {
        let rows = self
            .fetch(
                self.sql("SELECT kek_id, COUNT(*) FROM data_keys WHERE state <> 'destroyed' GROUP BY kek_id ORDER BY kek_id"),
                &[Col::OptStr, Col::I64],
            )
            .await?;
        rows.iter()
            .map(|r| {
                Ok((
                    r.opt_string(0)?.unwrap_or_default(),
                    u64::try_from(r.i64(1)?).unwrap_or(0),
                ))
            })
            .collect()
    }

    async fn job_cursor(&self, job: &str) -> Result<Option<(i64, String)>, StoreError> {
        let rows = self
            .fetch(job_cursor_query(self.dialect(), job), &JOB_CURSOR_COLS)
            .await?;
        job_cursor_from(&rows)
    }

    async fn save_job_cursor(
        &self,
        job: &str,
        cursor: i64,
        state: &str,
        now: i64,
    ) -> Result<(), StoreError> {
        let mut sql =
            self.sql("INSERT INTO key_jobs (name, cursor_value, state, updated_micros) VALUES (");
        sql.str(job)
            .push(", ")
            .int(cursor)
            .push(", ")
            .str(state)
            .push(", ")
            .int(now)
            .push(") ON CONFLICT (name) DO UPDATE SET cursor_value = ")
            .int(cursor)
            .push(", state = ")
            .str(state)
            .push(", updated_micros = ")
            .int(now);
        self.execute(sql).await.map(|_| ())
    }

    async fn purge_replaced_data(&self) -> Result<(), StoreError> {
        let statements: &[&str] = match self.dialect() {
            // Checkpoint first so the vacuum sees every page; truncate after so the WAL
            // (which the vacuum wrote through) keeps no copy of the old pages either.
            Dialect::Sqlite => &[
                "PRAGMA wal_checkpoint(TRUNCATE)",
                "VACUUM",
                "PRAGMA wal_checkpoint(TRUNCATE)",
            ],
            Dialect::Postgres => &["VACUUM"],
        };
        for statement in statements {
            self.execute(self.sql(statement)).await?;
        }
        Ok(())
    }
}
