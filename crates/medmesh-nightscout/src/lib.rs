//! Pulls a patient's device data from their Nightscout site (cgm-remote-monitor, API v1),
//! the adapter behind [`medmesh_devices::RemoteConnector`].
//!
//! For each window the service asks for, it reads `GET /api/v1/entries.json` by `date`
//! (epoch milliseconds) and `GET /api/v1/treatments.json` by `created_at` (ISO 8601), each
//! with `find[...][$gte]`, `find[...][$lt]` and `count`, then page by page towards the
//! window's start until a page brings nothing new, so no reading is lost to the site's or a
//! proxy's page size. The profile
//! (`/api/v1/profile.json`) is read once. The answer is one JSON array, which the
//! Nightscout reader in `medmesh-device-import` reads like a downloaded file.
//!
//! Authentication is Nightscout's: the `API_SECRET` is sent as its SHA-1 in the
//! `api-secret` header (a value already 40 hex digits is taken as that hash), and an access
//! token as the `token` query parameter. Every request goes through the node's guarded
//! outbound client (`medmesh-outbound`): `https` to public addresses unless the node allows
//! its own networks, no redirects, 60 s per request, 64 MiB per answer. Errors name what
//! went wrong, never the URL, the credential or the data.

use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use jiff::Timestamp;
use medmesh_device_import::Format;
use medmesh_devices::{RemoteConnector, RemoteCredential, RemoteError, RemoteSource};
use medmesh_outbound::{OutboundPolicy, OutboundSetupError, ReadError};
use serde_json::Value;
use sha1::{Digest, Sha1};

/// Documents asked for per request (`count`).
pub const PAGE: usize = 10_000;
/// The largest answer read.
pub const MAX_ANSWER_BYTES: usize = 64 * 1024 * 1024;
/// Requests one collection may take per window (past this, the window is refused).
pub const MAX_REQUESTS_PER_WINDOW: usize = 64;

/// Opens Nightscout sites under the node's outbound policy, over one HTTP client.
#[derive(Debug, Clone)]
pub struct NightscoutConnector {
    client: medmesh_outbound::reqwest::Client,
    allow_internal: bool,
}

impl NightscoutConnector {
    /// A connector; with `allow_internal`, also `http` and the node's own networks (a site
    /// on the same host or intranet, and tests).
    ///
    /// # Errors
    /// [`OutboundSetupError`] when the HTTP client cannot be built.
    pub fn new(allow_internal: bool) -> Result<Self, OutboundSetupError> {
        let client = medmesh_outbound::client(&OutboundPolicy {
            allow_internal,
            user_agent: "medmesh-nightscout",
            connect_timeout: Duration::from_secs(10),
            timeout: Duration::from_secs(60),
        })?;
        Ok(Self {
            client,
            allow_internal,
        })
    }

    /// The site at `url` (its base; a path such as `/ns/` is kept, a `?token=` in the URL
    /// is taken as the token when no credential is given).
    ///
    /// # Errors
    /// [`RemoteError::NotAllowed`] when the URL breaks the outbound policy.
    pub fn site(
        &self,
        url: &str,
        credential: RemoteCredential,
    ) -> Result<NightscoutSite, RemoteError> {
        let mut base = medmesh_outbound::check_url(url.trim(), self.allow_internal)
            .map_err(|e| RemoteError::NotAllowed(e.to_string()))?;
        let in_url = base
            .query_pairs()
            .find(|(k, _)| k == "token")
            .map(|(_, v)| v.into_owned());
        let credential = match (credential, in_url) {
            (RemoteCredential::None, Some(token)) if !token.is_empty() => {
                RemoteCredential::Token(token)
            }
            (given, _) => given,
        };
        base.set_query(None);
        base.set_fragment(None);
        if !base.path().ends_with('/') {
            let path = format!("{}/", base.path());
            base.set_path(&path);
        }
        Ok(NightscoutSite {
            client: self.client.clone(),
            base,
            credential,
            profile_read: AtomicBool::new(false),
        })
    }
}

impl RemoteConnector for NightscoutConnector {
    fn nightscout(
        &self,
        url: &str,
        credential: RemoteCredential,
    ) -> Result<Box<dyn RemoteSource>, RemoteError> {
        Ok(Box::new(self.site(url, credential)?))
    }
}

/// One Nightscout site.
pub struct NightscoutSite {
    client: medmesh_outbound::reqwest::Client,
    base: url::Url,
    credential: RemoteCredential,
    profile_read: AtomicBool,
}

impl std::fmt::Debug for NightscoutSite {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("NightscoutSite")
            .field("credential", &self.credential)
            .finish_non_exhaustive()
    }
}

/// The SHA-1 Nightscout expects in `api-secret`; a value that already is one is kept.
pub fn api_secret_header(secret: &str) -> String {
    let s = secret.trim();
    if s.len() == 40 && s.bytes().all(|b| b.is_ascii_hexdigit()) {
        return s.to_ascii_lowercase();
    }
    hex::encode(Sha1::digest(s.as_bytes()))
}

