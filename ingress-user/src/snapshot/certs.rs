//! The certificates of a Snapshot, by SNI host. Parsing and checking Secrets is the
//! translation's job (`config::tls`); the data plane only ever sees usable ones.

use std::{collections::HashMap, sync::Arc};

use rustls_pki_types::{CertificateDer, PrivateKeyDer};

use super::ObjectRef;

/// A parsed certificate chain and private key from one Secret.
#[derive(Debug)]
pub struct TlsCert {
    /// The Secret it came from.
    pub secret: ObjectRef,
    /// Leaf first, as in `tls.crt`.
    pub chain: Vec<CertificateDer<'static>>,
    /// The key from `tls.key` (PKCS#8, PKCS#1 or SEC1).
    pub key: PrivateKeyDer<'static>,
}

impl PartialEq for TlsCert {
    fn eq(&self, other: &Self) -> bool {
        self.secret == other.secret
            && self.chain == other.chain
            && self.key.secret_der() == other.key.secret_der()
    }
}

/// Certificates by SNI host. Lookup: the exact host, then a one-label wildcard
/// (`*.foo.com` for `bar.foo.com`).
#[derive(Clone, Debug, Default)]
pub struct CertSet {
    exact: HashMap<String, Arc<TlsCert>>,
    wildcard: HashMap<String, Arc<TlsCert>>,
    default: Option<Arc<TlsCert>>,
}

impl CertSet {
    /// The certificate for an SNI name (any case), exact host first, then a one-label wildcard.
    pub fn get(&self, sni: &str) -> Option<&Arc<TlsCert>> {
        let sni = super::routes::normalize_host(sni);
        self.exact.get(sni.as_ref()).or_else(|| {
            sni.split_once('.')
                .filter(|(label, suffix)| !label.is_empty() && !suffix.is_empty())
                .and_then(|(_, suffix)| self.wildcard.get(suffix))
        })
    }

    /// The certificate of a `tls` entry that lists no hosts (oldest Ingress wins), for
    /// clients without SNI or hosts with no certificate of their own.
    pub fn default_cert(&self) -> Option<&Arc<TlsCert>> {
        self.default.as_ref()
    }

    /// Adds a certificate for a host (`foo.com` or `*.foo.com`). The first one added wins;
    /// returns the existing certificate's Secret if there already was one.
    pub fn insert(&mut self, host: &str, cert: Arc<TlsCert>) -> Result<(), ObjectRef> {
        let host = host.trim().to_ascii_lowercase();
        let map = match host.strip_prefix("*.") {
            Some(suffix) => self.wildcard.entry(suffix.to_owned()),
            None => self.exact.entry(host),
        };
        match map {
            std::collections::hash_map::Entry::Occupied(e) => Err(e.get().secret.clone()),
            std::collections::hash_map::Entry::Vacant(e) => {
                e.insert(cert);
                Ok(())
            }
        }
    }

    /// Sets the default certificate unless one is set; returns the existing one's Secret if so.
    pub fn set_default(&mut self, cert: Arc<TlsCert>) -> Result<(), ObjectRef> {
        match &self.default {
            Some(c) => Err(c.secret.clone()),
            None => {
                self.default = Some(cert);
                Ok(())
            }
        }
    }

    /// Every (host, certificate), sorted by host, for display.
    pub fn entries(&self) -> Vec<(String, &Arc<TlsCert>)> {
        let mut v: Vec<_> = self
            .exact
            .iter()
            .map(|(h, c)| (h.clone(), c))
            .chain(self.wildcard.iter().map(|(s, c)| (format!("*.{s}"), c)))
            .collect();
        v.sort_by(|a, b| a.0.cmp(&b.0));
        v
    }

    /// Number of host entries.
    pub fn len(&self) -> usize {
        self.exact.len() + self.wildcard.len()
    }

    /// Whether there is no host entry.
    pub fn is_empty(&self) -> bool {
        self.exact.is_empty() && self.wildcard.is_empty()
    }
}
