//! Client certificates per host (`auth-tls-*`) end to end: the real binary in file mode,
//! an echo backend, and CAs and client certificates made by rcgen at test time.
//!
//! The cases transcribe ingress-nginx's `test/e2e/annotations/authtls.go` (no certificate
//! → 400 and a valid one → 200; `auth-tls-verify-client: off` → 200; the error page's 302
//! and `ssl-client-cert` passed upstream). The rest follows the annotation reference
//! (`docs/user-guide/nginx-configuration/annotations.md`, "Client Certificate
//! Authentication") and what nginx does with `ssl_verify_client`: a certificate the CA did
//! not sign → 400 ("The SSL certificate error"), `optional` serves clients without one,
//! `optional_no_ca` passes any, `auth-tls-match-cn` → 403 "client certificate
//! unauthorized", and a request whose Host is not the host its connection's SNI named
//! gets 421 (nginx's `ngx_http_set_virtual_server`).

use std::{
    sync::{Arc, Mutex},
    time::Duration,
};

use bytes::Bytes;
use http_body_util::{BodyExt as _, Empty};
use hyper::{Request, StatusCode, header};
use hyper_util::rt::TokioIo;
use ingress_tests::{
    http_support::{AnnotatedIngress, SeenRequest, TestBackend, TestCa, service_yaml},
    process::IngressProcess,
};
use k8s_openapi::{ByteString, api::core::v1::Secret};
use rustls::{
    ClientConfig, DistinguishedName, SignatureScheme, client::ResolvesClientCert,
    crypto::aws_lc_rs, sign::CertifiedKey,
};
use rustls_pki_types::{PrivateKeyDer, ServerName, pem::PemObject as _};
use tokio::net::TcpStream;
use tokio_rustls::TlsConnector;

/// A client CA and the client certificates it signs.
struct ClientCa {
    pem: String,
    issuer: rcgen::Issuer<'static, rcgen::KeyPair>,
}

impl ClientCa {
    fn new(name: &str) -> Self {
        let mut params = rcgen::CertificateParams::new(Vec::new()).expect("CA params");
        params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
        params
            .distinguished_name
            .push(rcgen::DnType::CommonName, name);
        let key = rcgen::KeyPair::generate().expect("CA key");
        let cert = params.self_signed(&key).expect("CA cert");
        Self {
            pem: cert.pem(),
            issuer: rcgen::Issuer::new(params, key),
        }
    }

    /// A client certificate with subject `CN=cn`.
    fn client(&self, cn: &str) -> Arc<CertifiedKey> {
        let mut params = rcgen::CertificateParams::new(Vec::new()).expect("client params");
        params.distinguished_name = rcgen::DistinguishedName::new();
        params
            .distinguished_name
            .push(rcgen::DnType::CommonName, cn);
        let key = rcgen::KeyPair::generate().expect("client key");
        let cert = params.signed_by(&key, &self.issuer).expect("client cert");
        let key = PrivateKeyDer::from_pem_slice(key.serialize_pem().as_bytes()).expect("key");
        let signing = aws_lc_rs::sign::any_supported_type(&key).expect("signing key");
        Arc::new(CertifiedKey::new(vec![cert.der().clone()], signing))
    }
}

/// Presents `cert` (if any) when asked, and records whether the server asked, with which
/// CA names.
#[derive(Debug)]
struct Presenting {
    cert: Option<Arc<CertifiedKey>>,
    asked: Mutex<Option<Vec<DistinguishedName>>>,
}

impl ResolvesClientCert for Presenting {
    fn resolve(&self, hints: &[&[u8]], _schemes: &[SignatureScheme]) -> Option<Arc<CertifiedKey>> {
        *self.asked.lock().expect("lock") = Some(
            hints
                .iter()
                .map(|h| DistinguishedName::from(h.to_vec()))
                .collect(),
        );
        self.cert.clone()
    }

    fn has_certs(&self) -> bool {
        self.cert.is_some()
    }
}

/// What one request over HTTPS got.
#[derive(Debug)]
struct Reply {
    status: StatusCode,
    location: String,
    /// Whether the server asked for a client certificate, and the CA names it gave.
    asked: Option<Vec<DistinguishedName>>,
}

