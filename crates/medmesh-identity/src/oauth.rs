//! The OAuth2 authorization server for SMART App Launch 2.x.

use medmesh_auth::credentials::{pkce_s256_matches, secret_digest};
use medmesh_auth::token::{IdTokenClaims, unverified_claims, verify_with_jwks};
use medmesh_auth::{Role, Scope, ScopeContext, Verification, narrow, parse_scopes};
use medmesh_store::{AuthCodeRecord, ClientRecord, RefreshRecord, StoreError, UserRecord};
use serde_json::{Value, json};

use crate::{IdentityError, IdentityService};

/// What a token is issued for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IssuedGrant {
    /// `sub`.
    pub subject: String,
    /// Space-separated scopes.
    pub scope: String,
    /// Patient context.
    pub patient: Option<String>,
    /// Role code.
    pub role: Option<String>,
    /// Client.
    pub client_id: Option<String>,
    /// `fhirUser`.
    pub fhir_user: Option<String>,
    /// Lifetime override, seconds.
    pub ttl: Option<i64>,
}

/// A client registration request (RFC 7591 subset).
#[derive(Debug, Clone, Default, serde::Deserialize)]
pub struct Registration {
    /// Display name.
    #[serde(default)]
    pub client_name: String,
    /// Redirect URIs (code-flow clients).
    #[serde(default)]
    pub redirect_uris: Vec<String>,
    /// `none` (public), `client_secret_basic` (confidential) or `private_key_jwt` (backend
    /// services, or confidential apps with keys).
    #[serde(default)]
    pub token_endpoint_auth_method: Option<String>,
    /// The client's public keys, for `private_key_jwt`.
    #[serde(default)]
    pub jwks: Option<Value>,
    /// The most the client may ask for.
    #[serde(default)]
    pub scope: Option<String>,
}

/// A validated `/authorize` request.
#[derive(Debug, Clone)]
pub struct AuthorizeRequest {
    /// The client.
    pub client: ClientRecord,
    /// Exact redirect URI.
    pub redirect_uri: String,
    /// Requested scope tokens.
    pub scope: Vec<String>,
    /// `state`, echoed.
    pub state: Option<String>,
    /// PKCE challenge.
    pub code_challenge: String,
    /// OpenID nonce.
    pub nonce: Option<String>,
    /// EHR launch context: the portal's opaque `launch` parameter, verified, gives the user
    /// it was made for and the patient open in the portal.
    pub launch: Option<LaunchContext>,
}

/// An `/authorize` failure: shown on a page when the redirect URI cannot be trusted, else
/// sent back to the client.
#[derive(Debug)]
pub enum AuthorizeError {
    /// Show an error page; never redirect to an unverified URI.
    Page(String),
    /// Redirect to the client with this `error` and description.
    Redirect {
        /// Where.
        redirect_uri: String,
        /// `error`.
        error: &'static str,
        /// `error_description`.
        description: String,
        /// `state`.
        state: Option<String>,
    },
}

/// The token endpoint's answer.
#[derive(Debug, Clone, serde::Serialize)]
pub struct TokenResponse {
    /// The access token.
    pub access_token: String,
    /// Always `Bearer`.
    pub token_type: &'static str,
    /// Seconds.
    pub expires_in: i64,
    /// Granted scope.
    pub scope: String,
    /// Refresh token, for `offline_access` / `online_access`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub refresh_token: Option<String>,
    /// OpenID id token, for `openid`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub id_token: Option<String>,
    /// SMART launch context.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub patient: Option<String>,
    /// SMART: the user's FHIR resource.
    #[serde(rename = "fhirUser", skip_serializing_if = "Option::is_none")]
    pub fhir_user: Option<String>,
}

