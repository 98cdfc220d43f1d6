//! Signed uploads: a user's Ed25519 key signs the SHA-256 digest of a document together with
//! what it claims to be (author, time, device, patient, document type). The node verifies
//! the signature on upload and keeps it in a FHIR Provenance; anyone can verify it offline.
//!
//! The signed bytes are a fixed, line-based text (`medmesh-upload v1`), so every client can
//! build them without a JSON canonicalization library:
//!
//! ```text
//! medmesh-upload v1
//! sha256 <64 hex digits>
//! author <reference>
//! patient <reference>
//! time <FHIR instant>
//! device <text>
//! type <system>|<code>
//! ```
//!
//! Binding the patient means a signature replayed onto another patient's document fails.

use std::fmt;

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use ed25519_dalek::{Signature, Signer, SigningKey, VerifyingKey};
use zeroize::Zeroizing;

use crate::random::{Random, array};

/// A signed text: its first line, then one `name value` line per field. A field that is
/// empty or holds a line break would make the text ambiguous, so it is refused.
fn signed_text(first: &str, fields: &[(&'static str, &str)]) -> Result<Vec<u8>, SignatureError> {
    let mut out = format!("{first}\n");
    for (name, value) in fields {
        if value.is_empty() || value.contains(['\n', '\r']) {
            return Err(SignatureError::BadClaim(name));
        }
        out.push_str(name);
        out.push(' ');
        out.push_str(value);
        out.push('\n');
    }
    Ok(out.into_bytes())
}

/// Reads a signed text back into its field values, in order. Only text that
/// [`signed_text`] would produce for these names is accepted.
fn parse_signed_text(
    text: &[u8],
    first: &str,
    names: &[&'static str],
) -> Result<Vec<String>, SignatureError> {
    let text = std::str::from_utf8(text).map_err(|_| SignatureError::Malformed)?;
    let mut lines = text
        .strip_suffix('\n')
        .ok_or(SignatureError::Malformed)?
        .split('\n');
    if lines.next() != Some(first) {
        return Err(SignatureError::Malformed);
    }
    let mut values = Vec::with_capacity(names.len());
    for name in names {
        let value = lines
            .next()
            .and_then(|l| l.strip_prefix(name))
            .and_then(|l| l.strip_prefix(' '))
            .ok_or(SignatureError::Malformed)?;
        values.push(value.to_string());
    }
    if lines.next().is_some() {
        return Err(SignatureError::Malformed);
    }
    let fields: Vec<(&'static str, &str)> = names
        .iter()
        .copied()
        .zip(values.iter().map(String::as_str))
        .collect();
    if signed_text(first, &fields)? != text.as_bytes() {
        return Err(SignatureError::Malformed);
    }
    Ok(values)
}

/// What an upload claims, and the digest of its bytes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UploadClaims {
    /// SHA-256 of the content.
    pub sha256: [u8; 32],
    /// Who made it: `Patient/x` or `Practitioner/y`.
    pub author: String,
    /// Whose document it is: `Patient/x`.
    pub patient: String,
    /// When it was signed (a FHIR instant).
    pub time: String,
    /// The device or software that made it.
    pub device: String,
    /// The document type, `system|code` (for example LOINC).
    pub doc_type: String,
}

/// Why a signature does not check, or claims cannot be signed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SignatureError {
    /// A claim holds a line break (or is empty), so the signed text would be ambiguous.
    #[error("claim '{0}' is empty or holds a line break")]
    BadClaim(&'static str),
    /// The signature or key is not well formed.
    #[error("malformed signature or key")]
    Malformed,
    /// The signature does not verify for these claims and key.
    #[error("signature does not verify")]
    Invalid,
}

impl UploadClaims {
    /// The exact bytes that are signed.
    ///
    /// # Errors
    /// [`SignatureError::BadClaim`] for an empty claim or one with a line break.
    pub fn signed_bytes(&self) -> Result<Vec<u8>, SignatureError> {
        let digest = hex::encode(self.sha256);
        signed_text(
            "medmesh-upload v1",
            &[
                ("sha256", &digest),
                ("author", &self.author),
                ("patient", &self.patient),
                ("time", &self.time),
                ("device", &self.device),
                ("type", &self.doc_type),
            ],
        )
    }
}

/// A key directory entry: "this public key, of this kind, is this owner's", signed by the
/// owner's Ed25519 signing key (a signing key signs its own entry, which proves possession).
/// The signed text is line-based like the upload claims:
///
/// ```text
/// medmesh-key v1
/// owner <reference>
/// kind <signing|sealing|recovery>
/// key <base64 public key>
/// time <FHIR instant>
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KeyStatement {
    /// Whose key: `Patient/x`, `Practitioner/y`.
    pub owner: String,
    /// `signing` (Ed25519), `sealing` or `recovery` (X25519).
    pub kind: String,
    /// The public key, base64.
    pub key: String,
    /// When it was made (FHIR instant).
    pub time: String,
}

impl KeyStatement {
    /// The exact bytes that are signed.
    ///
    /// # Errors
    /// [`SignatureError::BadClaim`] for an empty field or one with a line break.
    pub fn signed_bytes(&self) -> Result<Vec<u8>, SignatureError> {
        signed_text(
            "medmesh-key v1",
            &[
                ("owner", &self.owner),
                ("kind", &self.kind),
                ("key", &self.key),
                ("time", &self.time),
            ],
        )
    }
}

impl UploadClaims {
    /// Parses the signed text back into claims (offline verification reads it from a
    /// Provenance). Only text that [`Self::signed_bytes`] would produce is accepted.
    ///
    /// # Errors
    /// [`SignatureError::Malformed`].
    pub fn parse(text: &[u8]) -> Result<Self, SignatureError> {
        let [sha256, author, patient, time, device, doc_type]: [String; 6] = parse_signed_text(
            text,
            "medmesh-upload v1",
            &["sha256", "author", "patient", "time", "device", "type"],
        )?
        .try_into()
        .map_err(|_| SignatureError::Malformed)?;
        let sha256: [u8; 32] = hex::decode(sha256)
            .ok()
            .and_then(|b| b.try_into().ok())
            .ok_or(SignatureError::Malformed)?;
        Ok(Self {
            sha256,
            author,
            patient,
            time,
            device,
            doc_type,
        })
    }
}

/// A prescription as its prescriber signs it: every part a pharmacy needs, in a line-based
/// text like the upload claims, so it can be printed (in a QR code) and checked offline
/// without the record it came from. Which pharmacy it is routed to is not signed: the patient
/// may take it elsewhere, and a pharmacy may return it.
///
/// ```text
/// medmesh-prescription v1
/// prescription <MedicationRequest/id>
/// patient <Patient/x>
/// prescriber <Practitioner/y>
/// medication <system|code, or "text">
/// medication-text <the medication in words>
/// dosage <the instructions in words>
/// quantity <value and unit, or "none">
/// supply <the expected supply duration ("30 d"), or "none">
/// refills <number of repeats allowed>
/// substitution <allowed | not-allowed>
/// authored <the prescription's authoredOn>
/// time <when it was signed, a FHIR instant>
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PrescriptionClaims {
    /// `MedicationRequest/<id>`.
    pub prescription: String,
    /// `Patient/<id>`.
    pub patient: String,
    /// `Practitioner/<id>`: whose signing key signs.
    pub prescriber: String,
    /// `system|code` of the medication, or `text` for a free-text one.
    pub medication: String,
    /// The medication in words.
    pub medication_text: String,
    /// The dosage instructions in words.
    pub dosage: String,
    /// The quantity to dispense, or `none`.
    pub quantity: String,
    /// The expected supply duration (`30 d`), or `none`.
    pub supply: String,
    /// How many refills are allowed.
    pub refills: String,
    /// `allowed` or `not-allowed`.
    pub substitution: String,
    /// When it was written (`authoredOn`).
    pub authored: String,
    /// When it was signed (FHIR instant).
    pub time: String,
}

const PRESCRIPTION_V1: &str = "medmesh-prescription v1";
const PRESCRIPTION_FIELDS: [&str; 12] = [
    "prescription",
    "patient",
    "prescriber",
    "medication",
    "medication-text",
    "dosage",
    "quantity",
    "supply",
    "refills",
    "substitution",
    "authored",
    "time",
];

impl PrescriptionClaims {
    /// The exact bytes that are signed.
    ///
    /// # Errors
    /// [`SignatureError::BadClaim`] for an empty field or one with a line break.
    pub fn signed_bytes(&self) -> Result<Vec<u8>, SignatureError> {
        let values = [
            &self.prescription,
            &self.patient,
            &self.prescriber,
            &self.medication,
            &self.medication_text,
            &self.dosage,
            &self.quantity,
            &self.supply,
            &self.refills,
            &self.substitution,
            &self.authored,
            &self.time,
        ];
        let fields: Vec<(&'static str, &str)> = PRESCRIPTION_FIELDS
            .iter()
            .copied()
            .zip(values.iter().map(|v| v.as_str()))
            .collect();
        signed_text(PRESCRIPTION_V1, &fields)
    }

    /// Parses the signed text back (a pharmacy reads it from the QR code).
    ///
    /// # Errors
    /// [`SignatureError::Malformed`].
    pub fn parse(text: &[u8]) -> Result<Self, SignatureError> {
        let [
            prescription,
            patient,
            prescriber,
            medication,
            medication_text,
            dosage,
            quantity,
            supply,
            refills,
            substitution,
            authored,
            time,
        ]: [String; 12] = parse_signed_text(text, PRESCRIPTION_V1, &PRESCRIPTION_FIELDS)?
            .try_into()
            .map_err(|_| SignatureError::Malformed)?;
        Ok(Self {
            prescription,
            patient,
            prescriber,
            medication,
            medication_text,
            dosage,
            quantity,
            supply,
            refills,
            substitution,
            authored,
            time,
        })
    }
}

/// A user's Ed25519 signing key. Zeroed on drop; Debug shows only the public key.
pub struct UserSigningKey {
    secret: Zeroizing<[u8; 32]>,
    key: SigningKey,
}

impl fmt::Debug for UserSigningKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "UserSigningKey(public {})", self.public().to_base64())
    }
}

impl UserSigningKey {
    /// A fresh key.
    pub fn generate(random: &dyn Random) -> Self {
        Self::from_secret(array(random))
    }

    /// A key from its 32 secret bytes.
    pub fn from_secret(secret: [u8; 32]) -> Self {
        Self {
            key: SigningKey::from_bytes(&secret),
            secret: Zeroizing::new(secret),
        }
    }

    /// The secret bytes, to write the user's key file.
    pub fn expose_secret(&self) -> &[u8; 32] {
        &self.secret
    }

    /// The public half.
    pub fn public(&self) -> UserPublicKey {
        UserPublicKey(self.key.verifying_key())
    }

    /// Signs a key directory entry.
    ///
    /// # Errors
    /// [`SignatureError::BadClaim`] when the statement cannot be put in the signed text.
    pub fn sign_statement(&self, st: &KeyStatement) -> Result<UploadSignature, SignatureError> {
        Ok(UploadSignature(
            self.key.sign(&st.signed_bytes()?).to_bytes(),
        ))
    }

    /// Signs a prescription.
    ///
    /// # Errors
    /// [`SignatureError::BadClaim`] when the claims cannot be put in the signed text.
    pub fn sign_prescription(
        &self,
        claims: &PrescriptionClaims,
    ) -> Result<UploadSignature, SignatureError> {
        Ok(UploadSignature(
            self.key.sign(&claims.signed_bytes()?).to_bytes(),
        ))
    }

    /// Signs an upload's claims.
    ///
    /// # Errors
    /// [`SignatureError::BadClaim`] when the claims cannot be put in the signed text.
    pub fn sign(&self, claims: &UploadClaims) -> Result<UploadSignature, SignatureError> {
        Ok(UploadSignature(
            self.key.sign(&claims.signed_bytes()?).to_bytes(),
        ))
    }
}

/// A user's Ed25519 public key.
#[derive(Clone, Copy, PartialEq, Eq)]
pub struct UserPublicKey(VerifyingKey);

impl fmt::Debug for UserPublicKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "UserPublicKey({})", self.to_base64())
    }
}

