//! The HTTP/1.1 fast path on plain connections, and its handoff to hyper: requests it
//! serves and requests it hands over share one connection in order; HEAD and streamed
//! responses are framed right; a head split over two reads is still answered; idle and
//! draining keep-alive connections close.

use std::time::Duration;

use ingress_tests::http_support::{
    RunningRouter, TestBackend, get, http_client, ingress_yaml, raw_exchange, service_yaml,
    snapshot, stream_body,
};
use tokio::{
    io::{AsyncReadExt as _, AsyncWriteExt as _},
    net::TcpStream,
};
use xdp_ingress::http::Limits;

async fn router_for(backend: &TestBackend, limits: Limits) -> RunningRouter {
    let yaml = format!(
        "{}{}",
        service_yaml("web", &[backend.addr]),
        ingress_yaml("web", Some("web.test"), &[("/", "Prefix", "web")])
    );
    RunningRouter::start(snapshot(&yaml, Vec::new()), limits).await
}

/// The responses in `raw`, split at each status line.
fn responses(raw: &str) -> Vec<&str> {
    let mut starts: Vec<usize> = raw.match_indices("HTTP/1.1 ").map(|(i, _)| i).collect();
    starts.push(raw.len());
    starts.windows(2).map(|w| &raw[w[0]..w[1]]).collect()
}

#[tokio::test]
async fn served_and_handed_over_requests_share_one_connection_in_order() {
    let b = TestBackend::start("web").await;
    let router = router_for(&b, Limits::default()).await;
    // Pipelined in one write: a plain GET (fast path), a POST with a body (handed to
    // hyper with the bytes after it), then a GET that closes.
    let pipelined = b"GET /first HTTP/1.1\r\nHost: web.test\r\n\r\n\
        POST /second HTTP/1.1\r\nHost: web.test\r\nContent-Length: 5\r\n\r\nhello\
        GET /third HTTP/1.1\r\nHost: web.test\r\nConnection: close\r\n\r\n";
    let (raw, closed) = raw_exchange(router.http, pipelined, Duration::from_secs(10)).await;
    assert!(closed, "Connection: close ends the connection: {raw}");
    let answers = responses(&raw);
    assert_eq!(answers.len(), 3, "three responses: {raw}");
    for answer in &answers {
        assert!(answer.starts_with("HTTP/1.1 200 OK\r\n"), "{answer}");
        assert!(answer.contains("\r\nx-backend: web\r\n"), "{answer}");
        assert!(
            answer.contains("\nx-forwarded-for: 127.0.0.1\n"),
            "{answer}"
        );
    }
    assert!(
        answers[1].contains("\ncontent-length: 5\n"),
        "the body reached the backend: {}",
        answers[1]
    );
    assert!(
        answers[2].contains("\r\nconnection: close\r\n"),
        "{}",
        answers[2]
    );
    assert_eq!(b.request_count(), 3);
}

#[tokio::test]
async fn head_responses_keep_the_length_and_send_no_body() {
    let b = TestBackend::start("web").await;
    let router = router_for(&b, Limits::default()).await;
    // A HEAD forwarded to the backend, one answered here (404), then a GET that closes.
    let request = b"HEAD /x HTTP/1.1\r\nHost: web.test\r\n\r\n\
        HEAD /x HTTP/1.1\r\nHost: nowhere.test\r\n\r\n\
        GET /healthz HTTP/1.1\r\nHost: any.test\r\nConnection: close\r\n\r\n";
    let (raw, closed) = raw_exchange(router.http, request, Duration::from_secs(10)).await;
    assert!(closed, "{raw}");
    let answers = responses(&raw);
    assert_eq!(answers.len(), 3, "{raw}");
    for (head, status) in answers[..2].iter().zip(["200 OK", "404 Not Found"]) {
        assert!(
            head.starts_with(&format!("HTTP/1.1 {status}\r\n")),
            "{head}"
        );
        let length: usize = head
            .lines()
            .find_map(|l| l.strip_prefix("content-length: "))
            .expect("a HEAD response announces the length a GET would get")
            .trim()
            .parse()
            .unwrap();
        assert!(length > 0, "{head}");
        assert!(
            head.ends_with("\r\n\r\n"),
            "no body bytes after a HEAD response's head: {head:?}"
        );
    }
    assert!(answers[2].ends_with("ok\n"), "{}", answers[2]);
}

#[tokio::test]
async fn responses_of_unknown_length_are_chunked_and_arrive_whole() {
    let b = TestBackend::start("web").await;
    let router = router_for(&b, Limits::default()).await;
    let client = http_client();
    let streamed = get(&client, router.http, "web.test", "/stream/5/20").await;
    assert_eq!(streamed.status, 200);
    assert_eq!(
        streamed.headers.get("transfer-encoding"),
        Some(&hyper::header::HeaderValue::from_static("chunked"))
    );
    assert_eq!(streamed.body, stream_body(5));
    // The same pooled connection serves the next request.
    let next = get(&client, router.http, "web.test", "/after").await;
    assert_eq!(next.backend(), "web");
}

