//! The search query model: URL parameters parsed and checked against the definitions.
//!
//! The parser knows FHIR's rules (types, modifiers, prefixes, chains, `_has`, result
//! parameters); the store adapters turn the resulting [`SearchQuery`] into SQL.

use crate::datetime;
use crate::definitions::{Definitions, SearchParamDef, SearchParamType};
use crate::index::normalize;

/// A comparison prefix for ordered values.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Prefix {
    /// Equal (the default).
    Eq,
    /// Not equal.
    Ne,
    /// Greater than.
    Gt,
    /// Less than.
    Lt,
    /// Greater or equal.
    Ge,
    /// Less or equal.
    Le,
    /// Starts after.
    Sa,
    /// Ends before.
    Eb,
    /// Approximately.
    Ap,
}

impl Prefix {
    fn split(value: &str) -> (Prefix, &str) {
        let p = match value.get(..2) {
            Some("eq") => Prefix::Eq,
            Some("ne") => Prefix::Ne,
            Some("gt") => Prefix::Gt,
            Some("lt") => Prefix::Lt,
            Some("ge") => Prefix::Ge,
            Some("le") => Prefix::Le,
            Some("sa") => Prefix::Sa,
            Some("eb") => Prefix::Eb,
            Some("ap") => Prefix::Ap,
            _ => return (Prefix::Eq, value),
        };
        (p, &value[2..])
    }
}

/// How a string value matches.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StringMatch {
    /// Case and accent insensitive prefix (the default).
    StartsWith,
    /// Exact, case and accent sensitive (`:exact`).
    Exact,
    /// Case and accent insensitive substring (`:contains`).
    Contains,
    /// Equality with a blind-index token on the normalized column. Never parsed: the record
    /// service turns a prefix search on a blinded parameter into this.
    Blind,
}

/// How a URI value matches.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum UriMatch {
    /// Equal.
    Exact,
    /// The stored URI is a prefix of the value (`:above`).
    Above,
    /// The value is a prefix of the stored URI (`:below`).
    Below,
}

/// One value to match, already typed.
#[derive(Debug, Clone, PartialEq)]
pub enum ValuePredicate {
    /// String match on the normalized or exact form.
    String {
        /// The value (normalized unless `Exact`).
        value: String,
        /// How to match.
        mode: StringMatch,
    },
    /// Token match: `[system|]code`.
    Token {
        /// `None`: any system; `Some(None)`: no system (`|code`); `Some(Some(s))`: that system.
        system: Option<Option<String>>,
        /// `None` when only the system is given (`system|`).
        code: Option<String>,
    },
    /// Token text match (`:text`), normalized prefix on display and text.
    TokenText(String),
    /// Date range comparison.
    Date {
        /// The comparison.
        prefix: Prefix,
        /// Inclusive start of the value's range, in microseconds.
        lo: i64,
        /// Exclusive end.
        hi: i64,
    },
    /// Number or quantity comparison.
    Quantity {
        /// The comparison.
        prefix: Prefix,
        /// The value as written.
        value: f64,
        /// Low end of the value's implicit precision range.
        lo: f64,
        /// High end of the value's implicit precision range.
        hi: f64,
        /// Unit system, if given.
        system: Option<String>,
        /// Unit code, if given.
        code: Option<String>,
    },
    /// Reference match.
    Reference {
        /// Target type, when known.
        target_type: Option<String>,
        /// Target id.
        id: Option<String>,
        /// Absolute or canonical URL.
        url: Option<String>,
    },
    /// Reference by logical identifier (`:identifier`).
    ReferenceIdentifier {
        /// Identifier system, if given.
        system: Option<String>,
        /// Identifier value.
        value: String,
    },
    /// URI match.
    Uri {
        /// The URI.
        value: String,
        /// How to match.
        mode: UriMatch,
    },
    /// A composite value: one predicate per component, all on the same element.
    Composite(Vec<(String, ValuePredicate)>),
}

