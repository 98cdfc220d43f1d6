//! How signed and sealed documents are named on the wire: the media type of a sealed
//! document, and the FHIR extension URLs and signature format a node and its clients agree
//! on. Shared here so a client needs only this crate, not the node's.

/// The media type of an end-to-end sealed document.
pub const SEALED_TYPE: &str = "application/vnd.medmesh.sealed";
/// `Provenance` extension: the exact signed claims text (base64).
pub const EXT_SIGNED_CLAIMS: &str = "https://medmesh.dev/fhir/StructureDefinition/signed-claims";
/// `Provenance.signature` extension: the signer's Ed25519 public key (base64), for offline
/// verification.
pub const EXT_SIGNING_KEY: &str = "https://medmesh.dev/fhir/StructureDefinition/signing-key";
/// `Provenance.signature.sigFormat` of an upload signature.
pub const SIG_FORMAT: &str = "application/vnd.medmesh.upload-v1+ed25519";
/// `Provenance.signature.sigFormat` of a prescriber's signature over a prescription.
pub const PRESCRIPTION_SIG_FORMAT: &str = "application/vnd.medmesh.prescription-v1+ed25519";
