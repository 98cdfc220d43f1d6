//! The subset of FHIRPath that the R4 search-parameter expressions use.
//!
//! Every expression in the official `search-parameters.json` is built from: paths, `|` unions,
//! `[n]` indexing, `as T` / `.as(T)` type casts on choice elements, `.where(...)` with
//! `resolve() is T` or `field = 'literal'` criteria, `.exists()`, `and`, `=` and `!=`.
//! This module parses and evaluates exactly that; a unit test parses every shipped expression,
//! so a definition update that needs more fails loudly.

use serde_json::Value;

/// A parsed expression.
#[derive(Debug, Clone, PartialEq)]
pub enum Expr {
    /// The evaluation context (`$this`).
    This,
    /// A leading type name (`Patient` in `Patient.name`): filters the context by resource type.
    TypeFilter(String),
    /// `expr.name`.
    Member(Box<Expr>, String),
    /// `expr[n]`.
    Index(Box<Expr>, usize),
    /// `expr as T`, `expr.as(T)`, `expr.ofType(T)`.
    As(Box<Expr>, String),
    /// `expr is T`.
    Is(Box<Expr>, String),
    /// `expr.where(criteria)`.
    Where(Box<Expr>, Box<Expr>),
    /// `expr.resolve()`: yields the referenced resource's type only.
    Resolve(Box<Expr>),
    /// `expr.exists()`.
    Exists(Box<Expr>),
    /// `expr.first()`.
    First(Box<Expr>),
    /// `a | b`.
    Union(Box<Expr>, Box<Expr>),
    /// `a and b`.
    And(Box<Expr>, Box<Expr>),
    /// `a = b`.
    Eq(Box<Expr>, Box<Expr>),
    /// `a != b`.
    Ne(Box<Expr>, Box<Expr>),
    /// A string literal.
    Str(String),
    /// A boolean literal.
    Bool(bool),
}

/// An expression outside the supported subset.
#[derive(Debug, thiserror::Error, PartialEq)]
#[error("unsupported FHIRPath at {pos}: {message}")]
pub struct ParseError {
    /// Byte offset.
    pub pos: usize,
    /// What was wrong.
    pub message: String,
}

#[derive(Debug, Clone, PartialEq)]
enum Tok {
    Ident(String),
    Str(String),
    Num(usize),
    Sym(&'static str),
}

fn tokenize(s: &str) -> Result<Vec<(usize, Tok)>, ParseError> {
    let b = s.as_bytes();
    let mut i = 0;
    let mut out = Vec::new();
    while i < b.len() {
        let c = b[i];
        if c.is_ascii_whitespace() {
            i += 1;
        } else if c.is_ascii_alphabetic() || c == b'_' || c == b'$' {
            let start = i;
            while i < b.len() && (b[i].is_ascii_alphanumeric() || b[i] == b'_' || b[i] == b'$') {
                i += 1;
            }
            out.push((start, Tok::Ident(s[start..i].to_string())));
        } else if c.is_ascii_digit() {
            let start = i;
            while i < b.len() && b[i].is_ascii_digit() {
                i += 1;
            }
            let n = s[start..i].parse().map_err(|_| ParseError {
                pos: start,
                message: "number".into(),
            })?;
            out.push((start, Tok::Num(n)));
        } else if c == b'\'' {
            let start = i;
            i += 1;
            let mut lit = String::new();
            while i < b.len() && b[i] != b'\'' {
                lit.push(b[i] as char);
                i += 1;
            }
            if i >= b.len() {
                return Err(ParseError {
                    pos: start,
                    message: "unterminated string".into(),
                });
            }
            i += 1;
            out.push((start, Tok::Str(lit)));
        } else {
            let sym = match (c, b.get(i + 1)) {
                (b'!', Some(b'=')) => "!=",
                (b'.', _) => ".",
                (b'|', _) => "|",
                (b'(', _) => "(",
                (b')', _) => ")",
                (b'[', _) => "[",
                (b']', _) => "]",
                (b'=', _) => "=",
                (b',', _) => ",",
                _ => {
                    return Err(ParseError {
                        pos: i,
                        message: format!("unexpected '{}'", c as char),
                    });
                }
            };
            out.push((i, Tok::Sym(sym)));
            i += sym.len();
        }
    }
    Ok(out)
}

struct Parser {
    toks: Vec<(usize, Tok)>,
    pos: usize,
}

impl Parser {
    fn peek(&self) -> Option<&Tok> {
        self.toks.get(self.pos).map(|t| &t.1)
    }
    fn at(&self) -> usize {
        self.toks.get(self.pos).map_or(usize::MAX, |t| t.0)
    }
    fn err<T>(&self, message: &str) -> Result<T, ParseError> {
        Err(ParseError {
            pos: self.at(),
            message: message.into(),
        })
    }
    fn eat_sym(&mut self, s: &str) -> bool {
        if matches!(self.peek(), Some(Tok::Sym(x)) if *x == s) {
            self.pos += 1;
            true
        } else {
            false
        }
    }
    fn eat_ident(&mut self, s: &str) -> bool {
        if matches!(self.peek(), Some(Tok::Ident(x)) if x == s) {
            self.pos += 1;
            true
        } else {
            false
        }
    }
    fn ident(&mut self) -> Result<String, ParseError> {
        match self.peek().cloned() {
            Some(Tok::Ident(x)) => {
                self.pos += 1;
                Ok(x)
            }
            _ => self.err("expected a name"),
        }
    }
    fn expect(&mut self, s: &str) -> Result<(), ParseError> {
        if self.eat_sym(s) {
            Ok(())
        } else {
            self.err(&format!("expected '{s}'"))
        }
    }

