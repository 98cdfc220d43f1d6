//! What an upload really is: its first bytes are matched against known signatures (the
//! `infer` crate, plus DICOM's `DICM` at byte 128) and the result checked against the types
//! the vault accepts and against what the client claimed. A file that claims to be a PDF
//! but is an executable is refused, whatever its name or header says.

/// The type of an end-to-end sealed document: ciphertext the node cannot read, recognised
/// by the sealed-stream header (`mmb\x01`).
pub use medmesh_crypto::wire::SEALED_TYPE;

/// Bytes looked at; every signature checked lies within them.
pub const SNIFF_BYTES: usize = 8 * 1024;

/// Types a document may have, binary ones recognised by signature.
const BINARY_TYPES: &[&str] = &[
    "application/pdf",
    "image/jpeg",
    "image/png",
    "image/gif",
    "image/webp",
    "image/tiff",
    "image/heif",
    "image/heic",
    "application/dicom",
];

/// Text types: no signature, so they are accepted when claimed and the bytes are text.
const TEXT_TYPES: &[&str] = &[
    "text/plain",
    "text/csv",
    "text/markdown",
    "application/xml",
    "text/xml",
    "application/json",
    "application/fhir+json",
    "application/hl7-v2",
];

/// Every type the vault accepts.
pub fn allowed_types() -> impl Iterator<Item = &'static str> {
    BINARY_TYPES
        .iter()
        .chain(TEXT_TYPES)
        .copied()
        .chain([SEALED_TYPE])
}

/// Why content was refused; the message is safe to return (it names types, not content).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SniffError {
    /// The content is of a type the vault does not accept.
    #[error("content of type {0} is not accepted; accepted: {list}", list = allowed_types().collect::<Vec<_>>().join(", "))]
    NotAllowed(String),
    /// The content is not what the client said.
    #[error("the content is {found}, not the {claimed} it was sent as")]
    Mismatch {
        /// The claimed type.
        claimed: String,
        /// What the bytes are.
        found: String,
    },
}

fn essence(content_type: &str) -> String {
    content_type
        .split(';')
        .next()
        .unwrap_or_default()
        .trim()
        .to_ascii_lowercase()
}

fn signature_type(head: &[u8]) -> Option<&'static str> {
    if head.len() >= 132 && &head[128..132] == b"DICM" {
        return Some("application/dicom");
    }
    infer::get(head).map(|t| t.mime_type())
}

/// Whether a type is one the vault accepts at all (the allow-list every path checks).
fn is_allowed(content_type: &str) -> bool {
    BINARY_TYPES.contains(&content_type) || TEXT_TYPES.contains(&content_type)
}

fn is_xml(content_type: &str) -> bool {
    matches!(content_type, "application/xml" | "text/xml")
}

/// Whether XML text is an XHTML document: its root element is `html`. A browser renders
/// such a file as a web page whatever it was sent as, so the vault refuses it.
fn is_xhtml(head: &[u8]) -> bool {
    let text = String::from_utf8_lossy(head);
    let mut rest = text.trim_start_matches('\u{feff}').trim_start();
    // Skip the prolog: declarations, processing instructions, comments and the doctype.
    loop {
        if let Some(r) = rest.strip_prefix("<?") {
            rest = r
                .split_once("?>")
                .map_or("", |(_, after)| after)
                .trim_start();
        } else if let Some(r) = rest.strip_prefix("<!--") {
            rest = r
                .split_once("-->")
                .map_or("", |(_, after)| after)
                .trim_start();
        } else if let Some(r) = rest.strip_prefix("<!") {
            if r.get(..7)
                .is_some_and(|d| d.eq_ignore_ascii_case("doctype"))
                && r[7..]
                    .trim_start()
                    .get(..4)
                    .is_some_and(|n| n.eq_ignore_ascii_case("html"))
            {
                return true;
            }
            rest = r
                .split_once('>')
                .map_or("", |(_, after)| after)
                .trim_start();
        } else {
            break;
        }
    }
    let Some(element) = rest.strip_prefix('<') else {
        return false;
    };
    let name: String = element
        .chars()
        .take_while(|c| !c.is_whitespace() && *c != '>' && *c != '/')
        .collect();
    let local = name.rsplit(':').next().unwrap_or_default();
    local.eq_ignore_ascii_case("html")
}

