//! Rows of the key directory and of sealed documents: users' published public keys, and the
//! content keys of end-to-end sealed documents wrapped for each recipient. The node holds no
//! private key of either; these rows are public keys and ciphertext.

/// A public key in the directory, with the statement its owner signed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UserKey {
    /// The key's id: hex SHA-256 of its kind and public key.
    pub key_id: String,
    /// Whose key (`Patient/x`, `Practitioner/y`).
    pub owner: String,
    /// The account that registered it.
    pub account_id: String,
    /// `signing`, `sealing` or `recovery`.
    pub kind: String,
    /// The public key, base64.
    pub public_key: String,
    /// The time in the signed statement (FHIR instant).
    pub statement_time: String,
    /// The owner's signature over the statement, base64.
    pub signature: String,
    /// When it was registered, microseconds.
    pub created_micros: i64,
    /// When it was revoked, if it was.
    pub revoked_micros: Option<i64>,
}

/// A sealed document's content key, wrapped for one recipient's sealing key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SealedKey {
    /// The sealed document (its Binary id).
    pub document_id: String,
    /// The recipient's sealing or recovery key ([`UserKey::key_id`]).
    pub recipient_key_id: String,
    /// Whose key it is.
    pub recipient: String,
    /// The HPKE-wrapped content key (`base64(enc).base64(ciphertext)`).
    pub wrapped: String,
    /// Who added it (a reference).
    pub added_by: String,
    /// When, microseconds.
    pub added_micros: i64,
}
