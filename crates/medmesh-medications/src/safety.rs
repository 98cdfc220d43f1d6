//! Safety checks at prescribing time that need no knowledge base of their own: a new
//! medication against the patient's allergies, and against the medications already active
//! (duplicate therapy). Each finding is a warning the prescriber may override with a
//! reason; the service records the override as a DetectedIssue.
//!
//! Two medications, or a medication and an allergy, are the same substance when they share
//! a coding (system and code; an ingredient's coding counts, from `Medication.ingredient`);
//! or an ingredient's name, read from drug names the way RxNorm writes them ("lisinopril 10
//! MG Oral Tablet" is lisinopril), so two strengths of one ingredient coded apart still
//! match; or, where one side has no coding (free text, allowed and marked so), when the
//! allergy's or ingredient's name appears as whole words in the other's text. A finding says
//! which way it was made. Interactions and dose limits need a knowledge base (not built yet; see
//! docs/medications.md).

use serde_json::Value;

/// RxNorm, as FHIR names it.
pub const RXNORM: &str = "http://www.nlm.nih.gov/research/umls/rxnorm";

/// A medication as the checks see it.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Substance {
    /// Its codings and its ingredients' (system, code).
    pub codes: Vec<(String, String)>,
    /// Its names (the concept's text and displays, the ingredients'), lower case.
    pub names: Vec<String>,
    /// Its ingredients' names, lower case: read from each name the way RxNorm writes
    /// clinical drugs (see [`ingredient_names`]), or the whole name when it gives no strength.
    pub ingredients: Vec<String>,
}

impl Substance {
    /// Whether it has no coding (free text only).
    pub fn is_free_text(&self) -> bool {
        self.codes.is_empty()
    }
}

/// The ingredient names a drug name starts with, the way RxNorm names clinical drugs
/// ("ingredient strength unit [/ ingredient strength unit] dose form"): in each part between
/// `/`, the words before the first one that starts with a digit. "lisinopril 10 MG Oral
/// Tablet" gives "lisinopril"; "amoxicillin 500 MG / clavulanate 125 MG Oral Tablet" gives
/// both; free text written the same way ("Lisinopril 20 mg tablets") gives "lisinopril". A
/// name without a strength gives nothing (it is matched whole).
pub fn ingredient_names(name: &str) -> Vec<String> {
    let mut out = Vec::new();
    for part in name.split('/') {
        let words: Vec<&str> = part.split_whitespace().collect();
        let Some(first_number) = words
            .iter()
            .position(|w| w.starts_with(|c: char| c.is_ascii_digit()))
        else {
            continue;
        };
        let lead = words[..first_number].join(" ").to_lowercase();
        if lead.chars().filter(|c| c.is_alphabetic()).count() >= 3 {
            out.push(lead);
        }
    }
    out
}

fn add_name(s: &mut Substance, name: &str) {
    let whole = name
        .split_whitespace()
        .collect::<Vec<_>>()
        .join(" ")
        .to_lowercase();
    let read = ingredient_names(name);
    if read.is_empty() {
        s.ingredients.push(whole.clone());
    } else {
        s.names.extend(read.iter().cloned());
        s.ingredients.extend(read);
    }
    s.names.push(whole);
}

fn add_concept(s: &mut Substance, concept: &Value) {
    for c in concept["coding"].as_array().into_iter().flatten() {
        if let (Some(system), Some(code)) = (c["system"].as_str(), c["code"].as_str()) {
            s.codes.push((system.to_string(), code.to_string()));
        }
        if let Some(d) = c["display"].as_str() {
            add_name(s, d);
        }
    }
    if let Some(t) = concept["text"].as_str() {
        add_name(s, t);
    }
}

/// The substance a MedicationRequest (or MedicationStatement) asks for: its
/// `medicationCodeableConcept`, or its contained Medication's code and ingredients.
pub fn substance_of(request: &Value) -> Substance {
    let mut s = Substance::default();
    add_concept(&mut s, &request["medicationCodeableConcept"]);
    let contained = request["medicationReference"]["reference"]
        .as_str()
        .and_then(|r| r.strip_prefix('#'))
        .and_then(|id| {
            request["contained"]
                .as_array()
                .into_iter()
                .flatten()
                .find(|c| c["id"].as_str() == Some(id))
        });
    if let Some(m) = contained {
        add_concept(&mut s, &m["code"]);
        for i in m["ingredient"].as_array().into_iter().flatten() {
            add_concept(&mut s, &i["itemCodeableConcept"]);
        }
    }
    s.codes.sort();
    s.codes.dedup();
    s.names.sort();
    s.names.dedup();
    s.ingredients.sort();
    s.ingredients.dedup();
    s
}

