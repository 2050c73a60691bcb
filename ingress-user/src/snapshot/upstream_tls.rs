//! How the router speaks to an Ingress's upstreams: `backend-protocol` and the
//! `proxy-ssl-*` annotations as typed values, and the TLS client they resolve to. Built by
//! `config` when the Snapshot is; read by the router's upstream side.

use std::{fmt, sync::Arc};

use rustls::ClientConfig;

/// `backend-protocol`: how requests reach the upstream (ingress-nginx
/// `internal/ingress/annotations/backendprotocol`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub enum BackendProtocol {
    /// HTTP/1.1 cleartext (or h2c when the Service port's `appProtocol` asks for it).
    #[default]
    Http,
    /// HTTP/1.1 over TLS (ALPN `http/1.1`).
    Https,
    /// HTTP/2 cleartext with prior knowledge (`GRPC`, and `H2C`).
    Grpc,
    /// HTTP/2 over TLS (ALPN `h2`).
    Grpcs,
}

impl BackendProtocol {
    /// Whether the upstream connection is TLS.
    pub fn is_tls(self) -> bool {
        matches!(self, Self::Https | Self::Grpcs)
    }

    /// Whether the upstream speaks HTTP/2.
    pub fn is_h2(self) -> bool {
        matches!(self, Self::Grpc | Self::Grpcs)
    }
}

/// A TLS protocol version `proxy-ssl-protocols` may name that rustls speaks.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum TlsVersion {
    /// TLS 1.2.
    Tls12,
    /// TLS 1.3.
    Tls13,
}

/// The `proxy-ssl-*` annotations, parsed (ingress-nginx applies none of them without
/// `proxy-ssl-secret`, and neither do we).
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct ProxySsl {
    /// `proxy-ssl-secret`: `(namespace, name)` of a Secret with `ca.crt`, and optionally
    /// `tls.crt` + `tls.key` presented to the upstream.
    pub secret: Option<(String, String)>,
    /// `proxy-ssl-verify`: verify the upstream's certificate against `ca.crt` (default off).
    pub verify: bool,
    /// `proxy-ssl-verify-depth` (default 1): most CA certificates between the upstream's
    /// own and the trust anchor.
    pub verify_depth: u32,
    /// `proxy-ssl-name`: the name verified and, with `server_name`, sent as SNI.
    pub name: Option<String>,
    /// `proxy-ssl-server-name`: send SNI (default off, as nginx's `proxy_ssl_server_name`).
    pub server_name: bool,
    /// `proxy-ssl-protocols` that rustls speaks (default TLS 1.2 and 1.3).
    pub versions: Vec<TlsVersion>,
}

impl Default for ProxySsl {
    fn default() -> Self {
        Self {
            secret: None,
            verify: false,
            verify_depth: 1,
            name: None,
            server_name: false,
            versions: vec![TlsVersion::Tls12, TlsVersion::Tls13],
        }
    }
}

/// The TLS client of one Ingress's HTTPS or GRPCS upstreams, made from its [`ProxySsl`]
/// and Secret when the Snapshot is built, so connecting only ever uses a ready config.
#[derive(Clone)]
pub struct UpstreamTls {
    /// The rustls client (verifier, client certificate, versions, ALPN, SNI on or off).
    pub config: Arc<ClientConfig>,
    /// `proxy-ssl-name`; without it the Service's DNS name `<name>.<namespace>.svc`.
    pub name: Option<String>,
    /// Identifies the settings and Secret contents (a hash): pooled connections are only
    /// reused by requests asking for the same TLS client, also across Snapshots.
    pub id: u64,
    /// What it was made of, for `Debug` and equality (no key material).
    pub summary: String,
}

impl PartialEq for UpstreamTls {
    fn eq(&self, other: &Self) -> bool {
        self.id == other.id && self.summary == other.summary
    }
}

impl Eq for UpstreamTls {}

impl fmt::Debug for UpstreamTls {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "UpstreamTls({}, {:016x})", self.summary, self.id)
    }
}
