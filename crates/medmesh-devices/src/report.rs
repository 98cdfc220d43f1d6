//! The AGP report as SVG, on the international consensus layout (Battelino et al. 2019;
//! the IDC's AGP report v5): the glucose statistics, the time in ranges as a stacked bar,
//! the profile's 5/25/50/75/95 percentile bands over a modal day with the 70–180 mg/dL
//! target range, and the daily glucose profiles (the last 14 days), all in one image whose
//! `<title>` and `<desc>` say in words what it shows.

use std::fmt::Write;

use medmesh_glucose::agp::{Bin, DailyProfile};

use crate::service::GlucoseView;

const WIDTH: f64 = 960.0;
const Y_MAX: f64 = 350.0;
const VERY_LOW: &str = "#a3181b";
const LOW: &str = "#e03a3e";
const TARGET: &str = "#3a9a4f";
const HIGH: &str = "#f2b134";
const VERY_HIGH: &str = "#e8831e";

/// `text` escaped for SVG text and attributes.
pub(crate) fn esc(text: &str) -> String {
    text.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}

fn fmt(value: Option<f64>, decimals: usize, suffix: &str) -> String {
    value.map_or_else(|| "–".to_owned(), |v| format!("{v:.decimals$}{suffix}"))
}

/// The AGP report for `view` and the readings behind it: their modal day and daily
/// profiles, drawn.
pub fn agp_report(view: &GlucoseView, readings: &[medmesh_glucose::Reading]) -> String {
    agp_svg(
        view,
        &medmesh_glucose::agp::modal_day(readings),
        &medmesh_glucose::agp::daily_profiles(readings),
    )
}

