//! `backend-protocol` and `proxy-ssl-*` end to end: the real binary in file mode in front
//! of real TLS, HTTP/2 and gRPC-framed backends (tokio-rustls and hyper, certificates made
//! by rcgen at test time).
//!
//! What is expected comes from ingress-nginx: the annotation reference
//! (`docs/user-guide/nginx-configuration/annotations.md`, "Backend Protocol" and
//! "Backend Certificate Authentication"), `internal/ingress/annotations/proxyssl/main.go`
//! (nothing of proxy-ssl-* without proxy-ssl-secret; an unusable Secret denies the
//! location) and `test/e2e/annotations/{backendprotocol,grpc,proxyssl}.go`. Those e2e
//! tests mostly check the generated nginx.conf (`proxy_pass https://`, `grpc_pass
//! grpcs://`, `proxy_ssl_verify on`); the behaviour asserted here is what those nginx
//! directives do: no verification unless `proxy-ssl-verify: on`, no SNI unless
//! `proxy-ssl-server-name: on`, a certificate the CA did not sign fails the handshake
//! (502), and grpc.go's calls get their gRPC status through.

use std::{
    convert::Infallible,
    net::SocketAddr,
    sync::{
        Arc,
        atomic::{AtomicUsize, Ordering},
    },
    time::Duration,
};

use bytes::{BufMut as _, Bytes, BytesMut};
use futures::stream;
use http_body_util::{BodyExt as _, Full, StreamBody, combinators::BoxBody};
use hyper::{HeaderMap, Request, Response, body::Frame, body::Incoming, service::service_fn};
use hyper_util::rt::{TokioExecutor, TokioIo};
use ingress_tests::{
    http_support::{AnnotatedIngress, Answer, get, http_client, service_yaml},
    process::IngressProcess,
};
use k8s_openapi::{ByteString, api::core::v1::Secret};
use rustls::{RootCertStore, ServerConfig, crypto::aws_lc_rs, server::WebPkiClientVerifier};
use rustls_pki_types::{CertificateDer, PrivateKeyDer, pem::PemObject as _};
use tokio::{net::TcpListener, net::TcpStream, task::JoinHandle};
use tokio_rustls::TlsAcceptor;

const HANDSHAKE_ERRORS: &str = "xdp_ingress_http_upstream_tls_handshake_errors_total";

/// A certificate authority made for one test.
struct Ca {
    pem: String,
    issuer: rcgen::Issuer<'static, rcgen::KeyPair>,
}

impl Ca {
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

    fn der(&self) -> CertificateDer<'static> {
        CertificateDer::from_pem_slice(self.pem.as_bytes()).expect("CA DER")
    }

    /// A leaf for `names`: (certificate PEM, key PEM).
    fn leaf(&self, names: &[&str]) -> (String, String) {
        let params = rcgen::CertificateParams::new(
            names.iter().map(|n| (*n).to_owned()).collect::<Vec<_>>(),
        )
        .expect("leaf params");
        let key = rcgen::KeyPair::generate().expect("leaf key");
        let cert = params.signed_by(&key, &self.issuer).expect("leaf cert");
        (cert.pem(), key.serialize_pem())
    }
}

/// A Secret `default/NAME` with `data` (PEM strings), as YAML.
fn secret_yaml(name: &str, data: &[(&str, &str)]) -> String {
    let secret = Secret {
        metadata: k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta {
            name: Some(name.to_owned()),
            namespace: Some("default".to_owned()),
            ..Default::default()
        },
        type_: Some("Opaque".to_owned()),
        data: Some(
            data.iter()
                .map(|(k, v)| ((*k).to_owned(), ByteString(v.as_bytes().to_vec())))
                .collect(),
        ),
        ..Default::default()
    };
    format!(
        "---\n{}",
        serde_yaml::to_string(&secret).expect("Secret as YAML")
    )
}

