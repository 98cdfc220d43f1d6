//! Parsing one message: delimiters, segments, fields, and lazy access to repetitions,
//! components and sub-components.

use std::borrow::Cow;

use crate::{charset, escape};

/// The five delimiters of a message, from MSH-1 and MSH-2 (and a sixth, the truncation
/// character, from v2.7 on).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Delimiters {
    /// MSH-1, `|` by default.
    pub field: char,
    /// `^` by default.
    pub component: char,
    /// `~` by default.
    pub repetition: char,
    /// `\` by default; some senders send none, and then nothing is escaped.
    pub escape: Option<char>,
    /// `&` by default.
    pub subcomponent: char,
    /// v2.7's truncation character (`#`), when MSH-2 names one.
    pub truncation: Option<char>,
}

impl Default for Delimiters {
    fn default() -> Self {
        Self {
            field: '|',
            component: '^',
            repetition: '~',
            escape: Some('\\'),
            subcomponent: '&',
            truncation: None,
        }
    }
}

/// The sub-component separator of a message whose MSH-2 named none and whose default (`&`)
/// another delimiter took: a control character, so no value holds it by chance.
const NO_SUBCOMPONENT: char = '\u{1F}';

impl Delimiters {
    /// MSH-2 as written for these delimiters.
    pub fn encoding_characters(&self) -> String {
        let mut s = String::with_capacity(5);
        s.push(self.component);
        s.push(self.repetition);
        if let Some(e) = self.escape {
            s.push(e);
        }
        // A message that named no sub-component separator gets none written back: the
        // stand-in is not a character a sender chose (and is refused as one on reading).
        if self.subcomponent != NO_SUBCOMPONENT {
            s.push(self.subcomponent);
        }
        if let Some(t) = self.truncation {
            s.push(t);
        }
        s
    }

    /// Reads the delimiters from the start of a header segment (`MSH|^~\&|...`, or FHS, BHS).
    ///
    /// # Errors
    /// When the separator or the encoding characters are missing, repeated or alphanumeric.
    pub fn from_header(line: &str) -> Result<Self, ParseError> {
        let name = line.get(..3).unwrap_or(line);
        let mut chars = line.chars().skip(3);
        let field = chars.next().ok_or_else(|| {
            ParseError::at(
                name,
                1,
                1,
                "the field separator (the 4th character) is missing",
            )
        })?;
        if field.is_alphanumeric() || field.is_whitespace() || field.is_control() {
            return Err(ParseError::at(
                name,
                1,
                1,
                "the field separator must not be a letter, a digit, a space or a control character",
            ));
        }
        let encoding: Vec<char> = chars.take_while(|c| *c != field).collect();
        if encoding.len() < 2 || encoding.len() > 5 {
            return Err(ParseError::at(
                name,
                1,
                2,
                "the encoding characters must be 2 to 5 characters (component, repetition, escape, sub-component, truncation)",
            ));
        }
        let mut seen = vec![field];
        for c in &encoding {
            // A control character (a NUL, say) is no delimiter: the message's bytes between
            // segments are trimmed of them, so it would not survive being written back.
            if c.is_alphanumeric() || c.is_whitespace() || c.is_control() || seen.contains(c) {
                return Err(ParseError::at(
                    name,
                    1,
                    2,
                    "the encoding characters must be distinct and not letters, digits, spaces or control characters",
                ));
            }
            seen.push(*c);
        }
        // Some senders send fewer than four; what is missing takes its default where that
        // default is not taken by another delimiter.
        let pick = |i: usize, default: char| -> Option<char> {
            encoding
                .get(i)
                .copied()
                .or_else(|| (!seen.contains(&default)).then_some(default))
        };
        let component = encoding[0];
        let repetition = encoding[1];
        let escape = pick(2, '\\');
        let subcomponent = pick(3, '&').unwrap_or(NO_SUBCOMPONENT);
        Ok(Self {
            field,
            component,
            repetition,
            escape,
            subcomponent,
            truncation: encoding.get(4).copied(),
        })
    }
}

