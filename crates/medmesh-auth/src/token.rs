//! Signed access tokens: EdDSA (Ed25519) JWTs, verified against a key set.

use std::fmt;

use ed25519_dalek::SigningKey;
use ed25519_dalek::pkcs8::EncodePrivateKey;
use jsonwebtoken::{Algorithm, DecodingKey, EncodingKey, Header, Validation};
use serde::{Deserialize, Serialize};

/// The audience every medmesh access token carries.
pub const AUDIENCE: &str = "medmesh-fhir";

/// The audience of a download link's ticket: it opens one document and nothing else.
pub const DOWNLOAD_AUDIENCE: &str = "medmesh-download";

/// A signing key's id (`kid`).
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct KeyId(pub String);

/// An Ed25519 token-signing key. Debug output never shows the secret.
#[derive(Clone)]
pub struct TokenSigningKey {
    /// The key id.
    pub id: KeyId,
    secret: [u8; 32],
}

impl fmt::Debug for TokenSigningKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TokenSigningKey")
            .field("id", &self.id)
            .field("secret", &"[redacted]")
            .finish()
    }
}

/// The claims of an access token.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AccessClaims {
    /// Issuer.
    pub iss: String,
    /// Subject: the user or client.
    pub sub: String,
    /// Audience.
    pub aud: String,
    /// Expiry, seconds since the epoch.
    pub exp: i64,
    /// Issued at.
    pub iat: i64,
    /// Not before.
    pub nbf: i64,
    /// Token id.
    pub jti: String,
    /// Space-separated scopes.
    pub scope: String,
    /// Patient context, for patient-level scopes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub patient: Option<String>,
    /// The user's role (`patient`, `practitioner`...); absent for backend services and the
    /// node CLI. A patient is confined to their own record whatever the scopes say.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub role: Option<String>,
    /// The OAuth client the token was issued to.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub client_id: Option<String>,
    /// SMART `fhirUser`: the user's FHIR resource, e.g. `Practitioner/123`.
    #[serde(default, rename = "fhirUser", skip_serializing_if = "Option::is_none")]
    pub fhir_user: Option<String>,
}

/// The claims of an OpenID Connect `id_token`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct IdTokenClaims {
    /// Issuer.
    pub iss: String,
    /// Subject (the user id).
    pub sub: String,
    /// Audience: the client id.
    pub aud: String,
    /// Expiry.
    pub exp: i64,
    /// Issued at.
    pub iat: i64,
    /// When the user authenticated.
    pub auth_time: i64,
    /// The client's nonce, echoed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub nonce: Option<String>,
    /// SMART `fhirUser`.
    #[serde(default, rename = "fhirUser", skip_serializing_if = "Option::is_none")]
    pub fhir_user: Option<String>,
    /// The user name.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub preferred_username: Option<String>,
}

/// Why a token was refused. Deliberately coarse: the client learns only that it failed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TokenError {
    /// Signature, algorithm, key, audience, issuer or time checks failed.
    #[error("the access token is invalid or expired")]
    Invalid,
    /// The key could not be used to sign.
    #[error("the signing key is unusable")]
    Signing,
}

impl TokenSigningKey {
    /// Builds a key from its 32-byte secret.
    pub fn from_secret(id: KeyId, secret: [u8; 32]) -> Self {
        Self { id, secret }
    }
    /// The 32-byte secret, for storage (wrapped by the key hierarchy in a later issue).
    pub fn secret(&self) -> &[u8; 32] {
        &self.secret
    }
    /// The public half.
    pub fn verifying_key(&self) -> TokenVerifyingKey {
        TokenVerifyingKey {
            id: self.id.clone(),
            public: SigningKey::from_bytes(&self.secret)
                .verifying_key()
                .to_bytes(),
        }
    }
    /// Signs access-token claims as a compact JWT.
    ///
    /// # Errors
    /// If the key cannot be encoded.
    pub fn sign(&self, claims: &AccessClaims) -> Result<String, TokenError> {
        self.sign_claims(claims)
    }