impl NightscoutSite {
    /// `GET path?query` as a JSON list. `missing_ok`: a 404 is an empty list (a site
    /// without that collection).
    async fn list(
        &self,
        path: &str,
        query: &[(String, String)],
        missing_ok: bool,
    ) -> Result<Vec<Value>, RemoteError> {
        let mut url = self
            .base
            .join(path)
            .map_err(|_| RemoteError::NotAllowed("not a URL".into()))?;
        {
            let mut pairs = url.query_pairs_mut();
            for (k, v) in query {
                pairs.append_pair(k, v);
            }
            if let RemoteCredential::Token(token) = &self.credential {
                pairs.append_pair("token", token);
            }
        }
        let mut request = self.client.get(url).header("accept", "application/json");
        if let RemoteCredential::ApiSecret(secret) = &self.credential {
            request = request.header("api-secret", api_secret_header(secret));
        }
        let answer = request.send().await.map_err(|_| RemoteError::Unreachable)?;
        let status = answer.status().as_u16();
        match status {
            200..=299 => {}
            401 | 403 => return Err(RemoteError::Refused),
            404 if missing_ok => return Ok(Vec::new()),
            404 => return Err(RemoteError::NotTheService(format!("no {path}"))),
            500..=599 => return Err(RemoteError::Unreachable),
            other => {
                return Err(RemoteError::NotTheService(format!(
                    "{path} answered {other}"
                )));
            }
        }
        let body = medmesh_outbound::read_bounded(answer, MAX_ANSWER_BYTES)
            .await
            .map_err(|e| match e {
                ReadError::TooLarge => RemoteError::TooLarge,
                ReadError::Transport => RemoteError::Unreachable,
            })?;
        match serde_json::from_slice::<Value>(&body) {
            Ok(Value::Array(items)) => Ok(items),
            _ => Err(RemoteError::NotTheService(format!(
                "{path} is not a JSON list"
            ))),
        }
    }

    /// Every document of a collection with `field` in `[from, to)`. Nightscout answers
    /// newest first, up to `count`, and a site (or a proxy before it) may answer fewer than
    /// asked; so each next page ends at the oldest document seen (inclusive, as several
    /// may share it), and the reading stops at the first page with nothing new.
    async fn collection(
        &self,
        path: &str,
        field: &str,
        from: Timestamp,
        to: Timestamp,
        bound: fn(Timestamp) -> String,
        missing_ok: bool,
    ) -> Result<Vec<Value>, RemoteError> {
        let mut found = Vec::new();
        let mut seen = std::collections::HashSet::new();
        let mut upper = ("$lt", bound(to));
        for _ in 0..MAX_REQUESTS_PER_WINDOW {
            let query = [
                (format!("find[{field}][$gte]"), bound(from)),
                (format!("find[{field}][{}]", upper.0), upper.1.clone()),
                ("count".to_owned(), PAGE.to_string()),
            ];
            let items = self.list(path, &query, missing_ok).await?;
            let mut oldest: Option<Value> = None;
            let mut new = 0usize;
            for item in items {
                let key = match item.get("_id") {
                    Some(id) => id.to_string(),
                    None => item.to_string(),
                };
                if let Some(v) = item.get(field)
                    && oldest.as_ref().is_none_or(|o| older(v, o))
                {
                    oldest = Some(v.clone());
                }
                if seen.insert(key) {
                    new += 1;
                    found.push(item);
                }
            }
            let next = oldest.and_then(|v| match v {
                Value::Number(n) => Some(n.to_string()),
                Value::String(s) => Some(s),
                _ => None,
            });
            match next {
                Some(next) if new > 0 => upper = ("$lte", next),
                _ => return Ok(found),
            }
        }
        Err(RemoteError::TooLarge)
    }
}

/// Whether `a` sorts before `b` as Nightscout stores them (numbers, or ISO strings).
fn older(a: &Value, b: &Value) -> bool {
    match (a, b) {
        (Value::Number(x), Value::Number(y)) => {
            x.as_f64().unwrap_or(f64::MAX) < y.as_f64().unwrap_or(f64::MAX)
        }
        (Value::String(x), Value::String(y)) => x < y,
        _ => false,
    }
}

fn epoch_ms(at: Timestamp) -> String {
    at.as_millisecond().to_string()
}

fn iso(at: Timestamp) -> String {
    at.strftime("%Y-%m-%dT%H:%M:%S%.3fZ").to_string()
}

#[async_trait::async_trait]
impl RemoteSource for NightscoutSite {
    fn format(&self) -> Format {
        Format::Nightscout
    }

    async fn fetch(&self, from: Timestamp, to: Timestamp) -> Result<Option<Vec<u8>>, RemoteError> {
        let mut items = self
            .collection("api/v1/entries.json", "date", from, to, epoch_ms, false)
            .await?;
        items.extend(
            self.collection("api/v1/treatments.json", "created_at", from, to, iso, true)
                .await?,
        );
        if items.is_empty() {
            return Ok(None);
        }
        if !self.profile_read.swap(true, Ordering::Relaxed) {
            items.extend(self.list("api/v1/profile.json", &[], true).await?);
        }
        serde_json::to_vec(&Value::Array(items))
            .map(Some)
            .map_err(|_| RemoteError::TooLarge)
    }
}

#[cfg(feature = "stand-in")]
pub mod stand_in;

#[cfg(test)]
mod tests;
