//! Webhooks for the notification hub ([`medmesh_notifications::WebhookSender`]), as the
//! Standard Webhooks spec (<https://www.standardwebhooks.com/>) says: a JSON body POSTed
//! with `webhook-id`, `webhook-timestamp` and `webhook-signature` (`v1,` and the Base64
//! HMAC-SHA256 of `id.timestamp.body` under the secret, `whsec_` and Base64).
//!
//! A user chooses where the node sends, so the node must not become their way into its
//! own networks: by default only `https` to public addresses, checked on the URL and again
//! on every address the name resolves to when connecting (so a name that later resolves
//! inwards is refused too). Redirects are not followed; each request is bounded in time.

use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use hmac::{Hmac, KeyInit, Mac};
use medmesh_notifications::{SendError, WebhookSender};
use sha2::Sha256;

/// Whether an address is the node's own or a private network's: loopback, private,
/// link-local, unique-local, unspecified, multicast, documentation or shared address space.
pub fn is_internal(ip: IpAddr) -> bool {
    match ip {
        IpAddr::V4(v4) => {
            let o = v4.octets();
            v4.is_loopback()
                || v4.is_private()
                || v4.is_link_local()
                || v4.is_unspecified()
                || v4.is_multicast()
                || v4.is_broadcast()
                || v4.is_documentation()
                // 100.64.0.0/10, carrier-grade NAT.
                || (o[0] == 100 && (o[1] & 0xc0) == 64)
                // 0.0.0.0/8.
                || o[0] == 0
        }
        IpAddr::V6(v6) => {
            if let Some(v4) = v6.to_ipv4_mapped() {
                return is_internal(IpAddr::V4(v4));
            }
            let first = v6.segments()[0];
            v6.is_loopback()
                || v6.is_unspecified()
                || v6.is_multicast()
                // fc00::/7 unique local, fe80::/10 link local.
                || (first & 0xfe00) == 0xfc00
                || (first & 0xffc0) == 0xfe80
        }
    }
}

/// Resolves names as the system does, and keeps only addresses the node may send to.
struct OutwardResolver {
    allow_internal: bool,
}

impl reqwest13::dns::Resolve for OutwardResolver {
    fn resolve(&self, name: reqwest13::dns::Name) -> reqwest13::dns::Resolving {
        let host = name.as_str().to_string();
        let allow_internal = self.allow_internal;
        Box::pin(async move {
            let found: Vec<SocketAddr> = tokio::net::lookup_host((host.as_str(), 0))
                .await?
                .filter(|a| allow_internal || !is_internal(a.ip()))
                .collect();
            if found.is_empty() {
                return Err("the name resolves to no address the node may send to".into());
            }
            Ok(Box::new(found.into_iter()) as reqwest13::dns::Addrs)
        })
    }
}

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
        // The process's one rustls provider (a second call is a no-op).
        let _ = rustls::crypto::ring::default_provider().install_default();
        let client = reqwest13::Client::builder()
            .dns_resolver(Arc::new(OutwardResolver { allow_internal }))
            .redirect(reqwest13::redirect::Policy::none())
            .connect_timeout(Duration::from_secs(10))
            .timeout(Duration::from_secs(20))
            .user_agent("medmesh-webhooks")
            .build()
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
        let parsed = url::Url::parse(url).map_err(|_| "that is not a URL".to_string())?;
        match parsed.scheme() {
            "https" => {}
            "http" if self.allow_internal => {}
            _ => return Err("a webhook must be an https:// URL".into()),
        }
        if !parsed.username().is_empty() || parsed.password().is_some() {
            return Err(
                "a webhook URL carries no credentials; the signature proves the sender".into(),
            );
        }
        let internal = match parsed.host() {
            Some(url::Host::Ipv4(ip)) => is_internal(IpAddr::V4(ip)),
            Some(url::Host::Ipv6(ip)) => is_internal(IpAddr::V6(ip)),
            Some(url::Host::Domain(d)) => d.eq_ignore_ascii_case("localhost"),
            None => return Err("a webhook URL names a host".into()),
        };
        if internal && !self.allow_internal {
            return Err("a webhook may not point at this node's own networks".into());
        }
        Ok(())
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
    fn internal_addresses_are_known() {
        for a in [
            "127.0.0.1",
            "10.1.2.3",
            "192.168.0.1",
            "172.16.5.4",
            "169.254.169.254",
            "100.64.0.1",
            "0.0.0.0",
            "::1",
            "fd00::1",
            "fe80::1",
            "::ffff:127.0.0.1",
        ] {
            assert!(is_internal(a.parse().unwrap()), "{a}");
        }
        for a in ["93.184.216.34", "2606:4700::1111", "8.8.8.8"] {
            assert!(!is_internal(a.parse().unwrap()), "{a}");
        }
    }

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
