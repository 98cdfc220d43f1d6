//! Signing keys that rotate, and access-token verification.
//!
//! The newest key signs. A key stops signing when a newer one exists, and stays published in
//! the JWKS until every token it signed has expired. Replicas share keys through the store
//! and reload them periodically, and at once on an unknown `kid`.

use std::collections::HashSet;
use std::sync::RwLock;

use medmesh_auth::token::{self, AUDIENCE};
use medmesh_auth::{AccessClaims, KeyId, TokenError, TokenSigningKey, TokenVerifyingKey};
use medmesh_store::KeyRecord;
use serde_json::{Value, json};

use crate::{IdentityError, IdentityService};

#[derive(Default)]
struct Ring {
    signing: Option<TokenSigningKey>,
    verifying: Vec<TokenVerifyingKey>,
    revoked: HashSet<String>,
}

/// The cached keys and revoked token ids.
#[derive(Default)]
pub struct KeyRing {
    ring: RwLock<Ring>,
    verified: token::VerifiedTokens,
}

fn verifying_ids(keys: &[TokenVerifyingKey]) -> Vec<String> {
    keys.iter().map(|k| k.id.0.clone()).collect()
}

/// Which keys to keep: the newest always; an older one while tokens it signed may live.
pub fn keep_key(index: usize, keys: &[KeyRecord], now_micros: i64, access_ttl: i64) -> bool {
    match index.checked_sub(1).and_then(|i| keys.get(i)) {
        None => true,
        // Retired when its successor appeared; its last token expires access_ttl later.
        Some(successor) => successor.created + (access_ttl + 120) * 1_000_000 > now_micros,
    }
}

impl IdentityService {
    /// Loads keys and revocations from the store, creating or rotating the signing key when
    /// due, and pruning keys no token can need.
    ///
    /// # Errors
    /// When the store fails.
    pub async fn refresh_keys(&self) -> Result<(), IdentityError> {
        let now = self.now();
        let now_micros = self.clock.now_micros();
        let mut keys = self.store.signing_keys().await?;
        let due = keys
            .first()
            .is_none_or(|k| k.created + self.config.key_rotation * 1_000_000 <= now_micros);
        if due {
            let mut secret = [0u8; 32];
            self.random.fill(&mut secret);
            let kid = self.new_id();
            let sealed = self
                .seal_secret(&crate::secrets::signing_key_context(&kid), &secret)
                .await?;
            let k = KeyRecord {
                kid,
                secret: sealed,
                created: now_micros,
            };
            self.store.add_signing_key(&k).await?;
            keys = self.store.signing_keys().await?;
        }
        let keep: Vec<&KeyRecord> = keys
            .iter()
            .enumerate()
            .filter(|(i, _)| keep_key(*i, &keys, now_micros, self.config.access_ttl))
            .map(|(_, k)| k)
            .collect();
        if keep.len() < keys.len()
            && let Some(oldest_kept) = keep.last()
        {
            self.store.prune_signing_keys(oldest_kept.created).await?;
        }
        // Secrets are stored sealed under the KEK; each is opened for the ring in memory.
        let mut opened: Vec<TokenSigningKey> = Vec::with_capacity(keep.len());
        for k in &keep {
            let secret = self
                .open_secret(&crate::secrets::signing_key_context(&k.kid), &k.secret)
                .await?;
            if let Ok(secret) = <[u8; 32]>::try_from(secret) {
                opened.push(TokenSigningKey::from_secret(KeyId(k.kid.clone()), secret));
            }
        }
        let verifying: Vec<TokenVerifyingKey> =
            opened.iter().map(TokenSigningKey::verifying_key).collect();
        let signing = opened.into_iter().next();
        let revoked = self.store.revoked_jtis(now).await?.into_iter().collect();
        let mut ring = self
            .keys
            .ring
            .write()
            .map_err(|_| IdentityError::Internal)?;
        // A dropped key's tokens must stop verifying at once, cached or not.
        let kept = verifying_ids(&verifying);
        if ring.verifying.iter().any(|k| !kept.contains(&k.id.0)) {
            self.keys.verified.clear();
        }
        *ring = Ring {
            signing,
            verifying,
            revoked,
        };
        Ok(())
    }

    /// Signs claims with the current key.
    pub(crate) fn sign<T: serde::Serialize>(&self, claims: &T) -> Result<String, IdentityError> {
        let ring = self.keys.ring.read().map_err(|_| IdentityError::Internal)?;
        let key = ring.signing.as_ref().ok_or(IdentityError::Internal)?;
        key.sign_claims(claims).map_err(|_| IdentityError::Internal)
    }

    /// The public keys, as a JWKS document.
    pub fn jwks(&self) -> Value {
        let keys: Vec<Value> = self
            .keys
            .ring
            .read()
            .map(|r| r.verifying.iter().map(TokenVerifyingKey::to_jwk).collect())
            .unwrap_or_default();
        json!({ "keys": keys })
    }

