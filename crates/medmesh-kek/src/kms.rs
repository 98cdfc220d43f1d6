//! An external key service: AWS KMS (or anything that speaks its API, such as LocalStack or
//! moto), behind the [`KekProvider`] port. The KEK never leaves KMS: each data key is sent
//! to KMS `Encrypt` and comes back wrapped, and `Decrypt` unwraps it again.
//!
//! Each wrap carries an encryption context (the data key's id and owner), which KMS binds
//! into the ciphertext and logs in CloudTrail, so a wrapped key moved to another row does not
//! unwrap. Requests are signed with AWS Signature V4 by `object_store`'s signer, the same one
//! that signs the vault's S3 requests, over the process's one rustls provider (ring).
//!
//! The KEK id stored beside each wrapped key is `kms:` and the KMS key id or ARN that wrapped
//! it; `keys rotate` with a new `kms_key_id` re-wraps every data key under the new key.

use async_trait::async_trait;
use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use medmesh_crypto::{DataKey, KeyId};
use medmesh_store::{KekError, KekProvider};
use object_store::aws::{AwsAuthorizer, AwsCredential};
use object_store::client::HttpRequestBody;
use serde_json::{Value, json};

/// The prefix of KEK ids that live in KMS.
pub const KMS_PREFIX: &str = "kms:";

/// Where the KMS key is and how to sign in.
#[derive(Clone, Default)]
pub struct KmsSettings {
    /// The key id, ARN or alias (`alias/medmesh`) new data keys are wrapped under.
    pub key_id: String,
    /// Endpoint for a non-AWS service (`http://127.0.0.1:4566`); `None` for AWS.
    pub endpoint: Option<String>,
    /// Region.
    pub region: String,
    /// Access key id.
    pub access_key_id: String,
    /// Secret access key.
    pub secret_access_key: String,
}

impl std::fmt::Debug for KmsSettings {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("KmsSettings")
            .field("key_id", &self.key_id)
            .field("endpoint", &self.endpoint)
            .field("region", &self.region)
            .field("access_key_id", &self.access_key_id)
            .field("secret_access_key", &"[redacted]")
            .finish()
    }
}

/// KEKs held by KMS.
pub struct KmsKek {
    settings: KmsSettings,
    credential: AwsCredential,
    endpoint: String,
    http: reqwest13::Client,
}

impl std::fmt::Debug for KmsKek {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("KmsKek")
            .field("settings", &self.settings)
            .finish_non_exhaustive()
    }
}

fn service(m: impl std::fmt::Display) -> KekError {
    KekError::service(format!("KMS: {m}"))
}

fn context(key_id: &KeyId, owner: &str) -> Value {
    json!({"medmesh-data-key": key_id.to_string(), "medmesh-owner": owner})
}

impl KmsKek {
    /// A provider for the key in `settings`.
    ///
    /// # Errors
    /// When the settings are incomplete or the HTTP client cannot be built.
    pub fn new(settings: KmsSettings) -> Result<Self, KekError> {
        if settings.key_id.trim().is_empty() {
            return Err(service("no key id (kms_key_id)"));
        }
        // The one rustls provider of the process (see medmesh-blobs); a second install is
        // refused, harmlessly.
        let _ = rustls::crypto::ring::default_provider().install_default();
        let endpoint = settings
            .endpoint
            .clone()
            .unwrap_or_else(|| format!("https://kms.{}.amazonaws.com", settings.region));
        Ok(Self {
            credential: AwsCredential {
                key_id: settings.access_key_id.clone(),
                secret_key: settings.secret_access_key.clone(),
                token: None,
            },
            endpoint: endpoint.trim_end_matches('/').to_string(),
            http: reqwest13::Client::builder()
                .build()
                .map_err(|e| service(format!("cannot build the HTTP client: {e}")))?,
            settings,
        })
    }

    /// One signed call of the KMS JSON API (`TrentService.<action>`).
    async fn call(&self, action: &str, body: &Value) -> Result<Value, KekError> {
        let bytes = serde_json::to_vec(body).map_err(service)?;
        let mut req = http::Request::builder()
            .method("POST")
            .uri(format!("{}/", self.endpoint))
            .header("content-type", "application/x-amz-json-1.1")
            .header("x-amz-target", format!("TrentService.{action}"))
            .body(HttpRequestBody::from(bytes.clone()))
            .map_err(service)?;
        AwsAuthorizer::new(&self.credential, "kms", &self.settings.region)
            .try_authorize(&mut req, None)
            .map_err(service)?;
        let mut out = self.http.post(format!("{}/", self.endpoint));
        for (name, value) in req.headers() {
            out = out.header(name.as_str(), value.as_bytes());
        }
        let resp = out
            .body(bytes)
            .send()
            .await
            .map_err(|e| service(format!("unreachable: {e}")))?;
        let status = resp.status();
        let value: Value = resp.json().await.unwrap_or(Value::Null);
        if status.is_success() {
            return Ok(value);
        }
        // KMS errors name a type (`InvalidCiphertextException`, `DisabledException`) and a
        // message about keys, never about the plaintext.
        let kind = value["__type"].as_str().unwrap_or("error");
        if kind.contains("InvalidCiphertext") {
            return Err(KekError::Unauthentic);
        }
        Err(service(format!("{action} failed ({status}): {kind}")))
    }
}

#[async_trait]
impl KekProvider for KmsKek {
    fn current_kek(&self) -> String {
        format!("{KMS_PREFIX}{}", self.settings.key_id)
    }

    async fn wrap(
        &self,
        key: &DataKey,
        key_id: &KeyId,
        owner: &str,
    ) -> Result<(String, Vec<u8>), KekError> {
        let out = self
            .call(
                "Encrypt",
                &json!({
                    "KeyId": self.settings.key_id,
                    "Plaintext": STANDARD.encode(key.expose_bytes()),
                    "EncryptionContext": context(key_id, owner),
                }),
            )
            .await?;
        let blob = out["CiphertextBlob"]
            .as_str()
            .and_then(|b| STANDARD.decode(b).ok())
            .ok_or_else(|| service("Encrypt answered without a ciphertext"))?;
        Ok((self.current_kek(), blob))
    }

    async fn unwrap(
        &self,
        kek_id: &str,
        wrapped: &[u8],
        key_id: &KeyId,
        owner: &str,
    ) -> Result<DataKey, KekError> {
        let kms_key = kek_id
            .strip_prefix(KMS_PREFIX)
            .ok_or_else(|| KekError::Unknown(kek_id.to_string()))?;
        let out = self
            .call(
                "Decrypt",
                &json!({
                    "KeyId": kms_key,
                    "CiphertextBlob": STANDARD.encode(wrapped),
                    "EncryptionContext": context(key_id, owner),
                }),
            )
            .await?;
        let bytes: [u8; 32] = out["Plaintext"]
            .as_str()
            .and_then(|b| STANDARD.decode(b).ok())
            .and_then(|b| b.try_into().ok())
            .ok_or(KekError::Unauthentic)?;
        Ok(DataKey::from_bytes(bytes))
    }
}