/// One search criterion. Criteria in a query are ANDed; values inside one are ORed.
#[derive(Debug, Clone, PartialEq)]
pub enum Criterion {
    /// Matches a parameter's index rows.
    Param {
        /// Parameter code.
        code: String,
        /// Parameter type.
        kind: SearchParamType,
        /// Alternatives (OR).
        any_of: Vec<ValuePredicate>,
        /// `:not`: resources with none of the values.
        negate: bool,
    },
    /// `:missing=true|false`.
    Missing {
        /// Parameter code.
        code: String,
        /// Parameter type (selects the index table).
        kind: SearchParamType,
        /// True: the parameter has no value.
        missing: bool,
    },
    /// A chain: the reference parameter `code` points at a `target_types` resource matching `inner`.
    Chain {
        /// Reference parameter on this resource.
        code: String,
        /// Possible target types.
        target_types: Vec<String>,
        /// Criterion on the target.
        inner: Box<Criterion>,
    },
    /// A reverse chain `_has:Type:param:...`: some `source_type` resource refers to this one
    /// through `code` and matches `inner`.
    Has {
        /// Type of the referring resource.
        source_type: String,
        /// Reference parameter on the referring resource.
        code: String,
        /// Criterion on the referring resource.
        inner: Box<Criterion>,
    },
    /// Matches any resource (used when a chained inner parameter is ignored).
    Any,
    /// Matches when every criterion of one of the groups matches. Added by the record service
    /// to confine a practitioner's search to what each patient's consent opens, and by the
    /// parser for a union parameter's members ([`SearchParamDef::union_of`]).
    AnyOf(Vec<Vec<Criterion>>),
    /// Confines a search to a compartment: resources that link to its owner (a Patient,
    /// or an Encounter, Practitioner, RelatedPerson or Device) through one of `params`, and
    /// with `include_self` the owner itself. Added by the record service (patient-context
    /// grants, compartment searches), never parsed from a query.
    Compartment {
        /// The type of the compartment's owner.
        owner_type: String,
        /// The owners' ids (a resource in any of their compartments matches).
        patient_ids: Vec<String>,
        /// The compartment's linking reference parameters for the searched type.
        params: Vec<String>,
        /// Whether the patient resource itself matches (Patient searches).
        include_self: bool,
    },
}

/// A sort key.
#[derive(Debug, Clone, PartialEq)]
pub struct SortKey {
    /// Parameter code, or `_id` / `_lastUpdated`.
    pub code: String,
    /// Parameter type.
    pub kind: SearchParamType,
    /// Descending.
    pub descending: bool,
    /// The parameters whose index rows hold the key's values: the parameter itself, or a
    /// union parameter's members ([`SearchParamDef::union_of`]).
    pub rows_of: Vec<String>,
}

/// An `_include` or `_revinclude`.
#[derive(Debug, Clone, PartialEq)]
pub struct Include {
    /// The type holding the reference.
    pub source_type: String,
    /// The reference parameter, or `*`.
    pub param: String,
    /// Restrict to a target type.
    pub target_type: Option<String>,
    /// `:iterate` (or R3's `:recurse`).
    pub iterate: bool,
}

/// `_total`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum TotalMode {
    /// No total.
    None,
    /// A total when it costs nothing: a first page that holds every match (the default).
    #[default]
    WhenFree,
    /// An exact count (`_total=accurate`, and `estimate`, which is answered exactly).
    Accurate,
}

/// `_summary`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SummaryMode {
    /// Only summary elements.
    True,
    /// Only the text, id and meta.
    Text,
    /// Remove the text.
    Data,
    /// Only the count.
    Count,
    /// The full resource.
    False,
}

/// How to treat unknown parameters (`Prefer: handling=`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Handling {
    /// Ignore and report.
    #[default]
    Lenient,
    /// Reject.
    Strict,
}

/// A parsed search.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct SearchQuery {
    /// The resource type searched.
    pub resource_type: String,
    /// Criteria, ANDed.
    pub criteria: Vec<Criterion>,
    /// Sort keys, in order.
    pub sort: Vec<SortKey>,
    /// Page size.
    pub count: Option<u32>,
    /// Opaque paging cursor from a previous page.
    pub page: Option<String>,
    /// `_include`s.
    pub includes: Vec<Include>,
    /// `_revinclude`s.
    pub revincludes: Vec<Include>,
    /// `_total`.
    pub total: TotalMode,
    /// `_summary`.
    pub summary: Option<SummaryMode>,
    /// `_elements`.
    pub elements: Vec<String>,
    /// Parameters that were ignored, with the reason; reported back to the client.
    pub ignored: Vec<(String, String)>,
    /// The parameters that were applied, for the self link.
    pub applied: Vec<(String, String)>,
}

/// A search that cannot run.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum SearchError {
    /// An unknown or unsupported parameter, under strict handling.
    #[error("unknown or unsupported search parameter '{0}'")]
    UnknownParameter(String),
    /// A value that does not parse for its parameter's type.
    #[error("invalid value for search parameter '{param}': {reason}")]
    InvalidValue {
        /// The parameter.
        param: String,
        /// Why.
        reason: String,
    },
    /// The resource type is unknown.
    #[error("unknown resource type '{0}'")]
    UnknownType(String),
    /// A modifier or sort the node does not support on a parameter it knows. Never ignored,
    /// even under lenient handling: dropping it would change what the answer means.
    #[error("'{0}' is not supported")]
    Unsupported(String),
    /// The search asks for more than the node evaluates in one request.
    #[error("the search has too many {what}: at most {limit}")]
    TooComplex {
        /// What there is too much of.
        what: &'static str,
        /// The most allowed.
        limit: usize,
    },
}

