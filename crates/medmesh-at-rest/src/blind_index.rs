//! Which search parameters are blinded, and how index rows and queries are turned into
//! blind-index tokens. Pure: the key comes in, no I/O.
//!
//! Blinded (see `docs/encryption.md` for what still leaks):
//! - on Patient, RelatedPerson and Person: `name`, `given`, `family`, `phonetic`, `address`,
//!   `address-city`, `address-state`, `address-postalcode`, `address-country` (prefix and
//!   `:exact`), `telecom`, `phone`, `email` (exact), and `birthdate` (a year, a month or a
//!   day, exactly);
//! - on every type: `identifier` (exact, any or a given system), and the identifier of a
//!   logical reference (`subject:identifier=`);
//! - every string parameter of a type in the patient compartment (free text such as
//!   `DocumentReference.description` or `Observation.value-string`), prefix and `:exact`.
//!
//! Systems (`http://hl7.org/fhir/sid/us-ssn`) stay in clear, so `identifier=system|` works.

use std::collections::HashMap;

use medmesh_crypto::BlindIndexKey;
use medmesh_crypto::blind::Blinder;
use medmesh_fhir::datetime::CalendarSpan;
use medmesh_fhir::definitions::SearchParamType;
use medmesh_fhir::index::{IndexRow, IndexValue};
use medmesh_fhir::search::{
    Criterion, Prefix, SearchError, SearchQuery, StringMatch, ValuePredicate,
};

/// Shortest prefix stored: one- and two-letter prefixes would sort people into a few dozen
/// buckets by their initials.
pub const MIN_PREFIX: usize = 3;
/// Longest prefix stored; longer queries are looked up by their first this many characters.
pub const MAX_PREFIX: usize = 32;

const PERSON_TYPES: [&str; 3] = ["Patient", "RelatedPerson", "Person"];
const PERSON_STRINGS: [&str; 9] = [
    "name",
    "given",
    "family",
    "phonetic",
    "address",
    "address-city",
    "address-state",
    "address-postalcode",
    "address-country",
];
const PERSON_TOKENS: [&str; 3] = ["telecom", "phone", "email"];
const BIRTHDATE: &str = "birthdate";
const REFERENCE_IDENTIFIER: &str = "reference:identifier";

/// How a parameter is blinded.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Blinding {
    /// Prefix tokens, plus an exact token.
    String,
    /// The code becomes an exact token.
    Token,
    /// A token per calendar precision.
    Date,
}

/// Whether a parameter is free text on a resource that holds a patient's data: every string
/// parameter of a type in the patient compartment (`DocumentReference.description`,
/// `Observation.value-string`...). Such text can say anything about the patient ("MRI report
/// Tamatha Witting", "Patient is homeless"), so it is never kept in clear.
fn is_patient_free_text(resource_type: &str, code: &str) -> bool {
    let Ok(defs) = medmesh_fhir::definitions() else {
        return false;
    };
    if !defs.patient_compartment().contains_key(resource_type) {
        return false;
    }
    // A composite's string component (`code-value-string#1`) holds the same free text.
    match code.split_once('#') {
        Some((composite, i)) => defs
            .search_param(resource_type, composite)
            .and_then(|d| d.components.get(i.parse::<usize>().ok()?))
            .is_some_and(|c| c.kind == SearchParamType::String),
        None => defs
            .search_param(resource_type, code)
            .is_some_and(|d| d.kind == SearchParamType::String),
    }
}

fn blinding(resource_type: &str, code: &str) -> Option<Blinding> {
    if code == "identifier" {
        return Some(Blinding::Token);
    }
    if !PERSON_TYPES.contains(&resource_type) {
        return is_patient_free_text(resource_type, code).then_some(Blinding::String);
    }
    if PERSON_STRINGS.contains(&code) {
        Some(Blinding::String)
    } else if PERSON_TOKENS.contains(&code) {
        Some(Blinding::Token)
    } else if code == BIRTHDATE {
        Some(Blinding::Date)
    } else {
        None
    }
}

