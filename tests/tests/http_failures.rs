//! Failure handling of the L7 router: dead endpoints (502/503 and retry), slow and broken
//! clients (slowloris, 431, 400, 413), a silent upstream (504) or one that stalls mid-body,
//! graceful shutdown; and the router keeps serving after each.

use std::{net::SocketAddr, time::Duration};

use ingress_tests::http_support::{
    RunningRouter, TestBackend, get, http_client, ingress_yaml, raw_exchange, service_yaml,
    snapshot, stream_body,
};
use tokio::net::TcpListener;
use xdp_ingress::http::{
    Limits,
    metrics::{ErrorLabels, ServiceLabels},
};

/// An address on 127.0.0.1 where nothing listens (bound, then released).
async fn dead_addr() -> SocketAddr {
    let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
    l.local_addr().unwrap()
}

fn site(services: &str, svc: &str) -> String {
    format!(
        "{services}{}",
        ingress_yaml(svc, Some(&format!("{svc}.test")), &[("/", "Prefix", svc)])
    )
}

/// The router with `svc.test` → `addr` and a 500 ms `--upstream-response-timeout`.
async fn router_with_short_response_timeout(svc: &str, addr: SocketAddr) -> RunningRouter {
    let limits = Limits {
        upstream_response_timeout: Duration::from_millis(500),
        ..Limits::default()
    };
    RunningRouter::start(
        snapshot(&site(&service_yaml(svc, &[addr]), svc), Vec::new()),
        limits,
    )
    .await
}

async fn assert_still_serving(router: &RunningRouter) {
    let health = get(&http_client(), router.http, "any.test", "/healthz").await;
    assert_eq!(health.status, 200, "the router keeps serving");
}

#[tokio::test]
async fn dead_and_missing_endpoints_get_502_and_503() {
    let dead = dead_addr().await;
    let services = format!(
        "{}{}",
        service_yaml("dead", &[dead]),
        service_yaml("empty", &[])
    );
    let yaml = format!(
        "{}{}",
        site(&services, "dead"),
        ingress_yaml("empty", Some("empty.test"), &[("/", "Prefix", "empty")])
    );
    let router = RunningRouter::start(snapshot(&yaml, Vec::new()), Limits::default()).await;
    let client = http_client();

    let refused = get(&client, router.http, "dead.test", "/").await;
    assert_eq!(refused.status, 502, "{}", refused.body);
    let none = get(&client, router.http, "empty.test", "/").await;
    assert_eq!(none.status, 503, "{}", none.body);

    let m = &router.metrics;
    assert_eq!(
        m.errors
            .get_or_create(&ErrorLabels {
                kind: "connect_failed",
                fault: "upstream",
            })
            .get(),
        1
    );
    assert_eq!(
        m.errors
            .get_or_create(&ErrorLabels {
                kind: "no_endpoints",
                fault: "upstream",
            })
            .get(),
        1
    );
    assert_still_serving(&router).await;
}

#[tokio::test]
async fn one_of_two_endpoints_down_is_retried_on_the_other() {
    let live = TestBackend::start("live").await;
    // Same port for both so they share one EndpointSlice; nothing listens on 127.0.0.2.
    let dead_same_port = SocketAddr::from(([127, 0, 0, 2], live.addr.port()));
    let yaml = site(&service_yaml("pair", &[dead_same_port, live.addr]), "pair");
    let router = RunningRouter::start(snapshot(&yaml, Vec::new()), Limits::default()).await;
    let client = http_client();
    for i in 0..10 {
        let answer = get(&client, router.http, "pair.test", &format!("/r{i}")).await;
        assert_eq!(
            (answer.status.as_u16(), answer.backend()),
            (200, "live"),
            "request {i}"
        );
    }
    let connect_errors = router
        .metrics
        .upstream_connect_errors
        .get_or_create(&ServiceLabels {
            service: "default/pair:80".into(),
        })
        .get();
    assert!(
        connect_errors >= 1,
        "round-robin must have tried the dead endpoint at least once"
    );
    assert_eq!(live.request_count(), 10);
}

#[tokio::test]
async fn silent_upstream_gets_504() {
    let silent = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = silent.local_addr().unwrap();
    let hold = tokio::spawn(async move {
        let mut held = Vec::new();
        while let Ok((s, _)) = silent.accept().await {
            held.push(s);
        }
    });
    let router = router_with_short_response_timeout("silent", addr).await;
    let answer = get(&http_client(), router.http, "silent.test", "/").await;
    assert_eq!(answer.status, 504, "{}", answer.body);
    hold.abort();
    assert_still_serving(&router).await;
}

/// An upstream that stops sending in the middle of a body is cut after the response
/// timeout: the client's response ends short instead of hanging.
#[tokio::test]
async fn upstream_stalling_mid_body_is_cut_after_the_response_timeout() {
    use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
    let stalling = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = stalling.local_addr().unwrap();
    let hold = tokio::spawn(async move {
        let mut held = Vec::new();
        while let Ok((mut s, _)) = stalling.accept().await {
            let mut buf = [0u8; 4096];
            let _ = s.read(&mut buf).await;
            let _ = s
                .write_all(b"HTTP/1.1 200 OK\r\ncontent-length: 100\r\n\r\nfirst-ten!")
                .await;
            held.push(s); // never sends the other 90 bytes, never closes
        }
    });
    let router = router_with_short_response_timeout("stall", addr).await;
    let request = b"GET / HTTP/1.1\r\nHost: stall.test\r\n\r\n";
    let (reply, closed) = raw_exchange(router.http, request, Duration::from_secs(10)).await;
    assert!(reply.starts_with("HTTP/1.1 200"), "{reply}");
    assert!(
        reply.ends_with("first-ten!"),
        "only the bytes sent arrive: {reply:?}"
    );
    assert!(
        closed,
        "the router closes the client connection when the body is cut"
    );
    hold.abort();
    assert_still_serving(&router).await;
}

