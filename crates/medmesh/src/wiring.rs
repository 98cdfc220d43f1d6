//! Wiring: configuration, logging, and the services a command needs, built from the
//! configured store, key ring and clock.

use crate::cli::*;
use crate::commands::keys;
use crate::config::{Config, Overrides};
use anyhow::{Context, bail};
use medmesh_audit_log::AuditLogService;
use medmesh_auth::Role;
use medmesh_identity::{IdentityConfig, IdentityService, OsRandom};
use medmesh_kernel::{MonotonicClock, SystemClock, UuidIds};
use medmesh_key_admin::KeyAdministration;
use medmesh_records::RecordService;
use medmesh_store::SecretSealer;
use medmesh_store_sql::Stores;
use medmesh_trust_network::TrustNetwork;
use medmesh_vault::DocumentVault;
use std::sync::Arc;

pub(crate) fn load_config(
    store: &StoreArgs,
    listen: Option<std::net::SocketAddr>,
) -> anyhow::Result<Config> {
    Config::load(&Overrides {
        data_dir: store.data_dir.clone(),
        listen,
        database_url: store.database_url.clone(),
        config: store.config.clone(),
    })
}

pub(crate) fn init_logging(filter: &str) {
    let filter = tracing_subscriber::EnvFilter::try_new(filter)
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .init();
}

pub(crate) async fn open_store(cfg: &Config) -> anyhow::Result<Stores> {
    open_store_with(cfg, &medmesh_store_sql::StoreOptions::default()).await
}

pub(crate) async fn open_store_with(
    cfg: &Config,
    options: &medmesh_store_sql::StoreOptions,
) -> anyhow::Result<Stores> {
    medmesh_store_sql::open_with(
        cfg.database_url.as_ref().map(|s| s.0.as_str()),
        &cfg.data_dir,
        options,
    )
    .await
    .map_err(|e| anyhow::anyhow!("cannot open the store: {e}"))
}

/// Resolves on SIGINT (Ctrl-C) or SIGTERM (what service managers and orchestrators send).
pub(crate) async fn shutdown_signal() {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{SignalKind, signal};
        match signal(SignalKind::terminate()) {
            Ok(mut term) => {
                tokio::select! {
                    _ = tokio::signal::ctrl_c() => {}
                    _ = term.recv() => {}
                }
            }
            Err(_) => {
                let _ = tokio::signal::ctrl_c().await;
            }
        }
    }
    #[cfg(not(unix))]
    {
        let _ = tokio::signal::ctrl_c().await;
    }
    tracing::info!("shutting down: no new connections; draining requests in flight");
}

pub(crate) async fn record_service(
    stores: &Stores,
    cfg: &Config,
) -> anyhow::Result<Arc<RecordService>> {
    let ring = keys::open_key_ring(stores, cfg, keys::Sealing::Normal).await?;
    record_service_with(stores, cfg, ring.as_ref())
}

/// The record service, sealing with `ring` when encryption at rest is on.
pub(crate) fn record_service_with(
    stores: &Stores,
    cfg: &Config,
    ring: Option<&keys::KeyRing>,
) -> anyhow::Result<Arc<RecordService>> {
    let defs = medmesh_fhir::definitions().map_err(|e| anyhow::anyhow!(e))?;
    let mut svc = RecordService::new(
        stores.records.clone(),
        defs,
        Arc::new(MonotonicClock::new(SystemClock)),
        Arc::new(UuidIds),
    )
    .with_trust(medmesh_records::policy_facts::TrustConfig {
        encounter_window_micros: cfg.encounter_window_days * 86_400 * 1_000_000,
        label_rules: cfg.label_rules.clone(),
    })
    .with_write_rule(
        "MedicationRequest",
        Arc::new(medmesh_medications::channel::PrescriptionWrites),
    )
    .with_write_rule(
        "CarePlan",
        Arc::new(medmesh_care::write_rule::CARE_PLAN_WRITES),
    )
    .with_write_rule(
        "Communication",
        Arc::new(medmesh_messaging::write_rule::MESSAGE_WRITES),
    );
    if let Some(r) = ring {
        svc = svc.with_encryption(r.at_rest.clone());
    }
    Ok(Arc::new(svc))
}