    /// Verifies an access token: signature by a published key, issuer, audience, time, and
    /// not revoked. This is the per-request check, so it touches no storage.
    ///
    /// # Errors
    /// [`TokenError::Invalid`].
    pub fn verify_access(&self, jwt: &str) -> Result<AccessClaims, TokenError> {
        let ring = self.keys.ring.read().map_err(|_| TokenError::Invalid)?;
        let mut issuers: Vec<&str> = vec![self.config.issuer.as_str()];
        issuers.extend(self.config.extra_issuers.iter().map(String::as_str));
        let claims = self.keys.verified.verify(
            jwt,
            &ring.verifying,
            &issuers,
            self.now(),
            self.config.token_times,
        )?;
        if ring.revoked.contains(&claims.jti) {
            return Err(TokenError::Invalid);
        }
        Ok(claims)
    }

    /// Mints an access token (the CLI's `admin token`, and the token endpoint).
    ///
    /// # Errors
    /// When signing fails, or the grant asks for a life longer than the node accepts.
    pub fn mint_access(
        &self,
        grant: &crate::oauth::IssuedGrant,
    ) -> Result<(String, AccessClaims), IdentityError> {
        let now = self.now();
        if grant
            .ttl
            .is_some_and(|t| t > self.config.token_times.max_lifetime)
        {
            return Err(IdentityError::InvalidRequest(format!(
                "a token may live at most {} seconds (max_token_lifetime)",
                self.config.token_times.max_lifetime
            )));
        }
        let claims = AccessClaims {
            iss: self.config.issuer.clone(),
            sub: grant.subject.clone(),
            aud: AUDIENCE.into(),
            exp: now + grant.ttl.unwrap_or(self.config.access_ttl),
            iat: now,
            nbf: now,
            jti: self.new_id(),
            scope: grant.scope.clone(),
            patient: grant.patient.clone(),
            role: grant.role.clone(),
            client_id: grant.client_id.clone(),
            fhir_user: grant.fhir_user.clone(),
        };
        Ok((self.sign(&claims)?, claims))
    }

    /// Mints a download ticket: a JWT for [`medmesh_auth::token::DOWNLOAD_AUDIENCE`] that
    /// names one document (`scope` is `download:Binary/<id>`) and lives `ttl` seconds. It is
    /// no access token: the FHIR API refuses it.
    ///
    /// # Errors
    /// When signing fails.
    pub fn mint_download(
        &self,
        subject: &str,
        binary_id: &str,
        practitioner: Option<String>,
        patient: Option<String>,
        ttl: i64,
    ) -> Result<(String, i64), IdentityError> {
        let now = self.now();
        let claims = AccessClaims {
            iss: self.config.issuer.clone(),
            sub: subject.to_string(),
            aud: medmesh_auth::token::DOWNLOAD_AUDIENCE.into(),
            exp: now + ttl,
            iat: now,
            nbf: now,
            jti: self.new_id(),
            scope: format!("download:Binary/{binary_id}"),
            patient,
            role: None,
            client_id: None,
            fhir_user: practitioner,
        };
        Ok((self.sign(&claims)?, claims.exp))
    }

    /// Verifies a download ticket.
    ///
    /// # Errors
    /// [`TokenError::Invalid`].
    pub fn verify_download(&self, jwt: &str) -> Result<AccessClaims, TokenError> {
        let ring = self.keys.ring.read().map_err(|_| TokenError::Invalid)?;
        medmesh_auth::token::verify_for(
            jwt,
            &ring.verifying,
            &[self.config.issuer.as_str()],
            medmesh_auth::token::DOWNLOAD_AUDIENCE,
            self.now(),
            self.config.token_times,
        )
    }

    /// Revokes an access token by id until it expires, on this node at once and on others
    /// at their next key refresh.
    pub(crate) async fn revoke_access(&self, jti: &str, exp: i64) -> Result<(), IdentityError> {
        self.store.revoke_jti(jti, exp).await?;
        if let Ok(mut r) = self.keys.ring.write() {
            r.revoked.insert(jti.to_string());
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn old_keys_stay_until_their_tokens_expire() {
        let k = |created: i64| KeyRecord {
            kid: created.to_string(),
            secret: vec![],
            created,
        };
        let s = 1_000_000;
        let keys = vec![k(1000 * s), k(500 * s), k(100 * s)];
        // Key 1 retired at t=1000 s; with a 300 s token life it is needed until 1420 s.
        assert!(keep_key(0, &keys, 5000 * s, 300));
        assert!(keep_key(1, &keys, 1400 * s, 300));
        assert!(!keep_key(1, &keys, 1500 * s, 300));
        assert!(!keep_key(2, &keys, 1000 * s, 300));
    }
}