/// What could not be parsed, and where: the segment (its name and its place in the
/// message), the field, and why. It never holds a value from the message.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{}", self.describe())]
pub struct ParseError {
    /// The segment's name, when one was read.
    pub segment: Option<String>,
    /// Its place in the message, from 1.
    pub segment_index: Option<usize>,
    /// The field, numbered as HL7 numbers it (MSH-1 is the field separator).
    pub field: Option<usize>,
    /// Why, in words that name no value.
    pub reason: String,
}

impl ParseError {
    /// An error in a message as a whole.
    pub fn message(reason: impl Into<String>) -> Self {
        Self {
            segment: None,
            segment_index: None,
            field: None,
            reason: reason.into(),
        }
    }

    /// An error at a segment's field.
    pub fn at(segment: &str, index: usize, field: usize, reason: impl Into<String>) -> Self {
        Self {
            segment: Some(segment.to_string()),
            segment_index: Some(index),
            field: Some(field),
            reason: reason.into(),
        }
    }

    fn describe(&self) -> String {
        match (&self.segment, self.field) {
            (Some(s), Some(f)) => format!("{s}-{f}: {}", self.reason),
            (Some(s), None) => format!("{s}: {}", self.reason),
            _ => self.reason.clone(),
        }
    }
}

/// Whether a segment's name reads its fields as MSH does (field 1 is the separator itself).
fn is_header(name: &str) -> bool {
    matches!(name, "MSH" | "FHS" | "BHS")
}

/// One segment: its text and the bounds of its fields.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Segment {
    text: String,
    /// Byte ranges of the parts between field separators; part 0 is the name.
    parts: Vec<(u32, u32)>,
    delimiters: Delimiters,
}

impl Segment {
    /// Cuts a segment's text at its field separators.
    pub fn new(text: String, delimiters: Delimiters) -> Self {
        let mut parts = Vec::with_capacity(16);
        let mut start = 0usize;
        for (i, c) in text.char_indices() {
            if c == delimiters.field {
                parts.push((start as u32, i as u32));
                start = i + c.len_utf8();
            }
        }
        parts.push((start as u32, text.len() as u32));
        Self {
            text,
            parts,
            delimiters,
        }
    }

    /// The segment's name (`PID`, `OBX`, `ZPI`).
    pub fn name(&self) -> &str {
        self.part(0).unwrap_or_default()
    }

    /// The segment as it was received (after line ends were normalised).
    pub fn text(&self) -> &str {
        &self.text
    }

    /// The delimiters it is read with.
    pub fn delimiters(&self) -> &Delimiters {
        &self.delimiters
    }

    fn part(&self, i: usize) -> Option<&str> {
        let (a, b) = *self.parts.get(i)?;
        self.text.get(a as usize..b as usize)
    }

    /// The highest field number present.
    pub fn field_count(&self) -> usize {
        if is_header(self.name()) {
            self.parts.len()
        } else {
            self.parts.len() - 1
        }
    }

    /// Field `n` as HL7 numbers it (from 1; MSH-1 is the field separator, MSH-2 the
    /// encoding characters). An absent field reads as empty.
    pub fn field(&self, n: usize) -> Field<'_> {
        let header = is_header(self.name());
        let (raw, literal) = match (header, n) {
            (_, 0) => ("", true),
            (true, 1) => {
                // The separator sits between part 0 (the name) and part 1.
                let at = self.parts.first().map_or(0, |p| p.1 as usize);
                let sep = self.text.get(at..).and_then(|s| s.chars().next());
                (sep.map_or("", |c| &self.text[at..at + c.len_utf8()]), true)
            }
            (true, 2) => (self.part(1).unwrap_or(""), true),
            (true, n) => (self.part(n - 1).unwrap_or(""), false),
            (false, n) => (self.part(n).unwrap_or(""), false),
        };
        Field {
            raw,
            delimiters: self.delimiters,
            literal,
        }
    }

    /// Shorthand: field `n`, first repetition, component `c`, decoded.
    pub fn get(&self, n: usize, c: usize) -> Cow<'_, str> {
        self.field(n).first().get(c)
    }
}

