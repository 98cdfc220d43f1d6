//! The knowledge base behind the interaction and dose-limit checks at prescribing time.
//!
//! The node ships one: the ONC high-priority drug-drug interactions (Phansalkar et al. 2012),
//! in `knowledge/onc-high-priority.toml`, whose header names its source, how it was made
//! machine-readable and its licence. A deployment may load more files of the same form
//! beside it (a licensed commercial base, a formulary's dose limits); they add to it. The
//! form, in TOML:
//!
//! - `[source]`: `name` (shown in each warning), `reference`, `severity`;
//! - `[aliases]`: another name of a drug the base names (`rifampicin = "rifampin"`: a
//!   prescription of rifampin is of the base's rifampicin);
//! - `[[interaction]]`: a `label` ("a triptan with an MAO inhibitor") and either `within`
//!   (any two of these drugs together) or `objects` and `precipitants` (any of one with any
//!   of the other);
//! - `[[dose_limit]]`: an `ingredient`, its `max_daily_mg` and the `source` of the figure.
//!
//! Drugs are matched by name, as whole words in a medication's names and ingredients (RxNorm
//! writes its clinical drugs as "simvastatin 20 MG Oral Tablet"), so coded and free-text
//! prescriptions are checked alike. A brand name alone ("Zocor") is not matched: the base
//! names ingredients. Parsing is pure (the binary reads the files).

use std::collections::{BTreeMap, HashMap};

use serde::Deserialize;
use serde_json::Value;

use crate::safety::Substance;
use crate::schedule::{MealTimes, Schedule, doses_per_day, read_dosage};

/// The knowledge base that ships with the node.
pub const SHIPPED: &str = include_str!("../knowledge/onc-high-priority.toml");

/// The most entries one file may hold (drugs, pairs' members and limits together).
pub const MAX_ENTRIES: usize = 100_000;

