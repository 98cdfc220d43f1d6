//! The key directory and the keys of end-to-end sealed documents.
//!
//! Users publish public keys here: an Ed25519 `signing` key (which signs uploads and every
//! other entry of its owner), and X25519 `sealing` and `recovery` keys (which receive sealed
//! documents' content keys). Every entry carries the owner's signature over a
//! [`KeyStatement`], so a client can check an entry without trusting the node's database;
//! the first signing key signs itself, which proves its holder registered it.
//!
//! A sealed document's content key is stored wrapped (HPKE) once per recipient key. The node
//! only stores and hands out these wrapped keys: reading one is a PDP-checked read of the
//! document, sharing needs a key of one's own for it (only a holder of the content key can
//! wrap it for someone else), and revoking is for the patient or whoever added the share.
//! Every change is audited in the transaction that makes it.

use medmesh_audit::Outcome;
use medmesh_crypto::sealing::{SealingPublicKey, WrappedKey};
use medmesh_crypto::{KeyStatement, UploadSignature, UserPublicKey};
use medmesh_fhir::IssueType;
use medmesh_store::{SealedKey, UserKey};
use serde_json::Value;
use sha2::{Digest, Sha256};

use crate::vault::author_of;
use medmesh_kernel::RequestContext;
use medmesh_records::RecordError;

use crate::DocumentVault;

/// Kinds of key in the directory.
pub const KEY_KINDS: [&str; 3] = ["signing", "sealing", "recovery"];

/// A key's directory id: hex SHA-256 of its kind and base64 public key.
pub fn key_id(kind: &str, public_key: &str) -> String {
    hex::encode(Sha256::digest(format!("{kind}\n{}", public_key.trim())))
}

/// A key a user publishes: the statement's parts and its signature.
#[derive(Debug, Clone)]
pub struct NewKey {
    /// `signing`, `sealing` or `recovery`.
    pub kind: String,
    /// The public key, base64.
    pub public_key: String,
    /// The statement's time (FHIR instant).
    pub time: String,
    /// The owner's signature over the statement, base64.
    pub signature: String,
}

/// Whose entry an actor may publish: their own `Patient/x` or `Practitioner/y`.
fn owner_of(ctx: &RequestContext) -> Result<String, RecordError> {
    let owner = author_of(ctx);
    if owner.starts_with("Patient/") || owner.starts_with("Practitioner/") {
        Ok(owner)
    } else {
        Err(RecordError::invalid(
            IssueType::Forbidden,
            "only patients and practitioners publish keys",
        ))
    }
}

fn bad_key(m: &str) -> RecordError {
    RecordError::BadSignature(m.to_string())
}