/// The document vault over `records`, on the configured blob store.
pub(crate) fn document_vault(
    stores: &Stores,
    cfg: &Config,
    records: &Arc<RecordService>,
    hub: Option<Arc<medmesh_notifications::NotificationHub>>,
) -> anyhow::Result<Arc<DocumentVault>> {
    let blobs = match &cfg.blob_store {
        crate::config::BlobStoreConfig::Folder(dir) => medmesh_blobs::ObjectBlobStore::local(dir),
        crate::config::BlobStoreConfig::S3(s3) => medmesh_blobs::ObjectBlobStore::s3(s3),
    }
    .map_err(|e| anyhow::anyhow!("cannot open the blob store: {e}"))?;
    let vault = DocumentVault::new(
        records.clone(),
        stores.records.clone(),
        Arc::new(blobs),
        cfg.max_document_bytes,
    );
    Ok(Arc::new(match hub {
        Some(h) => vault.with_hub(h),
        None => vault,
    }))
}

/// The trust network's operations over `records`.
pub(crate) fn trust_network(
    stores: &Stores,
    cfg: &Config,
    records: &Arc<RecordService>,
    hub: Arc<medmesh_notifications::NotificationHub>,
) -> Arc<TrustNetwork> {
    Arc::new(
        TrustNetwork::new(
            records.clone(),
            stores.records.clone(),
            cfg.break_glass_minutes * 60 * 1_000_000,
        )
        .with_hub(hub),
    )
}

/// Appointments over `records`.
pub(crate) fn scheduling(
    stores: &Stores,
    cfg: &Config,
    records: &Arc<RecordService>,
    hub: Arc<medmesh_notifications::NotificationHub>,
) -> Arc<medmesh_scheduling::SchedulingService> {
    Arc::new(
        medmesh_scheduling::SchedulingService::new(
            records.clone(),
            stores.records.clone(),
            stores.bookings.clone(),
            cfg.appointment_hold_minutes,
        )
        .with_offer_hold(cfg.waitlist_offer_seconds)
        .with_reminders(medmesh_scheduling::Reminders {
            hub,
            before: cfg.appointment_reminders.clone(),
            node_name: cfg.node_name.clone(),
        })
        .with_staff(Arc::new(StaffAccounts(stores.identity.clone()))),
    )
}

/// The practitioners' accounts, from the identity store: who scheduling tells of requests.
struct StaffAccounts(Arc<dyn medmesh_store::IdentityStore>);

impl StaffAccounts {
    /// The live accounts of `Practitioner/<practitioner>` with `role`.
    async fn accounts_of_role(&self, practitioner: &str, role: &str) -> Vec<String> {
        match self.0.users_of_practitioner(practitioner).await {
            Ok(users) => users
                .into_iter()
                .filter(|u| !u.disabled && u.role == role)
                .map(|u| u.id)
                .collect(),
            Err(e) => {
                tracing::warn!(error = %e, "cannot read the practitioner's accounts");
                Vec::new()
            }
        }
    }
}

#[async_trait::async_trait]
impl medmesh_scheduling::StaffDirectory for StaffAccounts {
    async fn accounts_of(&self, practitioner: &str) -> Vec<String> {
        self.accounts_of_role(practitioner, "practitioner").await
    }
}

/// The accounts the medication and care services tell: a practitioner's (by Practitioner),
/// a pharmacy's pharmacists (by Organization), from the identity store.
pub(crate) struct ServiceAccounts(pub(crate) Arc<dyn medmesh_store::IdentityStore>);

#[async_trait::async_trait]
impl medmesh_medications::MedicationAccounts for ServiceAccounts {
    async fn prescriber_accounts(&self, practitioner: &str) -> Vec<String> {
        StaffAccounts(self.0.clone())
            .accounts_of_role(practitioner, "practitioner")
            .await
    }