/// An Ingress `default/NAME` for `host`, path `/` → Service `service` port 80, with
/// `annotations` (names without the prefix).
fn ingress(name: &str, host: &str, service: &str, annotations: &[(&str, &str)]) -> String {
    AnnotatedIngress {
        name,
        host,
        path: "/",
        path_type: "Prefix",
        service,
        annotations,
        tls_secret: None,
    }
    .yaml()
}

/// What a backend connection was: what its TLS handshake saw.
#[derive(Clone, Debug, Default)]
struct Seen {
    tls: bool,
    sni: String,
    alpn: String,
    client_cert: bool,
}

/// A backend: its address, and how many connections it accepted (TLS ones counted once
/// the handshake is done).
struct Backend {
    addr: SocketAddr,
    connections: Arc<AtomicUsize>,
    _task: JoinHandle<()>,
}

type Reply = Response<BoxBody<Bytes, Infallible>>;

/// One gRPC message frame (uncompressed).
fn grpc_frame(message: &[u8]) -> Bytes {
    let mut b = BytesMut::with_capacity(5 + message.len());
    b.put_u8(0);
    b.put_u32(u32::try_from(message.len()).expect("small message"));
    b.put_slice(message);
    b.freeze()
}

/// The message of one gRPC frame.
fn grpc_message(frame: &[u8]) -> Option<&[u8]> {
    let (head, rest) = frame.split_at_checked(5)?;
    let len = u32::from_be_bytes(head[1..5].try_into().ok()?) as usize;
    (head[0] == 0 && rest.len() == len).then_some(rest)
}

/// Answers one request. gRPC (`application/grpc`): `/echo.Echo/Say` answers the message
/// with `hello ` before it and `grpc-status: 0` in the trailers; `/echo.Echo/Missing`
/// answers no message and `grpc-status: 5` (NOT_FOUND) with a `grpc-message`. Anything
/// else: `200`, with what the connection and request were in `x-seen-*` headers.
async fn answer(req: Request<Incoming>, seen: Arc<Seen>) -> Result<Reply, Infallible> {
    let grpc = req
        .headers()
        .get("content-type")
        .is_some_and(|v| v.as_bytes().starts_with(b"application/grpc"));
    let resp = Response::builder()
        .header("x-seen-tls", seen.tls.to_string())
        .header("x-seen-sni", &seen.sni)
        .header("x-seen-alpn", &seen.alpn)
        .header("x-seen-client-cert", seen.client_cert.to_string())
        .header("x-seen-version", format!("{:?}", req.version()));
    if !grpc {
        return Ok(resp
            .body(Full::new(Bytes::from_static(b"backend")).boxed())
            .expect("response"));
    }
    let path = req.uri().path().to_owned();
    let body = req
        .into_body()
        .collect()
        .await
        .expect("request body")
        .to_bytes();
    let mut trailers = HeaderMap::new();
    let mut frames = Vec::new();
    if path == "/echo.Echo/Say" {
        let message = grpc_message(&body).expect("one gRPC frame");
        let mut out = b"hello ".to_vec();
        out.extend_from_slice(message);
        frames.push(Frame::data(grpc_frame(&out)));
        trailers.insert("grpc-status", "0".parse().expect("value"));
    } else {
        trailers.insert("grpc-status", "5".parse().expect("value"));
        trailers.insert("grpc-message", "no such method".parse().expect("value"));
    }
    frames.push(Frame::trailers(trailers));
    let body = StreamBody::new(stream::iter(frames.into_iter().map(Ok::<_, Infallible>)));
    Ok(resp
        .header("content-type", "application/grpc")
        .body(body.boxed())
        .expect("response"))
}

/// Serves one connection: HTTP/2 when `h2`, else HTTP/1.1.
async fn serve<IO>(io: IO, h2: bool, seen: Seen)
where
    IO: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
{
    let seen = Arc::new(seen);
    let svc = service_fn(move |req| answer(req, Arc::clone(&seen)));
    let io = TokioIo::new(io);
    if h2 {
        let _ = hyper::server::conn::http2::Builder::new(TokioExecutor::new())
            .serve_connection(io, svc)
            .await;
    } else {
        let _ = hyper::server::conn::http1::Builder::new()
            .serve_connection(io, svc)
            .await;
    }
}

