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
//! lock-free map lookup; a new Snapshot with a changed Secret yields a new `TlsCert` and thus
//! a new key on the next handshake. No restart is needed. RSA and ECDSA (P-256, P-384) keys
//! in PKCS#8, PKCS#1 or SEC1 form are served as they are; an ECDSA certificate makes the
//! handshake's signature several times cheaper than RSA-2048.
//!
//! Cost of a handshake (see BENCHMARKS.md "TLS"): the provider is aws-lc-rs, whose RSA,
//! P-256 and X25519 code is markedly faster than ring's; X25519 is the preferred key
//! exchange and AES-128-GCM-SHA256 the preferred suite. Resumption ([`Resumption`]) skips the signature and the certificate entirely:
//! - TLS 1.3 PSK resumption from **stateless tickets**, encrypted under a key that rotates
//!   every 6 hours (the previous key still decrypts, so a ticket lives at most 12 hours).
//!   One ticketer serves every worker and listener of the process, so a ticket issued by
//!   one worker resumes on any other;
//! - a bounded **server-side session cache** ([`SESSION_CACHE_SIZE`] entries) for TLS 1.2
//!   clients that resume by session id instead of tickets.
//!
//! **0-RTT (early data) is off** and stays off: early data can be replayed by anyone who
//! captured it, and a proxy cannot know which upstream requests are safe to repeat.
use std::{
    collections::HashMap,
    fmt,
    sync::{Arc, Mutex, PoisonError},
};

use arc_swap::ArcSwap;
use rustls::{
    ServerConfig,
    crypto::{CryptoProvider, aws_lc_rs},
    server::{
        ClientHello, ProducesTickets, ResolvesServerCert, ServerSessionMemoryCache,
        StoresServerSessions,
    },
    sign::CertifiedKey,
};
use rustls_pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer};
use tokio_rustls::TlsAcceptor;
use tracing::{debug, warn};

use crate::{
    config::{ObjectRef, Snapshot, tls::TlsCert},
    snapshot::gateway::ListenAddr,
};

/// The name in the default certificate.
pub const DEFAULT_CERT_NAME: &str = "ingress.local";

/// Entries in the server-side session cache (TLS 1.2 session ids). Each is a few hundred
/// bytes, so the cache stays under ~10 MB, about what nginx's `shared:SSL:10m` holds.
pub const SESSION_CACHE_SIZE: usize = 20_000;

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