    async fn patients_with_accounts(&self, limit: u32) -> Vec<String> {
        match self.0.users_with_role("patient", None, None, limit).await {
            Ok(users) => users
                .into_iter()
                .filter(|u| !u.disabled)
                .filter_map(|u| u.patient_id)
                .collect(),
            Err(e) => {
                tracing::warn!(error = %e, "cannot read the patients' accounts");
                Vec::new()
            }
        }
    }

    async fn pharmacy_accounts(&self, pharmacy: &str) -> Vec<String> {
        match self
            .0
            .users_with_role("pharmacist", Some(pharmacy), Some("verified"), 1000)
            .await
        {
            Ok(users) => users
                .into_iter()
                .filter(|u| !u.disabled)
                .map(|u| u.id)
                .collect(),
            Err(e) => {
                tracing::warn!(error = %e, "cannot read the pharmacy's accounts");
                Vec::new()
            }
        }
    }
}

#[async_trait::async_trait]
impl medmesh_care::CareAccounts for ServiceAccounts {
    async fn practitioner_accounts(&self, practitioner: &str) -> Vec<String> {
        StaffAccounts(self.0.clone())
            .accounts_of_role(practitioner, "practitioner")
            .await
    }
}

/// The care service (plans, teams, worklists), telling members and patients through `hub`.
pub(crate) fn care(
    stores: &Stores,
    records: &Arc<RecordService>,
    hub: Arc<medmesh_notifications::NotificationHub>,
) -> Arc<medmesh_care::CareService> {
    Arc::new(
        medmesh_care::CareService::new(records.clone())
            .with_notices(hub, Arc::new(ServiceAccounts(stores.identity.clone()))),
    )
}

#[async_trait::async_trait]
impl medmesh_messaging::MessagingAccounts for ServiceAccounts {
    async fn practitioner_accounts(&self, practitioner: &str) -> Vec<String> {
        StaffAccounts(self.0.clone())
            .accounts_of_role(practitioner, "practitioner")
            .await
    }
}

/// The messaging service, delivering live in this process and telling those away through
/// `hub`.
pub(crate) fn messaging(
    stores: &Stores,
    records: &Arc<RecordService>,
    hub: Arc<medmesh_notifications::NotificationHub>,
) -> Arc<medmesh_messaging::MessagingService> {
    Arc::new(
        medmesh_messaging::MessagingService::new(
            records.clone(),
            Arc::new(medmesh_messaging::LiveBus::default()),
        )
        .with_notices(hub, Arc::new(ServiceAccounts(stores.identity.clone()))),
    )
}

/// Video visits, with the STUN and TURN servers of the settings.
pub(crate) fn telehealth(
    cfg: &Config,
    records: &Arc<RecordService>,
) -> anyhow::Result<Arc<medmesh_telehealth::TelehealthService>> {
    if !cfg.telehealth_turn_urls.is_empty() && cfg.telehealth_turn_secret.is_none() {
        anyhow::bail!(
            "telehealth_turn_urls needs telehealth_turn_secret (the TURN server's static-auth-secret)"
        );
    }
    if cfg.telehealth_relay_only && cfg.telehealth_turn_urls.is_empty() {
        anyhow::bail!("telehealth_ice_policy = \"relay\" needs telehealth_turn_urls");
    }
    Ok(Arc::new(medmesh_telehealth::TelehealthService::new(
        records.clone(),
        medmesh_telehealth::IceSettings {
            stun: cfg.telehealth_stun_urls.clone(),
            turn: cfg.telehealth_turn_urls.clone(),
            turn_secret: cfg.telehealth_turn_secret.as_ref().map(|s| s.0.clone()),
            ttl_secs: cfg.telehealth_turn_ttl_seconds,
            relay_only: cfg.telehealth_relay_only,
        },
    )))
}

