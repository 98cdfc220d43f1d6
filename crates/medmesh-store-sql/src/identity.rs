//! The identity store on the same backends and dialect builder as the record store.

use async_trait::async_trait;
use medmesh_store::{
    AuthCodeRecord, ClientRecord, IdentityStore, InviteRecord, KeyRecord, RefreshRecord,
    SessionRecord, StoreError, UserRecord,
};

use crate::exec::Exec;
use crate::sql::{Arg, Col, Row, Sql};
use crate::store::{Backend, SqlStore};

const USER_COLS: &str = "id, username, role, password_hash, totp_secret, totp_confirmed, totp_last_step, patient_id, practitioner_id, practitioner_role_id, verification, specialty, organization, external_subject, disabled, created";
const USER_TYPES: [Col; 16] = [
    Col::Str,
    Col::Str,
    Col::Str,
    Col::OptStr,
    Col::Bytes,
    Col::I64,
    Col::OptI64,
    Col::OptStr,
    Col::OptStr,
    Col::OptStr,
    Col::Str,
    Col::OptStr,
    Col::OptStr,
    Col::OptStr,
    Col::I64,
    Col::I64,
];

fn client_from(r: Row) -> Result<ClientRecord, StoreError> {
    Ok(ClientRecord {
        client_id: r.string(0)?,
        name: r.string(1)?,
        kind: r.string(2)?,
        secret_hash: r.opt_string(3)?,
        redirect_uris: serde_json::from_str(&r.string(4)?)
            .map_err(|_| StoreError::Invalid("malformed redirect URIs".into()))?,
        jwks: r.opt_string(5)?,
        scope: r.string(6)?,
        created: r.i64(7)?,
    })
}

fn user_from(mut r: Row) -> Result<UserRecord, StoreError> {
    let secret = r.take_bytes(4)?;
    Ok(UserRecord {
        id: r.string(0)?,
        username: r.string(1)?,
        role: r.string(2)?,
        password_hash: r.opt_string(3)?,
        totp_secret: (!secret.is_empty()).then_some(secret),
        totp_confirmed: r.i64(5)? != 0,
        totp_last_step: r.opt_i64(6)?,
        patient_id: r.opt_string(7)?,
        practitioner_id: r.opt_string(8)?,
        practitioner_role_id: r.opt_string(9)?,
        verification: r.string(10)?,
        specialty: r.opt_string(11)?,
        organization: r.opt_string(12)?,
        external_subject: r.opt_string(13)?,
        disabled: r.i64(14)? != 0,
        created: r.i64(15)?,
    })
}

fn opt(v: &Option<String>) -> Arg {
    Arg::OptStr(v.clone())
}

/// Appends `a, b, c` as bound arguments.
fn values(sql: &mut Sql, args: Vec<Arg>) {
    for (i, a) in args.into_iter().enumerate() {
        if i > 0 {
            sql.push(", ");
        }
        sql.bind(a);
    }
}

fn user_args(u: &UserRecord) -> Vec<Arg> {
    vec![
        Arg::Str(u.id.clone()),
        Arg::Str(u.username.clone()),
        Arg::Str(u.role.clone()),
        opt(&u.password_hash),
        Arg::Bytes(u.totp_secret.clone().unwrap_or_default()),
        Arg::I64(i64::from(u.totp_confirmed)),
        Arg::OptI64(u.totp_last_step),
        opt(&u.patient_id),
        opt(&u.practitioner_id),
        opt(&u.practitioner_role_id),
        Arg::Str(u.verification.clone()),
        opt(&u.specialty),
        opt(&u.organization),
        opt(&u.external_subject),
        Arg::I64(i64::from(u.disabled)),
        Arg::I64(u.created),
    ]
}

const SESSION_COLS: &str =
    "id_hash, handle, user_id, csrf, auth_time, expires, revoked, user_agent, ip, complete";
