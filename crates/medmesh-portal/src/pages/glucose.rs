//! Glucose (`/glucose` for the patient, `/patients/{id}/glucose` for their clinicians): the
//! consensus figures over a period, the AGP report, and a form to upload CGM, pump and phone
//! exports. Everything goes through the device data service as the viewer, so the PDP
//! decides who may read and who may add.

use askama::Template;
use axum::extract::{Form, Multipart, Path, Query, State};
use axum::http::StatusCode;
use axum::response::Response;
use medmesh_device_import::Format;
use medmesh_devices::FileReport;
use medmesh_server::AppState;
use serde::Deserialize;

use crate::i18n::{Arg, Lang};
use crate::layout::{Problem, Shell, problem, record_problem, render};
use crate::pages::chart::{About, about};
use crate::pages::{csrf_guard, refusal_words, valid_id};
use crate::viewer::{Audience, Viewer};

/// Time zones offered by the period and upload forms (any IANA name is taken).
const ZONES: [&str; 12] = [
    "UTC",
    "Europe/London",
    "Europe/Paris",
    "Europe/Berlin",
    "Europe/Amsterdam",
    "America/New_York",
    "America/Chicago",
    "America/Denver",
    "America/Los_Angeles",
    "Asia/Tokyo",
    "Australia/Sydney",
    "Africa/Johannesburg",
];

/// The period asked for.
#[derive(Debug, Default, Deserialize)]
pub struct PeriodQuery {
    /// First day (YYYY-MM-DD).
    pub start: Option<String>,
    /// Last day, included.
    pub end: Option<String>,
    /// IANA time zone.
    pub tz: Option<String>,
}

/// One figure.
pub struct MetricRow {
    /// Its name in words.
    pub label: String,
    /// Its value in words.
    pub value: String,
    /// The consensus target, in words, or "".
    pub target: String,
}

/// One uploaded file's outcome, in words.
pub struct ImportRow {
    /// The file's name as uploaded.
    pub file: String,
    /// What was read and what was new.
    pub summary: String,
    /// Rejected rows, in words, or "".
    pub rejected: String,
    /// Whether it failed as a whole.
    pub failed: bool,
}

/// A forecast row, in words.
pub struct ForecastRow {
    /// "In 30 minutes".
    pub when: String,
    /// "118 mg/dL".
    pub value: String,
    /// "likely 104 to 133 mg/dL".
    pub band: String,
}

/// A pattern row, in words.
pub struct PatternRow {
    /// What glucose is set against.
    pub factor: String,
    /// The figure.
    pub figure: String,
    /// Days behind it and its uncertainty.
    pub caveat: String,
}

#[derive(Template)]
#[template(path = "glucose.html")]
struct GlucosePage {
    shell: Shell,
    about: Option<About>,
    base: String,
    start: String,
    end: String,
    tz: String,
    zones: Vec<&'static str>,
    readings: usize,
    readings_text: String,
    metrics: Vec<MetricRow>,
    agp: String,
    forecast: Vec<ForecastRow>,
    forecast_error: String,
    patterns: Vec<PatternRow>,
    imported: Vec<ImportRow>,
    error: Option<String>,
}

/// The patient a patient's own glucose pages are about.
fn own_record(viewer: &Viewer) -> Result<String, Problem> {
    if viewer.audience != Audience::Patient {
        return Err(Problem::WrongAudience);
    }
    viewer.own_patient().ok_or(Problem::NotFound)
}

/// A clinician's glucose page for patient `id`: the audience and the id checked.
fn for_clinician(viewer: &Viewer, id: &str) -> Result<(), Problem> {
    if viewer.audience != Audience::Clinician {
        return Err(Problem::WrongAudience);
    }
    if !valid_id(id) {
        return Err(Problem::NotFound);
    }
    Ok(())
}

/// As [`for_clinician`], with the chart's heading for the patient (which the PDP must let
/// the clinician read).
async fn chart_of(state: &AppState, viewer: &Viewer, id: &str) -> Result<About, Response> {
    for_clinician(viewer, id).map_err(|p| problem(viewer.lang, p))?;
    about(state, viewer, id).await
}

