//! HL7 v2 to FHIR R4, after the HL7 v2-to-FHIR mapping guide: one message becomes one FHIR
//! transaction Bundle, which the interface engine hands to the record service, so consent
//! labels, encryption and the audit log apply as to any other write.
//!
//! Every resource is written by a conditional request on an identifier, so a message sent
//! again, an update (A08) or a corrected result (OBX-11 `C`) changes the resource it wrote
//! before instead of adding another:
//! - the patient by PID-3 (an ADT writes demographics; a result only creates the patient
//!   when none matches, so a lab's sparse PID never overwrites the registration's);
//! - the encounter by PV1-19, the report by its filler order number (OBR-3, else OBR-2),
//!   an observation by the report's order number and OBX-3/OBX-4; next of kin and allergies
//!   by the patient's identifier and their set id or allergen.
//!
//! What varies per sender (identifier systems, code systems, code translations, the time
//! zone of timestamps without one) is a [`Profile`].

mod adt;
pub mod datatypes;
mod medication;
mod orders;
mod oru;
pub mod outbound;
mod profile;

pub use profile::{CodeTranslation, Profile};

use medmesh_hl7v2::{AckError, Message};
use serde_json::{Value, json};

/// Why a message could not be mapped: HL7 table 0357's code, where, and what (never a
/// value from the message). It becomes the ERR segment of an AE, and the dead letter's
/// reason.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{}", self.describe())]
pub struct MappingError {
    /// Segment name, when one is at fault.
    pub segment: Option<String>,
    /// Its occurrence, from 1.
    pub sequence: usize,
    /// The field.
    pub field: Option<usize>,
    /// Table 0357 code.
    pub code: u16,
    /// What was wrong.
    pub message: String,
}

impl MappingError {
    /// An error at a segment's field.
    pub fn at(
        segment: &str,
        sequence: usize,
        field: usize,
        code: u16,
        message: impl Into<String>,
    ) -> Self {
        Self {
            segment: Some(segment.to_string()),
            sequence,
            field: Some(field),
            code,
            message: message.into(),
        }
    }

    /// A message this node has no mapping for.
    pub fn unsupported(kind: &str) -> Self {
        Self {
            segment: Some("MSH".into()),
            sequence: 1,
            field: Some(9),
            code: 200,
            message: format!("no mapping for {kind} on this node"),
        }
    }

    fn describe(&self) -> String {
        match (&self.segment, self.field) {
            (Some(s), Some(f)) => format!("{s}-{f}: {}", self.message),
            _ => self.message.clone(),
        }
    }

    /// The ERR segment's content.
    pub fn to_ack_error(&self) -> AckError {
        let e = AckError::new(self.code, self.describe());
        match &self.segment {
            Some(s) => e.at(s, self.sequence, self.field),
            None => e,
        }
    }
}

/// What a message maps to.
#[derive(Debug, Clone, PartialEq)]
pub struct Mapped {
    /// A FHIR transaction Bundle.
    pub bundle: Value,
    /// The patient's identifier (`system|value`) the message is about: messages with the
    /// same key are applied in the order they arrived.
    pub patient_key: Option<String>,
    /// Whether it carries a final (or corrected) result, which the patient is told of.
    pub final_result: bool,
    /// A merge (A40): the bundle entries of the prior patient and the survivor, whose
    /// references the engine moves from the one to the other once they are written.
    pub merge: Option<(usize, usize)>,
    /// The documents a message carries (an encapsulated report, a transcribed document):
    /// the bundle entry of each one's DocumentReference, written with its attachment's
    /// type and title but not its bytes, and the whole attachment (with `data`), which the
    /// engine then keeps in the document vault (or inline, where the vault will not).
    pub documents: Vec<(usize, Value)>,
}

impl Mapped {
    /// What a message about this patient maps to, the bundle filled in by [`map`].
    pub(crate) fn about(patient: &Identifier) -> Self {
        Self {
            bundle: Value::Null,
            patient_key: Some(patient.key()),
            final_result: false,
            merge: None,
            documents: Vec::new(),
        }
    }
}

/// A timestamp error at a segment's field (HL7 code 102).
pub(crate) fn bad_time(
    segment: &'static str,
    seq: usize,
    field: usize,
) -> impl Fn(&'static str) -> MappingError {
    move |why| MappingError::at(segment, seq, field, 102, why)
}

/// An attachment without its bytes, for the resource, and the whole one, for the vault.
pub(crate) fn set_aside(attachment: Value) -> (Value, Value) {
    let mut without = attachment.clone();
    if let Some(o) = without.as_object_mut() {
        o.remove("data");
    }
    (without, attachment)
}

/// The message kinds this node maps, as `CODE^TRIGGER`.
pub const SUPPORTED: &[&str] = &[
    "ADT^A01", "ADT^A02", "ADT^A03", "ADT^A04", "ADT^A05", "ADT^A06", "ADT^A07", "ADT^A08",
    "ADT^A11", "ADT^A12", "ADT^A13", "ADT^A28", "ADT^A31", "ADT^A40", "ORU^R01", "ORM^O01",
    "OML^O21", "SIU^S12", "SIU^S13", "SIU^S14", "SIU^S15", "SIU^S17", "SIU^S26", "MDM^T02",
    "MDM^T04", "MDM^T06", "MDM^T08", "MDM^T10", "RDE^O11", "RDS^O13", "VXU^V04",
];

