//! `medmesh serve`: the node.

use crate::config::Config;
use crate::wiring::*;
use crate::{keys, workers};
use anyhow::Context;
use std::sync::Arc;
use std::time::Duration;

pub(crate) async fn serve(cfg: Config) -> anyhow::Result<()> {
    // Read before anything is opened: a bad knowledge file stops the node at once.
    let knowledge = crate::wiring::medication_knowledge(&cfg)?;
    let stores = open_store_with(
        &cfg,
        &medmesh_store_sql::StoreOptions {
            statement_timeout: Some(cfg.statement_timeout),
            ..Default::default()
        },
    )
    .await?;
    let listener = tokio::net::TcpListener::bind(cfg.listen)
        .await
        .with_context(|| format!("cannot listen on {}", cfg.listen))?;
    let addr = listener.local_addr()?;
    // The authorization server's issuer is the node's public origin.
    let issuer = public_origin(&cfg, addr);
    let ring = keys::open_key_ring(&stores, &cfg, keys::Sealing::Normal).await?;
    let sealer = secret_sealer(ring.as_ref());
    let identity = identity_service_with(&stores, &cfg, issuer.clone(), sealer.clone()).await?;
    let records = record_service_with(&stores, &cfg, ring.as_ref())?;
    let audit_log = audit_log_service(
        &stores,
        &audit_origin(&cfg, &issuer),
        sealer,
        cfg.audit_witnesses.clone(),
    )
    .await?;
    let files = Arc::new(medmesh_blobs::LocalExportFiles::new(
        cfg.data_dir.join("exports"),
    ));
    let export = Arc::new(medmesh_export::BulkExport::new(
        records.clone(),
        stores.records.clone(),
        files,
    ));
    let lapses = Arc::new(medmesh_scheduling::waitlist::OfferLapses::default());
    let hub =
        crate::wiring::notification_hub_with(&cfg, &stores, &records, &issuer, lapses.clone())?;
    tokio::spawn(medmesh_notifications::run(hub.clone()));
    let vault = document_vault(&stores, &cfg, &records, Some(hub.clone()))?;
    let trust = trust_network(&stores, &cfg, &records, hub.clone());
    let portal = medmesh_portal::PortalServices {
        keys: Arc::new(key_administration(&stores, &cfg, &records)?),
    };
    let medications = crate::wiring::medications(&stores, &records, hub.clone(), knowledge);
    let hl7 = interface_engine(
        &cfg,
        &stores,
        &records,
        &issuer,
        hub.clone(),
        medications.clone(),
    )
    .await?;
    let recovered = hl7.recover().await?;
    if recovered > 0 {
        tracing::info!(
            recovered,
            "HL7 v2 messages stored before a stop were applied"
        );
    }
    workers::start_hl7_housekeeping(
        hl7.clone(),
        workers::AlertRoute {
            hub: hub.clone(),
            identity: stores.identity.clone(),
        },
        cfg.hl7_retention_days,
        cfg.hl7_silence_alert,
        cfg.hl7_queue_alert_depth,
        cfg.hl7_check_every,
    );
    for channel in hl7.delivery_channels().await {
        tokio::spawn(medmesh_mllp::deliver(hl7.clone(), channel));
    }
    for channel in hl7.channels().iter().filter(|c| !c.events.is_empty()) {
        tokio::spawn(medmesh_interface_engine::run_events(
            hl7.clone(),
            channel.clone(),
        ));
    }
    if let Some(mllp) = cfg.mllp_listen {
        start_mllp(&cfg, hl7.clone(), mllp).await?;
    }
    let export_queue = workers::start_export_worker(export.clone()).await;
    workers::start_key_refresher(identity.clone());
    workers::start_checkpointer(
        audit_log.clone(),
        Duration::from_secs(cfg.audit_checkpoint_interval),
        Arc::new(medmesh_audit_client::HttpWitnessTransport::new()?),
    );
    let scheduling = crate::wiring::scheduling(&stores, &cfg, &records, hub.clone());
    lapses.bind(&scheduling);
    let subscriptions = crate::wiring::subscriptions(
        &cfg,
        &stores,
        &records,
        hub.clone(),
        identity.clone(),
        cfg.public_base_url
            .clone()
            .unwrap_or_else(|| format!("{issuer}/fhir")),
    )?;
    tokio::spawn(medmesh_subscriptions::run(subscriptions.clone()));
    tokio::spawn(crate::workers::adherence_alerts(
        medications.clone(),
        std::time::Duration::from_secs(cfg.adherence_alert_seconds),
    ));
    tokio::spawn(crate::workers::dose_reminders(
        medications.clone(),
        std::time::Duration::from_secs(cfg.dose_reminder_seconds),
        cfg.dose_reminder_horizon_hours,
    ));
    let care = crate::wiring::care(&stores, &records, hub.clone());
    let messaging = crate::wiring::messaging(&stores, &records, hub.clone());
    let telehealth = crate::wiring::telehealth(&cfg, &records)?;
    let devices = Arc::new(crate::wiring::devices(records.clone(), &cfg, hub.clone())?);
    let state = medmesh_server::build_state(
        medmesh_server::Services {
            records,
            vault,
            trust,
            export,
            audit_log: audit_log.clone(),
            identity,
            hl7,
            hub: hub.clone(),
            scheduling,
            subscriptions,
            medications,
            care,
            messaging,
            telehealth,
            devices,
        },
        export_queue,
        medmesh_server::ServerConfig {
            public_base_url: cfg.public_base_url.clone(),
            body_limits: medmesh_server::BodyLimits {
                max_body_bytes: cfg.max_body_bytes,
                max_json_values: cfg.max_json_values,
                max_bundle_entries: cfg.max_bundle_entries,
            },
            cors_allowed_origins: cfg.cors_allowed_origins.clone(),
            software_version: env!("CARGO_PKG_VERSION").into(),
        },
    );
    tracing::info!(%addr, data_dir = %cfg.data_dir.display(), postgres = cfg.database_url.is_some(), "medmesh is serving FHIR at http://{addr}/fhir");
    outln!("medmesh listening on http://{addr}");
    medmesh_server::serve_with(
        listener,
        state,
        medmesh_server::Pages {
            routes: medmesh_portal::routes(portal),
            notices: Some(medmesh_portal::render_notice),
        },
        cfg.connections,
        shutdown_signal(),
    )
    .await?;
    // Every entry is already committed with its data; a last signed checkpoint covers the
    // newest of them, so the log's head is signed when the node stops.
    if let Err(e) = audit_log.checkpoint_now().await {
        tracing::error!(error = %e, "cannot sign the final audit checkpoint");
    }
    tracing::info!("medmesh stopped");
    Ok(())
}

/// The MLLP listener for the interface engine.
async fn start_mllp(
    cfg: &Config,
    engine: Arc<medmesh_interface_engine::InterfaceEngine>,
    addr: std::net::SocketAddr,
) -> anyhow::Result<()> {
    let listener = tokio::net::TcpListener::bind(addr)
        .await
        .with_context(|| format!("cannot listen for MLLP on {addr}"))?;
    let bound = listener.local_addr()?;
    let tls = match &cfg.mllp_tls {
        Some(settings) => Some(medmesh_mllp::acceptor(settings)?),
        None => None,
    };
    tracing::info!(%bound, tls = tls.is_some(), mutual = cfg.mllp_tls.as_ref().is_some_and(|t| t.client_ca.is_some()), senders = engine.sender_count().await, "HL7 v2 over MLLP");
    outln!("medmesh MLLP listening on {bound}");
    tokio::spawn(medmesh_mllp::serve(
        listener,
        engine,
        medmesh_mllp::MllpLimits {
            max_message_bytes: cfg.mllp_max_message_bytes,
            idle_timeout: cfg.connections.idle_timeout,
            ..Default::default()
        },
        tls,
    ));
    Ok(())
}