/// A field: one or more repetitions.
#[derive(Debug, Clone, Copy)]
pub struct Field<'a> {
    raw: &'a str,
    delimiters: Delimiters,
    /// MSH-1 and MSH-2 are never split or decoded.
    literal: bool,
}

impl<'a> Field<'a> {
    /// The field as written, escapes and all.
    pub fn raw(&self) -> &'a str {
        self.raw
    }

    /// Whether nothing was sent.
    pub fn is_empty(&self) -> bool {
        self.raw.is_empty()
    }

    /// `""`: HL7's explicit null (delete the value the receiver holds).
    pub fn is_null(&self) -> bool {
        self.raw == "\"\""
    }

    /// Its repetitions (one, for a field without repetition separators; none when empty).
    pub fn repetitions(&self) -> impl Iterator<Item = Repetition<'a>> + 'a {
        let d = self.delimiters;
        let literal = self.literal;
        let parts: Box<dyn Iterator<Item = &'a str> + 'a> = if self.raw.is_empty() {
            Box::new(std::iter::empty())
        } else if literal {
            Box::new(std::iter::once(self.raw))
        } else {
            Box::new(self.raw.split(d.repetition))
        };
        parts.map(move |raw| Repetition {
            raw,
            delimiters: d,
            literal,
        })
    }

    /// The first repetition (empty when the field is).
    pub fn first(&self) -> Repetition<'a> {
        let raw = if self.literal {
            self.raw
        } else {
            self.raw
                .split(self.delimiters.repetition)
                .next()
                .unwrap_or("")
        };
        Repetition {
            raw,
            delimiters: self.delimiters,
            literal: self.literal,
        }
    }

    /// The first repetition's first component, decoded.
    pub fn value(&self) -> Cow<'a, str> {
        self.first().get(1)
    }
}

/// One repetition of a field: components and their sub-components.
#[derive(Debug, Clone, Copy)]
pub struct Repetition<'a> {
    raw: &'a str,
    delimiters: Delimiters,
    literal: bool,
}

impl<'a> Repetition<'a> {
    /// The repetition as written.
    pub fn raw(&self) -> &'a str {
        self.raw
    }

    /// Whether it holds nothing.
    pub fn is_empty(&self) -> bool {
        self.raw.is_empty()
    }

    /// Component `c` (from 1) as written, sub-components and escapes included.
    pub fn component(&self, c: usize) -> &'a str {
        if self.literal {
            return if c == 1 { self.raw } else { "" };
        }
        if c == 0 {
            return "";
        }
        self.raw
            .split(self.delimiters.component)
            .nth(c - 1)
            .unwrap_or("")
    }

    /// How many components were sent.
    pub fn component_count(&self) -> usize {
        if self.raw.is_empty() {
            0
        } else {
            self.raw.split(self.delimiters.component).count()
        }
    }

    /// Sub-component `s` of component `c` (both from 1), decoded.
    pub fn sub(&self, c: usize, s: usize) -> Cow<'a, str> {
        let comp = self.component(c);
        if self.literal {
            return Cow::Borrowed(if s == 1 { comp } else { "" });
        }
        let raw = if s == 0 {
            ""
        } else {
            comp.split(self.delimiters.subcomponent)
                .nth(s - 1)
                .unwrap_or("")
        };
        escape::decode(raw, &self.delimiters)
    }

    /// Component `c`'s first sub-component, decoded: what most mappings want.
    pub fn get(&self, c: usize) -> Cow<'a, str> {
        self.sub(c, 1)
    }

    /// Component `c` whole (its sub-components joined as sent), decoded.
    pub fn text(&self, c: usize) -> Cow<'a, str> {
        let comp = self.component(c);
        if self.literal {
            return Cow::Borrowed(comp);
        }
        escape::decode(comp, &self.delimiters)
    }
}

/// A parsed message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Message {
    delimiters: Delimiters,
    segments: Vec<Segment>,
    warnings: Vec<String>,
}

