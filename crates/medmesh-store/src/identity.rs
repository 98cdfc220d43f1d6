//! The identity port: accounts, credentials, sessions, OAuth clients, codes and tokens, and
//! the token-signing keys. Secrets are stored as hashes (argon2id for passwords, SHA-256 for
//! random tokens), never in clear, except the signing keys and TOTP seeds, which the
//! encryption-at-rest issue wraps under the node key.

use async_trait::async_trait;

use crate::StoreError;

/// A user account.
#[derive(Clone, PartialEq, Eq)]
pub struct UserRecord {
    /// Opaque id (a UUID).
    pub id: String,
    /// Login name, unique.
    pub username: String,
    /// Role code (see `medmesh_auth::Role`).
    pub role: String,
    /// argon2id PHC string; `None` for accounts that only sign in through an external provider.
    pub password_hash: Option<String>,
    /// TOTP seed, once enrolment started.
    pub totp_secret: Option<Vec<u8>>,
    /// Whether the user proved the TOTP enrolment with a first code.
    pub totp_confirmed: bool,
    /// The last accepted TOTP time step (replay protection).
    pub totp_last_step: Option<i64>,
    /// Linked Patient id (patients).
    pub patient_id: Option<String>,
    /// Linked Practitioner id (practitioners).
    pub practitioner_id: Option<String>,
    /// Linked PractitionerRole id (practitioners).
    pub practitioner_role_id: Option<String>,
    /// Verification status code (practitioners).
    pub verification: String,
    /// Specialty code (practitioners).
    pub specialty: Option<String>,
    /// Organization id.
    pub organization: Option<String>,
    /// `issuer|subject` of an external OpenID Connect identity.
    pub external_subject: Option<String>,
    /// Disabled accounts cannot sign in.
    pub disabled: bool,
    /// Creation time, micros.
    pub created: i64,
}

impl std::fmt::Debug for UserRecord {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("UserRecord")
            .field("id", &self.id)
            .field("role", &self.role)
            .field("verification", &self.verification)
            .finish_non_exhaustive()
    }
}

/// A browser session.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SessionRecord {
    /// SHA-256 of the session cookie value.
    pub id_hash: String,
    /// Public handle, to list and end sessions without exposing the cookie hash.
    pub handle: String,
    /// The user.
    pub user_id: String,
    /// The CSRF token bound to this session.
    pub csrf: String,
    /// When the user authenticated (password and second factor), seconds.
    pub auth_time: i64,
    /// Expiry, seconds.
    pub expires: i64,
    /// Whether it was ended (logout, or by the user from another session).
    pub revoked: bool,
    /// The browser, as it said (for the session list).
    pub user_agent: String,
    /// Source IP at login.
    pub ip: String,
    /// Whether login is complete; `false` while the second factor is pending.
    pub complete: bool,
}

/// A registered OAuth client.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClientRecord {
    /// `client_id`.
    pub client_id: String,
    /// Display name, shown on the consent screen.
    pub name: String,
    /// `public`, `confidential` or `backend`.
    pub kind: String,
    /// SHA-256 of the client secret (confidential clients using `client_secret_basic`).
    pub secret_hash: Option<String>,
    /// Exact redirect URIs.
    pub redirect_uris: Vec<String>,
    /// JWKS (JSON) for `private_key_jwt`.
    pub jwks: Option<String>,
    /// The most the client may ever be granted, space-separated.
    pub scope: String,
    /// Creation time, micros.
    pub created: i64,
}

/// An authorization code, stored by hash until exchanged once.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AuthCodeRecord {
    /// SHA-256 of the code.
    pub code_hash: String,
    /// The client it was issued to.
    pub client_id: String,
    /// The user who approved.
    pub user_id: String,
    /// The exact redirect URI of the request.
    pub redirect_uri: String,
    /// Approved scopes.
    pub scope: String,
    /// Launch patient context.
    pub patient: Option<String>,
    /// PKCE S256 challenge.
    pub code_challenge: String,
    /// OpenID nonce.
    pub nonce: Option<String>,
    /// When the user authenticated.
    pub auth_time: i64,
    /// Expiry, seconds.
    pub expires: i64,
    /// Whether it was exchanged already.
    pub used: bool,
    /// The refresh-token family issued from it, to revoke on a replayed code.
    pub family: String,
}

