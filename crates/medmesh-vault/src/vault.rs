//! The document vault: PDFs, lab reports, photos and X-rays, streamed in and out.
//!
//! An upload is streamed through three things at once: a SHA-256 hasher (the content id),
//! the type sniffer (its first 8 KiB), and the patient's blob sealer (64 KiB STREAM
//! chunks). Sealed bytes go to the blob store as they come, so memory stays bounded
//! whatever the size. The blob's name is a keyed tag of the patient and the content id, so
//! a patient's identical uploads are kept once and the store's listing reveals nothing.
//!
//! Each upload becomes a FHIR `Binary` (the bytes' metadata: type, size, content id, in the
//! patient's compartment through `securityContext`) and a `DocumentReference` pointing at it,
//! plus a `Provenance` carrying the uploader's signature when there is one. Every open is a
//! PDP-checked read, audited in the same transaction as a notification to the patient
//! ("Dr Jane Smith opened your document "MRI report"").

use std::sync::Arc;

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use bytes::Bytes;
use futures::stream::BoxStream;
use futures::{Stream, StreamExt};
use medmesh_audit::{AuditEntry, Outcome};
use medmesh_crypto::stream::{FRAME, HEADER, StreamOpener, StreamSealer, key_id_of};
pub use medmesh_crypto::wire::{EXT_SIGNED_CLAIMS, EXT_SIGNING_KEY, SIG_FORMAT};
use medmesh_crypto::{ContentId, UploadClaims, UploadSignature, UserPublicKey};
use medmesh_fhir::IssueType;
use medmesh_policy::{Action, KeyAdmin};
use medmesh_store::{BlobError, KekError, Notification};
use serde_json::{Value, json};

use crate::hashing::PipelinedHasher;
use crate::sniff::{SNIFF_BYTES, sniff};
use medmesh_kernel::RequestContext;
use medmesh_records::RecordError;

use crate::DocumentVault;

/// `Binary.meta` extension: the content id (CIDv1 of the SHA-256).
pub const EXT_CONTENT_ID: &str = "https://medmesh.dev/fhir/StructureDefinition/content-id";
/// `Binary.meta` extension: the size in bytes.
pub const EXT_SIZE: &str = "https://medmesh.dev/fhir/StructureDefinition/content-size";
/// `Binary.meta` extension: the document's title, for the patient's notifications.
pub const EXT_TITLE: &str = "https://medmesh.dev/fhir/StructureDefinition/document-title";
/// `Binary.meta` extension of a sealed document: its document key id (hex), from the sealed
/// header, which HPKE binds every wrapped key to. Public, like the header itself.
pub const EXT_SEALED_ID: &str = "https://medmesh.dev/fhir/StructureDefinition/sealed-document-id";

/// Sealed bytes gathered before each write to the blob store.
const WRITE_BYTES: usize = 1024 * 1024;
/// A write buffer's room: [`WRITE_BYTES`] and the sealed chunk that takes it past them.
const WRITE_BUFFER: usize = WRITE_BYTES + FRAME;
/// Decrypted chunks queued towards a slow client.
const DOWNLOAD_QUEUE: usize = 8;
/// The AAD context of a patient's blobs.
fn blob_context(owner: &str) -> String {
    format!("blob:{owner}")
}

/// What the uploader says about a document.
#[derive(Debug, Clone, Default)]
pub struct NewDocument {
    /// Whose document it is (a Patient id).
    pub patient: String,
    /// The content type the client sent (`None`: sniffed).
    pub content_type: Option<String>,
    /// A title (`DocumentReference.description`).
    pub title: Option<String>,
    /// The document type, `system|code` (LOINC `18748-4` is a diagnostic imaging report).
    pub doc_type: Option<String>,
    /// A detached signature over the content and these claims.
    pub signature: Option<SignedClaims>,
    /// For an end-to-end sealed document: its content key wrapped for each recipient key,
    /// as `(recipient key id, base64(enc).base64(ciphertext))`. Empty for an ordinary one.
    pub sealed_keys: Vec<(String, String)>,
    /// The id of an existing DocumentReference of this patient the content becomes the
    /// attachment of (an HL7 v2 result's encapsulated report, written with its clinical
    /// metadata), instead of a new one.
    pub attach_to: Option<String>,
}

/// The signature part of an upload: the signature and the claims the client signed,
/// besides the digest, the author and the patient, which the node fills in itself.
#[derive(Debug, Clone)]
pub struct SignedClaims {
    /// The signature, base64.
    pub signature: String,
    /// The signer's public key, base64 (it must be registered to the uploader).
    pub public_key: String,
    /// When it was signed (FHIR instant).
    pub time: String,
    /// The device or software.
    pub device: String,
}

/// Writes a patient's blob sealed (or plain, without encryption at rest) to a blob upload,
/// gathering [`WRITE_BYTES`] of sealed bytes per write.
struct SealedWriter<'a> {
    upload: &'a mut dyn medmesh_store::BlobUpload,
    sealer: Option<StreamSealer>,
    out: Vec<u8>,
}

