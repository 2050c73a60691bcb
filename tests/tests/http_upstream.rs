//! The L7 router's upstream HTTP/1.1 behaviour, pinned against hand-written raw TCP
//! backends that write exact bytes: response framing (content-length, chunked with
//! extensions and trailers, close-delimited, no body for HEAD/204/304, 1xx interim
//! responses, 101 upgrades with early bytes), connection pooling and its failure modes
//! (stale pooled connections, `Connection: close`, truncated bodies, garbage and oversized
//! heads), request bodies (content-length, chunked, `Expect: 100-continue`), header
//! handling (repeated headers, hop-by-hop removal, `X-Forwarded-*`) and streaming.
//!
//! It exists so that replacing the upstream client (hyper-util's pooled legacy `Client`
//! today, an inline HTTP/1.1 client next) is checked against the behaviour clients and
//! upstreams rely on. Where the right behaviour is a judgement call, the tests follow nginx.

use std::{
    future::Future,
    io,
    net::SocketAddr,
    sync::{
        Arc, Mutex,
        atomic::{AtomicUsize, Ordering},
    },
    time::Duration,
};

use bytes::Bytes;
use http_body_util::{BodyExt as _, Full};
use hyper::{Request, Version, header};
use hyper_util::{client::legacy::Client, rt::TokioExecutor};
use ingress_tests::{
    http_support::{
        RunningRouter, TestBackend, get, http_client, ingress_yaml, service_yaml, snapshot,
    },
    scripted::{GUARD, Head, RawResponse, Wire, within},
};
use tokio::{
    io::{AsyncReadExt as _, AsyncWriteExt as _},
    net::TcpListener,
    sync::Notify,
    task::{JoinHandle, JoinSet},
};
use xdp_ingress::http::Limits;

/// A request a [`RawBackend::serve`] backend received.
#[derive(Clone, Debug)]
struct Seen {
    head: Head,
    body: Vec<u8>,
}

/// A raw TCP upstream on 127.0.0.1 that runs a handler per accepted connection and counts
/// the connections it accepted.
struct RawBackend {
    addr: SocketAddr,
    accepted: Arc<AtomicUsize>,
    seen: Arc<Mutex<Vec<Seen>>>,
    task: JoinHandle<()>,
}

impl Drop for RawBackend {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl RawBackend {
    /// Runs `handler(wire, n)` for the `n`-th accepted connection (from 1); the connection
    /// closes when the handler returns.
    async fn start<F, Fut>(handler: F) -> Self
    where
        F: Fn(Wire, usize) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = io::Result<()>> + Send + 'static,
    {
        Self::start_recording(Arc::default(), handler).await
    }

    async fn start_recording<F, Fut>(seen: Arc<Mutex<Vec<Seen>>>, handler: F) -> Self
    where
        F: Fn(Wire, usize) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = io::Result<()>> + Send + 'static,
    {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let addr = listener.local_addr().expect("addr");
        let accepted = Arc::new(AtomicUsize::new(0));
        let count = Arc::clone(&accepted);
        let task = tokio::spawn(async move {
            // Connection tasks die with the backend (the set is dropped on abort).
            let mut conns = JoinSet::new();
            while let Ok((stream, _)) = listener.accept().await {
                let n = count.fetch_add(1, Ordering::SeqCst) + 1;
                conns.spawn(handler(Wire::new(stream), n));
                while conns.try_join_next().is_some() {}
            }
        });
        Self {
            addr,
            accepted,
            seen,
            task,
        }
    }

    /// Serves requests on each connection until the peer closes, answering each with the
    /// bytes `respond(head, body)` returns; bodies are read per their framing, and
    /// `Expect: 100-continue` is honoured like a real server does. Records every request.
    async fn serve<F>(respond: F) -> Self
    where
        F: Fn(&Head, &[u8]) -> Vec<u8> + Send + Sync + 'static,
    {
        Self::serve_with(respond, false).await
    }

    /// Like [`Self::serve`], but closes each connection after its first response.
    async fn serve_once<F>(respond: F) -> Self
    where
        F: Fn(&Head, &[u8]) -> Vec<u8> + Send + Sync + 'static,
    {
        Self::serve_with(respond, true).await
    }