impl UserPublicKey {
    /// Base64 of the 32 key bytes.
    pub fn to_base64(&self) -> String {
        STANDARD.encode(self.0.as_bytes())
    }

    /// Parses base64 of the 32 key bytes.
    ///
    /// # Errors
    /// [`SignatureError::Malformed`].
    pub fn from_base64(s: &str) -> Result<Self, SignatureError> {
        let bytes: [u8; 32] = STANDARD
            .decode(s.trim())
            .ok()
            .and_then(|b| b.try_into().ok())
            .ok_or(SignatureError::Malformed)?;
        VerifyingKey::from_bytes(&bytes)
            .map(Self)
            .map_err(|_| SignatureError::Malformed)
    }

    /// Verifies a signature over the claims (strictly: no malleable or small-order forms).
    ///
    /// # Errors
    /// [`SignatureError::Invalid`] when it does not verify.
    pub fn verify(
        &self,
        claims: &UploadClaims,
        signature: &UploadSignature,
    ) -> Result<(), SignatureError> {
        self.0
            .verify_strict(
                &claims.signed_bytes()?,
                &Signature::from_bytes(&signature.0),
            )
            .map_err(|_| SignatureError::Invalid)
    }
}

impl UserPublicKey {
    /// Verifies a prescriber's signature over a prescription.
    ///
    /// # Errors
    /// [`SignatureError::Invalid`] when it does not verify.
    pub fn verify_prescription(
        &self,
        claims: &PrescriptionClaims,
        signature: &UploadSignature,
    ) -> Result<(), SignatureError> {
        self.0
            .verify_strict(
                &claims.signed_bytes()?,
                &Signature::from_bytes(&signature.0),
            )
            .map_err(|_| SignatureError::Invalid)
    }

