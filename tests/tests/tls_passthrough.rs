//! TLS passthrough by SNI through the real binary, to a backend that terminates TLS
//! itself ([`TlsBackend`]): the client verifies the backend's own certificate, which the
//! ingress never holds. ingress-nginx's `ssl-passthrough` annotation on the Ingress
//! HTTPS port, shared with hosts the ingress terminates; unusable ClientHellos are closed
//! and counted.

use std::time::Duration;

use ingress_tests::{
    http_support::{
        TestBackend, TestCa, ingress_yaml, peer_leaf, raw_exchange, service_yaml, tls_connector,
        tls_get,
    },
    process::IngressProcess,
    tls_backend::{TlsBackend, greet, greet_chunked},
};
use k8s_openapi::api::core::v1::Secret;
use rustls_pki_types::{CertificateDer, pem::PemObject as _};
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};

const PASS_HOST: &str = "pass.test";
const WEB_HOST: &str = "web.test";
const WAIT: Duration = Duration::from_secs(10);

/// An Ingress for `pass.test` with `ssl-passthrough` (paths `/` to the TLS backend and
/// `/api`, ignored for TLS) and one for `web.test`, terminated here with `web-tls`.
fn manifests(pass: &TlsBackend, web: &TestBackend, web_tls: &Secret) -> String {
    let mut yaml = service_yaml("pass", &[pass.addr]);
    yaml.push_str(&service_yaml("web", &[web.addr]));
    yaml.push_str(
        &ingress_yaml("pass", Some(PASS_HOST), &[("/", "Prefix", "pass"), ("/api", "Prefix", "web")])
            .replace(
                "  namespace: default\nspec:",
                "  namespace: default\n  annotations:\n    nginx.ingress.kubernetes.io/ssl-passthrough: \"true\"\nspec:",
            ),
    );
    yaml.push_str(&ingress_yaml(
        "web",
        Some(WEB_HOST),
        &[("/", "Prefix", "web")],
    ));
    yaml.push_str(&format!(
        "  tls:\n  - hosts: [\"{WEB_HOST}\"]\n    secretName: web-tls\n---\n"
    ));
    yaml.push_str(&serde_yaml::to_string(web_tls).expect("Secret YAML"));
    yaml
}