impl<'a> SealedWriter<'a> {
    /// Starts a blob for `owner`, under their active data key.
    async fn start(
        service: &DocumentVault,
        upload: &'a mut dyn medmesh_store::BlobUpload,
        owner: &str,
    ) -> Result<Self, RecordError> {
        let mut out = Vec::with_capacity(WRITE_BUFFER);
        let sealer = match service.records.core().at_rest() {
            Some(a) => {
                let (id, key) = a.owner_key(owner).await?;
                let context = blob_context(owner);
                Some(StreamSealer::start(
                    &key,
                    &id,
                    context.as_bytes(),
                    a.random(),
                    &mut out,
                ))
            }
            None => None,
        };
        Ok(Self {
            upload,
            sealer,
            out,
        })
    }

    async fn write(&mut self, piece: &[u8]) -> Result<(), RecordError> {
        // A large piece sealed onto a nearly full buffer would grow it (a copy of all of it).
        self.out.reserve(piece.len() + FRAME);
        match &mut self.sealer {
            Some(s) => s
                .push(piece, &mut self.out)
                .map_err(|e| RecordError::Keys(KekError::service(e)))?,
            None => self.out.extend_from_slice(piece),
        }
        if self.out.len() >= WRITE_BYTES {
            let full = std::mem::replace(&mut self.out, Vec::with_capacity(WRITE_BUFFER));
            self.upload.write(Bytes::from(full)).await?;
        }
        Ok(())
    }

    /// Seals the last chunk and writes what is left; the caller finishes the upload.
    async fn finish(mut self) -> Result<(), RecordError> {
        if let Some(s) = self.sealer.take() {
            s.finish(&mut self.out)
                .map_err(|e| RecordError::Keys(KekError::service(e)))?;
        }
        if !self.out.is_empty() {
            self.upload.write(Bytes::from(self.out)).await?;
        }
        Ok(())
    }
}

/// What the streamed upload produced.
struct Stored {
    cid: ContentId,
    size: u64,
    content_type: String,
    deduplicated: bool,
    sealed_id: Option<String>,
}

/// A signature that verified against a registered key.
struct VerifiedUpload {
    claims: UploadClaims,
    signature: String,
    public_key: String,
}

/// A stored document.
#[derive(Debug, Clone)]
pub struct StoredDocument {
    /// The Binary resource (metadata; no `data`).
    pub binary: Value,
    /// The DocumentReference id.
    pub document_reference_id: String,
    /// The Provenance id, for a signed upload.
    pub provenance_id: Option<String>,
    /// The content id.
    pub content_id: ContentId,
    /// Size in bytes.
    pub size: u64,
    /// The sniffed content type.
    pub content_type: String,
    /// Whether the patient already had these exact bytes (stored once).
    pub deduplicated: bool,
}

/// A document being downloaded.
pub struct Download {
    /// The content type.
    pub content_type: String,
    /// Size in bytes.
    pub size: u64,
    /// The content id.
    pub content_id: ContentId,
    /// The bytes, decrypted as they stream; an error ends the stream early (a truncated
    /// response), never with wrong bytes: the last chunk is held back until the whole
    /// content's digest is checked.
    pub body: BoxStream<'static, Result<Bytes, RecordError>>,
}

impl std::fmt::Debug for Download {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Download")
            .field("content_type", &self.content_type)
            .field("size", &self.size)
            .finish_non_exhaustive()
    }
}

/// What a download link stands for: the PDP's answer when the link was made.
#[derive(Debug, Clone)]
pub struct LinkGrant {
    /// The Binary.
    pub binary_id: String,
    /// Who asked for the link.
    pub subject: String,
    /// Their practitioner reference, if any (for the notification).
    pub practitioner: Option<String>,
    /// The patient they act for, if a patient user.
    pub patient: Option<String>,
}

/// The `valueString` of one of a Binary's `meta` extensions.
fn meta_string<'a>(binary: &'a Value, url: &str) -> Option<&'a str> {
    binary
        .pointer("/meta/extension")?
        .as_array()?
        .iter()
        .find(|e| e.get("url").and_then(Value::as_str) == Some(url))?
        .get("valueString")?
        .as_str()
}

/// A Binary's content type (`application/octet-stream` when it names none).
fn content_type_of(binary: &Value) -> String {
    binary
        .get("contentType")
        .and_then(Value::as_str)
        .unwrap_or("application/octet-stream")
        .to_string()
}

fn blob_facts(binary: &Value) -> Result<(ContentId, u64, String), RecordError> {
    let cid = meta_string(binary, EXT_CONTENT_ID)
        .and_then(|s| s.parse().ok())
        .ok_or(RecordError::NotSupported(
            "this Binary holds its data inline; read it as JSON".into(),
        ))?;
    let size = meta_string(binary, EXT_SIZE)
        .and_then(|s| s.parse().ok())
        .ok_or(RecordError::Corrupt)?;
    Ok((cid, size, content_type_of(binary)))
}

/// Decodes a FHIR `base64Binary`, which may hold white space and may leave out padding.
fn decode_base64_binary(data: &str) -> Result<Vec<u8>, RecordError> {
    use base64::engine::{DecodePaddingMode, GeneralPurpose, GeneralPurposeConfig};
    const LENIENT: GeneralPurpose = GeneralPurpose::new(
        &base64::alphabet::STANDARD,
        GeneralPurposeConfig::new().with_decode_padding_mode(DecodePaddingMode::Indifferent),
    );
    let compact: String = data.chars().filter(|c| !c.is_ascii_whitespace()).collect();
    LENIENT.decode(compact).map_err(|_| RecordError::Corrupt)
}

