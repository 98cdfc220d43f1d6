//! Credentials: argon2id password hashes and the password policy, TOTP (RFC 6238) with
//! replay protection, single-use recovery codes, and PKCE (RFC 7636). Pure: randomness is
//! passed in by the caller.

use argon2::password_hash::{PasswordHasher, PasswordVerifier};
use argon2::{Algorithm, Argon2, Params, Version};
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

/// Why a password was refused by the policy. Safe to show the user.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PasswordRejected {
    /// Too short.
    #[error("the password must be at least {0} characters long")]
    TooShort(usize),
    /// Too long (argon2 would accept it, but an upper bound stops abuse).
    #[error("the password must be at most {0} characters long")]
    TooLong(usize),
    /// Contains the user name.
    #[error("the password must not contain the user name")]
    ContainsUsername,
    /// A commonly used or trivially guessable password.
    #[error("the password is too common")]
    Common,
}

/// A credential operation failed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CredentialError {
    /// The hash could not be computed or parsed.
    #[error("password hashing failed")]
    Hashing,
    /// The TOTP secret is unusable.
    #[error("the one-time password secret is unusable")]
    Totp,
}

/// Passwords that are always refused, whatever their length: the most common ones in
/// breach corpora that reach the minimum length, and patterns derived from the product.
const COMMON: &[&str] = &[
    "123456789012",
    "1234567890123",
    "password1234",
    "passwordpassword",
    "qwertyuiopas",
    "qwerty123456",
    "iloveyou1234",
    "111111111111",
    "000000000000",
    "abc123456789",
    "letmein12345",
    "welcome12345",
    "administrator",
    "medmesh12345",
    "medmeshmedmesh",
    "changeme1234",
    "correcthorsebatterystaple",
];

/// NIST SP 800-63B style: a length floor and ceiling, a block list, no composition rules.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PasswordPolicy {
    /// Fewest characters. Default 12.
    pub min_len: usize,
    /// Most characters. Default 256.
    pub max_len: usize,
}

impl Default for PasswordPolicy {
    fn default() -> Self {
        Self {
            min_len: 12,
            max_len: 256,
        }
    }
}

impl PasswordPolicy {
    /// Checks a new password for `username`.
    ///
    /// # Errors
    /// The first rule it breaks.
    pub fn check(&self, username: &str, password: &str) -> Result<(), PasswordRejected> {
        let len = password.chars().count();
        if len < self.min_len {
            return Err(PasswordRejected::TooShort(self.min_len));
        }
        if len > self.max_len {
            return Err(PasswordRejected::TooLong(self.max_len));
        }
        let lower = password.to_lowercase();
        if !username.is_empty() && lower.contains(&username.to_lowercase()) {
            return Err(PasswordRejected::ContainsUsername);
        }
        let distinct: std::collections::BTreeSet<char> = lower.chars().collect();
        if COMMON.contains(&lower.as_str()) || distinct.len() < 4 {
            return Err(PasswordRejected::Common);
        }
        Ok(())
    }
}

/// argon2id cost parameters. The default is OWASP's recommendation (19 MiB, 2 passes, 1 lane).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct HashCost {
    /// Memory in KiB.
    pub memory_kib: u32,
    /// Passes.
    pub iterations: u32,
    /// Lanes.
    pub parallelism: u32,
}

impl Default for HashCost {
    fn default() -> Self {
        Self {
            memory_kib: 19 * 1024,
            iterations: 2,
            parallelism: 1,
        }
    }
}

fn argon2(cost: HashCost) -> Result<Argon2<'static>, CredentialError> {
    let params = Params::new(cost.memory_kib, cost.iterations, cost.parallelism, None)
        .map_err(|_| CredentialError::Hashing)?;
    Ok(Argon2::new(Algorithm::Argon2id, Version::V0x13, params))
}

/// Hashes a password with argon2id; returns the PHC string (parameters and salt included).
///
/// # Errors
/// Bad cost parameters or salt.
pub fn hash_password(
    password: &str,
    salt: &[u8; 16],
    cost: HashCost,
) -> Result<String, CredentialError> {
    argon2(cost)?
        .hash_password_with_salt(password.as_bytes(), salt)
        .map(|h| h.to_string())
        .map_err(|_| CredentialError::Hashing)
}

/// Checks a password against a PHC string, in constant time. Parameters come from the hash,
/// so old hashes keep verifying after the cost changes.
pub fn verify_password(password: &str, phc: &str) -> bool {
    Argon2::default()
        .verify_password(password.as_bytes(), phc)
        .is_ok()
}

/// A hash of a password that verifies nothing: checked against when the user does not exist,
/// so a login takes as long for an unknown name as for a wrong password.
pub fn dummy_hash(cost: HashCost) -> Result<String, CredentialError> {
    hash_password("not a real password, ever", &[0x5a; 16], cost)
}

/// Time-based one-time passwords: SHA-1, 6 digits, 30 s steps, one step of skew (the
/// authenticator-app defaults of RFC 6238).
pub struct Totp {
    inner: totp_rs::Totp,
}