/// `GET /glucose`.
pub async fn own(
    State(state): State<AppState>,
    viewer: Viewer,
    Query(q): Query<PeriodQuery>,
) -> Response {
    match own_record(&viewer) {
        Ok(patient) => show(&state, &viewer, &patient, None, q, Vec::new()).await,
        Err(p) => problem(viewer.lang, p),
    }
}

/// `GET /patients/{id}/glucose`.
pub async fn of_patient(
    State(state): State<AppState>,
    viewer: Viewer,
    Path(id): Path<String>,
    Query(q): Query<PeriodQuery>,
) -> Response {
    match chart_of(&state, &viewer, &id).await {
        Ok(about) => show(&state, &viewer, &id, Some(about), q, Vec::new()).await,
        Err(r) => r,
    }
}

/// `GET /glucose/agp.pdf?start=&end=&tz=`: the patient's own AGP report, printable.
pub async fn print_own(
    State(state): State<AppState>,
    viewer: Viewer,
    Query(q): Query<PeriodQuery>,
) -> Response {
    match own_record(&viewer) {
        Ok(patient) => print(&state, &viewer, &patient, q).await,
        Err(p) => problem(viewer.lang, p),
    }
}

/// `GET /patients/{id}/glucose/agp.pdf?start=&end=&tz=`: a patient's AGP report, printable.
pub async fn print_for(
    State(state): State<AppState>,
    viewer: Viewer,
    Path(id): Path<String>,
    Query(q): Query<PeriodQuery>,
) -> Response {
    match for_clinician(&viewer, &id) {
        Ok(()) => print(&state, &viewer, &id, q).await,
        Err(p) => problem(viewer.lang, p),
    }
}

/// The AGP report for the period the page showed, as one A4 page of PDF.
async fn print(state: &AppState, viewer: &Viewer, patient: &str, q: PeriodQuery) -> Response {
    let lang = viewer.lang;
    let tz_name = q.tz.as_deref().map(str::trim).filter(|t| !t.is_empty());
    let Ok(zone) = medmesh_devices::zone(tz_name) else {
        return problem(lang, Problem::BadInput);
    };
    let (Some(start), Some(end)) = (q.start.as_deref(), q.end.as_deref()) else {
        return problem(lang, Problem::BadInput);
    };
    let Ok((from, to)) =
        medmesh_devices::period(Some(start), Some(end), &zone, state.devices.now())
    else {
        return problem(lang, Problem::BadInput);
    };
    let print = match state
        .devices
        .agp_print(&viewer.ctx, patient, from, to, &zone)
        .await
    {
        Ok(p) => p,
        Err(e) => return record_problem(lang, &e),
    };
    match print.to_pdf().await {
        Ok(bytes) => medmesh_server::web::pdf(bytes, "agp-report.pdf"),
        Err(e) => {
            tracing::error!(error = %e, "AGP report not printed");
            problem(lang, Problem::Unavailable)
        }
    }
}

/// The Nightscout form.
#[derive(Debug, Deserialize)]
pub struct NightscoutForm {
    csrf: Option<String>,
    /// The site's base URL.
    url: String,
    /// `token` or `api-secret`.
    kind: String,
    /// The token or the API secret (this pull only; never kept).
    secret: Option<String>,
    /// Days back from now.
    days: Option<String>,
    /// The IANA zone.
    time_zone: Option<String>,
}

/// `POST /glucose/nightscout`: the patient pulls from their Nightscout site.
pub async fn nightscout_own(
    State(state): State<AppState>,
    viewer: Viewer,
    Form(form): Form<NightscoutForm>,
) -> Response {
    match own_record(&viewer) {
        Ok(patient) => nightscout(&state, &viewer, &patient, None, form).await,
        Err(p) => problem(viewer.lang, p),
    }
}