/// How much one search may ask for. A search past these bounds is refused with 400 before it
/// reaches the database: a planner's cost grows steeply with the number of terms (160
/// repeated `family=` took PostgreSQL 8 s to plan, 1,000 over ten minutes), and SQLite
/// refuses past about a thousand.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SearchLimits {
    /// Query parameters, every kind counted (criteria, `_sort`, `_include`...).
    pub parameters: usize,
    /// Comma-separated (OR) values of one parameter.
    pub values_per_parameter: usize,
    /// Links in a chain or nested `_has`, the outermost counted.
    pub chain_depth: usize,
    /// `_include` and `_revinclude` together.
    pub includes: usize,
    /// `_sort` keys.
    pub sort_keys: usize,
    /// `_elements` names.
    pub elements: usize,
}

impl Default for SearchLimits {
    fn default() -> Self {
        Self {
            parameters: 32,
            values_per_parameter: 100,
            chain_depth: 3,
            includes: 10,
            sort_keys: 5,
            elements: 64,
        }
    }
}

fn too_many(what: &'static str, limit: usize) -> SearchError {
    SearchError::TooComplex { what, limit }
}

/// Links in a parameter name: `a.b.c` has 3, `_has:X:p:_has:Y:q:code` has 3.
fn chain_links(name: &str) -> usize {
    1 + name.matches('.').count() + name.matches("_has:").count()
}

impl SearchLimits {
    /// Refuses a query whose raw parameters exceed these bounds.
    ///
    /// # Errors
    /// [`SearchError::TooComplex`].
    pub fn check_params(&self, params: &[(String, String)]) -> Result<(), SearchError> {
        let counted = params.iter().filter(|(n, _)| n != "_page").count();
        if counted > self.parameters {
            return Err(too_many("parameters", self.parameters));
        }
        let mut includes = 0;
        for (name, value) in params {
            if name.starts_with("_include") || name.starts_with("_revinclude") {
                includes += 1;
                continue;
            }
            if chain_links(name) > self.chain_depth + 1 {
                return Err(too_many("links in a chain", self.chain_depth));
            }
            let criterion = !name.starts_with('_') || name.starts_with("_has:") || name == "_id";
            if criterion && split_escaped(value, ',').len() > self.values_per_parameter {
                return Err(too_many(
                    "values in one parameter",
                    self.values_per_parameter,
                ));
            }
        }
        if includes > self.includes {
            return Err(too_many(
                "_include and _revinclude parameters",
                self.includes,
            ));
        }
        Ok(())
    }

    /// Refuses a parsed query past the bounds that parsing reveals (sort keys, elements).
    ///
    /// # Errors
    /// [`SearchError::TooComplex`].
    pub fn check_query(&self, q: &SearchQuery) -> Result<(), SearchError> {
        if q.sort.len() > self.sort_keys {
            return Err(too_many("_sort keys", self.sort_keys));
        }
        if q.elements.len() > self.elements {
            return Err(too_many("_elements names", self.elements));
        }
        Ok(())
    }
}

/// Result parameters that are not criteria.
const CONTROL_PARAMS: &[&str] = &[
    "_sort",
    "_count",
    "_include",
    "_revinclude",
    "_total",
    "_summary",
    "_elements",
    "_page",
    "_format",
    "_pretty",
    "_contained",
    "_containedType",
];

/// Splits on unescaped `sep`, unescaping `\,` `\|` `\$` `\\`.
pub fn split_escaped(s: &str, sep: char) -> Vec<String> {
    let mut out = vec![String::new()];
    let mut chars = s.chars().peekable();
    while let Some(c) = chars.next() {
        if c == '\\' {
            if let Some(&n) = chars.peek()
                && n == sep
            {
                // keep escaped separators escaped for a later split on another separator
                if let Some(last) = out.last_mut() {
                    last.push(n);
                }
                chars.next();
                continue;
            }
            if let Some(last) = out.last_mut() {
                last.push(c);
            }
        } else if c == sep {
            out.push(String::new());
        } else if let Some(last) = out.last_mut() {
            last.push(c);
        }
    }
    out
}

fn invalid(param: &str, reason: impl Into<String>) -> SearchError {
    SearchError::InvalidValue {
        param: param.to_string(),
        reason: reason.into(),
    }
}