/// The substance an AllergyIntolerance is to (its `code`), or `None` when it no longer
/// counts (refuted or entered in error, or inactive or resolved).
pub fn allergy_substance(allergy: &Value) -> Option<Substance> {
    let verification = allergy["verificationStatus"]["coding"][0]["code"].as_str();
    let clinical = allergy["clinicalStatus"]["coding"][0]["code"].as_str();
    if matches!(verification, Some("refuted" | "entered-in-error"))
        || matches!(clinical, Some("inactive" | "resolved"))
    {
        return None;
    }
    let mut s = Substance::default();
    add_concept(&mut s, &allergy["code"]);
    s.codes.sort();
    s.codes.dedup();
    s.names.sort();
    s.names.dedup();
    s.ingredients.sort();
    s.ingredients.dedup();
    (!s.codes.is_empty() || !s.names.is_empty()).then_some(s)
}

/// Whether `needle`'s words appear, in order and whole, in `hay`.
fn has_words(hay: &str, needle: &str) -> bool {
    let words = |s: &str| -> Vec<String> {
        s.split(|c: char| !c.is_alphanumeric())
            .filter(|w| !w.is_empty())
            .map(str::to_string)
            .collect()
    };
    let (hay, needle) = (words(hay), words(needle));
    !needle.is_empty() && hay.windows(needle.len()).any(|w| w == needle.as_slice())
}

/// How two substances were found to be the same.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Matched {
    /// They share a coding.
    ByCode,
    /// They share an ingredient's name (two products of one ingredient, coded apart).
    ByIngredient,
    /// One has no coding; a name of one is in the other's text.
    ByName,
}

/// Whether `a` and `b` are the same substance, and how.
pub fn same_substance(a: &Substance, b: &Substance) -> Option<Matched> {
    if a.codes.iter().any(|c| b.codes.binary_search(c).is_ok()) {
        return Some(Matched::ByCode);
    }
    if a.ingredients
        .iter()
        .any(|i| b.ingredients.binary_search(i).is_ok())
    {
        return Some(Matched::ByIngredient);
    }
    if a.is_free_text() || b.is_free_text() {
        let named = |x: &Substance, y: &Substance| {
            x.names
                .iter()
                .any(|n| y.names.iter().any(|h| has_words(h, n)))
        };
        if named(a, b) || named(b, a) {
            return Some(Matched::ByName);
        }
    }
    None
}

/// A finding.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Finding {
    /// The patient is allergic to it: the AllergyIntolerance's id.
    Allergy {
        /// The allergy.
        allergy: String,
        /// How it was matched.
        matched: Matched,
    },
    /// The same substance is already active: the other MedicationRequest's id.
    Duplicate {
        /// The active request.
        request: String,
        /// How it was matched.
        matched: Matched,
    },
}