/// Control characters and padding that are never part of a segment: NUL, MLLP's start and
/// end bytes, DOS end-of-file.
fn is_padding(c: char) -> bool {
    matches!(c, '\0' | '\u{0B}' | '\u{1C}' | '\u{1A}' | '\u{FEFF}')
}

/// Whether a line starts as a segment does: three letters or digits (the first a letter)
/// followed by the field separator or the end of the line.
pub(crate) fn looks_like_segment(line: &str, field: char) -> bool {
    let b = line.as_bytes();
    b.len() >= 3
        && b[0].is_ascii_uppercase()
        && (b[1].is_ascii_uppercase() || b[1].is_ascii_digit())
        && (b[2].is_ascii_uppercase() || b[2].is_ascii_digit())
        && (b.len() == 3 || line[3..].starts_with(field))
}

/// Splits text into lines at CR, LF or CRLF, trimming padding characters, skipping blank
/// lines.
pub(crate) fn lines(text: &str) -> impl Iterator<Item = &str> {
    text.split(['\r', '\n'])
        .map(|l| l.trim_matches(is_padding))
        .filter(|l| !l.trim().is_empty())
}

/// Groups lines into segments: a line that does not start as a segment continues the one
/// before it (a sender that wrapped a long text field), joined by an escaped line break;
/// such lines after the last segment are trailing bytes, and are dropped with a warning.
pub(crate) fn group_segments(
    lines: Vec<&str>,
    d: &Delimiters,
    warnings: &mut Vec<String>,
) -> Vec<String> {
    let mut out: Vec<String> = Vec::with_capacity(lines.len());
    let last_segment = lines.iter().rposition(|l| looks_like_segment(l, d.field));
    for (i, line) in lines.iter().enumerate() {
        if looks_like_segment(line, d.field) {
            out.push((*line).to_string());
        } else if last_segment.is_some_and(|last| i < last) {
            // A header never wraps, and a segment without fields has no field to continue.
            let prev = out
                .last_mut()
                .filter(|p| p.len() > 3 && !is_header(p.get(..3).unwrap_or("")));
            match (prev, d.escape) {
                (Some(prev), Some(e)) => {
                    prev.push(e);
                    prev.push_str(".br");
                    prev.push(e);
                    prev.push_str(line);
                }
                (Some(prev), None) => {
                    prev.push(' ');
                    prev.push_str(line);
                }
                (None, _) => warnings.push("skipped a line that is not a segment".into()),
            }
        } else {
            warnings.push(format!(
                "skipped {} characters after the last segment",
                line.chars().count()
            ));
        }
    }
    out
}

impl Message {
    /// Parses a message from the bytes a sender sent: a byte-order mark, padding and line
    /// ends are handled, and the text is decoded by MSH-18.
    ///
    /// # Errors
    /// When there is no MSH segment, its delimiters are unreadable, or MSH-18 names a
    /// character set that is not ASCII-compatible.
    pub fn parse(bytes: &[u8]) -> Result<Self, ParseError> {
        let (text, mut warnings) = charset::decode_message(bytes)?;
        let mut m = Self::parse_str(&text)?;
        warnings.append(&mut m.warnings);
        m.warnings = warnings;
        Ok(m)
    }

    /// Parses a message that is already text.
    ///
    /// # Errors
    /// As [`Message::parse`].
    pub fn parse_str(text: &str) -> Result<Self, ParseError> {
        let start = text
            .find("MSH")
            .ok_or_else(|| ParseError::message("no MSH segment: a message starts with MSH"))?;
        let mut warnings = Vec::new();
        if !text[..start]
            .trim_matches(|c: char| c.is_whitespace() || is_padding(c))
            .is_empty()
        {
            warnings.push("skipped text before MSH".into());
        }
        let body = &text[start..];
        let first_line = body.split(['\r', '\n']).next().unwrap_or(body);
        let delimiters = Delimiters::from_header(first_line)?;
        let grouped = group_segments(lines(body).collect(), &delimiters, &mut warnings);
        Ok(Self::from_lines(grouped, delimiters, warnings))
    }

    pub(crate) fn from_lines(lines: Vec<String>, d: Delimiters, warnings: Vec<String>) -> Self {
        Self {
            delimiters: d,
            segments: lines.into_iter().map(|l| Segment::new(l, d)).collect(),
            warnings,
        }
    }

