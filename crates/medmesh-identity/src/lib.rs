//! The identity application: accounts and roles, password and TOTP login with throttling,
//! browser sessions, and the OAuth2 authorization server for SMART App Launch 2.x (code flow
//! with PKCE, rotating refresh tokens, backend services, introspection and revocation, client
//! registration, rotating signing keys).
//!
//! It speaks to storage only through [`medmesh_store::IdentityStore`]; the HTTP adapter in
//! `medmesh-server` turns requests into calls here.

pub mod accounts;
pub mod error;
pub mod external;
pub mod oauth;
pub mod random;
pub mod secrets;
pub mod signing_keys;

pub use error::IdentityError;
pub use random::{OsRandom, Random};

use std::sync::Arc;

use medmesh_auth::credentials::{HashCost, PasswordPolicy};
use medmesh_kernel::Clock;
use medmesh_store::IdentityStore;

/// Identity settings.
#[derive(Debug, Clone)]
pub struct IdentityConfig {
    /// The issuer (`iss`) of tokens: the node's public base URL.
    pub issuer: String,
    /// Other issuers whose tokens, signed by this node's keys, are accepted (the CLI's
    /// `admin token` issuer).
    pub extra_issuers: Vec<String>,
    /// Access-token lifetime, seconds. Default 300.
    pub access_ttl: i64,
    /// Refresh-token lifetime for `offline_access`, seconds. Default 30 days.
    pub offline_ttl: i64,
    /// Refresh-token lifetime for `online_access`, seconds. Default 12 h.
    pub online_ttl: i64,
    /// Browser-session lifetime, seconds. Default 12 h.
    pub session_ttl: i64,
    /// How long a signing key signs before a new one takes over, seconds. Default 7 days.
    pub key_rotation: i64,
    /// Whether patients may create their own accounts. Default false.
    pub allow_self_registration: bool,
    /// Whether anyone may register OAuth clients (RFC 7591). Default false: admins register.
    pub open_client_registration: bool,
    /// External OpenID Connect providers.
    pub external: Vec<external::ExternalProvider>,
    /// argon2id cost. Default: OWASP's recommendation.
    pub hash_cost: HashCost,
    /// The password policy.
    pub password_policy: PasswordPolicy,
    /// Clock skew forgiven on tokens, and the longest life a token may have.
    pub token_times: medmesh_auth::token::TokenTimes,
}

impl IdentityConfig {
    /// Defaults for an issuer.
    pub fn new(issuer: impl Into<String>) -> Self {
        Self {
            issuer: issuer.into(),
            extra_issuers: Vec::new(),
            access_ttl: 300,
            offline_ttl: 30 * 86_400,
            online_ttl: 12 * 3600,
            session_ttl: 12 * 3600,
            key_rotation: 7 * 86_400,
            allow_self_registration: false,
            open_client_registration: false,
            token_times: medmesh_auth::token::TokenTimes::default(),
            external: Vec::new(),
            hash_cost: HashCost::default(),
            password_policy: PasswordPolicy::default(),
        }
    }
}

/// The identity service.
pub struct IdentityService {
    store: Arc<dyn IdentityStore>,
    config: IdentityConfig,
    clock: Arc<dyn Clock>,
    random: Arc<dyn Random>,
    keys: signing_keys::KeyRing,
    dummy_hash: String,
    secrets: Option<Arc<dyn medmesh_store::SecretSealer>>,
}

impl std::fmt::Debug for IdentityService {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("IdentityService")
            .field("config", &self.config)
            .finish_non_exhaustive()
    }
}

impl IdentityService {
    /// Builds the service and loads (or creates) the signing keys.
    ///
    /// # Errors
    /// When the store fails.
    pub async fn start(
        store: Arc<dyn IdentityStore>,
        config: IdentityConfig,
        clock: Arc<dyn Clock>,
        random: Arc<dyn Random>,
        secrets: Option<Arc<dyn medmesh_store::SecretSealer>>,
    ) -> Result<Arc<Self>, IdentityError> {
        let dummy_hash = medmesh_auth::credentials::dummy_hash(config.hash_cost)
            .map_err(|_| IdentityError::Internal)?;
        let svc = Arc::new(Self {
            store,
            config,
            clock,
            random,
            keys: signing_keys::KeyRing::default(),
            dummy_hash,
            secrets,
        });
        svc.refresh_keys().await?;
        Ok(svc)
    }

    /// The settings.
    pub fn config(&self) -> &IdentityConfig {
        &self.config
    }

    /// Now, in seconds.
    pub fn now(&self) -> i64 {
        self.clock.now_secs()
    }

    /// The injected clock, shared with the adapters that check times (external providers'
    /// tokens and cached metadata).
    pub fn clock(&self) -> Arc<dyn Clock> {
        self.clock.clone()
    }

    fn random_token(&self, bytes: usize) -> String {
        use base64::Engine;
        let mut b = vec![0u8; bytes];
        self.random.fill(&mut b);
        base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(b)
    }

    /// A fresh random token for a pre-login CSRF cookie.
    pub fn new_csrf_token(&self) -> String {
        self.random_token(24)
    }

    fn new_id(&self) -> String {
        let mut b = [0u8; 16];
        self.random.fill(&mut b);
        uuid::Builder::from_random_bytes(b).into_uuid().to_string()
    }
}