/// A TLS backend with the certificate `leaf` (PEM pair), offering `alpn`, requiring a
/// client certificate signed by `client_ca` if given.
async fn tls_backend(leaf: &(String, String), alpn: &[&[u8]], client_ca: Option<&Ca>) -> Backend {
    let provider = Arc::new(aws_lc_rs::default_provider());
    let chain = vec![CertificateDer::from_pem_slice(leaf.0.as_bytes()).expect("leaf DER")];
    let key = PrivateKeyDer::from_pem_slice(leaf.1.as_bytes()).expect("leaf key");
    let builder = ServerConfig::builder_with_provider(Arc::clone(&provider))
        .with_safe_default_protocol_versions()
        .expect("versions");
    let builder = match client_ca {
        Some(ca) => {
            let mut roots = RootCertStore::empty();
            roots.add(ca.der()).expect("client CA");
            let verifier = WebPkiClientVerifier::builder_with_provider(Arc::new(roots), provider)
                .build()
                .expect("client verifier");
            builder.with_client_cert_verifier(verifier)
        }
        None => builder.with_no_client_auth(),
    };
    let mut config = builder.with_single_cert(chain, key).expect("server config");
    config.alpn_protocols = alpn.iter().map(|p| p.to_vec()).collect();
    let acceptor = TlsAcceptor::from(Arc::new(config));
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let addr = listener.local_addr().expect("addr");
    let connections = Arc::new(AtomicUsize::new(0));
    let count = Arc::clone(&connections);
    let task = tokio::spawn(async move {
        loop {
            let Ok((tcp, _)) = listener.accept().await else {
                continue;
            };
            let acceptor = acceptor.clone();
            let count = Arc::clone(&count);
            tokio::spawn(async move {
                let Ok(tls) = acceptor.accept(tcp).await else {
                    return;
                };
                count.fetch_add(1, Ordering::SeqCst);
                let conn = tls.get_ref().1;
                let seen = Seen {
                    tls: true,
                    sni: conn.server_name().unwrap_or("").to_owned(),
                    alpn: conn
                        .alpn_protocol()
                        .map(|p| String::from_utf8_lossy(p).into_owned())
                        .unwrap_or_default(),
                    client_cert: conn.peer_certificates().is_some_and(|c| !c.is_empty()),
                };
                let h2 = seen.alpn == "h2";
                serve(tls, h2, seen).await;
            });
        }
    });
    Backend {
        addr,
        connections,
        _task: task,
    }
}

/// A cleartext HTTP/2 (prior knowledge) backend.
async fn h2c_backend() -> Backend {
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let addr = listener.local_addr().expect("addr");
    let connections = Arc::new(AtomicUsize::new(0));
    let count = Arc::clone(&connections);
    let task = tokio::spawn(async move {
        loop {
            let Ok((tcp, _)) = listener.accept().await else {
                continue;
            };
            count.fetch_add(1, Ordering::SeqCst);
            tokio::spawn(serve(tcp, true, Seen::default()));
        }
    });
    Backend {
        addr,
        connections,
        _task: task,
    }
}

/// `GET /` with `Host: host` through the ingress's plain port.
async fn fetch(proc: &IngressProcess, host: &str) -> Answer {
    let client = http_client();
    tokio::time::timeout(Duration::from_secs(15), get(&client, proc.http, host, "/"))
        .await
        .expect("an answer within 15 s")
}