/// A sealed document's key id (hex), as recorded on its Binary.
pub(crate) fn sealed_id_of(binary: &Value) -> Option<String> {
    meta_string(binary, EXT_SEALED_ID).map(str::to_string)
}

/// Whether a Binary holds an end-to-end sealed document.
pub(crate) fn is_sealed(binary: &Value) -> bool {
    binary.get("contentType").and_then(Value::as_str) == Some(crate::sniff::SEALED_TYPE)
}

/// The patient id a Binary belongs to.
pub(crate) fn patient_of(binary: &Value) -> Option<String> {
    binary
        .pointer("/securityContext/reference")
        .and_then(Value::as_str)
        .and_then(|r| r.strip_prefix("Patient/"))
        .map(str::to_string)
}

/// Who an actor is, as an author reference.
pub(crate) fn author_of(ctx: &RequestContext) -> String {
    if let Some(c) = ctx.actor().clinician() {
        return c.practitioner.clone();
    }
    if ctx.actor().role() == Some(medmesh_auth::Role::Patient)
        && let Some(p) = ctx.actor().patient()
    {
        return format!("Patient/{p}");
    }
    ctx.actor().subject().to_string()
}

fn too_large(limit: u64) -> RecordError {
    RecordError::TooLarge(format!("documents are limited to {limit} bytes"))
}

impl DocumentVault {
    /// A patient's blob's name in the store: `blobs/<patient tag>/<blob tag>`.
    fn blob_name(&self, owner: &str, cid: &ContentId) -> String {
        let core = self.records.core();
        let blob = format!("{owner}\n{cid}");
        match core.at_rest() {
            Some(a) => format!(
                "blobs/{}/{}",
                a.blind_index().tag("blob-owner", owner),
                a.blind_index().tag("blob", &blob)
            ),
            // Without encryption at rest nothing is keyed; names still hide the patient id.
            None => format!(
                "blobs/{}/{}",
                ContentId::of(owner.as_bytes()).hex(),
                ContentId::of(blob.as_bytes()).hex()
            ),
        }
    }

    /// The grant to write a document for `patient`, checked before a byte is read.
    async fn document_grant(&self, ctx: &RequestContext, patient: &str) -> Result<(), RecordError> {
        let core = self.records.core();
        for rt in ["Binary", "DocumentReference"] {
            let grant = core.authorize(ctx, Action::Create, Some(rt)).await?;
            let probe = json!({
                "resourceType": rt,
                "securityContext": {"reference": format!("Patient/{patient}")},
                "subject": {"reference": format!("Patient/{patient}")},
                "status": "current",
                "content": [{"attachment": {}}],
            });
            if !core.admits(&grant, rt, &probe) {
                core.append_audit(vec![
                    core.entry(ctx, "create", Some(rt), Vec::new(), Outcome::Denied)
                        .with_reason("the patient is outside the actor's reach"),
                ])
                .await?;
                return Err(RecordError::Forbidden);
            }
        }
        Ok(())
    }

    /// Stores a document streamed from a client.
    ///
    /// # Errors
    /// [`RecordError::Forbidden`] before reading a byte when the actor may not write
    /// documents for the patient; [`RecordError::UnsupportedMedia`] when the content is not
    /// an accepted type or not what it claims; [`RecordError::TooLarge`];
    /// [`RecordError::BadSignature`]; [`RecordError::Blobs`] when the store fails.
    pub async fn upload_document<S, E>(
        &self,
        ctx: &RequestContext,
        doc: NewDocument,
        body: S,
    ) -> Result<StoredDocument, RecordError>
    where
        S: Stream<Item = Result<Bytes, E>> + Send + Unpin,
        E: std::fmt::Display,
    {
        let core = self.records.core();
        let blobs = self.blobs.clone();
        if doc.patient.is_empty() || doc.patient.contains('/') {
            return Err(RecordError::invalid(
                IssueType::Required,
                "say whose document this is: a Patient id",
            ));
        }
        self.document_grant(ctx, &doc.patient).await?;
        let sealed_for = if doc.sealed_keys.is_empty() {
            Vec::new()
        } else {
            self.check_new_sealed_keys(ctx, &doc.sealed_keys).await?
        };
        let claimed_sealed = doc
            .content_type
            .as_deref()
            .is_some_and(|c| c.starts_with(crate::sniff::SEALED_TYPE));
        if claimed_sealed == sealed_for.is_empty() {
            return Err(RecordError::invalid(
                IssueType::Required,
                "a sealed document (application/vnd.medmesh.sealed) comes with its wrapped keys, and only it does",
            ));
        }
        let staging = format!("staging/{}", core.ids().new_id());
        let mut upload = blobs.upload(&staging).await?;
        let streamed = self.stream_into(&mut *upload, &doc, body).await;
        let (cid, size, content_type, sealed_id) = match streamed {
            Ok(done) => done,
            Err(e) => {
                upload.abort().await;
                return Err(e);
            }
        };
        upload.finish().await?;
        let verified = match self.check_signature(ctx, &doc, &cid).await {
            Ok(v) => v,
            Err(e) => {
                blobs.delete(&staging).await?;
                return Err(e);
            }
        };
        let name = self.blob_name(&doc.patient, &cid);
        let deduplicated = blobs.exists(&name).await?;
        if deduplicated {
            blobs.delete(&staging).await?;
        } else {
            blobs.rename(&staging, &name).await?;
        }
        self.record_document(
            ctx,
            doc,
            Stored {
                cid,
                size,
                content_type,
                deduplicated,
                sealed_id,
            },
            verified,
            sealed_for,
        )
        .await
    }