const SESSION_TYPES: [Col; 10] = [
    Col::Str,
    Col::Str,
    Col::Str,
    Col::Str,
    Col::I64,
    Col::I64,
    Col::I64,
    Col::Str,
    Col::Str,
    Col::I64,
];

fn session_from(r: Row) -> Result<SessionRecord, StoreError> {
    Ok(SessionRecord {
        id_hash: r.string(0)?,
        handle: r.string(1)?,
        user_id: r.string(2)?,
        csrf: r.string(3)?,
        auth_time: r.i64(4)?,
        expires: r.i64(5)?,
        revoked: r.i64(6)? != 0,
        user_agent: r.string(7)?,
        ip: r.string(8)?,
        complete: r.i64(9)? != 0,
    })
}

const CODE_COLS: &str = "code_hash, client_id, user_id, redirect_uri, scope, patient, code_challenge, nonce, auth_time, expires, used, family";
const CODE_TYPES: [Col; 12] = [
    Col::Str,
    Col::Str,
    Col::Str,
    Col::Str,
    Col::Str,
    Col::OptStr,
    Col::Str,
    Col::OptStr,
    Col::I64,
    Col::I64,
    Col::I64,
    Col::Str,
];

fn code_from(r: Row) -> Result<AuthCodeRecord, StoreError> {
    Ok(AuthCodeRecord {
        code_hash: r.string(0)?,
        client_id: r.string(1)?,
        user_id: r.string(2)?,
        redirect_uri: r.string(3)?,
        scope: r.string(4)?,
        patient: r.opt_string(5)?,
        code_challenge: r.string(6)?,
        nonce: r.opt_string(7)?,
        auth_time: r.i64(8)?,
        expires: r.i64(9)?,
        used: r.i64(10)? != 0,
        family: r.string(11)?,
    })
}

const REFRESH_COLS: &str =
    "token_hash, family, client_id, user_id, scope, patient, expires, used, revoked, auth_time";
const REFRESH_TYPES: [Col; 10] = [
    Col::Str,
    Col::Str,
    Col::Str,
    Col::Str,
    Col::Str,
    Col::OptStr,
    Col::I64,
    Col::I64,
    Col::I64,
    Col::I64,
];

fn refresh_from(r: Row) -> Result<RefreshRecord, StoreError> {
    Ok(RefreshRecord {
        token_hash: r.string(0)?,
        family: r.string(1)?,
        client_id: r.string(2)?,
        user_id: r.string(3)?,
        scope: r.string(4)?,
        patient: r.opt_string(5)?,
        expires: r.i64(6)?,
        used: r.i64(7)? != 0,
        revoked: r.i64(8)? != 0,
        auth_time: r.i64(9)?,
    })
}

const INVITE_COLS: &str =
    "code_hash, role, patient_id, practitioner_id, organization, created_by, expires, used";
const INVITE_TYPES: [Col; 8] = [
    Col::Str,
    Col::Str,
    Col::OptStr,
    Col::OptStr,
    Col::OptStr,
    Col::Str,
    Col::I64,
    Col::I64,
];

fn invite_from(r: Row) -> Result<InviteRecord, StoreError> {
    Ok(InviteRecord {
        code_hash: r.string(0)?,
        role: r.string(1)?,
        patient_id: r.opt_string(2)?,
        practitioner_id: r.opt_string(3)?,
        organization: r.opt_string(4)?,
        created_by: r.string(5)?,
        expires: r.i64(6)?,
        used: r.i64(7)? != 0,
    })
}

const CLIENT_TYPES: [Col; 8] = [
    Col::Str,
    Col::Str,
    Col::Str,
    Col::OptStr,
    Col::Str,
    Col::OptStr,
    Col::Str,
    Col::I64,
];

impl<B: Backend> SqlStore<B> {
    pub(crate) async fn fetch(&self, sql: Sql, cols: &[Col]) -> Result<Vec<Row>, StoreError> {
        self.backend().conn().await?.fetch(sql, cols).await
    }

