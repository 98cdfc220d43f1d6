//! The HTTP side of external OpenID Connect: discovery, the browser code flow with PKCE,
//! state and nonce, the token exchange, and JWKS fetching (cached) to verify the provider's
//! id tokens and, where configured, its access tokens on the FHIR API.

use std::collections::HashMap;
use std::sync::RwLock;

use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Redirect, Response};
use base64::Engine;
use medmesh_identity::IdentityService;
use medmesh_identity::external::{ExternalActor, ExternalProvider};
use serde_json::{Value, json};
use sha2::Digest;

use crate::AppState;
use crate::web::{ClientIp, SESSION_COOKIE, cookie, notice, set_cookie_at};

/// The short-lived cookie that carries state, nonce and PKCE verifier across the redirect.
const FLOW_COOKIE: &str = "medmesh_oidc";

#[derive(Default)]
struct Cached {
    metadata: Option<(Value, i64)>,
    jwks: Option<(Value, i64)>,
}

struct Provider {
    config: ExternalProvider,
    cache: RwLock<Cached>,
}

/// Configured providers and an HTTP client to reach them.
pub struct ExternalLogin {
    providers: Vec<Provider>,
    http: reqwest::Client,
    token_times: medmesh_auth::token::TokenTimes,
    clock: std::sync::Arc<dyn medmesh_kernel::Clock>,
}

/// A provider could not be reached or answered nonsense. Logged; users see a generic page.
#[derive(Debug, thiserror::Error)]
#[error("identity provider error: {0}")]
pub struct ProviderError(String);

impl ExternalLogin {
    fn now(&self) -> i64 {
        self.clock.now_secs()
    }

    /// Wraps the configured providers.
    pub fn new(
        providers: Vec<ExternalProvider>,
        token_times: medmesh_auth::token::TokenTimes,
        clock: std::sync::Arc<dyn medmesh_kernel::Clock>,
    ) -> Self {
        Self {
            token_times,
            clock,
            providers: providers
                .into_iter()
                .map(|config| Provider {
                    config,
                    cache: RwLock::new(Cached::default()),
                })
                .collect(),
            http: reqwest::Client::builder()
                .timeout(std::time::Duration::from_secs(10))
                .build()
                .unwrap_or_default(),
        }
    }

    /// `(id, name)` of each provider, for the login page.
    pub fn list(&self) -> Vec<(String, String)> {
        self.providers
            .iter()
            .map(|p| (p.config.id.clone(), p.config.name.clone()))
            .collect()
    }

    fn get(&self, id: &str) -> Option<&Provider> {
        self.providers.iter().find(|p| p.config.id == id)
    }

    async fn fetch_json(&self, url: &str) -> Result<Value, ProviderError> {
        let r = self
            .http
            .get(url)
            .send()
            .await
            .map_err(|e| ProviderError(e.to_string()))?;
        if !r.status().is_success() {
            return Err(ProviderError(format!("{url} answered {}", r.status())));
        }
        r.json().await.map_err(|e| ProviderError(e.to_string()))
    }

    /// Discovery, cached for an hour.
    async fn metadata(&self, p: &Provider) -> Result<Value, ProviderError> {
        if let Ok(c) = p.cache.read()
            && let Some((m, at)) = &c.metadata
            && self.now() - at < 3600
        {
            return Ok(m.clone());
        }
        let url = format!(
            "{}/.well-known/openid-configuration",
            p.config.issuer.trim_end_matches('/')
        );
        let m = self.fetch_json(&url).await?;
        if m.get("issuer").and_then(Value::as_str) != Some(p.config.issuer.trim_end_matches('/')) {
            return Err(ProviderError("discovery names another issuer".into()));
        }
        if let Ok(mut c) = p.cache.write() {
            c.metadata = Some((m.clone(), self.now()));
        }
        Ok(m)
    }

    /// The provider's keys, cached five minutes. `fresh` asks for a reload (a rotated key),
    /// at most every 30 seconds, so tokens with bad signatures cannot make the node hammer
    /// the provider.
    async fn jwks(&self, p: &Provider, fresh: bool) -> Result<Value, ProviderError> {
        let max_age = if fresh { 30 } else { 300 };
        if let Ok(c) = p.cache.read()
            && let Some((k, at)) = &c.jwks
            && self.now() - at < max_age
        {
            return Ok(k.clone());
        }
        let m = self.metadata(p).await?;
        let url = m
            .get("jwks_uri")
            .and_then(Value::as_str)
            .ok_or_else(|| ProviderError("no jwks_uri".into()))?;
        let k = self.fetch_json(url).await?;
        if let Ok(mut c) = p.cache.write() {
            c.jwks = Some((k.clone(), self.now()));
        }
        Ok(k)
    }