#[tokio::test]
async fn slowloris_is_cut_at_the_header_timeout() {
    let limits = Limits {
        header_read_timeout: Duration::from_millis(500),
        ..Limits::default()
    };
    let router = RunningRouter::start(snapshot("", Vec::new()), limits).await;
    // Headers that never end.
    let (out, closed) = raw_exchange(
        router.http,
        b"GET / HTTP/1.1\r\nHost: a.test\r\nX-Slow: 1",
        Duration::from_secs(10),
    )
    .await;
    assert!(
        closed,
        "the router closes a connection whose headers never complete"
    );
    assert!(!out.contains(" 200 "), "{out}");
    // An idle connection that sends nothing is closed too.
    let (_, closed) = raw_exchange(router.http, b"", Duration::from_secs(10)).await;
    assert!(closed);
    assert_still_serving(&router).await;
}

#[tokio::test]
async fn oversized_malformed_and_too_large_requests_get_4xx() {
    let b = TestBackend::start("web").await;
    let limits = Limits {
        max_header_bytes: 8 * 1024,
        max_body_bytes: Some(100),
        ..Limits::default()
    };
    let router = RunningRouter::start(
        snapshot(&site(&service_yaml("web", &[b.addr]), "web"), Vec::new()),
        limits,
    )
    .await;
    let five = Duration::from_secs(5);

    let big = format!(
        "GET / HTTP/1.1\r\nHost: web.test\r\nX-Big: {}\r\n\r\n",
        "a".repeat(20_000)
    );
    let (out, _) = raw_exchange(router.http, big.as_bytes(), five).await;
    assert!(
        out.starts_with("HTTP/1.1 431"),
        "oversized headers: {out:?}"
    );

    for (what, raw) in [
        ("garbage request line", b"NOT HTTP AT ALL\r\n\r\n".to_vec()),
        (
            "bad header",
            b"GET / HTTP/1.1\r\nHost web.test\r\n\r\n".to_vec(),
        ),
        (
            "bad content-length",
            b"POST / HTTP/1.1\r\nHost: web.test\r\nContent-Length: abc\r\n\r\n".to_vec(),
        ),
        (
            "non-text host",
            b"GET / HTTP/1.1\r\nHost: \xff\xfe\r\n\r\n".to_vec(),
        ),
    ] {
        let (out, _) = raw_exchange(router.http, &raw, five).await;
        assert!(out.starts_with("HTTP/1.1 400"), "{what}: {out:?}");
    }

    let declared = format!(
        "POST / HTTP/1.1\r\nHost: web.test\r\nContent-Length: 1000\r\nConnection: close\r\n\r\n{}",
        "x".repeat(1000)
    );
    let (out, _) = raw_exchange(router.http, declared.as_bytes(), five).await;
    assert!(
        out.starts_with("HTTP/1.1 413"),
        "declared oversize body: {out:?}"
    );

    let chunked = format!(
        "POST / HTTP/1.1\r\nHost: web.test\r\nTransfer-Encoding: chunked\r\nConnection: close\r\n\r\n{:x}\r\n{}\r\n0\r\n\r\n",
        500,
        "y".repeat(500)
    );
    let (out, _) = raw_exchange(router.http, chunked.as_bytes(), five).await;
    assert!(
        out.starts_with("HTTP/1.1 413"),
        "streamed oversize body: {out:?}"
    );

    let small =
        "POST / HTTP/1.1\r\nHost: web.test\r\nContent-Length: 5\r\nConnection: close\r\n\r\nhello";
    let (out, _) = raw_exchange(router.http, small.as_bytes(), five).await;
    assert!(
        out.starts_with("HTTP/1.1 200"),
        "a body within the limit passes: {out:?}"
    );
    assert_still_serving(&router).await;
}

#[tokio::test]
async fn graceful_shutdown_finishes_in_flight_requests_and_stops_accepting() {
    let b = TestBackend::start("web").await;
    let mut router = RunningRouter::start(
        snapshot(&site(&service_yaml("web", &[b.addr]), "web"), Vec::new()),
        Limits::default(),
    )
    .await;
    let addr = router.http;
    let in_flight =
        tokio::spawn(async move { get(&http_client(), addr, "web.test", "/stream/10/50").await });
    tokio::time::sleep(Duration::from_millis(100)).await;
    let server = router.shutdown();
    let answer = in_flight.await.unwrap();
    assert_eq!(answer.status, 200);
    assert_eq!(
        answer.body,
        stream_body(10),
        "the in-flight response completes"
    );
    tokio::time::timeout(Duration::from_secs(10), server)
        .await
        .expect("drained within the grace period")
        .unwrap();
    assert!(
        tokio::net::TcpStream::connect(addr).await.is_err(),
        "no longer accepting"
    );
}