/// Key administration over `records`, re-sealing document blobs through the vault.
pub(crate) fn key_administration(
    stores: &Stores,
    cfg: &Config,
    records: &Arc<RecordService>,
) -> anyhow::Result<KeyAdministration> {
    let vault = document_vault(stores, cfg, records, None)?;
    Ok(KeyAdministration::new(
        records.clone(),
        stores.records.clone(),
        Some(vault),
    ))
}

/// The identity service for an issuer. Signing keys live in the store (sealed by `secrets`),
/// so every replica on one database (and the CLI) signs and verifies with the same rotating
/// keys.
pub(crate) async fn identity_service_with(
    stores: &Stores,
    cfg: &Config,
    issuer: String,
    secrets: Option<Arc<dyn SecretSealer>>,
) -> anyhow::Result<Arc<IdentityService>> {
    let mut ic = IdentityConfig::new(issuer);
    ic.extra_issuers = vec![cfg.issuer.clone()];
    ic.access_ttl = cfg.access_token_ttl;
    ic.token_times = medmesh_auth::token::TokenTimes {
        leeway: cfg.token_leeway,
        max_lifetime: cfg.max_token_lifetime,
    };
    ic.key_rotation = cfg.key_rotation;
    ic.allow_self_registration = cfg.allow_self_registration;
    ic.open_client_registration = cfg.open_client_registration;
    for o in &cfg.oidc {
        let mut role_map = std::collections::BTreeMap::new();
        for (theirs, ours) in &o.role_map {
            let role: Role = ours
                .parse()
                .map_err(|e| anyhow::anyhow!("[[oidc]] {}: {e}", o.id))?;
            if role == Role::NodeAdmin {
                bail!(
                    "[[oidc]] {}: node-admin cannot come from an external provider",
                    o.id
                );
            }
            role_map.insert(theirs.clone(), role);
        }
        ic.external
            .push(medmesh_identity::external::ExternalProvider {
                id: o.id.clone(),
                name: o.name.clone().unwrap_or_else(|| o.id.clone()),
                issuer: o.issuer.trim_end_matches('/').to_string(),
                client_id: o.client_id.clone(),
                client_secret: o.client_secret.0.clone(),
                role_claim: o
                    .role_claim
                    .clone()
                    .unwrap_or_else(|| "realm_access.roles".into()),
                role_map,
                username_claim: o
                    .username_claim
                    .clone()
                    .unwrap_or_else(|| "preferred_username".into()),
                fhir_user_claim: o.fhir_user_claim.clone(),
                api_audience: o.api_audience.clone(),
                api_scope_ceiling: o
                    .api_scope_ceiling
                    .clone()
                    .unwrap_or_else(|| "user/*.cruds patient/*.cruds".into()),
            });
    }
    IdentityService::start(
        stores.identity.clone(),
        ic,
        Arc::new(MonotonicClock::new(SystemClock)),
        Arc::new(OsRandom),
        secrets,
    )
    .await
    .map_err(|e| anyhow::anyhow!("cannot start identity: {e}"))
}

/// What seals the node's own secrets (signing keys, TOTP seeds, the audit log's key): the
/// key ring, when encryption at rest is on.
pub(crate) fn secret_sealer(ring: Option<&keys::KeyRing>) -> Option<Arc<dyn SecretSealer>> {
    ring.map(|r| r.at_rest.clone() as Arc<dyn SecretSealer>)
}

/// The identity service, opening the key ring for its secrets.
pub(crate) async fn identity_service(
    stores: &Stores,
    cfg: &Config,
    issuer: String,
) -> anyhow::Result<Arc<IdentityService>> {
    let ring = keys::open_key_ring(stores, cfg, keys::Sealing::Normal).await?;
    identity_service_with(stores, cfg, issuer, secret_sealer(ring.as_ref())).await
}

/// The node's public origin: the public base URL without `/fhir`, else `http://` and the
/// address served on.
pub(crate) fn public_origin(cfg: &Config, addr: std::net::SocketAddr) -> String {
    match &cfg.public_base_url {
        Some(b) => b
            .trim_end_matches('/')
            .trim_end_matches("/fhir")
            .to_string(),
        None => format!("http://{addr}"),
    }
}

