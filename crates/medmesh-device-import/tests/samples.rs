//! Every device sample in `../shared/testdata` reads, with its counts.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // tests fail loudly by design

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use jiff::tz::TimeZone;
use medmesh_device_import::{DeviceRecord, read};

fn samples() -> Vec<PathBuf> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../../shared/testdata");
    let mut files = Vec::new();
    for entry in std::fs::read_dir(&dir).unwrap() {
        let path = entry.unwrap().path();
        let name = path.file_name().unwrap().to_string_lossy().into_owned();
        if name.starts_with("cgm-") || name.starts_with("apple-health-") {
            for file in std::fs::read_dir(&path).unwrap() {
                let file = file.unwrap().path();
                if file.extension().is_some_and(|e| e != "gpx") {
                    files.push(file);
                }
            }
        }
    }
    files.sort();
    files
}

/// (format, records per channel, rejected) of one file.
fn counts(path: &Path) -> (String, BTreeMap<String, u64>, u64) {
    let mut records: Vec<DeviceRecord> = Vec::new();
    let file = std::fs::File::open(path).unwrap();
    let (format, report) = read(file, None, &TimeZone::UTC, &mut |r: DeviceRecord| {
        records.push(r);
        true
    })
    .unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    (
        format.name().to_owned(),
        report.records,
        report.rejected_total,
    )
}

/// A sample's name, format, records per channel and rejected rows.
type Expected = (
    &'static str,
    &'static str,
    &'static [(&'static str, u64)],
    u64,
);

/// What each sample holds: format, records per channel, rejected rows. Nightscout's
/// rejected entries are Dexcom error codes (sgv 5), not glucose.
const EXPECTED: &[Expected] = &[
    (
        "export.xml",
        "apple-health",
        &[("heart-rate", 1), ("workout", 1)],
        0,
    ),
    (
        "export_zip_variant.xml",
        "apple-health",
        &[("heart-rate", 1), ("workout", 1)],
        0,
    ),
    (
        "basal__scheduled__normal__input.csv",
        "carelink",
        &[("basal-rate", 3)],
        0,
    ),
    (
        "basal__temp__percent__input.csv",
        "carelink",
        &[("basal-rate", 3)],
        0,
    ),
    (
        "basal__temp__rate__input.csv",
        "carelink",
        &[("basal-rate", 2)],
        0,
    ),
    (
        "bolus__22-series__dual__withWizard__old.csv",
        "carelink",
        &[("bolus-insulin", 31), ("carbs", 1)],
        0,
    ),
    (
        "bolus__22-series__normal__noWizard__old.csv",
        "carelink",
        &[("bolus-insulin", 1)],
        0,
    ),
    (
        "bolus__22-series__normal__withWizard__old.csv",
        "carelink",
        &[("bolus-insulin", 1), ("carbs", 1)],
        0,
    ),
    (
        "bolus__22-series__square__withWizard__old.csv",
        "carelink",
        &[("bolus-insulin", 30), ("carbs", 1)],
        0,
    ),
    (
        "bolus__dual__noWizardNoNormal__input.csv",
        "carelink",
        &[("bolus-insulin", 30)],
        0,
    ),
    (
        "bolus__dual__noWizard__input.csv",
        "carelink",
        &[("bolus-insulin", 31)],
        0,
    ),
    (
        "bolus__dual__withMultiWizardOutOfSequence__input.csv",
        "carelink",
        &[("basal-rate", 1), ("bolus-insulin", 31), ("carbs", 3)],
        0,
    ),
    (
        "bolus__dual__withWizardInterruptedWithOverride__input.csv",
        "carelink",
        &[("basal-rate", 3), ("bolus-insulin", 44), ("carbs", 1)],
        0,
    ),
    (
        "bolus__dual__withWizardNoNormal__input.csv",
        "carelink",
        &[("bolus-insulin", 30), ("carbs", 1)],
        0,
    ),
    (
        "bolus__dual__withWizardOutOfSequence__input.csv",
        "carelink",
        &[("bolus-insulin", 61), ("carbs", 1)],
        0,
    ),
    (
        "bolus__dual__withWizard__input.csv",
        "carelink",
        &[("bolus-insulin", 121), ("carbs", 1)],
        0,
    ),
    (
        "bolus__normal__noWizardInterrupted__input.csv",
        "carelink",
        &[("bolus-insulin", 1)],
        0,
    ),
    (
        "bolus__normal__noWizard__input.csv",
        "carelink",
        &[("bolus-insulin", 1)],
        0,
    ),
    (
        "bolus__normal__withOverride__input.csv",
        "carelink",
        &[("bolus-insulin", 1), ("carbs", 1)],
        0,
    ),
    (
        "bolus__normal__withWizardInterveningBG__input.csv",
        "carelink",
        &[("bolus-insulin", 1), ("meter-glucose", 1)],
        0,
    ),
    (
        "bolus__normal__withWizard__input.csv",
        "carelink",
        &[("bolus-insulin", 1), ("carbs", 1)],
        0,
    ),
    (
        "bolus__square__noWizardInterrupted__input.csv",
        "carelink",
        &[("basal-rate", 3), ("bolus-insulin", 14)],
        0,
    ),
    (
        "bolus__square__noWizard__input.csv",
        "carelink",
        &[("bolus-insulin", 30)],
        0,
    ),
    (
        "bolus__square__withWizard__input.csv",
        "carelink",
        &[("bolus-insulin", 30), ("carbs", 1)],
        0,
    ),
    ("cbg__input.csv", "carelink", &[("sensor-glucose", 1)], 0),
    (
        "overlaps__no-overlap.csv",
        "carelink",
        &[
            ("basal-rate", 5),
            ("bolus-insulin", 30),
            ("carbs", 2),
            ("meter-glucose", 2),
            ("sensor-glucose", 6),
        ],
        0,
    ),
    (
        "overlaps__overlap.csv",
        "carelink",
        &[
            ("basal-rate", 5),
            ("bolus-insulin", 30),
            ("carbs", 2),
            ("meter-glucose", 2),
            ("sensor-glucose", 6),
        ],
        0,
    ),
    (
        "settings__noChanges__input.csv",
        "carelink",
        &[("basal-rate", 1)],
        0,
    ),
    (
        "settings__withChanges__input.csv",
        "carelink",
        &[("sensor-glucose", 1)],
        0,
    ),
    (
        "settings__withSameTimeChanges__input.csv",
        "carelink",
        &[("basal-rate", 1), ("meter-glucose", 2)],
        0,
    ),
    ("smbg__input.csv", "carelink", &[("meter-glucose", 7)], 0),
    ("suspend__input.csv", "carelink", &[("basal-rate", 4)], 0),
    (
        "dexcom_clarity_g6_export.csv",
        "dexcom-clarity",
        &[("sensor-glucose", 2148)],
        0,
    ),
    ("tiny_sample.csv", "libreview", &[("sensor-glucose", 6)], 0),
    (
        "tiny_sample_delimiter.csv",
        "libreview",
        &[("sensor-glucose", 4)],
        0,
    ),
    ("tiny_sample_type6.csv", "libreview", &[], 0),
    (
        "nightscout_example.json",
        "nightscout",
        &[("sensor-glucose", 18)],
        12,
    ),
    (
        "nightscout_example.tsv",
        "nightscout",
        &[("sensor-glucose", 19)],
        11,
    ),
    (
        "oref0_glucose.json",
        "nightscout",
        &[("sensor-glucose", 6)],
        0,
    ),
];