fn decimal_range(param: &str, s: &str) -> Result<(f64, f64, f64), SearchError> {
    let value: f64 = s.parse().map_err(|_| invalid(param, "not a number"))?;
    if !value.is_finite() {
        return Err(invalid(param, "not a finite number"));
    }
    // Implicit precision: "100" matches [99.5, 100.5); "1e2" matches [50, 150).
    let mantissa = s.split(['e', 'E']).next().unwrap_or(s);
    let exp: i32 = s
        .split(['e', 'E'])
        .nth(1)
        .and_then(|e| e.parse().ok())
        .unwrap_or(0);
    let decimals = mantissa.split_once('.').map_or(0, |(_, f)| f.len() as i32);
    let half = 0.5 * 10f64.powi(exp - decimals);
    Ok((value, value - half, value + half))
}

fn parse_value(
    param: &str,
    kind: SearchParamType,
    modifier: Option<&str>,
    raw: &str,
) -> Result<ValuePredicate, SearchError> {
    Ok(match kind {
        SearchParamType::String => {
            let mode = match modifier {
                Some("exact") => StringMatch::Exact,
                Some("contains") => StringMatch::Contains,
                _ => StringMatch::StartsWith,
            };
            let value = if mode == StringMatch::Exact {
                raw.to_string()
            } else {
                normalize(raw)
            };
            ValuePredicate::String { value, mode }
        }
        SearchParamType::Token => {
            if modifier == Some("text") {
                return Ok(ValuePredicate::TokenText(normalize(raw)));
            }
            let parts = split_escaped(raw, '|');
            match parts.as_slice() {
                [code] => ValuePredicate::Token {
                    system: None,
                    code: Some(code.clone()),
                },
                [system, code] => ValuePredicate::Token {
                    system: Some((!system.is_empty()).then(|| system.clone())),
                    code: (!code.is_empty()).then(|| code.clone()),
                },
                _ => return Err(invalid(param, "a token is [system|]code")),
            }
        }
        SearchParamType::Date => {
            let (prefix, v) = Prefix::split(raw);
            let r =
                datetime::parse_range(v).ok_or_else(|| invalid(param, "not a valid FHIR date"))?;
            ValuePredicate::Date {
                prefix,
                lo: r.lo,
                hi: r.hi,
            }
        }
        SearchParamType::Number => {
            let (prefix, v) = Prefix::split(raw);
            let (value, lo, hi) = decimal_range(param, v)?;
            ValuePredicate::Quantity {
                prefix,
                value,
                lo,
                hi,
                system: None,
                code: None,
            }
        }
        SearchParamType::Quantity => {
            let (prefix, v) = Prefix::split(raw);
            let parts = split_escaped(v, '|');
            let (num, system, code) = match parts.as_slice() {
                [n] => (n.as_str(), None, None),
                [n, s, c] => (
                    n.as_str(),
                    (!s.is_empty()).then(|| s.clone()),
                    (!c.is_empty()).then(|| c.clone()),
                ),
                _ => return Err(invalid(param, "a quantity is [prefix]number|system|code")),
            };
            let (value, lo, hi) = decimal_range(param, num)?;
            ValuePredicate::Quantity {
                prefix,
                value,
                lo,
                hi,
                system,
                code,
            }
        }
        SearchParamType::Reference => {
            if modifier == Some("identifier") {
                let parts = split_escaped(raw, '|');
                return Ok(match parts.as_slice() {
                    [v] => ValuePredicate::ReferenceIdentifier {
                        system: None,
                        value: v.clone(),
                    },
                    [s, v] => ValuePredicate::ReferenceIdentifier {
                        system: (!s.is_empty()).then(|| s.clone()),
                        value: v.clone(),
                    },
                    _ => return Err(invalid(param, "an identifier is [system|]value")),
                });
            }
            if raw.contains("://") || raw.starts_with("urn:") {
                let local = crate::index::split_reference(raw);
                ValuePredicate::Reference {
                    target_type: local.as_ref().map(|l| l.0.clone()),
                    id: local.map(|l| l.1),
                    url: Some(raw.split('|').next().unwrap_or(raw).to_string()),
                }
            } else if let Some((t, id)) = raw.split_once('/') {
                ValuePredicate::Reference {
                    target_type: Some(t.to_string()),
                    id: Some(id.to_string()),
                    url: None,
                }
            } else {
                let target_type = modifier
                    .filter(|m| m.starts_with(|c: char| c.is_ascii_uppercase()))
                    .map(str::to_string);
                ValuePredicate::Reference {
                    target_type,
                    id: Some(raw.to_string()),
                    url: None,
                }
            }
        }
        SearchParamType::Uri => {
            let mode = match modifier {
                Some("above") => UriMatch::Above,
                Some("below") => UriMatch::Below,
                _ => UriMatch::Exact,
            };
            ValuePredicate::Uri {
                value: raw.to_string(),
                mode,
            }
        }
        SearchParamType::Composite | SearchParamType::Special => {
            return Err(invalid(
                param,
                "composite values are parsed by their components",
            ));
        }
    })
}

