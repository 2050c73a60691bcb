//! TLS termination by the real binary: session resumption (TLS 1.3 tickets on every worker,
//! TLS 1.2 tickets and session ids), checked by a rustls client and by `openssl s_client`,
//! and RSA and ECDSA certificates from Secrets, each served with its own signature.

use std::{process::Stdio, sync::Arc};

use ingress_tests::{
    http_support::{TestBackend, TestCa, ingress_yaml, peer_leaf, service_yaml, tls_get},
    process::IngressProcess,
};
use k8s_openapi::api::core::v1::Secret;
use rustls::{
    ClientConfig, HandshakeKind, ProtocolVersion, RootCertStore,
    client::{Resumption, Tls12Resumption},
    crypto::aws_lc_rs,
};
use rustls_pki_types::{CertificateDer, ServerName, pem::PemObject as _};
use tokio::{io::AsyncWriteExt as _, net::TcpStream};
use tokio_rustls::{TlsConnector, client::TlsStream};

const RSA_HOST: &str = "rsa.test";
const ECDSA_HOST: &str = "ecdsa.test";

/// The binary serving `rsa.test` (RSA-2048 Secret) and `ecdsa.test` (ECDSA P-256 Secret)
/// to `backend`, with `args`; and the CA that signed both.
async fn start(backend: &TestBackend, args: &[&str]) -> (IngressProcess, TestCa, [Secret; 2]) {
    let ca = TestCa::new();
    let rsa = ca.secret_with("rsa-tls", &[RSA_HOST], &rcgen::PKCS_RSA_SHA256);
    let ecdsa = ca.secret_with("ecdsa-tls", &[ECDSA_HOST], &rcgen::PKCS_ECDSA_P256_SHA256);
    let mut yaml = service_yaml("web", &[backend.addr]);
    for (name, host, secret) in [
        ("rsa", RSA_HOST, "rsa-tls"),
        ("ecdsa", ECDSA_HOST, "ecdsa-tls"),
    ] {
        yaml.push_str(&ingress_yaml(name, Some(host), &[("/", "Prefix", "web")]));
        yaml.push_str(&format!(
            "  tls:\n  - hosts: [\"{host}\"]\n    secretName: {secret}\n"
        ));
    }
    for s in [&rsa, &ecdsa] {
        yaml.push_str("---\n");
        yaml.push_str(&serde_yaml::to_string(s).expect("Secret YAML"));
    }
    let proc = IngressProcess::start(&yaml, args).await;
    (proc, ca, [rsa, ecdsa])
}

fn leaf_of(secret: &Secret) -> CertificateDer<'static> {
    let pem = &secret.data.as_ref().expect("data")["tls.crt"].0;
    CertificateDer::from_pem_slice(pem).expect("tls.crt")
}

/// A client trusting `ca`, speaking only `version`, remembering sessions as `resumption`
/// says, offering only `suites` if given.
fn client(
    ca: &TestCa,
    version: &'static rustls::SupportedProtocolVersion,
    resumption: Resumption,
    suites: Option<&[rustls::SupportedCipherSuite]>,
) -> TlsConnector {
    let mut provider = aws_lc_rs::default_provider();
    if let Some(suites) = suites {
        provider.cipher_suites = suites.to_vec();
    }
    let mut roots = RootCertStore::empty();
    roots.add(ca.cert.clone()).expect("CA");
    let mut config = ClientConfig::builder_with_provider(Arc::new(provider))
        .with_protocol_versions(&[version])
        .expect("version")
        .with_root_certificates(roots)
        .with_no_client_auth();
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    config.resumption = resumption;
    TlsConnector::from(Arc::new(config))
}

async fn connect(
    connector: &TlsConnector,
    proc: &IngressProcess,
    sni: &str,
) -> TlsStream<TcpStream> {
    let tcp = TcpStream::connect(proc.https).await.expect("connect");
    let name = ServerName::try_from(sni.to_owned()).expect("SNI");
    connector.connect(name, tcp).await.expect("TLS handshake")
}

/// One request on a fresh connection; returns how the handshake went. Reading the
/// response also reads the tickets the server sent after its handshake.
async fn request(
    connector: &TlsConnector,
    proc: &IngressProcess,
    sni: &str,
) -> (HandshakeKind, ProtocolVersion) {
    let stream = connect(connector, proc, sni).await;
    let kind = stream.get_ref().1.handshake_kind().expect("handshake done");
    let version = stream.get_ref().1.protocol_version().expect("version");
    let (_, answer) = tls_get(stream, sni, "/").await;
    assert_eq!(answer.status, 200, "{sni}: {answer:?}");
    assert_eq!(answer.backend(), "web");
    (kind, version)
}