    /// Streams the body into `upload`, sealed, returning its content id, size and type.
    async fn stream_into<S, E>(
        &self,
        upload: &mut dyn medmesh_store::BlobUpload,
        doc: &NewDocument,
        mut body: S,
    ) -> Result<(ContentId, u64, String, Option<String>), RecordError>
    where
        S: Stream<Item = Result<Bytes, E>> + Send + Unpin,
        E: std::fmt::Display,
    {
        let mut writer = SealedWriter::start(self, upload, &doc.patient).await?;
        let mut hasher = PipelinedHasher::default();
        let mut head: Vec<u8> = Vec::with_capacity(SNIFF_BYTES);
        let mut content_type: Option<String> = None;
        let sniff_now = |head: &[u8]| {
            sniff(head, doc.content_type.as_deref())
                .map_err(|e| RecordError::UnsupportedMedia(e.to_string()))
        };
        while let Some(piece) = body.next().await {
            let piece = piece.map_err(|e| {
                RecordError::invalid(IssueType::Structure, format!("the upload broke off: {e}"))
            })?;
            if hasher.len() + piece.len() as u64 > self.max_document_bytes {
                return Err(too_large(self.max_document_bytes));
            }
            if content_type.is_none() {
                let take = (SNIFF_BYTES - head.len()).min(piece.len());
                head.extend_from_slice(&piece[..take]);
                if head.len() == SNIFF_BYTES {
                    content_type = Some(sniff_now(&head)?);
                }
            }
            writer.write(&piece).await?;
            hasher.update(piece).await?;
        }
        let content_type = match content_type {
            Some(t) => t,
            None if hasher.is_empty() => {
                return Err(RecordError::invalid(
                    IssueType::Required,
                    "the document is empty",
                ));
            }
            None => sniff_now(&head)?,
        };
        writer.finish().await?;
        let size = hasher.len();
        let sealed_id = if content_type == crate::sniff::SEALED_TYPE {
            let id = key_id_of(&head).map_err(|_| {
                RecordError::UnsupportedMedia("the sealed document is cut short".into())
            })?;
            Some(hex::encode(id.0))
        } else {
            None
        };
        Ok((hasher.finish().await?, size, content_type, sealed_id))
    }

    /// Checks an upload's signature against the uploader's registered key; returns the
    /// claims and the signature to keep in the Provenance.
    async fn check_signature(
        &self,
        ctx: &RequestContext,
        doc: &NewDocument,
        cid: &ContentId,
    ) -> Result<Option<VerifiedUpload>, RecordError> {
        let Some(s) = &doc.signature else {
            return Ok(None);
        };
        let bad = |m: &str| RecordError::BadSignature(m.to_string());
        let key = UserPublicKey::from_base64(&s.public_key)
            .map_err(|_| bad("the public key is malformed"))?;
        // The key must be one the author published in the directory, and not revoked.
        let registered = self
            .directory
            .user_key(&crate::directory::key_id("signing", &s.public_key))
            .await?;
        if !registered.is_some_and(|k| k.revoked_micros.is_none() && k.owner == author_of(ctx)) {
            return Err(bad(
                "the signing key is not one of your registered, live signing keys",
            ));
        }
        let signature = UploadSignature::from_base64(&s.signature)
            .map_err(|_| bad("the signature is malformed"))?;
        let claims = UploadClaims {
            sha256: cid.0,
            author: author_of(ctx),
            patient: format!("Patient/{}", doc.patient),
            time: s.time.clone(),
            device: s.device.clone(),
            doc_type: doc.doc_type.clone().unwrap_or_else(|| "unknown".into()),
        };
        key.verify(&claims, &signature).map_err(|_| {
            bad("the signature does not verify for this content, author, patient, time, device and type")
        })?;
        Ok(Some(VerifiedUpload {
            claims,
            signature: s.signature.trim().to_string(),
            public_key: key.to_base64(),
        }))
    }