/// The crypto provider: aws-lc-rs, with the key exchange groups in an explicit order.
///
/// X25519 comes first: it is the cheapest group and the one clients send a key share for,
/// so no HelloRetryRequest round trip. The post-quantum hybrid is still offered, last; the
/// order is written out so that a crate enabling rustls's `prefer-post-quantum` feature
/// elsewhere in the build cannot silently change it.
///
/// Cipher suites: AES-128-GCM first (see [`server_config`], which makes this order the
/// server's choice), then AES-256-GCM, then ChaCha20-Poly1305.
pub fn provider() -> Arc<CryptoProvider> {
    use aws_lc_rs::{cipher_suite as cs, kx_group};
    Arc::new(CryptoProvider {
        kx_groups: vec![
            kx_group::X25519,
            kx_group::SECP256R1,
            kx_group::SECP384R1,
            kx_group::X25519MLKEM768,
        ],
        cipher_suites: vec![
            cs::TLS13_AES_128_GCM_SHA256,
            cs::TLS13_AES_256_GCM_SHA384,
            cs::TLS13_CHACHA20_POLY1305_SHA256,
            cs::TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256,
            cs::TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256,
            cs::TLS_ECDHE_ECDSA_WITH_AES_256_GCM_SHA384,
            cs::TLS_ECDHE_RSA_WITH_AES_256_GCM_SHA384,
            cs::TLS_ECDHE_ECDSA_WITH_CHACHA20_POLY1305_SHA256,
            cs::TLS_ECDHE_RSA_WITH_CHACHA20_POLY1305_SHA256,
        ],
        ..aws_lc_rs::default_provider()
    })
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
    /// Built keys by Secret, with the `TlsCert` they were built from. Handshakes only read
    /// it (no lock on the hot path); a miss builds the key under `building` and swaps in
    /// a new map.
    cache: ArcSwap<HashMap<ObjectRef, BuiltKey>>,
    building: Mutex<()>,
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
            cache: ArcSwap::default(),
            building: Mutex::default(),
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
            cache: ArcSwap::default(),
            building: Mutex::default(),
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
        let _building = self.building.lock().unwrap_or_else(PoisonError::into_inner);
        let cache = self.cache.load();
        if cache.values().any(|(cert, _)| Arc::strong_count(cert) == 1) {
            let mut kept = HashMap::clone(&cache);
            kept.retain(|_, (cert, _)| Arc::strong_count(cert) > 1);
            self.cache.store(Arc::new(kept));
        }
    }

    fn certified(&self, cert: &Arc<TlsCert>) -> Option<Arc<CertifiedKey>> {
        let cached = |cache: &HashMap<ObjectRef, BuiltKey>| {
            cache
                .get(&cert.secret)
                .filter(|(built_from, _)| Arc::ptr_eq(built_from, cert))
                .map(|(_, key)| Arc::clone(key))
        };
        if let Some(key) = cached(&self.cache.load()) {
            return Some(key);
        }
        let _building = self.building.lock().unwrap_or_else(PoisonError::into_inner);
        // Another handshake may have built it while this one waited.
        if let Some(key) = cached(&self.cache.load()) {
            return Some(key);
        }
        match self
            .provider
            .key_provider
            .load_private_key(cert.key.clone_key())
        {
            Ok(signing) => {
                let key = Arc::new(CertifiedKey::new(cert.chain.clone(), signing));
                debug!(secret = %cert.secret, algorithm = ?key.key.algorithm(), "built TLS key");
                let mut cache = HashMap::clone(&self.cache.load());
                cache.insert(cert.secret.clone(), (Arc::clone(cert), Arc::clone(&key)));
                self.cache.store(Arc::new(cache));
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
        let sni = hello.server_name();
        let found = match self.gateway {
            // A Gateway address's own socket: its listeners' certificates, then theirs
            // for clients without SNI or with a name no listener has.
            Some(addr) => snapshot.gateway.ports.get(&addr).and_then(|r| {
                sni.and_then(|s| r.certs.get_gateway(s))
                    .or_else(|| r.certs.default_cert())
                    .cloned()
            }),
            // An Ingress socket: the Ingress certificates, then those of Gateway HTTPS
            // listeners sharing its port, then the Ingress default.
            None => sni
                .and_then(|s| snapshot.tls.get(s))
                .cloned()
                .or_else(|| {
                    let (port, sni) = (self.shared_port?, sni?);
                    snapshot
                        .gateway
                        .ports
                        .iter()
                        .filter(|(a, r)| r.tls && a.port == port)
                        .find_map(|(_, r)| r.certs.get_gateway(sni))
                        .cloned()
                })
                .or_else(|| snapshot.tls.default_cert().cloned()),
        };
        Some(
            found
                .and_then(|cert| self.certified(&cert))
                .unwrap_or_else(|| Arc::clone(&self.default)),
        )
    }
}

/// Session resumption state, made once per process and shared by every listener and
/// worker: a ticket issued on one connection resumes on any other.
#[derive(Clone)]
pub struct Resumption {
    tickets: Arc<dyn ProducesTickets>,
    cache: Arc<dyn StoresServerSessions>,
}

impl Resumption {
    /// Stateless tickets under a rotating key, and a session cache of `cache_size` entries.
    pub fn new(cache_size: usize) -> Result<Self, Error> {
        Ok(Self {
            tickets: aws_lc_rs::Ticketer::new()?,
            cache: ServerSessionMemoryCache::new(cache_size),
        })
    }
}

impl fmt::Debug for Resumption {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Resumption")
            .field("tickets", &self.tickets.enabled())
            .finish_non_exhaustive()
    }
}

/// The rustls server configuration: ALPN `h2` then `http/1.1`, certificates from
/// `resolver`, resumption from `resumption`, no early data.
pub fn server_config(
    resolver: Arc<dyn ResolvesServerCert>,
    resumption: &Resumption,
) -> Result<ServerConfig, Error> {
    let mut config = ServerConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()?
        .with_no_client_auth()
        .with_cert_resolver(resolver);
    config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    // Our suite order, not the client's: OpenSSL-based clients (curl, wrk, most API
    // clients) ask for AES-256-GCM-SHA384 first, whose SHA-384 key schedule runs in
    // software on x86 and took ~14% of a resumed handshake (perf); AES-128-GCM-SHA256 uses
    // the CPU's SHA extensions and is what browsers prefer anyway.
    config.ignore_client_order = true;
    config.ticketer = Arc::clone(&resumption.tickets);
    config.session_storage = Arc::clone(&resumption.cache);
    // 0-RTT stays off: early data is replayable (see the module docs).
    config.max_early_data_size = 0;
    Ok(config)
}