/// A gRPC call `path` with `message` through the ingress's plain port (HTTP/2 with prior
/// knowledge, as gRPC clients connect): (HTTP status, the reply message, the trailers).
async fn grpc_call(
    proc: &IngressProcess,
    host: &str,
    path: &str,
    message: &[u8],
) -> (u16, Option<Vec<u8>>, HeaderMap) {
    let io = TokioIo::new(TcpStream::connect(proc.http).await.expect("connect"));
    let (mut send, conn) = hyper::client::conn::http2::handshake(TokioExecutor::new(), io)
        .await
        .expect("h2 handshake");
    let conn = tokio::spawn(conn);
    let req = Request::post(format!("http://{host}{path}"))
        .header("content-type", "application/grpc")
        .header("te", "trailers")
        .body(Full::new(grpc_frame(message)))
        .expect("request");
    let call = async {
        let resp = send.send_request(req).await.expect("response");
        let status = resp.status().as_u16();
        let collected = resp.into_body().collect().await.expect("body");
        let trailers = collected.trailers().cloned().unwrap_or_default();
        let body = collected.to_bytes();
        let message = (!body.is_empty()).then(|| grpc_message(&body).expect("a frame").to_vec());
        (status, message, trailers)
    };
    let out = tokio::time::timeout(Duration::from_secs(15), call)
        .await
        .expect("an answer within 15 s");
    conn.abort();
    out
}

#[tokio::test]
async fn https_backends_are_not_verified_get_no_sni_and_are_pooled_by_default() {
    // The annotation reference: proxy-ssl-verify defaults to off; nginx's
    // proxy_ssl_server_name defaults to off. A certificate nobody could verify (its own
    // CA is unknown to the ingress, and it names another host) is accepted.
    let ca = Ca::new("backend CA");
    let backend = tls_backend(&ca.leaf(&["elsewhere.test"]), &[b"http/1.1"], None).await;
    let yaml = format!(
        "{}{}",
        service_yaml("tlsecho", &[backend.addr]),
        ingress(
            "https",
            "https.test",
            "tlsecho",
            &[("backend-protocol", "HTTPS")]
        )
    );
    let proc = IngressProcess::start(&yaml, &[]).await;
    for _ in 0..3 {
        let a = fetch(&proc, "https.test").await;
        assert_eq!(a.status, 200, "{a:?}\n{}", proc.log());
        assert_eq!(a.headers["x-seen-tls"], "true");
        assert_eq!(
            a.headers["x-seen-sni"], "",
            "no SNI unless proxy-ssl-server-name: on"
        );
        assert_eq!(a.headers["x-seen-alpn"], "http/1.1");
        assert_eq!(a.headers["x-seen-client-cert"], "false");
    }
    assert_eq!(
        backend.connections.load(Ordering::SeqCst),
        1,
        "one pooled TLS connection served the three requests"
    );
}

/// (host, annotations besides backend-protocol, status, SNI the backend saw).
type VerifyRow = (
    &'static str,
    &'static [(&'static str, &'static str)],
    u16,
    &'static str,
);