impl std::fmt::Debug for Totp {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Totp([redacted])")
    }
}

impl Totp {
    /// A TOTP generator for a 20-byte secret, labelled for authenticator apps.
    ///
    /// # Errors
    /// An unusable secret or label.
    pub fn new(secret: &[u8], issuer: &str, account: &str) -> Result<Self, CredentialError> {
        let inner = totp_rs::Builder::new()
            .with_secret(secret.to_vec())
            .with_digits(6)
            .with_skew(1)
            .with_step_duration(30)
            .with_issuer(Some(issuer.to_string()))
            .with_account_name(account.to_string())
            .build()
            .map_err(|_| CredentialError::Totp)?;
        Ok(Self { inner })
    }

    /// The generator an enrolment URI describes (what an authenticator app does on a scan).
    ///
    /// # Errors
    /// A malformed URI.
    pub fn from_enrolment_uri(uri: &str) -> Result<Self, CredentialError> {
        let inner = totp_rs::Totp::from_url_unchecked(uri).map_err(|_| CredentialError::Totp)?;
        Ok(Self { inner })
    }

    /// The `otpauth://` URI for enrolment (shown as a QR code).
    ///
    /// # Errors
    /// When the URI cannot be built.
    pub fn enrolment_uri(&self) -> Result<String, CredentialError> {
        self.inner.to_url().map_err(|_| CredentialError::Totp)
    }

    /// The code for a time (seconds), for tests and for the CLI.
    pub fn code_at(&self, unix_seconds: u64) -> String {
        self.inner.generate(unix_seconds).to_string()
    }

    /// Checks `code` at `unix_seconds`. Returns the time step it matched, which must be
    /// greater than `last_used_step`: a code is accepted once (RFC 6238 section 5.2).
    pub fn check(&self, code: &str, unix_seconds: u64, last_used_step: Option<u64>) -> Option<u64> {
        let step = self.inner.check(code.trim(), unix_seconds)?;
        match last_used_step {
            Some(last) if step <= last => None,
            _ => Some(step),
        }
    }
}

/// Hex SHA-256 of a high-entropy secret (recovery codes, opaque tokens). These are random,
/// so a fast hash is enough; only passwords need argon2.
pub fn secret_digest(secret: &str) -> String {
    hex::encode(Sha256::digest(secret.as_bytes()))
}

/// Formats 10 random bytes as a recovery code like `k3f9-2mxq-8d7w-p4ha`.
pub fn recovery_code(random: &[u8; 10]) -> String {
    const ALPHABET: &[u8; 32] = b"abcdefghjkmnpqrstuvwxyz23456789x";
    let mut bits: u128 = 0;
    for b in random {
        bits = (bits << 8) | u128::from(*b);
    }
    let mut out = String::with_capacity(19);
    for i in 0..16 {
        if i > 0 && i % 4 == 0 {
            out.push('-');
        }
        let idx = ((bits >> (75 - 5 * i)) & 31) as usize;
        out.push(char::from(ALPHABET[idx]));
    }
    out
}

/// Normalizes a typed recovery code (case, spaces, dashes) before hashing.
pub fn normalize_recovery_code(code: &str) -> String {
    let c: String = code
        .chars()
        .filter(|c| c.is_ascii_alphanumeric())
        .map(|c| c.to_ascii_lowercase())
        .collect();
    c.as_bytes()
        .chunks(4)
        .map(|ch| String::from_utf8_lossy(ch).into_owned())
        .collect::<Vec<_>>()
        .join("-")
}

/// PKCE S256: whether `verifier` hashes to `challenge` (RFC 7636 section 4.6). Compared in
/// constant time. `plain` is never accepted.
pub fn pkce_s256_matches(verifier: &str, challenge: &str) -> bool {
    use base64::Engine;
    // A verifier is 43 to 128 unreserved characters.
    let valid = (43..=128).contains(&verifier.len())
        && verifier
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"-._~".contains(&b));
    if !valid {
        return false;
    }
    let computed = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .encode(Sha256::digest(verifier.as_bytes()));
    computed.as_bytes().ct_eq(challenge.as_bytes()).into()
}

/// Failed-login throttling for one key (an account, or a source IP).
///
/// After `free_attempts` failures in a row, each further attempt must wait, doubling from
/// one second up to `max_delay_secs`. The wait never grows beyond that, so an attacker
/// cannot lock the real user out for ever: they can only slow them down, and a success
/// (or a quiet `forget_after_secs`) resets the count.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ThrottlePolicy {
    /// Failures allowed without delay.
    pub free_attempts: u32,
    /// The longest wait, in seconds.
    pub max_delay_secs: i64,
    /// Failures older than this are forgotten.
    pub forget_after_secs: i64,
}

impl ThrottlePolicy {
    /// Per account: 5 free attempts, then 1 s doubling to 15 min.
    pub const ACCOUNT: Self = Self {
        free_attempts: 5,
        max_delay_secs: 900,
        forget_after_secs: 3600,
    };
    /// Per source IP: 20 free attempts (several users behind one NAT), then the same curve.
    pub const SOURCE_IP: Self = Self {
        free_attempts: 20,
        max_delay_secs: 900,
        forget_after_secs: 3600,
    };