    /// Signs any claims (an `id_token`, say) as a compact EdDSA JWT with this key's `kid`.
    ///
    /// # Errors
    /// If the key cannot be encoded.
    pub fn sign_claims<T: Serialize>(&self, claims: &T) -> Result<String, TokenError> {
        let der = SigningKey::from_bytes(&self.secret)
            .to_pkcs8_der()
            .map_err(|_| TokenError::Signing)?;
        let key = EncodingKey::from_ed_der(der.as_bytes());
        let mut header = Header::new(Algorithm::EdDSA);
        header.kid = Some(self.id.0.clone());
        jsonwebtoken::encode(&header, claims, &key).map_err(|_| TokenError::Signing)
    }
}

/// A public key that verifies tokens.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TokenVerifyingKey {
    /// The key id.
    pub id: KeyId,
    /// The Ed25519 public key.
    pub public: [u8; 32],
}

impl TokenVerifyingKey {
    /// The key as a JSON Web Key (RFC 8037 OKP), for the JWKS endpoint.
    pub fn to_jwk(&self) -> serde_json::Value {
        use base64::Engine;
        serde_json::json!({
            "kty": "OKP",
            "crv": "Ed25519",
            "x": base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(self.public),
            "kid": self.id.0,
            "use": "sig",
            "alg": "EdDSA",
        })
    }
}

/// Algorithms accepted from keys we did not make (client assertions, external providers).
/// HMAC is never accepted: a public key must not double as a shared secret.
pub const ASYMMETRIC_ALGORITHMS: [Algorithm; 7] = [
    Algorithm::RS256,
    Algorithm::RS384,
    Algorithm::PS256,
    Algorithm::PS384,
    Algorithm::ES256,
    Algorithm::ES384,
    Algorithm::EdDSA,
];

/// How the node judges a token's times: the clock skew it forgives, and the longest life a
/// token may have left. A token whose `exp` lies further ahead than that is refused however
/// it was signed, so a leaked signing key or a careless `--ttl` cannot mint a key for years.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TokenTimes {
    /// Seconds of clock skew forgiven on `exp` and `nbf`.
    pub leeway: i64,
    /// The most seconds a token may still live (`exp - now`).
    pub max_lifetime: i64,
}

impl Default for TokenTimes {
    fn default() -> Self {
        Self {
            leeway: 5,
            max_lifetime: 86_400,
        }
    }
}

impl TokenTimes {
    /// Whether a token expiring at `exp`, valid from `nbf`, is good at `now` (seconds).
    pub fn admits(&self, exp: i64, nbf: i64, now: i64) -> bool {
        exp.saturating_add(self.leeway) >= now
            && nbf.saturating_sub(self.leeway) <= now
            && exp.saturating_sub(now) <= self.max_lifetime.saturating_add(self.leeway)
    }

    fn leeway_u64(&self) -> u64 {
        u64::try_from(self.leeway).unwrap_or(0)
    }
}

