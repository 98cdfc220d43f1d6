//! Device data over HTTP and the CLI: a patient uploads her Dexcom Clarity export (the
//! report counts what was read and what was new); uploading it again adds nothing; her GP
//! adds a LibreView export and the operator CareLink exports from the command line; a
//! stranger can neither add nor read; the glucose summary names iglu's metrics; the day
//! series are FHIR Observations with SampledData, their Device contained, and a Provenance; a file that is
//! no export gets an OperationOutcome (and the CLI exits 1).

use reqwest::StatusCode;
use serde_json::Value;

use crate::documents::{multipart, patient, practitioner, seed};
use crate::harness::{Db, Node, shared_testdata};
use crate::on_both_databases;

async fn upload(
    who: &Node,
    patient: &str,
    fields: &[(&str, &str)],
    name: &str,
    bytes: &[u8],
) -> (StatusCode, Value) {
    let (ct, body) = multipart(fields, name, "application/octet-stream", bytes);
    let (s, _, b) = who
        .send(
            who.auth(
                who.client
                    .post(who.root_url(&format!("/api/patients/{patient}/device-data"))),
            )
            .header("content-type", ct)
            .body(body),
        )
        .await;
    (s, b)
}

/// A file of the shared samples: `dir/name`.
fn sample_path(path: &str) -> std::path::PathBuf {
    let (dir, name) = path.split_once('/').unwrap();
    shared_testdata(dir).join(name)
}

fn sample(path: &str) -> Vec<u8> {
    std::fs::read(sample_path(path)).unwrap()
}

fn count(report: &Value, what: &str, channel: &str) -> u64 {
    report[what][channel].as_u64().unwrap_or(0)
}