fn looks_like_text(head: &[u8]) -> bool {
    if head.contains(&0) {
        return false;
    }
    match std::str::from_utf8(head) {
        Ok(_) => true,
        // A multi-byte character cut at the end of the window is still text.
        Err(e) => e.error_len().is_none() && head.len() - e.valid_up_to() < 4,
    }
}

/// The type of content whose first bytes are `head` (up to [`SNIFF_BYTES`]), given what the
/// client claimed (`None` or `application/octet-stream` when it did not say).
///
/// # Errors
/// [`SniffError`] when the type is not accepted or contradicts the claim.
pub fn sniff(head: &[u8], claimed: Option<&str>) -> Result<String, SniffError> {
    let claimed = claimed
        .map(essence)
        .filter(|c| !c.is_empty() && c != "application/octet-stream");
    if claimed.as_deref() == Some(SEALED_TYPE) {
        return if head.starts_with(&medmesh_crypto::stream::MAGIC) {
            Ok(SEALED_TYPE.to_string())
        } else {
            Err(SniffError::Mismatch {
                claimed: SEALED_TYPE.into(),
                found: "data without the sealed-document header".into(),
            })
        };
    }
    let found = signature_type(head);
    // Whatever the bytes and the claim agree on, only listed types are taken: `infer` knows
    // HTML, executables and archives, and a matching claim must not let them in.
    if let Some(f) = found.filter(|f| !is_allowed(f)) {
        return Err(match claimed {
            Some(c) if c != f => SniffError::Mismatch {
                claimed: c,
                found: f.to_string(),
            },
            _ => SniffError::NotAllowed(f.to_string()),
        });
    }
    if claimed.as_deref().is_some_and(is_xml) && is_xhtml(head) {
        return Err(SniffError::NotAllowed("application/xhtml+xml".into()));
    }
    match (found, claimed) {
        (Some(f), Some(c)) if !is_allowed(&c) => Err(SniffError::NotAllowed(if f == c {
            c
        } else {
            f.to_string()
        })),
        (Some(f), Some(c)) if f == c || (f == "image/heif" && c == "image/heic") => Ok(c),
        (Some(f), Some(c)) if is_xml(f) && is_xml(&c) && looks_like_text(head) => Ok(c),
        (Some(f), Some(c)) => Err(SniffError::Mismatch {
            claimed: c,
            found: f.to_string(),
        }),
        (Some(f), None) if BINARY_TYPES.contains(&f) => Ok(f.to_string()),
        (Some(f), None) => Err(SniffError::NotAllowed(f.to_string())),
        (None, Some(c)) if TEXT_TYPES.contains(&c.as_str()) && looks_like_text(head) => Ok(c),
        (None, Some(c)) if TEXT_TYPES.contains(&c.as_str()) => Err(SniffError::Mismatch {
            claimed: c,
            found: "binary data".into(),
        }),
        (None, Some(c)) if BINARY_TYPES.contains(&c.as_str()) => Err(SniffError::Mismatch {
            claimed: c,
            found: "data without that type's signature".into(),
        }),
        (None, Some(c)) => Err(SniffError::NotAllowed(c)),
        (None, None) if looks_like_text(head) => Ok("text/plain".into()),
        (None, None) => Err(SniffError::NotAllowed("unrecognised binary data".into())),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const PNG: &[u8] = b"\x89PNG\r\n\x1a\n\0\0\0\rIHDR";
    const PDF: &[u8] = b"%PDF-1.7\n%\xe2\xe3\xcf\xd3\n";
    const ELF: &[u8] = b"\x7fELF\x02\x01\x01\0\0\0\0\0\0\0\0\0";

    #[test]
    fn accepts_what_it_is_and_refuses_what_it_pretends() {
        assert_eq!(
            sniff(PDF, Some("application/pdf")).unwrap(),
            "application/pdf"
        );
        assert_eq!(sniff(PNG, None).unwrap(), "image/png");
        assert_eq!(
            sniff(PNG, Some("application/octet-stream")).unwrap(),
            "image/png"
        );
        assert!(matches!(
            sniff(PNG, Some("application/pdf")),
            Err(SniffError::Mismatch { .. })
        ));
        assert!(matches!(sniff(ELF, None), Err(SniffError::NotAllowed(_))));
        assert!(matches!(
            sniff(ELF, Some("text/plain")),
            Err(SniffError::Mismatch { .. })
        ));
        assert_eq!(
            sniff(
                "Hämoglobin 13.1 g/dl".as_bytes(),
                Some("text/plain; charset=utf-8")
            )
            .unwrap(),
            "text/plain"
        );
        assert_eq!(sniff(b"a,b\n1,2\n", None).unwrap(), "text/plain");
        // PostScript sent as a zip: the bytes contradict the claim. Unclaimed, it is simply
        // not a type the vault takes.
        assert!(matches!(
            sniff(b"%!PS-Adobe-3.0\n", Some("application/zip")),
            Err(SniffError::Mismatch { .. })
        ));
        assert!(matches!(
            sniff(b"%!PS-Adobe-3.0\n", None),
            Err(SniffError::NotAllowed(_))
        ));
        // A type outside the list, claimed for text, is refused too.
        assert!(matches!(
            sniff(b"plain words", Some("application/x-sh")),
            Err(SniffError::NotAllowed(_))
        ));
        let mut dicom = vec![0u8; 128];
        dicom.extend_from_slice(b"DICM\x02\0");
        assert_eq!(
            sniff(&dicom, Some("application/dicom")).unwrap(),
            "application/dicom"
        );
        // A UTF-8 character cut by the window is still text.
        let cut = &"ü".as_bytes()[..1];
        assert!(looks_like_text(&[b"abc", cut].concat()));
    }

    #[test]
    fn markup_a_browser_would_run_is_refused_whatever_the_claim() {
        let html = b"<!DOCTYPE html><html><body><script>alert(1)</script></body></html>";
        for claim in [
            Some("text/html"),
            None,
            Some("text/plain"),
            Some("text/xml"),
        ] {
            assert!(sniff(html, claim).is_err(), "{claim:?}");
        }
        let xhtml = b"<?xml version=\"1.0\"?>\n<!-- note -->\n<html xmlns=\"http://www.w3.org/1999/xhtml\"><body><script>alert(1)</script></body></html>";
        for claim in ["text/xml", "application/xml"] {
            assert_eq!(
                sniff(xhtml, Some(claim)),
                Err(SniffError::NotAllowed("application/xhtml+xml".into())),
                "{claim}"
            );
        }
        let prefixed = b"<x:html xmlns:x=\"http://www.w3.org/1999/xhtml\"/>";
        assert!(sniff(prefixed, Some("application/xml")).is_err());
        // Other XML (a CDA document, FHIR XML) is still a document.
        let cda = b"<?xml version=\"1.0\"?><ClinicalDocument xmlns=\"urn:hl7-org:v3\"><title>x</title></ClinicalDocument>";
        assert_eq!(sniff(cda, Some("text/xml")).unwrap(), "text/xml");
        assert_eq!(
            sniff(cda, Some("application/xml")).unwrap(),
            "application/xml"
        );
        // An executable that is what it claims to be is still not on the list.
        let elf = b"\x7fELF\x02\x01\x01\0\0\0\0\0\0\0\0\0";
        assert!(matches!(
            sniff(elf, Some("application/x-executable")),
            Err(SniffError::NotAllowed(_))
        ));
        let cut = &"ü".as_bytes()[..1];
        assert!(looks_like_text(&[b"abc", cut].concat()));
    }
}
