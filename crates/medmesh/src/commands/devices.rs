//! `medmesh devices import`: device exports into a patient's record, through the device
//! data service as the local operator (sealed, audited, with a Provenance like any import).

use std::sync::Arc;

use anyhow::{Context, bail};
use medmesh_device_import::Format;

use crate::cli::DevicesCommand;
use crate::commands::keys;
use crate::config::Config;
use crate::wiring::{open_store, record_service};

pub(crate) async fn run(cfg: &Config, command: DevicesCommand) -> anyhow::Result<bool> {
    let DevicesCommand::Import {
        patient,
        format,
        time_zone,
        json,
        files,
    } = command;
    let format = match format.as_deref() {
        None => None,
        Some(name) => Some(Format::from_name(name).with_context(|| {
            format!("--format {name}: not one of libreview, dexcom-clarity, carelink, apple-health, nightscout")
        })?),
    };
    let zone = medmesh_devices::zone(time_zone.as_deref())
        .map_err(|_| anyhow::anyhow!("--time-zone: not a known IANA zone"))?;
    for file in &files {
        if !file.is_file() {
            bail!("{}: no such file", file.display());
        }
    }
    let stores = open_store(cfg).await?;
    let records = record_service(&stores, cfg).await?;
    let service = medmesh_devices::DeviceDataService::new(Arc::clone(&records));
    let ctx = keys::local_ctx("devices-import");
    let mut all_read = true;
    let mut reports = Vec::new();
    for path in files {
        let name = path
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default();
        let file = std::fs::File::open(&path)
            .with_context(|| format!("cannot open {}", path.display()))?;
        match service
            .import(&ctx, &patient, &name, file, format, zone.clone())
            .await
        {
            Ok(report) => {
                if !json {
                    print_report(&report);
                }
                reports.push(serde_json::to_value(&report)?);
            }
            Err(e) => {
                all_read = false;
                let (_, issues) = medmesh_records::status_of(&e);
                let reason = issues
                    .iter()
                    .map(|i| i.diagnostics.clone())
                    .collect::<Vec<_>>()
                    .join("; ");
                eprintln!("{}: not imported: {reason}", path.display());
                reports.push(serde_json::json!({"file": name, "error": reason}));
            }
        }
    }
    if json {
        println!(
            "{}",
            serde_json::to_string_pretty(&serde_json::json!({"files": reports}))?
        );
    }
    Ok(all_read)
}

fn print_report(r: &medmesh_devices::FileReport) {
    let unit = r.read.unit.map_or("no glucose", |u| match u {
        medmesh_device_import::GlucoseUnit::MgDl => "mg/dL",
        medmesh_device_import::GlucoseUnit::MmolL => "mmol/L",
    });
    let range = match (r.read.first, r.read.last) {
        (Some(a), Some(b)) => format!("{a} to {b}"),
        _ => "no records".to_owned(),
    };
    println!("{}: {} ({unit}), {range}", r.file, r.format);
    for (channel, n) in &r.read.records {
        println!(
            "  {channel}: {n} read, {} new",
            r.added.get(channel).copied().unwrap_or(0)
        );
    }
    println!(
        "  day series written: {}, unchanged: {}",
        r.series_written, r.series_unchanged
    );
    if !r.devices.is_empty() {
        println!("  devices: {}", r.devices.join(", "));
    }
    for (what, n) in &r.read.skipped {
        println!("  skipped: {what}: {n}");
    }
    if r.read.clipped > 0 {
        println!(
            "  \"Low\"/\"High\" kept at the sensor's limits: {}",
            r.read.clipped
        );
    }
    if r.read.rejected_total > 0 {
        println!("  rejected rows: {}", r.read.rejected_total);
        for rej in &r.read.rejected {
            println!("    line {}: {}", rej.line, rej.reason);
        }
    }
}