async fn device_data(node: Node) {
    seed(&node).await;
    let pat = patient(&node);
    let gp = practitioner(&node, "gp", "gp");
    let stranger = practitioner(&node, "stranger", "stranger");
    let dexcom = sample("cgm-dexcom-clarity-cgmquantify/dexcom_clarity_g6_export.csv");

    // The patient uploads her own export.
    let (s, b) = upload(
        &pat,
        "pat",
        &[("time_zone", "America/Los_Angeles")],
        "clarity.csv",
        &dexcom,
    )
    .await;
    assert_eq!(s, StatusCode::OK, "{b}");
    let report = &b["files"][0];
    assert_eq!(report["format"], "dexcom-clarity");
    assert_eq!(report["unit"], "mg/dL");
    assert_eq!(count(report, "records", "sensor-glucose"), 2148);
    let added = count(report, "added", "sensor-glucose");
    assert!(added > 2100 && added <= 2148, "{report}");
    assert_eq!(report["skipped"]["patient details (not kept)"], 3);
    assert_eq!(report["rejected_total"], 0);
    assert_eq!(report["devices"][0], "Dexcom G6 Mobile App");
    let written = report["series_written"].as_u64().unwrap();
    assert_eq!(written, 9, "nine UTC days: {report}");
    assert!(
        !b.to_string().contains("Schmoe"),
        "no patient details in the report"
    );

    // Again: nothing new, nothing written.
    let (s, b) = upload(
        &pat,
        "pat",
        &[("time_zone", "America/Los_Angeles")],
        "clarity.csv",
        &dexcom,
    )
    .await;
    assert_eq!(s, StatusCode::OK, "{b}");
    assert_eq!(b["files"][0]["series_written"], 0, "{b}");
    assert_eq!(b["files"][0]["series_unchanged"].as_u64(), Some(written));
    assert!(b["files"][0]["added"].as_object().unwrap().is_empty());

    // The forecast from the latest reading, with its band and its measured error.
    let (s, _, forecast) = pat
        .get_raw("/api/patients/pat/glucose/forecast?tz=America/Los_Angeles")
        .await;
    assert_eq!(s, StatusCode::OK, "{forecast}");
    assert_eq!(forecast["latest"], "2016-11-01T16:19:00Z");
    let predictions = forecast["predictions"].as_array().unwrap();
    assert_eq!(predictions.len(), 2, "{forecast}");
    for p in predictions {
        let (low, mid, high) = (
            p["low"].as_f64().unwrap(),
            p["mg_dl"].as_f64().unwrap(),
            p["high"].as_f64().unwrap(),
        );
        assert!(
            low <= mid && mid <= high && (40.0..400.0).contains(&mid),
            "{p}"
        );
    }
    for e in forecast["evaluations"].as_array().unwrap() {
        assert!(
            e["model"]["rmse"].as_f64() < e["last_value"]["rmse"].as_f64(),
            "{e}"
        );
    }
    assert!(
        forecast["note"]
            .as_str()
            .unwrap()
            .contains("not a dosing aid")
    );
    // Her GP adds a LibreView export; a stranger can do neither.
    let libre = sample("cgm-libreview-glyco/tiny_sample.csv");
    let (s, b) = upload(&gp, "pat", &[], "libre.csv", &libre).await;
    assert_eq!(s, StatusCode::OK, "{b}");
    assert_eq!(count(&b["files"][0], "added", "sensor-glucose"), 6);
    let (s, _) = upload(&stranger, "pat", &[], "libre.csv", &libre).await;
    assert!(
        s == StatusCode::FORBIDDEN || s == StatusCode::NOT_FOUND,
        "{s}"
    );

    // The summary, named as iglu names it.
    let q = "start=2016-10-01&end=2016-11-30&tz=America/Los_Angeles";
    let (s, _, summary) = pat
        .get_raw(&format!("/api/patients/pat/glucose/summary?{q}"))
        .await;
    assert_eq!(s, StatusCode::OK, "{summary}");
    assert_eq!(summary["readings"].as_u64(), Some(added));
    assert_eq!(summary["unit"], "mg/dL");
    for field in [
        "mean_glu",
        "sd_glu",
        "cv_glu",
        "gmi",
        "below_54",
        "below_70",
        "in_range_70_180",
        "above_180",
        "above_250",
        "active_percent",
        "mage",
        "conga",
        "modd",
        "lbgi",
        "hbgi",
        "gri",
        "j_index",
    ] {
        assert!(summary[field].as_f64().is_some(), "{field}: {summary}");
    }
    let mean = summary["mean_glu"].as_f64().unwrap();
    assert!((mean - 111.9).abs() < 1.0, "{mean}");
    let (s, _, _) = stranger
        .get_raw(&format!("/api/patients/pat/glucose/summary?{q}"))
        .await;
    assert!(
        s == StatusCode::FORBIDDEN || s == StatusCode::NOT_FOUND,
        "{s}"
    );
    let (s, _, bad) = pat
        .get_raw("/api/patients/pat/glucose/summary?start=2010-01-01&end=2016-01-01")
        .await;
    assert_eq!(s, StatusCode::BAD_REQUEST, "{bad}");

    // The readings and the AGP.
    let (s, _, readings) = pat
        .get_raw(&format!("/api/patients/pat/glucose/readings?{q}"))
        .await;
    assert_eq!(s, StatusCode::OK);
    assert_eq!(readings["readings"].as_array().unwrap().len() as u64, added);
    let (s, headers, svg) = pat
        .get_bytes(&format!("/api/patients/pat/glucose/agp.svg?{q}"))
        .await;
    assert_eq!(s, StatusCode::OK);
    assert!(
        headers["content-type"]
            .to_str()
            .unwrap()
            .starts_with("image/svg+xml")
    );
    let svg = String::from_utf8(svg).unwrap();
    assert!(
        svg.contains("Ambulatory glucose profile") && svg.contains("Time in ranges"),
        "{svg}"
    );

    // The correlations: no insulin, carbs or activity in this export, so none to show.
    let (s, _, insights) = pat
        .get_raw(&format!("/api/patients/pat/glucose/correlations?{q}"))
        .await;
    assert_eq!(s, StatusCode::OK, "{insights}");
    assert!(
        insights["correlations"].as_array().unwrap().is_empty(),
        "{insights}"
    );
    assert_eq!(insights["excursions"][0]["events"], 0);

    // The clinicians' panel: the GP sees her patient (data in the period), a stranger none.
    let now_ms = time::OffsetDateTime::now_utc().unix_timestamp() * 1000;
    let entries: Vec<serde_json::Value> = (0..864)
        .map(|i: i64| serde_json::json!({"type": "sgv", "sgv": 60 + (i % 40) * 3, "date": now_ms - i * 300_000, "device": "xDrip"}))
        .collect();
    let (s, b) = upload(
        &pat,
        "pat",
        &[],
        "entries.json",
        serde_json::to_string(&entries).unwrap().as_bytes(),
    )
    .await;
    assert_eq!(s, StatusCode::OK, "{b}");
    let (s, _, panel) = gp.get_raw("/api/glucose/panel?days=14&sort=below_70").await;
    assert_eq!(s, StatusCode::OK, "{panel}");
    assert_eq!(panel["patients"][0]["patient"], "pat", "{panel}");
    assert_eq!(panel["patients"][0]["readings"], 864);
    assert!(
        panel["patients"][0]["below_70"].as_f64().unwrap() > 5.0,
        "{panel}"
    );
    let (s, _, none) = stranger.get_raw("/api/glucose/panel?days=90").await;
    assert_eq!(s, StatusCode::OK, "{none}");
    assert!(none["patients"].as_array().unwrap().is_empty(), "{none}");
    let (s, _, bad) = gp.get_raw("/api/glucose/panel?sort=age").await;
    assert_eq!(s, StatusCode::BAD_REQUEST, "{bad}");

    // The CGM implementation guide's export: the summary, its members and the readings.
    let (s, _, cgm) = pat.get_raw("/api/patients/pat/glucose/cgm-bundle?start=2016-10-24&end=2016-11-01&tz=America/Los_Angeles").await;
    assert_eq!(s, StatusCode::OK, "{cgm}");
    assert_eq!(cgm["type"], "collection");
    let entries = cgm["entry"].as_array().unwrap();
    assert_eq!(
        entries[0]["resource"]["meta"]["profile"][0],
        "http://hl7.org/fhir/uv/cgm/StructureDefinition/cgm-summary"
    );
    assert_eq!(
        entries[0]["resource"]["hasMember"]
            .as_array()
            .unwrap()
            .len(),
        6
    );
    let readings_exported = entries
        .iter()
        .filter(|e| e["resource"]["code"]["coding"][0]["code"] == "99504-3")
        .count() as u64;
    assert_eq!(readings_exported, added);
    let (s, _, big) = pat
        .get_raw("/api/patients/pat/glucose/cgm-bundle?start=2016-01-01&end=2016-11-01")
        .await;
    assert_eq!(s, StatusCode::BAD_REQUEST, "{big}");

    // FHIR clients see Observations with SampledData, the Device and the Provenance.
    let bundle = pat
        .search("Observation?patient=pat&code=http://loinc.org|99504-3&_count=100")
        .await;
    let entries = bundle["entry"].as_array().unwrap();
    assert!(entries.len() as u64 >= written);
    let obs = &entries[0]["resource"];
    assert_eq!(obs["valueSampledData"]["period"], 60000);
    assert_eq!(obs["valueSampledData"]["origin"]["code"], "mg/dL");
    assert_eq!(obs["device"]["reference"], "#device");
    assert_eq!(obs["contained"][0]["resourceType"], "Device");
    assert_eq!(
        obs["contained"][0]["deviceName"][0]["name"],
        "Dexcom G6 Mobile App"
    );
    let provenances = pat.search("Provenance?_count=50").await;
    assert!(
        provenances["entry"]
            .as_array()
            .unwrap()
            .iter()
            .any(|e| e["resource"]["activity"]["text"] == "device data import (dexcom-clarity)"),
        "{provenances}"
    );

    // The operator imports CareLink exports from the command line; a second run adds nothing.
    let carelink = sample_path("cgm-carelink-tidepool-uploader/overlaps__overlap.csv");
    let smbg = sample_path("cgm-carelink-tidepool-uploader/smbg__input.csv");
    let run = |extra: &[&str]| {
        let mut a: Vec<&str> = vec!["devices", "import", "--patient", "pat", "--json"];
        a.extend_from_slice(extra);
        node.cli(&a)
    };
    let out = run(&[carelink.to_str().unwrap(), smbg.to_str().unwrap()]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let printed: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(printed["files"][0]["format"], "carelink");
    assert_eq!(count(&printed["files"][0], "records", "sensor-glucose"), 6);
    assert_eq!(count(&printed["files"][1], "records", "meter-glucose"), 7);
    let out = run(&[carelink.to_str().unwrap()]);
    let printed: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(printed["files"][0]["series_written"], 0, "{printed}");

    // What is not an export: a clear error, over HTTP and on the command line.
    let (s, b) = upload(&pat, "pat", &[], "notes.txt", b"hello, world\n").await;
    assert_eq!(s, StatusCode::BAD_REQUEST, "{b}");
    assert_eq!(b["resourceType"], "OperationOutcome");
    let (s, b) = upload(&pat, "pat", &[("format", "fitbit")], "x.csv", b"x").await;
    assert_eq!(s, StatusCode::BAD_REQUEST, "{b}");
    // In the node's own directory: the SQLite and PostgreSQL runs of this test share a process
    // id, and a shared temporary name let one run delete the other's file (an exit code of 2,
    // "cannot read", instead of 1, "not an export").
    let junk = node.data_dir.path().join("junk.csv");
    std::fs::write(&junk, "hello, world\n").unwrap();
    let out = run(&[junk.to_str().unwrap()]);
    assert_eq!(
        out.status.code(),
        Some(1),
        "{}",
        String::from_utf8_lossy(&out.stdout)
    );
    let _ = std::fs::remove_file(junk);
}

on_both_databases!(device_data);

async fn pull_nightscout(
    who: &Node,
    body: Value,
) -> (StatusCode, reqwest::header::HeaderMap, Value) {
    let request = who
        .auth(
            who.client
                .post(who.root_url("/api/patients/pat/device-data/nightscout")),
        )
        .json(&body);
    who.send(request).await
}

/// A patient pulls from her Nightscout site (a loopback stand-in for cgm-remote-monitor,
/// holding the shared samples): the report counts what was read; pulling again adds
/// nothing; a wrong secret, a site that is not Nightscout and an address the node may not
/// reach are each refused in words; the operator pulls from the command line with the
/// secret in the environment; the AGP report prints as one A4 page of PDF.
async fn nightscout_pull(db: Db) {
    use medmesh_nightscout::stand_in::{Site, serve};
    let node = Node::start_with_env(db, &[("MEDMESH_NIGHTSCOUT_ALLOW_INTERNAL", "true")]).await;
    seed(&node).await;
    let pat = patient(&node);
    let stranger = practitioner(&node, "stranger", "stranger");
    let list = |path: &str| -> Vec<Value> { serde_json::from_slice(&sample(path)).unwrap() };
    let mut entries = list("cgm-nightscout-entries/nightscout_example.json");
    entries.extend(list("cgm-nightscout-entries/oref0_glucose.json"));
    let treatments = vec![
        serde_json::json!({"_id": "t1", "eventType": "Meal Bolus", "insulin": 3.5, "carbs": 45,
                           "created_at": "2018-06-02T07:10:00.000Z", "enteredBy": "loop"}),
        serde_json::json!({"_id": "t2", "eventType": "Temp Basal", "absolute": 0.4, "duration": 30,
                           "created_at": "2018-06-02T07:20:00.000Z"}),
    ];
    let site = serve(Site {
        entries,
        treatments,
        profile: vec![serde_json::json!({"_id": "p1", "defaultProfile": "Default", "store": {}})],
        secret: Some("a-long-api-secret".into()),
        max_count: 5,
        ..Site::default()
    })
    .await
    .unwrap();
    let url = format!("http://{}/", site.addr);
    let period = |secret: &str| {
        serde_json::json!({"url": url, "api_secret": secret,
                           "start": "2014-07-19", "end": "2014-07-20", "time_zone": "America/Los_Angeles"})
    };
    // The site's own sample: entries only (the treatments are four years later).
    let (s, _, b) = pull_nightscout(&pat, period("a-long-api-secret")).await;
    assert_eq!(s, StatusCode::OK, "{b}");
    let report = &b["files"][0];
    assert_eq!(report["format"], "nightscout");
    let read = count(report, "records", "sensor-glucose");
    let file = upload(
        &pat,
        "pat",
        &[("format", "nightscout")],
        "x.json",
        &sample("cgm-nightscout-entries/nightscout_example.json"),
    )
    .await;
    assert_eq!(file.0, StatusCode::OK, "{}", file.1);
    assert_eq!(
        count(&file.1["files"][0], "records", "sensor-glucose"),
        read,
        "{report}"
    );
    assert_eq!(
        count(&file.1["files"][0], "added", "sensor-glucose"),
        0,
        "the pull had them all"
    );
    // Again: nothing new.
    let (s, _, again) = pull_nightscout(&pat, period("a-long-api-secret")).await;
    assert_eq!(s, StatusCode::OK, "{again}");
    assert_eq!(again["files"][0]["series_written"], 0, "{again}");

    // What is refused, in words that name neither the site nor the secret.
    let (s, _, b) = pull_nightscout(&pat, period("guessed")).await;
    assert_eq!(s, StatusCode::UNPROCESSABLE_ENTITY, "{b}");
    let words = b.to_string();
    assert!(words.contains("refused the API secret or token"), "{words}");
    assert!(!words.contains("guessed") && !words.contains(&site.addr.to_string()));
    let mut elsewhere = period("a-long-api-secret");
    elsewhere["url"] = Value::from(format!("http://{}/not-nightscout/", site.addr));
    let (s, _, b) = pull_nightscout(&pat, elsewhere).await;
    assert_eq!(s, StatusCode::UNPROCESSABLE_ENTITY, "{b}");
    assert!(
        b.to_string().contains("does not answer as Nightscout"),
        "{b}"
    );
    let (s, _, b) = pull_nightscout(
        &pat,
        serde_json::json!({"url": url, "api_secret": "x", "token": "y"}),
    )
    .await;
    assert_eq!(s, StatusCode::BAD_REQUEST, "{b}");
    let (s, _, _) = pull_nightscout(&stranger, period("a-long-api-secret")).await;
    assert!(
        s == StatusCode::FORBIDDEN || s == StatusCode::NOT_FOUND,
        "{s}"
    );

    // The operator, from the command line, the secret in the environment: the oref0 day
    // with its bolus and temporary basal.
    let pull_cli = |allow: &str| {
        node.command_with_env("MEDMESH_NIGHTSCOUT_ALLOW_INTERNAL", allow)
            .env("NIGHTSCOUT_API_SECRET", "a-long-api-secret")
            .arg("devices")
            .args(node.store_args())
            .args([
                "pull-nightscout",
                "--patient",
                "pat",
                "--url",
                &url,
                "--start",
                "2018-06-01",
                "--end",
                "2018-06-03",
                "--json",
            ])
            .output()
            .unwrap()
    };
    let out = pull_cli("true");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let printed: Value = serde_json::from_slice(&out.stdout).unwrap();
    let report = &printed["files"][0];
    assert!(count(report, "records", "sensor-glucose") > 0, "{printed}");
    assert_eq!(count(report, "records", "bolus-insulin"), 1, "{printed}");
    assert!(count(report, "records", "basal-rate") >= 1, "{printed}");
    assert_eq!(count(report, "records", "carbs"), 1, "{printed}");
    // Without the node's leave to reach its own networks: refused, exit 1.
    let out = pull_cli("false");
    assert_eq!(out.status.code(), Some(1));
    let said = String::from_utf8_lossy(&out.stderr);
    assert!(said.contains("the site's address is not allowed"), "{said}");

    // The AGP report, printable.
    let (s, headers, pdf) = pat
        .get_bytes("/api/patients/pat/glucose/agp.pdf?start=2014-07-19&end=2014-07-19&tz=America/Los_Angeles")
        .await;
    assert_eq!(s, StatusCode::OK);
    assert_eq!(headers["content-type"], "application/pdf");
    assert!(pdf.starts_with(b"%PDF-"));
    let path = node.data_dir.path().join("agp.pdf");
    std::fs::write(&path, &pdf).unwrap();
    let text = std::process::Command::new("pdftotext")
        .args([path.to_str().unwrap(), "-"])
        .output()
        .expect("pdftotext (poppler-utils)");
    let info = std::process::Command::new("pdfinfo")
        .arg(&path)
        .output()
        .expect("pdfinfo (poppler-utils)");
    let _ = std::fs::remove_file(&path);
    let text = String::from_utf8_lossy(&text.stdout);
    assert!(text.contains("AGP Report"), "{text}");
    assert!(text.contains("Time in ranges"), "{text}");
    assert!(text.contains("Born"), "{text}");
    let info = String::from_utf8_lossy(&info.stdout);
    assert!(
        info.lines()
            .any(|l| l.starts_with("Pages:") && l.trim_end().ends_with(" 1")),
        "{info}"
    );
    assert!(info.contains("595.28 x 841.89"), "{info}");
    let (s, _, _) = stranger
        .get_bytes("/api/patients/pat/glucose/agp.pdf?start=2014-07-19&end=2014-07-19")
        .await;
    assert!(
        s == StatusCode::FORBIDDEN || s == StatusCode::NOT_FOUND,
        "{s}"
    );

    // Glucose alerts: a day of 4-hour waves between 60 and 180 mg/dL, the latest reading
    // two minutes ago on the way down at 90 (30 minutes on, 62; an hour on, 68).
    let now_ms = time::OffsetDateTime::now_utc().unix_timestamp() * 1000;
    let cycle = |minutes_ago: i64| -> f64 {
        let phase = 210.0 - (minutes_ago - 2) as f64 * 360.0 / 240.0;
        120.0 + 60.0 * phase.to_radians().sin()
    };
    let entries = |from: i64, to: i64| -> Vec<u8> {
        let list: Vec<Value> = (from..to)
            .map(|k| {
                let ago = 2 + k * 5;
                serde_json::json!({"type": "sgv", "sgv": cycle(ago).round(), "date": now_ms - ago * 60_000,
                                   "device": "xDrip-LibreReceiver"})
            })
            .collect();
        serde_json::to_vec(&list).unwrap()
    };
    // Not chosen: the forecast low is found, and nobody is told.
    // The day up to 22 minutes ago: history, no alert.
    let (s, b) = upload(&pat, "pat", &[], "today.json", &entries(4, 288)).await;
    assert_eq!(s, StatusCode::OK, "{b}");
    assert!(
        b["files"][0].get("low_glucose_alert").is_none(),
        "not fresh: {b}"
    );
    let (s, b) = upload(&pat, "pat", &[], "now.json", &entries(0, 4)).await;
    assert_eq!(s, StatusCode::OK, "{b}");
    assert_eq!(
        b["files"][0]["low_glucose_alert"]["outcome"], "not-chosen",
        "{b}"
    );
    // Chosen: told in the inbox, once per reading, in words with no value in them.
    let out = node.cli(&[
        "notifications",
        "settings",
        "--patient",
        "pat",
        "--choose",
        "glucose-alerts=inbox",
    ]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let fresh = serde_json::to_vec(&vec![serde_json::json!({"type": "sgv", "sgv": 86,
        "date": now_ms - 60_000, "device": "xDrip-LibreReceiver"})])
    .unwrap();
    let (s, b) = upload(&pat, "pat", &[], "now.json", &fresh).await;
    assert_eq!(s, StatusCode::OK, "{b}");
    assert_eq!(b["files"][0]["low_glucose_alert"]["outcome"], "told", "{b}");
    assert_eq!(
        b["files"][0]["low_glucose_alert"]["channels"][0], "inbox",
        "{b}"
    );
    let (s, _, inbox) = pat.get_raw("/api/patients/pat/notifications").await;
    assert_eq!(s, StatusCode::OK, "{inbox}");
    let alerts: Vec<&Value> = inbox["notifications"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|n| n["kind"] == "glucose-alerts")
        .collect();
    assert_eq!(alerts.len(), 1, "{inbox}");
    assert_eq!(
        alerts[0]["message"], "Glucose alert at medmesh",
        "no value in it"
    );
    // The same reading again: nothing new, no second alert.
    let (s, b) = upload(&pat, "pat", &[], "now.json", &fresh).await;
    assert_eq!(s, StatusCode::OK, "{b}");
    assert!(b["files"][0].get("low_glucose_alert").is_none(), "{b}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nightscout_pull_on_sqlite() {
    nightscout_pull(Db::Sqlite).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nightscout_pull_on_postgres() {
    nightscout_pull(Db::Postgres).await;
}
