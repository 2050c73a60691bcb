//! TLS certificates from `kubernetes.io/tls` Secrets, parsed and checked here so the data
//! plane only ever sees usable ones.

use rustls_pki_types::{CertificateDer, PrivateKeyDer, pem::PemObject};

pub use crate::snapshot::certs::{CertSet, TlsCert};

/// Why a Secret's PEM could not be used.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum PemError {
    /// No `CERTIFICATE` block.
    #[error("no PEM CERTIFICATE block found")]
    NoCertificate,
    /// No private key block.
    #[error(
        "no PEM private key block found (expected PRIVATE KEY, RSA PRIVATE KEY or EC PRIVATE KEY)"
    )]
    NoKey,
    /// A block that does not decode.
    #[error("invalid PEM: {0}")]
    Invalid(String),
}

/// Parses `tls.crt` into a chain (leaf first).
pub fn parse_chain(pem: &[u8]) -> Result<Vec<CertificateDer<'static>>, PemError> {
    let chain = CertificateDer::pem_slice_iter(pem)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| PemError::Invalid(e.to_string()))?;
    if chain.is_empty() {
        return Err(PemError::NoCertificate);
    }
    Ok(chain)
}

/// Parses `tls.key`.
pub fn parse_key(pem: &[u8]) -> Result<PrivateKeyDer<'static>, PemError> {
    PrivateKeyDer::from_pem_slice(pem).map_err(|e| match e {
        rustls_pki_types::pem::Error::NoItemsFound => PemError::NoKey,
        e => PemError::Invalid(e.to_string()),
    })
}