    pub(crate) async fn execute(&self, sql: Sql) -> Result<u64, StoreError> {
        self.backend().conn().await?.execute(sql).await
    }

    async fn insert(&self, table: &str, cols: &str, args: Vec<Arg>) -> Result<(), StoreError> {
        let mut sql = self.sql(&format!("INSERT INTO {table} ({cols}) VALUES ("));
        values(&mut sql, args);
        sql.push(")");
        self.execute(sql).await.map(|_| ())
    }

    async fn one_user(&self, column: &str, value: &str) -> Result<Option<UserRecord>, StoreError> {
        let mut sql = self.sql(&format!("SELECT {USER_COLS} FROM users WHERE {column} = "));
        sql.str(value);
        self.fetch(sql, &USER_TYPES)
            .await?
            .into_iter()
            .next()
            .map(user_from)
            .transpose()
    }

    /// Reads a row by key and marks it used in one transaction; returns the row as it was.
    async fn take<T>(
        &self,
        table: &str,
        cols: &str,
        types: &[Col],
        key_col: &str,
        key: &str,
        decode: fn(Row) -> Result<T, StoreError>,
    ) -> Result<Option<T>, StoreError> {
        let mut tx = self.backend().begin().await?;
        let mut sel = self.sql(&format!("SELECT {cols} FROM {table} WHERE {key_col} = "));
        sel.str(key).push(self.dialect().for_update());
        let Some(row) = tx.fetch(sel, types).await?.into_iter().next() else {
            return Ok(None);
        };
        let mut upd = self.sql(&format!("UPDATE {table} SET used = 1 WHERE {key_col} = "));
        upd.str(key);
        tx.execute(upd).await?;
        B::commit(tx).await?;
        decode(row).map(Some)
    }
}

#[async_trait]
impl<B: Backend> IdentityStore for SqlStore<B> {
    async fn insert_user(&self, user: &UserRecord) -> Result<(), StoreError> {
        self.insert("users", USER_COLS, user_args(user)).await
    }

    async fn update_user(&self, u: &UserRecord) -> Result<(), StoreError> {
        let mut sql = self.sql("UPDATE users SET ");
        let args = user_args(u);
        for (i, (col, arg)) in USER_COLS.split(", ").zip(args).enumerate().skip(1) {
            if i > 1 {
                sql.push(", ");
            }
            sql.push(&format!("{col} = ")).bind(arg);
        }
        sql.push(" WHERE id = ").str(&u.id);
        self.execute(sql).await.map(|_| ())
    }

    async fn user_by_id(&self, id: &str) -> Result<Option<UserRecord>, StoreError> {
        self.one_user("id", id).await
    }

    async fn user_by_username(&self, username: &str) -> Result<Option<UserRecord>, StoreError> {
        self.one_user("username", username).await
    }

    async fn user_by_external(&self, subject: &str) -> Result<Option<UserRecord>, StoreError> {
        self.one_user("external_subject", subject).await
    }

    async fn user_count(&self) -> Result<u64, StoreError> {
        let rows = self
            .fetch(
                self.sql("SELECT CAST(COUNT(*) AS BIGINT) FROM users"),
                &[Col::I64],
            )
            .await?;
        Ok(rows.first().map(|r| r.i64(0)).transpose()?.unwrap_or(0) as u64)
    }

    async fn claim_totp_step(&self, user_id: &str, step: i64) -> Result<bool, StoreError> {
        // One conditional UPDATE: two replicas racing with the same code cannot both win.
        let mut sql = self.sql("UPDATE users SET totp_last_step = ");
        sql.int(step)
            .push(" WHERE id = ")
            .str(user_id)
            .push(" AND (totp_last_step IS NULL OR totp_last_step < ")
            .int(step)
            .push(")");
        Ok(self.execute(sql).await? == 1)
    }