    async fn record_document(
        &self,
        ctx: &RequestContext,
        doc: NewDocument,
        stored: Stored,
        signed: Option<VerifiedUpload>,
        sealed_for: Vec<(medmesh_store::UserKey, String)>,
    ) -> Result<StoredDocument, RecordError> {
        let core = self.records.core();
        let Stored {
            cid,
            size,
            content_type,
            deduplicated,
            sealed_id,
        } = stored;
        let patient_ref = format!("Patient/{}", doc.patient);
        let now = medmesh_fhir::datetime::format_instant(core.now());
        let title = doc.title.clone().unwrap_or_else(|| "document".into());
        let binary_id = core.ids().new_id();
        let docref_id = core.ids().new_id();
        let mut binary = json!({
            "resourceType": "Binary",
            "meta": {"extension": [
                {"url": EXT_CONTENT_ID, "valueString": cid.to_string()},
                {"url": EXT_SIZE, "valueString": size.to_string()},
                {"url": EXT_TITLE, "valueString": title},
            ]},
            "contentType": content_type,
            "securityContext": {"reference": patient_ref},
        });
        if let (Some(id), Some(ext)) = (&sealed_id, binary["meta"]["extension"].as_array_mut()) {
            ext.push(json!({"url": EXT_SEALED_ID, "valueString": id}));
        }
        let mut attachment = json!({
            "contentType": content_type,
            "url": format!("Binary/{binary_id}"),
            "title": title,
            "creation": now,
        });
        // Attachment.size is an unsignedInt (below 2^31); larger sizes stay on the Binary.
        if let Ok(s) = i32::try_from(size) {
            attachment["size"] = json!(s);
        }
        let (docref_id, docref) = match &doc.attach_to {
            Some(existing) => (
                existing.clone(),
                self.attached(existing, &patient_ref, attachment).await?,
            ),
            None => {
                let mut docref = json!({
                    "resourceType": "DocumentReference",
                    "identifier": [{"system": "urn:ietf:rfc:3986", "value": format!("urn:cid:{cid}")}],
                    "status": "current",
                    "subject": {"reference": patient_ref},
                    "date": now,
                    "description": title,
                    "content": [{"attachment": attachment}],
                });
                if let Some((system, code)) =
                    doc.doc_type.as_deref().and_then(|t| t.split_once('|'))
                {
                    docref["type"] = json!({"coding": [{"system": system, "code": code}]});
                }
                let author = author_of(ctx);
                if author.contains('/') {
                    docref["author"] = json!([{"reference": author}]);
                }
                (docref_id, docref)
            }
        };
        let mut writes = vec![
            ("Binary", binary_id.clone(), binary),
            ("DocumentReference", docref_id.clone(), docref),
        ];
        let provenance_id = signed.as_ref().map(|_| core.ids().new_id());
        if let (
            Some(VerifiedUpload {
                claims,
                signature,
                public_key,
            }),
            Some(pid),
        ) = (&signed, &provenance_id)
        {
            let text = claims
                .signed_bytes()
                .map_err(|e| RecordError::BadSignature(e.to_string()))?;
            writes.push((
                "Provenance",
                pid.clone(),
                json!({
                    "resourceType": "Provenance",
                    "extension": [{"url": EXT_SIGNED_CLAIMS, "valueBase64Binary": STANDARD.encode(text)}],
                    "target": [
                        {"reference": format!("DocumentReference/{docref_id}")},
                        {"reference": format!("Binary/{binary_id}")},
                        {"reference": patient_ref},
                    ],
                    "occurredDateTime": claims.time,
                    "recorded": now,
                    "activity": {"coding": [{"system": "http://terminology.hl7.org/CodeSystem/v3-DataOperation", "code": "CREATE"}]},
                    "agent": [{
                        "type": {"coding": [{"system": "http://terminology.hl7.org/CodeSystem/provenance-participant-type", "code": "author"}]},
                        "who": {"reference": claims.author},
                    }, {
                        "type": {"coding": [{"system": "http://terminology.hl7.org/CodeSystem/provenance-participant-type", "code": "assembler"}]},
                        "who": {"display": claims.device},
                    }],
                    "signature": [{
                        "type": [{"system": "urn:iso-astm:E1762-95:2013", "code": "1.2.840.10065.1.12.1.1", "display": "Author's Signature"}],
                        "when": claims.time,
                        "who": {"reference": claims.author},
                        "targetFormat": "text/plain",
                        "sigFormat": SIG_FORMAT,
                        "data": signature,
                        "extension": [{"url": EXT_SIGNING_KEY, "valueBase64Binary": public_key}],
                    }],
                }),
            ));
        }
        let mut tx = core.begin_write().await?;
        let mut stored_binary = Value::Null;
        for (rt, id, body) in writes {
            // The content attached to an existing DocumentReference is an update of it.
            let head = match tx.head(rt, &id).await? {
                Some(h) if !h.deleted => Some(h),
                _ => None,
            };
            let (action, verb) = match head {
                Some(_) => (Action::Update, "update"),
                None => (Action::Create, "create"),
            };
            let grant = core.authorize(ctx, action, Some(rt)).await?;
            core.check_resource(rt, &body)?;
            let out = core
                .write_version(ctx, &mut tx, &grant, rt, &id, body, head)
                .await?;
            let mut entry = core.entry(ctx, verb, Some(rt), vec![id], Outcome::Success);
            entry.patients = vec![doc.patient.clone()];
            tx.append_audit(&entry).await?;
            if rt == "Binary" {
                stored_binary = out.resource.unwrap_or(Value::Null);
            }
        }
        let me = author_of(ctx);
        for (key, wrapped) in sealed_for {
            tx.put_sealed_key(&medmesh_store::SealedKey {
                document_id: binary_id.clone(),
                recipient_key_id: key.key_id,
                recipient: key.owner,
                wrapped,
                added_by: me.clone(),
                added_micros: core.now(),
            })
            .await?;
        }
        tx.commit().await?;
        Ok(StoredDocument {
            binary: stored_binary,
            document_reference_id: docref_id,
            provenance_id,
            content_id: cid,
            size,
            content_type,
            deduplicated,
        })
    }