    /// Seconds to wait before the next attempt, given `failures` in a row, the last at
    /// `last_failure` (seconds), at time `now`. Zero: go ahead.
    pub fn wait_secs(&self, failures: u32, last_failure: i64, now: i64) -> i64 {
        if failures < self.free_attempts || now - last_failure >= self.forget_after_secs {
            return 0;
        }
        let over = failures - self.free_attempts;
        let delay = if over >= 20 {
            self.max_delay_secs
        } else {
            (1i64 << over).min(self.max_delay_secs)
        };
        (last_failure + delay - now).max(0)
    }

    /// The failure count after one more failure at `now`.
    pub fn after_failure(&self, failures: u32, last_failure: i64, now: i64) -> u32 {
        if now - last_failure >= self.forget_after_secs {
            1
        } else {
            failures.saturating_add(1)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    const CHEAP: HashCost = HashCost {
        memory_kib: 64,
        iterations: 1,
        parallelism: 1,
    };

    #[test]
    fn passwords_hash_and_verify() {
        let h = hash_password("a long enough passphrase", &[1; 16], CHEAP).unwrap();
        assert!(h.starts_with("$argon2id$v=19$m=64,t=1,p=1$"));
        assert!(verify_password("a long enough passphrase", &h));
        assert!(!verify_password("a long enough passphrasf", &h));
        assert!(!verify_password("x", "not a hash"));
        let default =
            hash_password("a long enough passphrase", &[1; 16], HashCost::default()).unwrap();
        assert!(
            default.contains("m=19456,t=2,p=1"),
            "OWASP parameters: {default}"
        );
    }

    #[test]
    fn policy_rejects_weak_passwords() {
        let p = PasswordPolicy::default();
        assert_eq!(
            p.check("alice", "short"),
            Err(PasswordRejected::TooShort(12))
        );
        assert_eq!(
            p.check("alice", "my-name-is-ALICE-ok"),
            Err(PasswordRejected::ContainsUsername)
        );
        assert_eq!(
            p.check("bob", "Password1234"),
            Err(PasswordRejected::Common)
        );
        assert_eq!(
            p.check("bob", "aaaaaaaaaaaaaaaa"),
            Err(PasswordRejected::Common)
        );
        assert!(p.check("bob", "correct horse battery").is_ok());
        assert!(p.check("bob", &"x1y2".repeat(70)).is_err());
    }

    #[test]
    fn totp_matches_rfc6238_and_refuses_replay() {
        // RFC 6238 appendix B, SHA-1 secret, last 6 digits.
        let t = Totp::new(b"12345678901234567890", "medmesh", "alice").unwrap();
        assert_eq!(t.code_at(59), "287082");
        assert_eq!(t.code_at(1_111_111_109), "081804");
        assert_eq!(t.code_at(1_234_567_890), "005924");
        let now = 1_234_567_890;
        let step = t.check("005924", now, None).unwrap();
        assert_eq!(step, now / 30);
        assert_eq!(
            t.check("005924", now, Some(step)),
            None,
            "replay in the same window"
        );
        assert_eq!(
            t.check("005924", now + 20, Some(step)),
            None,
            "replay in the skew window"
        );
        assert_eq!(t.check("000000", now, None), None);
        assert!(
            t.enrolment_uri()
                .unwrap()
                .starts_with("otpauth://totp/medmesh:alice?")
        );
        assert!(!format!("{t:?}").contains("1234"));
    }

    #[test]
    fn recovery_codes_normalize() {
        let c = recovery_code(&[0xff, 0, 1, 2, 3, 4, 5, 6, 7, 8]);
        assert_eq!(c.len(), 19);
        assert_eq!(
            normalize_recovery_code(&c.to_uppercase().replace('-', " ")),
            c
        );
    }

    #[test]
    fn pkce_s256() {
        // RFC 7636 appendix B.
        let v = "dBjftJeZ4CVP-mB92K27uhbUJU1p1r_wW1gFWFOEjXk";
        assert!(pkce_s256_matches(
            v,
            "E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw-cM"
        ));
        assert!(!pkce_s256_matches(
            v,
            "E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw-cN"
        ));
        assert!(!pkce_s256_matches(
            "short",
            "E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw-cM"
        ));
    }

    proptest! {
        /// The wait is bounded (no permanent lock-out) and grows with failures.
        #[test]
        fn throttle_is_bounded_and_monotonic(failures in 0u32..1000, gap in 0i64..5000) {
            let p = ThrottlePolicy::ACCOUNT;
            let now = 1_000_000;
            let w = p.wait_secs(failures, now - gap, now);
            prop_assert!((0..=p.max_delay_secs).contains(&w));
            prop_assert!(p.wait_secs(failures + 1, now - gap, now) >= w);
            if failures < p.free_attempts {
                prop_assert_eq!(w, 0);
            }
        }
    }
}
