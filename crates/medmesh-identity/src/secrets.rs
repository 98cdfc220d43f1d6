//! The node's own secrets at rest: token-signing keys and TOTP seeds are stored sealed under
//! the KEK (through the [`SecretSealer`] port), so a copy of the database alone mints no
//! token and computes no second factor.

use medmesh_store::SecretSealer;

use crate::{IdentityError, IdentityService};

/// What a signing key's sealed secret is bound to.
pub fn signing_key_context(kid: &str) -> String {
    format!("signing-key/{kid}")
}

/// What a user's sealed TOTP seed is bound to.
pub fn totp_context(user_id: &str) -> String {
    format!("totp/{user_id}")
}

fn sealer_failure(e: &medmesh_store::KekError) -> IdentityError {
    tracing::error!(error = %e, "cannot seal or open a secret with the key-encryption key");
    IdentityError::Internal
}

impl IdentityService {
    /// The sealer, when encryption at rest is on.
    pub(crate) fn sealer(&self) -> Option<&dyn SecretSealer> {
        self.secrets.as_deref()
    }

    /// Seals a secret for storage (as it is, when encryption at rest is off).
    pub(crate) async fn seal_secret(
        &self,
        context: &str,
        secret: &[u8],
    ) -> Result<Vec<u8>, IdentityError> {
        match self.sealer() {
            Some(s) => s
                .seal_secret(context, secret)
                .await
                .map_err(|e| sealer_failure(&e)),
            None => Ok(secret.to_vec()),
        }
    }

    /// Opens a stored secret. One written before secrets were sealed opens as it is, until
    /// `medmesh keys reencrypt` seals it.
    pub(crate) async fn open_secret(
        &self,
        context: &str,
        stored: &[u8],
    ) -> Result<Vec<u8>, IdentityError> {
        match self.sealer() {
            Some(s) => Ok(s
                .open_secret(context, stored)
                .await
                .map_err(|e| sealer_failure(&e))?
                .unwrap_or_else(|| stored.to_vec())),
            None => Ok(stored.to_vec()),
        }
    }

    /// Seals every stored secret again under the sealer's current key: signing keys and
    /// TOTP seeds, including any written before secrets were sealed. Returns how many.
    ///
    /// # Errors
    /// When the store or the sealer fails.
    pub async fn reseal_secrets(&self) -> Result<u64, IdentityError> {
        let mut n = 0;
        for k in self.store.signing_keys().await? {
            let context = signing_key_context(&k.kid);
            let plain = self.open_secret(&context, &k.secret).await?;
            let sealed = self.seal_secret(&context, &plain).await?;
            self.store
                .replace_signing_key_secret(&k.kid, &sealed)
                .await?;
            n += 1;
        }
        for mut u in self.store.users_with_totp().await? {
            let Some(stored) = u.totp_secret.clone() else {
                continue;
            };
            let context = totp_context(&u.id);
            let plain = self.open_secret(&context, &stored).await?;
            u.totp_secret = Some(self.seal_secret(&context, &plain).await?);
            self.store.update_user(&u).await?;
            n += 1;
        }
        Ok(n)
    }
}