    // Precedence, lowest first: and, (= !=), |, (is as), postfix.
    fn and(&mut self) -> Result<Expr, ParseError> {
        let mut left = self.equality()?;
        while self.eat_ident("and") {
            left = Expr::And(Box::new(left), Box::new(self.equality()?));
        }
        Ok(left)
    }
    fn equality(&mut self) -> Result<Expr, ParseError> {
        let mut left = self.union()?;
        loop {
            if self.eat_sym("=") {
                left = Expr::Eq(Box::new(left), Box::new(self.union()?));
            } else if self.eat_sym("!=") {
                left = Expr::Ne(Box::new(left), Box::new(self.union()?));
            } else {
                return Ok(left);
            }
        }
    }
    fn union(&mut self) -> Result<Expr, ParseError> {
        let mut left = self.type_op()?;
        while self.eat_sym("|") {
            left = Expr::Union(Box::new(left), Box::new(self.type_op()?));
        }
        Ok(left)
    }
    fn type_op(&mut self) -> Result<Expr, ParseError> {
        let mut left = self.postfix()?;
        loop {
            if self.eat_ident("as") {
                left = Expr::As(Box::new(left), self.ident()?);
            } else if self.eat_ident("is") {
                left = Expr::Is(Box::new(left), self.ident()?);
            } else {
                return Ok(left);
            }
        }
    }
    fn postfix(&mut self) -> Result<Expr, ParseError> {
        let mut e = self.primary()?;
        loop {
            if self.eat_sym(".") {
                let name = self.ident()?;
                if self.eat_sym("(") {
                    e = self.call(e, &name)?;
                } else {
                    e = Expr::Member(Box::new(e), name);
                }
            } else if self.eat_sym("[") {
                let n = match self.peek().cloned() {
                    Some(Tok::Num(n)) => n,
                    _ => return self.err("expected an index"),
                };
                self.pos += 1;
                self.expect("]")?;
                e = Expr::Index(Box::new(e), n);
            } else {
                return Ok(e);
            }
        }
    }
    fn call(&mut self, target: Expr, name: &str) -> Result<Expr, ParseError> {
        let t = Box::new(target);
        let e = match name {
            "where" => Expr::Where(t, Box::new(self.and()?)),
            "as" | "ofType" => Expr::As(t, self.ident()?),
            "resolve" => Expr::Resolve(t),
            "exists" => Expr::Exists(t),
            "first" => Expr::First(t),
            _ => return self.err(&format!("function {name}() is not supported")),
        };
        self.expect(")")?;
        Ok(e)
    }
    fn primary(&mut self) -> Result<Expr, ParseError> {
        match self.peek().cloned() {
            Some(Tok::Sym("(")) => {
                self.pos += 1;
                let e = self.and()?;
                self.expect(")")?;
                Ok(e)
            }
            Some(Tok::Str(s)) => {
                self.pos += 1;
                Ok(Expr::Str(s))
            }
            Some(Tok::Ident(name)) => {
                self.pos += 1;
                if self.eat_sym("(") {
                    return self.call(Expr::This, &name);
                }
                Ok(match name.as_str() {
                    "true" => Expr::Bool(true),
                    "false" => Expr::Bool(false),
                    "$this" => Expr::This,
                    n if n.starts_with(|c: char| c.is_ascii_uppercase()) => Expr::TypeFilter(name),
                    _ => Expr::Member(Box::new(Expr::This), name),
                })
            }
            _ => self.err("expected an expression"),
        }
    }
}

/// Parses an expression of the supported subset.
///
/// # Errors
/// When the expression uses syntax outside the subset.
pub fn parse(src: &str) -> Result<Expr, ParseError> {
    let mut p = Parser {
        toks: tokenize(src)?,
        pos: 0,
    };
    let e = p.and()?;
    if p.pos != p.toks.len() {
        return p.err("trailing input");
    }
    Ok(e)
}

/// Splits `a | b | c` at top level (outside parentheses and quotes).
/// The top-level branches of a union expression (`A | (B as C)` gives `A` and `(B as C)`),
/// trimmed; a single branch for an expression without a top-level `|`.
pub fn split_union(src: &str) -> Vec<&str> {
    let mut parts = Vec::new();
    let (mut depth, mut quoted, mut start) = (0i32, false, 0);
    for (i, c) in src.char_indices() {
        match c {
            '\'' => quoted = !quoted,
            '(' if !quoted => depth += 1,
            ')' if !quoted => depth -= 1,
            '|' if !quoted && depth == 0 => {
                parts.push(src[start..i].trim());
                start = i + 1;
            }
            _ => {}
        }
    }
    parts.push(src[start..].trim());
    parts
}

/// Keeps the union branches of a shared expression that apply to `resource_type`.
///
/// `Patient.name | Practitioner.name` narrowed to `Patient` is `Patient.name`; branches rooted at
/// `Resource` or `DomainResource` apply to every type.
pub fn narrow_to_type(src: &str, resource_type: &str) -> String {
    let kept: Vec<&str> = split_union(src)
        .into_iter()
        .filter(|part| {
            let head: String = part
                .trim_start_matches('(')
                .chars()
                .take_while(|c| c.is_ascii_alphanumeric())
                .collect();
            head == resource_type || head == "Resource" || head == "DomainResource"
        })
        .collect();
    kept.join(" | ")
}

/// A value produced by evaluation.
#[derive(Debug, Clone, PartialEq)]
pub enum Node<'a> {
    /// A JSON value from the resource, with the type suffix of the choice element it came from
    /// (`Quantity` for `valueQuantity`).
    Json(&'a Value, Option<&'a str>),
    /// A boolean result.
    Bool(bool),
    /// A string literal.
    Str(String),
    /// The type of a resolved reference (only the type is known without a lookup).
    Resolved(String),
}