    /// Verifies a key directory entry's signature.
    ///
    /// # Errors
    /// [`SignatureError::Invalid`] when it does not verify.
    pub fn verify_statement(
        &self,
        st: &KeyStatement,
        signature: &UploadSignature,
    ) -> Result<(), SignatureError> {
        self.0
            .verify_strict(&st.signed_bytes()?, &Signature::from_bytes(&signature.0))
            .map_err(|_| SignatureError::Invalid)
    }
}

/// A detached Ed25519 signature over an upload's claims or a key statement.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct UploadSignature(pub [u8; 64]);

impl UploadSignature {
    /// Base64 of the 64 signature bytes (as stored in `Provenance.signature.data`).
    pub fn to_base64(&self) -> String {
        STANDARD.encode(self.0)
    }

    /// Parses base64 of the 64 signature bytes.
    ///
    /// # Errors
    /// [`SignatureError::Malformed`].
    pub fn from_base64(s: &str) -> Result<Self, SignatureError> {
        STANDARD
            .decode(s.trim())
            .ok()
            .and_then(|b| b.try_into().ok())
            .map(Self)
            .ok_or(SignatureError::Malformed)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::random::testing::Counter;
    use sha2::{Digest, Sha256};

    fn claims(content: &[u8], patient: &str) -> UploadClaims {
        UploadClaims {
            sha256: Sha256::digest(content).into(),
            author: "Patient/p1".into(),
            patient: patient.into(),
            time: "2026-11-25T10:00:00Z".into(),
            device: "medmesh-cli 0.1".into(),
            doc_type: "http://loinc.org|18748-4".into(),
        }
    }

    #[test]
    fn a_signature_binds_bytes_claims_and_key() {
        let key = UserSigningKey::generate(&Counter::default());
        let c = claims(b"%PDF-1.7 report", "Patient/p1");
        let sig = key.sign(&c).unwrap();
        key.public().verify(&c, &sig).unwrap();
        // A tampered byte changes the digest.
        let tampered = claims(b"%PDF-1.7 repors", "Patient/p1");
        assert_eq!(
            key.public().verify(&tampered, &sig),
            Err(SignatureError::Invalid)
        );
        // Replayed onto another patient's document.
        let replay = claims(b"%PDF-1.7 report", "Patient/p2");
        assert_eq!(
            key.public().verify(&replay, &sig),
            Err(SignatureError::Invalid)
        );
        // Another key's signature swapped in.
        let other = UserSigningKey::from_secret([9; 32]);
        let swapped = other.sign(&c).unwrap();
        assert_eq!(
            key.public().verify(&c, &swapped),
            Err(SignatureError::Invalid)
        );
        // Round trips through base64.
        let back = UploadSignature::from_base64(&sig.to_base64()).unwrap();
        let pk = UserPublicKey::from_base64(&key.public().to_base64()).unwrap();
        pk.verify(&c, &back).unwrap();
        assert!(!format!("{key:?}").contains(&hex::encode(key.expose_secret())));
    }

    #[test]
    fn signed_text_parses_back_and_nothing_else_does() {
        let c = claims(b"x", "Patient/p1");
        let text = c.signed_bytes().unwrap();
        assert_eq!(UploadClaims::parse(&text).unwrap(), c);
        let mut extra = text.clone();
        extra.extend_from_slice(b"more stuff\n");
        assert_eq!(UploadClaims::parse(&extra), Err(SignatureError::Malformed));
        assert_eq!(
            UploadClaims::parse(b"medmesh-upload v1\n"),
            Err(SignatureError::Malformed)
        );
    }

    fn prescription() -> PrescriptionClaims {
        PrescriptionClaims {
            prescription: "MedicationRequest/rx1".into(),
            patient: "Patient/p1".into(),
            prescriber: "Practitioner/gp".into(),
            medication: "http://www.nlm.nih.gov/research/umls/rxnorm|314076".into(),
            medication_text: "lisinopril 10 MG Oral Tablet".into(),
            dosage: "1 tablet once a day".into(),
            quantity: "30 tablet".into(),
            supply: "30 d".into(),
            refills: "2".into(),
            substitution: "allowed".into(),
            authored: "2026-12-04".into(),
            time: "2026-12-04T10:00:00Z".into(),
        }
    }

    #[test]
    fn a_prescription_signature_binds_every_part() {
        let key = UserSigningKey::from_secret([5; 32]);
        let c = prescription();
        let sig = key.sign_prescription(&c).unwrap();
        key.public().verify_prescription(&c, &sig).unwrap();
        let text = c.signed_bytes().unwrap();
        assert_eq!(PrescriptionClaims::parse(&text).unwrap(), c);
        // A changed quantity, refill count or patient no longer verifies.
        for tampered in [
            PrescriptionClaims {
                quantity: "90 tablet".into(),
                ..c.clone()
            },
            PrescriptionClaims {
                refills: "5".into(),
                ..c.clone()
            },
            PrescriptionClaims {
                patient: "Patient/p2".into(),
                ..c.clone()
            },
        ] {
            assert_eq!(
                key.public().verify_prescription(&tampered, &sig),
                Err(SignatureError::Invalid)
            );
        }
        // An upload signature is no prescription signature.
        assert!(text.starts_with(b"medmesh-prescription v1\n"));
        // A line break in a field would make the text ambiguous.
        let broken = PrescriptionClaims {
            dosage: "1 tablet\nrefills 9".into(),
            ..c
        };
        assert_eq!(
            broken.signed_bytes(),
            Err(SignatureError::BadClaim("dosage"))
        );
    }

    #[test]
    fn key_statements_bind_owner_kind_and_key() {
        let key = UserSigningKey::from_secret([3; 32]);
        let st = KeyStatement {
            owner: "Patient/p1".into(),
            kind: "sealing".into(),
            key: "AAAA".into(),
            time: "2026-11-25T10:00:00Z".into(),
        };
        let sig = key.sign_statement(&st).unwrap();
        key.public().verify_statement(&st, &sig).unwrap();
        let moved = KeyStatement {
            owner: "Patient/p2".into(),
            ..st.clone()
        };
        assert_eq!(
            key.public().verify_statement(&moved, &sig),
            Err(SignatureError::Invalid)
        );
        // A statement signature is no upload signature: the texts differ in their first line.
        assert!(!st.signed_bytes().unwrap().starts_with(b"medmesh-upload"));
    }

    #[test]
    fn claims_with_line_breaks_cannot_be_signed() {
        let key = UserSigningKey::from_secret([1; 32]);
        let mut c = claims(b"x", "Patient/p1");
        c.device = "phone\ntype http://evil|x".into();
        assert_eq!(key.sign(&c), Err(SignatureError::BadClaim("device")));
        c.device = String::new();
        assert_eq!(key.sign(&c), Err(SignatureError::BadClaim("device")));
    }
}