impl DocumentVault {
    /// Publishes one of the actor's public keys. A signing key must sign its own statement;
    /// a sealing or recovery key must be signed by one of the owner's live signing keys.
    ///
    /// # Errors
    /// [`RecordError::BadSignature`] when the statement does not verify;
    /// [`RecordError::Invalid`] for an unknown kind or a malformed key.
    pub async fn register_key(
        &self,
        ctx: &RequestContext,
        new: NewKey,
    ) -> Result<UserKey, RecordError> {
        let core = self.records.core();
        let owner = owner_of(ctx)?;
        if !KEY_KINDS.contains(&new.kind.as_str()) {
            return Err(RecordError::invalid(
                IssueType::Value,
                "kind must be signing, sealing or recovery",
            ));
        }
        let statement = KeyStatement {
            owner: owner.clone(),
            kind: new.kind.clone(),
            key: new.public_key.trim().to_string(),
            time: new.time.clone(),
        };
        let signature = UploadSignature::from_base64(&new.signature)
            .map_err(|_| bad_key("the signature is malformed"))?;
        if new.kind == "signing" {
            let key = UserPublicKey::from_base64(&new.public_key)
                .map_err(|_| bad_key("the public key is not an Ed25519 key"))?;
            key.verify_statement(&statement, &signature)
                .map_err(|_| bad_key("a signing key must sign its own statement"))?;
        } else {
            SealingPublicKey::from_base64(&new.public_key)
                .map_err(|_| bad_key("the public key is not an X25519 key"))?;
            let signers = self.live_keys(&owner, "signing").await?;
            let signed = signers.iter().any(|k| {
                UserPublicKey::from_base64(&k.public_key)
                    .is_ok_and(|pk| pk.verify_statement(&statement, &signature).is_ok())
            });
            if !signed {
                return Err(bad_key(
                    "the statement must be signed by one of your registered signing keys",
                ));
            }
        }
        let key = UserKey {
            key_id: key_id(&new.kind, &new.public_key),
            owner,
            account_id: ctx.actor().subject().to_string(),
            kind: new.kind,
            public_key: statement.key,
            statement_time: new.time,
            signature: new.signature.trim().to_string(),
            created_micros: core.now(),
            revoked_micros: None,
        };
        let mut tx = core.begin_write().await?;
        tx.put_user_key(&key).await?;
        let entry = core.entry(
            ctx,
            "key-register",
            None,
            vec![format!("key/{}", key.key_id)],
            Outcome::Success,
        );
        tx.append_audit(&entry).await?;
        tx.commit().await?;
        Ok(key)
    }

    /// An owner's live keys of one kind.
    ///
    /// # Errors
    /// When storage fails.
    pub(crate) async fn live_keys(
        &self,
        owner: &str,
        kind: &str,
    ) -> Result<Vec<UserKey>, RecordError> {
        Ok(self
            .directory
            .user_keys(owner)
            .await?
            .into_iter()
            .filter(|k| k.kind == kind && k.revoked_micros.is_none())
            .collect())
    }

    /// The directory's entries for an owner, revoked ones included. Public keys only, so any
    /// authenticated caller may read them; the context is what proves authentication.
    ///
    /// # Errors
    /// When storage fails.
    pub async fn directory(
        &self,
        _ctx: &RequestContext,
        owner: &str,
    ) -> Result<Vec<UserKey>, RecordError> {
        Ok(self.directory.user_keys(owner).await?)
    }

    /// Revokes one of the actor's keys. Documents already sealed for it keep their wrapped
    /// key until revoked from them; new shares skip it.
    ///
    /// # Errors
    /// [`RecordError::NotFound`] when the actor has no such live key.
    pub async fn revoke_key(&self, ctx: &RequestContext, key_id: &str) -> Result<(), RecordError> {
        let core = self.records.core();
        let owner = owner_of(ctx)?;
        let mut tx = core.begin_write().await?;
        if !tx.revoke_user_key(&owner, key_id, core.now()).await? {
            return Err(RecordError::NotFound);
        }
        let entry = core.entry(
            ctx,
            "key-revoke",
            None,
            vec![format!("key/{key_id}")],
            Outcome::Success,
        );
        tx.append_audit(&entry).await?;
        tx.commit().await?;
        Ok(())
    }

    /// A live directory key that may receive a sealed document's content key.
    pub(crate) async fn recipient_key(&self, key_id: &str) -> Result<UserKey, RecordError> {
        match self.directory.user_key(key_id).await? {
            Some(k) if k.revoked_micros.is_none() && k.kind != "signing" => Ok(k),
            _ => Err(RecordError::invalid(
                IssueType::Value,
                "a recipient key is unknown, revoked, or not a sealing or recovery key",
            )),
        }
    }

