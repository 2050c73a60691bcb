//! TLS termination: certificates chosen per handshake by SNI from the current Snapshot.
//!
//! Lookup order for a ClientHello:
//! 1. the SNI name exactly, then its one-label wildcard (`*.foo.com`), from the Secrets that
//!    Ingress `tls` entries reference;
//! 2. the certificate of a `tls` entry that lists no hosts, if any;
//! 3. a self-signed **default certificate** generated at start (CN and SAN
//!    `ingress.local`, like ingress-nginx's "fake certificate"). Clients that verify
//!    certificates will reject it; it exists so that unknown names and clients without SNI
//!    still complete a handshake and get the default backend's answer.
//!
//! `CertifiedKey`s are built once per Secret version and cached, so a handshake only does a
//! map lookup; a new Snapshot with a changed Secret yields a new `TlsCert` and thus a new
//! key on the next handshake. No restart is needed.

use std::{
    collections::HashMap,
    sync::{Arc, Mutex, PoisonError},
};

use arc_swap::ArcSwap;
use rustls::{
    ServerConfig,
    crypto::CryptoProvider,
    server::{ClientHello, ResolvesServerCert},
    sign::CertifiedKey,
};
use rustls_pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer};
use tracing::{debug, warn};

use crate::{
    config::{ObjectRef, Snapshot, tls::TlsCert},
    snapshot::{certs::CertSet, gateway::ListenAddr},
};

/// The name in the default certificate.
pub const DEFAULT_CERT_NAME: &str = "ingress.local";

