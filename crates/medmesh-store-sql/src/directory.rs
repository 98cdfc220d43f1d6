//! The key directory (`user_keys`) and sealed documents' wrapped keys (`sealed_keys`): the
//! same SQL on both databases.

use medmesh_store::{SealedKey, StoreError, UserKey};

use crate::exec::Exec;
use crate::sql::{Arg, Col, Dialect, Row, Sql};

const USER_KEY_SELECT: &str = "SELECT key_id, owner, account_id, kind, public_key, statement_time, \
     signature, created_micros, revoked_micros FROM user_keys WHERE ";
const USER_KEY_COLS: [Col; 9] = [
    Col::Str,
    Col::Str,
    Col::Str,
    Col::Str,
    Col::Str,
    Col::Str,
    Col::Str,
    Col::I64,
    Col::OptI64,
];

fn user_key(r: &Row) -> Result<UserKey, StoreError> {
    Ok(UserKey {
        key_id: r.string(0)?,
        owner: r.string(1)?,
        account_id: r.string(2)?,
        kind: r.string(3)?,
        public_key: r.string(4)?,
        statement_time: r.string(5)?,
        signature: r.string(6)?,
        created_micros: r.i64(7)?,
        revoked_micros: r.opt_i64(8)?,
    })
}

/// An owner's directory keys, oldest first.
pub(crate) async fn user_keys(
    conn: &mut (impl Exec + ?Sized),
    d: Dialect,
    owner: &str,
) -> Result<Vec<UserKey>, StoreError> {
    let mut sql = Sql::new(d, USER_KEY_SELECT);
    sql.push("owner = ")
        .str(owner)
        .push(" ORDER BY created_micros, key_id");
    conn.fetch(sql, &USER_KEY_COLS)
        .await?
        .iter()
        .map(user_key)
        .collect()
}

/// One directory key.
pub(crate) async fn user_key_by_id(
    conn: &mut (impl Exec + ?Sized),
    d: Dialect,
    key_id: &str,
) -> Result<Option<UserKey>, StoreError> {
    let mut sql = Sql::new(d, USER_KEY_SELECT);
    sql.push("key_id = ").str(key_id);
    conn.fetch(sql, &USER_KEY_COLS)
        .await?
        .first()
        .map(user_key)
        .transpose()
}

/// Publishes a key; one already there stays as it is.
pub(crate) async fn put_user_key(
    tx: &mut (impl Exec + ?Sized),
    d: Dialect,
    k: &UserKey,
) -> Result<(), StoreError> {
    let mut sql = Sql::new(
        d,
        "INSERT INTO user_keys (key_id, owner, account_id, kind, public_key, statement_time, \
         signature, created_micros, revoked_micros) VALUES (",
    );
    sql.str(&k.key_id)
        .push(", ")
        .str(&k.owner)
        .push(", ")
        .str(&k.account_id)
        .push(", ")
        .str(&k.kind)
        .push(", ")
        .str(&k.public_key)
        .push(", ")
        .str(&k.statement_time)
        .push(", ")
        .str(&k.signature)
        .push(", ")
        .int(k.created_micros)
        .push(", ")
        .bind(Arg::OptI64(k.revoked_micros))
        .push(") ON CONFLICT (key_id) DO NOTHING");
    tx.execute(sql).await.map(|_| ())
}

/// Revokes an owner's live key.
pub(crate) async fn revoke_user_key(
    tx: &mut (impl Exec + ?Sized),
    d: Dialect,
    owner: &str,
    key_id: &str,
    now: i64,
) -> Result<bool, StoreError> {
    let mut sql = Sql::new(d, "UPDATE user_keys SET revoked_micros = ");
    sql.int(now)
        .push(" WHERE key_id = ")
        .str(key_id)
        .push(" AND owner = ")
        .str(owner)
        .push(" AND revoked_micros IS NULL");
    Ok(tx.execute(sql).await? == 1)
}

/// A sealed document's wrapped keys, in the order they were added.
pub(crate) async fn sealed_keys(
    conn: &mut (impl Exec + ?Sized),
    d: Dialect,
    document_id: &str,
) -> Result<Vec<SealedKey>, StoreError> {
    let mut sql = Sql::new(
        d,
        "SELECT document_id, recipient_key_id, recipient, wrapped, added_by, added_micros \
         FROM sealed_keys WHERE document_id = ",
    );
    sql.str(document_id)
        .push(" ORDER BY added_micros, recipient_key_id");
    conn.fetch(
        sql,
        &[Col::Str, Col::Str, Col::Str, Col::Str, Col::Str, Col::I64],
    )
    .await?
    .iter()
    .map(|r| {
        Ok(SealedKey {
            document_id: r.string(0)?,
            recipient_key_id: r.string(1)?,
            recipient: r.string(2)?,
            wrapped: r.string(3)?,
            added_by: r.string(4)?,
            added_micros: r.i64(5)?,
        })
    })
    .collect()
}

/// Adds or replaces one recipient's wrapped key.
pub(crate) async fn put_sealed_key(
    tx: &mut (impl Exec + ?Sized),
    d: Dialect,
    k: &SealedKey,
) -> Result<(), StoreError> {
    let mut sql = Sql::new(
        d,
        "INSERT INTO sealed_keys (document_id, recipient_key_id, recipient, wrapped, added_by, \
         added_micros) VALUES (",
    );
    sql.str(&k.document_id)
        .push(", ")
        .str(&k.recipient_key_id)
        .push(", ")
        .str(&k.recipient)
        .push(", ")
        .str(&k.wrapped)
        .push(", ")
        .str(&k.added_by)
        .push(", ")
        .int(k.added_micros)
        .push(
            ") ON CONFLICT (document_id, recipient_key_id) DO UPDATE SET wrapped = excluded.wrapped, \
             added_by = excluded.added_by, added_micros = excluded.added_micros",
        );
    tx.execute(sql).await.map(|_| ())
}

/// Removes one recipient's wrapped key.
pub(crate) async fn delete_sealed_key(
    tx: &mut (impl Exec + ?Sized),
    d: Dialect,
    document_id: &str,
    recipient_key_id: &str,
) -> Result<bool, StoreError> {
    let mut sql = Sql::new(d, "DELETE FROM sealed_keys WHERE document_id = ");
    sql.str(document_id)
        .push(" AND recipient_key_id = ")
        .str(recipient_key_id);
    Ok(tx.execute(sql).await? == 1)
}
