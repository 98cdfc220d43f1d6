//! TLS for MLLP: the node's certificate and key, and, for mutual TLS, the CAs whose client
//! certificates it accepts.

use std::path::PathBuf;
use std::sync::Arc;

use rustls::server::WebPkiClientVerifier;
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer};

/// Where the TLS material is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TlsSettings {
    /// The node's certificate chain (PEM).
    pub certificate: PathBuf,
    /// Its private key (PEM).
    pub private_key: PathBuf,
    /// CAs whose client certificates are required (PEM); `None` for TLS without client
    /// certificates.
    pub client_ca: Option<PathBuf>,
}

/// Why TLS could not be set up; the text names the file, never its content.
#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    /// A file could not be read or holds no usable PEM.
    #[error("{0}: {1}")]
    File(String, String),
    /// rustls refused the material.
    #[error("TLS setup: {0}")]
    Rustls(#[from] rustls::Error),
}

fn certificates(path: &PathBuf) -> Result<Vec<CertificateDer<'static>>, TlsError> {
    let name = path.display().to_string();
    let certs: Vec<CertificateDer<'static>> = CertificateDer::pem_file_iter(path)
        .map_err(|e| TlsError::File(name.clone(), e.to_string()))?
        .collect::<Result<_, _>>()
        .map_err(|e| TlsError::File(name.clone(), e.to_string()))?;
    if certs.is_empty() {
        return Err(TlsError::File(name, "no certificate in the file".into()));
    }
    Ok(certs)
}

/// The TLS acceptor for these settings, on the ring provider.
///
/// # Errors
/// [`TlsError`] naming the file that is missing or wrong.
pub fn acceptor(settings: &TlsSettings) -> Result<tokio_rustls::TlsAcceptor, TlsError> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let chain = certificates(&settings.certificate)?;
    let key = PrivateKeyDer::from_pem_file(&settings.private_key)
        .map_err(|e| TlsError::File(settings.private_key.display().to_string(), e.to_string()))?;
    let builder = rustls::ServerConfig::builder_with_provider(provider.clone())
        .with_safe_default_protocol_versions()?;
    let config = match &settings.client_ca {
        Some(ca) => {
            let mut roots = rustls::RootCertStore::empty();
            for cert in certificates(ca)? {
                roots.add(cert)?;
            }
            let verifier = WebPkiClientVerifier::builder_with_provider(Arc::new(roots), provider)
                .build()
                .map_err(|e| TlsError::File(ca.display().to_string(), e.to_string()))?;
            builder
                .with_client_cert_verifier(verifier)
                .with_single_cert(chain, key)?
        }
        None => builder.with_no_client_auth().with_single_cert(chain, key)?,
    };
    Ok(tokio_rustls::TlsAcceptor::from(Arc::new(config)))
}