#[tokio::test]
async fn a_head_split_over_two_reads_is_still_answered() {
    let b = TestBackend::start("web").await;
    let router = router_for(&b, Limits::default()).await;
    let mut stream = TcpStream::connect(router.http).await.unwrap();
    stream
        .write_all(b"GET /split HTTP/1.1\r\nHost: web")
        .await
        .unwrap();
    tokio::time::sleep(Duration::from_millis(100)).await;
    stream
        .write_all(b".test\r\nConnection: close\r\n\r\n")
        .await
        .unwrap();
    let mut out = Vec::new();
    tokio::time::timeout(Duration::from_secs(10), stream.read_to_end(&mut out))
        .await
        .expect("answered and closed")
        .unwrap();
    let out = String::from_utf8_lossy(&out);
    assert!(out.starts_with("HTTP/1.1 200 OK\r\n"), "{out}");
    assert!(out.contains("\r\nx-backend: web\r\n"), "{out}");
}

/// Sends one keep-alive GET on a fresh connection and reads its whole response.
async fn one_request(addr: std::net::SocketAddr) -> TcpStream {
    let mut stream = TcpStream::connect(addr).await.unwrap();
    stream
        .write_all(b"GET /healthz HTTP/1.1\r\nHost: any.test\r\n\r\n")
        .await
        .unwrap();
    let mut head = Vec::new();
    while !head.ends_with(b"ok\n") {
        let mut byte = [0u8; 1];
        assert_eq!(stream.read(&mut byte).await.unwrap(), 1, "{head:?}");
        head.push(byte[0]);
    }
    stream
}

#[tokio::test]
async fn idle_keep_alive_connections_close_after_the_header_timeout() {
    let b = TestBackend::start("web").await;
    let limits = Limits {
        header_read_timeout: Duration::from_millis(300),
        ..Limits::default()
    };
    let router = router_for(&b, limits).await;
    let mut stream = one_request(router.http).await;
    let mut rest = Vec::new();
    let read = tokio::time::timeout(Duration::from_secs(10), stream.read_to_end(&mut rest))
        .await
        .expect("the idle connection is closed");
    assert_eq!(read.unwrap(), 0, "nothing more was sent: {rest:?}");
    let health = get(&http_client(), router.http, "any.test", "/healthz").await;
    assert_eq!(health.status, 200);
}

#[tokio::test]
async fn draining_closes_idle_keep_alive_connections_at_once() {
    let b = TestBackend::start("web").await;
    // A grace period far longer than the wait below: the server only finishes in time if
    // the idle connection is closed by the drain, not by the grace period.
    let limits = Limits {
        shutdown_grace_period: Duration::from_secs(60),
        header_read_timeout: Duration::from_secs(60),
        ..Limits::default()
    };
    let mut router = router_for(&b, limits).await;
    let mut stream = one_request(router.http).await;
    let server = router.shutdown();
    let mut rest = Vec::new();
    tokio::time::timeout(Duration::from_secs(10), stream.read_to_end(&mut rest))
        .await
        .expect("the idle connection is closed by the drain")
        .unwrap();
    tokio::time::timeout(Duration::from_secs(10), server)
        .await
        .expect("the drain did not wait for the grace period")
        .unwrap();
}

#[tokio::test]
async fn a_client_that_leaves_frees_its_upstream_connection() {
    // An upstream that reads the request and never answers.
    let silent = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let yaml = format!(
        "{}{}",
        service_yaml("slow", &[silent.local_addr().unwrap()]),
        ingress_yaml("slow", Some("slow.test"), &[("/", "Prefix", "slow")])
    );
    // The response timeout is far away: only the client leaving can end the exchange.
    let router = RunningRouter::start(snapshot(&yaml, Vec::new()), Limits::default()).await;
    let mut client = TcpStream::connect(router.http).await.unwrap();
    client
        .write_all(b"GET /wait HTTP/1.1\r\nHost: slow.test\r\n\r\n")
        .await
        .unwrap();
    let (mut upstream, _) = tokio::time::timeout(Duration::from_secs(10), silent.accept())
        .await
        .expect("the request is forwarded")
        .unwrap();
    let mut head = [0u8; 1024];
    let n = upstream.read(&mut head).await.unwrap();
    assert!(head[..n].starts_with(b"GET /wait HTTP/1.1\r\n"));
    drop(client);
    let mut rest = Vec::new();
    tokio::time::timeout(Duration::from_secs(10), upstream.read_to_end(&mut rest))
        .await
        .expect("the upstream connection is closed once the client has gone")
        .unwrap();
    let health = get(&http_client(), router.http, "any.test", "/healthz").await;
    assert_eq!(health.status, 200);
}
