//! Accounts, login (password, then TOTP), throttling, sessions, invitations.

use medmesh_auth::credentials::{
    ThrottlePolicy, Totp, hash_password, normalize_recovery_code, recovery_code, secret_digest,
    verify_password,
};
use medmesh_auth::{Role, Verification};
use medmesh_store::{ClientRecord, InviteRecord, SessionRecord, StoreError, UserRecord};

use crate::{IdentityError, IdentityService};

/// A new account's details.
#[derive(Clone, Default)]
pub struct NewUser {
    /// Role.
    pub role: Option<Role>,
    /// Login name.
    pub username: String,
    /// Password (checked against the policy).
    pub password: String,
    /// Patient to link (patients).
    pub patient_id: Option<String>,
    /// Practitioner to link (practitioners).
    pub practitioner_id: Option<String>,
    /// PractitionerRole to link (practitioners).
    pub practitioner_role_id: Option<String>,
    /// Specialty code (practitioners), e.g. SNOMED CT `394579002` (cardiology).
    pub specialty: Option<String>,
    /// Organization.
    pub organization: Option<String>,
    /// Verification status (practitioners).
    pub verification: Verification,
}

impl std::fmt::Debug for NewUser {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("NewUser")
            .field("role", &self.role)
            .finish_non_exhaustive()
    }
}

/// A created account.
#[derive(Debug, Clone)]
pub struct CreatedUser {
    /// The new id.
    pub id: String,
    /// For roles that need TOTP: the `otpauth://` enrolment URI.
    pub totp_uri: Option<String>,
}

/// Where a login stands after a step.
#[derive(Debug, Clone)]
pub enum LoginStep {
    /// Signed in. The cookie value and the CSRF token.
    Done {
        /// Session cookie value.
        cookie: String,
    },
    /// The password was right; a TOTP code (or recovery code) is needed next.
    NeedCode {
        /// Pending-session cookie value.
        cookie: String,
        /// When the user has not enrolled yet: the URI to show as a QR code.
        enrol_uri: Option<String>,
    },
}

/// A live, complete session.
#[derive(Debug, Clone)]
pub struct Session {
    /// The user.
    pub user: UserRecord,
    /// The CSRF token forms must echo.
    pub csrf: String,
    /// The session's public handle.
    pub handle: String,
    /// When the user authenticated.
    pub auth_time: i64,
}

/// What a completed second-factor step returns.
#[derive(Debug, Clone)]
pub struct SecondFactorDone {
    /// Session cookie value (unchanged).
    pub cookie: String,
    /// Recovery codes, shown once, at the first successful enrolment.
    pub recovery_codes: Vec<String>,
}

impl IdentityService {
    /// A practitioner account as the PDP needs it, read fresh on every request so that a
    /// suspension or a new organization takes effect at once. `None` for other accounts and
    /// for practitioners not linked to a Practitioner resource.
    ///
    /// # Errors
    /// When storage fails.
    pub async fn clinician(
        &self,
        user_id: &str,
    ) -> Result<Option<medmesh_policy::Clinician>, IdentityError> {
        let Some(u) = self.store.user_by_id(user_id).await? else {
            return Ok(None);
        };
        if !u.role.parse::<Role>().is_ok_and(Role::is_clinician) {
            return Ok(None);
        }
        Ok(u.practitioner_id.map(|p| medmesh_policy::Clinician {
            practitioner: format!("Practitioner/{p}"),
            organizations: u
                .organization
                .iter()
                .map(|o| format!("Organization/{o}"))
                .collect(),
            verified: u.verification == "verified" && !u.disabled,
        }))
    }

    /// An account's user name and role, to name it to people (an access log's "who"). `None`
    /// when no account has this id (a service or the node's command line).
    ///
    /// # Errors
    /// When storage fails.
    pub async fn account_label(
        &self,
        user_id: &str,
    ) -> Result<Option<(String, String)>, IdentityError> {
        Ok(self
            .store
            .user_by_id(user_id)
            .await?
            .map(|u| (u.username, u.role)))
    }

