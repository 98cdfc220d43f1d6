//! Writing messages: a builder that escapes every value it is given, so what it writes
//! parses back to the same values.

use crate::escape;
use crate::message::{Delimiters, Message, Segment};

/// A field to write: repetitions of components of sub-components, unescaped.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct FieldValue(pub Vec<Vec<Vec<String>>>);

impl FieldValue {
    /// One plain value.
    pub fn text(s: impl Into<String>) -> Self {
        Self(vec![vec![vec![s.into()]]])
    }

    /// One repetition of components, each a single sub-component.
    pub fn components<S: Into<String>>(parts: impl IntoIterator<Item = S>) -> Self {
        Self(vec![parts.into_iter().map(|p| vec![p.into()]).collect()])
    }

    /// Whether it holds no character at all.
    pub fn is_blank(&self) -> bool {
        self.0.iter().flatten().flatten().all(String::is_empty)
    }

    fn write(&self, d: &Delimiters, out: &mut String) {
        for (ri, rep) in self.0.iter().enumerate() {
            if ri > 0 {
                out.push(d.repetition);
            }
            // Trailing empty components are not written.
            let used = rep
                .iter()
                .rposition(|c| c.iter().any(|s| !s.is_empty()))
                .map_or(0, |p| p + 1);
            for (ci, comp) in rep[..used].iter().enumerate() {
                if ci > 0 {
                    out.push(d.component);
                }
                let subs = comp
                    .iter()
                    .rposition(|s| !s.is_empty())
                    .map_or(0, |p| p + 1);
                for (si, sub) in comp[..subs].iter().enumerate() {
                    if si > 0 {
                        out.push(d.subcomponent);
                    }
                    out.push_str(&escape::encode(sub, d));
                }
            }
        }
    }
}

/// Builds one segment: fields are set by their HL7 number.
#[derive(Debug, Clone)]
pub struct SegmentBuilder {
    name: String,
    fields: Vec<FieldValue>,
}

impl SegmentBuilder {
    /// A segment with this name (three characters).
    pub fn new(name: &str) -> Self {
        Self {
            name: name.to_string(),
            fields: Vec::new(),
        }
    }

    /// Sets field `n` (from 1). For MSH, fields 1 and 2 are written from the delimiters
    /// and cannot be set.
    pub fn set(mut self, n: usize, value: FieldValue) -> Self {
        if n == 0 {
            return self;
        }
        if self.fields.len() < n {
            self.fields.resize(n, FieldValue::default());
        }
        self.fields[n - 1] = value;
        self
    }

    /// Sets field `n` to one plain value.
    pub fn text(self, n: usize, s: impl Into<String>) -> Self {
        self.set(n, FieldValue::text(s))
    }

    /// Sets field `n` to one repetition of components.
    pub fn components<S: Into<String>>(self, n: usize, parts: impl IntoIterator<Item = S>) -> Self {
        self.set(n, FieldValue::components(parts))
    }

    fn write(&self, d: &Delimiters) -> String {
        let mut out = String::with_capacity(64);
        out.push_str(&self.name);
        let header = matches!(self.name.as_str(), "MSH" | "FHS" | "BHS");
        let used = self
            .fields
            .iter()
            .rposition(|f| !f.is_blank())
            .map_or(0, |p| p + 1);
        if header {
            out.push(d.field);
            out.push_str(&d.encoding_characters());
            for f in self.fields.iter().take(used.max(2)).skip(2) {
                out.push(d.field);
                f.write(d, &mut out);
            }
        } else {
            for f in &self.fields[..used] {
                out.push(d.field);
                f.write(d, &mut out);
            }
        }
        out
    }
}

/// Builds a message from segments; MSH first.
#[derive(Debug, Clone, Default)]
pub struct MessageBuilder {
    delimiters: Delimiters,
    segments: Vec<SegmentBuilder>,
}

impl MessageBuilder {
    /// A message with these delimiters.
    pub fn new(delimiters: Delimiters) -> Self {
        Self {
            delimiters,
            segments: Vec::new(),
        }
    }

    /// Appends a segment.
    pub fn segment(mut self, s: SegmentBuilder) -> Self {
        self.segments.push(s);
        self
    }

    /// The message, as the parser would read it back.
    pub fn build(&self) -> Message {
        let d = self.delimiters;
        Message::from_segments(
            self.segments
                .iter()
                .map(|s| Segment::new(s.write(&d), d))
                .collect(),
            d,
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn builds_what_the_parser_reads_back() {
        let m = MessageBuilder::new(Delimiters::default())
            .segment(
                SegmentBuilder::new("MSH")
                    .text(3, "MEDMESH")
                    .components(9, ["ACK", "R01", "ACK"])
                    .text(10, "1")
                    .text(12, "2.5.1"),
            )
            .segment(
                SegmentBuilder::new("NTE")
                    .text(1, "1")
                    .text(3, "a|b^c\nnext"),
            )
            .build();
        let text = m.encode();
        assert_eq!(
            text,
            "MSH|^~\\&|MEDMESH||||||ACK^R01^ACK|1||2.5.1\rNTE|1||a\\F\\b\\S\\c\\X0A\\next\r"
        );
        let back = Message::parse_str(&text).unwrap();
        assert_eq!(back, m);
        assert_eq!(back.segment("NTE").unwrap().get(3, 1), "a|b^c\nnext");
    }

    proptest! {
        #[test]
        fn any_values_round_trip(values in proptest::collection::vec(
            proptest::collection::vec(proptest::collection::vec("\\PC{0,12}", 1..3), 1..4), 1..6)) {
            let mut seg = SegmentBuilder::new("ZZZ");
            for (i, comps) in values.iter().enumerate() {
                seg = seg.set(i + 1, FieldValue(vec![comps.clone()]));
            }
            let m = MessageBuilder::new(Delimiters::default())
                .segment(SegmentBuilder::new("MSH").text(10, "x"))
                .segment(seg)
                .build();
            let back = Message::parse_str(&m.encode()).unwrap();
            let z = back.segment("ZZZ").unwrap();
            for (i, comps) in values.iter().enumerate() {
                for (c, subs) in comps.iter().enumerate() {
                    for (s, v) in subs.iter().enumerate() {
                        prop_assert_eq!(z.field(i + 1).first().sub(c + 1, s + 1), v.as_str());
                    }
                }
            }
        }
    }
}