/// A refresh token, stored by hash. Each use rotates it; tokens of one login share a family.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RefreshRecord {
    /// SHA-256 of the token.
    pub token_hash: String,
    /// The family (one per authorization).
    pub family: String,
    /// Client.
    pub client_id: String,
    /// User.
    pub user_id: String,
    /// Granted scopes; a refresh may narrow, never widen them.
    pub scope: String,
    /// Patient context.
    pub patient: Option<String>,
    /// Expiry, seconds.
    pub expires: i64,
    /// Whether it was used (rotated) already.
    pub used: bool,
    /// Whether its family was revoked.
    pub revoked: bool,
    /// When the user authenticated.
    pub auth_time: i64,
}

/// An invitation: a one-time code that creates an account or links one to a record.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InviteRecord {
    /// SHA-256 of the code.
    pub code_hash: String,
    /// The role the account gets.
    pub role: String,
    /// Patient to link.
    pub patient_id: Option<String>,
    /// Practitioner to link.
    pub practitioner_id: Option<String>,
    /// Organization.
    pub organization: Option<String>,
    /// Who invited.
    pub created_by: String,
    /// Expiry, seconds.
    pub expires: i64,
    /// Whether it was redeemed.
    pub used: bool,
}

/// A token-signing key.
#[derive(Clone, PartialEq, Eq)]
pub struct KeyRecord {
    /// `kid`.
    pub kid: String,
    /// The secret key bytes.
    pub secret: Vec<u8>,
    /// Creation time, micros.
    pub created: i64,
}

impl std::fmt::Debug for KeyRecord {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("KeyRecord")
            .field("kid", &self.kid)
            .field("created", &self.created)
            .finish_non_exhaustive()
    }
}