    /// Verifies a provider-signed JWT, reloading the keys once on failure.
    async fn verify(&self, p: &Provider, token: &str, audience: &str) -> Option<Value> {
        for fresh in [false, true] {
            let keys = self.jwks(p, fresh).await.ok()?;
            if let Ok(c) = medmesh_auth::token::verify_with_jwks(
                token,
                &keys,
                Some(p.config.issuer.trim_end_matches('/')),
                audience,
                self.now(),
                self.token_times,
            ) {
                return Some(c);
            }
        }
        None
    }

    /// An access token from a provider configured for API use, as an actor.
    pub async fn api_actor(
        &self,
        identity: &IdentityService,
        token: &str,
    ) -> Option<ExternalActor> {
        // Peek at the unverified issuer only to pick the provider; everything is verified.
        let claims = medmesh_auth::token::unverified_claims(token)?;
        let iss = claims.get("iss").and_then(Value::as_str)?;
        let p = self
            .providers
            .iter()
            .find(|p| p.config.issuer.trim_end_matches('/') == iss.trim_end_matches('/'))?;
        let audience = p.config.api_audience.as_deref()?;
        let verified = self.verify(p, token, audience).await?;
        identity.external_actor(&p.config, &verified).await.ok()
    }
}

fn b64(bytes: &[u8]) -> String {
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes)
}

fn callback_url(state: &AppState, headers: &HeaderMap, id: &str) -> String {
    let base = state.fhir_base(headers);
    format!(
        "{}/login/external/{id}/callback",
        base.trim_end_matches('/').trim_end_matches("/fhir")
    )
}

fn failure(e: &dyn std::fmt::Display) -> Response {
    tracing::warn!(error = %e, "external sign-in failed");
    notice(
        StatusCode::BAD_GATEWAY,
        "external-failed",
        Vec::new(),
        "Sign-in failed",
        "The identity provider could not complete the sign-in. Try again, or sign in with your medmesh password.",
    )
}

/// `GET /login/external/{id}`: off to the provider.
pub async fn start(
    State(state): State<AppState>,
    headers: HeaderMap,
    Path(id): Path<String>,
    Query(q): Query<HashMap<String, String>>,
) -> Response {
    let Some(p) = state.external.get(&id) else {
        return notice(
            StatusCode::NOT_FOUND,
            "external-unknown",
            Vec::new(),
            "Unknown provider",
            "There is no such sign-in provider.",
        );
    };
    let meta = match state.external.metadata(p).await {
        Ok(m) => m,
        Err(e) => return failure(&e),
    };
    let Some(authorize) = meta.get("authorization_endpoint").and_then(Value::as_str) else {
        return failure(&"no authorization_endpoint");
    };
    let (st, nonce, verifier) = (
        state.identity.new_csrf_token(),
        state.identity.new_csrf_token(),
        format!(
            "{}{}",
            state.identity.new_csrf_token(),
            state.identity.new_csrf_token()
        ),
    );
    let next = q
        .get("next")
        .filter(|n| n.starts_with('/') && !n.starts_with("//"))
        .cloned()
        .unwrap_or_else(|| "/account/sessions".into());
    let Ok(mut url) = url::Url::parse(authorize) else {
        return failure(&"bad authorization_endpoint");
    };
    url.query_pairs_mut()
        .append_pair("response_type", "code")
        .append_pair("client_id", &p.config.client_id)
        .append_pair("redirect_uri", &callback_url(&state, &headers, &id))
        .append_pair("scope", "openid profile")
        .append_pair("state", &st)
        .append_pair("nonce", &nonce)
        .append_pair(
            "code_challenge",
            &b64(&sha2::Sha256::digest(verifier.as_bytes())),
        )
        .append_pair("code_challenge_method", "S256");
    let flow = b64(
        json!({"state": st, "nonce": nonce, "verifier": verifier, "next": next})
            .to_string()
            .as_bytes(),
    );
    let mut r = Redirect::to(url.as_str()).into_response();
    let (k, v) = set_cookie_at(FLOW_COOKIE, &flow, "/login/external", 600);
    r.headers_mut().append(k, v);
    r
}

