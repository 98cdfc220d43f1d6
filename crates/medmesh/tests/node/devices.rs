//! Device data over HTTP and the CLI: a patient uploads her Dexcom Clarity export (the
//! report counts what was read and what was new); uploading it again adds nothing; her GP
//! adds a LibreView export and the operator CareLink exports from the command line; a
//! stranger can neither add nor read; the glucose summary names iglu's metrics; the day
//! series are FHIR Observations with SampledData, their Device contained, and a Provenance; a file that is
//! no export gets an OperationOutcome (and the CLI exits 1).

use reqwest::StatusCode;
use serde_json::Value;

use crate::documents::{multipart, patient, practitioner, seed};
use crate::harness::{Node, shared_testdata};
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
    let junk = std::env::temp_dir().join(format!("medmesh-junk-{}.csv", std::process::id()));
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
