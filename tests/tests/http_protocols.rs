//! L7 protocols end to end: WebSocket through the proxy, HTTP/2 over TLS (ALPN) and h2c,
//! SNI certificate choice verified by a rustls client, and the HTTP→HTTPS redirect.

use std::time::Duration;

use bytes::Bytes;
use futures::{SinkExt as _, StreamExt as _};
use http_body_util::{BodyExt as _, Full};
use hyper::{Request, Version};
use hyper_util::rt::{TokioExecutor, TokioIo};
use ingress_tests::http_support::{
    RunningRouter, TestBackend, TestCa, get, http_client, ingress_yaml, peer_leaf, service_yaml,
    snapshot, tls_connect, tls_connector, tls_get,
};
use k8s_openapi::api::core::v1::Secret;
use rustls_pki_types::{CertificateDer, pem::PemObject as _};
use tokio::net::TcpStream;
use tokio_tungstenite::tungstenite::Message;
use xdp_ingress::http::Limits;

/// An Ingress for `hosts` (all to service `svc`) with a `tls` entry naming `secret`.
fn tls_ingress(name: &str, hosts: &[&str], secret: &str, svc: &str) -> String {
    let mut y = ingress_yaml(name, Some(hosts[0]), &[("/", "Prefix", svc)]);
    for h in &hosts[1..] {
        y.push_str(&format!(
            "  - host: \"{h}\"\n    http:\n      paths:\n      - path: /\n        pathType: Prefix\n        backend:\n          service:\n            name: {svc}\n            port:\n              number: 80\n"
        ));
    }
    let list: Vec<String> = hosts.iter().map(|h| format!("\"{h}\"")).collect();
    y.push_str(&format!(
        "  tls:\n  - hosts: [{}]\n    secretName: {secret}\n",
        list.join(", ")
    ));
    y
}

fn leaf_of(secret: &Secret) -> CertificateDer<'static> {
    let pem = &secret.data.as_ref().unwrap()["tls.crt"].0;
    CertificateDer::from_pem_slice(pem).unwrap()
}

#[tokio::test]
async fn websocket_echo_through_the_proxy() {
    let b = TestBackend::start("ws").await;
    let yaml = format!(
        "{}{}",
        service_yaml("ws", &[b.addr]),
        ingress_yaml("ws", Some("ws.test"), &[("/", "Prefix", "ws")])
    );
    let router = RunningRouter::start(snapshot(&yaml, Vec::new()), Limits::default()).await;
    let tcp = TcpStream::connect(router.http).await.unwrap();
    let (mut ws, resp) = tokio_tungstenite::client_async("ws://ws.test/chat", tcp)
        .await
        .expect("WebSocket handshake through the router");
    assert_eq!(resp.status(), 101);
    assert_eq!(resp.headers()["x-backend"], "ws");
    let binary: Vec<u8> = (0..=255u8).cycle().take(70_000).collect();
    for msg in [
        Message::text("hello"),
        Message::binary(binary.clone()),
        Message::text("é ✓"),
    ] {
        ws.send(msg.clone()).await.unwrap();
        let echoed = tokio::time::timeout(Duration::from_secs(5), ws.next())
            .await
            .expect("echo in time")
            .expect("open")
            .expect("message");
        assert_eq!(echoed, msg);
    }
    ws.close(None).await.unwrap();
}