/// `GET /login/external/{id}/callback`: code for tokens, id token verified, signed in.
pub async fn callback(
    State(state): State<AppState>,
    headers: HeaderMap,
    ClientIp(ip): ClientIp,
    Path(id): Path<String>,
    Query(q): Query<HashMap<String, String>>,
) -> Response {
    let Some(p) = state.external.get(&id) else {
        return notice(
            StatusCode::NOT_FOUND,
            "external-unknown",
            Vec::new(),
            "Unknown provider",
            "There is no such sign-in provider.",
        );
    };
    let flow: Option<Value> = cookie(&headers, FLOW_COOKIE)
        .and_then(|c| {
            base64::engine::general_purpose::URL_SAFE_NO_PAD
                .decode(c)
                .ok()
        })
        .and_then(|b| serde_json::from_slice(&b).ok());
    let Some(flow) = flow else {
        return notice(
            StatusCode::BAD_REQUEST,
            "external-expired",
            Vec::new(),
            "Sign-in failed",
            "The sign-in took too long or did not start here. Start again.",
        );
    };
    let field = |k: &str| {
        flow.get(k)
            .and_then(Value::as_str)
            .unwrap_or_default()
            .to_string()
    };
    // The state ties the answer to this browser's request (login CSRF).
    if q.get("state").map(String::as_str) != Some(field("state").as_str())
        || field("state").is_empty()
    {
        return notice(
            StatusCode::FORBIDDEN,
            "external-mismatch",
            Vec::new(),
            "Sign-in failed",
            "The answer from the provider does not match this sign-in. Start again.",
        );
    }
    let Some(code) = q.get("code") else {
        return notice(
            StatusCode::UNAUTHORIZED,
            "external-cancelled",
            Vec::new(),
            "Sign-in cancelled",
            "The provider did not sign you in.",
        );
    };
    let meta = match state.external.metadata(p).await {
        Ok(m) => m,
        Err(e) => return failure(&e),
    };
    let Some(token_url) = meta.get("token_endpoint").and_then(Value::as_str) else {
        return failure(&"no token_endpoint");
    };
    let redirect_uri = callback_url(&state, &headers, &id);
    let verifier = field("verifier");
    let form = [
        ("grant_type", "authorization_code"),
        ("code", code.as_str()),
        ("redirect_uri", redirect_uri.as_str()),
        ("code_verifier", verifier.as_str()),
    ];
    let resp = state
        .external
        .http
        .post(token_url)
        .basic_auth(&p.config.client_id, Some(&p.config.client_secret))
        .form(&form)
        .send()
        .await;
    let tokens: Value = match resp {
        Ok(r) if r.status().is_success() => r.json().await.unwrap_or_default(),
        Ok(r) => return failure(&format!("token endpoint answered {}", r.status())),
        Err(e) => return failure(&e),
    };
    let Some(id_token) = tokens.get("id_token").and_then(Value::as_str) else {
        return failure(&"no id_token");
    };
    let Some(claims) = state
        .external
        .verify(p, id_token, &p.config.client_id)
        .await
    else {
        return failure(&"the id_token did not verify");
    };
    if claims.get("nonce").and_then(Value::as_str) != Some(field("nonce").as_str()) {
        return failure(&"nonce mismatch");
    }
    let ua = crate::web::user_agent(&headers);
    match state
        .identity
        .external_login(&p.config, &claims, &ip, ua)
        .await
    {
        Ok(session) => {
            let mut r = Redirect::to(&field("next")).into_response();
            let ttl = state.identity.config().session_ttl;
            for (k, v) in [
                set_cookie_at(SESSION_COOKIE, &session, "/", ttl),
                set_cookie_at(FLOW_COOKIE, "", "/login/external", 0),
            ] {
                r.headers_mut().append(k, v);
            }
            r
        }
        Err(medmesh_identity::IdentityError::Forbidden) => notice(
            StatusCode::FORBIDDEN,
            "external-no-role",
            Vec::new(),
            "No access",
            "Your account at the provider has no role that this node recognises.",
        ),
        Err(e) => crate::web::PageError::from(e).into_response(),
    }
}
