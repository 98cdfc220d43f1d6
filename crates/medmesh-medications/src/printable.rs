//! The printable prescription: one A4 page of PDF with what the prescriber signed, in words,
//! and a QR code holding the signed prescription itself (the JSON of
//! `GET /api/prescriptions/{id}/signed`). A pharmacy without network access scans it and
//! checks it with `medmesh verify-prescription` against the prescriber's listing in the
//! node's key directory.
//!
//! Rendering is pure: the facts and the labels (in the reader's language) come in, bytes
//! go out. The text is set in the PDF's standard Helvetica with the Windows Latin-1
//! encoding, which every PDF reader has without an embedded font; a character outside it
//! prints as `?` on paper (the QR code keeps the exact text).

use medmesh_crypto::PrescriptionClaims;
use pdf_writer::{Content, Name, Pdf, Rect, Ref, Str, TextStr};
use qrcode::{Color, EcLevel, QrCode};

/// The words of the page, in the reader's language.
#[derive(Debug, Clone)]
pub struct PrintLabels {
    /// The page's title ("Prescription").
    pub title: String,
    /// "Prescriber".
    pub prescriber: String,
    /// "Patient".
    pub patient: String,
    /// "Born".
    pub born: String,
    /// "Medication".
    pub medication: String,
    /// "Instructions".
    pub instructions: String,
    /// "Quantity".
    pub quantity: String,
    /// "Supply".
    pub supply: String,
    /// "Refills".
    pub refills: String,
    /// "Substitution".
    pub substitution: String,
    /// "allowed".
    pub allowed: String,
    /// "not allowed".
    pub not_allowed: String,
    /// "Pharmacy".
    pub pharmacy: String,
    /// "Written".
    pub written: String,
    /// "Signed".
    pub signed: String,
    /// "Signing key".
    pub key: String,
    /// "Prescription id".
    pub id: String,
    /// A value that is not given ("none").
    pub none: String,
    /// The note beside the QR code: what it holds and how to check it.
    pub verify_note: String,
}

impl Default for PrintLabels {
    /// English.
    fn default() -> Self {
        Self {
            title: "Prescription".into(),
            prescriber: "Prescriber".into(),
            patient: "Patient".into(),
            born: "Born".into(),
            medication: "Medication".into(),
            instructions: "Instructions".into(),
            quantity: "Quantity".into(),
            supply: "Supply".into(),
            refills: "Refills".into(),
            substitution: "Substitution".into(),
            allowed: "allowed".into(),
            not_allowed: "not allowed".into(),
            pharmacy: "Pharmacy".into(),
            written: "Written".into(),
            signed: "Signed".into(),
            key: "Signing key".into(),
            id: "Prescription id".into(),
            none: "none".into(),
            verify_note: "Signed electronically by the prescriber. The QR code holds the signed prescription: check it, offline, with `medmesh verify-prescription` and the prescriber's entry in the node's key directory.".into(),
        }
    }
}

/// What the page shows.
#[derive(Debug, Clone)]
pub struct Printable {
    /// What was signed (the page's prescription lines come from here, not from the record).
    pub claims: PrescriptionClaims,
    /// The signing key, base64.
    pub key: String,
    /// The signed prescription, as JSON text: the QR code's content.
    pub signed_json: String,
    /// The patient's name, as the record has it.
    pub patient_name: String,
    /// The patient's birth date.
    pub patient_birth: Option<String>,
    /// The prescriber's name.
    pub prescriber_name: String,
    /// The pharmacy it is routed to, by name.
    pub pharmacy: Option<String>,
}

/// Why a page could not be made.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PrintError {
    /// The signed prescription does not fit one QR code.
    #[error("the signed prescription is too long for a QR code")]
    TooLongForQr,
}

/// A4, in points.
const PAGE: (f32, f32) = (595.0, 842.0);
const MARGIN: f32 = 56.0;
const VALUE_X: f32 = 180.0;
/// The QR code's side, points (80 mm).
const QR_SIDE: f32 = 227.0;

/// A character in the Windows Latin-1 encoding of the standard fonts, or `?`.
fn win_ansi(c: char) -> u8 {
    match c {
        ' '..='~' => c as u8,
        '\u{a0}'..='\u{ff}' => c as u32 as u8,
        '€' => 0x80,
        '‚' => 0x82,
        '„' => 0x84,
        '…' => 0x85,
        '‘' => 0x91,
        '’' => 0x92,
        '“' => 0x93,
        '”' => 0x94,
        '•' => 0x95,
        '–' => 0x96,
        '—' => 0x97,
        _ => b'?',
    }
}