    /// Builds a message from segments already cut (the encoder's output, a batch's part).
    pub fn from_segments(segments: Vec<Segment>, delimiters: Delimiters) -> Self {
        Self {
            delimiters,
            segments,
            warnings: Vec::new(),
        }
    }

    /// The delimiters from MSH-1 and MSH-2.
    pub fn delimiters(&self) -> &Delimiters {
        &self.delimiters
    }

    /// Every segment, MSH first.
    pub fn segments(&self) -> &[Segment] {
        &self.segments
    }

    /// What the parser tolerated (skipped bytes, an undeclared character set), in words
    /// that name no value.
    pub fn warnings(&self) -> &[String] {
        &self.warnings
    }

    /// The MSH segment.
    pub fn msh(&self) -> &Segment {
        // `parse_str` starts the text at "MSH", and a line starting so is a segment.
        &self.segments[0]
    }

    /// The first segment with this name.
    pub fn segment(&self, name: &str) -> Option<&Segment> {
        self.segments.iter().find(|s| s.name() == name)
    }

    /// Every segment with this name, in order.
    pub fn segments_named<'a>(&'a self, name: &'a str) -> impl Iterator<Item = &'a Segment> {
        self.segments.iter().filter(move |s| s.name() == name)
    }

    /// MSH-9: the message code, trigger event and structure (`ORU`, `R01`, `ORU_R01`).
    pub fn message_type(&self) -> (Cow<'_, str>, Cow<'_, str>, Cow<'_, str>) {
        let f = self.msh().field(9);
        let r = f.first();
        (r.get(1), r.get(2), r.get(3))
    }