/// The audit log's name: the configured one, else the public origin without its scheme,
/// plus `/audit`. `serve` and the CLI derive it the same way, so both sign with one key.
pub(crate) fn audit_origin(cfg: &Config, public_origin: &str) -> String {
    cfg.audit_origin.clone().unwrap_or_else(|| {
        let host = public_origin
            .split_once("://")
            .map_or(public_origin, |(_, h)| h)
            .trim_end_matches('/');
        format!("{host}/audit")
    })
}

pub(crate) async fn audit_log_service(
    stores: &Stores,
    origin: &str,
    secrets: Option<Arc<dyn SecretSealer>>,
    witnesses: medmesh_audit_log::WitnessPolicy,
) -> anyhow::Result<Arc<AuditLogService>> {
    let mut secret = [0u8; 32];
    medmesh_identity::Random::fill(&OsRandom, &mut secret);
    let log = AuditLogService::open(
        stores.audit.clone(),
        origin,
        secret,
        Arc::new(MonotonicClock::new(SystemClock)),
        secrets,
    )
    .await
    .map_err(|e| anyhow::anyhow!("cannot open the audit log: {e}"))?;
    Ok(Arc::new(log.with_witnesses(witnesses)))
}

/// The notification hub over `records`, e-mailing through `smtp_url` when it is set.
pub(crate) fn notification_hub(
    cfg: &Config,
    stores: &Stores,
    records: &Arc<RecordService>,
    public_origin: &str,
) -> anyhow::Result<Arc<medmesh_notifications::NotificationHub>> {
    notification_hub_with(
        cfg,
        stores,
        records,
        public_origin,
        Arc::new(medmesh_scheduling::waitlist::OfferLapses::default()),
    )
}

/// The hub, with the waiting list's lapsing offers delivered through `lapses` (bound to
/// the scheduling service once it exists; unbound, they wait in the outbox).
pub(crate) fn notification_hub_with(
    cfg: &Config,
    stores: &Stores,
    records: &Arc<RecordService>,
    public_origin: &str,
    lapses: Arc<medmesh_scheduling::waitlist::OfferLapses>,
) -> anyhow::Result<Arc<medmesh_notifications::NotificationHub>> {
    let mailer: Option<Arc<dyn medmesh_notifications::Mailer>> = match &cfg.smtp_url {
        Some(url) => Some(Arc::new(medmesh_mail::SmtpMailer::new(
            &url.0,
            &cfg.smtp_from,
        )?)),
        None => None,
    };
    let webhooks = Arc::new(medmesh_webhooks::HttpWebhooks::new(
        cfg.webhooks_allow_internal,
    )?);
    let rest_hooks = Arc::new(medmesh_subscriptions::RestHookDelivery::new(
        records.clone(),
        stores.subscriptions.clone(),
        webhooks.clone(),
    ));
    Ok(Arc::new(
        medmesh_notifications::NotificationHub::new(
            records.clone(),
            stores.notifications.clone(),
            mailer,
            cfg.node_name.clone(),
            cfg.public_base_url
                .clone()
                .unwrap_or_else(|| public_origin.to_string()),
        )
        .with_webhooks(webhooks, Arc::new(OsRandom))
        .with_channel(medmesh_subscriptions::REST_HOOK, rest_hooks)
        .with_channel(medmesh_scheduling::waitlist::OFFER_LAPSE, lapses),
    ))
}