/// Whether a parameter of a type is stored blinded.
pub fn is_blinded(resource_type: &str, code: &str) -> bool {
    blinding(resource_type, code).is_some()
}

/// Turns index rows and queries into blind-index tokens under the node's key.
pub struct BlindIndex {
    key: BlindIndexKey,
    blinders: std::sync::Mutex<HashMap<String, Blinder>>,
}

impl std::fmt::Debug for BlindIndex {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("BlindIndex(<redacted>)")
    }
}

fn refused(param: &str, reason: &str) -> SearchError {
    SearchError::InvalidValue {
        param: param.to_string(),
        reason: reason.to_string(),
    }
}

impl BlindIndex {
    /// A blind index under `key`.
    pub fn new(key: BlindIndexKey) -> Self {
        Self {
            key,
            blinders: std::sync::Mutex::new(HashMap::new()),
        }
    }

    fn blinder(&self, domain: &str) -> Blinder {
        let mut map = self
            .blinders
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        map.entry(domain.to_string())
            .or_insert_with(|| self.key.domain(domain))
            .clone()
    }

    /// A keyed tag of `value` in `domain` (`blob-owner`, `blob`): names that reveal nothing
    /// to whoever can list the blob store, not even which documents are equal across
    /// patients.
    pub fn tag(&self, domain: &str, value: &str) -> String {
        self.blinder(&format!("@{domain}")).exact(value)
    }

    /// Blinds the index rows of a resource of type `rt`.
    pub fn blind_rows(&self, rt: &str, rows: Vec<IndexRow>) -> Vec<IndexRow> {
        let mut out = Vec::with_capacity(rows.len());
        for row in rows {
            match (blinding(rt, &row.param), row.value) {
                (Some(Blinding::String), IndexValue::String { norm, exact }) => {
                    let b = self.blinder(&row.param);
                    let exact = b.exact(&exact);
                    for token in b.prefixes(&norm, MIN_PREFIX, MAX_PREFIX) {
                        out.push(IndexRow {
                            param: row.param.clone(),
                            group: row.group,
                            value: IndexValue::String {
                                norm: token,
                                exact: exact.clone(),
                            },
                        });
                    }
                }
                (Some(Blinding::Token), IndexValue::Token { system, code, .. }) => {
                    let b = self.blinder(&row.param);
                    out.push(IndexRow {
                        param: row.param,
                        group: row.group,
                        value: IndexValue::Token {
                            system,
                            code: code.map(|c| b.exact(&c)),
                            text: None,
                        },
                    });
                }
                (Some(Blinding::Date), IndexValue::Date { lo, hi }) => {
                    let b = self.blinder(&row.param);
                    // A birth date is a year, a month or a day; anything else is not indexed.
                    for span in CalendarSpan::of_range(lo, hi)
                        .map(CalendarSpan::with_coarser)
                        .unwrap_or_default()
                    {
                        out.push(IndexRow {
                            param: row.param.clone(),
                            group: row.group,
                            value: IndexValue::Token {
                                system: None,
                                code: Some(b.exact(&span.to_string())),
                                text: None,
                            },
                        });
                    }
                }
                (
                    _,
                    IndexValue::Reference {
                        target_type,
                        target_id,
                        url,
                        identifier_system,
                        identifier_value: Some(v),
                    },
                ) => out.push(IndexRow {
                    param: row.param,
                    group: row.group,
                    value: IndexValue::Reference {
                        target_type,
                        target_id,
                        url,
                        identifier_system,
                        identifier_value: Some(self.blinder(REFERENCE_IDENTIFIER).exact(&v)),
                    },
                }),
                (_, value) => out.push(IndexRow {
                    param: row.param,
                    group: row.group,
                    value,
                }),
            }
        }
        out
    }