    /// MSH-10, the message control id.
    pub fn control_id(&self) -> Cow<'_, str> {
        self.msh().field(10).value()
    }

    /// MSH-12's version id (`2.5.1`).
    pub fn version(&self) -> Cow<'_, str> {
        self.msh().field(12).value()
    }

    /// MSH-3, the sending application's namespace id (its first component).
    pub fn sending_application(&self) -> Cow<'_, str> {
        self.msh().field(3).value()
    }

    /// MSH-4, the sending facility's namespace id.
    pub fn sending_facility(&self) -> Cow<'_, str> {
        self.msh().field(4).value()
    }

    /// The message as HL7 text: segments each ended by CR.
    pub fn encode(&self) -> String {
        let mut out = String::with_capacity(self.segments.iter().map(|s| s.text.len() + 1).sum());
        for s in &self.segments {
            out.push_str(&s.text);
            out.push('\r');
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const ORU: &str = "MSH|^~\\&|LAB|HOSP|MEDMESH|NODE|20240101120000||ORU^R01^ORU_R01|MSG00001|P|2.5.1\rPID|1||123^^^HOSP^MR~456^^^SSA^SS||Doe^Jane^Q||19800101|F\rOBX|1|NM|2345-7^Glucose^LN||105|mg/dL|70-99|H|||F\r";

    /// A control character is no delimiter (the fuzz test found `MSH&|\0`, which read and
    /// then wrote back without its NUL); a sub-component separator the message never named
    /// is not written back either, so such a message round-trips.
    #[test]
    fn control_characters_are_not_delimiters_and_unnamed_ones_are_not_written() {
        for bad in ["MSH&|\0", "MSH|^\u{1}\\&|A", "MSH\u{7}^~\\&\u{7}A"] {
            let e = Message::parse_str(bad).unwrap_err();
            assert_eq!(e.segment.as_deref(), Some("MSH"), "{bad:?}");
        }
        let m = Message::parse_str("MSH&|^&A&B\rPID&1&&x|y^z\r").unwrap();
        assert_eq!(m.msh().field(2).raw(), "|^");
        let again = Message::parse_str(&m.encode()).unwrap();
        assert_eq!(again.segments(), m.segments());
        assert_eq!(again.msh().field(2).raw(), "|^");
    }

    #[test]
    fn reads_the_header_and_fields() {
        let m = Message::parse_str(ORU).unwrap();
        assert_eq!(m.msh().field(1).raw(), "|");
        assert_eq!(m.msh().field(2).raw(), "^~\\&");
        assert_eq!(m.sending_application(), "LAB");
        let (code, trigger, structure) = m.message_type();
        assert_eq!((&*code, &*trigger, &*structure), ("ORU", "R01", "ORU_R01"));
        assert_eq!(m.control_id(), "MSG00001");
        assert_eq!(m.version(), "2.5.1");
        let pid = m.segment("PID").unwrap();
        let ids: Vec<_> = pid
            .field(3)
            .repetitions()
            .map(|r| r.get(1).into_owned())
            .collect();
        assert_eq!(ids, ["123", "456"]);
        assert_eq!(pid.field(3).repetitions().nth(1).unwrap().get(4), "SSA");
        assert_eq!(pid.get(5, 2), "Jane");
        assert_eq!(pid.get(99, 1), "");
        assert_eq!(m.segments_named("OBX").count(), 1);
    }

    #[test]
    fn line_ends_bom_and_padding_are_tolerated() {
        let lf = ORU.replace('\r', "\n");
        let crlf = ORU.replace('\r', "\r\n");
        let bom = format!("\u{FEFF}\u{0B}{ORU}\u{1C}\r\0\0\n\n");
        let want = Message::parse_str(ORU).unwrap();
        for text in [lf, crlf, bom] {
            let m = Message::parse_str(&text).unwrap();
            assert_eq!(m.segments(), want.segments());
        }
    }

    #[test]
    fn other_delimiters_are_read_from_msh() {
        let m = Message::parse_str(
            "MSH*:#!@*A*B*C*D*2024**ADT:A01*1*P*2.3\rPID*1**7:::X#8:::Y**Doe:Jo",
        )
        .unwrap();
        assert_eq!(m.delimiters().field, '*');
        assert_eq!(m.delimiters().component, ':');
        assert_eq!(m.delimiters().repetition, '#');
        assert_eq!(m.delimiters().escape, Some('!'));
        assert_eq!(m.delimiters().subcomponent, '@');
        let pid = m.segment("PID").unwrap();
        assert_eq!(pid.field(3).repetitions().count(), 2);
        assert_eq!(pid.get(5, 2), "Jo");
        assert_eq!(m.message_type().1, "A01");
    }

    #[test]
    fn wrapped_lines_continue_a_field_and_trailing_bytes_are_dropped() {
        let text = "MSH|^~\\&|A|B|C|D|2024||ORU^R01|1|P|2.5\rOBX|1|TX|X||first line\rsecond line\rNTE|1||n\rgarbage!!";
        let m = Message::parse_str(text).unwrap();
        assert_eq!(m.segments().len(), 3);
        assert_eq!(
            m.segment("OBX").unwrap().get(5, 1),
            "first line\nsecond line"
        );
        assert_eq!(m.warnings().len(), 1);
    }

    #[test]
    fn errors_name_the_segment_and_field() {
        let e = Message::parse_str("PID|1").unwrap_err();
        assert!(e.to_string().contains("no MSH"));
        let e = Message::parse_str("MSHA^~\\&").unwrap_err();
        assert_eq!(e.segment.as_deref(), Some("MSH"));
        assert_eq!(e.field, Some(1));
        let e = Message::parse_str("MSH|^^\\&|").unwrap_err();
        assert_eq!(
            e.to_string(),
            "MSH-2: the encoding characters must be distinct and not letters, digits, spaces or control characters"
        );
    }

    #[test]
    fn z_segments_and_unknown_fields_are_kept() {
        let m = Message::parse_str("MSH|^~\\&|A|B|C|D|2024||ADT^A01|1|P|2.9\rZPI|1|custom^value|||||||||||||||||||||||||||||||||||||||||||||x").unwrap();
        let z = m.segment("ZPI").unwrap();
        assert_eq!(z.get(2, 2), "value");
        assert_eq!(z.field(z.field_count()).raw(), "x");
        assert!(z.field_count() > 40);
    }
}