    /// Checks the wrapped keys of a new sealed document: each for a live sealing or recovery
    /// key, and one of them the uploader's own (else nobody who can share would hold it).
    pub(crate) async fn check_new_sealed_keys(
        &self,
        ctx: &RequestContext,
        keys: &[(String, String)],
    ) -> Result<Vec<(UserKey, String)>, RecordError> {
        let me = author_of(ctx);
        let mut out = Vec::with_capacity(keys.len());
        for (key_id, wrapped) in keys {
            WrappedKey::from_text(wrapped).map_err(|_| {
                RecordError::invalid(IssueType::Value, "a wrapped key is malformed")
            })?;
            out.push((
                self.recipient_key(key_id).await?,
                wrapped.trim().to_string(),
            ));
        }
        if !out.iter().any(|(k, _)| k.owner == me) {
            return Err(RecordError::invalid(
                IssueType::Required,
                "a sealed document needs a wrapped key for one of your own sealing keys",
            ));
        }
        Ok(out)
    }

    /// The sealed document's Binary, if the actor may read it (auditing a refusal as a read).
    async fn readable_sealed(
        &self,
        ctx: &RequestContext,
        binary_id: &str,
        action: &str,
    ) -> Result<(medmesh_policy::Grant, Value), RecordError> {
        self.visible_binary(ctx, binary_id, action, crate::vault::is_sealed)
            .await
    }

    /// The wrapped keys of a sealed document meant for the actor's own keys, and the
    /// document key id they are bound to. Audited as a read of the document.
    ///
    /// # Errors
    /// [`RecordError::NotFound`] when the document is out of reach or holds no key of theirs.
    pub async fn my_sealed_keys(
        &self,
        ctx: &RequestContext,
        binary_id: &str,
    ) -> Result<(String, Vec<SealedKey>), RecordError> {
        let core = self.records.core();
        let (grant, binary) = self.readable_sealed(ctx, binary_id, "read").await?;
        let document = crate::vault::sealed_id_of(&binary).ok_or(RecordError::Corrupt)?;
        let me = author_of(ctx);
        let mine: Vec<SealedKey> = self
            .directory
            .sealed_keys(binary_id)
            .await?
            .into_iter()
            .filter(|k| k.recipient == me)
            .collect();
        let outcome = if mine.is_empty() {
            Outcome::Denied
        } else {
            Outcome::Success
        };
        let mut entry = core.entry(ctx, "read", Some("Binary"), vec![binary_id.into()], outcome);
        entry.patients = crate::vault::patient_of(&binary).into_iter().collect();
        entry.basis.push("sealed-key".into());
        core.annotate(&mut entry, &grant);
        if mine.is_empty() {
            entry.reason = Some("no key of the actor's for this sealed document".into());
        }
        core.append_audit(vec![entry]).await?;
        if mine.is_empty() {
            return Err(RecordError::NotFound);
        }
        Ok((document, mine))
    }

    /// Shares a sealed document: adds a content key the actor wrapped for another recipient
    /// key. Only someone who already holds a key for the document may.
    ///
    /// # Errors
    /// [`RecordError::Forbidden`] when the actor holds no key for it;
    /// [`RecordError::Invalid`] for an unknown recipient key or a malformed wrap.
    pub async fn share_sealed(
        &self,
        ctx: &RequestContext,
        binary_id: &str,
        recipient_key_id: &str,
        wrapped: &str,
    ) -> Result<SealedKey, RecordError> {
        let core = self.records.core();
        let (_, binary) = self.readable_sealed(ctx, binary_id, "share").await?;
        let me = author_of(ctx);
        let holders = self.directory.sealed_keys(binary_id).await?;
        if !holders.iter().any(|k| k.recipient == me) {
            let mut entry = core.entry(
                ctx,
                "share",
                Some("Binary"),
                vec![binary_id.into()],
                Outcome::Denied,
            );
            entry.reason = Some("the actor holds no key for this sealed document".into());
            core.append_audit(vec![entry]).await?;
            return Err(RecordError::Forbidden);
        }
        WrappedKey::from_text(wrapped)
            .map_err(|_| RecordError::invalid(IssueType::Value, "the wrapped key is malformed"))?;
        let recipient = self.recipient_key(recipient_key_id).await?;
        let key = SealedKey {
            document_id: binary_id.to_string(),
            recipient_key_id: recipient.key_id.clone(),
            recipient: recipient.owner.clone(),
            wrapped: wrapped.trim().to_string(),
            added_by: me,
            added_micros: core.now(),
        };
        let mut tx = core.begin_write().await?;
        tx.put_sealed_key(&key).await?;
        let mut entry = core.entry(
            ctx,
            "share",
            Some("Binary"),
            vec![binary_id.into(), recipient.owner.clone()],
            Outcome::Success,
        );
        entry.patients = crate::vault::patient_of(&binary).into_iter().collect();
        tx.append_audit(&entry).await?;
        tx.commit().await?;
        Ok(key)
    }

