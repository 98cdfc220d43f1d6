//! A sender's profile: what its messages mean where they differ from others'.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

/// A code this sender uses, and what it means.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CodeTranslation {
    /// The coding system name as sent (CWE-3), e.g. `L` or `99LAB`.
    pub from_system: String,
    /// The code as sent (CWE-1).
    pub from_code: String,
    /// The FHIR system it translates to, e.g. `http://loinc.org`.
    pub to_system: String,
    /// The code there.
    pub to_code: String,
    /// Its display, when given.
    #[serde(default)]
    pub display: Option<String>,
}

/// What varies between senders. Every field has a default that suits a sender following
/// the standard; a profile is read from the node's configuration (TOML).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Profile {
    /// The base of identifier systems for assigning authorities this node makes up
    /// (`<base>/id/<authority>`, `<base>/filler/<authority>`), shared by every sender: an
    /// authority such as a hospital's MRN namespace is the same whichever of its systems
    /// sends. Default `urn:medmesh:hl7v2`.
    pub authority_base: String,
    /// The base of systems this node makes up for what is the sender's own: local codes
    /// (`<base>/codes/<system>`) and identifiers sent without an assigning authority
    /// (`<base>/id/unspecified`). Default: `urn:medmesh:hl7v2:<sender name>`.
    pub system_base: String,
    /// Assigning authority (CX-4's namespace id) to identifier system URI.
    pub identifier_systems: BTreeMap<String, String>,
    /// Coding system name (CWE-3) to FHIR system URI, on top of the standard ones (LN,
    /// SCT, I10, UCUM, HL7nnnn ...).
    pub code_systems: BTreeMap<String, String>,
    /// Local codes translated to standard ones: the standard coding is added beside the
    /// sender's own.
    pub translations: Vec<CodeTranslation>,
    /// The identifier types (CX-5) the patient is matched on, in order of preference.
    /// Default: `MR`, then `PI`, then the first identifier sent.
    pub patient_identifier_types: Vec<String>,
    /// The UTC offset of timestamps sent without one, as `+HH:MM`. Default `+00:00`.
    pub timezone: String,
    /// Whether units without a coding system (OBX-6.3 empty) are UCUM codes. Default true:
    /// most laboratories send UCUM spellings such as `mg/dL` without naming the system.
    pub units_are_ucum: bool,
    /// Whether a merge (A40) moves every reference to the prior patient onto the survivor.
    /// Default true, which lets the sender read and update every type in a merged
    /// patient's record (through the PDP, audited); false: a merge only links the two.
    pub merge_moves_references: bool,
}

impl Default for Profile {
    fn default() -> Self {
        Self {
            authority_base: "urn:medmesh:hl7v2".into(),
            system_base: "urn:medmesh:hl7v2:sender".into(),
            identifier_systems: BTreeMap::new(),
            code_systems: BTreeMap::new(),
            translations: Vec::new(),
            patient_identifier_types: vec!["MR".into(), "PI".into()],
            timezone: "+00:00".into(),
            units_are_ucum: true,
            merge_moves_references: true,
        }
    }
}

impl Profile {
    /// The default profile for a sender of this name.
    pub fn for_sender(name: &str) -> Self {
        Self {
            system_base: format!("urn:medmesh:hl7v2:{}", slug(name)),
            ..Self::default()
        }
    }

    /// Fills what a configured profile left empty from the sender's name.
    pub fn completed_for(mut self, name: &str) -> Self {
        if self.system_base.is_empty() || self.system_base == Profile::default().system_base {
            self.system_base = format!("urn:medmesh:hl7v2:{}", slug(name));
        }
        self
    }

    /// Checks a profile read from configuration.
    ///
    /// # Errors
    /// A message naming the setting that is wrong.
    pub fn validate(&self) -> Result<(), String> {
        if !self.system_base.contains(':') {
            return Err("system_base must be a URI".into());
        }
        if !self.authority_base.contains(':') {
            return Err("authority_base must be a URI".into());
        }
        let tz = self.timezone.as_bytes();
        let tz_ok = tz.len() == 6
            && matches!(tz[0], b'+' | b'-')
            && tz[1..3].iter().all(u8::is_ascii_digit)
            && tz[3] == b':'
            && tz[4..6].iter().all(u8::is_ascii_digit);
        if !tz_ok {
            return Err("timezone must be +HH:MM or -HH:MM".into());
        }
        for (k, v) in self
            .identifier_systems
            .iter()
            .chain(self.code_systems.iter())
        {
            if !v.contains(':') {
                return Err(format!("the system for '{k}' must be a URI"));
            }
        }
        Ok(())
    }
}

/// Letters, digits and `-` only: a sender's name in a URN.
pub(crate) fn slug(s: &str) -> String {
    let out: String = s
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '.' {
                c
            } else {
                '-'
            }
        })
        .collect();
    if out.is_empty() {
        "unnamed".into()
    } else {
        out
    }
}