/// The TLS acceptor of one listener: its certificates come from `resolver` (the Ingress
/// certificate set, or a listener's own), resumption state is the process's.
pub fn acceptor(
    resolver: Arc<dyn ResolvesServerCert>,
    resumption: &Resumption,
) -> Result<TlsAcceptor, Error> {
    Ok(TlsAcceptor::from(Arc::new(server_config(
        resolver, resumption,
    )?)))
}

#[cfg(test)]
mod tests {
    use rustls::{
        ClientConfig, ClientConnection, HandshakeKind, NamedGroup, ProtocolVersion, RootCertStore,
        ServerConnection, SignatureAlgorithm, client::Resumption as ClientResumption,
    };
    use rustls_pki_types::ServerName;

    use super::*;
    use crate::config::tls::{parse_chain, parse_key};

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
    fn server_config_offers_h2_then_http11_resumes_and_refuses_early_data() {
        let config = server_config(resolver(Snapshot::default()), &resumption()).unwrap();
        assert_eq!(
            config.alpn_protocols,
            [b"h2".to_vec(), b"http/1.1".to_vec()]
        );
        assert!(config.ticketer.enabled(), "stateless tickets are on");
        assert!(config.send_tls13_tickets > 0);
        assert_eq!(config.max_early_data_size, 0, "0-RTT is off");
    }

    #[test]
    fn the_server_picks_aes_128_gcm_over_a_client_preferring_aes_256() {
        use aws_lc_rs::cipher_suite as cs;
        let (cert, ca) = leaf(&rcgen::PKCS_ECDSA_P256_SHA256, KeyForm::Pkcs8, "site.test");
        let server =
            Arc::new(server_config(resolver(snapshot_with(&cert)), &resumption()).unwrap());
        for version in [&rustls::version::TLS13, &rustls::version::TLS12] {
            let mut roots = RootCertStore::empty();
            roots.add(ca.clone()).unwrap();
            let mut client_provider = aws_lc_rs::default_provider();
            client_provider.cipher_suites = vec![
                cs::TLS13_AES_256_GCM_SHA384,
                cs::TLS13_AES_128_GCM_SHA256,
                cs::TLS_ECDHE_ECDSA_WITH_AES_256_GCM_SHA384,
                cs::TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256,
            ];
            let client = Arc::new(
                ClientConfig::builder_with_provider(Arc::new(client_provider))
                    .with_protocol_versions(&[version])
                    .unwrap()
                    .with_root_certificates(roots)
                    .with_no_client_auth(),
            );
            let c = handshake(&client, &server, "site.test");
            let suite = c.negotiated_cipher_suite().unwrap().suite();
            let expected = if version == &rustls::version::TLS13 {
                cs::TLS13_AES_128_GCM_SHA256.suite()
            } else {
                cs::TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256.suite()
            };
            assert_eq!(suite, expected, "{version:?}");
        }
    }

    #[test]
    fn key_exchange_prefers_x25519_then_p256() {
        let groups: Vec<NamedGroup> = provider().kx_groups.iter().map(|g| g.name()).collect();
        assert_eq!(
            groups,
            [
                NamedGroup::X25519,
                NamedGroup::secp256r1,
                NamedGroup::secp384r1,
                NamedGroup::X25519MLKEM768
            ]
        );
    }