    /// Blinds a query's values, so it matches blinded rows.
    ///
    /// # Errors
    /// A search a blind index cannot answer: `:contains`, `:text`, a date comparison other
    /// than equality, or `_sort` on a blinded parameter.
    pub fn blind_query(&self, q: &mut SearchQuery) -> Result<(), SearchError> {
        if let Some(k) = q
            .sort
            .iter()
            .find(|k| is_blinded(&q.resource_type, &k.code))
        {
            return Err(refused(
                &k.code,
                "results cannot be sorted by a parameter stored as a blind index",
            ));
        }
        let rt = q.resource_type.clone();
        for c in &mut q.criteria {
            self.blind_criterion(&[rt.as_str()], c)?;
        }
        Ok(())
    }

    fn blind_criterion(&self, types: &[&str], c: &mut Criterion) -> Result<(), SearchError> {
        match c {
            Criterion::Param {
                code, kind, any_of, ..
            } => {
                for p in any_of.iter_mut() {
                    self.blind_reference_identifier(p);
                }
                for p in any_of.iter_mut() {
                    self.blind_composite(types, p)?;
                }
                if let Some(how) = self.common_blinding(types, code)? {
                    for p in any_of.iter_mut() {
                        *p = self.blind_predicate(code, how, p)?;
                    }
                    if how == Blinding::Date {
                        *kind = SearchParamType::Token;
                    }
                }
            }
            Criterion::Missing { code, kind, .. } => {
                if self.common_blinding(types, code)? == Some(Blinding::Date) {
                    *kind = SearchParamType::Token;
                }
            }
            Criterion::Chain {
                target_types,
                inner,
                ..
            } => {
                let targets: Vec<&str> = target_types.iter().map(String::as_str).collect();
                self.blind_criterion(&targets, inner)?;
            }
            Criterion::Has {
                source_type, inner, ..
            } => {
                let source = source_type.clone();
                self.blind_criterion(&[source.as_str()], inner)?;
            }
            Criterion::AnyOf(groups) => {
                for g in groups {
                    for c in g {
                        self.blind_criterion(types, c)?;
                    }
                }
            }
            Criterion::Any | Criterion::Compartment { .. } => {}
        }
        Ok(())
    }

    /// How a parameter is blinded across the types a criterion applies to. A chain through
    /// a reference that may point at a person or at something else (`subject.name`) cannot
    /// be answered with one value: it must name its target type.
    fn common_blinding(&self, types: &[&str], code: &str) -> Result<Option<Blinding>, SearchError> {
        let mut kinds = types.iter().map(|t| blinding(t, code));
        let first = kinds.next().flatten();
        if kinds.any(|k| k != first) {
            return Err(refused(
                code,
                "this chain must name its target type (for example subject:Patient.name)",
            ));
        }
        Ok(first)
    }

    /// Blinds the components of a composite value that are stored blinded (the free-text
    /// string of `code-value-string`).
    fn blind_composite(&self, types: &[&str], p: &mut ValuePredicate) -> Result<(), SearchError> {
        if let ValuePredicate::Composite(components) = p {
            for (component, value) in components.iter_mut() {
                if let Some(how) = self.common_blinding(types, component)? {
                    *value = self.blind_predicate(component, how, value)?;
                }
            }
        }
        Ok(())
    }

    fn blind_reference_identifier(&self, p: &mut ValuePredicate) {
        if let ValuePredicate::ReferenceIdentifier { value, .. } = p {
            *value = self.blinder(REFERENCE_IDENTIFIER).exact(value);
        }
    }

