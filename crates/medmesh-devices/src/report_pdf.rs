//! The AGP report as a printable PDF: one A4 page with the patient's name and birth date
//! above the report (a printed page leaves the record, so it must say whose it is), the
//! report itself as vector graphics with selectable text, and a footer saying when it was
//! printed and that it is not dosing advice.
//!
//! Rendering is pure: the report's SVG and the heading come in, bytes go out. The page is
//! composed as one SVG, parsed by `usvg` and drawn by `krilla-svg`. The fonts are DejaVu
//! Sans, embedded in the binary, so the page looks the same on every node whatever fonts
//! its host has (a container often has none).

use std::sync::{Arc, OnceLock};

use krilla::Document;
use krilla::geom::Size;
use krilla::metadata::Metadata;
use krilla::page::PageSettings;
use krilla_svg::{SurfaceExt, SvgSettings};
use usvg::fontdb;

use crate::report::esc;

/// A4 in PDF points.
const PAGE_W: f32 = 595.28;
const PAGE_H: f32 = 841.89;
const MARGIN: f32 = 36.0;

/// Why the PDF could not be made. Neither carries patient data.
#[derive(Debug, thiserror::Error)]
pub enum PdfError {
    /// The composed page is not SVG `usvg` can read (a bug in the report's drawing).
    #[error("the report could not be laid out")]
    Layout,
    /// `krilla` could not write the document.
    #[error("the PDF could not be written")]
    Write,
}

/// What is printed above and below the report.
#[derive(Debug, Clone, Default)]
pub struct PrintHeading {
    /// The patient's name as written, when the record has one.
    pub patient: Option<String>,
    /// The patient's birth date (`YYYY-MM-DD`), when the record has one.
    pub born: Option<String>,
    /// When the page was printed (an RFC 3339 instant).
    pub printed: String,
}

/// The fonts the page is set in: DejaVu Sans, regular and bold, and nothing else; read once
/// per process.
fn fonts() -> Arc<fontdb::Database> {
    static FONTS: OnceLock<Arc<fontdb::Database>> = OnceLock::new();
    FONTS
        .get_or_init(|| {
            let mut db = fontdb::Database::new();
            db.load_font_source(fontdb::Source::Binary(Arc::new(dejavu::sans::regular())));
            db.load_font_source(fontdb::Source::Binary(Arc::new(dejavu::sans::bold())));
            db.set_sans_serif_family("DejaVu Sans");
            Arc::new(db)
        })
        .clone()
}

/// How `usvg` reads our SVG: in the embedded fonts only.
fn options() -> usvg::Options<'static> {
    usvg::Options {
        fontdb: fonts(),
        font_family: "DejaVu Sans".to_owned(),
        ..Default::default()
    }
}

/// The width and height a report's root `<svg>` declares (the report always does; the
/// whole page is laid out once, with the report in it, so the report is not laid out alone).
fn declared_size(report_svg: &str) -> Result<(f32, f32), PdfError> {
    let doc = usvg::roxmltree::Document::parse(report_svg).map_err(|_| PdfError::Layout)?;
    let root = doc.root_element();
    let number = |name: &str| {
        root.attribute(name)
            .and_then(|v| v.trim().parse::<f32>().ok())
            .filter(|v| v.is_finite() && *v > 0.0)
            .ok_or(PdfError::Layout)
    };
    if root.tag_name().name() != "svg" {
        return Err(PdfError::Layout);
    }
    Ok((number("width")?, number("height")?))
}