    /// An existing DocumentReference of the patient with `attachment` as its content (any
    /// content inline before is replaced by the vault's).
    async fn attached(
        &self,
        id: &str,
        patient_ref: &str,
        attachment: Value,
    ) -> Result<Value, RecordError> {
        let core = self.records.core();
        let current = match self.resources.read("DocumentReference", id).await? {
            Some(v) if !v.deleted => core.decode(&v).await?,
            _ => return Err(RecordError::NotFound),
        };
        if current["subject"]["reference"].as_str() != Some(patient_ref) {
            return Err(RecordError::invalid(
                IssueType::Value,
                "the document to attach the content to is another patient's",
            ));
        }
        let mut body = current;
        let mut attachment = attachment;
        // Keep what the DocumentReference said of its content, but for where it is.
        if let Some(old) = body["content"][0]["attachment"].as_object() {
            for key in ["language", "title", "creation"] {
                if let Some(v) = old.get(key) {
                    attachment[key] = v.clone();
                }
            }
        }
        body["content"] = json!([{"attachment": attachment}]);
        Ok(body)
    }

    /// Opens a document for download: a PDP-checked read of its Binary, audited together
    /// with a notification to the patient.
    ///
    /// # Errors
    /// [`RecordError::NotFound`] when it does not exist or the actor may not see it.
    pub async fn open_document(
        &self,
        ctx: &RequestContext,
        binary_id: &str,
    ) -> Result<Download, RecordError> {
        let core = self.records.core();
        let (grant, binary) = self
            .visible_binary(ctx, binary_id, "read", |_| true)
            .await?;
        let mut entry = core.entry(
            ctx,
            "read",
            Some("Binary"),
            vec![binary_id.to_string()],
            Outcome::Success,
        );
        core.annotate(&mut entry, &grant);
        let practitioner = ctx.actor().clinician().map(|c| c.practitioner.clone());
        self.audited_open(
            entry,
            binary,
            practitioner,
            ctx.actor().patient().map(str::to_string),
        )
        .await
    }

    /// Opens a document through a download link (the PDP judged the link's maker when it
    /// was made; it is short-lived).
    ///
    /// # Errors
    /// [`RecordError::NotFound`] when the document is gone.
    pub async fn open_linked_document(
        &self,
        link: &LinkGrant,
        operation_id: &medmesh_kernel::OperationId,
    ) -> Result<Download, RecordError> {
        let core = self.records.core();
        let found = self.resources.read("Binary", &link.binary_id).await?;
        let Some(v) = found.filter(|v| !v.deleted) else {
            return Err(RecordError::NotFound);
        };
        let binary = core.decode(&v).await?;
        let mut entry = AuditEntry::new(
            core.now(),
            operation_id.as_str(),
            &link.subject,
            "read",
            Outcome::Success,
        );
        entry.resource_type = Some("Binary".into());
        entry.resource_ids = vec![format!("Binary/{}", link.binary_id)];
        entry.basis = vec!["download-link".into()];
        self.audited_open(
            entry,
            binary,
            link.practitioner.clone(),
            link.patient.clone(),
        )
        .await
    }

    /// Checks that `ctx` may read the Binary (for a download link), auditing the refusal.
    ///
    /// # Errors
    /// [`RecordError::NotFound`] as for a read.
    pub async fn link_grant(
        &self,
        ctx: &RequestContext,
        binary_id: &str,
    ) -> Result<LinkGrant, RecordError> {
        self.visible_binary(ctx, binary_id, "link", |_| true)
            .await?;
        Ok(LinkGrant {
            binary_id: binary_id.to_string(),
            subject: ctx.actor().subject().to_string(),
            practitioner: ctx.actor().clinician().map(|c| c.practitioner.clone()),
            patient: ctx.actor().patient().map(str::to_string),
        })
    }

    /// A Binary the actor may read and `wanted` accepts, with the grant it was read under.
    /// Anything else (absent, deleted, out of reach, not wanted) goes through the ordinary
    /// read path, which audits it as `action`, and answers 404.
    pub(crate) async fn visible_binary(
        &self,
        ctx: &RequestContext,
        binary_id: &str,
        action: &str,
        wanted: impl Fn(&Value) -> bool,
    ) -> Result<(medmesh_policy::Grant, Value), RecordError> {
        let core = self.records.core();
        let grant = core.authorize(ctx, Action::Read, Some("Binary")).await?;
        let found = self.resources.read("Binary", binary_id).await?;
        let visible = match &found {
            Some(v) if !v.deleted => {
                let resource = core.decode(v).await?;
                (core.admits(&grant, "Binary", &resource) && wanted(&resource)).then_some(resource)
            }
            _ => None,
        };
        match visible {
            Some(binary) => Ok((grant, binary)),
            None => {
                core.audited_read(ctx, &grant, action, "Binary", binary_id, found)
                    .await?;
                Err(RecordError::NotFound)
            }
        }
    }