#[test]
fn every_sample_reads_with_its_counts() {
    let files = samples();
    assert_eq!(
        files.len(),
        EXPECTED.len(),
        "a sample was added or removed: update EXPECTED"
    );
    for path in files {
        let name = path.file_name().unwrap().to_string_lossy().into_owned();
        let (format, records, rejected) = counts(&path);
        let (_, want_format, want_records, want_rejected) = EXPECTED
            .iter()
            .find(|(n, ..)| *n == name)
            .unwrap_or_else(|| panic!("{name} is not in EXPECTED"));
        assert_eq!(format, *want_format, "{name}");
        let want: BTreeMap<String, u64> = want_records
            .iter()
            .map(|(k, v)| (k.to_string(), *v))
            .collect();
        assert_eq!(records, want, "{name}");
        assert_eq!(rejected, *want_rejected, "{name}");
    }
}

#[test]
fn libreview_mmol_is_converted_and_dexcom_patient_rows_are_not_read() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../../shared/testdata");
    let mut first = None;
    let file = std::fs::File::open(dir.join("cgm-libreview-glyco/tiny_sample.csv")).unwrap();
    read(file, None, &TimeZone::UTC, &mut |r: DeviceRecord| {
        first.get_or_insert(r);
        true
    })
    .unwrap();
    let first = first.unwrap();
    assert_eq!(first.at.to_string(), "2019-12-05T16:25:00Z");
    assert!((first.value - 6.3 * 18.0156).abs() < 1e-9);
    assert_eq!(first.device.model, "FreeStyle LibreLink");

    let file = std::fs::File::open(
        dir.join("cgm-dexcom-clarity-cgmquantify/dexcom_clarity_g6_export.csv"),
    )
    .unwrap();
    let mut models = std::collections::BTreeSet::new();
    let (_, report) = read(file, None, &TimeZone::UTC, &mut |r: DeviceRecord| {
        models.insert(format!("{:?}", r.device));
        true
    })
    .unwrap();
    assert_eq!(report.skipped.get("patient details (not kept)"), Some(&3));
    assert!(
        models
            .iter()
            .all(|m| !m.contains("Schmoe") && !m.contains("Joe")),
        "{models:?}"
    );
    assert!(
        models.iter().any(|m| m.contains("Dexcom G6 Mobile App")),
        "{models:?}"
    );
}