/// `GET /` over HTTPS with SNI `sni`, `Host: host` and the extra `headers`, presenting
/// `cert` if asked.
async fn https_get(
    proc: &IngressProcess,
    server_ca: &TestCa,
    sni: &str,
    host: &str,
    cert: Option<Arc<CertifiedKey>>,
    headers: &[(&str, &str)],
) -> Reply {
    let mut roots = rustls::RootCertStore::empty();
    roots.add(server_ca.cert.clone()).expect("server CA");
    let presenting = Arc::new(Presenting {
        cert,
        asked: Mutex::new(None),
    });
    let mut config = ClientConfig::builder_with_provider(Arc::new(aws_lc_rs::default_provider()))
        .with_safe_default_protocol_versions()
        .expect("versions")
        .with_root_certificates(roots)
        .with_client_cert_resolver(Arc::clone(&presenting) as _);
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    let tcp = TcpStream::connect(proc.https).await.expect("connect");
    let tls = TlsConnector::from(Arc::new(config))
        .connect(ServerName::try_from(sni.to_owned()).expect("SNI"), tcp)
        .await
        .expect("TLS handshake (never failed over the client certificate)");
    let (mut send, conn) = hyper::client::conn::http1::handshake(TokioIo::new(tls))
        .await
        .expect("h1 handshake");
    let conn = tokio::spawn(conn);
    let mut req = Request::get("/").header(header::HOST, host);
    for (k, v) in headers {
        req = req.header(*k, *v);
    }
    let req = req.body(Empty::<Bytes>::new()).expect("request");
    let resp = tokio::time::timeout(Duration::from_secs(15), send.send_request(req))
        .await
        .expect("an answer within 15 s")
        .expect("response");
    let status = resp.status();
    let location = resp
        .headers()
        .get(header::LOCATION)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("")
        .to_owned();
    let _ = resp.into_body().collect().await;
    conn.abort();
    let asked = presenting.asked.lock().expect("lock").clone();
    Reply {
        status,
        location,
        asked,
    }
}

/// A Secret `default/NAME` with `ca.crt`, as YAML.
fn ca_secret(name: &str, pem: &str) -> String {
    let secret = Secret {
        metadata: k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta {
            name: Some(name.to_owned()),
            namespace: Some("default".to_owned()),
            ..Default::default()
        },
        data: Some(
            [("ca.crt".to_owned(), ByteString(pem.as_bytes().to_vec()))]
                .into_iter()
                .collect(),
        ),
        ..Default::default()
    };
    format!("---\n{}", serde_yaml::to_string(&secret).expect("YAML"))
}

/// An Ingress `default/NAME` for `host` → `echo`, with a `tls` entry (Secret `tls`) and
/// `annotations` (names without the prefix).
fn ingress(name: &str, host: &str, annotations: &[(&str, &str)]) -> String {
    let annotations: Vec<(&str, &str)> = [("ssl-redirect", "false")]
        .into_iter()
        .chain(annotations.iter().copied())
        .collect();
    AnnotatedIngress {
        name,
        host,
        path: "/",
        path_type: "Prefix",
        service: "echo",
        annotations: &annotations,
        tls_secret: Some("tls"),
    }
    .yaml()
}

/// The last request the backend saw.
fn last_seen(backend: &TestBackend) -> SeenRequest {
    backend
        .seen
        .lock()
        .expect("lock")
        .last()
        .cloned()
        .expect("the backend saw a request")
}

/// The hosts of the test and their annotations.
const HOSTS: &[(&str, &[(&str, &str)])] = &[
    ("on.test", &[("auth-tls-secret", "default/ca")]),
    (
        "off.test",
        &[
            ("auth-tls-secret", "default/ca"),
            ("auth-tls-verify-client", "off"),
            ("auth-tls-verify-depth", "2"),
        ],
    ),
    (
        "errorpage.test",
        &[
            ("auth-tls-secret", "default/ca"),
            ("auth-tls-error-page", "http://errors.test/error"),
            ("auth-tls-pass-certificate-to-upstream", "true"),
        ],
    ),
    (
        "optional.test",
        &[
            ("auth-tls-secret", "default/ca"),
            ("auth-tls-verify-client", "optional"),
            ("auth-tls-pass-certificate-to-upstream", "true"),
        ],
    ),
    (
        "noca.test",
        &[
            ("auth-tls-secret", "default/ca"),
            ("auth-tls-verify-client", "optional_no_ca"),
            ("auth-tls-pass-certificate-to-upstream", "true"),
        ],
    ),
    (
        "cn.test",
        &[
            ("auth-tls-secret", "default/ca"),
            ("auth-tls-match-cn", "CN=(alice|bob)$"),
        ],
    ),
    ("missing.test", &[("auth-tls-secret", "default/missing")]),
    ("public.test", &[]),
];

async fn start() -> (IngressProcess, TestBackend, TestCa, ClientCa, ClientCa) {
    let echo = TestBackend::start("echo").await;
    let server_ca = TestCa::new();
    let client_ca = ClientCa::new("client CA");
    let other_ca = ClientCa::new("another CA");
    let hosts: Vec<&str> = HOSTS.iter().map(|(h, _)| *h).collect();
    let mut yaml = service_yaml("echo", &[echo.addr]);
    yaml.push_str("---\n");
    yaml.push_str(&serde_yaml::to_string(&server_ca.secret("tls", &hosts)).expect("YAML"));
    yaml.push_str(&ca_secret("ca", &client_ca.pem));
    for (i, (host, annotations)) in HOSTS.iter().enumerate() {
        yaml.push_str(&ingress(&format!("i{i}"), host, annotations));
    }
    let proc = IngressProcess::start(&yaml, &[]).await;
    (proc, echo, server_ca, client_ca, other_ca)
}