    /// Writes the open's audit entry and the patient's notification in one transaction,
    /// then starts the download.
    async fn audited_open(
        &self,
        mut entry: AuditEntry,
        binary: Value,
        practitioner: Option<String>,
        actor_patient: Option<String>,
    ) -> Result<Download, RecordError> {
        let core = self.records.core();
        // A Binary written as FHIR JSON holds its bytes inline in `data`: served decoded, as
        // FHIR's Binary read asks, and audited the same way.
        let (cid, size, content_type, inline) = match (
            blob_facts(&binary),
            binary.get("data").and_then(Value::as_str),
        ) {
            (Ok((cid, size, ct)), _) => (cid, size, ct, None),
            (Err(_), Some(data)) => {
                let bytes = decode_base64_binary(data)?;
                let size = bytes.len() as u64;
                (
                    ContentId::of(&bytes),
                    size,
                    content_type_of(&binary),
                    Some(bytes),
                )
            }
            (Err(e), None) => return Err(e),
        };
        let patient = patient_of(&binary);
        entry.patients = patient.iter().cloned().collect();
        let title = meta_string(&binary, EXT_TITLE)
            .unwrap_or("a document")
            .to_string();
        let who = match &practitioner {
            Some(p) => self.display_name(p).await,
            None => None,
        };
        let mut tx = core.begin_write().await?;
        tx.append_audit(&entry).await?;
        let mut told = None;
        // The patient's own opens are in their audit log; they need no notification. A
        // Binary outside every patient's compartment notifies nobody.
        if let Some(patient) = patient.as_deref()
            && actor_patient.as_deref() != Some(patient)
        {
            let id = core.ids().new_id();
            told = Some((patient.to_string(), id.clone()));
            let message = format!(
                "{} opened your document \u{201c}{title}\u{201d}",
                who.as_deref()
                    .unwrap_or("Someone with access to your record")
            );
            let message = core
                .seal_text(&mut tx, patient, &format!("notification/{id}"), message)
                .await?;
            tx.notify(&Notification {
                id,
                patient_id: patient.to_string(),
                kind: "document-opened".into(),
                message,
                created_micros: entry.time_micros,
                read_micros: None,
            })
            .await?;
        }
        tx.commit().await?;
        if let (Some(hub), Some((patient, id))) = (&self.hub, told) {
            use medmesh_notifications::{Category, Recipient};
            let notice = hub.notice(Category::Documents, format!("document-opened/{id}"));
            // Opened and audited either way; a failure to queue the e-mail is logged.
            if let Err(e) = hub
                .notify_beyond_inbox(&Recipient::Patient(patient), &notice)
                .await
            {
                tracing::error!(error = %e, "a document's opening could not be e-mailed");
            }
        }
        let body = match (inline, patient) {
            (Some(bytes), _) => {
                futures::stream::once(async move { Ok(Bytes::from(bytes)) }).boxed()
            }
            (None, Some(patient)) => self.stream_blob(&patient, cid).await?,
            (None, None) => return Err(RecordError::Corrupt),
        };
        Ok(Download {
            content_type,
            size,
            content_id: cid,
            body,
        })
    }

    /// Seals a Binary's blob again under its patient's active data key, if another key sealed
    /// it (`keys reencrypt`). Returns whether it did. Binaries sharing one blob re-seal it
    /// once: the second finds it under the active key already. The new blob is written
    /// under `staging/` and renamed over the old one only once complete and digest-checked.
    ///
    /// # Errors
    /// When the blob store or the keys fail; a missing blob is logged and skipped.
    ///
    /// Key administration calls it; the PDP's [`KeyAdmin`] is the permission:
    ///
    /// ```compile_fail
    /// # async fn f(vault: &medmesh_vault::DocumentVault, binary: &serde_json::Value) {
    /// vault.reseal_blob(binary).await;
    /// # }
    /// ```
    pub async fn reseal_blob(
        &self,
        _admin: &KeyAdmin,
        binary: &Value,
    ) -> Result<bool, RecordError> {
        let core = self.records.core();
        let (blobs, Some(a)) = (&self.blobs, core.at_rest()) else {
            return Ok(false);
        };
        let (Ok((cid, _, _)), Some(owner)) = (blob_facts(binary), patient_of(binary)) else {
            return Ok(false); // an ordinary Binary, its data inline
        };
        let name = self.blob_name(&owner, &cid);
        let mut head = Vec::with_capacity(HEADER);
        let mut source = match blobs.read(&name).await {
            Ok(s) => s,
            Err(medmesh_store::BlobError::NotFound) => {
                tracing::warn!("a Binary's blob is missing; nothing to re-seal");
                return Ok(false);
            }
            Err(e) => return Err(e.into()),
        };
        while head.len() < HEADER {
            match source.next().await {
                Some(piece) => head.extend_from_slice(&piece?),
                None => break,
            }
        }
        drop(source);
        let (active, _) = a.owner_key(&owner).await?;
        if key_id_of(&head).map_err(|_| RecordError::Corrupt)? == active {
            return Ok(false);
        }
        let mut plain = self.stream_blob(&owner, cid).await?;
        let staging = format!("staging/{}", core.ids().new_id());
        let mut upload = blobs.upload(&staging).await?;
        let copied = async {
            let mut writer = SealedWriter::start(self, &mut *upload, &owner).await?;
            while let Some(piece) = plain.next().await {
                writer.write(&piece?).await?;
            }
            writer.finish().await
        }
        .await;
        if let Err(e) = copied {
            upload.abort().await;
            return Err(e);
        }
        upload.finish().await?;
        blobs.rename(&staging, &name).await?;
        Ok(true)
    }