/// Verifies a JWT signed by a key in `jwks` (a JSON Web Key Set), checking the algorithm
/// against [`ASYMMETRIC_ALGORITHMS`] and the key's own, the issuer when given, the audience,
/// and the time at `now` (seconds) under `times`. Returns the claims as JSON.
///
/// # Errors
/// [`TokenError::Invalid`] for any failure.
pub fn verify_with_jwks(
    token: &str,
    jwks: &serde_json::Value,
    issuer: Option<&str>,
    audience: &str,
    now: i64,
    times: TokenTimes,
) -> Result<serde_json::Value, TokenError> {
    let header = jsonwebtoken::decode_header(token).map_err(|_| TokenError::Invalid)?;
    if !ASYMMETRIC_ALGORITHMS.contains(&header.alg) {
        return Err(TokenError::Invalid);
    }
    let set: jsonwebtoken::jwk::JwkSet =
        serde_json::from_value(jwks.clone()).map_err(|_| TokenError::Invalid)?;
    let jwk = match &header.kid {
        Some(kid) => set.find(kid),
        // Without a kid, only a single-key set is unambiguous.
        None if set.keys.len() == 1 => set.keys.first(),
        None => None,
    }
    .ok_or(TokenError::Invalid)?;
    // The key's own algorithm, when it names one, must be the header's.
    if let Some(key_alg) = &jwk.common.key_algorithm
        && key_alg.to_string() != format!("{:?}", header.alg)
    {
        return Err(TokenError::Invalid);
    }
    let key = DecodingKey::from_jwk(jwk).map_err(|_| TokenError::Invalid)?;
    let mut validation = Validation::new(header.alg);
    validation.set_audience(&[audience]);
    if let Some(iss) = issuer {
        validation.set_issuer(&[iss]);
    }
    validation.validate_nbf = true;
    validation.leeway = times.leeway_u64();
    validation.set_required_spec_claims(&["exp", "aud"]);
    let data = jsonwebtoken::decode::<serde_json::Value>(token, &key, &validation)
        .map_err(|_| TokenError::Invalid)?;
    let claims = data.claims;
    let exp = claims
        .get("exp")
        .and_then(serde_json::Value::as_i64)
        .ok_or(TokenError::Invalid)?;
    let nbf = claims
        .get("nbf")
        .and_then(serde_json::Value::as_i64)
        .unwrap_or(i64::MIN);
    if !times.admits(exp, nbf, now) {
        return Err(TokenError::Invalid);
    }
    Ok(claims)
}

/// The claims of a compact JWT, without any verification: only for choosing which keys to
/// verify it with (a client assertion's client, a provider's issuer). Never trust the result.
pub fn unverified_claims(token: &str) -> Option<serde_json::Value> {
    use base64::Engine;
    let payload = token.split('.').nth(1)?;
    let bytes = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(payload)
        .ok()?;
    serde_json::from_slice(&bytes).ok()
}

/// Verifies a compact JWT against the given keys, issuer and audience at time `now` (seconds).
///
/// Only EdDSA is accepted; `alg: none`, HMAC and unknown `kid`s are refused.
///
/// # Errors
/// [`TokenError::Invalid`] for any failure.
pub fn verify(
    token: &str,
    keys: &[TokenVerifyingKey],
    issuers: &[&str],
    now: i64,
    times: TokenTimes,
) -> Result<AccessClaims, TokenError> {
    verify_for(token, keys, issuers, AUDIENCE, now, times)
}

/// As [`verify`], for tokens of another audience ([`DOWNLOAD_AUDIENCE`]).
///
/// # Errors
/// [`TokenError::Invalid`] for any failure.
pub fn verify_for(
    token: &str,
    keys: &[TokenVerifyingKey],
    issuers: &[&str],
    audience: &str,
    now: i64,
    times: TokenTimes,
) -> Result<AccessClaims, TokenError> {
    let header = jsonwebtoken::decode_header(token).map_err(|_| TokenError::Invalid)?;
    if header.alg != Algorithm::EdDSA {
        return Err(TokenError::Invalid);
    }
    let kid = header.kid.ok_or(TokenError::Invalid)?;
    let key = keys
        .iter()
        .find(|k| k.id.0 == kid)
        .ok_or(TokenError::Invalid)?;
    let mut validation = Validation::new(Algorithm::EdDSA);
    validation.set_audience(&[audience]);
    validation.set_issuer(issuers);
    validation.validate_nbf = true;
    validation.leeway = times.leeway_u64();
    validation.set_required_spec_claims(&["exp", "iss", "aud", "sub", "nbf"]);
    let data = jsonwebtoken::decode::<AccessClaims>(
        token,
        &DecodingKey::from_ed_der(&key.public),
        &validation,
    )
    .map_err(|_| TokenError::Invalid)?;
    // jsonwebtoken checks exp and nbf against the system clock; check again against ours.
    let c = data.claims;
    if !times.admits(c.exp, c.nbf, now) {
        return Err(TokenError::Invalid);
    }
    Ok(c)
}