    async fn serve_with<F>(respond: F, once: bool) -> Self
    where
        F: Fn(&Head, &[u8]) -> Vec<u8> + Send + Sync + 'static,
    {
        let respond = Arc::new(respond);
        let seen: Arc<Mutex<Vec<Seen>>> = Arc::default();
        let record = Arc::clone(&seen);
        Self::start_recording(seen, move |mut wire, _| {
            let (respond, record) = (Arc::clone(&respond), Arc::clone(&record));
            async move {
                while let Some(head) = wire.read_head().await? {
                    if head.lists("expect", "100-continue") {
                        wire.write(b"HTTP/1.1 100 Continue\r\n\r\n").await?;
                    }
                    let body = wire.request_body(&head).await?;
                    let reply = respond(&head, &body);
                    record.lock().expect("seen lock").push(Seen { head, body });
                    wire.write(&reply).await?;
                    if once {
                        break;
                    }
                }
                Ok(())
            }
        })
        .await
    }

    fn accepted(&self) -> usize {
        self.accepted.load(Ordering::SeqCst)
    }

    fn seen(&self) -> Vec<Seen> {
        self.seen.lock().expect("seen lock").clone()
    }
}

/// A `200` with a content-length body.
fn ok(body: &str) -> Vec<u8> {
    format!(
        "HTTP/1.1 200 OK\r\nContent-Length: {}\r\n\r\n{body}",
        body.len()
    )
    .into_bytes()
}

/// The router with one host-less Ingress sending `/` to service `up` at `up`, plus
/// `/healthy` to service `ok` at `healthy` when given.
async fn router(up: SocketAddr, healthy: Option<SocketAddr>) -> RunningRouter {
    let mut yaml = service_yaml("up", &[up]);
    let mut paths = vec![("/", "Prefix", "up")];
    if let Some(h) = healthy {
        yaml.push_str(&service_yaml("ok", &[h]));
        paths.push(("/healthy", "Prefix", "ok"));
    }
    yaml.push_str(&ingress_yaml("up", None, &paths));
    RunningRouter::start(snapshot(&yaml, Vec::new()), Limits::default()).await
}

/// A plain GET as raw bytes.
fn get_raw(path: &str) -> Vec<u8> {
    format!("GET {path} HTTP/1.1\r\nHost: up.test\r\n\r\n").into_bytes()
}

const CHUNKED_REPLY: &[u8] = b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n\
5\r\nhello\r\n\
6;x=y\r\n, wide\r\n\
7\r\n world!\r\n\
0\r\nX-Trailer: t1\r\nX-Other: t2\r\n\r\n";
const CHUNKED_BODY: &str = "hello, wide world!";

/// A chunked response (extensions, trailers) reaches the client as the exact body.
#[tokio::test]
async fn chunked_response_with_extension_and_trailers_is_passed_exactly() {
    let up = RawBackend::serve(|_, _| CHUNKED_REPLY.to_vec()).await;
    let router = router(up.addr, None).await;
    let client = http_client();
    for i in 0..2 {
        let a = within(
            "chunked GET",
            GUARD,
            get(&client, router.http, "up.test", "/c"),
        )
        .await;
        assert_eq!(
            (a.status.as_u16(), a.body.as_str()),
            (200, CHUNKED_BODY),
            "#{i}"
        );
    }
    let mut wire = Wire::connect(router.http).await;
    let RawResponse { head, body } = wire.exchange(&get_raw("/raw")).await;
    assert_eq!(head.status(), 200);
    assert_eq!(body, CHUNKED_BODY.as_bytes(), "raw client, {head:?}");
}

/// A close-delimited response is read to EOF; the next request uses a new connection.
#[tokio::test]
async fn close_delimited_response_is_read_to_eof_and_not_reused() {
    let body = |n: usize| format!("close-delimited body of connection {n}\n").repeat(100);
    let up = RawBackend::start(move |mut wire, n| async move {
        if wire.read_head().await?.is_some() {
            let reply = format!(
                "HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\n\r\n{}",
                body(n)
            );
            wire.write(reply.as_bytes()).await?;
        }
        Ok(())
    })
    .await;
    let router = router(up.addr, None).await;
    let client = http_client();
    for n in 1..=3 {
        let a = within("GET", GUARD, get(&client, router.http, "up.test", "/")).await;
        assert_eq!(a.status, 200, "request {n}: {}", a.body);
        assert_eq!(a.body, body(n), "request {n}");
    }
    assert_eq!(
        up.accepted(),
        3,
        "each close-delimited response used its own connection"
    );
}

/// A HEAD response carries `Content-Length` but no body; the next request is not confused.
#[tokio::test]
async fn head_response_has_no_body_and_keeps_framing() {
    let up = RawBackend::serve(|head, _| {
        if head.method() == "HEAD" {
            b"HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\n".to_vec()
        } else {
            ok("after-head")
        }
    })
    .await;
    let router = router(up.addr, None).await;
    let mut wire = Wire::connect(router.http).await;
    let RawResponse { head, body } = wire
        .exchange(b"HEAD /h HTTP/1.1\r\nHost: up.test\r\n\r\n")
        .await;
    assert_eq!(head.status(), 200);
    assert_eq!(head.get("content-length"), Some("100"), "{head:?}");
    assert!(body.is_empty());
    let RawResponse { head, body } = wire.exchange(&get_raw("/g")).await;
    assert_eq!((head.status(), body.as_slice()), (200, &b"after-head"[..]));
}

/// 204 and 304 pass through without a body; the client connection stays usable.
#[tokio::test]
async fn no_content_and_not_modified_pass_through_without_body() {
    let up = RawBackend::serve(|head, _| match head.target() {
        "/204" => b"HTTP/1.1 204 No Content\r\nX-From: up\r\n\r\n".to_vec(),
        "/304" => {
            b"HTTP/1.1 304 Not Modified\r\nETag: \"v1\"\r\nContent-Length: 42\r\n\r\n".to_vec()
        }
        _ => ok("fine"),
    })
    .await;
    let router = router(up.addr, None).await;
    let mut wire = Wire::connect(router.http).await;
    let RawResponse { head, body } = wire.exchange(&get_raw("/204")).await;
    assert_eq!(head.status(), 204);
    assert_eq!(head.get("x-from"), Some("up"));
    assert!(body.is_empty());
    let RawResponse { head, body } = wire.exchange(&get_raw("/304")).await;
    assert_eq!(head.status(), 304);
    assert_eq!(head.get("etag"), Some("\"v1\""));
    assert!(body.is_empty());
    let RawResponse { head, body } = wire.exchange(&get_raw("/ok")).await;
    assert_eq!((head.status(), body.as_slice()), (200, &b"fine"[..]));
    // And again after a 204, the other way round.
    let RawResponse { head, .. } = wire.exchange(&get_raw("/204")).await;
    assert_eq!(head.status(), 204);
    let RawResponse { head, body } = wire.exchange(&get_raw("/ok")).await;
    assert_eq!((head.status(), body.as_slice()), (200, &b"fine"[..]));
}

/// A 1xx interim response (103 Early Hints) is followed by the final response and its body.
#[tokio::test]
async fn interim_1xx_then_final_response() {
    let up = RawBackend::serve(|_, _| {
        let mut reply =
            b"HTTP/1.1 103 Early Hints\r\nLink: </style.css>; rel=preload; as=style\r\n\r\n"
                .to_vec();
        reply.extend(ok("final body"));
        reply
    })
    .await;
    let router = router(up.addr, None).await;
    let a = within(
        "GET",
        GUARD,
        get(&http_client(), router.http, "up.test", "/"),
    )
    .await;
    assert_eq!((a.status.as_u16(), a.body.as_str()), (200, "final body"));
    let mut wire = Wire::connect(router.http).await;
    let RawResponse { head, body } = wire.exchange(&get_raw("/raw")).await;
    assert_eq!((head.status(), body.as_slice()), (200, &b"final body"[..]));
}

/// Sequential requests reuse pooled upstream connections.
#[tokio::test]
async fn keep_alive_upstream_connections_are_reused() {
    let up = RawBackend::serve(|head, _| ok(&format!("reply to {}", head.target()))).await;
    let router = router(up.addr, None).await;
    let mut wire = Wire::connect(router.http).await;
    for i in 0..50 {
        let RawResponse { head, body } = wire.exchange(&get_raw(&format!("/r{i}"))).await;
        assert_eq!(head.status(), 200, "request {i}");
        assert_eq!(String::from_utf8_lossy(&body), format!("reply to /r{i}"));
    }
    assert!(
        up.accepted() <= 3,
        "50 sequential requests opened {} upstream connections",
        up.accepted()
    );
    assert_eq!(up.seen().len(), 50);
}

/// A pooled connection the upstream closed while idle is not used for the next request.
#[tokio::test]
async fn stale_pooled_connection_is_not_a_502() {
    let up = RawBackend::start(|mut wire, n| async move {
        if wire.read_head().await?.is_some() {
            // Keep-alive by default in HTTP/1.1, then a silent close.
            wire.write(&ok(&format!("conn {n}"))).await?;
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        Ok(())
    })
    .await;
    let router = router(up.addr, None).await;
    let client = http_client();
    for i in 1..=10 {
        let a = within("GET", GUARD, get(&client, router.http, "up.test", "/")).await;
        assert_eq!(a.status, 200, "request {i}: {}", a.body);
        assert!(a.body.starts_with("conn "), "request {i}: {}", a.body);
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    assert_eq!(up.accepted(), 10, "one upstream connection per request");
}

/// `Connection: close` from the upstream: that connection is not reused.
#[tokio::test]
async fn connection_close_from_upstream_is_not_reused() {
    // The backend keeps the socket open and would answer a second request on it.
    let up = RawBackend::serve(|head, _| {
        let body = format!("reply to {}", head.target());
        format!(
            "HTTP/1.1 200 OK\r\nConnection: close\r\nContent-Length: {}\r\n\r\n{body}",
            body.len()
        )
        .into_bytes()
    })
    .await;
    let router = router(up.addr, None).await;
    let mut wire = Wire::connect(router.http).await;
    for i in 1..=3 {
        let RawResponse { head, body } = wire.exchange(&get_raw(&format!("/c{i}"))).await;
        assert_eq!(head.status(), 200);
        assert_eq!(String::from_utf8_lossy(&body), format!("reply to /c{i}"));
        assert_eq!(
            up.accepted(),
            i,
            "request {i} needs a fresh upstream connection"
        );
    }
}

/// Whether `e`, from [`Wire::try_response`], says that what was read is no valid response
/// (`InvalidData` in `ingress_tests::scripted`), rather than that the response or the
/// connection ended early.
fn malformed_head(e: &io::Error) -> bool {
    e.kind() == io::ErrorKind::InvalidData
}

/// A body cut short by the upstream is not delivered as complete; the router keeps serving.
#[tokio::test]
async fn truncated_upstream_body_is_not_delivered_as_complete() {
    let up = RawBackend::serve_once(|_, _| {
        let mut reply = b"HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\n".to_vec();
        reply.extend_from_slice(b"0123456789");
        reply
    })
    .await;
    let healthy = TestBackend::start("healthy").await;
    let router = router(up.addr, Some(healthy.addr)).await;
    let mut wire = Wire::connect(router.http).await;
    wire.send(&get_raw("/trunc")).await;
    let result = within("truncated response", GUARD, wire.try_response("GET")).await;
    match result {
        // A head that is no response head is a router bug, not a refused body.
        Err(e) if malformed_head(&e) => panic!("the router sent a malformed head: {e}"),
        Err(_) => {}
        Ok(RawResponse { head, body }) => panic!(
            "the client got a complete response for a truncated upstream body: {head:?}, {} bytes",
            body.len()
        ),
    }
    let a = within(
        "follow-up",
        GUARD,
        get(&http_client(), router.http, "up.test", "/healthy"),
    )
    .await;
    assert_eq!((a.status.as_u16(), a.backend()), (200, "healthy"));
}

/// A response that is not HTTP gets a 502.
#[tokio::test]
async fn garbage_upstream_response_is_502() {
    let up = RawBackend::serve_once(|_, _| b"HELLO\r\n\r\n".to_vec()).await;
    let router = router(up.addr, None).await;
    let a = within(
        "GET",
        GUARD,
        get(&http_client(), router.http, "up.test", "/"),
    )
    .await;
    assert_eq!(a.status, 502, "{}", a.body);
}

/// An oversized response head (200 KB header) gets a 502, like nginx's
/// "upstream sent too big header".
#[tokio::test]
async fn oversized_upstream_response_head_is_502() {
    let up = RawBackend::serve_once(|_, _| {
        format!(
            "HTTP/1.1 200 OK\r\nX-Big: {}\r\nContent-Length: 2\r\n\r\nok",
            "a".repeat(200 * 1024)
        )
        .into_bytes()
    })
    .await;
    let router = router(up.addr, None).await;
    let a = within(
        "GET",
        GUARD,
        get(&http_client(), router.http, "up.test", "/"),
    )
    .await;
    let big = a.headers.get("x-big").map_or(0, header::HeaderValue::len);
    assert_eq!(a.status, 502, "the client got X-Big of {big} bytes");
}

/// A content-length request body reaches the upstream byte-exact, still content-length framed.
#[tokio::test]
async fn content_length_request_body_is_forwarded_exactly() {
    let up = RawBackend::serve(|_, body| ok(&format!("got {}", body.len()))).await;
    let router = router(up.addr, None).await;
    let sent: Vec<u8> = (0..1024 * 1024).map(|i: u32| (i % 251) as u8).collect();
    let req = Request::post(format!("http://{}/upload", router.http))
        .header(header::HOST, "up.test")
        .body(Full::new(Bytes::from(sent.clone())))
        .expect("request");
    let resp = within("POST", GUARD, http_client().request(req))
        .await
        .expect("POST through the router");
    assert_eq!(resp.status(), 200);
    let body = within("body", GUARD, resp.into_body().collect())
        .await
        .expect("body")
        .to_bytes();
    assert_eq!(body, format!("got {}", sent.len()));
    let seen = up.seen();
    assert_eq!(seen.len(), 1);
    // nginx forwards a content-length body with Content-Length (upstreams may not take chunked).
    assert_eq!(
        seen[0]
            .head
            .content_length()
            .expect("a valid content-length"),
        Some(sent.len())
    );
    assert!(seen[0].body == sent, "the upstream got different bytes");
}

/// A chunked request body reaches the upstream correctly framed, with the same bytes.
#[tokio::test]
async fn chunked_request_body_is_forwarded_correctly_framed() {
    let up = RawBackend::serve(|_, body| ok(&format!("got {}", body.len()))).await;
    let router = router(up.addr, None).await;
    let chunks: Vec<String> = (0..20)
        .map(|i| format!("chunk {i} ").repeat(i + 1))
        .collect();
    let mut req =
        b"POST /chunked HTTP/1.1\r\nHost: up.test\r\nTransfer-Encoding: chunked\r\n\r\n".to_vec();
    for (i, c) in chunks.iter().enumerate() {
        let ext = if i % 3 == 0 { ";ext=1" } else { "" };
        req.extend(format!("{:x}{ext}\r\n{c}\r\n", c.len()).into_bytes());
    }
    req.extend_from_slice(b"0\r\n\r\n");
    let mut wire = Wire::connect(router.http).await;
    let RawResponse { head, body } = wire.exchange(&req).await;
    let expected: String = chunks.concat();
    assert_eq!(head.status(), 200);
    assert_eq!(
        String::from_utf8_lossy(&body),
        format!("got {}", expected.len())
    );
    let seen = up.seen();
    assert_eq!(seen.len(), 1);
    assert_eq!(String::from_utf8_lossy(&seen[0].body), expected);
}

/// `Expect: 100-continue`: the client gets `100 Continue` before sending the body, then 200.
#[tokio::test]
async fn expect_100_continue_is_answered_before_the_body() {
    let up =
        RawBackend::serve(|_, body| ok(&format!("got {}", String::from_utf8_lossy(body)))).await;
    let router = router(up.addr, None).await;
    let mut wire = Wire::connect(router.http).await;
    wire.send(
        b"POST /expect HTTP/1.1\r\nHost: up.test\r\nContent-Length: 11\r\nExpect: 100-continue\r\n\r\n",
    )
    .await;
    let interim = within("100 Continue before the body", GUARD, wire.read_head())
        .await
        .expect("read")
        .expect("a response");
    assert_eq!(interim.status(), 100, "{interim:?}");
    wire.send(b"hello world").await;
    let RawResponse { head, body } = wire.response("POST").await;
    assert_eq!(head.status(), 200);
    assert_eq!(body, b"got hello world");
    assert_eq!(up.seen()[0].body, b"hello world");
}

/// Repeated request headers reach the upstream in order; repeated `Set-Cookie` the client.
#[tokio::test]
async fn repeated_headers_keep_every_value_in_order() {
    let up = RawBackend::serve(|_, _| {
        b"HTTP/1.1 200 OK\r\nSet-Cookie: a=1; Path=/\r\nSet-Cookie: b=2; Path=/\r\nContent-Length: 2\r\n\r\nok"
            .to_vec()
    })
    .await;
    let router = router(up.addr, None).await;
    let mut wire = Wire::connect(router.http).await;
    let RawResponse { head, .. } = wire
        .exchange(
            b"GET / HTTP/1.1\r\nHost: up.test\r\nX-Multi: first\r\nCookie: c=1\r\nX-Multi: second\r\nCookie: d=2\r\n\r\n",
        )
        .await;
    assert_eq!(head.status(), 200);
    assert_eq!(
        head.get_all("set-cookie"),
        ["a=1; Path=/", "b=2; Path=/"],
        "Set-Cookie lines must never be merged"
    );
    let seen = &up.seen()[0].head;
    // Separate lines or one combined line are equivalent (RFC 9110 §5.3, RFC 6265 §5.4).
    let values = |name: &str, sep: char| -> Vec<String> {
        seen.get_all(name)
            .iter()
            .flat_map(|v| v.split(sep))
            .map(|v| v.trim().to_owned())
            .collect()
    };
    assert_eq!(values("x-multi", ','), ["first", "second"], "{seen:?}");
    assert_eq!(values("cookie", ';'), ["c=1", "d=2"], "{seen:?}");
}

/// The request target (percent-encoding, query) reaches the upstream byte-exact.
#[tokio::test]
async fn request_target_is_preserved_byte_exact() {
    let up = RawBackend::serve(|_, _| ok("ok")).await;
    let router = router(up.addr, None).await;
    let mut wire = Wire::connect(router.http).await;
    let RawResponse { head, .. } = wire.exchange(&get_raw("/a%20b/c?x=1&y=%2F")).await;
    assert_eq!(head.status(), 200);
    assert_eq!(up.seen()[0].head.start, "GET /a%20b/c?x=1&y=%2F HTTP/1.1");
}

/// Bytes the upstream sends right after its `101` (same write) reach the client; then echo.
#[tokio::test]
async fn upgrade_delivers_bytes_sent_with_the_101() {
    let up = RawBackend::start(|mut wire, _| async move {
        let Some(head) = wire.read_head().await? else {
            return Ok(());
        };
        if !head.lists("connection", "upgrade") || head.get("upgrade") != Some("foo") {
            return wire.write(b"HTTP/1.1 400 Bad Request\r\nContent-Length: 0\r\n\r\n").await;
        }
        wire.write(
            b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: foo\r\nConnection: upgrade\r\n\r\nhello-after-101",
        )
        .await?;
        let (mut stream, mut pending) = wire.into_parts();
        loop {
            if !pending.is_empty() {
                stream.write_all(&pending).await?;
            }
            let mut chunk = [0u8; 4096];
            let n = stream.read(&mut chunk).await?;
            if n == 0 {
                return Ok(());
            }
            pending = chunk[..n].to_vec();
        }
    })
    .await;
    let router = router(up.addr, None).await;
    let mut wire = Wire::connect(router.http).await;
    wire.send(b"GET /up HTTP/1.1\r\nHost: up.test\r\nConnection: upgrade\r\nUpgrade: foo\r\n\r\n")
        .await;
    let head = within("101", GUARD, wire.read_head())
        .await
        .expect("read")
        .expect("a response");
    assert_eq!(head.status(), 101, "{head:?}");
    assert_eq!(head.get("upgrade"), Some("foo"));
    let early = within("early bytes", GUARD, wire.take(15))
        .await
        .expect("early bytes");
    assert_eq!(early, b"hello-after-101");
    for msg in [&b"ping-1"[..], b"a longer second message"] {
        wire.send(msg).await;
        let echoed = within("echo", GUARD, wire.take(msg.len()))
            .await
            .expect("echo");
        assert_eq!(echoed, msg);
    }
}

/// A response is streamed: the first chunk reaches the client before the rest exists.
#[tokio::test]
async fn response_is_streamed_not_buffered() {
    let release = Arc::new(Notify::new());
    let gate = Arc::clone(&release);
    let up = RawBackend::start(move |mut wire, _| {
        let gate = Arc::clone(&gate);
        async move {
            if wire.read_head().await?.is_none() {
                return Ok(());
            }
            wire.write(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nfirst\r\n")
                .await?;
            gate.notified().await;
            wire.write(b"6\r\nsecond\r\n0\r\n\r\n").await
        }
    })
    .await;
    let router = router(up.addr, None).await;
    let req = Request::get(format!("http://{}/stream", router.http))
        .header(header::HOST, "up.test")
        .body(Full::new(Bytes::new()))
        .expect("request");
    let resp = within(
        "response head before the rest",
        GUARD,
        http_client().request(req),
    )
    .await
    .expect("request through the router");
    assert_eq!(resp.status(), 200);
    let mut body = resp.into_body();
    let mut got = Vec::new();
    while got.len() < 5 {
        let frame = within("first chunk before the rest", GUARD, body.frame())
            .await
            .expect("a frame")
            .expect("frame ok");
        if let Ok(data) = frame.into_data() {
            got.extend_from_slice(&data);
        }
    }
    assert_eq!(got, b"first");
    release.notify_one();
    let rest = within("rest", GUARD, body.collect())
        .await
        .expect("rest")
        .to_bytes();
    assert_eq!(rest, "second");
}

/// An HTTP/1.0 client gets the full (de-chunked) body and the router closes the connection.
#[tokio::test]
async fn http10_client_gets_full_body_and_close() {
    let up = RawBackend::serve(|_, _| CHUNKED_REPLY.to_vec()).await;
    let router = router(up.addr, None).await;
    let mut wire = Wire::connect(router.http).await;
    wire.send(b"GET / HTTP/1.0\r\nHost: up.test\r\n\r\n").await;
    let head = within("head", GUARD, wire.read_head())
        .await
        .expect("read")
        .expect("a response");
    assert_eq!(head.status(), 200, "{head:?}");
    assert!(
        !head.chunked(),
        "no chunked encoding towards HTTP/1.0: {head:?}"
    );
    let rest = within(
        "the router closes the connection",
        GUARD,
        wire.read_to_eof(),
    )
    .await
    .expect("read to EOF");
    let body = match head.content_length().expect("a valid content-length") {
        Some(n) => rest.get(..n).unwrap_or(&rest).to_vec(),
        None => rest,
    };
    assert_eq!(String::from_utf8_lossy(&body), CHUNKED_BODY);
}

/// An h2c (prior knowledge) client gets a chunked upstream response's exact body.
#[tokio::test]
async fn h2c_client_gets_chunked_upstream_body() {
    let up = RawBackend::serve(|_, _| CHUNKED_REPLY.to_vec()).await;
    let router = router(up.addr, None).await;
    let client = Client::builder(TokioExecutor::new())
        .http2_only(true)
        .build_http::<Full<Bytes>>();
    for i in 0..3 {
        let req = Request::get(format!("http://{}/h2/{i}", router.http))
            .body(Full::new(Bytes::new()))
            .expect("request");
        let resp = within("h2c request", GUARD, client.request(req))
            .await
            .expect("h2c request through the router");
        assert_eq!(resp.version(), Version::HTTP_2);
        assert_eq!(resp.status(), 200);
        let body = within("body", GUARD, resp.into_body().collect())
            .await
            .expect("body")
            .to_bytes();
        assert_eq!(body, CHUNKED_BODY);
    }
}

/// Host is forwarded unchanged, forwarding headers are added, hop-by-hop headers are dropped
/// both ways.
#[tokio::test]
async fn host_kept_forwarding_headers_added_hop_by_hop_dropped() {
    let up = RawBackend::serve(|_, _| {
        b"HTTP/1.1 200 OK\r\nKeep-Alive: timeout=5\r\nProxy-Connection: keep-alive\r\nX-End: kept\r\nContent-Length: 2\r\n\r\nok"
            .to_vec()
    })
    .await;
    let router = router(up.addr, None).await;
    let mut wire = Wire::connect(router.http).await;
    let RawResponse { head, body } = wire
        .exchange(
            b"GET /h HTTP/1.1\r\nHost: Up.Test:8080\r\nConnection: x-custom\r\nX-Custom: 1\r\nKeep-Alive: timeout=9\r\nTE: trailers\r\nProxy-Connection: keep-alive\r\nX-End-To-End: yes\r\n\r\n",
        )
        .await;
    assert_eq!((head.status(), body.as_slice()), (200, &b"ok"[..]));
    assert_eq!(head.get("x-end"), Some("kept"));
    for hop in ["keep-alive", "proxy-connection"] {
        assert_eq!(head.get(hop), None, "{hop} reached the client: {head:?}");
    }

    let seen = &up.seen()[0].head;
    assert_eq!(seen.get_all("host"), ["Up.Test:8080"], "{seen:?}");
    assert_eq!(seen.get("x-forwarded-for"), Some("127.0.0.1"));
    assert_eq!(seen.get("x-forwarded-host"), Some("Up.Test:8080"));
    assert_eq!(seen.get("x-real-ip"), Some("127.0.0.1"));
    assert!(
        seen.get("x-request-id").is_some_and(|v| !v.is_empty()),
        "{seen:?}"
    );
    assert_eq!(seen.get("x-end-to-end"), Some("yes"));
    for hop in ["x-custom", "keep-alive", "te", "proxy-connection"] {
        assert_eq!(seen.get(hop), None, "{hop} reached the upstream: {seen:?}");
    }
    assert!(!seen.lists("connection", "x-custom"), "{seen:?}");
}

/// An upstream that refuses a large body at once (413 and close, without reading it) has
/// its answer passed on, not turned into a 502 by the failed write.
#[tokio::test]
async fn an_upstream_refusing_the_body_early_is_answered_with_its_refusal() {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let up = listener.local_addr().unwrap();
    tokio::spawn(async move {
        while let Ok((mut stream, _)) = listener.accept().await {
            let mut head = Vec::new();
            let mut byte = [0u8; 1];
            while !head.ends_with(b"\r\n\r\n") {
                if stream.read(&mut byte).await.unwrap_or(0) == 0 {
                    break;
                }
                head.push(byte[0]);
            }
            let _ = stream
                .write_all(b"HTTP/1.1 413 Payload Too Large\r\nContent-Length: 10\r\nConnection: close\r\n\r\ntoo large\n")
                .await;
            // Closing with the body unread: the kernel resets the connection.
        }
    });
    let router = router(up, None).await;
    let client = tokio::net::TcpStream::connect(router.http).await.unwrap();
    let (mut read, mut write) = client.into_split();
    let size = 32 * 1024 * 1024;
    tokio::spawn(async move {
        let head =
            format!("POST /upload HTTP/1.1\r\nHost: up.test\r\nContent-Length: {size}\r\n\r\n");
        let _ = write.write_all(head.as_bytes()).await;
        let chunk = vec![b'x'; 64 * 1024];
        for _ in 0..size / chunk.len() {
            if write.write_all(&chunk).await.is_err() {
                break;
            }
        }
    });
    let mut answer = Vec::new();
    let mut buf = [0u8; 4096];
    within("the answer", GUARD, async {
        while !answer.ends_with(b"too large\n") {
            match read.read(&mut buf).await {
                Ok(0) | Err(_) => break,
                Ok(n) => answer.extend_from_slice(&buf[..n]),
            }
        }
    })
    .await;
    let answer = String::from_utf8_lossy(&answer);
    assert!(
        answer.starts_with("HTTP/1.1 413 Payload Too Large\r\n"),
        "{answer}"
    );
    assert!(answer.ends_with("too large\n"), "{answer}");
}