    /// A practitioner's name for a notification (`Dr Jane Smith`), if it can be read.
    async fn display_name(&self, reference: &str) -> Option<String> {
        let core = self.records.core();
        let (rt, id) = reference.split_once('/')?;
        let v = self.resources.read(rt, id).await.ok()??;
        let r = core.decode(&v).await.ok()?;
        let name = r.get("name")?.as_array()?.first()?;
        if let Some(text) = name.get("text").and_then(Value::as_str) {
            return Some(text.to_string());
        }
        let part = |k: &str| -> Vec<String> {
            name.get(k)
                .and_then(Value::as_array)
                .map(|a| {
                    a.iter()
                        .filter_map(|v| v.as_str().map(str::to_string))
                        .collect()
                })
                .unwrap_or_default()
        };
        let mut words = part("prefix");
        words.extend(part("given"));
        words.extend(
            name.get("family")
                .and_then(Value::as_str)
                .map(str::to_string),
        );
        (!words.is_empty()).then(|| words.join(" "))
    }

    /// Streams and opens a patient's blob, checking its digest before the last chunk leaves.
    async fn stream_blob(
        &self,
        owner: &str,
        cid: ContentId,
    ) -> Result<BoxStream<'static, Result<Bytes, RecordError>>, RecordError> {
        let core = self.records.core();
        let name = self.blob_name(owner, &cid);
        let mut source = self.blobs.read(&name).await?;
        let at_rest = core.at_rest().cloned();
        let context = blob_context(owner);
        let (tx, mut rx) = tokio::sync::mpsc::channel::<Result<Bytes, RecordError>>(DOWNLOAD_QUEUE);
        tokio::spawn(async move {
            let result = pump_blob(&mut source, at_rest, &context, cid, &tx).await;
            if let Err(e) = result {
                tracing::error!(error = %e, "a document download failed part-way");
                let _ = tx.send(Err(e)).await;
            }
        });
        // The first piece is awaited before the answer starts. A small document is one
        // piece, held back until its digest matches, so a document that fails its check
        // becomes a clear error instead of an answer whose body breaks off before its
        // headers were sent. A large one that fails later still breaks off part-way.
        let first = match rx.recv().await {
            Some(Err(e)) => return Err(e),
            first => first,
        };
        let rest = futures::stream::unfold(rx, |mut rx| async move {
            rx.recv().await.map(|item| (item, rx))
        });
        Ok(futures::stream::iter(first).chain(rest).boxed())
    }
}

/// Reads a blob, opens it chunk by chunk and sends the plaintext on, holding back the last
/// piece until the whole content's digest matches `cid`.
async fn pump_blob(
    source: &mut medmesh_store::BlobStream,
    at_rest: Option<Arc<medmesh_at_rest::AtRest>>,
    context: &str,
    cid: ContentId,
    tx: &tokio::sync::mpsc::Sender<Result<Bytes, RecordError>>,
) -> Result<(), RecordError> {
    let mut header: Vec<u8> = Vec::new();
    let mut opener: Option<StreamOpener> = None;
    let mut hasher = PipelinedHasher::default();
    let mut held: Option<Bytes> = None;
    let mut out = Vec::new();
    while let Some(piece) = source.next().await {
        let mut piece = piece?;
        if let Some(a) = &at_rest
            && opener.is_none()
        {
            let take = (HEADER - header.len()).min(piece.len());
            header.extend_from_slice(&piece[..take]);
            piece = piece.slice(take..);
            if header.len() < HEADER {
                continue;
            }
            let id = key_id_of(&header).map_err(|_| RecordError::Corrupt)?;
            let key = a.key_by_id(id).await?;
            opener = Some(
                StreamOpener::start(&key, &header, context.as_bytes())
                    .map_err(|_| RecordError::Corrupt)?,
            );
        }
        // Room for the whole piece opened, plus the one frame the opener writes before it
        // drops its tag, so the buffer never grows (a copy of a megabyte) mid-piece.
        out.reserve(piece.len() + FRAME);
        match &mut opener {
            Some(o) => o.push(&piece, &mut out).map_err(|_| RecordError::Corrupt)?,
            None => out.extend_from_slice(&piece),
        }
        if out.is_empty() {
            continue;
        }
        let plain = Bytes::from(std::mem::take(&mut out));
        hasher.update(plain.clone()).await?;
        if let Some(prev) = held.replace(plain)
            && tx.send(Ok(prev)).await.is_err()
        {
            return Ok(()); // the client went away
        }
    }
    match opener {
        Some(o) => o.finish(&mut out).map_err(|_| RecordError::Corrupt)?,
        None if at_rest.is_some() => return Err(RecordError::Corrupt),
        None => {}
    }
    let out = Bytes::from(out);
    hasher.update(out.clone()).await?;
    if hasher.finish().await? != cid {
        return Err(RecordError::Blobs(BlobError::DigestMismatch));
    }
    for last in [held, Some(out)].into_iter().flatten() {
        if !last.is_empty() && tx.send(Ok(last)).await.is_err() {
            return Ok(());
        }
    }
    Ok(())
}