/// `POST /patients/{id}/glucose/nightscout`: a clinician pulls from a patient's site.
pub async fn nightscout_for(
    State(state): State<AppState>,
    viewer: Viewer,
    Path(id): Path<String>,
    Form(form): Form<NightscoutForm>,
) -> Response {
    match chart_of(&state, &viewer, &id).await {
        Ok(about) => nightscout(&state, &viewer, &id, Some(about), form).await,
        Err(r) => r,
    }
}

/// Pulls the days asked for and shows the page with what the pull did.
async fn nightscout(
    state: &AppState,
    viewer: &Viewer,
    patient: &str,
    about: Option<About>,
    form: NightscoutForm,
) -> Response {
    let lang = viewer.lang;
    if let Some(refused) = csrf_guard(viewer, form.csrf.as_deref()) {
        return refused;
    }
    let secret = form
        .secret
        .map(|s| s.trim().to_owned())
        .filter(|s| !s.is_empty());
    let credential = match (form.kind.as_str(), secret) {
        (_, None) => medmesh_devices::RemoteCredential::None,
        ("api-secret", Some(s)) => medmesh_devices::RemoteCredential::ApiSecret(s),
        ("token", Some(t)) => medmesh_devices::RemoteCredential::Token(t),
        _ => return problem(lang, Problem::BadInput),
    };
    let days = match form
        .days
        .as_deref()
        .map(str::trim)
        .filter(|d| !d.is_empty())
    {
        None => medmesh_devices::remote::PULL_DEFAULT_DAYS,
        Some(d) => match d.parse::<i64>() {
            Ok(n) if (1..=medmesh_devices::service::MAX_PERIOD_DAYS).contains(&n) => n,
            _ => return problem(lang, Problem::BadInput),
        },
    };
    let zone_name = form.time_zone.filter(|z| !z.trim().is_empty());
    let Ok(zone) = medmesh_devices::zone(zone_name.as_deref()) else {
        return problem(lang, Problem::BadInput);
    };
    let end = state.devices.now();
    let start = end - jiff::SignedDuration::from_hours(24 * days);
    let name = lang.t("glucose-nightscout-site");
    let row = match state
        .devices
        .pull_nightscout(
            &viewer.ctx,
            patient,
            form.url.trim(),
            credential,
            start,
            end,
            zone,
        )
        .await
    {
        Ok(mut report) => {
            report.file = name;
            import_row(lang, &report)
        }
        Err(e) => match refusal_words(&e) {
            Some(words) => failed(name, words),
            None => return record_problem(lang, &e),
        },
    };
    let q = PeriodQuery {
        tz: zone_name,
        ..PeriodQuery::default()
    };
    show(state, viewer, patient, about, q, vec![row]).await
}

/// `POST /glucose/upload`.
pub async fn upload_own(
    State(state): State<AppState>,
    viewer: Viewer,
    form: Result<Multipart, axum::extract::multipart::MultipartRejection>,
) -> Response {
    match own_record(&viewer) {
        Ok(patient) => upload(&state, &viewer, &patient, None, form).await,
        Err(p) => problem(viewer.lang, p),
    }
}

/// `POST /patients/{id}/glucose/upload`.
pub async fn upload_for(
    State(state): State<AppState>,
    viewer: Viewer,
    Path(id): Path<String>,
    form: Result<Multipart, axum::extract::multipart::MultipartRejection>,
) -> Response {
    match chart_of(&state, &viewer, &id).await {
        Ok(about) => upload(&state, &viewer, &id, Some(about), form).await,
        Err(r) => r,
    }
}