impl<'a> Node<'a> {
    /// The JSON value, if this node is one.
    pub fn json(&self) -> Option<&'a Value> {
        match self {
            Node::Json(v, _) => Some(v),
            _ => None,
        }
    }
}

fn push_flat<'a>(out: &mut Vec<Node<'a>>, v: &'a Value, hint: Option<&'a str>) {
    match v {
        Value::Array(items) => items.iter().for_each(|i| out.push(Node::Json(i, hint))),
        Value::Null => {}
        _ => out.push(Node::Json(v, hint)),
    }
}

fn truthy(nodes: &[Node<'_>]) -> bool {
    matches!(nodes, [Node::Bool(true)])
}

/// The resource type a reference string points at (`Patient/1`, `http://x/fhir/Patient/1`).
pub fn reference_type(reference: &str) -> Option<&str> {
    let path = reference.split(['?', '#']).next().unwrap_or_default();
    let mut segs: Vec<&str> = path.split('/').collect();
    // Drop a `_history/n` suffix.
    if segs.len() >= 4 && segs[segs.len() - 2] == "_history" {
        segs.truncate(segs.len() - 2);
    }
    if segs.len() < 2 {
        return None;
    }
    let t = segs[segs.len() - 2];
    t.starts_with(|c: char| c.is_ascii_uppercase()).then_some(t)
}

fn literal_eq(a: &Node<'_>, b: &Node<'_>) -> Option<bool> {
    let lhs = match a {
        Node::Json(Value::String(s), _) => Value::String(s.clone()),
        Node::Json(Value::Bool(x), _) | Node::Bool(x) => Value::Bool(*x),
        Node::Json(v @ Value::Number(_), _) => (*v).clone(),
        Node::Str(s) => Value::String(s.clone()),
        _ => return None,
    };
    let rhs = match b {
        Node::Json(v, _) => (*v).clone(),
        Node::Bool(x) => Value::Bool(*x),
        Node::Str(s) => Value::String(s.clone()),
        Node::Resolved(_) => return None,
    };
    Some(lhs == rhs)
}

/// Evaluates `expr` against a resource (or element) `root`.
pub fn evaluate<'a>(expr: &Expr, root: &'a Value) -> Vec<Node<'a>> {
    eval(expr, &[Node::Json(root, None)])
}