#[tokio::test]
async fn client_certificates_are_required_per_host_as_ingress_nginx() {
    let (proc, _echo, server_ca, ca, other) = start().await;
    let alice = ca.client("alice");
    let carol = ca.client("carol");
    let stranger = other.client("alice");
    // (host, certificate, status, Location)
    let rows: Vec<(&str, Option<&Arc<CertifiedKey>>, u16, &str)> = vec![
        // authtls.go "should set valid auth-tls-secret".
        ("on.test", None, 400, ""),
        ("on.test", Some(&alice), 200, ""),
        // A certificate of another CA: nginx's 495, answered 400.
        ("on.test", Some(&stranger), 400, ""),
        // authtls.go "sslVerify to off".
        ("off.test", None, 200, ""),
        // authtls.go "pass certificate to upstream, and error page".
        ("errorpage.test", None, 302, "http://errors.test/error"),
        (
            "errorpage.test",
            Some(&stranger),
            302,
            "http://errors.test/error",
        ),
        ("errorpage.test", Some(&alice), 200, ""),
        ("optional.test", None, 200, ""),
        ("optional.test", Some(&alice), 200, ""),
        ("optional.test", Some(&stranger), 400, ""),
        ("noca.test", Some(&stranger), 200, ""),
        ("cn.test", Some(&alice), 200, ""),
        ("cn.test", Some(&carol), 403, ""),
        // An unusable Secret denies the paths rather than serve unverified clients.
        ("missing.test", Some(&alice), 503, ""),
        ("public.test", None, 200, ""),
    ];
    for (host, cert, status, location) in rows {
        let r = https_get(&proc, &server_ca, host, host, cert.cloned(), &[]).await;
        assert_eq!(
            (r.status.as_u16(), r.location.as_str()),
            (status, location),
            "{host} with {}\n{}",
            if cert.is_some() {
                "a certificate"
            } else {
                "none"
            },
            proc.log()
        );
        // Asked for one only where the host requires it, naming the CA.
        let asks = !matches!(host, "off.test" | "public.test" | "missing.test");
        assert_eq!(r.asked.is_some(), asks, "{host}: asked? {:?}", r.asked);
        if let Some(hints) = r.asked {
            assert_eq!(hints.len(), 1, "{host}: the CA's name is the hint");
        }
    }
}

#[tokio::test]
async fn the_certificate_is_passed_upstream_and_a_forged_one_never_is() {
    let (proc, echo, server_ca, ca, other) = start().await;
    let alice = ca.client("alice");
    let r = https_get(
        &proc,
        &server_ca,
        "errorpage.test",
        "errorpage.test",
        Some(alice),
        &[],
    )
    .await;
    assert_eq!(r.status, 200);
    let seen = last_seen(&echo)
        .header("ssl-client-cert")
        .expect("ssl-client-cert");
    assert!(
        seen.starts_with("-----BEGIN%20CERTIFICATE-----%0A") && !seen.contains(['\n', ' ']),
        "URL-escaped PEM, as nginx's $ssl_client_escaped_cert: {seen}"
    );
    // optional_no_ca passes what it got, unverified.
    let r = https_get(
        &proc,
        &server_ca,
        "noca.test",
        "noca.test",
        Some(other.client("x")),
        &[],
    )
    .await;
    assert_eq!(r.status, 200);
    assert!(last_seen(&echo).header("ssl-client-cert").is_some());
    // Without a certificate, a header the client sent itself is dropped.
    let forged = [("ssl-client-cert", "forged")];
    let r = https_get(
        &proc,
        &server_ca,
        "optional.test",
        "optional.test",
        None,
        &forged,
    )
    .await;
    assert_eq!(r.status, 200);
    assert_eq!(last_seen(&echo).header("ssl-client-cert"), None);
}

#[tokio::test]
async fn a_connection_for_another_host_cannot_reach_a_host_that_requires_a_certificate() {
    let (proc, echo, server_ca, ca, _other) = start().await;
    let before = echo.request_count();
    // SNI of a host that asks nothing, Host of one that requires a certificate: 421.
    let r = https_get(&proc, &server_ca, "public.test", "on.test", None, &[]).await;
    assert_eq!(r.status, 421, "{}", proc.log());
    assert!(r.asked.is_none());
    // Verified for one host, used for another that requires one too: 421 as well.
    let r = https_get(
        &proc,
        &server_ca,
        "optional.test",
        "on.test",
        Some(ca.client("alice")),
        &[],
    )
    .await;
    assert_eq!(r.status, 421);
    // The other way round is an ordinary request of a host that asks nothing.
    let r = https_get(
        &proc,
        &server_ca,
        "on.test",
        "public.test",
        Some(ca.client("alice")),
        &[],
    )
    .await;
    assert_eq!(r.status, 200);
    assert_eq!(
        echo.request_count(),
        before + 1,
        "only the last one reached the backend"
    );
    // Plain HTTP never reaches a host that requires a certificate.
    let client = ingress_tests::http_support::http_client();
    let a = ingress_tests::http_support::get(&client, proc.http, "on.test", "/").await;
    assert_eq!(a.status, 400);
    let a = ingress_tests::http_support::get(&client, proc.http, "public.test", "/").await;
    assert_eq!(a.status, 200);
}