/// Four workers, each with its own listening socket: the kernel spreads the connections
/// over them, so every one of 16 resumptions succeeding means every worker decrypts the
/// tickets any worker issued. The server counts them as resumed too.
#[tokio::test(flavor = "multi_thread")]
async fn tls13_sessions_resume_from_tickets_on_every_worker() {
    let backend = TestBackend::start("web").await;
    let (proc, ca, _) = start(&backend, &["--http-workers", "4"]).await;
    let connector = client(
        &ca,
        &rustls::version::TLS13,
        Resumption::in_memory_sessions(64),
        None,
    );
    for host in [RSA_HOST, ECDSA_HOST] {
        let (kind, version) = request(&connector, &proc, host).await;
        assert_eq!(
            (kind, version),
            (HandshakeKind::Full, ProtocolVersion::TLSv1_3),
            "{host}"
        );
        for i in 0..16 {
            let (kind, _) = request(&connector, &proc, host).await;
            assert_eq!(
                kind,
                HandshakeKind::Resumed,
                "{host}: connection {i} after the first"
            );
        }
    }
    let metrics = proc.metrics().await;
    let family = metrics.family("xdp_ingress_tls_handshakes_total");
    assert_eq!(
        metrics.sum("xdp_ingress_tls_handshakes_total", &[("kind", "full")]),
        2.0,
        "{family}"
    );
    assert_eq!(
        metrics.sum("xdp_ingress_tls_handshakes_total", &[("kind", "resumed")]),
        32.0,
        "{family}"
    );
}

/// TLS 1.2 clients resume with a ticket, and without one from the server's session cache.
#[tokio::test(flavor = "multi_thread")]
async fn tls12_sessions_resume_by_ticket_and_by_session_id() {
    let backend = TestBackend::start("web").await;
    let (proc, ca, _) = start(&backend, &["--http-workers", "2"]).await;
    for (how, tls12) in [
        ("ticket", Tls12Resumption::SessionIdOrTickets),
        ("session id", Tls12Resumption::SessionIdOnly),
    ] {
        let resumption = Resumption::in_memory_sessions(64).tls12_resumption(tls12);
        let connector = client(&ca, &rustls::version::TLS12, resumption, None);
        let first = request(&connector, &proc, RSA_HOST).await;
        assert_eq!(
            first,
            (HandshakeKind::Full, ProtocolVersion::TLSv1_2),
            "{how}"
        );
        for i in 0..4 {
            let (kind, _) = request(&connector, &proc, RSA_HOST).await;
            assert_eq!(
                kind,
                HandshakeKind::Resumed,
                "{how}: connection {i} after the first"
            );
        }
    }
}

/// OpenSSL's client agrees: a saved session is "Reused" on the next connection, for TLS
/// 1.3 and 1.2; a client without the saved session gets a "New" one.
#[tokio::test(flavor = "multi_thread")]
async fn openssl_s_client_reuses_a_saved_session() {
    let backend = TestBackend::start("web").await;
    let (proc, _ca, _) = start(&backend, &["--http-workers", "2"]).await;
    let dir = std::env::temp_dir().join(format!("xit-tls-sess-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("scratch dir");
    for version in ["-tls1_3", "-tls1_2"] {
        let sess = dir.join(format!("session{version}.pem"));
        let first = s_client(&proc, version, &["-sess_out", &sess.to_string_lossy()]).await;
        assert!(
            first.contains(&format!("New, TLSv1.{}", &version[6..])),
            "{version} first:\n{first}"
        );
        let again = s_client(&proc, version, &["-sess_in", &sess.to_string_lossy()]).await;
        assert!(
            again.contains("Reused, TLSv1."),
            "{version} with the saved session:\n{again}"
        );
    }
    let _ = std::fs::remove_dir_all(&dir);
}

/// `openssl s_client` sending one request and reading to the end (so it sees the tickets),
/// its stdout.
async fn s_client(proc: &IngressProcess, version: &str, extra: &[&str]) -> String {
    let mut child = tokio::process::Command::new("openssl")
        .args(["s_client", "-connect", &proc.https.to_string()])
        .args(["-servername", RSA_HOST, version, "-ign_eof"])
        .args(extra)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .kill_on_drop(true)
        .spawn()
        .expect("openssl s_client (apt-get install openssl)");
    let mut stdin = child.stdin.take().expect("stdin");
    stdin
        .write_all(
            format!("GET / HTTP/1.1\r\nHost: {RSA_HOST}\r\nConnection: close\r\n\r\n").as_bytes(),
        )
        .await
        .expect("write request");
    drop(stdin);
    let out = tokio::time::timeout(std::time::Duration::from_secs(20), child.wait_with_output())
        .await
        .expect("s_client finishes")
        .expect("s_client output");
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// Each Secret's certificate is served for its host, and signed for with its own key: a
/// TLS 1.2 client offering only ECDSA (or only RSA) cipher suites completes a handshake
/// only if the server signs with that algorithm.
#[tokio::test(flavor = "multi_thread")]
async fn rsa_and_ecdsa_secrets_are_served_with_their_own_signatures() {
    use aws_lc_rs::cipher_suite as cs;
    let backend = TestBackend::start("web").await;
    let (proc, ca, [rsa, ecdsa]) = start(&backend, &[]).await;
    let cases = [
        (RSA_HOST, &rsa, cs::TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256),
        (
            ECDSA_HOST,
            &ecdsa,
            cs::TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256,
        ),
    ];
    for (host, secret, suite) in cases {
        for version in [&rustls::version::TLS13, &rustls::version::TLS12] {
            let suites = [suite, cs::TLS13_AES_128_GCM_SHA256];
            let connector = client(&ca, version, Resumption::disabled(), Some(&suites));
            let stream = connect(&connector, &proc, host).await;
            assert_eq!(peer_leaf(&stream), leaf_of(secret), "{host} {version:?}");
            let (_, answer) = tls_get(stream, host, "/").await;
            assert_eq!(answer.status, 200, "{host} {version:?}");
        }
    }
}