/// The findings for prescribing `new` to a patient with `allergies` and the `active`
/// requests (each with its id).
pub fn check(
    new: &Substance,
    allergies: &[(String, Substance)],
    active: &[(String, Substance)],
) -> Vec<Finding> {
    let mut out = Vec::new();
    for (id, a) in allergies {
        if let Some(matched) = same_substance(new, a) {
            out.push(Finding::Allergy {
                allergy: id.clone(),
                matched,
            });
        }
    }
    for (id, m) in active {
        if let Some(matched) = same_substance(new, m) {
            out.push(Finding::Duplicate {
                request: id.clone(),
                matched,
            });
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn coded(code: &str, display: &str) -> Value {
        json!({"medicationCodeableConcept": {"coding": [{"system": RXNORM, "code": code, "display": display}]}})
    }

    fn allergy(code: Option<&str>, text: &str) -> Value {
        let mut a = json!({"resourceType": "AllergyIntolerance",
            "clinicalStatus": {"coding": [{"code": "active"}]},
            "code": {"text": text}});
        if let Some(c) = code {
            a["code"]["coding"] = json!([{"system": RXNORM, "code": c}]);
        }
        a
    }

    #[test]
    fn ingredient_names_are_read_from_drug_names() {
        assert_eq!(
            ingredient_names("lisinopril 10 MG Oral Tablet"),
            vec!["lisinopril"]
        );
        assert_eq!(
            ingredient_names("amoxicillin 500 MG / clavulanate 125 MG Oral Tablet"),
            vec!["amoxicillin", "clavulanate"]
        );
        assert_eq!(
            ingredient_names("Insulin Glargine 100 UNT/ML Injectable Solution"),
            vec!["insulin glargine"]
        );
        assert!(
            ingredient_names("Penicillin").is_empty(),
            "no strength: matched whole"
        );
        assert!(ingredient_names("0.9 % sodium chloride").is_empty());
        // Free text and a coded product of another strength are the same substance.
        let ten = substance_of(&coded("314076", "lisinopril 10 MG Oral Tablet"));
        let free = substance_of(
            &json!({"medicationCodeableConcept": {"text": "Lisinopril 20 mg tablets"}}),
        );
        assert_eq!(same_substance(&ten, &free), Some(Matched::ByIngredient));
        // Two products of one ingredient, each coded as itself, share the ingredient's name.
        let twenty = substance_of(&coded("314077", "lisinopril 20 MG Oral Tablet"));
        assert_eq!(same_substance(&ten, &twenty), Some(Matched::ByIngredient));
        let other = substance_of(&coded("197361", "amlodipine 5 MG Oral Tablet"));
        assert_eq!(same_substance(&ten, &other), None);
    }

    #[test]
    fn an_allergy_matches_by_code_or_by_name() {
        // Amoxicillin (RxNorm 723) against an allergy coded to it.
        let amox = substance_of(&coded("723", "amoxicillin"));
        let coded_allergy = allergy_substance(&allergy(Some("723"), "Amoxicillin")).unwrap();
        assert_eq!(same_substance(&amox, &coded_allergy), Some(Matched::ByCode));
        // A free-text prescription against a free-text allergy, by whole words.
        let free = substance_of(
            &json!({"medicationCodeableConcept": {"text": "Penicillin V potassium 250 mg tablet"}}),
        );
        assert!(free.is_free_text());
        let pen = allergy_substance(&allergy(None, "penicillin")).unwrap();
        assert_eq!(same_substance(&free, &pen), Some(Matched::ByName));
        // Words, not letters: "pen" is not penicillin.
        let pen_short = allergy_substance(&allergy(None, "pen")).unwrap();
        assert_eq!(same_substance(&free, &pen_short), None);
        // Two coded substances with different codes and names are not the same.
        let other = allergy_substance(&allergy(Some("7980"), "penicillin G")).unwrap();
        assert_eq!(same_substance(&amox, &other), None);
        // Codes that differ but name one ingredient are matched (a warning too many rather
        // than a missed allergy).
        let renamed = allergy_substance(&allergy(Some("99999"), "Amoxicillin")).unwrap();
        assert_eq!(same_substance(&amox, &renamed), Some(Matched::ByIngredient));
    }

    #[test]
    fn a_contained_medications_ingredients_count() {
        let request = json!({
            "contained": [{"resourceType": "Medication", "id": "m",
                "code": {"text": "Augmentin 875"},
                "ingredient": [
                    {"itemCodeableConcept": {"coding": [{"system": RXNORM, "code": "723", "display": "amoxicillin"}]}},
                    {"itemCodeableConcept": {"coding": [{"system": RXNORM, "code": "48203", "display": "clavulanate"}]}}]}],
            "medicationReference": {"reference": "#m"}});
        let s = substance_of(&request);
        assert_eq!(s.codes.len(), 2);
        let findings = check(
            &s,
            &[(
                "a1".into(),
                allergy_substance(&allergy(Some("723"), "amoxicillin")).unwrap(),
            )],
            &[
                ("r1".into(), substance_of(&coded("48203", "clavulanate"))),
                ("r2".into(), substance_of(&coded("1191", "aspirin"))),
            ],
        );
        assert_eq!(
            findings,
            [
                Finding::Allergy {
                    allergy: "a1".into(),
                    matched: Matched::ByCode
                },
                Finding::Duplicate {
                    request: "r1".into(),
                    matched: Matched::ByCode
                },
            ]
        );
    }

    #[test]
    fn refuted_and_resolved_allergies_do_not_count() {
        let mut refuted = allergy(Some("723"), "amoxicillin");
        refuted["verificationStatus"] = json!({"coding": [{"code": "refuted"}]});
        assert!(allergy_substance(&refuted).is_none());
        let mut resolved = allergy(Some("723"), "amoxicillin");
        resolved["clinicalStatus"] = json!({"coding": [{"code": "resolved"}]});
        assert!(allergy_substance(&resolved).is_none());
        assert!(allergy_substance(&json!({"resourceType": "AllergyIntolerance"})).is_none());
    }
}