#[tokio::test]
async fn http2_over_tls_with_alpn_and_h2c_with_prior_knowledge() {
    let ca = TestCa::new();
    let b = TestBackend::start("web").await;
    let secret = ca.secret("web-tls", &["web.test"]);
    let yaml = format!(
        "{}{}",
        service_yaml("web", &[b.addr]),
        tls_ingress("web", &["web.test"], "web-tls", "web")
    );
    let router = RunningRouter::start(snapshot(&yaml, vec![secret]), Limits::default()).await;

    let h2 = tls_connector(&ca.cert, &[b"h2", b"http/1.1"]);
    let stream = tls_connect(&h2, router.https, "web.test")
        .await
        .expect("TLS handshake");
    assert_eq!(stream.get_ref().1.alpn_protocol(), Some(&b"h2"[..]));
    let (version, answer) = tls_get(stream, "web.test", "/h2").await;
    assert_eq!(version, Version::HTTP_2);
    assert_eq!((answer.status.as_u16(), answer.backend()), (200, "web"));
    assert_eq!(answer.seen_header("x-forwarded-proto"), Some("https"));
    assert_eq!(
        answer.seen_header("host"),
        Some("web.test"),
        "h2 :authority becomes Host"
    );

    let h1 = tls_connector(&ca.cert, &[b"http/1.1"]);
    let stream = tls_connect(&h1, router.https, "web.test")
        .await
        .expect("TLS handshake");
    assert_eq!(stream.get_ref().1.alpn_protocol(), Some(&b"http/1.1"[..]));
    let (version, answer) = tls_get(stream, "web.test", "/h1").await;
    assert_eq!(version, Version::HTTP_11);
    assert_eq!(answer.backend(), "web");

    // h2c with prior knowledge on the plain port.
    let tcp = TcpStream::connect(router.http).await.unwrap();
    let (mut send, conn) =
        hyper::client::conn::http2::handshake(TokioExecutor::new(), TokioIo::new(tcp))
            .await
            .expect("h2c handshake");
    tokio::spawn(conn);
    let req = Request::get("http://web.test/h2c")
        .body(Full::new(Bytes::new()))
        .unwrap();
    let resp = send.send_request(req).await.expect("h2c request");
    assert_eq!(resp.version(), Version::HTTP_2);
    // web.test has TLS: plain requests are redirected, h2c included.
    assert_eq!(resp.status(), 308);
    let _ = resp.into_body().collect().await;
}

#[tokio::test]
async fn sni_picks_the_certificate_exact_then_wildcard_and_follows_snapshots() {
    let ca = TestCa::new();
    let b = TestBackend::start("web").await;
    let (a, bb, wild) = (
        ca.secret("a-tls", &["a.test"]),
        ca.secret("b-tls", &["b.test"]),
        ca.secret("wild-tls", &["*.wild.test"]),
    );
    let ingresses = format!(
        "{}{}{}{}",
        service_yaml("web", &[b.addr]),
        tls_ingress("a", &["a.test"], "a-tls", "web"),
        tls_ingress("b", &["b.test"], "b-tls", "web"),
        tls_ingress("wild", &["*.wild.test"], "wild-tls", "web"),
    );
    let router = RunningRouter::start(
        snapshot(&ingresses, vec![a.clone(), bb.clone(), wild.clone()]),
        Limits::default(),
    )
    .await;
    let client = tls_connector(&ca.cert, &[b"http/1.1"]);
    for (sni, secret) in [("a.test", &a), ("b.test", &bb), ("x.wild.test", &wild)] {
        let stream = tls_connect(&client, router.https, sni)
            .await
            .unwrap_or_else(|e| panic!("{sni}: certificate must verify for the name: {e}"));
        assert_eq!(peer_leaf(&stream), leaf_of(secret), "{sni}");
        let (_, answer) = tls_get(stream, sni, "/").await;
        assert_eq!(answer.backend(), "web", "{sni}");
    }
    // A wildcard covers one label only, and unknown names get the self-signed default.
    for sni in ["y.x.wild.test", "unknown.test"] {
        let err = tls_connect(&client, router.https, sni).await.err();
        assert!(
            err.is_some(),
            "{sni}: the default certificate must not verify"
        );
    }

    // A renewed Secret takes effect on the next handshake, without restart.
    let renewed = ca.secret("a-tls", &["a.test"]);
    router
        .publish(snapshot(
            &ingresses,
            vec![renewed.clone(), bb.clone(), wild.clone()],
        ))
        .await;
    // A fresh client: a resumed TLS session would carry the old session's certificate.
    let fresh = tls_connector(&ca.cert, &[b"http/1.1"]);
    let stream = tls_connect(&fresh, router.https, "a.test").await.unwrap();
    assert_eq!(peer_leaf(&stream), leaf_of(&renewed));
    assert_ne!(leaf_of(&renewed), leaf_of(&a));
}

