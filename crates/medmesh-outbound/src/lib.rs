//! HTTP to addresses users choose: webhooks, FHIR rest-hooks, a patient's Nightscout site.
//!
//! A user chooses where the node connects, so the node must not become their way into its
//! own networks: by default only `https` to public addresses, checked on the URL
//! ([`check_url`]) and again on every address the name resolves to when connecting (so a
//! name that later resolves inwards is refused too). Redirects are not followed; each
//! request is bounded in time, and [`read_bounded`] bounds what is read of an answer.

use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;

pub use reqwest13 as reqwest;

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

/// Why a URL may not be used. Each says what is wrong without quoting the URL.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum UrlRefusal {
    /// Not a URL.
    #[error("that is not a URL")]
    NotUrl,
    /// Not `https` (or `http` where internal addresses are allowed).
    #[error("the URL must be https://")]
    Scheme,
    /// A user name or password in the URL.
    #[error("the URL may not carry a user name or password")]
    Credentials,
    /// No host.
    #[error("the URL names no host")]
    NoHost,
    /// The node's own or a private network.
    #[error("the URL may not point at this node's own networks")]
    Internal,
}

/// Checks a URL against the policy: `https` (or `http` with `allow_internal`), no
/// credentials, a host that is not the node's own networks unless `allow_internal`.
///
/// # Errors
/// [`UrlRefusal`] saying which rule it breaks.
pub fn check_url(url: &str, allow_internal: bool) -> Result<url::Url, UrlRefusal> {
    let parsed = url::Url::parse(url).map_err(|_| UrlRefusal::NotUrl)?;
    match parsed.scheme() {
        "https" => {}
        "http" if allow_internal => {}
        _ => return Err(UrlRefusal::Scheme),
    }
    if !parsed.username().is_empty() || parsed.password().is_some() {
        return Err(UrlRefusal::Credentials);
    }
    let internal = match parsed.host() {
        Some(url::Host::Ipv4(ip)) => is_internal(IpAddr::V4(ip)),
        Some(url::Host::Ipv6(ip)) => is_internal(IpAddr::V6(ip)),
        Some(url::Host::Domain(d)) => {
            d.eq_ignore_ascii_case("localhost") || d.to_ascii_lowercase().ends_with(".localhost")
        }
        None => return Err(UrlRefusal::NoHost),
    };
    if internal && !allow_internal {
        return Err(UrlRefusal::Internal);
    }
    Ok(parsed)
}

/// Resolves names as the system does, and keeps only addresses the node may connect to.
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
                return Err("the name resolves to no address the node may connect to".into());
            }
            Ok(Box::new(found.into_iter()) as reqwest13::dns::Addrs)
        })
    }
}

/// How an outbound client behaves.
#[derive(Debug, Clone)]
pub struct OutboundPolicy {
    /// Also `http` and the node's own networks (a receiver on the same host or intranet,
    /// and tests).
    pub allow_internal: bool,
    /// The `User-Agent` sent.
    pub user_agent: &'static str,
    /// The longest wait for a connection.
    pub connect_timeout: Duration,
    /// The longest a whole request may take.
    pub timeout: Duration,
}

/// Why the client could not be built.
#[derive(Debug, thiserror::Error)]
#[error("the outbound HTTP client could not be built")]
pub struct OutboundSetupError;

/// A client under `policy`: the guarded resolver, no redirects, the timeouts.
///
/// # Errors
/// [`OutboundSetupError`] when the HTTP client cannot be built.
pub fn client(policy: &OutboundPolicy) -> Result<reqwest13::Client, OutboundSetupError> {
    // The process's one rustls provider (a second call is a no-op).
    let _ = rustls::crypto::ring::default_provider().install_default();
    reqwest13::Client::builder()
        .dns_resolver(Arc::new(OutwardResolver {
            allow_internal: policy.allow_internal,
        }))
        .redirect(reqwest13::redirect::Policy::none())
        .connect_timeout(policy.connect_timeout)
        .timeout(policy.timeout)
        .user_agent(policy.user_agent)
        .build()
        .map_err(|_| OutboundSetupError)
}

/// Why an answer's body was not read.
#[derive(Debug, thiserror::Error)]
pub enum ReadError {
    /// Longer than the limit.
    #[error("the answer is larger than allowed")]
    TooLarge,
    /// The connection failed or timed out while reading.
    #[error("the answer could not be read")]
    Transport,
}

/// An answer's body, read chunk by chunk and refused as soon as it passes `limit` bytes.
///
/// # Errors
/// [`ReadError`].
pub async fn read_bounded(
    mut response: reqwest13::Response,
    limit: usize,
) -> Result<Vec<u8>, ReadError> {
    if response.content_length().is_some_and(|n| n > limit as u64) {
        return Err(ReadError::TooLarge);
    }
    let mut body = Vec::new();
    while let Some(chunk) = response.chunk().await.map_err(|_| ReadError::Transport)? {
        if body.len() + chunk.len() > limit {
            return Err(ReadError::TooLarge);
        }
        body.extend_from_slice(&chunk);
    }
    Ok(body)
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
        for a in ["93.184.216.34", "2606:2800:220:1::1"] {
            assert!(!is_internal(a.parse().unwrap()), "{a}");
        }
    }

    #[test]
    fn only_public_https_unless_allowed() {
        assert!(check_url("https://ns.example.org/", false).is_ok());
        for (bad, why) in [
            ("http://ns.example.org/", UrlRefusal::Scheme),
            ("https://user:pw@ns.example.org/", UrlRefusal::Credentials),
            ("https://127.0.0.1/", UrlRefusal::Internal),
            ("https://[::1]/", UrlRefusal::Internal),
            ("https://localhost/", UrlRefusal::Internal),
            ("https://a.localhost/", UrlRefusal::Internal),
            ("ftp://ns.example.org/", UrlRefusal::Scheme),
            ("not a url", UrlRefusal::NotUrl),
        ] {
            assert_eq!(check_url(bad, false).unwrap_err(), why, "{bad}");
        }
        assert!(check_url("http://127.0.0.1:8080/x", true).is_ok());
    }

    #[tokio::test]
    async fn a_name_resolving_inwards_is_refused_when_connecting() {
        let strict = client(&OutboundPolicy {
            allow_internal: false,
            user_agent: "test",
            connect_timeout: Duration::from_secs(2),
            timeout: Duration::from_secs(2),
        })
        .unwrap();
        // "localhost" passes no URL check here: the resolver alone refuses it.
        assert!(strict.get("https://localhost:9/").send().await.is_err());
    }

    #[tokio::test]
    async fn a_long_answer_is_cut_off_at_the_limit() {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        tokio::spawn(async move {
            let (mut s, _) = listener.accept().await.unwrap();
            let mut buf = [0u8; 1024];
            let _ = s.read(&mut buf).await;
            let body = vec![b'x'; 10_000];
            let head = "HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\n";
            let _ = s.write_all(head.as_bytes()).await;
            let _ = s
                .write_all(format!("{:x}\r\n", body.len()).as_bytes())
                .await;
            let _ = s.write_all(&body).await;
            let _ = s.write_all(b"\r\n0\r\n\r\n").await;
        });
        let open = client(&OutboundPolicy {
            allow_internal: true,
            user_agent: "test",
            connect_timeout: Duration::from_secs(2),
            timeout: Duration::from_secs(5),
        })
        .unwrap();
        let answer = open.get(format!("http://{addr}/")).send().await.unwrap();
        assert!(matches!(
            read_bounded(answer, 1_000).await,
            Err(ReadError::TooLarge)
        ));
    }
}