/// Storage for identity and authorization. Every method is one atomic step, so the
/// single-use checks (codes, refresh tokens, TOTP steps) hold across replicas.
#[async_trait]
pub trait IdentityStore: Send + Sync + 'static {
    /// Adds a user; [`StoreError::Conflict`] when the user name is taken.
    async fn insert_user(&self, user: &UserRecord) -> Result<(), StoreError>;
    /// Replaces a user's row.
    async fn update_user(&self, user: &UserRecord) -> Result<(), StoreError>;
    /// A user by id.
    async fn user_by_id(&self, id: &str) -> Result<Option<UserRecord>, StoreError>;
    /// A user by login name.
    async fn user_by_username(&self, username: &str) -> Result<Option<UserRecord>, StoreError>;
    /// A user by external identity (`issuer|subject`).
    async fn user_by_external(&self, subject: &str) -> Result<Option<UserRecord>, StoreError>;
    /// How many users exist.
    async fn user_count(&self) -> Result<u64, StoreError>;
    /// The accounts with `role` (in `organization`, with `verification`, when given), by user
    /// name; at most `limit`.
    async fn users_with_role(
        &self,
        role: &str,
        organization: Option<&str>,
        verification: Option<&str>,
        limit: u32,
    ) -> Result<Vec<UserRecord>, StoreError>;
    /// The registered OAuth clients, newest first; at most `limit`.
    async fn clients(&self, limit: u32) -> Result<Vec<ClientRecord>, StoreError>;
    /// Records a TOTP step as used if it is newer than the last; `false` for a replay.
    async fn claim_totp_step(&self, user_id: &str, step: i64) -> Result<bool, StoreError>;
    /// Replaces a user's recovery codes (hashes).
    async fn set_recovery_codes(&self, user_id: &str, hashes: &[String]) -> Result<(), StoreError>;
    /// Uses a recovery code once; `false` if unknown or used.
    async fn use_recovery_code(&self, user_id: &str, hash: &str) -> Result<bool, StoreError>;

    /// Adds a session.
    async fn insert_session(&self, s: &SessionRecord) -> Result<(), StoreError>;
    /// A session by cookie hash.
    async fn session(&self, id_hash: &str) -> Result<Option<SessionRecord>, StoreError>;
    /// Marks a session complete (second factor passed) with a new CSRF token.
    async fn complete_session(
        &self,
        id_hash: &str,
        csrf: &str,
        auth_time: i64,
    ) -> Result<(), StoreError>;
    /// A user's live sessions.
    async fn sessions_of(&self, user_id: &str, now: i64) -> Result<Vec<SessionRecord>, StoreError>;
    /// Ends a session of a user by its handle.
    async fn revoke_session(&self, user_id: &str, handle: &str) -> Result<bool, StoreError>;

    /// Failed attempts for a throttle key: `(failures, last failure)`.
    async fn throttle(&self, key: &str) -> Result<Option<(u32, i64)>, StoreError>;
    /// Stores a throttle key's state.
    async fn set_throttle(&self, key: &str, failures: u32, last: i64) -> Result<(), StoreError>;
    /// Forgets a throttle key (after a success).
    async fn clear_throttle(&self, key: &str) -> Result<(), StoreError>;

    /// Registers a client; [`StoreError::Conflict`] if the id exists.
    async fn insert_client(&self, c: &ClientRecord) -> Result<(), StoreError>;
    /// A client by id.
    async fn client(&self, client_id: &str) -> Result<Option<ClientRecord>, StoreError>;

    /// Stores an authorization code.
    async fn insert_code(&self, c: &AuthCodeRecord) -> Result<(), StoreError>;
    /// Marks a code used and returns it as it was before (so a replay shows `used`).
    async fn take_code(&self, code_hash: &str) -> Result<Option<AuthCodeRecord>, StoreError>;

    /// Stores a refresh token.
    async fn insert_refresh(&self, r: &RefreshRecord) -> Result<(), StoreError>;
    /// Marks a refresh token used and returns it as it was before.
    async fn take_refresh(&self, token_hash: &str) -> Result<Option<RefreshRecord>, StoreError>;
    /// A refresh token without using it (introspection).
    async fn refresh(&self, token_hash: &str) -> Result<Option<RefreshRecord>, StoreError>;
    /// Revokes every token of a family.
    async fn revoke_family(&self, family: &str) -> Result<(), StoreError>;

    /// Revokes an access token by `jti` until its expiry.
    async fn revoke_jti(&self, jti: &str, expires: i64) -> Result<(), StoreError>;
    /// Revoked access-token ids not yet expired at `now`.
    async fn revoked_jtis(&self, now: i64) -> Result<Vec<String>, StoreError>;
    /// Records a client assertion's `jti`; `false` if it was seen (a replay).
    async fn claim_assertion_jti(&self, jti: &str, expires: i64) -> Result<bool, StoreError>;

    /// Every signing key, newest first.
    async fn signing_keys(&self) -> Result<Vec<KeyRecord>, StoreError>;
    /// Adds a signing key.
    async fn add_signing_key(&self, k: &KeyRecord) -> Result<(), StoreError>;
    /// Replaces a signing key's stored (sealed) secret: `keys reencrypt`.
    async fn replace_signing_key_secret(&self, kid: &str, secret: &[u8]) -> Result<(), StoreError>;
    /// Every account with a TOTP seed (for re-sealing them).
    async fn users_with_totp(&self) -> Result<Vec<UserRecord>, StoreError>;
    /// Removes keys created before `before` (micros), except the newest.
    async fn prune_signing_keys(&self, before: i64) -> Result<(), StoreError>;

    /// The accounts linked to `Practitioner/<practitioner>` (at most 100).
    async fn users_of_practitioner(
        &self,
        practitioner: &str,
    ) -> Result<Vec<UserRecord>, StoreError>;

    /// Sets a user's calendar feed (one per user: a new one replaces the old, which stops
    /// working): the SHA-256 of its token, and how much it shows (`busy` or `detailed`).
    async fn replace_calendar_feed(
        &self,
        user_id: &str,
        token_hash: &str,
        detail: &str,
        created_micros: i64,
    ) -> Result<(), StoreError>;
    /// The user and detail of a calendar feed, by the SHA-256 of its token.
    async fn calendar_feed(&self, token_hash: &str)
    -> Result<Option<(String, String)>, StoreError>;
    /// Removes a user's calendar feed; whether there was one.
    async fn remove_calendar_feed(&self, user_id: &str) -> Result<bool, StoreError>;

    /// Stores an invitation.
    async fn insert_invite(&self, i: &InviteRecord) -> Result<(), StoreError>;
    /// Redeems an invitation once; returns it as it was before.
    async fn take_invite(&self, code_hash: &str) -> Result<Option<InviteRecord>, StoreError>;
}
