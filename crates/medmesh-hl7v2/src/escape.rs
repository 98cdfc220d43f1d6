//! Escape sequences: `\F\ \S\ \T\ \R\ \E\ \P\`, hexadecimal data `\Xhh..\`, highlighting
//! `\H\ \N\`, formatted text (`\.br\`, `\.sp\` ...), character-set switches (`\C..\`,
//! `\M..\`) and locally defined `\Z..\` sequences.

use std::borrow::Cow;

use crate::message::Delimiters;

/// Decodes a value's escape sequences. A value without the escape character is returned
/// as it is, without copying. An unterminated or unknown sequence is kept as written: a
/// receiver loses nothing a sender meant literally.
pub fn decode<'a>(raw: &'a str, d: &Delimiters) -> Cow<'a, str> {
    let Some(esc) = d.escape else {
        return Cow::Borrowed(raw);
    };
    if !raw.contains(esc) {
        return Cow::Borrowed(raw);
    }
    let mut out = String::with_capacity(raw.len());
    let mut rest = raw;
    while let Some(at) = rest.find(esc) {
        out.push_str(&rest[..at]);
        let after = &rest[at + esc.len_utf8()..];
        let Some(end) = after.find(esc) else {
            // No closing escape: the rest is literal.
            out.push_str(&rest[at..]);
            return Cow::Owned(out);
        };
        let seq = &after[..end];
        if !expand(seq, d, &mut out) {
            out.push(esc);
            out.push_str(seq);
            out.push(esc);
        }
        rest = &after[end + esc.len_utf8()..];
    }
    out.push_str(rest);
    Cow::Owned(out)
}

/// Appends what `seq` (the text between two escape characters) stands for; false when it
/// is not a sequence this decoder knows, so the caller keeps it literally.
fn expand(seq: &str, d: &Delimiters, out: &mut String) -> bool {
    match seq {
        "F" => out.push(d.field),
        "S" => out.push(d.component),
        "T" => out.push(d.subcomponent),
        "R" => out.push(d.repetition),
        "E" => {
            if let Some(e) = d.escape {
                out.push(e);
            }
        }
        "P" => match d.truncation {
            Some(t) => out.push(t),
            None => return false,
        },
        // Highlighting on and off: plain text has none.
        "H" | "N" => {}
        ".br" => out.push('\n'),
        ".fi" | ".nf" | ".ce" => {}
        s if s.starts_with(".sp") => {
            let n = s[3..]
                .trim()
                .trim_start_matches('+')
                .parse::<usize>()
                .unwrap_or(1);
            for _ in 0..n.min(100) {
                out.push('\n');
            }
        }
        s if s.starts_with(".in") || s.starts_with(".ti") || s.starts_with(".sk") => {
            let n = s[3..]
                .trim()
                .trim_start_matches('+')
                .parse::<usize>()
                .unwrap_or(0);
            if s.starts_with(".sk") {
                for _ in 0..n.min(100) {
                    out.push(' ');
                }
            }
        }
        s if s.starts_with('X') => match hex(&s[1..]) {
            Some(bytes) => match String::from_utf8(bytes) {
                Ok(text) => out.push_str(&text),
                // Not UTF-8: one character per byte, as ISO 8859-1 reads them.
                Err(e) => out.extend(e.into_bytes().into_iter().map(char::from)),
            },
            None => return false,
        },
        // Character-set switches (ISO 2022 escapes): the text is already decoded.
        s if (s.starts_with('C') || s.starts_with('M')) && hex(&s[1..]).is_some() => {}
        _ => return false,
    }
    true
}

fn hex(s: &str) -> Option<Vec<u8>> {
    if s.is_empty() || !s.len().is_multiple_of(2) {
        return None;
    }
    (0..s.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(s.get(i..i + 2)?, 16).ok())
        .collect()
}

/// Escapes a value so that none of its characters reads as a delimiter. CR and LF become
/// `\X0D\` and `\X0A\`, so a value's line breaks survive inside one segment.
pub fn encode<'a>(value: &'a str, d: &Delimiters) -> Cow<'a, str> {
    let special = |c: char| {
        c == d.field
            || c == d.component
            || c == d.repetition
            || c == d.subcomponent
            || Some(c) == d.escape
            || Some(c) == d.truncation
            || c == '\r'
            || c == '\n'
    };
    if !value.contains(special) {
        return Cow::Borrowed(value);
    }
    let Some(e) = d.escape else {
        // Without an escape character a delimiter cannot be sent: it is replaced by a space
        // rather than let it split the value.
        return Cow::Owned(
            value
                .chars()
                .map(|c| if special(c) { ' ' } else { c })
                .collect(),
        );
    };
    let mut out = String::with_capacity(value.len() + 8);
    for c in value.chars() {
        let code = if c == d.field {
            "F"
        } else if c == d.component {
            "S"
        } else if c == d.repetition {
            "R"
        } else if c == d.subcomponent {
            "T"
        } else if Some(c) == d.escape {
            "E"
        } else if Some(c) == d.truncation {
            "P"
        } else if c == '\r' {
            "X0D"
        } else if c == '\n' {
            "X0A"
        } else {
            out.push(c);
            continue;
        };
        out.push(e);
        out.push_str(code);
        out.push(e);
    }
    Cow::Owned(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn d() -> Delimiters {
        Delimiters::default()
    }

    #[test]
    fn every_standard_sequence() {
        let cases = [
            (r"a\F\b", "a|b"),
            (r"a\S\b", "a^b"),
            (r"a\T\b", "a&b"),
            (r"a\R\b", "a~b"),
            (r"a\E\b", r"a\b"),
            (r"\H\bold\N\", "bold"),
            (r"one\.br\two", "one\ntwo"),
            (r"x\.sp2\y", "x\n\ny"),
            (r"\X0D0A\", "\r\n"),
            (r"caf\XC3A9\", "café"),
            (r"\XE9\", "é"),
            (r"\C2842\abc", "abc"),
            (r"keep \Zlocal\ as is", r"keep \Zlocal\ as is"),
            (r"unterminated \F", r"unterminated \F"),
            (r"bad hex \XZZ\", r"bad hex \XZZ\"),
            (r"no escapes", "no escapes"),
        ];
        for (raw, want) in cases {
            assert_eq!(decode(raw, &d()), want, "{raw}");
        }
    }

    #[test]
    fn the_truncation_character_decodes_only_when_declared() {
        let mut d27 = d();
        d27.truncation = Some('#');
        assert_eq!(decode(r"a\P\b", &d27), "a#b");
        assert_eq!(decode(r"a\P\b", &d()), r"a\P\b");
    }

    #[test]
    fn encode_escapes_every_delimiter() {
        assert_eq!(encode(r"a|b^c~d&e\f", &d()), r"a\F\b\S\c\R\d\T\e\E\f");
        assert_eq!(encode("x\ry\nz", &d()), r"x\X0D\y\X0A\z");
        assert!(matches!(encode("plain", &d()), Cow::Borrowed(_)));
    }

    proptest! {
        #[test]
        fn decode_inverts_encode(s in "\\PC*") {
            let e = encode(&s, &d());
            prop_assert_eq!(decode(&e, &d()), s.as_str());
        }

        #[test]
        fn decode_never_panics(s in ".*") {
            let _ = decode(&s, &d());
        }
    }
}