    /// Everyone who holds a key to a sealed document (recipient, key, who shared it, when):
    /// for the document's patient only. Audited as a read.
    ///
    /// # Errors
    /// [`RecordError::NotFound`] when it is out of reach; [`RecordError::Forbidden`] for
    /// anyone but the patient.
    pub async fn sealed_shares(
        &self,
        ctx: &RequestContext,
        binary_id: &str,
    ) -> Result<Vec<SealedKey>, RecordError> {
        let core = self.records.core();
        let (grant, binary) = self.readable_sealed(ctx, binary_id, "read").await?;
        let patient = crate::vault::patient_of(&binary);
        let is_patient = patient.as_deref().map(|p| format!("Patient/{p}")) == Some(author_of(ctx));
        let outcome = if is_patient {
            Outcome::Success
        } else {
            Outcome::Denied
        };
        let mut entry = core.entry(ctx, "read", Some("Binary"), vec![binary_id.into()], outcome);
        entry.patients = patient.into_iter().collect();
        entry.basis.push("sealed-shares".into());
        core.annotate(&mut entry, &grant);
        if !is_patient {
            entry.reason = Some("only the patient sees who holds a sealed document's keys".into());
        }
        core.append_audit(vec![entry]).await?;
        if !is_patient {
            return Err(RecordError::Forbidden);
        }
        Ok(self.directory.sealed_keys(binary_id).await?)
    }

    /// Revokes a recipient's wrapped key of a sealed document: for the document's patient,
    /// or whoever added that share. What the recipient already downloaded stays with them.
    ///
    /// # Errors
    /// [`RecordError::NotFound`] when there is no such share; [`RecordError::Forbidden`] when
    /// the actor may not revoke it.
    pub async fn revoke_sealed(
        &self,
        ctx: &RequestContext,
        binary_id: &str,
        recipient_key_id: &str,
    ) -> Result<(), RecordError> {
        let core = self.records.core();
        let (_, binary) = self.readable_sealed(ctx, binary_id, "revoke").await?;
        let patient = crate::vault::patient_of(&binary);
        let me = author_of(ctx);
        let keys = self.directory.sealed_keys(binary_id).await?;
        let Some(share) = keys.iter().find(|k| k.recipient_key_id == recipient_key_id) else {
            return Err(RecordError::NotFound);
        };
        let is_patient = patient.as_deref().map(|p| format!("Patient/{p}")) == Some(me.clone());
        if !is_patient && share.added_by != me {
            let mut entry = core.entry(
                ctx,
                "revoke",
                Some("Binary"),
                vec![binary_id.into()],
                Outcome::Denied,
            );
            entry.reason = Some("only the patient or the one who shared may revoke".into());
            core.append_audit(vec![entry]).await?;
            return Err(RecordError::Forbidden);
        }
        let mut tx = core.begin_write().await?;
        tx.delete_sealed_key(binary_id, recipient_key_id).await?;
        let mut entry = core.entry(
            ctx,
            "revoke",
            Some("Binary"),
            vec![binary_id.into(), share.recipient.clone()],
            Outcome::Success,
        );
        entry.patients = patient.into_iter().collect();
        tx.append_audit(&entry).await?;
        tx.commit().await?;
        Ok(())
    }
}