/// The AGP report for `view` over `bins` (the modal day) and `days` (daily profiles).
pub fn agp_svg(view: &GlucoseView, bins: &[Bin], days: &[DailyProfile]) -> String {
    let s = &view.summary;
    let daily = &days[days.len().saturating_sub(14)..];
    let rows = daily.len().div_ceil(7).max(1);
    let height = 680.0 + rows as f64 * 110.0;
    let mut svg = String::new();
    let desc = format!(
        "{} readings over {:.0} days ({} CGM active). Mean glucose {}, GMI {}, CV {}. Time below 54 mg/dL {}, 54 to 69 {}, in range 70 to 180 {}, 181 to 250 {}, above 250 {}.",
        s.readings,
        view.days,
        fmt(s.active_percent, 1, "%"),
        fmt(s.mean_glu, 0, " mg/dL"),
        fmt(s.gmi, 1, "%"),
        fmt(s.cv_glu, 1, "%"),
        fmt(s.below_54, 1, "%"),
        fmt(s.below_70.zip(s.below_54).map(|(a, b)| a - b), 1, "%"),
        fmt(s.in_range_70_180, 1, "%"),
        fmt(s.above_180.zip(s.above_250).map(|(a, b)| a - b), 1, "%"),
        fmt(s.above_250, 1, "%"),
    );
    let _ = write!(
        svg,
        r##"<svg xmlns="http://www.w3.org/2000/svg" viewBox="0 0 {WIDTH} {height}" width="{WIDTH}" height="{height}" role="img" aria-labelledby="agp-title agp-desc" font-family="DejaVu Sans, Arial, sans-serif" font-size="13">
<title id="agp-title">Ambulatory glucose profile, {start} to {end}</title>
<desc id="agp-desc">{desc}</desc>
<rect width="100%" height="100%" fill="#fff"/>
<text x="20" y="32" font-size="22" font-weight="bold">AGP Report: Continuous Glucose Monitoring</text>
<text x="20" y="54" fill="#444">{start} – {end} ({days:.0} days, {tz}) · % time CGM is active: {active}</text>
"##,
        start = esc(&view.start[..10.min(view.start.len())]),
        end = esc(&view.end[..10.min(view.end.len())]),
        desc = esc(&desc),
        days = view.days,
        tz = esc(&view.time_zone),
        active = fmt(s.active_percent, 1, "%"),
    );
    // Glucose statistics.
    let stats = [
        ("Mean glucose", fmt(s.mean_glu, 0, " mg/dL")),
        ("Glucose management indicator (GMI)", fmt(s.gmi, 1, "%")),
        ("Glucose variability (CV)", fmt(s.cv_glu, 1, "%")),
        ("Standard deviation", fmt(s.sd_glu, 0, " mg/dL")),
        ("Glycemia risk index (GRI)", fmt(s.gri, 0, "")),
        ("MAGE", fmt(s.mage, 0, " mg/dL")),
    ];
    let _ = writeln!(
        svg,
        r##"<text x="20" y="90" font-size="15" font-weight="bold">Glucose statistics and targets</text>"##
    );
    for (i, (label, value)) in stats.iter().enumerate() {
        let y = 116.0 + i as f64 * 22.0;
        let _ = writeln!(
            svg,
            r##"<text x="20" y="{y}">{}</text><text x="420" y="{y}" text-anchor="end" font-weight="bold">{}</text>"##,
            esc(label),
            esc(value)
        );
    }
    // Time in ranges: one stacked bar, very high on top.
    let parts = [
        ("Very high (>250)", s.above_250, VERY_HIGH),
        (
            "High (181–250)",
            s.above_180.zip(s.above_250).map(|(a, b)| a - b),
            HIGH,
        ),
        ("Target (70–180)", s.in_range_70_180, TARGET),
        (
            "Low (54–69)",
            s.below_70.zip(s.below_54).map(|(a, b)| a - b),
            LOW,
        ),
        ("Very low (<54)", s.below_54, VERY_LOW),
    ];
    let _ = writeln!(
        svg,
        r##"<text x="520" y="90" font-size="15" font-weight="bold">Time in ranges</text>"##
    );
    let (bar_top, bar_height) = (104.0, 130.0);
    let mut y = bar_top;
    for (i, (label, value, colour)) in parts.iter().enumerate() {
        let h = value.unwrap_or(0.0) / 100.0 * bar_height;
        // An empty range draws nothing (a zero-height rectangle is not valid to every reader).
        if h >= 0.005 {
            let _ = writeln!(
                svg,
                r##"<rect x="520" y="{y:.2}" width="40" height="{h:.2}" fill="{colour}"/>"##
            );
        }
        let ly = bar_top + 10.0 + i as f64 * 28.0;
        let _ = writeln!(
            svg,
            r##"<rect x="580" y="{:.0}" width="12" height="12" fill="{colour}"/><text x="600" y="{ly:.0}">{}</text><text x="900" y="{ly:.0}" text-anchor="end" font-weight="bold">{}</text>"##,
            ly - 10.0,
            esc(label),
            fmt(*value, 0, "%"),
        );
        y += h;
    }
    // The profile over a modal day.
    let (left, top, width, plot_h) = (60.0, 290.0, 860.0, 300.0);
    let x_of = |minute: f64| left + minute / 1440.0 * width;
    let y_of = |mg: f64| top + plot_h - mg.clamp(0.0, Y_MAX) / Y_MAX * plot_h;
    let _ = writeln!(
        svg,
        r##"<text x="20" y="{:.0}" font-size="15" font-weight="bold">Ambulatory glucose profile (AGP)</text>"##,
        top - 14.0
    );
    let _ = writeln!(
        svg,
        r##"<rect x="{left}" y="{:.2}" width="{width}" height="{:.2}" fill="#e9f5ec"/>"##,
        y_of(180.0),
        y_of(70.0) - y_of(180.0)
    );
    for mg in [54.0, 70.0, 180.0, 250.0, 350.0] {
        let yy = y_of(mg);
        let colour = if mg == 70.0 || mg == 180.0 {
            TARGET
        } else {
            "#bbb"
        };
        let _ = writeln!(
            svg,
            r##"<line x1="{left}" y1="{yy:.2}" x2="{:.0}" y2="{yy:.2}" stroke="{colour}" stroke-width="1"/><text x="{:.0}" y="{:.2}" text-anchor="end" font-size="11">{mg:.0}</text>"##,
            left + width,
            left - 6.0,
            yy + 4.0
        );
    }
    for hour in (0..=24).step_by(3) {
        let xx = x_of(f64::from(hour) * 60.0);
        let label = match hour {
            0 | 24 => "12am".to_owned(),
            12 => "12pm".to_owned(),
            h if h < 12 => format!("{h}am"),
            h => format!("{}pm", h - 12),
        };
        let _ = writeln!(
            svg,
            r##"<line x1="{xx:.2}" y1="{top}" x2="{xx:.2}" y2="{:.0}" stroke="#eee"/><text x="{xx:.2}" y="{:.0}" text-anchor="middle" font-size="11">{label}</text>"##,
            top + plot_h,
            top + plot_h + 16.0
        );
    }
    let centre = |b: &Bin| x_of(b.minute as f64 + 7.5);
    let band = |lo: usize, hi: usize, fill: &str| -> String {
        let present: Vec<(f64, [f64; 5])> = bins
            .iter()
            .filter_map(|b| b.percentiles.map(|p| (centre(b), p)))
            .collect();
        if present.len() < 2 {
            return String::new();
        }
        let mut d = String::new();
        for (i, (x, p)) in present.iter().enumerate() {
            let _ = write!(
                d,
                "{}{x:.2},{:.2} ",
                if i == 0 { "M" } else { "L" },
                y_of(p[hi])
            );
        }
        for (x, p) in present.iter().rev() {
            let _ = write!(d, "L{x:.2},{:.2} ", y_of(p[lo]));
        }
        format!(r##"<path d="{}Z" fill="{fill}" stroke="none"/>"##, d)
    };
    svg.push_str(&band(0, 4, "#cfd8e6"));
    svg.push('\n');
    svg.push_str(&band(1, 3, "#7f9cc9"));
    svg.push('\n');
    let median: Vec<String> = bins
        .iter()
        .filter_map(|b| {
            b.percentiles
                .map(|p| format!("{:.2},{:.2}", centre(b), y_of(p[2])))
        })
        .collect();
    if median.len() >= 2 {
        let _ = writeln!(
            svg,
            r##"<polyline points="{}" fill="none" stroke="#1b3a6b" stroke-width="2.5"/>"##,
            median.join(" ")
        );
    }
    let _ = writeln!(
        svg,
        r##"<text x="{left}" y="{:.0}" font-size="11" fill="#444">Median (dark line), 25–75% (dark band) and 5–95% (light band) of readings in each 15 minutes; mg/dL</text>"##,
        top + plot_h + 34.0
    );
    // Daily glucose profiles.
    let daily_top = top + plot_h + 70.0;
    let _ = writeln!(
        svg,
        r##"<text x="20" y="{daily_top:.0}" font-size="15" font-weight="bold">Daily glucose profiles</text>"##
    );
    let cell_w = width / 7.0;
    for (i, day) in daily.iter().enumerate() {
        let (col, row) = ((i % 7) as f64, (i / 7) as f64);
        let x0 = left + col * cell_w;
        let y0 = daily_top + 14.0 + row * 110.0;
        let h = 80.0;
        let yd = |mg: f64| y0 + h - mg.clamp(0.0, Y_MAX) / Y_MAX * h;
        let date = jiff::Timestamp::from_second(day.day)
            .map(|t| t.strftime("%a %d %b").to_string())
            .unwrap_or_default();
        let _ = writeln!(
            svg,
            r##"<rect x="{x0:.2}" y="{y0:.2}" width="{:.2}" height="{h}" fill="#fafafa" stroke="#ccc"/><rect x="{x0:.2}" y="{:.2}" width="{:.2}" height="{:.2}" fill="#e9f5ec"/><text x="{:.2}" y="{:.2}" font-size="11">{}</text>"##,
            cell_w - 4.0,
            yd(180.0),
            cell_w - 4.0,
            yd(70.0) - yd(180.0),
            x0 + 4.0,
            y0 + h + 14.0,
            esc(&date),
        );
        // Break the line at gaps over an hour.
        let mut segments: Vec<Vec<String>> = vec![Vec::new()];
        let mut last: Option<i64> = None;
        for (minute, mg) in &day.points {
            if last.is_some_and(|l| minute - l > 60)
                && let Some(seg) = segments.last()
                && !seg.is_empty()
            {
                segments.push(Vec::new());
            }
            if let Some(seg) = segments.last_mut() {
                seg.push(format!(
                    "{:.2},{:.2}",
                    x0 + *minute as f64 / 1440.0 * (cell_w - 4.0),
                    yd(*mg)
                ));
            }
            last = Some(*minute);
        }
        for seg in segments.iter().filter(|s| s.len() >= 2) {
            let _ = writeln!(
                svg,
                r##"<polyline points="{}" fill="none" stroke="#1b3a6b" stroke-width="1"/>"##,
                seg.join(" ")
            );
        }
    }
    svg.push_str("</svg>\n");
    svg
}

#[cfg(test)]
mod tests {
    use super::*;
    use medmesh_glucose::{Reading, agp, summarize};

    #[test]
    fn the_report_says_in_words_what_it_draws() {
        let readings: Vec<Reading> = (0..2016)
            .map(|i| Reading {
                at: 1_600_000_000 / 86_400 * 86_400 + i * 300,
                mg_dl: 120.0 + (i % 50) as f64,
            })
            .collect();
        let view = GlucoseView {
            start: "2020-09-13T00:00:00Z".into(),
            end: "2020-09-20T00:00:00Z".into(),
            time_zone: "UTC".into(),
            unit: "mg/dL",
            days: 7.0,
            summary: summarize(&readings),
        };
        let svg = agp_svg(
            &view,
            &agp::modal_day(&readings),
            &agp::daily_profiles(&readings),
        );
        assert!(svg.starts_with("<svg"));
        assert!(svg.contains(
            "<title id=\"agp-title\">Ambulatory glucose profile, 2020-09-13 to 2020-09-20</title>"
        ));
        assert!(svg.contains("in range 70 to 180 100.0%"));
        assert!(!svg.contains("height=\"0.00\""), "no empty range drawn");
        assert_eq!(svg.matches("<polyline").count(), 1 + 7);
        assert!(svg.ends_with("</svg>\n"));
    }
}