/// Reads the form (its CSRF token first, then the format and zone, then the files), imports
/// each file and shows the page with what each did.
async fn upload(
    state: &AppState,
    viewer: &Viewer,
    patient: &str,
    about: Option<About>,
    form: Result<Multipart, axum::extract::multipart::MultipartRejection>,
) -> Response {
    let lang = viewer.lang;
    let Ok(mut form) = form else {
        return problem(lang, Problem::BadInput);
    };
    let (mut csrf, mut format, mut zone_name) = (None::<String>, None, None::<String>);
    let mut imported = Vec::new();
    loop {
        let mut field = match form.next_field().await {
            Ok(Some(f)) => f,
            Ok(None) => break,
            Err(_) => return problem(lang, Problem::BadInput),
        };
        let name = field.name().unwrap_or_default().to_owned();
        if name != "file" {
            let Ok(value) = field.text().await else {
                return problem(lang, Problem::BadInput);
            };
            match name.as_str() {
                "csrf" => csrf = Some(value),
                "format" => format = Format::from_name(value.trim()),
                "time_zone" => zone_name = Some(value),
                _ => {}
            }
            continue;
        }
        // The token comes before any file: nothing is read for a forged form.
        if let Some(refused) = csrf_guard(viewer, csrf.as_deref()) {
            return refused;
        }
        let file_name = field
            .file_name()
            .unwrap_or("upload")
            .chars()
            .take(200)
            .collect::<String>();
        if file_name.is_empty() {
            continue;
        }
        let file = match medmesh_server::devices::spool(&mut field).await {
            Ok(f) => f,
            Err(medmesh_server::devices::SpoolError::TooLarge) => {
                imported.push(failed(file_name, lang.t("glucose-too-large")));
                break;
            }
            Err(_) => return problem(lang, Problem::BadInput),
        };
        let zone = match medmesh_devices::zone(zone_name.as_deref()) {
            Ok(z) => z,
            Err(_) => {
                imported.push(failed(file_name, lang.t("glucose-bad-zone")));
                continue;
            }
        };
        match state
            .devices
            .import(&viewer.ctx, patient, &file_name, file, format, zone)
            .await
        {
            Ok(report) => imported.push(import_row(lang, &report)),
            Err(e) => match refusal_words(&e) {
                Some(words) => imported.push(failed(file_name, words)),
                None => return record_problem(lang, &e),
            },
        }
    }
    if csrf_guard(viewer, csrf.as_deref()).is_some() {
        return problem(lang, Problem::Forbidden);
    }
    let q = PeriodQuery {
        tz: zone_name,
        ..PeriodQuery::default()
    };
    show(state, viewer, patient, about, q, imported).await
}

fn failed(file: String, reason: String) -> ImportRow {
    ImportRow {
        file,
        summary: reason,
        rejected: String::new(),
        failed: true,
    }
}

fn import_row(lang: Lang, r: &FileReport) -> ImportRow {
    let read: u64 = r.read.records.values().sum();
    let added: u64 = r.added.values().sum();
    let mut summary = lang.t_with(
        "glucose-imported",
        &[
            (
                "format",
                Arg::Text(lang.t(&format!("glucose-format-{}", r.format))),
            ),
            ("read", Arg::Number(read as f64)),
            ("added", Arg::Number(added as f64)),
        ],
    );
    if let (Some(first), Some(last)) = (r.read.first, r.read.last) {
        summary.push_str(&format!(
            " ({} – {})",
            &first.to_string()[..10],
            &last.to_string()[..10]
        ));
    }
    let rejected = if r.read.rejected_total == 0 {
        String::new()
    } else {
        let lines: Vec<String> = r
            .read
            .rejected
            .iter()
            .take(5)
            .map(|x| format!("{}: {}", x.line, x.reason))
            .collect();
        lang.t_with(
            "glucose-rejected",
            &[
                ("count", Arg::Number(r.read.rejected_total as f64)),
                ("lines", Arg::Text(lines.join("; "))),
            ],
        )
    };
    match &r.low_glucose_alert {
        None => {}
        Some(medmesh_devices::alerts::LowAlert::Told { channels }) => {
            summary.push_str(". ");
            summary.push_str(&lang.t_with(
                "glucose-alert-told",
                &[("channels", Arg::Text(channels.join(", ")))],
            ));
        }
        Some(medmesh_devices::alerts::LowAlert::NotChosen) => {
            summary.push_str(". ");
            summary.push_str(&lang.t("glucose-alert-not-chosen"));
        }
        Some(medmesh_devices::alerts::LowAlert::Unavailable) => {
            summary.push_str(". ");
            summary.push_str(&lang.t("glucose-alert-unavailable"));
        }
    }
    ImportRow {
        file: r.file.clone(),
        summary,
        rejected,
        failed: false,
    }
}