fn encode(text: &str) -> Vec<u8> {
    text.chars()
        .filter(|c| !c.is_control())
        .map(win_ansi)
        .collect()
}

/// `text` in lines of at most `width` characters, broken at spaces where it can be.
fn wrap(text: &str, width: usize) -> Vec<String> {
    let mut lines = Vec::new();
    let mut line = String::new();
    for word in text.split_whitespace() {
        let mut word = word.to_string();
        while word.chars().count() > width {
            let head: String = word.chars().take(width).collect();
            word = word.chars().skip(width).collect();
            if !line.is_empty() {
                lines.push(std::mem::take(&mut line));
            }
            lines.push(head);
        }
        if !line.is_empty() && line.chars().count() + 1 + word.chars().count() > width {
            lines.push(std::mem::take(&mut line));
        }
        if !line.is_empty() {
            line.push(' ');
        }
        line.push_str(&word);
    }
    if !line.is_empty() || lines.is_empty() {
        lines.push(line);
    }
    lines
}

/// The id part of a `Type/id` reference.
fn id_of(reference: &str) -> &str {
    reference.rsplit('/').next().unwrap_or(reference)
}

/// The page, as PDF bytes.
///
/// # Errors
/// [`PrintError::TooLongForQr`] when the signed prescription does not fit a QR code.
pub fn render_pdf(p: &Printable, l: &PrintLabels) -> Result<Vec<u8>, PrintError> {
    let qr = QrCode::with_error_correction_level(p.signed_json.as_bytes(), EcLevel::L)
        .map_err(|_| PrintError::TooLongForQr)?;
    let c = &p.claims;
    let none_or = |v: &str| {
        if v == "none" {
            l.none.clone()
        } else {
            v.to_string()
        }
    };
    let mut rows: Vec<(&str, String)> = vec![
        (
            &l.prescriber,
            format!("{} ({})", p.prescriber_name, c.prescriber),
        ),
        (&l.patient, p.patient_name.clone()),
    ];
    if let Some(b) = &p.patient_birth {
        rows.push((&l.born, b.clone()));
    }
    rows.extend([
        (&*l.medication, c.medication_text.clone()),
        (&l.instructions, c.dosage.clone()),
        (&l.quantity, none_or(&c.quantity)),
        (&l.supply, none_or(&c.supply)),
        (&l.refills, c.refills.clone()),
        (
            &l.substitution,
            if c.substitution == "allowed" {
                l.allowed.clone()
            } else {
                l.not_allowed.clone()
            },
        ),
    ]);
    if let Some(ph) = &p.pharmacy {
        rows.push((&l.pharmacy, ph.clone()));
    }
    rows.extend([
        (&*l.written, c.authored.clone()),
        (&l.signed, c.time.clone()),
        (&l.key, p.key.clone()),
        (&l.id, id_of(&c.prescription).to_string()),
    ]);

    let mut content = Content::new();
    let mut y = PAGE.1 - MARGIN - 8.0;
    content.begin_text();
    content.set_font(Name(b"F2"), 20.0);
    content.next_line(MARGIN, y);
    content.show(Str(&encode(&l.title)));
    content.end_text();
    y -= 34.0;
    for (label, value) in &rows {
        let lines = wrap(value, 62);
        content.begin_text();
        content.set_font(Name(b"F2"), 10.5);
        content.next_line(MARGIN, y);
        content.show(Str(&encode(label)));
        content.end_text();
        for line in lines {
            content.begin_text();
            content.set_font(Name(b"F1"), 10.5);
            content.next_line(VALUE_X, y);
            content.show(Str(&encode(&line)));
            content.end_text();
            y -= 14.0;
        }
        y -= 4.0;
    }
    // The QR code, its modules as filled squares, with a quiet zone of four modules.
    let modules = qr.width();
    let module = QR_SIDE / (modules as f32 + 8.0);
    let qr_x = MARGIN;
    let qr_top = (y - 8.0).min(MARGIN + QR_SIDE);
    let origin_y = qr_top - QR_SIDE;
    content.set_fill_gray(0.0);
    for (i, color) in qr.to_colors().iter().enumerate() {
        if *color == Color::Dark {
            let (col, row) = (i % modules, i / modules);
            content.rect(
                qr_x + (col as f32 + 4.0) * module,
                origin_y + QR_SIDE - (row as f32 + 5.0) * module,
                module,
                module,
            );
        }
    }
    content.fill_nonzero();
    let mut note_y = qr_top - 12.0;
    for line in wrap(&l.verify_note, 42) {
        content.begin_text();
        content.set_font(Name(b"F1"), 9.0);
        content.next_line(qr_x + QR_SIDE + 14.0, note_y);
        content.show(Str(&encode(&line)));
        content.end_text();
        note_y -= 12.0;
    }

    let (catalog, tree, page, regular, bold, stream, info) = (
        Ref::new(1),
        Ref::new(2),
        Ref::new(3),
        Ref::new(4),
        Ref::new(5),
        Ref::new(6),
        Ref::new(7),
    );
    let mut pdf = Pdf::new();
    pdf.catalog(catalog).pages(tree);
    pdf.pages(tree).kids([page]).count(1);
    {
        let mut pg = pdf.page(page);
        pg.parent(tree)
            .media_box(Rect::new(0.0, 0.0, PAGE.0, PAGE.1))
            .contents(stream);
        pg.resources()
            .fonts()
            .pair(Name(b"F1"), regular)
            .pair(Name(b"F2"), bold);
    }
    for (id, name) in [(regular, &b"Helvetica"[..]), (bold, &b"Helvetica-Bold"[..])] {
        pdf.type1_font(id)
            .base_font(Name(name))
            .encoding_predefined(Name(b"WinAnsiEncoding"));
    }
    pdf.stream(stream, &content.finish());
    // The document's title names no one: the file may be listed where its name is seen.
    pdf.document_info(info)
        .title(TextStr(&l.title))
        .producer(TextStr("medmesh"));
    Ok(pdf.finish())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn claims() -> PrescriptionClaims {
        PrescriptionClaims {
            prescription: "MedicationRequest/rx1".into(),
            patient: "Patient/pat".into(),
            prescriber: "Practitioner/gp".into(),
            medication: "http://www.nlm.nih.gov/research/umls/rxnorm|308182".into(),
            medication_text: "amoxicillin 250 MG Oral Capsule".into(),
            dosage: "1 capsule 3 times a day for 7 days".into(),
            quantity: "21 capsule".into(),
            supply: "none".into(),
            refills: "0".into(),
            substitution: "allowed".into(),
            authored: "2026-12-04".into(),
            time: "2026-12-04T09:00:00Z".into(),
        }
    }

    #[test]
    fn the_page_holds_the_signed_lines_and_the_qr_code() {
        let p = Printable {
            claims: claims(),
            key: "a".repeat(44),
            signed_json: format!("{{\"claims\":\"{}\"}}", "x".repeat(1500)),
            patient_name: "Zoë Müller".into(),
            patient_birth: Some("1980-02-03".into()),
            prescriber_name: "Dr Ada Gray".into(),
            pharmacy: Some("Corner Pharmacy".into()),
        };
        let pdf = render_pdf(&p, &PrintLabels::default()).unwrap();
        assert!(pdf.starts_with(b"%PDF-"));
        let text = String::from_utf8_lossy(&pdf);
        // Text in content streams is uncompressed: the lines are there as written.
        for line in [
            "amoxicillin 250 MG Oral Capsule",
            "1 capsule 3 times a day for 7 days",
            "Corner Pharmacy",
            "Dr Ada Gray (Practitioner/gp)",
        ] {
            assert!(text.contains(line), "{line}");
        }
        // Latin-1 letters keep their byte (a string with one is written in hex: "Zoë" is
        // 5A 6F EB); the title names no patient.
        assert!(text.contains("<5A6FEB204DFC6C6C6572>"), "{text}");
        assert!(!text.contains("/Title (Zo"));
        // The QR code is drawn: many filled squares.
        assert!(text.matches(" re").count() > 500);
    }

    #[test]
    fn too_much_for_a_qr_code_is_refused() {
        let p = Printable {
            claims: claims(),
            key: String::new(),
            signed_json: "x".repeat(4000),
            patient_name: String::new(),
            patient_birth: None,
            prescriber_name: String::new(),
            pharmacy: None,
        };
        assert_eq!(
            render_pdf(&p, &PrintLabels::default()),
            Err(PrintError::TooLongForQr)
        );
    }

    #[test]
    fn words_wrap_and_unknown_letters_are_marked() {
        assert_eq!(wrap("one two three", 7), vec!["one two", "three"]);
        assert_eq!(wrap("abcdefghij", 4), vec!["abcd", "efgh", "ij"]);
        assert_eq!(wrap("", 4), vec![""]);
        assert_eq!(encode("a€漢"), vec![b'a', 0x80, b'?']);
    }
}
