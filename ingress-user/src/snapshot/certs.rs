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

    /// The certificate for an SNI name with Gateway API hostname semantics: the exact
    /// host, then the longest wildcard suffix in front of which are one or more labels
    /// (`*.foo.com` for `a.b.foo.com` too).
    pub fn get_gateway(&self, sni: &str) -> Option<&Arc<TlsCert>> {
        let sni = super::routes::normalize_host(sni);
        self.exact.get(sni.as_ref()).or_else(|| {
            sni.match_indices('.')
                .filter(|&(i, _)| i > 0 && i + 1 < sni.len())
                .find_map(|(i, _)| self.wildcard.get(&sni[i + 1..]))
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

#[cfg(test)]
mod tests {
    use super::*;

    fn cert(name: &str) -> Arc<TlsCert> {
        Arc::new(TlsCert {
            secret: ObjectRef {
                kind: "Secret".into(),
                namespace: Some("default".into()),
                name: name.into(),
            },
            chain: Vec::new(),
            key: PrivateKeyDer::Pkcs8(Vec::new().into()),
        })
    }

    #[test]
    fn gateway_lookup_takes_wildcards_of_one_or_more_labels_longest_first() {
        let mut set = CertSet::default();
        set.insert("foo.example.com", cert("exact")).unwrap();
        set.insert("*.example.com", cert("wild")).unwrap();
        set.insert("*.b.example.com", cert("wild-b")).unwrap();
        for (sni, gateway, ingress) in [
            ("foo.example.com", Some("exact"), Some("exact")),
            ("FOO.example.com", Some("exact"), Some("exact")),
            ("bar.example.com", Some("wild"), Some("wild")),
            ("a.bar.example.com", Some("wild"), None),
            ("a.b.example.com", Some("wild-b"), Some("wild-b")),
            ("x.a.b.example.com", Some("wild-b"), None),
            ("example.com", None, None),
            ("example.", None, None),
        ] {
            let name = |c: Option<&Arc<TlsCert>>| c.map(|c| c.secret.name.clone());
            assert_eq!(name(set.get_gateway(sni)).as_deref(), gateway, "{sni}");
            assert_eq!(name(set.get(sni)).as_deref(), ingress, "{sni}");
        }
    }
}