fn pct(v: Option<f64>) -> String {
    v.map_or_else(|| "–".to_owned(), |v| format!("{v:.1} %"))
}

fn num(v: Option<f64>, unit: &str) -> String {
    v.map_or_else(
        || "–".to_owned(),
        |v| format!("{v:.0} {unit}").trim_end().to_owned(),
    )
}

async fn show(
    state: &AppState,
    viewer: &Viewer,
    patient: &str,
    about: Option<About>,
    q: PeriodQuery,
    imported: Vec<ImportRow>,
) -> Response {
    let lang = viewer.lang;
    let tz_name =
        q.tz.as_deref()
            .map(str::trim)
            .filter(|t| !t.is_empty())
            .unwrap_or("UTC")
            .to_owned();
    let Ok(zone) = medmesh_devices::zone(Some(&tz_name)) else {
        return problem(lang, Problem::BadInput);
    };
    // By default the 14 days up to the latest reading (or today).
    let latest = match state.devices.latest_glucose(&viewer.ctx, patient).await {
        Ok(l) => l,
        Err(e) => return record_problem(lang, &e),
    };
    let now = state.devices.now();
    let anchor = latest.unwrap_or(now);
    let anchor_day = zone.to_offset(anchor).to_datetime(anchor).date();
    let end = q
        .end
        .clone()
        .filter(|e| !e.trim().is_empty())
        .unwrap_or_else(|| anchor_day.to_string());
    let start = q
        .start
        .clone()
        .filter(|s| !s.trim().is_empty())
        .unwrap_or_else(|| {
            anchor_day
                .checked_sub(jiff::Span::new().days(13))
                .unwrap_or(anchor_day)
                .to_string()
        });
    let (from, to) = match medmesh_devices::period(Some(&start), Some(&end), &zone, now) {
        Ok(p) => p,
        Err(e) => {
            let error = refusal_words(&e).or_else(|| Some(lang.t("glucose-bad-period")));
            return page(
                viewer,
                patient,
                about,
                start,
                end,
                tz_name,
                0,
                Vec::new(),
                Charts::default(),
                imported,
                error,
            );
        }
    };
    let (view, local) = match state
        .devices
        .glucose_summary(&viewer.ctx, patient, from, to, &zone)
        .await
    {
        Ok(v) => v,
        Err(e) => return record_problem(lang, &e),
    };
    let s = &view.summary;
    let metrics = vec![
        MetricRow {
            label: lang.t("glucose-tir"),
            value: pct(s.in_range_70_180),
            target: lang.t("glucose-target-tir"),
        },
        MetricRow {
            label: lang.t("glucose-tbr-54"),
            value: pct(s.below_54),
            target: lang.t("glucose-target-tbr-54"),
        },
        MetricRow {
            label: lang.t("glucose-tbr-70"),
            value: pct(s.below_70),
            target: lang.t("glucose-target-tbr-70"),
        },
        MetricRow {
            label: lang.t("glucose-tar-180"),
            value: pct(s.above_180),
            target: lang.t("glucose-target-tar-180"),
        },
        MetricRow {
            label: lang.t("glucose-tar-250"),
            value: pct(s.above_250),
            target: lang.t("glucose-target-tar-250"),
        },
        MetricRow {
            label: lang.t("glucose-mean"),
            value: num(s.mean_glu, "mg/dL"),
            target: String::new(),
        },
        MetricRow {
            label: lang.t("glucose-gmi"),
            value: pct(s.gmi),
            target: String::new(),
        },
        MetricRow {
            label: lang.t("glucose-cv"),
            value: pct(s.cv_glu),
            target: lang.t("glucose-target-cv"),
        },
        MetricRow {
            label: lang.t("glucose-gri"),
            value: num(s.gri, ""),
            target: String::new(),
        },
        MetricRow {
            label: lang.t("glucose-active"),
            value: pct(s.active_percent),
            target: lang.t("glucose-target-active"),
        },
    ];
    // The latest reading found above serves the forecast, and the readings read for the
    // figures serve the patterns: each is read once per page.
    let (forecast, forecast_error) = match state
        .devices
        .forecast_from(&viewer.ctx, patient, latest, &zone)
        .await
    {
        Ok(f) => forecast_rows(lang, &f),
        Err(e) => return record_problem(lang, &e),
    };
    // Patterns relate the period's glucose to other factors: with no sensor glucose in the
    // period there are none to show (no correlation, no excursion), and the six searches for
    // the factors are not made (bench/README.md, issue 16).
    let patterns = if local.is_empty() {
        Vec::new()
    } else {
        match state
            .devices
            .insights_of(&viewer.ctx, patient, from, to, &zone, &local)
            .await
        {
            Ok(i) => pattern_rows(lang, &i),
            Err(e) => return record_problem(lang, &e),
        }
    };
    let agp = if s.readings > 0 {
        medmesh_devices::report::agp_report(&view, &local)
    } else {
        String::new()
    };
    let charts = Charts {
        agp,
        forecast,
        forecast_error,
        patterns,
    };
    page(
        viewer, patient, about, start, end, tz_name, s.readings, metrics, charts, imported, None,
    )
}