/// The page as one SVG: the heading, the report scaled to the page's width, the footer.
fn page_svg(report_svg: &str, heading: &PrintHeading) -> Result<String, PdfError> {
    let (rw, rh) = declared_size(report_svg)?;
    let width = PAGE_W - 2.0 * MARGIN;
    let top = MARGIN + 30.0;
    let bottom_room = 40.0;
    // Fit the width, and the height when the report is taller than the page allows.
    let scale = (width / rw).min((PAGE_H - top - MARGIN - bottom_room) / rh);
    let patient = heading.patient.as_deref().unwrap_or("–");
    let born = heading.born.as_deref().unwrap_or("–");
    let footer_y = top + rh * scale + 24.0;
    Ok(format!(
        r##"<svg xmlns="http://www.w3.org/2000/svg" width="{PAGE_W}" height="{PAGE_H}" viewBox="0 0 {PAGE_W} {PAGE_H}" font-family="DejaVu Sans" font-size="10">
<rect width="100%" height="100%" fill="#fff"/>
<text x="{MARGIN}" y="{y1}" font-size="12"><tspan font-weight="bold">Patient:</tspan> {patient} <tspan dx="12" font-weight="bold">Born:</tspan> {born}</text>
<g transform="translate({MARGIN} {top}) scale({scale})">{inner}</g>
<text x="{MARGIN}" y="{footer_y}" fill="#444">Printed {printed} by medmesh from the patient's CGM data.</text>
<text x="{MARGIN}" y="{footer_y2}" fill="#444">A summary of past readings, not dosing advice.</text>
</svg>"##,
        y1 = MARGIN + 10.0,
        footer_y2 = footer_y + 14.0,
        patient = esc(patient),
        born = esc(born),
        inner = strip_prolog(report_svg),
        printed = esc(&heading.printed),
    ))
}

/// The report's `<svg>` element without an XML declaration before it (it is nested).
fn strip_prolog(svg: &str) -> &str {
    svg.find("<svg").map_or(svg, |at| &svg[at..])
}

/// The AGP report (`report_svg`, from [`crate::report::agp_svg`]) on one printable A4 page.
pub fn agp_pdf(report_svg: &str, heading: &PrintHeading) -> Result<Vec<u8>, PdfError> {
    let page = page_svg(report_svg, heading)?;
    let tree = usvg::Tree::from_str(&page, &options()).map_err(|_| PdfError::Layout)?;
    let size = Size::from_wh(PAGE_W, PAGE_H).ok_or(PdfError::Layout)?;
    let mut document = Document::new();
    document.set_metadata(
        Metadata::new()
            .title("Ambulatory glucose profile (AGP) report".to_owned())
            .creator("medmesh".to_owned())
            .language("en".to_owned()),
    );
    let mut page = document.start_page_with(PageSettings::new(size));
    let mut surface = page.surface();
    surface
        .draw_svg(&tree, size, SvgSettings::default())
        .ok_or(PdfError::Layout)?;
    surface.finish();
    page.finish();
    document.finish().map_err(|_| PdfError::Write)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_report_becomes_one_a4_page_with_its_heading() {
        let svg = r##"<svg xmlns="http://www.w3.org/2000/svg" viewBox="0 0 960 900" width="960" height="900"><rect width="960" height="900" fill="#eee"/><text x="20" y="32" font-weight="bold">AGP Report – 70–180 mg/dL</text></svg>"##;
        let heading = PrintHeading {
            patient: Some("Ada <Lovelace>".into()),
            born: Some("1815-12-10".into()),
            printed: "2026-12-05T06:00:00Z".into(),
        };
        let page = page_svg(svg, &heading).unwrap();
        assert!(page.contains("Ada &lt;Lovelace&gt;"));
        let pdf = agp_pdf(svg, &heading).unwrap();
        assert!(pdf.starts_with(b"%PDF-"));
        std::fs::write(std::env::temp_dir().join("agp-unit.pdf"), &pdf).unwrap();
        let text = String::from_utf8_lossy(&pdf);
        assert!(text.contains("/Count 1"), "one page");
        assert!(text.contains("/MediaBox[0 0 595.28 841.89]"));
    }

    #[test]
    fn what_is_not_svg_is_refused_in_words() {
        assert!(matches!(
            agp_pdf("not svg", &PrintHeading::default()),
            Err(PdfError::Layout)
        ));
    }
}