/// FHIR Subscriptions over `records`, telling through `hub`; `base_url` is the FHIR base
/// the notifications name.
pub(crate) fn subscriptions(
    cfg: &Config,
    stores: &Stores,
    records: &Arc<RecordService>,
    hub: Arc<medmesh_notifications::NotificationHub>,
    identity: Arc<IdentityService>,
    base_url: String,
) -> anyhow::Result<Arc<medmesh_subscriptions::SubscriptionService>> {
    Ok(Arc::new(medmesh_subscriptions::SubscriptionService::new(
        records.clone(),
        stores.subscriptions.clone(),
        hub,
        Arc::new(StandingOwners {
            identity,
            store: stores.identity.clone(),
        }),
        Arc::new(medmesh_webhooks::HttpWebhooks::new(
            cfg.webhooks_allow_internal,
        )?),
        base_url,
    )))
}

/// Subscriptions' owners as they stand now: an account (not disabled; its scopes cut to
/// its role now, as a refreshed token's are) or a registered backend client (its scopes
/// cut to its registration).
struct StandingOwners {
    identity: Arc<IdentityService>,
    store: Arc<dyn medmesh_store::IdentityStore>,
}

#[async_trait::async_trait]
impl medmesh_subscriptions::SubscriberDirectory for StandingOwners {
    async fn standing(
        &self,
        owner: &str,
        scopes: &[String],
        patient: Option<&str>,
    ) -> Option<medmesh_kernel::VerifiedIdentity> {
        let user = match self.store.user_by_id(owner).await {
            Ok(u) => u,
            Err(e) => {
                tracing::warn!(error = %e, "cannot read a subscription's owner");
                return None;
            }
        };
        if let Some(user) = user {
            if user.disabled {
                return None;
            }
            let role: Role = user.role.parse().ok()?;
            let granted = medmesh_identity::oauth::scopes_for_user(&user, scopes);
            let clinician = self.identity.clinician(&user.id).await.ok()?;
            return Some(medmesh_kernel::VerifiedIdentity {
                subject: user.id.clone(),
                scopes: medmesh_auth::parse_scopes(&granted.join(" ")),
                patient: user
                    .patient_id
                    .clone()
                    .or_else(|| patient.map(str::to_string)),
                role: Some(role),
                clinician,
            });
        }
        let client = self.store.client(owner).await.ok()??;
        let requested = medmesh_auth::parse_scopes(&scopes.join(" "));
        let allowed = medmesh_auth::parse_scopes(&client.scope);
        Some(medmesh_kernel::VerifiedIdentity {
            subject: client.client_id,
            scopes: medmesh_auth::narrow(&requested, &allowed),
            patient: None,
            role: None,
            clinician: None,
        })
    }
}

/// The HL7 v2 interface engine over `records`, recognising the settings file's senders and
/// those added with `medmesh hl7 senders add`.
pub(crate) async fn interface_engine(
    cfg: &Config,
    stores: &Stores,
    records: &Arc<RecordService>,
    public_origin: &str,
    hub: Arc<medmesh_notifications::NotificationHub>,
    medications: Arc<medmesh_medications::MedicationService>,
) -> anyhow::Result<Arc<medmesh_interface_engine::InterfaceEngine>> {
    let channels = cfg
        .hl7_channels
        .iter()
        .map(|c| {
            let mut channel = medmesh_interface_engine::Channel::forwarding(
                &c.name,
                &c.destination,
                c.message_types.clone(),
                c.senders.clone(),
            );
            channel.inbound = c.inbound;
            channel.events = c
                .events
                .iter()
                .map(|e| {
                    medmesh_interface_engine::NodeEvent::parse(e).ok_or_else(|| {
                        anyhow::anyhow!(
                            "hl7_channel {}: unknown event '{e}' (appointments, results)",
                            c.name
                        )
                    })
                })
                .collect::<anyhow::Result<_>>()?;
            if let Some(a) = &c.receiving_application {
                channel.receiving_application = a.clone();
            }
            if let Some(f) = &c.receiving_facility {
                channel.receiving_facility = f.clone();
            }
            Ok(channel)
        })
        .collect::<anyhow::Result<Vec<_>>>()?;
    let engine = Arc::new(
        medmesh_interface_engine::InterfaceEngine::new(
            records.clone(),
            stores.hl7.clone(),
            hub.clone(),
            format!("{public_origin}/fhir"),
        )
        .with_outbound(stores.hl7_outbox.clone(), channels)
        .with_vault(document_vault(stores, cfg, records, Some(hub))?)
        .with_follow_up(Arc::new(MedicationFollowUp(medications))),
    );
    let configured = cfg
        .hl7_senders
        .iter()
        .map(|s| {
            medmesh_interface_engine::Sender::new(
                &s.name,
                &s.application,
                &s.facility,
                &s.addresses.join(","),
                s.secret_sha256.as_deref(),
                s.profile.clone(),
            )?
            .with_ack_destination(s.ack_destination.as_deref())?
            .with_acknowledgement(s.acknowledgement.as_deref())
        })
        .collect::<Result<Vec<_>, _>>()?;
    engine.load_senders(configured).await?;
    Ok(engine)
}