fn allowed_modifier(kind: SearchParamType, m: &str) -> bool {
    match m {
        "missing" => true,
        "exact" | "contains" => kind == SearchParamType::String,
        "text" | "not" => kind == SearchParamType::Token,
        "identifier" => kind == SearchParamType::Reference,
        "above" | "below" => kind == SearchParamType::Uri,
        t => kind == SearchParamType::Reference && t.starts_with(|c: char| c.is_ascii_uppercase()),
    }
}

/// Parses the parameters of a search on `resource_type`.
///
/// `params` are the decoded query pairs, in order. Under lenient handling, unknown parameters
/// are recorded in [`SearchQuery::ignored`]; under strict handling they are an error.
///
/// # Errors
/// An unknown type, an invalid value, or an unknown parameter under strict handling.
pub fn parse_query(
    defs: &Definitions,
    resource_type: &str,
    params: &[(String, String)],
    handling: Handling,
) -> Result<SearchQuery, SearchError> {
    if !defs.is_resource_type(resource_type) {
        return Err(SearchError::UnknownType(resource_type.to_string()));
    }
    let limits = SearchLimits::default();
    limits.check_params(params)?;
    let mut q = SearchQuery {
        resource_type: resource_type.to_string(),
        ..SearchQuery::default()
    };
    for (name, value) in params {
        let result = parse_one(defs, &mut q, name, value);
        match result {
            Ok(()) => {}
            // A parameter the node does not know may be ignored (and is reported); a known
            // one with a modifier it cannot honour may not: `family:bogus=x` would then
            // return every patient.
            Err(SearchError::UnknownParameter(p))
                if handling == Handling::Lenient
                    && !known_with_modifier(defs, resource_type, name) =>
            {
                q.ignored
                    .push((p, "unknown or unsupported search parameter".into()));
            }
            Err(SearchError::UnknownParameter(p))
                if known_with_modifier(defs, resource_type, name) =>
            {
                return Err(SearchError::Unsupported(p));
            }
            Err(e) => return Err(e),
        }
    }
    limits.check_query(&q)?;
    Ok(q)
}

/// Whether `name` is a parameter of `resource_type` the node knows, carrying a modifier
/// (`family:bogus`, `subject:Unknown.name`).
fn known_with_modifier(defs: &Definitions, resource_type: &str, name: &str) -> bool {
    let head = name.split('.').next().unwrap_or(name);
    match head.split_once(':') {
        Some((code, _)) if !code.is_empty() && !code.starts_with('_') => {
            defs.search_param(resource_type, code).is_some()
        }
        _ => false,
    }
}