    /// Each key form a `kubernetes.io/tls` Secret may hold, with the signature algorithm
    /// the resolver must serve it with.
    #[test]
    fn resolver_serves_rsa_and_ecdsa_keys_in_every_form() {
        let cases: [(
            &str,
            &rcgen::SignatureAlgorithm,
            KeyForm,
            SignatureAlgorithm,
        ); 4] = [
            (
                "ecdsa p-256 pkcs8",
                &rcgen::PKCS_ECDSA_P256_SHA256,
                KeyForm::Pkcs8,
                SignatureAlgorithm::ECDSA,
            ),
            (
                "ecdsa p-256 sec1",
                &rcgen::PKCS_ECDSA_P256_SHA256,
                KeyForm::Sec1,
                SignatureAlgorithm::ECDSA,
            ),
            (
                "ecdsa p-384 pkcs8",
                &rcgen::PKCS_ECDSA_P384_SHA384,
                KeyForm::Pkcs8,
                SignatureAlgorithm::ECDSA,
            ),
            (
                "ed25519 pkcs8",
                &rcgen::PKCS_ED25519,
                KeyForm::Pkcs8,
                SignatureAlgorithm::ED25519,
            ),
        ];
        for (name, alg, form, expected) in cases {
            let (cert, _) = leaf(alg, form, "site.test");
            let snapshot = snapshot_with(&cert);
            let resolver = CertResolver::new(Arc::new(ArcSwap::from_pointee(snapshot))).unwrap();
            let key = resolver
                .certified(&cert)
                .unwrap_or_else(|| panic!("{name}: key refused"));
            assert_eq!(key.key.algorithm(), expected, "{name}");
            assert_eq!(key.cert, cert.chain, "{name}");
            // Built once: the second lookup is the same key.
            assert!(
                Arc::ptr_eq(&key, &resolver.certified(&cert).unwrap()),
                "{name}"
            );
        }
    }

    #[test]
    fn an_ecdsa_certificate_completes_a_handshake() {
        let (cert, ca) = leaf(&rcgen::PKCS_ECDSA_P256_SHA256, KeyForm::Sec1, "site.test");
        let resolver = resolver(snapshot_with(&cert));
        let server = Arc::new(server_config(resolver, &resumption()).unwrap());
        let client = client_config(&ca, &rustls::version::TLS13);
        let c = handshake(&client, &server, "site.test");
        let leaf: &[u8] = c.peer_certificates().unwrap()[0].as_ref();
        assert_eq!(leaf, cert.chain[0].as_ref());
        assert_eq!(
            c.negotiated_key_exchange_group().unwrap().name(),
            NamedGroup::X25519
        );
    }

    /// Two configs sharing one `Resumption` stand for two workers: a session from one
    /// resumes on the other, for TLS 1.3 (tickets) and TLS 1.2 (tickets, then the cache);
    /// a config with its own `Resumption` (another process) does a full handshake.
    #[test]
    fn sessions_resume_across_workers_sharing_resumption_state() {
        let (cert, ca) = leaf(&rcgen::PKCS_ECDSA_P256_SHA256, KeyForm::Pkcs8, "site.test");
        let shared = resumption();
        let worker =
            |r: &Resumption| Arc::new(server_config(resolver(snapshot_with(&cert)), r).unwrap());
        let (a, b, other) = (worker(&shared), worker(&shared), worker(&resumption()));
        for version in [&rustls::version::TLS13, &rustls::version::TLS12] {
            let client = client_config(&ca, version);
            let first = handshake(&client, &a, "site.test");
            assert_eq!(
                first.handshake_kind(),
                Some(HandshakeKind::Full),
                "{version:?}"
            );
            let second = handshake(&client, &b, "site.test");
            assert_eq!(
                second.handshake_kind(),
                Some(HandshakeKind::Resumed),
                "{version:?}"
            );
            let elsewhere = handshake(&client, &other, "site.test");
            assert_eq!(
                elsewhere.handshake_kind(),
                Some(HandshakeKind::Full),
                "{version:?}"
            );
        }
        // TLS 1.2 without tickets resumes by session id from the shared cache.
        let mut client = client_config(&ca, &rustls::version::TLS12);
        Arc::get_mut(&mut client).unwrap().resumption = ClientResumption::in_memory_sessions(8)
            .tls12_resumption(rustls::client::Tls12Resumption::SessionIdOnly);
        let first = handshake(&client, &a, "site.test");
        assert_eq!(first.protocol_version(), Some(ProtocolVersion::TLSv1_2));
        assert_eq!(first.handshake_kind(), Some(HandshakeKind::Full));
        let second = handshake(&client, &b, "site.test");
        assert_eq!(second.handshake_kind(), Some(HandshakeKind::Resumed));
    }

    #[derive(Clone, Copy)]
    enum KeyForm {
        Pkcs8,
        Sec1,
    }

    fn resumption() -> Resumption {
        Resumption::new(64).unwrap()
    }

    fn resolver(snapshot: Snapshot) -> Arc<CertResolver> {
        Arc::new(CertResolver::new(Arc::new(ArcSwap::from_pointee(snapshot))).unwrap())
    }

    fn snapshot_with(cert: &Arc<TlsCert>) -> Snapshot {
        let mut certs = crate::snapshot::certs::CertSet::default();
        certs.insert("site.test", Arc::clone(cert)).unwrap();
        Snapshot {
            tls: Arc::new(certs),
            ..Snapshot::default()
        }
    }