#[tokio::test]
async fn proxy_ssl_verify_checks_the_upstream_certificate_against_the_secrets_ca() {
    let ca = Ca::new("backend CA");
    let other = Ca::new("some other CA");
    // The Service is `tlsecho` in `default`: its DNS name is what is verified without
    // proxy-ssl-name.
    let leaf = ca.leaf(&["backend.test", "tlsecho.default.svc"]);
    let backend = tls_backend(&leaf, &[b"http/1.1"], None).await;
    let mut yaml = service_yaml("tlsecho", &[backend.addr]);
    yaml.push_str(&secret_yaml("right-ca", &[("ca.crt", &ca.pem)]));
    yaml.push_str(&secret_yaml("wrong-ca", &[("ca.crt", &other.pem)]));
    // (host, annotations besides backend-protocol: HTTPS, status, SNI the backend saw)
    let rows: &[VerifyRow] = &[
        // proxyssl.go "proxy-ssl-verify to on, ... proxy-ssl-server-name to on".
        (
            "right-ca.test",
            &[
                ("proxy-ssl-secret", "default/right-ca"),
                ("proxy-ssl-verify", "on"),
                ("proxy-ssl-verify-depth", "2"),
                ("proxy-ssl-name", "backend.test"),
                ("proxy-ssl-server-name", "on"),
            ],
            200,
            "backend.test",
        ),
        // Verified against the Service's name; no SNI sent (server-name off).
        (
            "service-name.test",
            &[
                ("proxy-ssl-secret", "default/right-ca"),
                ("proxy-ssl-verify", "on"),
            ],
            200,
            "",
        ),
        // A name the certificate does not carry.
        (
            "wrong-name.test",
            &[
                ("proxy-ssl-secret", "default/right-ca"),
                ("proxy-ssl-verify", "on"),
                ("proxy-ssl-name", "other.test"),
            ],
            502,
            "",
        ),
        // A CA that did not sign it.
        (
            "wrong-ca.test",
            &[
                ("proxy-ssl-secret", "default/wrong-ca"),
                ("proxy-ssl-verify", "on"),
                ("proxy-ssl-name", "backend.test"),
            ],
            502,
            "",
        ),
        // The same CA with verification off (the default): served.
        (
            "wrong-ca-unverified.test",
            &[("proxy-ssl-secret", "default/wrong-ca")],
            200,
            "",
        ),
        // A Secret that does not exist: the location is denied (proxyssl/main.go,
        // LocationDenied), never served unverified.
        (
            "missing.test",
            &[
                ("proxy-ssl-secret", "default/missing"),
                ("proxy-ssl-verify", "on"),
            ],
            503,
            "",
        ),
    ];
    for (i, (host, annotations, _, _)) in rows.iter().enumerate() {
        let mut all = vec![("backend-protocol", "HTTPS")];
        all.extend_from_slice(annotations);
        yaml.push_str(&ingress(&format!("i{i}"), host, "tlsecho", &all));
    }
    let proc = IngressProcess::start(&yaml, &[]).await;
    let mut failed_handshakes = 0;
    for (host, _, status, sni) in rows {
        let a = fetch(&proc, host).await;
        assert_eq!(a.status, *status, "{host}: {a:?}\n{}", proc.log());
        if *status == 200 {
            assert_eq!(a.headers["x-seen-sni"], *sni, "{host}");
        }
        if *status == 502 {
            failed_handshakes += 1;
            let errors = proc
                .metrics()
                .await
                .sum(HANDSHAKE_ERRORS, &[("service", "default/tlsecho:80")]);
            assert!(
                errors >= f64::from(failed_handshakes),
                "{host}: handshake failures are counted: {errors}"
            );
        }
    }
    // The Ingresses that failed did not change what the others serve.
    let a = fetch(&proc, "right-ca.test").await;
    assert_eq!(a.status, 200);
}

#[tokio::test]
async fn a_client_certificate_from_proxy_ssl_secret_is_presented_to_the_backend() {
    // "Backend Certificate Authentication": tls.crt/tls.key of proxy-ssl-secret
    // authenticate the proxy to an HTTPS backend that requires client certificates.
    let server_ca = Ca::new("backend CA");
    let client_ca = Ca::new("client CA");
    let backend = tls_backend(
        &server_ca.leaf(&["mtls.internal"]),
        &[b"http/1.1"],
        Some(&client_ca),
    )
    .await;
    let (crt, key) = client_ca.leaf(&["ingress.client"]);
    let mut yaml = service_yaml("mtls", &[backend.addr]);
    yaml.push_str(&secret_yaml(
        "with-client-cert",
        &[
            ("ca.crt", &server_ca.pem),
            ("tls.crt", &crt),
            ("tls.key", &key),
        ],
    ));
    yaml.push_str(&secret_yaml("ca-only", &[("ca.crt", &server_ca.pem)]));
    let verified = [
        ("backend-protocol", "HTTPS"),
        ("proxy-ssl-verify", "on"),
        ("proxy-ssl-name", "mtls.internal"),
    ];
    let mut with = verified.to_vec();
    with.push(("proxy-ssl-secret", "default/with-client-cert"));
    let mut without = verified.to_vec();
    without.push(("proxy-ssl-secret", "default/ca-only"));
    yaml.push_str(&ingress("with", "with.test", "mtls", &with));
    yaml.push_str(&ingress("without", "without.test", "mtls", &without));
    let proc = IngressProcess::start(&yaml, &[]).await;

    let a = fetch(&proc, "with.test").await;
    assert_eq!(a.status, 200, "{a:?}\n{}", proc.log());
    assert_eq!(a.headers["x-seen-client-cert"], "true");
    let a = fetch(&proc, "without.test").await;
    assert_eq!(
        a.status, 502,
        "the backend refuses a proxy without a certificate"
    );
    let a = fetch(&proc, "with.test").await;
    assert_eq!(a.status, 200, "and the other Ingress is unaffected");
}