fn parse_one(
    defs: &Definitions,
    q: &mut SearchQuery,
    name: &str,
    value: &str,
) -> Result<(), SearchError> {
    let rt = q.resource_type.clone();
    match name {
        "_count" => {
            let n: u32 = value
                .parse()
                .map_err(|_| invalid(name, "not a whole number"))?;
            q.count = Some(n);
        }
        "_page" => q.page = Some(value.to_string()),
        "_total" => {
            q.total = match value {
                "none" => TotalMode::None,
                "estimate" | "accurate" => TotalMode::Accurate,
                _ => return Err(invalid(name, "none, estimate or accurate")),
            }
        }
        "_summary" => {
            q.summary = Some(match value {
                "true" => SummaryMode::True,
                "text" => SummaryMode::Text,
                "data" => SummaryMode::Data,
                "count" => SummaryMode::Count,
                "false" => SummaryMode::False,
                _ => return Err(invalid(name, "true, text, data, count or false")),
            })
        }
        "_elements" => q.elements.extend(
            value
                .split(',')
                .map(|s| s.trim().to_string())
                .filter(|s| !s.is_empty()),
        ),
        "_sort" => {
            for key in value.split(',').filter(|k| !k.is_empty()) {
                let (descending, code) = match key.strip_prefix('-') {
                    Some(c) => (true, c),
                    None => (false, key),
                };
                // An unknown sort is refused, not ignored: the client would read the
                // order it asked for into an order it did not get.
                let def = defs
                    .search_param(&rt, code)
                    .ok_or_else(|| SearchError::Unsupported(format!("_sort={code}")))?;
                if matches!(
                    def.kind,
                    SearchParamType::Composite | SearchParamType::Special
                ) {
                    return Err(SearchError::Unsupported(format!("_sort={code}")));
                }
                q.sort.push(SortKey {
                    code: code.to_string(),
                    kind: def.kind,
                    descending,
                    rows_of: if def.union_of.is_empty() {
                        vec![code.to_string()]
                    } else {
                        def.union_of.clone()
                    },
                });
            }
        }
        "_include"
        | "_revinclude"
        | "_include:iterate"
        | "_revinclude:iterate"
        | "_include:recurse"
        | "_revinclude:recurse" => {
            let iterate = name.contains(':');
            let parts: Vec<&str> = value.split(':').collect();
            let inc = match parts.as_slice() {
                ["*"] => Include {
                    source_type: rt.clone(),
                    param: "*".into(),
                    target_type: None,
                    iterate,
                },
                [src, p] | [src, p, _] => {
                    if !defs.is_resource_type(src)
                        || (*p != "*"
                            && defs
                                .search_param(src, p)
                                .is_none_or(|d| d.kind != SearchParamType::Reference))
                    {
                        return Err(SearchError::UnknownParameter(format!("{name}={value}")));
                    }
                    Include {
                        source_type: src.to_string(),
                        param: p.to_string(),
                        target_type: parts.get(2).map(|t| t.to_string()),
                        iterate,
                    }
                }
                _ => return Err(invalid(name, "Type:param[:target]")),
            };
            if name.starts_with("_include") {
                q.includes.push(inc)
            } else {
                q.revincludes.push(inc)
            }
        }
        _ if CONTROL_PARAMS.contains(&name) => {}
        _ => {
            let c = parse_criterion(defs, &rt, name, value)?;
            q.criteria.push(c);
        }
    }
    if name != "_page" {
        q.applied.push((name.to_string(), value.to_string()));
    }
    Ok(())
}

/// Parses `name=value` as a criterion on `resource_type` (recursively for chains and `_has`).
pub fn parse_criterion(
    defs: &Definitions,
    resource_type: &str,
    name: &str,
    value: &str,
) -> Result<Criterion, SearchError> {
    let unknown = || SearchError::UnknownParameter(name.to_string());
    if let Some(rest) = name.strip_prefix("_has:") {
        // _has:Type:param:rest
        let mut it = rest.splitn(3, ':');
        let (Some(src), Some(code), Some(inner)) = (it.next(), it.next(), it.next()) else {
            return Err(unknown());
        };
        if !defs.is_resource_type(src) {
            return Err(unknown());
        }
        let def = defs.search_param(src, code).ok_or_else(unknown)?;
        if def.kind != SearchParamType::Reference
            || !(def.targets.is_empty() || def.targets.iter().any(|t| t == resource_type))
        {
            return Err(unknown());
        }
        let inner = parse_criterion(defs, src, inner, value)?;
        return Ok(Criterion::Has {
            source_type: src.to_string(),
            code: code.to_string(),
            inner: Box::new(inner),
        });
    }
    // Chain: `param[:Type].rest`
    if let Some((head, rest)) = name.split_once('.') {
        let (code, type_mod) = match head.split_once(':') {
            Some((c, t)) => (c, Some(t)),
            None => (head, None),
        };
        let def = defs.search_param(resource_type, code).ok_or_else(unknown)?;
        if def.kind != SearchParamType::Reference {
            return Err(unknown());
        }
        let targets: Vec<String> = match type_mod {
            Some(t) if def.targets.iter().any(|x| x == t) => vec![t.to_string()],
            Some(_) => return Err(unknown()),
            None => def.targets.clone(),
        };
        // The inner parameter must exist on at least one target.
        let mut viable = Vec::new();
        let mut inner_crit = None;
        for t in &targets {
            if let Ok(c) = parse_criterion(defs, t, rest, value) {
                viable.push(t.clone());
                inner_crit.get_or_insert(c);
            }
        }
        let inner = inner_crit.ok_or_else(unknown)?;
        return Ok(Criterion::Chain {
            code: code.to_string(),
            target_types: viable,
            inner: Box::new(inner),
        });
    }
    let (code, modifier) = match name.split_once(':') {
        Some((c, m)) => (c, Some(m)),
        None => (name, None),
    };
    let def = defs.search_param(resource_type, code).ok_or_else(unknown)?;
    if def.kind == SearchParamType::Special || (def.expression.is_none() && code != "_id") {
        return Err(unknown());
    }
    if let Some(m) = modifier {
        if !allowed_modifier(def.kind, m) {
            return Err(unknown());
        }
        if m == "missing" {
            let missing = match value {
                "true" => true,
                "false" => false,
                _ => return Err(invalid(name, "true or false")),
            };
            return Ok(over_members(
                def,
                Criterion::Missing {
                    code: code.to_string(),
                    kind: def.kind,
                    missing,
                },
            ));
        }
    }
    let any_of = split_escaped(value, ',')
        .iter()
        .map(|v| parse_param_value(def, name, modifier, v))
        .collect::<Result<Vec<_>, _>>()?;
    if any_of.is_empty() || value.is_empty() {
        return Err(invalid(name, "empty value"));
    }
    Ok(over_members(
        def,
        Criterion::Param {
            code: code.to_string(),
            kind: def.kind,
            any_of,
            negate: modifier == Some("not"),
        },
    ))
}

