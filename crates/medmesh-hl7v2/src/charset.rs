//! Character sets: MSH-18 names how the bytes are encoded (HL7 table 0211).

use encoding_rs::Encoding;

use crate::message::ParseError;

/// The encoding HL7 table 0211's code names, when it is one this node reads. `None` for
/// an unknown code; an error for a set that is not ASCII-compatible (UTF-16 and UTF-32
/// would break the framing and the delimiters).
///
/// # Errors
/// For the UTF-16 and UTF-32 codes.
pub fn encoding_for(code: &str) -> Result<Option<&'static Encoding>, ParseError> {
    let c = code.trim().to_ascii_uppercase();
    let label = match c.as_str() {
        "" | "ASCII" | "ISO IR6" | "UNICODE UTF-8" | "UNICODE" | "UTF-8" | "UTF8" | "ISO IR192" => {
            "utf-8"
        }
        "8859/1" | "ISO IR100" => "windows-1252",
        "8859/2" | "ISO IR101" => "iso-8859-2",
        "8859/3" | "ISO IR109" => "iso-8859-3",
        "8859/4" | "ISO IR110" => "iso-8859-4",
        "8859/5" | "ISO IR144" => "iso-8859-5",
        "8859/6" | "ISO IR127" => "iso-8859-6",
        "8859/7" | "ISO IR126" => "iso-8859-7",
        "8859/8" | "ISO IR138" => "iso-8859-8",
        "8859/9" | "ISO IR148" => "windows-1254",
        "8859/15" => "iso-8859-15",
        "GB 18030-2000" | "GB18030" => "gb18030",
        "KS X 1001" | "ISO IR149" => "euc-kr",
        "BIG-5" | "BIG5" => "big5",
        "ISO IR87" | "ISO IR159" | "ISO 2022-1994" => "iso-2022-jp",
        "ISO IR13" => "shift_jis",
        "UNICODE UTF-16" | "UNICODE UTF-32" | "UTF-16" | "UTF-32" => {
            return Err(ParseError::at(
                "MSH",
                1,
                18,
                "UTF-16 and UTF-32 are not supported: send UTF-8",
            ));
        }
        _ => return Ok(None),
    };
    Ok(Encoding::for_label(label.as_bytes()))
}

/// MSH-18 read from the raw bytes of the first line (which are ASCII in every supported
/// set): its first repetition.
fn declared_charset(bytes: &[u8]) -> Option<String> {
    let start = bytes.windows(3).position(|w| w == b"MSH")?;
    let line = &bytes[start..];
    let end = line
        .iter()
        .position(|b| *b == b'\r' || *b == b'\n')
        .unwrap_or(line.len());
    let line = &line[..end];
    let sep = *line.get(3)?;
    let rep = line
        .get(4..)?
        .iter()
        .take_while(|b| **b != sep)
        .nth(1)
        .copied();
    // MSH-18 is the 17th part after the name (MSH-1 is the separator itself).
    let field = line.split(|b| *b == sep).nth(17)?;
    let first = match rep {
        Some(r) => field.split(|b| *b == r).next().unwrap_or(field),
        None => field,
    };
    std::str::from_utf8(first).ok().map(str::to_string)
}

/// Decodes a message's bytes to text, by MSH-18 when it is set. Without it, UTF-8 when the
/// bytes are UTF-8, and Windows-1252 otherwise (the commonest undeclared set); a leading
/// byte-order mark is dropped. Returns the text and what was tolerated.
///
/// # Errors
/// When MSH-18 names a set that is not ASCII-compatible.
pub fn decode_message(bytes: &[u8]) -> Result<(String, Vec<String>), ParseError> {
    let bytes = bytes.strip_prefix(b"\xEF\xBB\xBF").unwrap_or(bytes);
    let mut warnings = Vec::new();
    let declared = declared_charset(bytes).filter(|c| !c.trim().is_empty());
    let encoding = match declared.as_deref().map(encoding_for).transpose()? {
        Some(Some(e)) => Some(e),
        Some(None) => {
            warnings.push("MSH-18 names an unknown character set; read as UTF-8".into());
            None
        }
        None => None,
    };
    let encoding = match encoding {
        Some(e) => e,
        None => match std::str::from_utf8(bytes) {
            Ok(text) => return Ok((text.to_string(), warnings)),
            Err(_) => {
                warnings
                    .push("undeclared bytes that are not UTF-8 were read as Windows-1252".into());
                encoding_rs::WINDOWS_1252
            }
        },
    };
    let (text, _, had_errors) = encoding.decode(bytes);
    if had_errors {
        warnings.push(format!(
            "bytes that are not {} were replaced",
            encoding.name()
        ));
    }
    Ok((text.into_owned(), warnings))
}

/// Encodes text in the character set MSH-18 names (UTF-8 when it names none, or one this
/// node does not know). Characters the set cannot hold become numeric character references,
/// as `encoding_rs` writes them.
pub fn encode_message(text: &str, msh18: &str) -> Vec<u8> {
    match encoding_for(msh18) {
        Ok(Some(e)) if e != encoding_rs::UTF_8 => e.encode(text).0.into_owned(),
        _ => text.as_bytes().to_vec(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::Message;

    #[test]
    fn latin1_declared_in_msh18_is_decoded() {
        let mut bytes =
            b"MSH|^~\\&|A|B|C|D|2024||ADT^A01|1|P|2.5||||||8859/1\rPID|1||1||M".to_vec();
        bytes.extend_from_slice(&[0xFC, b'l', b'l', b'e', b'r', b'^', b'J', 0xF6, b'r', b'g']);
        let m = Message::parse(&bytes).unwrap();
        assert_eq!(m.segment("PID").unwrap().get(5, 1), "Müller");
        assert_eq!(m.segment("PID").unwrap().get(5, 2), "Jörg");
        assert!(m.warnings().is_empty());
    }

    #[test]
    fn undeclared_latin1_falls_back_with_a_warning() {
        let mut bytes = b"MSH|^~\\&|A|B|C|D|2024||ADT^A01|1|P|2.5\rPID|1||1||".to_vec();
        bytes.push(0xE9);
        let m = Message::parse(&bytes).unwrap();
        assert_eq!(m.segment("PID").unwrap().get(5, 1), "é");
        assert_eq!(m.warnings().len(), 1);
    }

    #[test]
    fn utf8_with_a_bom_and_repeated_msh18() {
        let text = "\u{FEFF}MSH|^~\\&|A|B|C|D|2024||ADT^A01|1|P|2.5||||||UNICODE UTF-8~8859/1\rPID|1||1||Zoë";
        let m = Message::parse(text.as_bytes()).unwrap();
        assert_eq!(m.segment("PID").unwrap().get(5, 1), "Zoë");
    }

    #[test]
    fn utf16_is_refused_with_the_field_named() {
        let e = Message::parse(b"MSH|^~\\&|A|B|C|D|2024||ADT^A01|1|P|2.5||||||UNICODE UTF-16\r")
            .unwrap_err();
        assert_eq!(e.field, Some(18));
    }

    #[test]
    fn encoding_round_trips_a_declared_set() {
        let bytes = encode_message("Jörg", "8859/1");
        assert_eq!(bytes, [b'J', 0xF6, b'r', b'g']);
        assert_eq!(encode_message("Jörg", ""), "Jörg".as_bytes());
    }
}
