//! The forecast on the shared Dexcom Clarity export (nine days of a G6): fitted on the first
//! days, scored on the last two, it beats both baselines at 30 and 60 minutes. The figures
//! are docs/devices.md's.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // tests fail loudly by design

use jiff::tz::TimeZone;
use medmesh_device_import::{Channel, DeviceRecord, read};
use medmesh_glucose::forecast::evaluate;
use medmesh_glucose::{Reading, normalize};

#[test]
fn the_forecast_beats_the_baselines_on_the_shared_export() {
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join(
        "../../../shared/testdata/cgm-dexcom-clarity-cgmquantify/dexcom_clarity_g6_export.csv",
    );
    let zone = TimeZone::get("America/Los_Angeles").unwrap();
    let mut readings = Vec::new();
    read(
        std::fs::File::open(path).unwrap(),
        None,
        &zone,
        &mut |r: DeviceRecord| {
            if r.channel == Channel::SensorGlucose {
                readings.push(Reading {
                    at: r.at.as_second() + i64::from(zone.to_offset(r.at).seconds()),
                    mg_dl: r.value,
                });
            }
            true
        },
    )
    .unwrap();
    let readings = normalize(readings);
    for horizon in [30, 60] {
        let e = evaluate(&readings, &[], &[], horizon, 2).unwrap();
        println!(
            "{horizon} min, {} points: model RMSE {:.1} MARD {:.1}%; last value RMSE {:.1} MARD {:.1}%; linear RMSE {:.1} MARD {:.1}%",
            e.points,
            e.model.rmse,
            e.model.mard,
            e.last_value.rmse,
            e.last_value.mard,
            e.linear.rmse,
            e.linear.mard
        );
        assert!(e.model.rmse < e.last_value.rmse, "{e:?}");
        assert!(e.model.rmse < e.linear.rmse, "{e:?}");
        assert!(e.model.mard < e.last_value.mard, "{e:?}");
    }
}