/// Tokens already verified, so a client sending the same token on every request pays for
/// the signature check once (an Ed25519 verification costs about 45 µs here; a lookup,
/// about 1 µs). Entries expire with their token; revocation is checked by the caller after
/// every lookup. Bounded: when full, it starts over.
#[derive(Debug, Default)]
pub struct VerifiedTokens {
    map: std::sync::RwLock<std::collections::HashMap<String, AccessClaims>>,
}

/// Entries kept at most.
const VERIFIED_CAPACITY: usize = 16_384;

impl VerifiedTokens {
    /// Verifies through the cache: a hit needs only the expiry check against `now`.
    ///
    /// # Errors
    /// [`TokenError::Invalid`].
    pub fn verify(
        &self,
        token: &str,
        keys: &[TokenVerifyingKey],
        issuers: &[&str],
        now: i64,
        times: TokenTimes,
    ) -> Result<AccessClaims, TokenError> {
        if let Ok(map) = self.map.read()
            && let Some(c) = map.get(token)
        {
            return if times.admits(c.exp, c.nbf, now) {
                Ok(c.clone())
            } else {
                Err(TokenError::Invalid)
            };
        }
        let claims = verify(token, keys, issuers, now, times)?;
        if let Ok(mut map) = self.map.write() {
            if map.len() >= VERIFIED_CAPACITY {
                map.clear();
            }
            map.insert(token.to_string(), claims.clone());
        }
        Ok(claims)
    }