/// What the page shows below the figures.
#[derive(Default)]
struct Charts {
    agp: String,
    forecast: Vec<ForecastRow>,
    forecast_error: String,
    patterns: Vec<PatternRow>,
}

fn forecast_rows(lang: Lang, f: &medmesh_devices::ForecastView) -> (Vec<ForecastRow>, String) {
    let rows = f
        .predictions
        .iter()
        .map(|p| ForecastRow {
            when: lang.t_with(
                "glucose-forecast-in",
                &[("minutes", Arg::Number(p.horizon as f64))],
            ),
            value: format!("{:.0} mg/dL", p.mg_dl),
            band: lang.t_with(
                "glucose-forecast-band",
                &[
                    ("low", Arg::Text(format!("{:.0}", p.low))),
                    ("high", Arg::Text(format!("{:.0}", p.high))),
                ],
            ),
        })
        .collect();
    let error = f
        .evaluations
        .first()
        .map(|e| {
            lang.t_with(
                "glucose-forecast-error",
                &[
                    ("minutes", Arg::Number(e.horizon as f64)),
                    ("model", Arg::Text(format!("{:.0}", e.model.rmse))),
                    ("naive", Arg::Text(format!("{:.0}", e.last_value.rmse))),
                ],
            )
        })
        .unwrap_or_default();
    (rows, error)
}

fn pattern_rows(lang: Lang, i: &medmesh_devices::Insights) -> Vec<PatternRow> {
    let mut rows: Vec<PatternRow> = i
        .correlations
        .iter()
        .filter_map(|c| {
            let r = c.r?;
            Some(PatternRow {
                factor: lang.t(&format!("glucose-factor-{}", c.factor)),
                figure: lang.t_with(
                    "glucose-correlation",
                    &[
                        ("r", Arg::Text(format!("{r:+.2}"))),
                        ("lag", Arg::Number(c.lag_minutes as f64)),
                    ],
                ),
                caveat: lang.t_with("glucose-days", &[("days", Arg::Number(c.days as f64))]),
            })
        })
        .collect();
    for e in &i.excursions {
        if let Some(change) = e.mean_change {
            rows.push(PatternRow {
                factor: lang.t(if e.after.starts_with("meals") {
                    "glucose-after-meals"
                } else {
                    "glucose-after-workouts"
                }),
                figure: lang.t_with(
                    "glucose-excursion",
                    &[
                        ("change", Arg::Text(format!("{change:+.0}"))),
                        ("events", Arg::Number(e.events as f64)),
                    ],
                ),
                caveat: lang.t_with("glucose-days", &[("days", Arg::Number(e.days as f64))]),
            });
        }
    }
    rows
}