/// Why a knowledge file was refused, in words for whoever wrote it.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum KnowledgeError {
    /// Not TOML of the expected form.
    #[error("the knowledge file is not of the expected form: {0}")]
    Form(String),
    /// A part that cannot be used.
    #[error("the knowledge file's {0}")]
    Invalid(String),
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct FileForm {
    source: SourceForm,
    #[serde(default)]
    aliases: BTreeMap<String, String>,
    #[serde(default)]
    interaction: Vec<InteractionForm>,
    #[serde(default)]
    dose_limit: Vec<DoseLimitForm>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct SourceForm {
    name: String,
    #[serde(default)]
    reference: Option<String>,
    #[serde(default)]
    severity: Option<String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct InteractionForm {
    label: String,
    #[serde(default)]
    from: Option<String>,
    #[serde(default)]
    within: Vec<String>,
    #[serde(default)]
    objects: Vec<String>,
    #[serde(default)]
    precipitants: Vec<String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct DoseLimitForm {
    ingredient: String,
    max_daily_mg: f64,
    source: String,
}

/// A source a finding came from, as its file's `[source]` names it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Source {
    /// Its name, shown in warnings.
    pub name: String,
    /// Where it is published.
    pub reference: Option<String>,
    /// How severe its findings are, in its words ("contraindicated for concurrent use").
    pub severity: Option<String>,
}

#[derive(Debug, Clone)]
enum Pairs {
    Within(Vec<usize>),
    Between {
        objects: Vec<usize>,
        precipitants: Vec<usize>,
    },
}

#[derive(Debug, Clone)]
struct Group {
    label: String,
    source: usize,
    pairs: Pairs,
}

/// A maximum daily dose of an ingredient.
#[derive(Debug, Clone, PartialEq)]
pub struct DoseLimit {
    /// The ingredient, as the file names it.
    pub ingredient: String,
    /// The most a day, in milligrams.
    pub max_daily_mg: f64,
    /// Where the figure comes from.
    pub source: String,
    drug: usize,
}

/// Two prescriptions that interact.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Interaction {
    /// The active prescription's id.
    pub request: String,
    /// The drug in the new prescription, as the base names it.
    pub new_drug: String,
    /// The drug in the active one.
    pub other_drug: String,
    /// What kind of interaction ("a triptan with an MAO inhibitor"); several joined when
    /// the pair is in more than one.
    pub label: String,
    /// The base it is from.
    pub source: Source,
}

/// A prescription whose daily dose is over a limit.
#[derive(Debug, Clone, PartialEq)]
pub struct OverLimit {
    /// The ingredient.
    pub ingredient: String,
    /// The daily dose prescribed, milligrams (the highest of its dosage lines).
    pub daily_mg: f64,
    /// The limit, milligrams a day.
    pub max_daily_mg: f64,
    /// Where the limit comes from.
    pub source: String,
}

/// The loaded knowledge: drug names (with their aliases), interaction groups, dose limits.
#[derive(Debug, Clone, Default)]
pub struct KnowledgeBase {
    names: Vec<String>,
    index: HashMap<String, usize>,
    /// A name's first word, to the names (as words) starting with it and their drug.
    by_first_word: HashMap<String, Vec<(Vec<String>, usize)>>,
    groups: Vec<Group>,
    limits: Vec<DoseLimit>,
    sources: Vec<Source>,
}

/// A text's words: letters and digits, lower case.
fn words(text: &str) -> Vec<String> {
    text.split(|c: char| !c.is_alphanumeric())
        .filter(|w| !w.is_empty())
        .map(str::to_lowercase)
        .collect()
}

impl KnowledgeBase {
    /// The base that ships with the node (the ONC list). A unit test proves it parses; were
    /// it ever not to, the base would be empty rather than the node unable to start.
    pub fn shipped() -> Self {
        let mut kb = Self::default();
        match kb.add(SHIPPED) {
            Ok(()) => kb,
            Err(_) => Self::default(),
        }
    }

    /// Adds a knowledge file's contents.
    ///
    /// # Errors
    /// [`KnowledgeError`] when it is not of the form, or holds an unusable part (an empty
    /// name, a group without members, a limit that is not a positive number); nothing of
    /// it is added then.
    pub fn add(&mut self, text: &str) -> Result<(), KnowledgeError> {
        let form: FileForm =
            toml::from_str(text).map_err(|e| KnowledgeError::Form(e.message().to_string()))?;
        let entries = form.aliases.len()
            + form
                .interaction
                .iter()
                .map(|g| g.within.len() + g.objects.len() + g.precipitants.len())
                .sum::<usize>()
            + form.dose_limit.len();
        if entries > MAX_ENTRIES {
            return Err(KnowledgeError::Invalid(format!(
                "entries number more than {MAX_ENTRIES}"
            )));
        }
        if form.source.name.trim().is_empty() {
            return Err(KnowledgeError::Invalid("source has no name".into()));
        }
        // Checked whole before anything is added.
        for g in &form.interaction {
            let named = |list: &[String]| list.iter().all(|n| !words(n).is_empty());
            let shape_ok = if g.within.is_empty() {
                !g.objects.is_empty() && !g.precipitants.is_empty()
            } else {
                g.within.len() >= 2 && g.objects.is_empty() && g.precipitants.is_empty()
            };
            if g.label.trim().is_empty() || !shape_ok {
                return Err(KnowledgeError::Invalid(format!(
                    "interaction \"{}\" needs a label, and `within` (two or more) or both `objects` and `precipitants`",
                    g.label
                )));
            }
            if !(named(&g.within) && named(&g.objects) && named(&g.precipitants)) {
                return Err(KnowledgeError::Invalid(format!(
                    "interaction \"{}\" has an empty drug name",
                    g.label
                )));
            }
            if let Some(from) = &g.from
                && from.trim().is_empty()
            {
                return Err(KnowledgeError::Invalid("an empty `from`".into()));
            }
        }
        for l in &form.dose_limit {
            if words(&l.ingredient).is_empty()
                || !l.max_daily_mg.is_finite()
                || l.max_daily_mg <= 0.0
                || l.source.trim().is_empty()
            {
                return Err(KnowledgeError::Invalid(format!(
                    "dose limit for \"{}\" needs an ingredient, a positive max_daily_mg and its source",
                    l.ingredient
                )));
            }
        }
        for (alias, name) in &form.aliases {
            if words(alias).is_empty() || words(name).is_empty() {
                return Err(KnowledgeError::Invalid("alias with an empty name".into()));
            }
        }
        let source = self.sources.len();
        self.sources.push(Source {
            name: form.source.name.trim().to_string(),
            reference: form.source.reference,
            severity: form.source.severity,
        });
        for g in form.interaction {
            let mut ids = |list: &[String]| -> Vec<usize> {
                let mut v: Vec<usize> = list.iter().map(|n| self.drug(n)).collect();
                v.sort_unstable();
                v.dedup();
                v
            };
            let pairs = if g.within.is_empty() {
                Pairs::Between {
                    objects: ids(&g.objects),
                    precipitants: ids(&g.precipitants),
                }
            } else {
                Pairs::Within(ids(&g.within))
            };
            self.groups.push(Group {
                label: g.label.trim().to_string(),
                source,
                pairs,
            });
        }
        for l in form.dose_limit {
            let drug = self.drug(&l.ingredient);
            self.limits.push(DoseLimit {
                ingredient: l.ingredient.trim().to_lowercase(),
                max_daily_mg: l.max_daily_mg,
                source: l.source.trim().to_string(),
                drug,
            });
        }
        // `rifampicin = "rifampin"`: the drug the base calls rifampicin is also rifampin.
        for (name, other) in form.aliases {
            let drug = self.drug(&name);
            self.name_as(&other, drug);
        }
        Ok(())
    }

    /// The drug a name stands for, interned.
    fn drug(&mut self, name: &str) -> usize {
        let key = words(name).join(" ");
        if let Some(&id) = self.index.get(&key) {
            return id;
        }
        let id = self.names.len();
        self.names.push(key.clone());
        self.index.insert(key.clone(), id);
        self.name_as(&key, id);
        id
    }

    /// Matches `name` (as words) as drug `id` too.
    fn name_as(&mut self, name: &str, id: usize) {
        let w = words(name);
        let Some(first) = w.first().cloned() else {
            return;
        };
        self.index.entry(w.join(" ")).or_insert(id);
        let list = self.by_first_word.entry(first).or_default();
        if !list.iter().any(|(x, d)| *x == w && *d == id) {
            list.push((w, id));
        }
    }

    /// How many interacting pairs the base holds (ordered object-precipitant pairs; a
    /// `within` group counts each ordered pair of its members).
    pub fn pair_count(&self) -> usize {
        self.groups
            .iter()
            .map(|g| match &g.pairs {
                Pairs::Within(m) => m.len() * m.len().saturating_sub(1),
                Pairs::Between {
                    objects,
                    precipitants,
                } => objects.len() * precipitants.len(),
            })
            .sum()
    }

    /// The drugs of the base a substance holds: its names' and ingredients' whole words.
    fn drugs_in(&self, s: &Substance) -> Vec<usize> {
        let mut out = Vec::new();
        for text in s.names.iter().chain(&s.ingredients) {
            let w = words(text);
            for i in 0..w.len() {
                let Some(candidates) = self.by_first_word.get(&w[i]) else {
                    continue;
                };
                for (name, id) in candidates {
                    if w.len() - i >= name.len() && w[i..i + name.len()] == name[..] {
                        out.push(*id);
                    }
                }
            }
        }
        out.sort_unstable();
        out.dedup();
        out
    }

    /// The first pair (new drug, other drug) group `g` holds between two drug sets.
    fn pair_in(g: &Group, new: &[usize], other: &[usize]) -> Option<(usize, usize)> {
        match &g.pairs {
            Pairs::Within(members) => new
                .iter()
                .filter(|d| members.binary_search(d).is_ok())
                .find_map(|&a| {
                    other
                        .iter()
                        .find(|&&b| b != a && members.binary_search(&b).is_ok())
                        .map(|&b| (a, b))
                }),
            Pairs::Between {
                objects,
                precipitants,
            } => {
                let one_way = |x: &[usize], y: &[usize]| {
                    new.iter()
                        .filter(|d| x.binary_search(d).is_ok())
                        .find_map(|&a| {
                            other
                                .iter()
                                .find(|b| y.binary_search(b).is_ok())
                                .map(|&b| (a, b))
                        })
                };
                one_way(objects, precipitants).or_else(|| one_way(precipitants, objects))
            }
        }
    }

    /// The interactions between the medication being prescribed and the active ones (each
    /// with its id): one finding per active prescription, naming every group it falls in.
    pub fn interactions(
        &self,
        new: &Substance,
        active: &[(String, Substance)],
    ) -> Vec<Interaction> {
        let new_drugs = self.drugs_in(new);
        if new_drugs.is_empty() {
            return Vec::new();
        }
        let mut out = Vec::new();
        for (id, s) in active {
            let other = self.drugs_in(s);
            if other.is_empty() {
                continue;
            }
            let mut found: Option<Interaction> = None;
            for g in &self.groups {
                let Some((a, b)) = Self::pair_in(g, &new_drugs, &other) else {
                    continue;
                };
                match &mut found {
                    Some(f) => {
                        if !f.label.split("; ").any(|l| l == g.label) {
                            f.label = format!("{}; {}", f.label, g.label);
                        }
                    }
                    None => {
                        found = Some(Interaction {
                            request: id.clone(),
                            new_drug: self.names[a].clone(),
                            other_drug: self.names[b].clone(),
                            label: g.label.clone(),
                            source: self.sources[g.source].clone(),
                        });
                    }
                }
            }
            out.extend(found);
        }
        out
    }

    /// The dose limits `request` goes over: for each limit on an ingredient it holds, its
    /// daily dose in milligrams when that can be worked out (a dose in a mass unit, or in
    /// units of a form whose strength its name gives, times the doses a day its timing
    /// makes; as needed, its `maxDosePerPeriod`).
    pub fn over_limits(
        &self,
        new: &Substance,
        request: &Value,
        meals: &MealTimes,
    ) -> Vec<OverLimit> {
        if self.limits.is_empty() {
            return Vec::new();
        }
        let drugs = self.drugs_in(new);
        let mut out = Vec::new();
        for l in &self.limits {
            if drugs.binary_search(&l.drug).is_err() {
                continue;
            }
            let strength = strength_mg(&new.names, &self.names[l.drug]);
            let daily = request["dosageInstruction"]
                .as_array()
                .into_iter()
                .flatten()
                .filter_map(|d| daily_mg(d, strength, meals))
                .fold(None, |m: Option<f64>, x| Some(m.map_or(x, |m| m.max(x))));
            if let Some(daily_mg) = daily
                && daily_mg > l.max_daily_mg * (1.0 + 1e-9)
            {
                out.push(OverLimit {
                    ingredient: l.ingredient.clone(),
                    daily_mg,
                    max_daily_mg: l.max_daily_mg,
                    source: l.source.clone(),
                });
            }
        }
        out
    }
}

/// Milligrams in one of `unit` (a mass unit, UCUM or as written), or `None`.
fn mass_mg(unit: &str) -> Option<f64> {
    match unit.trim().to_lowercase().as_str() {
        "mg" | "milligram" | "milligrams" => Some(1.0),
        "g" | "gram" | "grams" => Some(1000.0),
        "ug" | "mcg" | "µg" | "microgram" | "micrograms" => Some(0.001),
        _ => None,
    }
}

/// Whether `unit` counts units of a dose form (a tablet, a capsule...).
fn is_count(unit: &str) -> bool {
    let u = unit
        .trim()
        .trim_matches(|c| c == '{' || c == '}')
        .to_lowercase();
    matches!(
        u.as_str(),
        "1" | "tab"
            | "tbl"
            | "tablet"
            | "tablets"
            | "cap"
            | "capsule"
            | "capsules"
            | "each"
            | "ea"
            | "unit"
            | "units"
            | "dose"
            | "doses"
    )
}

/// The strength of `ingredient` in one unit of the form, milligrams, from a drug name the
/// way RxNorm writes it ("simvastatin 20 MG Oral Tablet", "amlodipine 5mg tablets").
fn strength_mg(names: &[String], ingredient: &str) -> Option<f64> {
    let target = words(ingredient);
    for name in names {
        // Split into tokens keeping decimal numbers whole; "5mg" becomes "5", "mg".
        let mut tokens: Vec<String> = Vec::new();
        for raw in name.split(|c: char| c.is_whitespace() || c == '/' || c == ',') {
            let raw = raw.trim_matches(|c: char| !c.is_alphanumeric() && c != '.');
            if raw.is_empty() {
                continue;
            }
            let digits: String = raw
                .chars()
                .take_while(|c| c.is_ascii_digit() || *c == '.')
                .collect();
            if !digits.is_empty() && digits.len() < raw.len() {
                tokens.push(digits.clone());
                tokens.push(raw[digits.len()..].to_lowercase());
            } else {
                tokens.push(raw.to_lowercase());
            }
        }
        for i in 0..tokens.len() {
            if tokens.len() - i < target.len() + 2 || tokens[i..i + target.len()] != target[..] {
                continue;
            }
            let at = i + target.len();
            if let (Ok(value), Some(per)) = (tokens[at].parse::<f64>(), mass_mg(&tokens[at + 1]))
                && value.is_finite()
                && value > 0.0
            {
                return Some(value * per);
            }
        }
    }
    None
}

/// A quantity in milligrams: a mass, or a count times the form's strength.
fn quantity_mg(q: &Value, strength: Option<f64>) -> Option<f64> {
    let value = q["value"].as_f64().filter(|v| v.is_finite() && *v >= 0.0)?;
    let unit = q["code"]
        .as_str()
        .or_else(|| q["unit"].as_str())
        .unwrap_or("1");
    match mass_mg(unit) {
        Some(per) => Some(value * per),
        None if is_count(unit) => strength.map(|s| value * s),
        None => None,
    }
}

/// Days in a FHIR duration unit.
fn unit_days(unit: &str) -> Option<f64> {
    Some(match unit {
        "s" => 1.0 / 86_400.0,
        "min" => 1.0 / 1_440.0,
        "h" => 1.0 / 24.0,
        "d" => 1.0,
        "wk" => 7.0,
        "mo" => 30.0,
        "a" => 365.0,
        _ => return None,
    })
}

/// One dosage line's daily dose, milligrams, when it can be worked out.
fn daily_mg(dosage: &Value, strength: Option<f64>, meals: &MealTimes) -> Option<f64> {
    let dose = || quantity_mg(&dosage["doseAndRate"][0]["doseQuantity"], strength);
    match read_dosage(dosage, meals).ok()? {
        Schedule::AsNeeded => {
            let ratio = &dosage["maxDosePerPeriod"];
            let amount = quantity_mg(&ratio["numerator"], strength)?;
            let per = ratio["denominator"]["value"].as_f64()?
                * unit_days(
                    ratio["denominator"]["code"]
                        .as_str()
                        .or_else(|| ratio["denominator"]["unit"].as_str())?,
                )?;
            (per > 0.0).then(|| amount / per)
        }
        regular => Some(dose()? * doses_per_day(&regular)?),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::safety::substance_of;
    use serde_json::json;

    fn named(text: &str) -> Substance {
        substance_of(&json!({"medicationCodeableConcept": {"text": text}}))
    }

    fn coded(display: &str) -> Substance {
        substance_of(&json!({"medicationCodeableConcept": {"coding": [{
            "system": crate::safety::RXNORM, "code": "1", "display": display}]}}))
    }

    #[test]
    fn the_shipped_base_parses_and_holds_the_whole_list() {
        let mut kb = KnowledgeBase::default();
        kb.add(SHIPPED).unwrap();
        // 1,930 pairs from the mapped file, and 11 from the paper's Table 2 (lisdexamfetamine
        // with 5 MAO inhibitors, 2 proton pump inhibitors, febuxostat with 2).
        assert_eq!(kb.pair_count(), 1_560 + 370 + 5 + 2 + 2);
        assert_eq!(KnowledgeBase::shipped().pair_count(), kb.pair_count());
        assert!(kb.limits.is_empty(), "the ONC list has no dose limits");
    }

    #[test]
    fn interactions_are_found_both_ways_and_by_alias() {
        let kb = KnowledgeBase::shipped();
        // Object prescribed onto its precipitant, and the other way round.
        let simva = coded("simvastatin 40 MG Oral Tablet");
        let clari = coded("clarithromycin 500 MG Oral Tablet");
        let found = kb.interactions(&simva, &[("rx-1".into(), clari.clone())]);
        assert_eq!(found.len(), 1);
        assert_eq!(found[0].request, "rx-1");
        assert_eq!(found[0].new_drug, "simvastatin");
        assert_eq!(found[0].other_drug, "clarithromycin");
        assert!(found[0].label.contains("HMG-CoA"));
        assert_eq!(kb.interactions(&clari, &[("rx-2".into(), simva)]).len(), 1);
        // Within a class: two QT-prolonging drugs, but not one with itself.
        let methadone = named("Methadone 10 mg tablets");
        let ondansetron = coded("ondansetron 4 MG Disintegrating Oral Tablet");
        assert_eq!(
            kb.interactions(&ondansetron, &[("m".into(), methadone.clone())])[0].label,
            "two high-risk QT-prolonging drugs"
        );
        assert!(
            kb.interactions(&methadone, &[("m".into(), methadone.clone())])
                .is_empty()
        );
        // Methadone is both QT-prolonging and an opioid: with an MAO inhibitor, the opioid pair.
        let phenelzine = coded("phenelzine 15 MG Oral Tablet");
        let f = kb.interactions(&phenelzine, &[("m".into(), methadone)]);
        assert_eq!(f[0].label, "an opioid analgesic with an MAO inhibitor");
        // The US name of rifampicin, and meperidine for pethidine.
        let rifampin = coded("rifampin 300 MG Oral Capsule");
        let atazanavir = coded("atazanavir 300 MG Oral Capsule");
        assert_eq!(
            kb.interactions(&atazanavir, &[("r".into(), rifampin)])
                .len(),
            1
        );
        let meperidine = coded("meperidine hydrochloride 50 MG Oral Tablet");
        assert_eq!(
            kb.interactions(
                &meperidine,
                &[("s".into(), coded("selegiline 5 MG Oral Capsule"))]
            )
            .len(),
            1
        );
        // Whole words: escitalopram is not citalopram, dextroamphetamine not amphetamine.
        let escitalopram = coded("escitalopram 10 MG Oral Tablet");
        assert_eq!(kb.drugs_in(&escitalopram), vec![kb.index["escitalopram"]]);
        let dextro = named("dextroamphetamine 5 mg");
        assert_eq!(kb.drugs_in(&dextro), vec![kb.index["dextroamphetamine"]]);
        // Nothing between drugs the list does not pair.
        let lisinopril = coded("lisinopril 10 MG Oral Tablet");
        assert!(
            kb.interactions(&lisinopril, &[("c".into(), clari)])
                .is_empty()
        );
    }

    #[test]
    fn a_loaded_file_adds_limits_and_bad_files_are_refused_whole() {
        let mut kb = KnowledgeBase::shipped();
        let before = kb.pair_count();
        let err = kb
            .add("[source]\nname = \"x\"\n[[interaction]]\nlabel = \"one\"\nwithin = [\"a\"]\n")
            .unwrap_err();
        assert!(matches!(err, KnowledgeError::Invalid(_)), "{err}");
        assert!(matches!(kb.add("not toml ["), Err(KnowledgeError::Form(_))));
        assert!(
            kb.add("[source]\nname = \"x\"\n[[dose_limit]]\ningredient = \"a\"\nmax_daily_mg = -1\nsource = \"s\"\n")
                .is_err()
        );
        assert_eq!(
            kb.pair_count(),
            before,
            "nothing of a refused file is added"
        );
        kb.add(
            "[source]\nname = \"Formulary\"\n[[dose_limit]]\ningredient = \"simvastatin\"\nmax_daily_mg = 80\nsource = \"the formulary\"\n",
        )
        .unwrap();
        let meals = MealTimes::default();
        let simva = coded("simvastatin 40 MG Oral Tablet");
        let rx = |dose: Value, timing: Value| json!({"dosageInstruction": [{"timing": timing, "doseAndRate": [{"doseQuantity": dose}]}]});
        let twice = json!({"repeat": {"frequency": 2, "period": 1, "periodUnit": "d"}});
        // 2 tablets of 40 mg twice a day: 160 mg a day.
        let over = kb.over_limits(
            &simva,
            &rx(json!({"value": 2, "unit": "tablet"}), twice.clone()),
            &meals,
        );
        assert_eq!(over.len(), 1);
        assert!((over[0].daily_mg - 160.0).abs() < 1e-9);
        assert_eq!(over[0].max_daily_mg, 80.0);
        // 40 mg twice a day is at the limit, not over it.
        assert!(
            kb.over_limits(
                &simva,
                &rx(json!({"value": 40, "code": "mg"}), twice.clone()),
                &meals
            )
            .is_empty()
        );
        // Grams count as a thousand milligrams.
        assert_eq!(
            kb.over_limits(
                &simva,
                &rx(json!({"value": 0.1, "code": "g"}), twice),
                &meals
            )
            .len(),
            1
        );
        // Every 6 hours, as needed with a maximum: the maximum counts.
        let every6 = json!({"repeat": {"frequency": 1, "period": 6, "periodUnit": "h"}});
        assert_eq!(
            kb.over_limits(
                &simva,
                &rx(json!({"value": 1, "unit": "tablet"}), every6),
                &meals
            )
            .len(),
            1
        );
        let prn = json!({"dosageInstruction": [{"asNeededBoolean": true,
            "maxDosePerPeriod": {"numerator": {"value": 3, "unit": "tablet"}, "denominator": {"value": 1, "code": "d"}}}]});
        assert_eq!(kb.over_limits(&simva, &prn, &meals)[0].daily_mg, 120.0);
        // A dose in a unit that cannot be weighed, or a form without a strength, is not
        // guessed at.
        let free = named("Simvastatin tablets");
        let once = json!({"repeat": {"frequency": 1, "period": 1, "periodUnit": "d"}});
        assert!(
            kb.over_limits(
                &free,
                &rx(json!({"value": 9, "unit": "tablet"}), once.clone()),
                &meals
            )
            .is_empty()
        );
        assert!(
            kb.over_limits(&simva, &rx(json!({"value": 9, "unit": "mL"}), once), &meals)
                .is_empty()
        );
    }

    #[test]
    fn strengths_are_read_from_drug_names() {
        let n = |s: &str| vec![s.to_lowercase()];
        assert_eq!(
            strength_mg(&n("simvastatin 20 MG Oral Tablet"), "simvastatin"),
            Some(20.0)
        );
        assert_eq!(
            strength_mg(&n("Amlodipine 5mg tablets"), "amlodipine"),
            Some(5.0)
        );
        assert_eq!(
            strength_mg(
                &n("levothyroxine sodium 0.05 MG Oral Tablet"),
                "levothyroxine sodium"
            ),
            Some(0.05)
        );
        assert_eq!(
            strength_mg(
                &n("amoxicillin 500 MG / clavulanate 125 MG Oral Tablet"),
                "clavulanate"
            ),
            Some(125.0)
        );
        assert_eq!(strength_mg(&n("Simvastatin"), "simvastatin"), None);
    }
}