/// How a client authenticated at the token endpoint.
#[derive(Debug, Clone, Default)]
pub struct ClientAuth {
    /// `client_id` from the form or Basic auth.
    pub client_id: Option<String>,
    /// Secret from Basic auth or the form.
    pub client_secret: Option<String>,
    /// `client_assertion_type`.
    pub assertion_type: Option<String>,
    /// `client_assertion` (a JWT).
    pub assertion: Option<String>,
}

/// An EHR launch context, made by the portal for one user and one open patient record.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct LaunchContext {
    /// The user it was made for.
    #[serde(rename = "sub")]
    pub user_id: String,
    /// The patient open in the portal.
    pub patient: String,
    /// Expiry.
    pub exp: i64,
    /// Audience: always [`LAUNCH_AUDIENCE`].
    pub aud: String,
    /// Issuer.
    pub iss: String,
}

/// The audience of launch contexts, so no access token can pass for one.
pub const LAUNCH_AUDIENCE: &str = "medmesh-launch";

/// Non-clinical scope tokens the server understands.
pub const OTHER_SCOPES: [&str; 8] = [
    "openid",
    "fhirUser",
    "profile",
    "launch",
    "launch/patient",
    "offline_access",
    "online_access",
    "smart/orchestrate_launch",
];

const JWT_BEARER: &str = "urn:ietf:params:oauth:client-assertion-type:jwt-bearer";

/// The SMART `fhirUser` of an account.
pub fn fhir_user_of(u: &UserRecord) -> Option<String> {
    match u.role.as_str() {
        "patient" => u.patient_id.as_ref().map(|p| format!("Patient/{p}")),
        "practitioner" | "pharmacist" => u
            .practitioner_id
            .as_ref()
            .map(|p| format!("Practitioner/{p}")),
        _ => None,
    }
}

/// The scopes a user may hold: the requested clinical scopes cut to the role's ceiling,
/// plus the understood non-clinical ones.
pub fn scopes_for_user(user: &UserRecord, requested: &[String]) -> Vec<String> {
    let role: Option<Role> = user.role.parse().ok();
    let verification: Verification = user.verification.parse().unwrap_or_default();
    let clinical: Vec<Scope> = requested
        .iter()
        .filter_map(|s| Scope::parse(s).ok())
        .collect();
    let ceiling = role.map(|r| r.ceiling(verification)).unwrap_or_default();
    let mut out: Vec<String> = requested
        .iter()
        .filter(|s| OTHER_SCOPES.contains(&s.as_str()))
        .cloned()
        .collect();
    out.extend(narrow(&clinical, &ceiling).iter().map(ToString::to_string));
    out.dedup();
    out
}