    /// A leaf for `host` signed by a fresh CA, parsed as a Secret's PEM would be; and the CA.
    fn leaf(
        alg: &'static rcgen::SignatureAlgorithm,
        form: KeyForm,
        host: &str,
    ) -> (Arc<TlsCert>, CertificateDer<'static>) {
        let mut ca_params = rcgen::CertificateParams::new(Vec::new()).unwrap();
        ca_params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
        let ca_key = rcgen::KeyPair::generate().unwrap();
        let ca = ca_params.self_signed(&ca_key).unwrap();
        let issuer = rcgen::Issuer::new(ca_params, ca_key);
        let key = rcgen::KeyPair::generate_for(alg).unwrap();
        let cert = rcgen::CertificateParams::new(vec![host.to_owned()])
            .unwrap()
            .signed_by(&key, &issuer)
            .unwrap();
        let key = match form {
            KeyForm::Pkcs8 => parse_key(key.serialize_pem().as_bytes()).unwrap(),
            KeyForm::Sec1 => PrivateKeyDer::Sec1(pkcs8_inner(&key.serialize_der()).to_vec().into()),
        };
        let tls = TlsCert {
            secret: ObjectRef {
                kind: "Secret".to_owned(),
                namespace: Some("default".to_owned()),
                name: "site-tls".to_owned(),
            },
            chain: parse_chain(cert.pem().as_bytes()).unwrap(),
            key,
        };
        (Arc::new(tls), ca.der().clone())
    }

    /// The privateKey OCTET STRING of a PKCS#8 PrivateKeyInfo (SEQUENCE { INTEGER,
    /// SEQUENCE alg, OCTET STRING key, ... }): for an EC key, the SEC1 `ECPrivateKey` that
    /// `-----BEGIN EC PRIVATE KEY-----` holds.
    fn pkcs8_inner(der: &[u8]) -> &[u8] {
        fn tlv(d: &[u8]) -> (u8, &[u8], &[u8]) {
            let (len, hdr) = match d[1] {
                n if n < 0x80 => (usize::from(n), 2),
                0x81 => (usize::from(d[2]), 3),
                0x82 => ((usize::from(d[2]) << 8) | usize::from(d[3]), 4),
                n => panic!("length form {n:#x}"),
            };
            (d[0], &d[hdr..hdr + len], &d[hdr + len..])
        }
        let (_, seq, _) = tlv(der);
        let (_, _, rest) = tlv(seq); // version
        let (_, _, rest) = tlv(rest); // algorithm
        let (tag, key, _) = tlv(rest);
        assert_eq!(tag, 0x04, "privateKey is an OCTET STRING");
        key
    }

    fn client_config(
        ca: &CertificateDer<'static>,
        version: &'static rustls::SupportedProtocolVersion,
    ) -> Arc<ClientConfig> {
        let mut roots = RootCertStore::empty();
        roots.add(ca.clone()).unwrap();
        Arc::new(
            ClientConfig::builder_with_provider(provider())
                .with_protocol_versions(&[version])
                .unwrap()
                .with_root_certificates(roots)
                .with_no_client_auth(),
        )
    }

    /// A handshake in memory (no sockets), including the tickets the server sends after it.
    fn handshake(
        client: &Arc<ClientConfig>,
        server: &Arc<ServerConfig>,
        sni: &str,
    ) -> ClientConnection {
        let name = ServerName::try_from(sni.to_owned()).unwrap();
        let mut c = ClientConnection::new(Arc::clone(client), name).unwrap();
        let mut s = ServerConnection::new(Arc::clone(server)).unwrap();
        loop {
            let mut moved = false;
            while c.wants_write() {
                let mut buf = Vec::new();
                c.write_tls(&mut buf).unwrap();
                let mut rd = &buf[..];
                while !rd.is_empty() {
                    s.read_tls(&mut rd).unwrap();
                }
                s.process_new_packets().unwrap();
                moved = true;
            }
            while s.wants_write() {
                let mut buf = Vec::new();
                s.write_tls(&mut buf).unwrap();
                let mut rd = &buf[..];
                while !rd.is_empty() {
                    c.read_tls(&mut rd).unwrap();
                }
                c.process_new_packets().unwrap();
                moved = true;
            }
            if !moved {
                break;
            }
        }
        assert!(!c.is_handshaking() && !s.is_handshaking());
        c
    }
}