    async fn set_recovery_codes(&self, user_id: &str, hashes: &[String]) -> Result<(), StoreError> {
        let mut tx = self.backend().begin().await?;
        let mut del = self.sql("DELETE FROM recovery_codes WHERE user_id = ");
        del.str(user_id);
        tx.execute(del).await?;
        for h in hashes {
            let mut ins = self.sql("INSERT INTO recovery_codes (user_id, code_hash) VALUES (");
            ins.str(user_id).push(", ").str(h).push(")");
            tx.execute(ins).await?;
        }
        B::commit(tx).await
    }

    async fn use_recovery_code(&self, user_id: &str, hash: &str) -> Result<bool, StoreError> {
        let mut sql = self.sql("UPDATE recovery_codes SET used = 1 WHERE user_id = ");
        sql.str(user_id)
            .push(" AND code_hash = ")
            .str(hash)
            .push(" AND used = 0");
        Ok(self.execute(sql).await? == 1)
    }

    async fn insert_session(&self, s: &SessionRecord) -> Result<(), StoreError> {
        self.insert(
            "sessions",
            SESSION_COLS,
            vec![
                Arg::Str(s.id_hash.clone()),
                Arg::Str(s.handle.clone()),
                Arg::Str(s.user_id.clone()),
                Arg::Str(s.csrf.clone()),
                Arg::I64(s.auth_time),
                Arg::I64(s.expires),
                Arg::I64(i64::from(s.revoked)),
                Arg::Str(s.user_agent.clone()),
                Arg::Str(s.ip.clone()),
                Arg::I64(i64::from(s.complete)),
            ],
        )
        .await
    }

    async fn session(&self, id_hash: &str) -> Result<Option<SessionRecord>, StoreError> {
        let mut sql = self.sql(&format!(
            "SELECT {SESSION_COLS} FROM sessions WHERE id_hash = "
        ));
        sql.str(id_hash);
        self.fetch(sql, &SESSION_TYPES)
            .await?
            .into_iter()
            .next()
            .map(session_from)
            .transpose()
    }

    async fn complete_session(
        &self,
        id_hash: &str,
        csrf: &str,
        auth_time: i64,
    ) -> Result<(), StoreError> {
        let mut sql = self.sql("UPDATE sessions SET complete = 1, csrf = ");
        sql.str(csrf)
            .push(", auth_time = ")
            .int(auth_time)
            .push(" WHERE id_hash = ")
            .str(id_hash);
        self.execute(sql).await.map(|_| ())
    }

    async fn sessions_of(&self, user_id: &str, now: i64) -> Result<Vec<SessionRecord>, StoreError> {
        let mut sql = self.sql(&format!(
            "SELECT {SESSION_COLS} FROM sessions WHERE user_id = "
        ));
        sql.str(user_id)
            .push(" AND revoked = 0 AND complete = 1 AND expires > ")
            .int(now)
            .push(" ORDER BY auth_time DESC");
        self.fetch(sql, &SESSION_TYPES)
            .await?
            .into_iter()
            .map(session_from)
            .collect()
    }

    async fn revoke_session(&self, user_id: &str, handle: &str) -> Result<bool, StoreError> {
        let mut sql = self.sql("UPDATE sessions SET revoked = 1 WHERE user_id = ");
        sql.str(user_id).push(" AND handle = ").str(handle);
        Ok(self.execute(sql).await? == 1)
    }

    async fn users_of_practitioner(
        &self,
        practitioner: &str,
    ) -> Result<Vec<UserRecord>, StoreError> {
        let mut sql = self.sql(&format!(
            "SELECT {USER_COLS} FROM users WHERE practitioner_id = "
        ));
        sql.str(practitioner).push(" ORDER BY id").limit(100);
        self.fetch(sql, &USER_TYPES)
            .await?
            .into_iter()
            .map(user_from)
            .collect()
    }