/// Waits until the metric sample reaches `want` (counters of connections that ended).
async fn wait_for(proc: &IngressProcess, name: &str, labels: &[(&str, &str)], want: f64) -> f64 {
    let deadline = tokio::time::Instant::now() + WAIT;
    loop {
        let got = proc.metrics().await.sum(name, labels);
        if got >= want || tokio::time::Instant::now() > deadline {
            return got;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn ssl_passthrough_hands_the_tls_stream_to_the_backend_and_shares_the_port() {
    let ca = TestCa::new();
    let pass = TlsBackend::start("pass", &ca, &[PASS_HOST]).await;
    let web = TestBackend::start("web").await;
    let web_tls = ca.secret("web-tls", &[WEB_HOST]);
    let proc = IngressProcess::start(&manifests(&pass, &web, &web_tls), &[]).await;
    let connector = tls_connector(&ca.cert, &[b"http/1.1"]);

    // The backend's own certificate verifies for pass.test: the stream is untouched.
    let (mut stream, line) = greet(&connector, proc.https, PASS_HOST)
        .await
        .expect("passthrough handshake");
    assert_eq!(line, "backend pass sni pass.test");
    stream.write_all(b"ping\n").await.expect("write");
    let mut echo = [0u8; 5];
    stream.read_exact(&mut echo).await.expect("echo");
    assert_eq!(&echo, b"ping\n");
    drop(stream);
    assert_eq!(pass.handshakes(), 1);
    // ingress-nginx test/e2e/settings/ssl_passthrough.go "on throttled connections": the
    // ClientHello written 3 bytes at a time, across TCP segments and reads.
    let line = greet_chunked(&connector, proc.https, PASS_HOST, 3)
        .await
        .expect("throttled passthrough");
    assert_eq!(line, "backend pass sni pass.test");

    // The same port terminates web.test with its Secret and routes HTTP.
    let stream = ingress_tests::http_support::tls_connect(&connector, proc.https, WEB_HOST)
        .await
        .expect("terminated handshake");
    let web_leaf =
        CertificateDer::from_pem_slice(&web_tls.data.as_ref().expect("data")["tls.crt"].0)
            .expect("pem");
    assert_eq!(peer_leaf(&stream), web_leaf, "terminated with web-tls");
    let (_, answer) = tls_get(stream, WEB_HOST, "/").await;
    assert_eq!(answer.status, 200);
    assert_eq!(answer.backend(), "web");

    // Plain HTTP on the TLS port: closed without an answer, counted.
    let (read, closed) = raw_exchange(
        proc.https,
        b"GET / HTTP/1.1\r\nHost: pass.test\r\n\r\n",
        WAIT,
    )
    .await;
    assert!(closed && read.is_empty(), "closed cleanly: {read:?}");
    // A ClientHello cut short by the client.
    let (read, closed) = raw_exchange_half_closed(proc.https, &[22, 3, 1, 0, 200, 1, 0]).await;
    assert!(closed && read.is_empty(), "closed cleanly: {read:?}");

    let errors = "xdp_ingress_tls_client_hello_errors_total";
    assert_eq!(
        wait_for(&proc, errors, &[("reason", "not_tls")], 1.0).await,
        1.0
    );
    assert_eq!(
        wait_for(&proc, errors, &[("reason", "truncated")], 1.0).await,
        1.0
    );
    let passed = "xdp_ingress_tls_passthrough_connections_total";
    assert_eq!(
        wait_for(&proc, passed, &[("outcome", "passed")], 2.0).await,
        2.0
    );
    // The process still serves both after the bad ClientHellos.
    let (_, line) = greet(&connector, proc.https, PASS_HOST)
        .await
        .expect("passthrough again");
    assert_eq!(line, "backend pass sni pass.test");
}

/// Sends `bytes`, shuts the write half and reads until the peer closes.
async fn raw_exchange_half_closed(addr: std::net::SocketAddr, bytes: &[u8]) -> (String, bool) {
    let mut s = tokio::net::TcpStream::connect(addr).await.expect("connect");
    s.write_all(bytes).await.expect("write");
    s.shutdown().await.expect("shutdown");
    let mut out = Vec::new();
    let closed = tokio::time::timeout(WAIT, s.read_to_end(&mut out))
        .await
        .is_ok();
    (String::from_utf8_lossy(&out).into_owned(), closed)
}

/// A Gateway (on `--bind-address`) with an HTTPS listener for `*.example.com` and a TLS
/// Passthrough listener for `abc.example.com` sharing one port
/// (GatewayHTTPSAndTLSPassthroughSamePort), and a port of Passthrough listeners only.
fn gateway_manifests(
    pass: &TlsBackend,
    web: &TestBackend,
    cert: &Secret,
    shared: u16,
    only: u16,
) -> String {
    let mut yaml = service_yaml("pass", &[pass.addr]);
    yaml.push_str(&service_yaml("web", &[web.addr]));
    yaml.push_str(&format!(
        "---
apiVersion: gateway.networking.k8s.io/v1
kind: GatewayClass
metadata: {{name: xdp}}
spec: {{controllerName: xdp-ingress.dev/controller}}
---
apiVersion: gateway.networking.k8s.io/v1
kind: Gateway
metadata: {{name: gw, namespace: default}}
spec:
  gatewayClassName: xdp
  listeners:
  - {{name: https-terminate, port: {shared}, protocol: HTTPS, hostname: '*.example.com', tls: {{certificateRefs: [{{name: example-tls}}]}}}}
  - {{name: tls-passthrough, port: {shared}, protocol: TLS, hostname: abc.example.com, tls: {{mode: Passthrough}}}}
  - {{name: tls-only, port: {only}, protocol: TLS, hostname: '*.db.test', tls: {{mode: Passthrough}}}}
---
apiVersion: gateway.networking.k8s.io/v1
kind: HTTPRoute
metadata: {{name: web, namespace: default}}
spec:
  parentRefs: [{{name: gw, sectionName: https-terminate}}]
  rules:
  - backendRefs: [{{name: web, port: 80}}]
---
apiVersion: gateway.networking.k8s.io/v1
kind: TLSRoute
metadata: {{name: pass, namespace: default}}
spec:
  parentRefs: [{{name: gw, sectionName: tls-passthrough}}, {{name: gw, sectionName: tls-only}}]
  hostnames: [abc.example.com, a.db.test]
  rules:
  - backendRefs: [{{name: pass, port: 80}}]
---
"
    ));
    yaml.push_str(&serde_yaml::to_string(cert).expect("Secret YAML"));
    yaml
}

#[tokio::test(flavor = "multi_thread")]
async fn tls_route_passthrough_shares_a_port_with_an_https_listener() {
    let ca = TestCa::new();
    let pass = TlsBackend::start("pass", &ca, &["abc.example.com", "a.db.test"]).await;
    let web = TestBackend::start("web").await;
    let cert = ca.secret("example-tls", &["*.example.com"]);
    let (shared, only) = (
        ingress_tests::servers::free_tcp_port(),
        ingress_tests::servers::free_tcp_port(),
    );
    let proc =
        IngressProcess::start(&gateway_manifests(&pass, &web, &cert, shared, only), &[]).await;
    let connector = tls_connector(&ca.cert, &[b"http/1.1"]);
    let at = |port| std::net::SocketAddr::from(([127, 0, 0, 1], port));
    ingress_tests::gateway_support::wait_listening(at(shared), true).await;
    ingress_tests::gateway_support::wait_listening(at(only), true).await;

    // The exact Passthrough listener wins over the HTTPS wildcard: the backend's own
    // certificate verifies.
    let (_, line) = greet(&connector, at(shared), "abc.example.com")
        .await
        .expect("passthrough");
    assert_eq!(line, "backend pass sni abc.example.com");
    // Another name of the wildcard is terminated here and routed by the HTTPRoute.
    let stream =
        ingress_tests::http_support::tls_connect(&connector, at(shared), "other.example.com")
            .await
            .expect("terminated handshake");
    let (_, answer) = tls_get(stream, "other.example.com", "/").await;
    assert_eq!((answer.status.as_u16(), answer.backend()), (200, "web"));

    // The Passthrough-only port: its route's name passes, others close.
    let (_, line) = greet(&connector, at(only), "a.db.test")
        .await
        .expect("passthrough only");
    assert_eq!(line, "backend pass sni a.db.test");
    assert!(
        greet(&connector, at(only), "b.db.test").await.is_err(),
        "no route: closed"
    );
    let (read, closed) = raw_exchange(at(only), &hello_without_sni(), WAIT).await;
    assert!(
        closed && read.is_empty(),
        "a ClientHello without SNI is closed: {read:?}"
    );
    let (read, closed) = raw_exchange(at(only), b"\x00\x01garbage", WAIT).await;
    assert!(closed && read.is_empty(), "garbage is closed: {read:?}");
    let passed = "xdp_ingress_tls_passthrough_connections_total";
    assert_eq!(
        wait_for(&proc, passed, &[("outcome", "no_route")], 2.0).await,
        2.0
    );
    let errors = "xdp_ingress_tls_client_hello_errors_total";
    assert_eq!(
        wait_for(&proc, errors, &[("reason", "not_tls")], 1.0).await,
        1.0
    );
    assert_eq!(pass.handshakes(), 2);
}

/// A well-formed TLS 1.2 ClientHello with no extensions, hence no SNI.
fn hello_without_sni() -> Vec<u8> {
    let mut body = vec![3, 3];
    body.extend_from_slice(&[7; 32]);
    body.extend_from_slice(&[0, 0, 2, 0xc0, 0x2f, 1, 0]);
    let mut out = vec![22, 3, 1, 0, u8::try_from(body.len() + 4).expect("short")];
    out.extend_from_slice(&[1, 0, 0, u8::try_from(body.len()).expect("short")]);
    out.extend_from_slice(&body);
    out
}