impl IdentityService {
    /// Registers a client. Returns the registration response, with a secret for confidential
    /// clients (shown once; only its hash is kept).
    ///
    /// # Errors
    /// An invalid registration.
    pub async fn register_client(&self, reg: Registration) -> Result<Value, IdentityError> {
        let method = reg
            .token_endpoint_auth_method
            .clone()
            .unwrap_or_else(|| "none".into());
        let kind = match method.as_str() {
            "none" => "public",
            "client_secret_basic" | "client_secret_post" => "confidential",
            "private_key_jwt" if reg.redirect_uris.is_empty() => "backend",
            "private_key_jwt" => "confidential",
            _ => {
                return Err(IdentityError::InvalidRequest(
                    "unsupported token_endpoint_auth_method".into(),
                ));
            }
        };
        for u in &reg.redirect_uris {
            let parsed = url::Url::parse(u)
                .map_err(|_| IdentityError::InvalidRequest("invalid redirect URI".into()))?;
            let local = matches!(parsed.host_str(), Some("localhost" | "127.0.0.1" | "[::1]"));
            if parsed.fragment().is_some()
                || !(parsed.scheme() == "https"
                    || (parsed.scheme() == "http" && local)
                    || !matches!(parsed.scheme(), "http" | "https" | "javascript" | "data"))
            {
                return Err(IdentityError::InvalidRequest("redirect URIs must be https, loopback http, or an app scheme, without a fragment".into()));
            }
        }
        if kind != "backend" && reg.redirect_uris.is_empty() {
            return Err(IdentityError::InvalidRequest(
                "redirect_uris is required".into(),
            ));
        }
        if method == "private_key_jwt"
            && reg
                .jwks
                .as_ref()
                .and_then(|j| j.get("keys"))
                .and_then(Value::as_array)
                .is_none_or(Vec::is_empty)
        {
            return Err(IdentityError::InvalidRequest(
                "private_key_jwt needs a jwks with keys".into(),
            ));
        }
        let scope = reg.scope.clone().unwrap_or_default();
        let clinical = parse_scopes(&scope);
        if kind == "backend"
            && (clinical.is_empty() || clinical.iter().any(|s| s.context != ScopeContext::System))
        {
            return Err(IdentityError::InvalidRequest(
                "a backend client registers system/ scopes".into(),
            ));
        }
        let client_id = self.new_id();
        let secret = (kind == "confidential" && method.starts_with("client_secret"))
            .then(|| self.random_token(32));
        let rec = ClientRecord {
            client_id: client_id.clone(),
            name: if reg.client_name.is_empty() {
                "unnamed app".into()
            } else {
                reg.client_name.chars().take(100).collect()
            },
            kind: kind.into(),
            secret_hash: secret.as_deref().map(secret_digest),
            redirect_uris: reg.redirect_uris.clone(),
            jwks: reg.jwks.as_ref().map(ToString::to_string),
            scope: scope.clone(),
            created: self.clock.now_micros(),
        };
        self.store.insert_client(&rec).await?;
        let mut out = json!({
            "client_id": client_id,
            "client_name": rec.name,
            "redirect_uris": rec.redirect_uris,
            "token_endpoint_auth_method": method,
            "grant_types": if kind == "backend" { json!(["client_credentials"]) } else { json!(["authorization_code", "refresh_token"]) },
            "scope": scope,
        });
        if let Some(s) = secret {
            out["client_secret"] = json!(s);
        }
        Ok(out)
    }

