//! An analyte's trend as a small inline SVG, drawn on the server: the values joined in time
//! order, the reference range shaded, abnormal values marked with a larger, outlined point
//! (not by colour alone). It carries its own accessible name and description; the page
//! lists the same values in a table beside it. Styling is by class, from the portal's
//! stylesheet, so the CSP needs no inline style.
//!
//! Hand-written rather than plotters: the chart is a few shapes whose accessibility
//! attributes and classes we need to control, and plotters' SVG would need rewriting for
//! both.

use std::fmt::Write;

use crate::clinical::{Series, number};

/// The drawing's size in SVG units (it scales to its box).
const WIDTH: f64 = 320.0;
const HEIGHT: f64 = 120.0;
const PAD_X: f64 = 36.0;
const PAD_Y: f64 = 12.0;

/// Escapes text for SVG.
fn escape(text: &str) -> String {
    text.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}

/// The SVG of a series' trend; `id` makes its title and description ids unique on the page,
/// `title` and `description` are its accessible name and description (already translated).
/// `None` for fewer than two values: a single value has no trend.
pub fn trend(series: &Series, id: &str, title: &str, description: &str) -> Option<String> {
    if series.points.len() < 2 {
        return None;
    }
    let first = series.points.first()?.at.unix_timestamp() as f64;
    let last = series.points.last()?.at.unix_timestamp() as f64;
    let values = series.points.iter().map(|p| p.value);
    let range_ends = series.range.iter().flat_map(|r| [r.low, r.high]).flatten();
    let (mut lo, mut hi) = values
        .chain(range_ends)
        .fold((f64::INFINITY, f64::NEG_INFINITY), |(l, h), v| {
            (l.min(v), h.max(v))
        });
    if (hi - lo).abs() < f64::EPSILON {
        lo -= 1.0;
        hi += 1.0;
    }
    let margin = (hi - lo) * 0.08;
    let (lo, hi) = (lo - margin, hi + margin);
    let span = (last - first).max(1.0);
    let x = |t: f64| PAD_X + (t - first) / span * (WIDTH - PAD_X - 8.0);
    let y = |v: f64| PAD_Y + (hi - v) / (hi - lo) * (HEIGHT - 2.0 * PAD_Y);

    let mut svg = String::new();
    let _ = write!(
        svg,
        r#"<svg class="trend" viewBox="0 0 {WIDTH} {HEIGHT}" role="img" aria-labelledby="{id}-t {id}-d"><title id="{id}-t">{}</title><desc id="{id}-d">{}</desc>"#,
        escape(title),
        escape(description)
    );
    if let Some(r) = series.range {
        let top = y(r.high.unwrap_or(hi));
        let bottom = y(r.low.unwrap_or(lo));
        let _ = write!(
            svg,
            r#"<rect class="range" x="{PAD_X}" y="{top:.1}" width="{:.1}" height="{:.1}"/>"#,
            WIDTH - PAD_X,
            (bottom - top).max(0.0)
        );
    }
    // The axis labels: the highest and lowest value drawn.
    for v in [hi - margin, lo + margin] {
        let _ = write!(
            svg,
            r#"<text class="axis" x="{:.1}" y="{:.1}" text-anchor="end">{}</text>"#,
            PAD_X - 4.0,
            y(v) + 3.0,
            number(v)
        );
    }
    let line: Vec<String> = series
        .points
        .iter()
        .map(|p| format!("{:.1},{:.1}", x(p.at.unix_timestamp() as f64), y(p.value)))
        .collect();
    let _ = write!(
        svg,
        r#"<polyline class="line" points="{}"/>"#,
        line.join(" ")
    );
    for p in &series.points {
        let (cx, cy) = (x(p.at.unix_timestamp() as f64), y(p.value));
        if p.flag.is_abnormal() {
            let _ = write!(
                svg,
                r#"<circle class="point abnormal" cx="{cx:.1}" cy="{cy:.1}" r="4.5"/>"#
            );
        } else {
            let _ = write!(
                svg,
                r#"<circle class="point" cx="{cx:.1}" cy="{cy:.1}" r="2.5"/>"#
            );
        }
    }
    svg.push_str("</svg>");
    Some(svg)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::clinical::{Flag, Point, Range};

    fn at(day: u8) -> time::OffsetDateTime {
        time::Date::from_calendar_date(2026, time::Month::January, day)
            .unwrap()
            .midnight()
            .assume_utc()
    }

    #[test]
    fn a_trend_shades_the_range_and_marks_abnormal_values() {
        let s = Series {
            name: "Glucose <fasting>".into(),
            unit: "mg/dL".into(),
            range: Some(Range {
                low: Some(70.0),
                high: Some(99.0),
            }),
            typical: false,
            points: vec![
                Point {
                    at: at(1),
                    value: 85.0,
                    flag: Flag::Normal,
                },
                Point {
                    at: at(2),
                    value: 150.0,
                    flag: Flag::High,
                },
                Point {
                    at: at(3),
                    value: 90.0,
                    flag: Flag::Normal,
                },
            ],
        };
        let svg = trend(&s, "g1", "Glucose <fasting>", "3 values").unwrap();
        assert!(svg.starts_with(r#"<svg class="trend""#));
        assert!(svg.contains(r#"role="img" aria-labelledby="g1-t g1-d""#));
        assert!(svg.contains("<title id=\"g1-t\">Glucose &lt;fasting&gt;</title>"));
        assert_eq!(svg.matches(r#"class="range""#).count(), 1);
        assert_eq!(svg.matches("point abnormal").count(), 1);
        assert_eq!(svg.matches(r#"class="point""#).count(), 2);
        // The abnormal value is the highest point: the smallest y.
        let ys: Vec<f64> = svg
            .split("cy=\"")
            .skip(1)
            .map(|r| r.split('"').next().unwrap().parse().unwrap())
            .collect();
        assert!(ys[1] < ys[0] && ys[1] < ys[2]);
        assert!(!svg.contains("style="));
        let one = Series {
            points: vec![s.points[0].clone()],
            ..s
        };
        assert!(trend(&one, "g2", "x", "y").is_none());
    }
}