/// Why TLS could not be set up.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// Generating the default certificate failed.
    #[error("generating the default self-signed certificate: {0}")]
    DefaultCert(#[from] rcgen::Error),
    /// rustls refused the configuration or a key.
    #[error("TLS configuration: {0}")]
    Rustls(#[from] rustls::Error),
}

/// The crypto provider: ring only.
pub fn provider() -> Arc<CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

/// Generates the self-signed default certificate and its key.
pub fn default_certificate() -> Result<(CertificateDer<'static>, PrivateKeyDer<'static>), Error> {
    let mut params = rcgen::CertificateParams::new(vec![DEFAULT_CERT_NAME.to_owned()])?;
    params
        .distinguished_name
        .push(rcgen::DnType::CommonName, DEFAULT_CERT_NAME);
    params.distinguished_name.push(
        rcgen::DnType::OrganizationName,
        "xdp-ingress default certificate",
    );
    let key = rcgen::KeyPair::generate()?;
    let cert = params.self_signed(&key)?;
    Ok((
        cert.der().clone(),
        PrivatePkcs8KeyDer::from(key.serialize_der()).into(),
    ))
}

/// A built key and the `TlsCert` it was built from (compared by pointer to spot changes).
type BuiltKey = (Arc<TlsCert>, Arc<CertifiedKey>);

/// Picks a certificate by SNI from the current Snapshot's `CertSet`.
#[derive(Debug)]
pub struct CertResolver {
    snapshot: Arc<ArcSwap<Snapshot>>,
    provider: Arc<CryptoProvider>,
    default: Arc<CertifiedKey>,
    /// Built keys by Secret, with the `TlsCert` they were built from (compared by pointer).
    cache: Mutex<HashMap<ObjectRef, BuiltKey>>,
    /// Whose certificates: the Ingress ones (`None`), or those of a Gateway listening
    /// address with a socket of its own.
    gateway: Option<ListenAddr>,
    /// The HTTPS port of an Ingress resolver: Gateway HTTPS listeners on that port share
    /// its socket, so their certificates are looked up after the Ingress ones.
    shared_port: Option<u16>,
}

impl CertResolver {
    /// A resolver reading certificates from `snapshot`, with a freshly generated default.
    pub fn new(snapshot: Arc<ArcSwap<Snapshot>>) -> Result<Self, Error> {
        let provider = provider();
        let (cert, key) = default_certificate()?;
        let signing = provider.key_provider.load_private_key(key)?;
        Ok(Self {
            snapshot,
            default: Arc::new(CertifiedKey::new(vec![cert], signing)),
            provider,
            cache: Mutex::default(),
            gateway: None,
            shared_port: None,
        })
    }

    /// A resolver for a Gateway listening address with a socket of its own: certificates
    /// of its listeners ([`CertSet::get_gateway`]), then their default, then the same
    /// generated default as `self`.
    pub fn for_gateway(&self, addr: ListenAddr) -> Self {
        Self {
            snapshot: Arc::clone(&self.snapshot),
            provider: Arc::clone(&self.provider),
            default: Arc::clone(&self.default),
            cache: Mutex::default(),
            gateway: Some(addr),
            shared_port: None,
        }
    }

    /// Makes an Ingress resolver also serve the certificates of Gateway HTTPS listeners
    /// on `port` (the `--https-port` socket they share), after the Ingress ones.
    pub fn share_port(&mut self, port: u16) {
        self.shared_port = Some(port);
    }

    /// The default certificate's chain (for tests and diagnostics).
    pub fn default_chain(&self) -> &[CertificateDer<'static>] {
        &self.default.cert
    }

    /// Drops cached keys whose Secret is no longer in any live Snapshot.
    pub fn prune(&self) {
        self.cache
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .retain(|_, (cert, _)| Arc::strong_count(cert) > 1);
    }

    fn certified(&self, cert: &Arc<TlsCert>) -> Option<Arc<CertifiedKey>> {
        let mut cache = self.cache.lock().unwrap_or_else(PoisonError::into_inner);
        if let Some((built_from, key)) = cache.get(&cert.secret)
            && Arc::ptr_eq(built_from, cert)
        {
            return Some(Arc::clone(key));
        }
        match self
            .provider
            .key_provider
            .load_private_key(cert.key.clone_key())
        {
            Ok(signing) => {
                let key = Arc::new(CertifiedKey::new(cert.chain.clone(), signing));
                debug!(secret = %cert.secret, "built TLS key");
                cache.insert(cert.secret.clone(), (Arc::clone(cert), Arc::clone(&key)));
                Some(key)
            }
            Err(e) => {
                warn!(secret = %cert.secret, error = %e, "TLS key unusable; serving the default certificate");
                None
            }
        }
    }
}

impl ResolvesServerCert for CertResolver {
    fn resolve(&self, hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        let snapshot = self.snapshot.load();
        let gateway = |port| {
            snapshot
                .gateway
                .ports
                .iter()
                .filter(move |(a, r)| r.tls && self.gateway.map_or(a.port == port, |g| **a == g))
                .map(|(_, r)| &*r.certs)
        };
        let pick = |set: &'_ CertSet, sni: Option<&str>, gateway: bool| match sni {
            Some(sni) if gateway => set.get_gateway(sni).cloned(),
            Some(sni) => set.get(sni).cloned(),
            None => None,
        };
        let sni = hello.server_name();
        let found = match (self.gateway, self.shared_port) {
            (Some(addr), _) => gateway(addr.port)
                .find_map(|set| pick(set, sni, true).or_else(|| set.default_cert().cloned())),
            (None, shared) => pick(&snapshot.tls, sni, false)
                .or_else(|| shared.and_then(|p| gateway(p).find_map(|set| pick(set, sni, true))))
                .or_else(|| snapshot.tls.default_cert().cloned()),
        };
        Some(
            found
                .and_then(|cert| self.certified(&cert))
                .unwrap_or_else(|| Arc::clone(&self.default)),
        )
    }
}

/// The rustls server configuration: ALPN `h2` then `http/1.1`, certificates from `resolver`.
pub fn server_config(resolver: Arc<CertResolver>) -> Result<ServerConfig, Error> {
    let mut config = ServerConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()?
        .with_no_client_auth()
        .with_cert_resolver(resolver);
    config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    Ok(config)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn default_certificate_names_ingress_local() {
        let (cert, key) = default_certificate().unwrap();
        assert!(!cert.is_empty());
        assert!(matches!(key, PrivateKeyDer::Pkcs8(_)));
        // rustls accepts the generated key.
        provider().key_provider.load_private_key(key).unwrap();
        let der: &[u8] = cert.as_ref();
        assert!(
            der.windows(DEFAULT_CERT_NAME.len())
                .any(|w| w == DEFAULT_CERT_NAME.as_bytes())
        );
    }

    #[test]
    fn server_config_offers_h2_then_http11() {
        let snapshot = Arc::new(ArcSwap::from_pointee(Snapshot::default()));
        let resolver = Arc::new(CertResolver::new(snapshot).unwrap());
        let config = server_config(resolver).unwrap();
        assert_eq!(
            config.alpn_protocols,
            [b"h2".to_vec(), b"http/1.1".to_vec()]
        );
    }
}