#[tokio::test]
async fn grpc_and_grpcs_backends_carry_calls_and_their_status_in_trailers() {
    // grpc.go: "should return OK for service with backend protocol GRPC" and "GRPCS"
    // (a real call through the ingress; here an HTTP/2 backend speaking the gRPC framing),
    // and a failed call's status passes through in the trailers.
    let h2c = h2c_backend().await;
    let ca = Ca::new("grpc CA");
    let grpcs = tls_backend(&ca.leaf(&["grpcs.internal"]), &[b"h2"], None).await;
    let mut yaml = service_yaml("grpc", &[h2c.addr]);
    yaml.push_str(&service_yaml("grpcs", &[grpcs.addr]));
    yaml.push_str(&secret_yaml("grpc-ca", &[("ca.crt", &ca.pem)]));
    yaml.push_str(&ingress(
        "grpc",
        "grpc.test",
        "grpc",
        &[("backend-protocol", "GRPC")],
    ));
    yaml.push_str(&ingress(
        "h2c",
        "h2c.test",
        "grpc",
        &[("backend-protocol", "h2c")],
    ));
    yaml.push_str(&ingress(
        "grpcs",
        "grpcs.test",
        "grpcs",
        &[
            ("backend-protocol", "GRPCS"),
            ("proxy-ssl-secret", "default/grpc-ca"),
            ("proxy-ssl-verify", "on"),
            ("proxy-ssl-name", "grpcs.internal"),
            ("proxy-ssl-server-name", "on"),
        ],
    ));
    let proc = IngressProcess::start(&yaml, &[]).await;
    for host in ["grpc.test", "h2c.test", "grpcs.test"] {
        let (status, message, trailers) = grpc_call(&proc, host, "/echo.Echo/Say", b"world").await;
        assert_eq!(status, 200, "{host}\n{}", proc.log());
        assert_eq!(message.as_deref(), Some(&b"hello world"[..]), "{host}");
        assert_eq!(
            trailers
                .get("grpc-status")
                .map(hyper::header::HeaderValue::as_bytes),
            Some(&b"0"[..]),
            "{host}"
        );

        let (status, message, trailers) =
            grpc_call(&proc, host, "/echo.Echo/Missing", b"world").await;
        assert_eq!(status, 200, "{host}");
        assert_eq!(message, None, "{host}");
        assert_eq!(trailers["grpc-status"], "5", "{host}");
        assert_eq!(trailers["grpc-message"], "no such method", "{host}");
    }
    // Plain HTTP/1.1 clients reach them too, in HTTP/2 (and over TLS with ALPN h2).
    let a = fetch(&proc, "grpcs.test").await;
    assert_eq!(a.status, 200, "{a:?}");
    assert_eq!(a.headers["x-seen-version"], "HTTP/2.0");
    assert_eq!(a.headers["x-seen-alpn"], "h2");
    assert_eq!(a.headers["x-seen-sni"], "grpcs.internal");
    let a = fetch(&proc, "grpc.test").await;
    assert_eq!(a.headers["x-seen-version"], "HTTP/2.0");
    assert_eq!(a.headers["x-seen-tls"], "false");
    assert_eq!(
        grpcs.connections.load(Ordering::SeqCst),
        1,
        "one multiplexed TLS connection"
    );
}