    /// Forgets every entry (after the key set changed, so a dropped key's tokens stop
    /// verifying at once).
    pub fn clear(&self) {
        if let Ok(mut map) = self.map.write() {
            map.clear();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const T: TokenTimes = TokenTimes {
        leeway: 5,
        max_lifetime: 86_400,
    };

    #[test]
    fn leeway_is_small_and_far_expiries_are_refused() {
        let k = TokenSigningKey::from_secret(KeyId("k1".into()), [7; 32]);
        let keys = [k.verifying_key()];
        let n = now();
        // Expired 20 s ago: within the old 30 s leeway, outside the default 5 s.
        let mut c = claims(n);
        c.exp = n - 20;
        assert!(verify(&k.sign(&c).unwrap(), &keys, &["urn:test"], n, T).is_err());
        let generous = TokenTimes { leeway: 30, ..T };
        assert!(verify(&k.sign(&c).unwrap(), &keys, &["urn:test"], n, generous).is_ok());
        // A hundred-year token is refused however well it is signed.
        c.exp = n + 100 * 365 * 86_400;
        assert!(verify(&k.sign(&c).unwrap(), &keys, &["urn:test"], n, T).is_err());
        let cache = VerifiedTokens::default();
        assert!(
            cache
                .verify(&k.sign(&c).unwrap(), &keys, &["urn:test"], n, T)
                .is_err()
        );
        c.exp = n + 86_400;
        assert!(verify(&k.sign(&c).unwrap(), &keys, &["urn:test"], n, T).is_ok());
    }

    fn claims(now: i64) -> AccessClaims {
        AccessClaims {
            iss: "urn:test".into(),
            sub: "admin".into(),
            aud: AUDIENCE.into(),
            exp: now + 60,
            iat: now,
            nbf: now,
            jti: "j".into(),
            scope: "system/*.*".into(),
            patient: None,
            role: None,
            client_id: None,
            fhir_user: None,
        }
    }

    #[allow(clippy::disallowed_methods)] // Tokens made here are checked against the real clock.
    fn now() -> i64 {
        time::OffsetDateTime::now_utc().unix_timestamp()
    }

    #[test]
    fn signs_and_verifies() {
        let k = TokenSigningKey::from_secret(KeyId("k1".into()), [7; 32]);
        let t = k.sign(&claims(now())).unwrap();
        assert_eq!(
            verify(&t, &[k.verifying_key()], &["urn:test"], now(), T)
                .unwrap()
                .sub,
            "admin"
        );
        assert!(!format!("{k:?}").contains('7'));
    }

    #[test]
    fn the_cache_still_checks_expiry_and_only_holds_verified_tokens() {
        let k = TokenSigningKey::from_secret(KeyId("k1".into()), [7; 32]);
        let keys = [k.verifying_key()];
        let cache = VerifiedTokens::default();
        let n = now();
        let t = k.sign(&claims(n)).unwrap();
        assert!(cache.verify(&t, &keys, &["urn:test"], n, T).is_ok());
        assert!(cache.verify(&t, &keys, &["urn:test"], n, T).is_ok(), "hit");
        assert!(
            cache.verify(&t, &keys, &["urn:test"], n + 3600, T).is_err(),
            "expired while cached"
        );
        let forged = format!("{}x", t);
        assert!(cache.verify(&forged, &keys, &["urn:test"], n, T).is_err());
    }

    #[test]
    fn refuses_hs256_signed_with_the_public_key() {
        let k = TokenSigningKey::from_secret(KeyId("k1".into()), [7; 32]);
        let n = now();
        let mut h = Header::new(Algorithm::HS256);
        h.kid = Some("k1".into());
        let t = jsonwebtoken::encode(
            &h,
            &claims(n),
            &EncodingKey::from_secret(&k.verifying_key().public),
        )
        .unwrap();
        assert!(verify(&t, &[k.verifying_key()], &["urn:test"], n, T).is_err());
        let mut future = claims(n);
        future.nbf = n + 600;
        assert!(
            verify(
                &k.sign(&future).unwrap(),
                &[k.verifying_key()],
                &["urn:test"],
                n,
                T
            )
            .is_err(),
            "not yet valid"
        );
    }

    #[test]
    fn refuses_bad_tokens() {
        let k = TokenSigningKey::from_secret(KeyId("k1".into()), [7; 32]);
        let other = TokenSigningKey::from_secret(KeyId("k1".into()), [8; 32]);
        let n = now();
        let keys = [k.verifying_key()];
        assert!(
            verify(&other.sign(&claims(n)).unwrap(), &keys, &["urn:test"], n, T).is_err(),
            "wrong key"
        );
        assert!(
            verify(
                &k.sign(&claims(n - 3600)).unwrap(),
                &keys,
                &["urn:test"],
                n,
                T
            )
            .is_err(),
            "expired"
        );
        assert!(
            verify(&k.sign(&claims(n)).unwrap(), &keys, &["urn:other"], n, T).is_err(),
            "issuer"
        );
        let mut c = claims(n);
        c.aud = "x".into();
        assert!(
            verify(&k.sign(&c).unwrap(), &keys, &["urn:test"], n, T).is_err(),
            "audience"
        );
        let unknown = TokenSigningKey::from_secret(KeyId("k2".into()), [7; 32]);
        assert!(
            verify(
                &unknown.sign(&claims(n)).unwrap(),
                &keys,
                &["urn:test"],
                n,
                T
            )
            .is_err(),
            "kid"
        );
        // alg: none
        use base64::Engine;
        let b64 = base64::engine::general_purpose::URL_SAFE_NO_PAD;
        let none = format!(
            "{}.{}.",
            b64.encode(r#"{"alg":"none","kid":"k1"}"#),
            b64.encode(serde_json::to_vec(&claims(n)).unwrap())
        );
        assert!(
            verify(&none, &keys, &["urn:test"], n, T).is_err(),
            "alg none"
        );
    }
}