    fn blind_predicate(
        &self,
        code: &str,
        how: Blinding,
        p: &ValuePredicate,
    ) -> Result<ValuePredicate, SearchError> {
        let b = self.blinder(code);
        match (how, p) {
            (Blinding::String, ValuePredicate::String { value, mode }) => match mode {
                StringMatch::StartsWith | StringMatch::Blind => Ok(ValuePredicate::String {
                    value: b.query_prefix(value, MAX_PREFIX),
                    mode: StringMatch::Blind,
                }),
                StringMatch::Exact => Ok(ValuePredicate::String {
                    value: b.exact(value),
                    mode: StringMatch::Exact,
                }),
                StringMatch::Contains => Err(refused(
                    code,
                    ":contains is not available on a parameter stored as a blind index",
                )),
            },
            (Blinding::Token, ValuePredicate::Token { system, code: c }) => {
                Ok(ValuePredicate::Token {
                    system: system.clone(),
                    code: c.as_ref().map(|c| b.exact(c)),
                })
            }
            (Blinding::Token, ValuePredicate::TokenText(_)) => Err(refused(
                code,
                ":text is not available on a parameter stored as a blind index",
            )),
            (Blinding::Date, ValuePredicate::Date { prefix, lo, hi }) => {
                let span = CalendarSpan::of_range(*lo, *hi)
                    .filter(|_| *prefix == Prefix::Eq)
                    .ok_or_else(|| {
                        refused(
                            code,
                            "a blinded date matches only exactly: YYYY, YYYY-MM or YYYY-MM-DD",
                        )
                    })?;
                Ok(ValuePredicate::Token {
                    system: None,
                    code: Some(b.exact(&span.to_string())),
                })
            }
            _ => Err(refused(
                code,
                "this kind of value cannot be searched blinded",
            )),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use medmesh_fhir::search::{Handling, parse_query};
    use medmesh_fhir::{Definitions, index};
    use serde_json::json;

    fn defs() -> &'static Definitions {
        medmesh_fhir::definitions::definitions().unwrap()
    }

    fn pairs(q: &str) -> Vec<(String, String)> {
        q.split('&')
            .map(|p| {
                let (k, v) = p.split_once('=').unwrap();
                (k.to_string(), v.to_string())
            })
            .collect()
    }

    fn blinded_rows(bi: &BlindIndex, r: &serde_json::Value) -> Vec<IndexRow> {
        let rt = r["resourceType"].as_str().unwrap();
        bi.blind_rows(rt, index::extract(defs(), r))
    }

    /// Evaluates a blinded query against blinded rows in memory, the way the SQL does.
    fn matches(rows: &[IndexRow], q: &SearchQuery) -> bool {
        q.criteria.iter().all(|c| match c {
            Criterion::Param { code, any_of, .. } => any_of.iter().any(|p| {
                rows.iter()
                    .filter(|r| &r.param == code)
                    .any(|r| match (p, &r.value) {
                        (
                            ValuePredicate::String {
                                value,
                                mode: StringMatch::Blind,
                            },
                            IndexValue::String { norm, .. },
                        ) => norm == value,
                        (
                            ValuePredicate::String {
                                value,
                                mode: StringMatch::Exact,
                            },
                            IndexValue::String { exact, .. },
                        ) => exact == value,
                        (
                            ValuePredicate::Token { system, code },
                            IndexValue::Token {
                                system: s, code: c, ..
                            },
                        ) => {
                            code.as_ref().is_none_or(|code| c.as_ref() == Some(code))
                                && system.as_ref().is_none_or(|sys| sys == s)
                        }
                        _ => false,
                    })
            }),
            _ => true,
        })
    }

    fn patient() -> serde_json::Value {
        json!({
            "resourceType": "Patient", "id": "p1",
            "identifier": [{"system": "http://hospital.example/mrn", "value": "MRN-4711"}],
            "name": [{"family": "Mejía", "given": ["Ana", "Lucía"]}],
            "telecom": [{"system": "phone", "value": "555-0142"}],
            "address": [{"line": ["12 Harbour Road"], "city": "Springfield", "postalCode": "01234"}],
            "birthDate": "1980-05-17"
        })
    }

    #[test]
    fn no_identifying_value_is_stored_in_clear() {
        let bi = BlindIndex::new(BlindIndexKey::from_bytes([5; 32]));
        let rows = blinded_rows(&bi, &patient());
        let dump = format!("{rows:?}").to_lowercase();
        for secret in [
            "mejia",
            "mejía",
            "ana",
            "lucia",
            "555-0142",
            "mrn-4711",
            "harbour",
            "springfield",
            "01234",
            "1980",
        ] {
            assert!(!dump.contains(secret), "{secret} leaked: {dump}");
        }
        // Systems stay in clear, so `identifier=system|` still works.
        assert!(dump.contains("http://hospital.example/mrn"));
    }

    #[test]
    fn blinded_queries_find_what_clear_queries_would() {
        let bi = BlindIndex::new(BlindIndexKey::from_bytes([5; 32]));
        let rows = blinded_rows(&bi, &patient());
        let hits = [
            "family=mej",
            "family=MEJIA",
            "family:exact=Mejía",
            "given=luc",
            "name=ana",
            "name=mejía",
            "identifier=MRN-4711",
            "identifier=http://hospital.example/mrn|MRN-4711",
            "identifier=http://hospital.example/mrn|",
            "phone=555-0142",
            "telecom=555-0142",
            "birthdate=1980",
            "birthdate=1980-05",
            "birthdate=1980-05-17",
            "address=12 harb",
            "address-city=spring",
            "address-postalcode=01234",
        ];
        for h in hits {
            let mut q = parse_query(defs(), "Patient", &pairs(h), Handling::Strict).unwrap();
            bi.blind_query(&mut q).unwrap();
            assert!(matches(&rows, &q), "{h} should match");
        }
        let misses = [
            "family=mejias",
            "family:exact=mejía",
            "given=bob",
            "identifier=MRN-4712",
            "identifier=http://other.example|MRN-4711",
            "birthdate=1980-05-18",
            "birthdate=1981",
            "family=me",
        ];
        for m in misses {
            let mut q = parse_query(defs(), "Patient", &pairs(m), Handling::Strict).unwrap();
            bi.blind_query(&mut q).unwrap();
            assert!(!matches(&rows, &q), "{m} should not match");
        }
    }

    #[test]
    fn what_a_blind_index_cannot_answer_is_refused() {
        let bi = BlindIndex::new(BlindIndexKey::from_bytes([5; 32]));
        for q in [
            "family:contains=ji",
            "birthdate=gt1980",
            "_sort=family",
            "identifier:text=mrn",
            "birthdate=1980-05-17T10:00:00Z",
        ] {
            let mut q = parse_query(defs(), "Patient", &pairs(q), Handling::Strict).unwrap();
            assert!(bi.blind_query(&mut q).is_err());
        }
        // Not blinded: clinical codes and dates keep their full semantics.
        let mut q = parse_query(
            defs(),
            "Observation",
            &pairs("date=gt2020&code=1234-5"),
            Handling::Strict,
        )
        .unwrap();
        let before = q.clone();
        bi.blind_query(&mut q).unwrap();
        assert_eq!(q, before);
        // A chain into a patient's name is blinded; one that may also reach a Group is refused.
        let mut q = parse_query(
            defs(),
            "Observation",
            &pairs("subject:Patient.family=mej"),
            Handling::Strict,
        )
        .unwrap();
        bi.blind_query(&mut q).unwrap();
        assert_ne!(
            q,
            parse_query(
                defs(),
                "Observation",
                &pairs("subject:Patient.family=mej"),
                Handling::Strict
            )
            .unwrap()
        );
    }
}

#[cfg(test)]
mod free_text_tests {
    use super::*;

    #[test]
    fn free_text_of_patient_data_is_blinded() {
        assert!(is_patient_free_text("DocumentReference", "description"));
        assert!(is_patient_free_text("Observation", "value-string"));
        assert!(is_patient_free_text("Observation", "code-value-string#1"));
        assert!(!is_patient_free_text("Observation", "code-value-string#0"));
        assert!(!is_patient_free_text("Practitioner", "name"));
        assert!(!is_patient_free_text("Organization", "name"));
    }
}