fn eval<'a>(expr: &Expr, ctx: &[Node<'a>]) -> Vec<Node<'a>> {
    match expr {
        Expr::This => ctx.to_vec(),
        Expr::TypeFilter(t) => ctx
            .iter()
            .filter(|n| match n {
                Node::Json(v, _) => {
                    t == "Resource"
                        || t == "DomainResource"
                        || v.get("resourceType").and_then(Value::as_str) == Some(t.as_str())
                }
                _ => false,
            })
            .cloned()
            .collect(),
        Expr::Member(target, name) => {
            let mut out = Vec::new();
            for n in eval(target, ctx) {
                let Node::Json(Value::Object(map), _) = n else {
                    continue;
                };
                if let Some(v) = map.get(name.as_str()) {
                    push_flat(&mut out, v, None);
                } else {
                    // A choice element: `value` matches `valueQuantity`, `valueString`...
                    for (k, v) in map {
                        if let Some(suffix) = k.strip_prefix(name.as_str())
                            && suffix.starts_with(|c: char| c.is_ascii_uppercase())
                        {
                            push_flat(&mut out, v, Some(suffix));
                        }
                    }
                }
            }
            out
        }
        Expr::Index(target, i) => eval(target, ctx).into_iter().nth(*i).into_iter().collect(),
        Expr::First(target) => eval(target, ctx).into_iter().take(1).collect(),
        Expr::As(target, t) => eval(target, ctx)
            .into_iter()
            .filter(|n| match n {
                Node::Json(_, Some(hint)) => hint.eq_ignore_ascii_case(t),
                // Not a choice element: the declared type already matches.
                Node::Json(_, None) => true,
                _ => false,
            })
            .collect(),
        Expr::Is(target, t) => {
            let nodes = eval(target, ctx);
            match nodes.as_slice() {
                [Node::Resolved(rt)] => vec![Node::Bool(rt == t)],
                [Node::Json(v, hint)] => vec![Node::Bool(
                    hint.is_some_and(|h| h.eq_ignore_ascii_case(t))
                        || v.get("resourceType").and_then(Value::as_str) == Some(t.as_str()),
                )],
                _ => Vec::new(),
            }
        }
        Expr::Resolve(target) => eval(target, ctx)
            .into_iter()
            .filter_map(|n| {
                let reference = n.json()?.get("reference")?.as_str()?;
                reference_type(reference).map(|t| Node::Resolved(t.to_string()))
            })
            .collect(),
        Expr::Where(target, criteria) => eval(target, ctx)
            .into_iter()
            .filter(|n| truthy(&eval(criteria, std::slice::from_ref(n))))
            .collect(),
        Expr::Exists(target) => vec![Node::Bool(!eval(target, ctx).is_empty())],
        Expr::Union(a, b) => {
            let mut out = eval(a, ctx);
            for n in eval(b, ctx) {
                if !out.contains(&n) {
                    out.push(n);
                }
            }
            out
        }
        Expr::And(a, b) => {
            let (l, r) = (eval(a, ctx), eval(b, ctx));
            match (l.as_slice(), r.as_slice()) {
                ([Node::Bool(false)], _) | (_, [Node::Bool(false)]) => vec![Node::Bool(false)],
                ([Node::Bool(true)], [Node::Bool(true)]) => vec![Node::Bool(true)],
                _ => Vec::new(),
            }
        }
        Expr::Eq(a, b) | Expr::Ne(a, b) => {
            let (l, r) = (eval(a, ctx), eval(b, ctx));
            match (l.as_slice(), r.as_slice()) {
                ([x], [y]) => match literal_eq(x, y) {
                    Some(eq) => vec![Node::Bool(if matches!(expr, Expr::Eq(..)) {
                        eq
                    } else {
                        !eq
                    })],
                    None => Vec::new(),
                },
                _ => Vec::new(),
            }
        }
        Expr::Str(s) => vec![Node::Str(s.clone())],
        Expr::Bool(b) => vec![Node::Bool(*b)],
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn parses_every_shipped_expression() {
        let d = crate::definitions().unwrap();
        let mut count = 0;
        for t in d.resource_types() {
            for p in d.search_params(t).into_iter().flat_map(|m| m.values()) {
                if !p.expression_text.is_empty() {
                    assert!(
                        p.expression.is_some(),
                        "{t}.{} = {}",
                        p.code,
                        p.expression_text
                    );
                    count += 1;
                }
            }
        }
        assert!(count > 2500, "{count}");
    }

    #[test]
    fn evaluates_choice_casts_and_where() {
        let obs = json!({"resourceType": "Observation",
            "subject": {"reference": "Patient/1"},
            "valueQuantity": {"value": 5}, "component": [{"valueString": "x"}]});
        let e = parse("(Observation.value as Quantity)").unwrap();
        assert_eq!(evaluate(&e, &obs).len(), 1);
        let e = parse("Observation.value.as(String)").unwrap();
        assert_eq!(evaluate(&e, &obs).len(), 0);
        let e = parse("Observation.subject.where(resolve() is Patient)").unwrap();
        assert_eq!(evaluate(&e, &obs).len(), 1);
        let e = parse("Observation.subject.where(resolve() is Group)").unwrap();
        assert_eq!(evaluate(&e, &obs).len(), 0);
        let e = parse("Patient.name").unwrap();
        assert!(evaluate(&e, &obs).is_empty(), "type filter");
    }

    #[test]
    fn evaluates_deceased_and_telecom() {
        let p = json!({"resourceType": "Patient", "deceasedBoolean": false,
            "telecom": [{"system": "phone", "value": "1"}, {"system": "email", "value": "a@b"}]});
        let e = parse("Patient.deceased.exists() and Patient.deceased != false").unwrap();
        assert_eq!(evaluate(&e, &p), vec![Node::Bool(false)]);
        let e = parse("Patient.telecom.where(system='email')").unwrap();
        let got = evaluate(&e, &p);
        assert_eq!(got.len(), 1);
        assert_eq!(got[0].json().unwrap()["value"], "a@b");
    }

    #[test]
    fn narrows_shared_expressions() {
        assert_eq!(
            narrow_to_type("Patient.name | Person.name", "Person"),
            "Person.name"
        );
        assert_eq!(
            narrow_to_type("(A.value as Quantity) | (B.x as Range)", "B"),
            "(B.x as Range)"
        );
        assert_eq!(narrow_to_type("Resource.id", "Patient"), "Resource.id");
        assert_eq!(
            reference_type("http://h/fhir/Patient/1/_history/2"),
            Some("Patient")
        );
        assert_eq!(reference_type("urn:uuid:1"), None);
    }
}