/// A criterion on a union parameter ([`SearchParamDef::union_of`]) as the same criterion on its
/// members, which hold the index rows: a value matches when some member has it, so `:not`
/// and `:missing=true` must hold for every member and the others for one. Other criteria are
/// returned unchanged.
fn over_members(def: &SearchParamDef, c: Criterion) -> Criterion {
    if def.union_of.is_empty() {
        return c;
    }
    let on = |member: &str| match &c {
        Criterion::Param {
            kind,
            any_of,
            negate,
            ..
        } => Criterion::Param {
            code: member.to_string(),
            kind: *kind,
            any_of: any_of
                .iter()
                .map(|p| match p {
                    // A composite's rows are named after it, per component: `code#0`.
                    ValuePredicate::Composite(parts) => ValuePredicate::Composite(
                        parts
                            .iter()
                            .enumerate()
                            .map(|(i, (_, v))| (format!("{member}#{i}"), v.clone()))
                            .collect(),
                    ),
                    other => other.clone(),
                })
                .collect(),
            negate: *negate,
        },
        Criterion::Missing { kind, missing, .. } => Criterion::Missing {
            code: member.to_string(),
            kind: *kind,
            missing: *missing,
        },
        other => other.clone(),
    };
    let every = matches!(
        c,
        Criterion::Param { negate: true, .. } | Criterion::Missing { missing: true, .. }
    );
    let members = def.union_of.iter().map(|m| on(m));
    if every {
        Criterion::AnyOf(vec![members.collect()])
    } else {
        Criterion::AnyOf(members.map(|m| vec![m]).collect())
    }
}