    async fn replace_calendar_feed(
        &self,
        user_id: &str,
        token_hash: &str,
        detail: &str,
        created_micros: i64,
    ) -> Result<(), StoreError> {
        let mut sql = self.sql(
            "INSERT INTO calendar_feeds (user_id, token_hash, detail, created_micros) VALUES (",
        );
        sql.str(user_id)
            .push(", ")
            .str(token_hash)
            .push(", ")
            .str(detail)
            .push(", ")
            .int(created_micros)
            .push(
                ") ON CONFLICT (user_id) DO UPDATE SET token_hash = excluded.token_hash, \
                 detail = excluded.detail, created_micros = excluded.created_micros",
            );
        self.execute(sql).await.map(|_| ())
    }

    async fn calendar_feed(
        &self,
        token_hash: &str,
    ) -> Result<Option<(String, String)>, StoreError> {
        let mut sql = self.sql("SELECT user_id, detail FROM calendar_feeds WHERE token_hash = ");
        sql.str(token_hash);
        let rows = self.fetch(sql, &[Col::Str, Col::Str]).await?;
        rows.first()
            .map(|r| Ok((r.string(0)?, r.string(1)?)))
            .transpose()
    }

    async fn remove_calendar_feed(&self, user_id: &str) -> Result<bool, StoreError> {
        let mut sql = self.sql("DELETE FROM calendar_feeds WHERE user_id = ");
        sql.str(user_id);
        Ok(self.execute(sql).await? == 1)
    }

    async fn throttle(&self, key: &str) -> Result<Option<(u32, i64)>, StoreError> {
        let mut sql = self.sql("SELECT failures, last_failure FROM login_throttle WHERE key = ");
        sql.str(key);
        let rows = self.fetch(sql, &[Col::I64, Col::I64]).await?;
        rows.first()
            .map(|r| Ok((u32::try_from(r.i64(0)?).unwrap_or(u32::MAX), r.i64(1)?)))
            .transpose()
    }

    async fn set_throttle(&self, key: &str, failures: u32, last: i64) -> Result<(), StoreError> {
        let mut sql = self.sql("INSERT INTO login_throttle (key, failures, last_failure) VALUES (");
        sql.str(key)
            .push(", ")
            .int(i64::from(failures))
            .push(", ")
            .int(last)
            .push(") ON CONFLICT (key) DO UPDATE SET failures = excluded.failures, last_failure = excluded.last_failure");
        self.execute(sql).await.map(|_| ())
    }

    async fn clear_throttle(&self, key: &str) -> Result<(), StoreError> {
        let mut sql = self.sql("DELETE FROM login_throttle WHERE key = ");
        sql.str(key);
        self.execute(sql).await.map(|_| ())
    }

    async fn insert_client(&self, c: &ClientRecord) -> Result<(), StoreError> {
        let uris = serde_json::to_string(&c.redirect_uris).map_err(StoreError::backend)?;
        self.insert(
            "oauth_clients",
            "client_id, name, kind, secret_hash, redirect_uris, jwks, scope, created",
            vec![
                Arg::Str(c.client_id.clone()),
                Arg::Str(c.name.clone()),
                Arg::Str(c.kind.clone()),
                opt(&c.secret_hash),
                Arg::Str(uris),
                opt(&c.jwks),
                Arg::Str(c.scope.clone()),
                Arg::I64(c.created),
            ],
        )
        .await
    }

    async fn client(&self, client_id: &str) -> Result<Option<ClientRecord>, StoreError> {
        let mut sql = self.sql("SELECT client_id, name, kind, secret_hash, redirect_uris, jwks, scope, created FROM oauth_clients WHERE client_id = ");
        sql.str(client_id);
        self.fetch(sql, &CLIENT_TYPES)
            .await?
            .into_iter()
            .next()
            .map(client_from)
            .transpose()
    }