/// Now, in microseconds, from the node's clock.
pub(crate) fn now_micros() -> i64 {
    medmesh_kernel::Clock::now_micros(&SystemClock)
}

/// A fresh 32-byte secret, hex (an HL7 sender's HTTP secret).
pub(crate) fn new_secret() -> String {
    let mut secret = [0u8; 32];
    medmesh_identity::Random::fill(&OsRandom, &mut secret);
    secret.iter().map(|b| format!("{b:02x}")).collect()
}

/// The knowledge base of the prescribing checks: the ONC list that ships, and the files
/// `medication_knowledge_files` names (each at most 16 MiB).
pub(crate) fn medication_knowledge(
    cfg: &Config,
) -> anyhow::Result<medmesh_medications::KnowledgeBase> {
    const MAX_KNOWLEDGE_FILE: u64 = 16 * 1024 * 1024;
    let mut knowledge = medmesh_medications::KnowledgeBase::shipped();
    for path in &cfg.medication_knowledge_files {
        if std::fs::metadata(path).is_ok_and(|m| m.len() > MAX_KNOWLEDGE_FILE) {
            anyhow::bail!(
                "medication_knowledge_files: {} is larger than 16 MiB",
                path.display()
            );
        }
        let text = std::fs::read_to_string(path).with_context(|| {
            format!("medication_knowledge_files: cannot read {}", path.display())
        })?;
        knowledge
            .add(&text)
            .with_context(|| format!("medication_knowledge_files: {}", path.display()))?;
    }
    Ok(knowledge)
}

/// The medication service, telling patients, prescribers and pharmacies through `hub`.
pub(crate) fn medications(
    stores: &Stores,
    records: &Arc<RecordService>,
    hub: Arc<medmesh_notifications::NotificationHub>,
    knowledge: medmesh_medications::KnowledgeBase,
) -> Arc<medmesh_medications::MedicationService> {
    Arc::new(
        medmesh_medications::MedicationService::new(records.clone(), stores.records.clone())
            .with_knowledge(knowledge)
            .with_notices(hub, Arc::new(ServiceAccounts(stores.identity.clone()))),
    )
}

/// The medication loop's follow-up of pharmacy messages, for the interface engine.
struct MedicationFollowUp(Arc<medmesh_medications::MedicationService>);

#[async_trait::async_trait]
impl medmesh_interface_engine::FollowUp for MedicationFollowUp {
    async fn applied(&self, resources: &[String]) -> Result<(), String> {
        self.0
            .follow_external(resources)
            .await
            .map_err(|e| e.to_string())
    }
}

/// The device data service, pulling from Nightscout sites under the node's outbound policy
/// and telling patients who chose glucose alerts through `hub`.
pub(crate) fn devices(
    records: Arc<medmesh_records::RecordService>,
    cfg: &Config,
    hub: Arc<medmesh_notifications::NotificationHub>,
) -> anyhow::Result<medmesh_devices::DeviceDataService> {
    Ok(medmesh_devices::DeviceDataService::new(records)
        .with_remote(Arc::new(medmesh_nightscout::NightscoutConnector::new(
            cfg.nightscout_allow_internal,
        )?))
        .with_alerts(hub))
}