    /// Creates an account.
    ///
    /// # Errors
    /// A weak password, a taken user name, or a missing link.
    pub async fn create_user(&self, new: NewUser) -> Result<CreatedUser, IdentityError> {
        let role = new
            .role
            .ok_or_else(|| IdentityError::InvalidRequest("a role is required".into()))?;
        let username = login_name(&new.username).to_string();
        if username.is_empty()
            || username.len() > 64
            || !username
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || "._-@".contains(c))
        {
            return Err(IdentityError::InvalidRequest(
                "a user name is 1 to 64 letters, digits or . _ - @".into(),
            ));
        }
        if role.is_clinician() && new.practitioner_id.is_none() {
            return Err(IdentityError::InvalidRequest(
                "a practitioner or pharmacist account needs --practitioner".into(),
            ));
        }
        self.config
            .password_policy
            .check(&username, &new.password)?;
        let mut salt = [0u8; 16];
        self.random.fill(&mut salt);
        let hash = hash_password(&new.password, &salt, self.config.hash_cost)
            .map_err(|_| IdentityError::Internal)?;
        let id = self.new_id();
        let (totp_secret, totp_uri) = if role.requires_totp() {
            let mut seed = [0u8; 20];
            self.random.fill(&mut seed);
            let uri = Totp::new(&seed, "medmesh", &username)
                .and_then(|t| t.enrolment_uri())
                .map_err(|_| IdentityError::Internal)?;
            (Some(self.seal_totp(&id, &seed).await?), Some(uri))
        } else {
            (None, None)
        };
        let user = UserRecord {
            id,
            username,
            role: role.code().into(),
            password_hash: Some(hash),
            totp_secret,
            totp_confirmed: false,
            totp_last_step: None,
            patient_id: new.patient_id,
            practitioner_id: new.practitioner_id,
            practitioner_role_id: new.practitioner_role_id,
            verification: new.verification.code().into(),
            specialty: new.specialty,
            organization: new.organization,
            external_subject: None,
            disabled: false,
            created: self.clock.now_micros(),
        };
        match self.store.insert_user(&user).await {
            Err(StoreError::Conflict) => return Err(IdentityError::UsernameTaken),
            other => other?,
        }
        tracing::info!(user_id = %user.id, role = %user.role, "account created");
        Ok(CreatedUser {
            id: user.id,
            totp_uri,
        })
    }

    /// The TOTP generator for a user, if enrolled (the seed is stored sealed).
    async fn totp_of(&self, user: &UserRecord) -> Result<Option<Totp>, IdentityError> {
        let Some(stored) = user.totp_secret.as_deref() else {
            return Ok(None);
        };
        let seed = self
            .open_secret(&crate::secrets::totp_context(&user.id), stored)
            .await?;
        Ok(Totp::new(&seed, "medmesh", &user.username).ok())
    }

    /// A fresh TOTP seed sealed for `user_id`, and the enrolment URI it gives.
    async fn new_totp(
        &self,
        user_id: &str,
        username: &str,
    ) -> Result<(Vec<u8>, String), IdentityError> {
        let mut seed = [0u8; 20];
        self.random.fill(&mut seed);
        let uri = Totp::new(&seed, "medmesh", username)
            .and_then(|t| t.enrolment_uri())
            .map_err(|_| IdentityError::Internal)?;
        Ok((self.seal_totp(user_id, &seed).await?, uri))
    }

    async fn seal_totp(&self, user_id: &str, seed: &[u8]) -> Result<Vec<u8>, IdentityError> {
        self.seal_secret(&crate::secrets::totp_context(user_id), seed)
            .await
    }

    /// Checks a TOTP code and claims its time step. Returns the step, or `None` for a wrong
    /// or replayed code. The store's conditional update is the real replay guard: it holds
    /// across replicas.
    async fn claim_totp(
        &self,
        user: &UserRecord,
        totp: &Totp,
        code: &str,
    ) -> Result<Option<i64>, IdentityError> {
        let now = u64::try_from(self.now()).unwrap_or(0);
        let last = user.totp_last_step.and_then(|s| u64::try_from(s).ok());
        let Some(step) = totp.check(code, now, last) else {
            return Ok(None);
        };
        let step = i64::try_from(step).unwrap_or(i64::MAX);
        Ok(self
            .store
            .claim_totp_step(&user.id, step)
            .await?
            .then_some(step))
    }

    /// Refuses when either throttle key is cooling down.
    async fn check_throttle(&self, keys: &[(String, ThrottlePolicy)]) -> Result<(), IdentityError> {
        let now = self.now();
        for (key, policy) in keys {
            if let Some((failures, last)) = self.store.throttle(key).await? {
                let wait = policy.wait_secs(failures, last, now);
                if wait > 0 {
                    return Err(IdentityError::Throttled(wait));
                }
            }
        }
        Ok(())
    }

    async fn record_failure(&self, keys: &[(String, ThrottlePolicy)]) -> Result<(), IdentityError> {
        let now = self.now();
        for (key, policy) in keys {
            let (failures, last) = self.store.throttle(key).await?.unwrap_or((0, now));
            let n = policy.after_failure(failures, last, now);
            self.store.set_throttle(key, n, now).await?;
        }
        Ok(())
    }

    /// The throttle's keys for a login attempt. `username` is already [`login_name`]d, so
    /// every spelling that reaches an account shares that account's budget.
    fn throttle_keys(username: &str, ip: &str) -> Vec<(String, ThrottlePolicy)> {
        vec![
            (
                format!("user:{}", username.to_lowercase()),
                ThrottlePolicy::ACCOUNT,
            ),
            (format!("ip:{ip}"), ThrottlePolicy::SOURCE_IP),
        ]
    }

    /// First login step: user name and password.
    ///
    /// The name is taken as [`login_name`] makes it.
    ///
    /// # Errors
    /// [`IdentityError::BadCredentials`] (for an unknown user too, after the same work), or
    /// [`IdentityError::Throttled`].
    pub async fn login_password(
        &self,
        username: &str,
        password: &str,
        ip: &str,
        user_agent: &str,
    ) -> Result<LoginStep, IdentityError> {
        // One normalisation serves the throttle and the lookup: were they to differ, each
        // spelling that still finds the account (" bob", "bob ") would get a fresh budget.
        let username = login_name(username);
        let keys = Self::throttle_keys(username, ip);
        self.check_throttle(&keys).await?;
        let user = self.store.user_by_username(username).await?;
        let hash = user
            .as_ref()
            .and_then(|u| u.password_hash.clone())
            .unwrap_or_else(|| self.dummy_hash.clone());
        // argon2 is CPU-bound: off the async workers.
        let candidate = password.to_string();
        let ok = tokio::task::spawn_blocking(move || verify_password(&candidate, &hash))
            .await
            .unwrap_or(false);
        let user = match user {
            Some(u) if ok && !u.disabled => u,
            _ => {
                self.record_failure(&keys).await?;
                tracing::info!("failed login");
                return Err(IdentityError::BadCredentials);
            }
        };
        let role: Role = user.role.parse().map_err(|_| IdentityError::Internal)?;
        let needs_code = role.requires_totp() || user.totp_confirmed;
        let mut enrol_uri = None;
        if needs_code && user.totp_secret.is_none() {
            // A role that must use TOTP but never enrolled: enrol now, before the session.
            let (sealed, uri) = self.new_totp(&user.id, &user.username).await?;
            let mut u = user.clone();
            u.totp_secret = Some(sealed);
            self.store.update_user(&u).await?;
            enrol_uri = Some(uri);
        } else if needs_code && !user.totp_confirmed {
            enrol_uri = self
                .totp_of(&user)
                .await?
                .and_then(|t| t.enrolment_uri().ok());
        }
        let cookie = self
            .open_session(&user, ip, user_agent, !needs_code)
            .await?;
        if needs_code {
            Ok(LoginStep::NeedCode { cookie, enrol_uri })
        } else {
            self.store.clear_throttle(&keys[0].0).await?;
            Ok(LoginStep::Done { cookie })
        }
    }

    pub(crate) async fn open_session(
        &self,
        user: &UserRecord,
        ip: &str,
        user_agent: &str,
        complete: bool,
    ) -> Result<String, IdentityError> {
        let cookie = self.random_token(32);
        let now = self.now();
        self.store
            .insert_session(&SessionRecord {
                id_hash: secret_digest(&cookie),
                handle: self.random_token(12),
                user_id: user.id.clone(),
                csrf: self.random_token(24),
                auth_time: now,
                // A pending (password-only) session lives five minutes.
                expires: now
                    + if complete {
                        self.config.session_ttl
                    } else {
                        300
                    },
                revoked: false,
                user_agent: user_agent.chars().take(200).collect(),
                ip: ip.to_string(),
                complete,
            })
            .await?;
        Ok(cookie)
    }

    /// Second login step: a TOTP code, or a single-use recovery code.
    ///
    /// # Errors
    /// [`IdentityError::BadSecondFactor`] for a wrong or replayed code.
    pub async fn login_code(
        &self,
        cookie: &str,
        code: &str,
        ip: &str,
    ) -> Result<SecondFactorDone, IdentityError> {
        let hash = secret_digest(cookie);
        let now = self.now();
        let session = self
            .store
            .session(&hash)
            .await?
            .filter(|s| !s.revoked && !s.complete && s.expires > now)
            .ok_or(IdentityError::NotSignedIn)?;
        let mut user = self
            .store
            .user_by_id(&session.user_id)
            .await?
            .ok_or(IdentityError::NotSignedIn)?;
        let keys = Self::throttle_keys(&user.username, ip);
        self.check_throttle(&keys).await?;
        let totp = self.totp_of(&user).await?.ok_or(IdentityError::Internal)?;
        let claimed = self.claim_totp(&user, &totp, code).await?;
        let ok = claimed.is_some()
            || (user.totp_confirmed
                && self
                    .store
                    .use_recovery_code(&user.id, &secret_digest(&normalize_recovery_code(code)))
                    .await?);
        if !ok {
            self.record_failure(&keys).await?;
            return Err(IdentityError::BadSecondFactor);
        }
        self.store.clear_throttle(&keys[0].0).await?;
        let mut recovery_codes = Vec::new();
        if !user.totp_confirmed {
            // Unconfirmed accounts have no recovery codes: the code was a TOTP code.
            user.totp_confirmed = true;
            user.totp_last_step = claimed;
            self.store.update_user(&user).await?;
            recovery_codes = self.new_recovery_codes(&user.id).await?;
        }
        // A new CSRF token at privilege change.
        self.store
            .complete_session(&hash, &self.random_token(24), now)
            .await?;
        Ok(SecondFactorDone {
            cookie: cookie.to_string(),
            recovery_codes,
        })
    }

    /// Replaces a user's recovery codes with ten new ones and returns them (shown once).
    ///
    /// # Errors
    /// When the store fails.
    pub async fn new_recovery_codes(&self, user_id: &str) -> Result<Vec<String>, IdentityError> {
        let codes: Vec<String> = (0..10)
            .map(|_| {
                let mut b = [0u8; 10];
                self.random.fill(&mut b);
                recovery_code(&b)
            })
            .collect();
        let hashes: Vec<String> = codes.iter().map(|c| secret_digest(c)).collect();
        self.store.set_recovery_codes(user_id, &hashes).await?;
        Ok(codes)
    }

    /// The live session behind a cookie.
    ///
    /// # Errors
    /// [`IdentityError::NotSignedIn`].
    pub async fn session(&self, cookie: &str) -> Result<Session, IdentityError> {
        let now = self.now();
        let s = self
            .store
            .session(&secret_digest(cookie))
            .await?
            .filter(|s| !s.revoked && s.complete && s.expires > now)
            .ok_or(IdentityError::NotSignedIn)?;
        let user = self
            .store
            .user_by_id(&s.user_id)
            .await?
            .filter(|u| !u.disabled)
            .ok_or(IdentityError::NotSignedIn)?;
        Ok(Session {
            user,
            csrf: s.csrf,
            handle: s.handle,
            auth_time: s.auth_time,
        })
    }

    /// Ends the session behind a cookie.
    ///
    /// # Errors
    /// When the store fails.
    pub async fn logout(&self, cookie: &str) -> Result<(), IdentityError> {
        if let Some(s) = self.store.session(&secret_digest(cookie)).await? {
            self.store.revoke_session(&s.user_id, &s.handle).await?;
        }
        Ok(())
    }

    /// A user's live sessions.
    ///
    /// # Errors
    /// When the store fails.
    pub async fn sessions_of(&self, user_id: &str) -> Result<Vec<SessionRecord>, IdentityError> {
        Ok(self.store.sessions_of(user_id, self.now()).await?)
    }

    /// Makes the user's private calendar feed, replacing any they had (which stops working),
    /// and returns its token: shown once, only its digest is kept. `detail` is `busy` (times
    /// only) or `detailed` (with names and places), as the user chooses.
    ///
    /// # Errors
    /// [`IdentityError::InvalidRequest`] for another detail; [`IdentityError::NotFound`] for
    /// an unknown or disabled user; store failures.
    pub async fn create_calendar_feed(
        &self,
        user_id: &str,
        detail: &str,
    ) -> Result<String, IdentityError> {
        if !matches!(detail, "busy" | "detailed") {
            return Err(IdentityError::InvalidRequest(
                "detail is busy or detailed".into(),
            ));
        }
        match self.store.user_by_id(user_id).await? {
            Some(u) if !u.disabled => {}
            _ => return Err(IdentityError::NotFound),
        }
        let token = self.random_token(32);
        self.store
            .replace_calendar_feed(
                user_id,
                &secret_digest(&token),
                detail,
                self.now() * 1_000_000,
            )
            .await?;
        Ok(token)
    }

    /// Revokes the user's calendar feed; whether there was one.
    ///
    /// # Errors
    /// Store failures.
    pub async fn revoke_calendar_feed(&self, user_id: &str) -> Result<bool, IdentityError> {
        Ok(self.store.remove_calendar_feed(user_id).await?)
    }

    /// The account a calendar feed's token belongs to, with the feed's detail, when the
    /// token is live and the account usable; `None` otherwise (the caller answers 404).
    ///
    /// # Errors
    /// Store failures.
    pub async fn calendar_feed_owner(
        &self,
        token: &str,
    ) -> Result<Option<(UserRecord, String)>, IdentityError> {
        if token.is_empty() || token.len() > 100 {
            return Ok(None);
        }
        let Some((user_id, detail)) = self.store.calendar_feed(&secret_digest(token)).await? else {
            return Ok(None);
        };
        Ok(self
            .store
            .user_by_id(&user_id)
            .await?
            .filter(|u| !u.disabled)
            .map(|u| (u, detail)))
    }

    /// Ends one of the user's sessions by handle.
    ///
    /// # Errors
    /// [`IdentityError::NotFound`] when it is not theirs.
    pub async fn end_session(&self, user_id: &str, handle: &str) -> Result<(), IdentityError> {
        if self.store.revoke_session(user_id, handle).await? {
            Ok(())
        } else {
            Err(IdentityError::NotFound)
        }
    }

    /// Creates an invitation and returns its one-time code. Org admins invite practitioners;
    /// practitioners invite patients (linked to an existing Patient record).
    ///
    /// # Errors
    /// [`IdentityError::Forbidden`] when the inviter's role may not invite that role.
    pub async fn invite(
        &self,
        inviter: &UserRecord,
        role: Role,
        patient_id: Option<String>,
        practitioner_id: Option<String>,
    ) -> Result<String, IdentityError> {
        let inviter_role: Role = inviter.role.parse().map_err(|_| IdentityError::Forbidden)?;
        let allowed = matches!(
            (inviter_role, role),
            (Role::NodeAdmin, _)
                | (
                    Role::OrgAdmin,
                    Role::Practitioner | Role::Pharmacist | Role::OrgAdmin
                )
                | (Role::Practitioner, Role::Patient)
        );
        if !allowed
            || (inviter_role == Role::Practitioner
                && inviter.verification != Verification::Verified.code())
        {
            return Err(IdentityError::Forbidden);
        }
        if role == Role::Patient && patient_id.is_none() {
            return Err(IdentityError::InvalidRequest(
                "a patient invitation names the Patient record".into(),
            ));
        }
        if role.is_clinician() && practitioner_id.is_none() {
            return Err(IdentityError::InvalidRequest(
                "a practitioner invitation names the Practitioner record".into(),
            ));
        }
        let code = self.random_token(18);
        self.store
            .insert_invite(&InviteRecord {
                code_hash: secret_digest(&code),
                role: role.code().into(),
                patient_id,
                practitioner_id,
                organization: inviter.organization.clone(),
                created_by: inviter.id.clone(),
                expires: self.now() + 7 * 86_400,
                used: false,
            })
            .await?;
        Ok(code)
    }

    /// Redeems an invitation: creates the account, linked as the invitation says.
    ///
    /// # Errors
    /// [`IdentityError::InvalidGrant`] for an unknown, used or expired code.
    pub async fn accept_invite(
        &self,
        code: &str,
        username: &str,
        password: &str,
    ) -> Result<CreatedUser, IdentityError> {
        // Check the password before burning the code.
        self.config.password_policy.check(username, password)?;
        let inv = self
            .store
            .take_invite(&secret_digest(code.trim()))
            .await?
            .filter(|i| !i.used && i.expires > self.now())
            .ok_or(IdentityError::InvalidGrant)?;
        self.create_user(NewUser {
            role: inv.role.parse().ok(),
            username: username.into(),
            password: password.into(),
            patient_id: inv.patient_id,
            practitioner_id: inv.practitioner_id,
            organization: inv.organization,
            verification: Verification::Unverified,
            ..NewUser::default()
        })
        .await
    }

    /// Starts optional TOTP enrolment (patients): a new secret, not yet required at login.
    /// Returns the `otpauth://` URI.
    ///
    /// # Errors
    /// [`IdentityError::InvalidRequest`] when TOTP is already on.
    pub async fn start_totp(&self, user: &UserRecord) -> Result<String, IdentityError> {
        if user.totp_confirmed {
            return Err(IdentityError::InvalidRequest(
                "two-factor sign-in is already on".into(),
            ));
        }
        let (sealed, uri) = self.new_totp(&user.id, &user.username).await?;
        let mut u = user.clone();
        u.totp_secret = Some(sealed);
        self.store.update_user(&u).await?;
        Ok(uri)
    }

    /// Confirms TOTP enrolment with a first code; from then on login asks for a code.
    /// Returns the recovery codes (shown once).
    ///
    /// # Errors
    /// [`IdentityError::BadSecondFactor`] for a wrong code.
    pub async fn confirm_totp(
        &self,
        user_id: &str,
        code: &str,
    ) -> Result<Vec<String>, IdentityError> {
        let mut user = self
            .store
            .user_by_id(user_id)
            .await?
            .ok_or(IdentityError::NotFound)?;
        let totp = self
            .totp_of(&user)
            .await?
            .ok_or_else(|| IdentityError::InvalidRequest("start enrolment first".into()))?;
        let step = self
            .claim_totp(&user, &totp, code)
            .await?
            .ok_or(IdentityError::BadSecondFactor)?;
        user.totp_confirmed = true;
        user.totp_last_step = Some(step);
        self.store.update_user(&user).await?;
        self.new_recovery_codes(&user.id).await
    }

    /// Self-registration of a patient account, where the node allows it. The account is
    /// linked to a Patient record later, with a one-time code from a practitioner.
    ///
    /// # Errors
    /// [`IdentityError::Forbidden`] when self-registration is off.
    pub async fn self_register(
        &self,
        username: &str,
        password: &str,
    ) -> Result<CreatedUser, IdentityError> {
        if !self.config.allow_self_registration {
            return Err(IdentityError::Forbidden);
        }
        self.create_user(NewUser {
            role: Some(Role::Patient),
            username: username.into(),
            password: password.into(),
            ..NewUser::default()
        })
        .await
    }

    /// Links a patient account to its Patient record with a one-time code (a patient
    /// invitation issued by a practitioner).
    ///
    /// # Errors
    /// [`IdentityError::InvalidGrant`] for a bad code; [`IdentityError::AlreadyLinked`] when
    /// the account has a patient record already (the code is not spent).
    pub async fn link_patient(
        &self,
        user: &UserRecord,
        code: &str,
    ) -> Result<String, IdentityError> {
        if user.role != Role::Patient.code() {
            return Err(IdentityError::Forbidden);
        }
        if user.patient_id.is_some() {
            return Err(IdentityError::AlreadyLinked);
        }
        let inv = self
            .store
            .take_invite(&secret_digest(code.trim()))
            .await?
            .filter(|i| !i.used && i.expires > self.now() && i.role == Role::Patient.code())
            .ok_or(IdentityError::InvalidGrant)?;
        let patient = inv.patient_id.ok_or(IdentityError::InvalidGrant)?;
        let mut u = user.clone();
        u.patient_id = Some(patient.clone());
        self.store.update_user(&u).await?;
        Ok(patient)
    }

    /// Sets a practitioner's verification status (org admins of the same organization, and
    /// node admins).
    ///
    /// # Errors
    /// [`IdentityError::Forbidden`] or [`IdentityError::NotFound`].
    pub async fn set_verification(
        &self,
        admin: &UserRecord,
        user_id: &str,
        status: Verification,
    ) -> Result<(), IdentityError> {
        let mut user = self
            .store
            .user_by_id(user_id)
            .await?
            .ok_or(IdentityError::NotFound)?;
        let allowed = admin.role == Role::NodeAdmin.code()
            || (admin.role == Role::OrgAdmin.code()
                && admin.organization.is_some()
                && admin.organization == user.organization);
        if !allowed || !user.role.parse::<Role>().is_ok_and(Role::is_clinician) {
            return Err(IdentityError::Forbidden);
        }
        user.verification = status.code().into();
        self.store.update_user(&user).await?;
        Ok(())
    }
}