    async fn insert_code(&self, c: &AuthCodeRecord) -> Result<(), StoreError> {
        self.insert(
            "oauth_codes",
            CODE_COLS,
            vec![
                Arg::Str(c.code_hash.clone()),
                Arg::Str(c.client_id.clone()),
                Arg::Str(c.user_id.clone()),
                Arg::Str(c.redirect_uri.clone()),
                Arg::Str(c.scope.clone()),
                opt(&c.patient),
                Arg::Str(c.code_challenge.clone()),
                opt(&c.nonce),
                Arg::I64(c.auth_time),
                Arg::I64(c.expires),
                Arg::I64(i64::from(c.used)),
                Arg::Str(c.family.clone()),
            ],
        )
        .await
    }

    async fn take_code(&self, code_hash: &str) -> Result<Option<AuthCodeRecord>, StoreError> {
        self.take(
            "oauth_codes",
            CODE_COLS,
            &CODE_TYPES,
            "code_hash",
            code_hash,
            code_from,
        )
        .await
    }

    async fn insert_refresh(&self, r: &RefreshRecord) -> Result<(), StoreError> {
        self.insert(
            "refresh_tokens",
            REFRESH_COLS,
            vec![
                Arg::Str(r.token_hash.clone()),
                Arg::Str(r.family.clone()),
                Arg::Str(r.client_id.clone()),
                Arg::Str(r.user_id.clone()),
                Arg::Str(r.scope.clone()),
                opt(&r.patient),
                Arg::I64(r.expires),
                Arg::I64(i64::from(r.used)),
                Arg::I64(i64::from(r.revoked)),
                Arg::I64(r.auth_time),
            ],
        )
        .await
    }

    async fn take_refresh(&self, token_hash: &str) -> Result<Option<RefreshRecord>, StoreError> {
        self.take(
            "refresh_tokens",
            REFRESH_COLS,
            &REFRESH_TYPES,
            "token_hash",
            token_hash,
            refresh_from,
        )
        .await
    }

    async fn refresh(&self, token_hash: &str) -> Result<Option<RefreshRecord>, StoreError> {
        let mut sql = self.sql(&format!(
            "SELECT {REFRESH_COLS} FROM refresh_tokens WHERE token_hash = "
        ));
        sql.str(token_hash);
        self.fetch(sql, &REFRESH_TYPES)
            .await?
            .into_iter()
            .next()
            .map(refresh_from)
            .transpose()
    }

    async fn revoke_family(&self, family: &str) -> Result<(), StoreError> {
        let mut sql = self.sql("UPDATE refresh_tokens SET revoked = 1 WHERE family = ");
        sql.str(family);
        self.execute(sql).await.map(|_| ())
    }

    async fn revoke_jti(&self, jti: &str, expires: i64) -> Result<(), StoreError> {
        let mut sql = self.sql("INSERT INTO revoked_tokens (jti, expires) VALUES (");
        sql.str(jti)
            .push(", ")
            .int(expires)
            .push(") ON CONFLICT (jti) DO NOTHING");
        self.execute(sql).await.map(|_| ())
    }

    async fn revoked_jtis(&self, now: i64) -> Result<Vec<String>, StoreError> {
        let mut sql = self.sql("SELECT jti FROM revoked_tokens WHERE expires >= ");
        sql.int(now);
        self.fetch(sql, &[Col::Str])
            .await?
            .into_iter()
            .map(|r| r.string(0))
            .collect()
    }

    async fn claim_assertion_jti(&self, jti: &str, expires: i64) -> Result<bool, StoreError> {
        let mut sql = self.sql("INSERT INTO assertion_jtis (jti, expires) VALUES (");
        sql.str(jti)
            .push(", ")
            .int(expires)
            .push(") ON CONFLICT (jti) DO NOTHING");
        Ok(self.execute(sql).await? == 1)
    }

