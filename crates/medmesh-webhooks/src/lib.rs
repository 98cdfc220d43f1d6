//! Webhooks for the notification hub ([`medmesh_notifications::WebhookSender`]), as the
//! Standard Webhooks spec (<https://www.standardwebhooks.com/>) says: a JSON body POSTed
//! with `webhook-id`, `webhook-timestamp` and `webhook-signature` (`v1,` and the Base64
//! HMAC-SHA256 of `id.timestamp.body` under the secret, `whsec_` and Base64).
//!
//! A user chooses where the node sends, so it goes through [`medmesh_outbound`]: by default
//! only `https` to public addresses, checked on the URL and again on every address the name
//! resolves to; no redirects; each request bounded in time.

use std::time::Duration;

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use hmac::{Hmac, KeyInit, Mac};
use medmesh_notifications::{SendError, WebhookSender};
use medmesh_outbound::reqwest as reqwest13;
use medmesh_outbound::{OutboundPolicy, UrlRefusal};
use sha2::Sha256;

/// Why the sender could not be set up.
#[derive(Debug, thiserror::Error)]
#[error("the webhook client could not be built")]
pub struct WebhookSetupError;

/// Sends webhooks.
pub struct HttpWebhooks {
    client: reqwest13::Client,
    allow_internal: bool,
}

impl std::fmt::Debug for HttpWebhooks {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("HttpWebhooks")
            .field("allow_internal", &self.allow_internal)
            .finish_non_exhaustive()
    }
}

impl HttpWebhooks {
    /// A sender; with `allow_internal`, also `http` and the node's own networks (for a
    /// receiver on the same host or intranet, and for tests).
    ///
    /// # Errors
    /// [`WebhookSetupError`] when the HTTP client cannot be built.
    pub fn new(allow_internal: bool) -> Result<Self, WebhookSetupError> {
        let client = medmesh_outbound::client(&OutboundPolicy {
            allow_internal,
            user_agent: "medmesh-webhooks",
            connect_timeout: Duration::from_secs(10),
            timeout: Duration::from_secs(20),
        })
        .map_err(|_| WebhookSetupError)?;
        Ok(Self {
            client,
            allow_internal,
        })
    }
}

/// The `webhook-signature` value for a message.
pub fn sign(secret: &str, id: &str, timestamp: i64, body: &[u8]) -> Result<String, SendError> {
    let key = STANDARD
        .decode(secret.strip_prefix("whsec_").unwrap_or(secret))
        .map_err(|_| SendError::Permanent("the webhook's secret is not readable".into()))?;
    let mut mac = <Hmac<Sha256> as KeyInit>::new_from_slice(&key)
        .map_err(|_| SendError::Permanent("the webhook's secret is not usable".into()))?;
    mac.update(id.as_bytes());
    mac.update(b".");
    mac.update(timestamp.to_string().as_bytes());
    mac.update(b".");
    mac.update(body);
    Ok(format!(
        "v1,{}",
        STANDARD.encode(mac.finalize().into_bytes())
    ))
}

#[async_trait::async_trait]
impl WebhookSender for HttpWebhooks {
    fn check(&self, url: &str) -> Result<(), String> {
        match medmesh_outbound::check_url(url, self.allow_internal) {
            Ok(_) => Ok(()),
            Err(UrlRefusal::Scheme) => Err("a webhook must be an https:// URL".into()),
            Err(UrlRefusal::Credentials) => {
                Err("a webhook URL carries no credentials; the signature proves the sender".into())
            }
            Err(UrlRefusal::Internal) => {
                Err("a webhook may not point at this node's own networks".into())
            }
            Err(other) => Err(other.to_string()),
        }
    }

    async fn post(
        &self,
        url: &str,
        secret: &str,
        id: &str,
        timestamp: i64,
        body: &[u8],
    ) -> Result<(), SendError> {
        // Checked again: the policy may have changed since the URL was set.
        self.check(url).map_err(SendError::Permanent)?;
        let signature = sign(secret, id, timestamp, body)?;
        let sent = self
            .client
            .post(url)
            .header("content-type", "application/json")
            .header("webhook-id", id)
            .header("webhook-timestamp", timestamp.to_string())
            .header("webhook-signature", signature)
            .body(body.to_vec())
            .send()
            .await;
        outcome(sent)
    }
}

/// What a POST's answer means for its delivery: a 2xx is delivered, 410 Gone gives up,
/// anything else (or no answer) is tried again.
fn outcome(sent: Result<reqwest13::Response, reqwest13::Error>) -> Result<(), SendError> {
    match sent {
        Ok(r) if r.status().is_success() => Ok(()),
        // Gone: the receiver says it wants no more.
        Ok(r) if r.status().as_u16() == 410 => Err(SendError::Permanent(
            "the receiver answered 410 Gone".into(),
        )),
        Ok(r) => Err(SendError::Transient(format!(
            "the receiver answered {}",
            r.status().as_u16()
        ))),
        Err(e) if e.is_timeout() => Err(SendError::Transient(
            "the receiver did not answer in time".into(),
        )),
        Err(_) => Err(SendError::Transient(
            "the receiver could not be reached".into(),
        )),
    }
}

/// FHIR Subscriptions' rest-hooks go out through the same guarded client: the same
/// addresses are refused, no redirect is followed, and each POST is bounded in time.
#[async_trait::async_trait]
impl medmesh_subscriptions::RestHookClient for HttpWebhooks {
    fn check(&self, url: &str) -> Result<(), String> {
        WebhookSender::check(self, url)
    }

    async fn post(
        &self,
        url: &str,
        headers: &[String],
        content_type: &str,
        body: &[u8],
    ) -> Result<(), SendError> {
        WebhookSender::check(self, url).map_err(SendError::Permanent)?;
        let mut request = self
            .client
            .post(url)
            .header("content-type", content_type)
            .body(body.to_vec());
        for h in headers {
            if let Some((name, value)) = h.split_once(':') {
                request = request.header(name.trim(), value.trim());
            }
        }
        outcome(request.send().await)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_public_https_unless_allowed() {
        let strict = HttpWebhooks::new(false).unwrap();
        assert!(strict.check("https://hooks.example.org/x").is_ok());
        for bad in [
            "http://hooks.example.org/x",
            "https://127.0.0.1/x",
            "https://localhost/x",
            "https://[::1]/x",
            "https://10.0.0.2/",
            "https://u:p@hooks.example.org/",
            "ftp://x.org/",
            "not a url",
        ] {
            assert!(strict.check(bad).is_err(), "{bad}");
        }
        let open = HttpWebhooks::new(true).unwrap();
        assert!(open.check("http://127.0.0.1:8080/x").is_ok());
    }

    #[test]
    fn the_signature_is_the_specs() {
        // The Standard Webhooks reference example: its secret, id, timestamp and payload.
        let secret = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw";
        let sig = sign(
            secret,
            "msg_p5jXN8AQM9LWM0D4loKWxJek",
            1614265330,
            br#"{"test": 2432232314}"#,
        )
        .unwrap();
        assert_eq!(sig, "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE=");
    }
}