    /// Validates an `/authorize` request. The redirect URI must match a registered one
    /// exactly before any error is redirected.
    ///
    /// # Errors
    /// [`AuthorizeError`].
    pub async fn authorize_request(
        &self,
        params: &std::collections::HashMap<String, String>,
        fhir_base: &str,
    ) -> Result<AuthorizeRequest, AuthorizeError> {
        let get = |k: &str| params.get(k).filter(|v| !v.is_empty()).cloned();
        let client_id =
            get("client_id").ok_or_else(|| AuthorizeError::Page("client_id is missing".into()))?;
        let client = self
            .store
            .client(&client_id)
            .await
            .ok()
            .flatten()
            .ok_or_else(|| AuthorizeError::Page("unknown client".into()))?;
        let redirect_uri = get("redirect_uri")
            .ok_or_else(|| AuthorizeError::Page("redirect_uri is missing".into()))?;
        if !client.redirect_uris.contains(&redirect_uri) {
            return Err(AuthorizeError::Page(
                "the redirect_uri does not match a registered one exactly".into(),
            ));
        }
        let state = get("state");
        let fail = |error: &'static str, description: &str| AuthorizeError::Redirect {
            redirect_uri: redirect_uri.clone(),
            error,
            description: description.into(),
            state: state.clone(),
        };
        if get("response_type").as_deref() != Some("code") {
            return Err(fail("unsupported_response_type", "only response_type=code"));
        }
        let code_challenge = get("code_challenge")
            .ok_or_else(|| fail("invalid_request", "PKCE code_challenge is required"))?;
        if get("code_challenge_method").as_deref() != Some("S256") {
            return Err(fail(
                "invalid_request",
                "code_challenge_method must be S256",
            ));
        }
        // SMART: `aud` names the FHIR server the token is for.
        if let Some(aud) = get("aud")
            && aud.trim_end_matches('/') != fhir_base.trim_end_matches('/')
        {
            return Err(fail("invalid_request", "aud is not this FHIR server"));
        }
        let scope: Vec<String> = get("scope")
            .unwrap_or_default()
            .split_whitespace()
            .map(str::to_string)
            .collect();
        if scope.is_empty() {
            return Err(fail("invalid_scope", "scope is required"));
        }
        Ok(AuthorizeRequest {
            client,
            redirect_uri,
            scope,
            state,
            code_challenge,
            nonce: get("nonce"),
            launch: get("launch").and_then(|l| self.verify_launch(&l)),
        })
    }

    /// The user approved (some of) the scopes: issues a code. Returns the redirect URL.
    ///
    /// # Errors
    /// [`IdentityError::InvalidScope`] when nothing usable is left.
    pub async fn approve(
        &self,
        user: &UserRecord,
        auth_time: i64,
        req: &AuthorizeRequest,
        approved: &[String],
        patient: Option<String>,
    ) -> Result<String, IdentityError> {
        // Only what was requested, cut to the role, and within the client's registration.
        let requested: Vec<String> = approved
            .iter()
            .filter(|s| req.scope.contains(s))
            .cloned()
            .collect();
        let mut scope = scopes_for_user(user, &requested);
        if !req.client.scope.trim().is_empty() {
            let allowed: Vec<String> = req
                .client
                .scope
                .split_whitespace()
                .map(str::to_string)
                .collect();
            let client_clinical = parse_scopes(&req.client.scope);
            scope.retain(|s| match Scope::parse(s) {
                Ok(sc) => narrow(std::slice::from_ref(&sc), &client_clinical).contains(&sc),
                Err(_) => allowed.contains(s) || s == "openid" || s == "fhirUser",
            });
        }
        // The patient context: a patient is their own; a practitioner picked one (the
        // consent issue decides which they may pick); an EHR launch brings one.
        let patient = match user.role.as_str() {
            "patient" => user.patient_id.clone(),
            // A launch context counts only for the user the portal made it for.
            _ => patient.or_else(|| {
                req.launch
                    .as_ref()
                    .filter(|l| l.user_id == user.id)
                    .map(|l| l.patient.clone())
            }),
        };
        let wants_patient = scope.iter().any(|s| s.starts_with("patient/"));
        if wants_patient && patient.is_none() {
            return Err(IdentityError::InvalidRequest(
                "patient scopes need a patient: pick one".into(),
            ));
        }
        if !scope.iter().any(|s| Scope::parse(s).is_ok()) && !scope.iter().any(|s| s == "openid") {
            return Err(IdentityError::InvalidScope);
        }
        let code = self.random_token(32);
        self.store
            .insert_code(&AuthCodeRecord {
                code_hash: secret_digest(&code),
                client_id: req.client.client_id.clone(),
                user_id: user.id.clone(),
                redirect_uri: req.redirect_uri.clone(),
                scope: scope.join(" "),
                patient: if wants_patient || user.role == "patient" {
                    patient
                } else {
                    None
                },
                code_challenge: req.code_challenge.clone(),
                nonce: req.nonce.clone(),
                auth_time,
                expires: self.now() + 60,
                used: false,
                family: self.new_id(),
            })
            .await?;
        let mut url = url::Url::parse(&req.redirect_uri).map_err(|_| IdentityError::Internal)?;
        url.query_pairs_mut().append_pair("code", &code);
        if let Some(s) = &req.state {
            url.query_pairs_mut().append_pair("state", s);
        }
        Ok(url.to_string())
    }

    /// Authenticates a client at the token, introspection or revocation endpoint.
    async fn authenticate_client(
        &self,
        auth: &ClientAuth,
        endpoint: &str,
    ) -> Result<ClientRecord, IdentityError> {
        if let Some(assertion) = &auth.assertion {
            if auth.assertion_type.as_deref() != Some(JWT_BEARER) {
                return Err(IdentityError::InvalidClient);
            }
            // The client is named by the assertion's iss and sub; read them before verifying
            // to find its keys, then verify everything.
            let claims = unverified_claims(assertion).ok_or(IdentityError::InvalidClient)?;
            let client_id = claims
                .get("iss")
                .and_then(Value::as_str)
                .ok_or(IdentityError::InvalidClient)?;
            let client = self
                .store
                .client(client_id)
                .await?
                .ok_or(IdentityError::InvalidClient)?;
            let jwks: Value = client
                .jwks
                .as_deref()
                .and_then(|j| serde_json::from_str(j).ok())
                .ok_or(IdentityError::InvalidClient)?;
            let verified = verify_with_jwks(
                assertion,
                &jwks,
                Some(client_id),
                endpoint,
                self.now(),
                self.config.token_times,
            )
            .map_err(|_| IdentityError::InvalidClient)?;
            let exp = verified
                .get("exp")
                .and_then(Value::as_i64)
                .ok_or(IdentityError::InvalidClient)?;
            let jti = verified
                .get("jti")
                .and_then(Value::as_str)
                .ok_or(IdentityError::InvalidClient)?;
            if verified.get("sub").and_then(Value::as_str) != Some(client_id)
                || exp > self.now() + 300
                || auth.client_id.as_deref().is_some_and(|c| c != client_id)
            {
                return Err(IdentityError::InvalidClient);
            }
            // Each assertion is used once.
            if !self
                .store
                .claim_assertion_jti(&format!("{client_id}:{jti}"), exp)
                .await?
            {
                return Err(IdentityError::InvalidClient);
            }
            return Ok(client);
        }
        let client_id = auth
            .client_id
            .as_deref()
            .ok_or(IdentityError::InvalidClient)?;
        let client = self
            .store
            .client(client_id)
            .await?
            .ok_or(IdentityError::InvalidClient)?;
        match (&client.secret_hash, &auth.client_secret) {
            (Some(h), Some(s)) if *h == secret_digest(s) => Ok(client),
            (None, None) if client.kind == "public" => Ok(client),
            _ => Err(IdentityError::InvalidClient),
        }
    }

    /// The token endpoint.
    ///
    /// # Errors
    /// OAuth errors as [`IdentityError`].
    pub async fn token(
        &self,
        form: &std::collections::HashMap<String, String>,
        auth: &ClientAuth,
        token_endpoint: &str,
    ) -> Result<TokenResponse, IdentityError> {
        let get = |k: &str| form.get(k).filter(|v| !v.is_empty()).cloned();
        let client = self.authenticate_client(auth, token_endpoint).await?;
        match get("grant_type").as_deref() {
            Some("authorization_code") => {
                let code = get("code").ok_or(IdentityError::InvalidGrant)?;
                let rec = self
                    .store
                    .take_code(&secret_digest(&code))
                    .await?
                    .ok_or(IdentityError::InvalidGrant)?;
                if rec.used {
                    // A replayed code: revoke what it produced (RFC 6749 section 4.1.2).
                    tracing::warn!(client_id = %rec.client_id, "authorization code replayed; revoking its tokens");
                    self.store.revoke_family(&rec.family).await?;
                    return Err(IdentityError::InvalidGrant);
                }
                let verifier = get("code_verifier").unwrap_or_default();
                if rec.client_id != client.client_id
                    || rec.expires < self.now()
                    || get("redirect_uri").as_deref() != Some(rec.redirect_uri.as_str())
                    || !pkce_s256_matches(&verifier, &rec.code_challenge)
                {
                    return Err(IdentityError::InvalidGrant);
                }
                let user = self
                    .store
                    .user_by_id(&rec.user_id)
                    .await?
                    .filter(|u| !u.disabled)
                    .ok_or(IdentityError::InvalidGrant)?;
                self.issue(
                    &client,
                    &user,
                    &rec.scope,
                    rec.patient.clone(),
                    rec.nonce.clone(),
                    rec.auth_time,
                    &rec.family,
                )
                .await
            }
            Some("refresh_token") => {
                let token = get("refresh_token").ok_or(IdentityError::InvalidGrant)?;
                let rec = self
                    .store
                    .take_refresh(&secret_digest(&token))
                    .await?
                    .ok_or(IdentityError::InvalidGrant)?;
                if rec.used && !rec.revoked {
                    // Reuse of a rotated token: someone holds a copy. End the whole family.
                    tracing::warn!(client_id = %rec.client_id, "refresh token reused; revoking its family");
                    self.store.revoke_family(&rec.family).await?;
                    return Err(IdentityError::InvalidGrant);
                }
                if rec.used
                    || rec.revoked
                    || rec.expires < self.now()
                    || rec.client_id != client.client_id
                {
                    return Err(IdentityError::InvalidGrant);
                }
                let user = self
                    .store
                    .user_by_id(&rec.user_id)
                    .await?
                    .filter(|u| !u.disabled)
                    .ok_or(IdentityError::InvalidGrant)?;
                let granted: Vec<&str> = rec.scope.split_whitespace().collect();
                let scope = match get("scope") {
                    // A refresh may narrow the scope, never widen it.
                    Some(s) => {
                        if s.split_whitespace().any(|t| !granted.contains(&t)) {
                            return Err(IdentityError::InvalidScope);
                        }
                        s
                    }
                    None => rec.scope.clone(),
                };
                // Scopes are re-cut to the role as it is now (a suspended practitioner loses them).
                let scope = scopes_for_user(
                    &user,
                    &scope
                        .split_whitespace()
                        .map(str::to_string)
                        .collect::<Vec<_>>(),
                )
                .join(" ");
                self.issue(
                    &client,
                    &user,
                    &scope,
                    rec.patient.clone(),
                    None,
                    rec.auth_time,
                    &rec.family,
                )
                .await
            }
            Some("client_credentials") => {
                if client.kind != "backend" || auth.assertion.is_none() {
                    return Err(IdentityError::InvalidClient);
                }
                let requested = parse_scopes(&get("scope").unwrap_or_default());
                let allowed = parse_scopes(&client.scope);
                let scope: Vec<String> = narrow(&requested, &allowed)
                    .iter()
                    .map(ToString::to_string)
                    .collect();
                if scope.is_empty()
                    || requested.len() != scope.len() && narrow(&requested, &allowed) != requested
                {
                    return Err(IdentityError::InvalidScope);
                }
                let grant = IssuedGrant {
                    subject: client.client_id.clone(),
                    scope: scope.join(" "),
                    patient: None,
                    role: None,
                    client_id: Some(client.client_id.clone()),
                    fhir_user: None,
                    ttl: None,
                };
                let (access_token, _) = self.mint_access(&grant)?;
                Ok(TokenResponse {
                    access_token,
                    token_type: "Bearer",
                    expires_in: self.config.access_ttl,
                    scope: grant.scope,
                    refresh_token: None,
                    id_token: None,
                    patient: None,
                    fhir_user: None,
                })
            }
            _ => Err(IdentityError::UnsupportedGrantType),
        }
    }

    #[allow(clippy::too_many_arguments)] // one token response needs each of these
    async fn issue(
        &self,
        client: &ClientRecord,
        user: &UserRecord,
        scope: &str,
        patient: Option<String>,
        nonce: Option<String>,
        auth_time: i64,
        family: &str,
    ) -> Result<TokenResponse, IdentityError> {
        let tokens: Vec<&str> = scope.split_whitespace().collect();
        let fhir_user = tokens
            .contains(&"fhirUser")
            .then(|| fhir_user_of(user))
            .flatten();
        let grant = IssuedGrant {
            subject: user.id.clone(),
            scope: scope.to_string(),
            patient: patient.clone(),
            role: Some(user.role.clone()),
            client_id: Some(client.client_id.clone()),
            fhir_user: fhir_user.clone(),
            ttl: None,
        };
        let (access_token, _) = self.mint_access(&grant)?;
        let now = self.now();
        let refresh_ttl = if tokens.contains(&"offline_access") {
            Some(self.config.offline_ttl)
        } else if tokens.contains(&"online_access") {
            Some(self.config.online_ttl)
        } else {
            None
        };
        let refresh_token = match refresh_ttl {
            Some(ttl) => {
                let t = self.random_token(32);
                let rec = RefreshRecord {
                    token_hash: secret_digest(&t),
                    family: family.to_string(),
                    client_id: client.client_id.clone(),
                    user_id: user.id.clone(),
                    scope: scope.to_string(),
                    patient: patient.clone(),
                    // online_access ends with the login that granted it.
                    expires: if tokens.contains(&"offline_access") {
                        now + ttl
                    } else {
                        (auth_time + ttl).max(now)
                    },
                    used: false,
                    revoked: false,
                    auth_time,
                };
                match self.store.insert_refresh(&rec).await {
                    Err(StoreError::Conflict) => return Err(IdentityError::Internal),
                    other => other?,
                }
                Some(t)
            }
            None => None,
        };
        let id_token = if tokens.contains(&"openid") {
            Some(self.sign(&IdTokenClaims {
                iss: self.config.issuer.clone(),
                sub: user.id.clone(),
                aud: client.client_id.clone(),
                exp: now + self.config.access_ttl,
                iat: now,
                auth_time,
                nonce,
                fhir_user: fhir_user.clone(),
                preferred_username: tokens.contains(&"profile").then(|| user.username.clone()),
            })?)
        } else {
            None
        };
        Ok(TokenResponse {
            access_token,
            token_type: "Bearer",
            expires_in: self.config.access_ttl,
            scope: scope.to_string(),
            refresh_token,
            id_token,
            patient,
            fhir_user,
        })
    }

    /// Token introspection (RFC 7662), for authenticated clients.
    ///
    /// # Errors
    /// [`IdentityError::InvalidClient`].
    pub async fn introspect(
        &self,
        token: &str,
        auth: &ClientAuth,
        endpoint: &str,
    ) -> Result<Value, IdentityError> {
        let client = self.authenticate_client(auth, endpoint).await?;
        if client.kind == "public" {
            return Err(IdentityError::InvalidClient);
        }
        if let Ok(c) = self.verify_access(token) {
            let mut v = json!({"active": true, "scope": c.scope, "sub": c.sub, "exp": c.exp, "iat": c.iat, "iss": c.iss, "aud": c.aud, "token_type": "Bearer", "jti": c.jti});
            if let Some(p) = c.patient {
                v["patient"] = json!(p);
            }
            if let Some(id) = c.client_id {
                v["client_id"] = json!(id);
            }
            if let Some(f) = c.fhir_user {
                v["fhirUser"] = json!(f);
            }
            return Ok(v);
        }
        if let Some(r) = self.store.refresh(&secret_digest(token)).await?
            && !r.used
            && !r.revoked
            && r.expires >= self.now()
        {
            return Ok(
                json!({"active": true, "scope": r.scope, "sub": r.user_id, "exp": r.expires, "client_id": r.client_id, "token_type": "refresh_token"}),
            );
        }
        Ok(json!({"active": false}))
    }

    /// Token revocation (RFC 7009). Unknown tokens succeed silently, as the RFC says.
    ///
    /// # Errors
    /// [`IdentityError::InvalidClient`].
    pub async fn revoke(
        &self,
        token: &str,
        auth: &ClientAuth,
        endpoint: &str,
    ) -> Result<(), IdentityError> {
        let client = self.authenticate_client(auth, endpoint).await?;
        if let Some(r) = self.store.refresh(&secret_digest(token)).await? {
            if r.client_id == client.client_id {
                self.store.revoke_family(&r.family).await?;
            }
            return Ok(());
        }
        if let Ok(c) = self.verify_access(token)
            && c.client_id.as_deref() == Some(client.client_id.as_str())
        {
            self.revoke_access(&c.jti, c.exp).await?;
        }
        Ok(())
    }

    /// Makes an EHR launch context (the portal's "open this app for this patient"). It is a
    /// short-lived token signed by the node, opaque to the app.
    ///
    /// # Errors
    /// When signing fails.
    pub fn make_launch(&self, user: &UserRecord, patient: &str) -> Result<String, IdentityError> {
        self.sign(&LaunchContext {
            user_id: user.id.clone(),
            patient: patient.to_string(),
            exp: self.now() + 300,
            aud: LAUNCH_AUDIENCE.into(),
            iss: self.config.issuer.clone(),
        })
    }

    fn verify_launch(&self, launch: &str) -> Option<LaunchContext> {
        let jwks = self.jwks();
        let claims = verify_with_jwks(
            launch,
            &jwks,
            Some(&self.config.issuer),
            LAUNCH_AUDIENCE,
            self.now(),
            self.config.token_times,
        )
        .ok()?;
        serde_json::from_value(claims).ok()
    }

    /// What both discovery documents say: the issuer, the endpoints, and how clients
    /// authenticate and prove possession.
    fn discovery_common(&self) -> Value {
        let i = self.config.issuer.trim_end_matches('/');
        json!({
            "issuer": i,
            "jwks_uri": format!("{i}/oauth/jwks"),
            "authorization_endpoint": format!("{i}/oauth/authorize"),
            "token_endpoint": format!("{i}/oauth/token"),
            "introspection_endpoint": format!("{i}/oauth/introspect"),
            "revocation_endpoint": format!("{i}/oauth/revoke"),
            "registration_endpoint": format!("{i}/oauth/register"),
            "token_endpoint_auth_methods_supported": ["none", "client_secret_basic", "client_secret_post", "private_key_jwt"],
            "response_types_supported": ["code"],
            "code_challenge_methods_supported": ["S256"],
        })
    }

    fn discovery_with(&self, specific: Value) -> Value {
        let mut doc = self.discovery_common();
        if let (Some(d), Value::Object(extra)) = (doc.as_object_mut(), specific) {
            d.extend(extra);
        }
        doc
    }

    /// `/.well-known/smart-configuration`.
    pub fn smart_configuration(&self) -> Value {
        self.discovery_with(json!({
            "grant_types_supported": ["authorization_code", "refresh_token", "client_credentials"],
            "token_endpoint_auth_signing_alg_values_supported": ["RS256", "RS384", "PS256", "PS384", "ES256", "ES384", "EdDSA"],
            "scopes_supported": ["openid", "fhirUser", "profile", "launch", "launch/patient", "offline_access", "online_access",
                                 "patient/*.cruds", "user/*.cruds", "system/*.cruds", "patient/*.read", "user/*.read", "system/*.read"],
            "capabilities": ["launch-ehr", "launch-standalone", "client-public", "client-confidential-symmetric",
                             "client-confidential-asymmetric", "context-ehr-patient", "context-standalone-patient",
                             "permission-offline", "permission-online", "permission-patient", "permission-user",
                             "permission-v1", "permission-v2", "sso-openid-connect", "authorize-post"],
        }))
    }

    /// `/.well-known/openid-configuration`.
    pub fn openid_configuration(&self) -> Value {
        self.discovery_with(json!({
            "subject_types_supported": ["public"],
            "id_token_signing_alg_values_supported": ["EdDSA"],
            "scopes_supported": ["openid", "fhirUser", "profile", "offline_access", "online_access"],
            "claims_supported": ["sub", "iss", "aud", "exp", "iat", "auth_time", "nonce", "fhirUser", "preferred_username"],
        }))
    }
}
