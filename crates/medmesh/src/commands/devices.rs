//! `medmesh devices import`: device exports into a patient's record, through the device
//! data service as the local operator (sealed, audited, with a Provenance like any import).

use anyhow::{Context, bail};
use medmesh_device_import::Format;
use medmesh_devices::{DeviceDataService, RemoteCredential};

use crate::cli::DevicesCommand;
use crate::commands::keys;
use crate::config::Config;
use crate::wiring::{open_store, record_service};

pub(crate) async fn run(cfg: &Config, command: DevicesCommand) -> anyhow::Result<bool> {
    match command {
        DevicesCommand::Import {
            patient,
            format,
            time_zone,
            json,
            files,
        } => import(cfg, patient, format, time_zone, json, files).await,
        DevicesCommand::PullNightscout {
            patient,
            url,
            start,
            end,
            time_zone,
            json,
        } => pull_nightscout(cfg, patient, url, start, end, time_zone, json).await,
    }
}

/// `medmesh devices pull-nightscout`.
async fn pull_nightscout(
    cfg: &Config,
    patient: String,
    url: String,
    start: Option<String>,
    end: Option<String>,
    time_zone: Option<String>,
    json: bool,
) -> anyhow::Result<bool> {
    let secret = std::env::var("NIGHTSCOUT_API_SECRET")
        .ok()
        .filter(|s| !s.is_empty());
    let token = std::env::var("NIGHTSCOUT_TOKEN")
        .ok()
        .filter(|s| !s.is_empty());
    let credential = match (secret, token) {
        (Some(_), Some(_)) => bail!("set NIGHTSCOUT_API_SECRET or NIGHTSCOUT_TOKEN, not both"),
        (Some(s), None) => RemoteCredential::ApiSecret(s),
        (None, Some(t)) => RemoteCredential::Token(t),
        (None, None) => RemoteCredential::None,
    };
    let zone = medmesh_devices::zone(time_zone.as_deref())
        .map_err(|_| anyhow::anyhow!("--time-zone: not a known IANA zone"))?;
    let service = service(cfg).await?;
    let (start, end) =
        medmesh_devices::pull_period(start.as_deref(), end.as_deref(), &zone, service.now())
            .map_err(|e| anyhow::anyhow!("--start/--end: {}", reasons(&e)))?;
    let ctx = keys::local_ctx("devices-pull-nightscout");
    match service
        .pull_nightscout(&ctx, &patient, &url, credential, start, end, zone)
        .await
    {
        Ok(report) => {
            if json {
                println!(
                    "{}",
                    serde_json::to_string_pretty(&serde_json::json!({"files": [report]}))?
                );
            } else {
                print_report(&report);
            }
            Ok(true)
        }
        Err(e) => {
            eprintln!("Nightscout site: not imported: {}", reasons(&e));
            Ok(false)
        }
    }
}

/// The device data service on the configured store, as `serve` wires it.
async fn service(cfg: &Config) -> anyhow::Result<DeviceDataService> {
    let stores = open_store(cfg).await?;
    let records = record_service(&stores, cfg).await?;
    let hub = crate::wiring::notification_hub(cfg, &stores, &records, "")?;
    crate::wiring::devices(records, cfg, hub)
}

/// An error's issues in words (they never hold patient data).
fn reasons(e: &medmesh_records::RecordError) -> String {
    let (_, issues) = medmesh_records::status_of(e);
    issues
        .iter()
        .map(|i| i.diagnostics.clone())
        .collect::<Vec<_>>()
        .join("; ")
}

/// `medmesh devices import`.
async fn import(
    cfg: &Config,
    patient: String,
    format: Option<String>,
    time_zone: Option<String>,
    json: bool,
    files: Vec<std::path::PathBuf>,
) -> anyhow::Result<bool> {
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
    let service = service(cfg).await?;
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
                let reason = reasons(&e);
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