impl IdentityService {
    /// The practitioner accounts an admin oversees: every one for a node admin, their own
    /// organization's for an org admin; only those with `verification` when given (the
    /// ones waiting: `unverified`); at most `limit`, by user name.
    ///
    /// # Errors
    /// [`IdentityError::Forbidden`] for anyone else.
    pub async fn practitioners_overseen(
        &self,
        admin: &UserRecord,
        verification: Option<&str>,
        limit: u32,
    ) -> Result<Vec<UserRecord>, IdentityError> {
        let organization = if admin.role == Role::NodeAdmin.code() {
            None
        } else if admin.role == Role::OrgAdmin.code() && admin.organization.is_some() {
            admin.organization.as_deref()
        } else {
            return Err(IdentityError::Forbidden);
        };
        Ok(self
            .store
            .users_with_role(Role::Practitioner.code(), organization, verification, limit)
            .await?)
    }

    /// The registered OAuth clients (node admins only; at most 500, newest first).
    ///
    /// # Errors
    /// [`IdentityError::Forbidden`] for anyone else.
    pub async fn registered_clients(
        &self,
        admin: &UserRecord,
    ) -> Result<Vec<ClientRecord>, IdentityError> {
        if admin.role != Role::NodeAdmin.code() {
            return Err(IdentityError::Forbidden);
        }
        Ok(self.store.clients(500).await?)
    }
}

/// A user name as typed at login or creation, in the one form the node stores, looks up and
/// throttles: surrounding white space is not part of it.
pub fn login_name(typed: &str) -> &str {
    typed.trim()
}