#[tokio::test]
async fn plain_http_to_a_tls_host_is_redirected_with_308() {
    let ca = TestCa::new();
    let b = TestBackend::start("web").await;
    let yaml = format!(
        "{}{}{}",
        service_yaml("web", &[b.addr]),
        tls_ingress("secure", &["secure.test"], "secure-tls", "web"),
        ingress_yaml("open", Some("open.test"), &[("/", "Prefix", "web")]),
    );
    let router = RunningRouter::start(
        snapshot(&yaml, vec![ca.secret("secure-tls", &["secure.test"])]),
        Limits::default(),
    )
    .await;
    let client = http_client();
    let redirect = get(&client, router.http, "secure.test", "/a/b?c=d").await;
    assert_eq!(redirect.status, 308);
    assert_eq!(
        redirect.headers["location"],
        format!("https://secure.test:{}/a/b?c=d", router.https.port()).as_str()
    );
    assert_eq!(
        b.request_count(),
        0,
        "a redirected request never reaches the backend"
    );
    let open = get(&client, router.http, "open.test", "/").await;
    assert_eq!(
        (open.status.as_u16(), open.backend()),
        (200, "web"),
        "hosts without TLS are served"
    );
}

#[tokio::test]
async fn an_idle_http2_client_connection_is_closed_after_the_idle_timeout() {
    let ca = TestCa::new();
    let b = TestBackend::start("web").await;
    let secret = ca.secret("tls-cert", &["tls.test"]);
    let yaml = format!(
        "{}{}{}",
        service_yaml("web", &[b.addr]),
        ingress_yaml("web", Some("web.test"), &[("/", "Prefix", "web")]),
        tls_ingress("tls", &["tls.test"], "tls-cert", "web")
    );
    let limits = Limits {
        idle_timeout: Duration::from_millis(300),
        ..Limits::default()
    };
    let router = RunningRouter::start(snapshot(&yaml, vec![secret]), limits).await;
    // h2c with prior knowledge (served by hyper-util's auto builder)...
    let tcp = TcpStream::connect(router.http).await.unwrap();
    stream_then_idle(TokioIo::new(tcp), "http://web.test").await;
    // ... and h2 chosen by ALPN (hyper's HTTP/2 server alone).
    let h2 = tls_connector(&ca.cert, &[b"h2"]);
    let tls = tls_connect(&h2, router.https, "tls.test")
        .await
        .expect("TLS handshake");
    assert_eq!(tls.get_ref().1.alpn_protocol(), Some(&b"h2"[..]));
    stream_then_idle(TokioIo::new(tls), "https://tls.test").await;
    let health = get(&http_client(), router.http, "any.test", "/healthz").await;
    assert_eq!(health.status, 200);
}

/// Over an HTTP/2 connection on `io`: a streamed response that lasts longer than the idle
/// timeout is not cut (a request is open); then, with nothing open, the router says GOAWAY
/// and the connection ends gracefully.
async fn stream_then_idle<I>(io: TokioIo<I>, origin: &str)
where
    I: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
{
    let (mut send, conn) = hyper::client::conn::http2::handshake(TokioExecutor::new(), io)
        .await
        .expect("HTTP/2 handshake");
    let conn = tokio::spawn(conn);
    let req = Request::get(format!("{origin}/stream/6/100"))
        .body(Full::new(Bytes::new()))
        .unwrap();
    let resp = send.send_request(req).await.expect("HTTP/2 request");
    assert_eq!(resp.status(), 200, "{origin}");
    let body = resp
        .into_body()
        .collect()
        .await
        .expect("whole body")
        .to_bytes();
    assert_eq!(body, ingress_tests::http_support::stream_body(6).as_bytes());
    tokio::time::timeout(Duration::from_secs(10), conn)
        .await
        .unwrap_or_else(|_| panic!("{origin}: the idle connection was closed"))
        .unwrap()
        .expect("closed gracefully");
}