fn parse_param_value(
    def: &SearchParamDef,
    name: &str,
    modifier: Option<&str>,
    v: &str,
) -> Result<ValuePredicate, SearchError> {
    if def.kind != SearchParamType::Composite {
        return parse_value(name, def.kind, modifier, v);
    }
    let parts = split_escaped(v, '$');
    if parts.len() != def.components.len() {
        return Err(invalid(
            name,
            format!(
                "a composite value has {} parts joined by $",
                def.components.len()
            ),
        ));
    }
    let comps = def
        .components
        .iter()
        .zip(parts.iter())
        .enumerate()
        .map(|(i, (c, p))| {
            Ok((
                format!("{}#{i}", def.code),
                parse_value(name, c.kind, None, p)?,
            ))
        })
        .collect::<Result<Vec<_>, SearchError>>()?;
    Ok(ValuePredicate::Composite(comps))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn q(
        rt: &str,
        params: &[(&str, &str)],
        handling: Handling,
    ) -> Result<SearchQuery, SearchError> {
        let d = crate::definitions().unwrap();
        let p: Vec<(String, String)> = params
            .iter()
            .map(|(a, b)| (a.to_string(), b.to_string()))
            .collect();
        parse_query(d, rt, &p, handling)
    }

    #[test]
    fn parses_types_modifiers_and_prefixes() {
        let s = q(
            "Observation",
            &[
                ("code", "http://loinc.org|8302-2,x"),
                ("date", "ge2020-01"),
                ("value-quantity", "lt5.4|http://unitsofmeasure.org|mg"),
                ("subject:Patient", "p1"),
            ],
            Handling::Strict,
        )
        .unwrap();
        assert_eq!(s.criteria.len(), 4);
        assert!(matches!(&s.criteria[0], Criterion::Param { any_of, .. } if any_of.len() == 2));
        assert!(
            matches!(&s.criteria[1], Criterion::Param { any_of, .. } if matches!(any_of[0], ValuePredicate::Date { prefix: Prefix::Ge, .. }))
        );
        assert!(
            matches!(&s.criteria[2], Criterion::Param { any_of, .. } if matches!(&any_of[0], ValuePredicate::Quantity { prefix: Prefix::Lt, lo, hi, .. } if (*lo - 5.35).abs() < 1e-9 && (*hi - 5.45).abs() < 1e-9))
        );
        assert!(
            matches!(&s.criteria[3], Criterion::Param { any_of, .. } if matches!(&any_of[0], ValuePredicate::Reference { target_type: Some(t), .. } if t == "Patient"))
        );
    }

    #[test]
    fn bounds_and_meaning_changing_parameters_are_refused() {
        let many: Vec<(String, String)> = (0..33)
            .map(|i| ("family".to_string(), format!("n{i}")))
            .collect();
        let d = crate::definitions().unwrap();
        assert!(matches!(
            parse_query(d, "Patient", &many, Handling::Lenient),
            Err(SearchError::TooComplex {
                what: "parameters",
                ..
            })
        ));
        let ors = (0..101)
            .map(|i| format!("c{i}"))
            .collect::<Vec<_>>()
            .join(",");
        assert!(matches!(
            q("Observation", &[("code", &ors)], Handling::Lenient),
            Err(SearchError::TooComplex { .. })
        ));
        let deep = "subject:Patient.organization.partof.partof.name";
        assert!(matches!(
            q("Observation", &[(deep, "x")], Handling::Lenient),
            Err(SearchError::TooComplex {
                what: "links in a chain",
                ..
            })
        ));
        let includes: Vec<(&str, &str)> = (0..11)
            .map(|_| ("_include", "Observation:subject"))
            .collect();
        assert!(matches!(
            q("Observation", &includes, Handling::Lenient),
            Err(SearchError::TooComplex { .. })
        ));
        // Within bounds: a chain of three, a hundred codes.
        let hundred = (0..100)
            .map(|i| format!("c{i}"))
            .collect::<Vec<_>>()
            .join(",");
        assert!(q("Observation", &[("code", &hundred)], Handling::Strict).is_ok());
        assert!(
            q(
                "Observation",
                &[("subject:Patient.organization.name", "x")],
                Handling::Strict
            )
            .is_ok()
        );
        // An unknown modifier on a known parameter, and an unknown sort, are errors even
        // under lenient handling; an unknown parameter is still only reported.
        assert_eq!(
            q("Patient", &[("family:bogus", "x")], Handling::Lenient),
            Err(SearchError::Unsupported("family:bogus".into()))
        );
        assert!(matches!(
            q("Patient", &[("_sort", "bogus")], Handling::Lenient),
            Err(SearchError::Unsupported(_))
        ));
        assert_eq!(
            q("Patient", &[("bogus", "x")], Handling::Lenient)
                .unwrap()
                .ignored
                .len(),
            1
        );
    }

    #[test]
    fn parses_chains_has_and_composites() {
        let s = q(
            "Observation",
            &[
                ("subject:Patient.name", "smith"),
                ("code-value-quantity", "http://loinc.org|8302-2$gt100"),
            ],
            Handling::Strict,
        )
        .unwrap();
        assert!(
            matches!(&s.criteria[0], Criterion::Chain { target_types, .. } if target_types == &vec!["Patient".to_string()])
        );
        assert!(
            matches!(&s.criteria[1], Criterion::Param { any_of, .. } if matches!(&any_of[0], ValuePredicate::Composite(c) if c.len() == 2))
        );
        let s = q(
            "Patient",
            &[("_has:Observation:patient:code", "1234")],
            Handling::Strict,
        )
        .unwrap();
        assert!(
            matches!(&s.criteria[0], Criterion::Has { source_type, .. } if source_type == "Observation")
        );
    }

    #[test]
    fn unknown_parameters_follow_handling() {
        assert_eq!(
            q("Patient", &[("nonsense", "1")], Handling::Strict),
            Err(SearchError::UnknownParameter("nonsense".into()))
        );
        let s = q(
            "Patient",
            &[("nonsense", "1"), ("family", "x")],
            Handling::Lenient,
        )
        .unwrap();
        assert_eq!(s.ignored.len(), 1);
        assert_eq!(s.criteria.len(), 1);
        assert!(matches!(
            q("Patient", &[("birthdate", "notadate")], Handling::Lenient),
            Err(SearchError::InvalidValue { .. })
        ));
        // A modifier the node does not support on a known parameter is refused under either
        // handling (it is not an unknown parameter that could be ignored).
        for handling in [Handling::Strict, Handling::Lenient] {
            assert!(matches!(
                q("Patient", &[("family:below", "x")], handling),
                Err(SearchError::Unsupported(_))
            ));
        }
    }
}