#[allow(clippy::too_many_arguments)]
fn page(
    viewer: &Viewer,
    patient: &str,
    about: Option<About>,
    start: String,
    end: String,
    tz: String,
    readings: usize,
    metrics: Vec<MetricRow>,
    charts: Charts,
    imported: Vec<ImportRow>,
    error: Option<String>,
) -> Response {
    let (here, base) = match &about {
        Some(_) => (
            format!("/patients/{patient}/glucose"),
            format!("/patients/{patient}/glucose"),
        ),
        None => ("/glucose".to_owned(), "/glucose".to_owned()),
    };
    let status = if error.is_some() {
        StatusCode::UNPROCESSABLE_ENTITY
    } else {
        StatusCode::OK
    };
    render(
        status,
        &GlucosePage {
            shell: Shell::new(viewer, &here, "glucose-title"),
            about,
            base,
            start,
            end,
            tz,
            zones: ZONES.to_vec(),
            readings,
            readings_text: viewer.lang.t_with(
                "glucose-readings",
                &[("count", Arg::Number(readings as f64))],
            ),
            metrics,
            agp: charts.agp,
            forecast: charts.forecast,
            forecast_error: charts.forecast_error,
            patterns: charts.patterns,
            imported,
            error,
        },
    )
}

/// One patient on the clinicians' panel.
pub struct PanelEntry {
    /// The patient's id.
    pub id: String,
    /// Their name.
    pub name: String,
    /// The figures, in words.
    pub gri: String,
    /// Time below 70.
    pub below_70: String,
    /// Time below 54.
    pub below_54: String,
    /// Time in range.
    pub in_range: String,
    /// Sensor active.
    pub active: String,
}

#[derive(Template)]
#[template(path = "glucose_panel.html")]
struct PanelPage {
    shell: Shell,
    by_gri: bool,
    entries: Vec<PanelEntry>,
}

/// The panel's sort.
#[derive(Debug, Default, Deserialize)]
pub struct PanelQuery {
    /// `gri` (default) or `below_70`.
    pub sort: Option<String>,
}

/// `GET /glucose/panel`: the clinician's patients with CGM data in the last 14 days, the
/// highest glycemia risk (or the most time below range) first.
pub async fn panel(
    State(state): State<AppState>,
    viewer: Viewer,
    Query(q): Query<PanelQuery>,
) -> Response {
    let lang = viewer.lang;
    if viewer.audience != Audience::Clinician {
        return problem(lang, Problem::WrongAudience);
    }
    let by_gri = q.sort.as_deref() != Some("below_70");
    let order = if by_gri {
        medmesh_devices::PanelOrder::Gri
    } else {
        medmesh_devices::PanelOrder::BelowRange
    };
    let now = state.devices.now();
    let rows = match state
        .devices
        .panel(&viewer.ctx, now, 14, order, &jiff::tz::TimeZone::UTC)
        .await
    {
        Ok(r) => r,
        Err(e) => return record_problem(lang, &e),
    };
    let mut names = medmesh_records::reading::Names::new();
    let mut entries = Vec::with_capacity(rows.len());
    for r in rows {
        let name = names
            .of(
                &state.records,
                &viewer.ctx,
                &format!("Patient/{}", r.patient),
            )
            .await;
        let s = &r.summary;
        entries.push(PanelEntry {
            id: r.patient,
            name,
            gri: num(s.gri, ""),
            below_70: pct(s.below_70),
            below_54: pct(s.below_54),
            in_range: pct(s.in_range_70_180),
            active: pct(s.active_percent),
        });
    }
    render(
        StatusCode::OK,
        &PanelPage {
            shell: Shell::new(&viewer, "/glucose/panel", "glucose-panel-title"),
            by_gri,
            entries,
        },
    )
}