    async fn signing_keys(&self) -> Result<Vec<KeyRecord>, StoreError> {
        let rows = self
            .fetch(
                self.sql("SELECT kid, secret, created_micros FROM signing_keys ORDER BY created_micros DESC"),
                &[Col::Str, Col::Bytes, Col::I64],
            )
            .await?;
        rows.into_iter()
            .map(|mut r| {
                Ok(KeyRecord {
                    secret: r.take_bytes(1)?,
                    kid: r.string(0)?,
                    created: r.i64(2)?,
                })
            })
            .collect()
    }

    async fn add_signing_key(&self, k: &KeyRecord) -> Result<(), StoreError> {
        self.insert(
            "signing_keys",
            "kid, secret, created_micros, active",
            vec![
                Arg::Str(k.kid.clone()),
                Arg::Bytes(k.secret.clone()),
                Arg::I64(k.created),
                Arg::I64(1),
            ],
        )
        .await
    }

    async fn replace_signing_key_secret(&self, kid: &str, secret: &[u8]) -> Result<(), StoreError> {
        let mut sql = self.sql("UPDATE signing_keys SET secret = ");
        sql.bind(Arg::Bytes(secret.to_vec()))
            .push(" WHERE kid = ")
            .str(kid);
        self.execute(sql).await.map(|_| ())
    }

    async fn users_with_role(
        &self,
        role: &str,
        organization: Option<&str>,
        verification: Option<&str>,
        limit: u32,
    ) -> Result<Vec<UserRecord>, StoreError> {
        let mut sql = self.sql(&format!("SELECT {USER_COLS} FROM users WHERE role = "));
        sql.str(role);
        if let Some(org) = organization {
            sql.push(" AND organization = ").str(org);
        }
        if let Some(v) = verification {
            sql.push(" AND verification = ").str(v);
        }
        sql.push(" ORDER BY username LIMIT ").int(i64::from(limit));
        self.fetch(sql, &USER_TYPES)
            .await?
            .into_iter()
            .map(user_from)
            .collect()
    }

    async fn clients(&self, limit: u32) -> Result<Vec<ClientRecord>, StoreError> {
        let mut sql = self.sql("SELECT client_id, name, kind, secret_hash, redirect_uris, jwks, scope, created FROM oauth_clients ORDER BY created DESC LIMIT ");
        sql.int(i64::from(limit));
        let mut out = Vec::new();
        for r in self.fetch(sql, &CLIENT_TYPES).await? {
            out.push(client_from(r)?);
        }
        Ok(out)
    }

    async fn users_with_totp(&self) -> Result<Vec<UserRecord>, StoreError> {
        let sql = self.sql(&format!(
            "SELECT {USER_COLS} FROM users WHERE LENGTH(totp_secret) > 0 ORDER BY id"
        ));
        self.fetch(sql, &USER_TYPES)
            .await?
            .into_iter()
            .map(user_from)
            .collect()
    }

    async fn prune_signing_keys(&self, before: i64) -> Result<(), StoreError> {
        let mut sql = self.sql("DELETE FROM signing_keys WHERE created_micros < ");
        sql.int(before).push(
            " AND kid <> (SELECT kid FROM signing_keys ORDER BY created_micros DESC LIMIT 1)",
        );
        self.execute(sql).await.map(|_| ())
    }

    async fn insert_invite(&self, i: &InviteRecord) -> Result<(), StoreError> {
        self.insert(
            "invitations",
            INVITE_COLS,
            vec![
                Arg::Str(i.code_hash.clone()),
                Arg::Str(i.role.clone()),
                opt(&i.patient_id),
                opt(&i.practitioner_id),
                opt(&i.organization),
                Arg::Str(i.created_by.clone()),
                Arg::I64(i.expires),
                Arg::I64(i64::from(i.used)),
            ],
        )
        .await
    }

    async fn take_invite(&self, code_hash: &str) -> Result<Option<InviteRecord>, StoreError> {
        self.take(
            "invitations",
            INVITE_COLS,
            &INVITE_TYPES,
            "code_hash",
            code_hash,
            invite_from,
        )
        .await
    }
}