/// The resource types a mapping writes (a sender's actor may write these and no others).
pub const WRITTEN_TYPES: &[&str] = &[
    "Patient",
    "Encounter",
    "RelatedPerson",
    "AllergyIntolerance",
    "Observation",
    "DiagnosticReport",
    "Specimen",
    "DocumentReference",
    "ServiceRequest",
    "Appointment",
    "MedicationRequest",
    "MedicationDispense",
    "Immunization",
];

/// Maps one message.
///
/// # Errors
/// [`MappingError`] for a kind this node does not map (code 200), a required field that is
/// missing (101) or a value of the wrong type (102).
pub fn map(message: &Message, profile: &Profile) -> Result<Mapped, MappingError> {
    let (code, trigger, _) = message.message_type();
    let kind = format!("{code}^{trigger}");
    let mut b = BundleBuilder::default();
    let mapped = match kind.as_str() {
        "ORU^R01" => oru::map_oru(message, profile, &mut b)?,
        "ORM^O01" | "OML^O21" => orders::map_order(message, profile, &mut b)?,
        k if k.starts_with("SIU^") && SUPPORTED.contains(&k) => {
            orders::map_schedule(message, profile, &trigger, &mut b)?
        }
        k if k.starts_with("MDM^") && SUPPORTED.contains(&k) => {
            orders::map_document(message, profile, &mut b)?
        }
        "RDE^O11" => medication::map_rde(message, profile, &mut b)?,
        "RDS^O13" => medication::map_rds(message, profile, &mut b)?,
        "VXU^V04" => medication::map_vxu(message, profile, &mut b)?,
        k if k.starts_with("ADT^") && SUPPORTED.contains(&k) => {
            adt::map_adt(message, profile, &trigger, &mut b)?
        }
        _ => return Err(MappingError::unsupported(&kind)),
    };
    Ok(Mapped {
        bundle: b.finish(),
        ..mapped
    })
}

/// Collects a transaction's entries; each gets a `urn:uuid:` full URL other entries refer to.
#[derive(Debug, Default)]
pub(crate) struct BundleBuilder {
    entries: Vec<Value>,
}

impl BundleBuilder {
    fn next_url(&self) -> String {
        self.url_ahead(0)
    }

    /// The full URL the entry `n` places after the next one will have.
    pub(crate) fn url_ahead(&self, n: usize) -> String {
        // Full URLs count from 1: entry `i` is `..{i + 1}`.
        format!(
            "urn:uuid:00000000-0000-4000-8000-{:012x}",
            self.entries.len() + 1 + n
        )
    }

    /// How many entries there are so far (the index the next one gets).
    pub(crate) fn len(&self) -> usize {
        self.entries.len()
    }

    /// A conditional update: `PUT Type?identifier=system|value`.
    pub(crate) fn put(&mut self, rt: &str, identifier: &Identifier, resource: Value) -> String {
        let url = self.next_url();
        self.entries.push(json!({
            "fullUrl": url,
            "resource": resource,
            "request": {"method": "PUT", "url": format!("{rt}?identifier={}", identifier.query())},
        }));
        url
    }

    /// A conditional create: `POST Type` if none matches the identifier.
    pub(crate) fn create_if_none(
        &mut self,
        rt: &str,
        identifier: &Identifier,
        resource: Value,
    ) -> String {
        let url = self.next_url();
        self.entries.push(json!({
            "fullUrl": url,
            "resource": resource,
            "request": {"method": "POST", "url": rt, "ifNoneExist": format!("identifier={}", identifier.query())},
        }));
        url
    }

    fn finish(self) -> Value {
        json!({"resourceType": "Bundle", "type": "transaction", "entry": self.entries})
    }
}

/// An identifier a resource is matched on.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Identifier {
    /// Its system URI.
    pub system: String,
    /// Its value.
    pub value: String,
}

impl Identifier {
    /// `system|value`, escaped for a search parameter's value.
    pub fn query(&self) -> String {
        let esc = |s: &str| {
            s.replace('\\', "\\\\")
                .replace('|', "\\|")
                .replace(',', "\\,")
                .replace('$', "\\$")
        };
        let raw = format!("{}|{}", esc(&self.system), esc(&self.value));
        // Percent-encode what a query string cannot hold as is.
        let mut out = String::with_capacity(raw.len());
        for b in raw.bytes() {
            match b {
                b'A'..=b'Z'
                | b'a'..=b'z'
                | b'0'..=b'9'
                | b'-'
                | b'.'
                | b'_'
                | b'~'
                | b'|'
                | b':'
                | b'/'
                | b'\\' => out.push(b as char),
                _ => out.push_str(&format!("%{b:02X}")),
            }
        }
        out
    }

    /// As a FHIR Identifier.
    pub fn to_fhir(&self) -> Value {
        json!({"system": self.system, "value": self.value})
    }

    /// `system|value`, the ordering key of a patient.
    pub fn key(&self) -> String {
        format!("{}|{}", self.system, self.value)
    }
}
