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
use ingress_tests::http_support::{
    RunningRouter, TestBackend, get, http_client, ingress_yaml, service_yaml, snapshot,
};
use tokio::{
    io::{AsyncReadExt as _, AsyncWriteExt as _},
    net::{TcpListener, TcpStream},
    sync::Notify,
    task::{JoinHandle, JoinSet},
};
use xdp_ingress::http::Limits;

/// How long any single await may take before the test fails (a hang guard, not a timing
/// assertion).
const GUARD: Duration = Duration::from_secs(10);

/// Awaits `fut`, failing the test if it does not finish within [`GUARD`].
async fn within<T>(what: &str, fut: impl Future<Output = T>) -> T {
    match tokio::time::timeout(GUARD, fut).await {
        Ok(v) => v,
        Err(_) => panic!("{what}: no progress within {GUARD:?}"),
    }
}

/// A parsed HTTP/1 message head: the start line and the header lines in wire order.
#[derive(Clone, Debug)]
struct Head {
    start: String,
    headers: Vec<(String, String)>,
}

impl Head {
    fn parse(raw: &[u8]) -> Self {
        let text = String::from_utf8_lossy(raw);
        let mut lines = text.split("\r\n");
        let start = lines.next().unwrap_or_default().to_owned();
        let headers = lines
            .filter(|l| !l.is_empty())
            .map(|l| match l.split_once(':') {
                Some((n, v)) => (n.trim().to_owned(), v.trim().to_owned()),
                None => (l.to_owned(), String::new()),
            })
            .collect();
        Self { start, headers }
    }

    /// Every value of header `name` (case-insensitive), in wire order.
    fn get_all(&self, name: &str) -> Vec<&str> {
        self.headers
            .iter()
            .filter(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
            .collect()
    }

    /// The first value of header `name`.
    fn get(&self, name: &str) -> Option<&str> {
        self.get_all(name).into_iter().next()
    }

    /// Whether a comma-separated header `name` lists `token`.
    fn lists(&self, name: &str, token: &str) -> bool {
        self.get_all(name)
            .iter()
            .flat_map(|v| v.split(','))
            .any(|t| t.trim().eq_ignore_ascii_case(token))
    }

    /// The status code of a response head.
    fn status(&self) -> u16 {
        self.start
            .split(' ')
            .nth(1)
            .and_then(|s| s.parse().ok())
            .unwrap_or_else(|| panic!("not a status line: {:?}", self.start))
    }

    /// The method of a request head.
    fn method(&self) -> &str {
        self.start.split(' ').next().unwrap_or_default()
    }

    fn content_length(&self) -> Option<usize> {
        self.get("content-length").map(|v| {
            v.parse()
                .unwrap_or_else(|_| panic!("bad content-length {v:?}"))
        })
    }

    fn chunked(&self) -> bool {
        self.lists("transfer-encoding", "chunked")
    }
}

fn eof(what: &str) -> io::Error {
    io::Error::new(io::ErrorKind::UnexpectedEof, what.to_owned())
}

fn invalid(what: String) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, what)
}

/// A buffered raw HTTP/1 connection, used both by backends (reading requests) and by raw
/// clients (reading responses). Framing errors and early EOF are `Err`.
struct Wire {
    stream: TcpStream,
    buf: Vec<u8>,
}

impl Wire {
    fn new(stream: TcpStream) -> Self {
        Self {
            stream,
            buf: Vec::new(),
        }
    }

    async fn connect(addr: SocketAddr) -> Self {
        Self::new(
            within("connect", TcpStream::connect(addr))
                .await
                .expect("connect"),
        )
    }

    /// Reads more bytes into the buffer; `false` on EOF.
    async fn fill(&mut self) -> io::Result<bool> {
        let mut chunk = [0u8; 16 * 1024];
        let n = self.stream.read(&mut chunk).await?;
        self.buf.extend_from_slice(&chunk[..n]);
        Ok(n > 0)
    }

    async fn write(&mut self, bytes: &[u8]) -> io::Result<()> {
        self.stream.write_all(bytes).await?;
        self.stream.flush().await
    }

    /// The next message head; `None` if the peer closed before sending any byte of it.
    async fn read_head(&mut self) -> io::Result<Option<Head>> {
        loop {
            if let Some(end) = self.buf.windows(4).position(|w| w == b"\r\n\r\n") {
                let raw: Vec<u8> = self.buf.drain(..end + 4).collect();
                return Ok(Some(Head::parse(&raw[..end])));
            }
            if !self.fill().await? {
                return if self.buf.is_empty() {
                    Ok(None)
                } else {
                    Err(eof("EOF inside a message head"))
                };
            }
        }
    }

    async fn take(&mut self, n: usize) -> io::Result<Vec<u8>> {
        while self.buf.len() < n {
            if !self.fill().await? {
                return Err(eof(&format!("EOF after {} of {n} bytes", self.buf.len())));
            }
        }
        Ok(self.buf.drain(..n).collect())
    }

    async fn line(&mut self) -> io::Result<String> {
        loop {
            if let Some(end) = self.buf.windows(2).position(|w| w == b"\r\n") {
                let raw: Vec<u8> = self.buf.drain(..end + 2).collect();
                return Ok(String::from_utf8_lossy(&raw[..end]).into_owned());
            }
            if !self.fill().await? {
                return Err(eof("EOF inside a line"));
            }
        }
    }

    /// A chunked body, strictly: sizes in hex (extensions ignored), CRLF after each chunk,
    /// then the trailer section. Returns the decoded bytes and the trailer lines.
    async fn chunked(&mut self) -> io::Result<(Vec<u8>, Vec<String>)> {
        let mut body = Vec::new();
        loop {
            let size_line = self.line().await?;
            let size = size_line.split(';').next().unwrap_or_default().trim();
            let size = usize::from_str_radix(size, 16)
                .map_err(|_| invalid(format!("bad chunk size line {size_line:?}")))?;
            if size == 0 {
                break;
            }
            body.extend(self.take(size).await?);
            if self.take(2).await? != b"\r\n" {
                return Err(invalid("chunk data not followed by CRLF".into()));
            }
        }
        let mut trailers = Vec::new();
        loop {
            let l = self.line().await?;
            if l.is_empty() {
                return Ok((body, trailers));
            }
            trailers.push(l);
        }
    }

    async fn read_to_eof(&mut self) -> io::Result<Vec<u8>> {
        while self.fill().await? {}
        Ok(std::mem::take(&mut self.buf))
    }

    /// A request body as framed by `head` (chunked, content-length, or none).
    async fn request_body(&mut self, head: &Head) -> io::Result<Vec<u8>> {
        if head.chunked() {
            Ok(self.chunked().await?.0)
        } else {
            self.take(head.content_length().unwrap_or(0)).await
        }
    }

    /// A response to a request with `method`: head and body, framed per RFC 9112 §6.3.
    async fn response_to(&mut self, method: &str) -> io::Result<(Head, Vec<u8>)> {
        let head = self
            .read_head()
            .await?
            .ok_or_else(|| eof("closed before a response"))?;
        let status = head.status();
        let body = if method == "HEAD" || status < 200 || status == 204 || status == 304 {
            Vec::new()
        } else if head.chunked() {
            self.chunked().await?.0
        } else if let Some(n) = head.content_length() {
            self.take(n).await?
        } else {
            self.read_to_eof().await?
        };
        Ok((head, body))
    }

    /// The final response to a request with `method`, skipping interim 1xx responses.
    async fn final_response_to(&mut self, method: &str) -> io::Result<(Head, Vec<u8>)> {
        loop {
            let (head, body) = self.response_to(method).await?;
            if head.status() >= 200 {
                return Ok((head, body));
            }
        }
    }

    /// Sends `request` and reads the final response, failing the test on error or hang.
    async fn exchange(&mut self, request: &[u8]) -> (Head, Vec<u8>) {
        let method = String::from_utf8_lossy(request)
            .split(' ')
            .next()
            .unwrap_or_default()
            .to_owned();
        within("write request", self.write(request))
            .await
            .expect("write request");
        within("read response", self.final_response_to(&method))
            .await
            .expect("read response")
    }
}

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

/// The request path (request target) of a head.
fn target(head: &Head) -> &str {
    head.start.split(' ').nth(1).unwrap_or_default()
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
        let a = within("chunked GET", get(&client, router.http, "up.test", "/c")).await;
        assert_eq!(
            (a.status.as_u16(), a.body.as_str()),
            (200, CHUNKED_BODY),
            "#{i}"
        );
    }
    let mut wire = Wire::connect(router.http).await;
    let (head, body) = wire.exchange(&get_raw("/raw")).await;
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
        let a = within("GET", get(&client, router.http, "up.test", "/")).await;
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
    let (head, body) = wire
        .exchange(b"HEAD /h HTTP/1.1\r\nHost: up.test\r\n\r\n")
        .await;
    assert_eq!(head.status(), 200);
    assert_eq!(head.get("content-length"), Some("100"), "{head:?}");
    assert!(body.is_empty());
    let (head, body) = wire.exchange(&get_raw("/g")).await;
    assert_eq!((head.status(), body.as_slice()), (200, &b"after-head"[..]));
}

/// 204 and 304 pass through without a body; the client connection stays usable.
#[tokio::test]
async fn no_content_and_not_modified_pass_through_without_body() {
    let up = RawBackend::serve(|head, _| match target(head) {
        "/204" => b"HTTP/1.1 204 No Content\r\nX-From: up\r\n\r\n".to_vec(),
        "/304" => {
            b"HTTP/1.1 304 Not Modified\r\nETag: \"v1\"\r\nContent-Length: 42\r\n\r\n".to_vec()
        }
        _ => ok("fine"),
    })
    .await;
    let router = router(up.addr, None).await;
    let mut wire = Wire::connect(router.http).await;
    let (head, body) = wire.exchange(&get_raw("/204")).await;
    assert_eq!(head.status(), 204);
    assert_eq!(head.get("x-from"), Some("up"));
    assert!(body.is_empty());
    let (head, body) = wire.exchange(&get_raw("/304")).await;
    assert_eq!(head.status(), 304);
    assert_eq!(head.get("etag"), Some("\"v1\""));
    assert!(body.is_empty());
    let (head, body) = wire.exchange(&get_raw("/ok")).await;
    assert_eq!((head.status(), body.as_slice()), (200, &b"fine"[..]));
    // And again after a 204, the other way round.
    let (head, _) = wire.exchange(&get_raw("/204")).await;
    assert_eq!(head.status(), 204);
    let (head, body) = wire.exchange(&get_raw("/ok")).await;
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
    let a = within("GET", get(&http_client(), router.http, "up.test", "/")).await;
    assert_eq!((a.status.as_u16(), a.body.as_str()), (200, "final body"));
    let mut wire = Wire::connect(router.http).await;
    let (head, body) = wire.exchange(&get_raw("/raw")).await;
    assert_eq!((head.status(), body.as_slice()), (200, &b"final body"[..]));
}

/// Sequential requests reuse pooled upstream connections.
#[tokio::test]
async fn keep_alive_upstream_connections_are_reused() {
    let up = RawBackend::serve(|head, _| ok(&format!("reply to {}", target(head)))).await;
    let router = router(up.addr, None).await;
    let mut wire = Wire::connect(router.http).await;
    for i in 0..50 {
        let (head, body) = wire.exchange(&get_raw(&format!("/r{i}"))).await;
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
        let a = within("GET", get(&client, router.http, "up.test", "/")).await;
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
        let body = format!("reply to {}", target(head));
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
        let (head, body) = wire.exchange(&get_raw(&format!("/c{i}"))).await;
        assert_eq!(head.status(), 200);
        assert_eq!(String::from_utf8_lossy(&body), format!("reply to /c{i}"));
        assert_eq!(
            up.accepted(),
            i,
            "request {i} needs a fresh upstream connection"
        );
    }
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
    within("write", wire.write(&get_raw("/trunc")))
        .await
        .expect("write");
    let result = within("truncated response", wire.final_response_to("GET")).await;
    match result {
        Err(_) => {}
        Ok((head, body)) => panic!(
            "the client got a complete response for a truncated upstream body: {head:?}, {} bytes",
            body.len()
        ),
    }
    let a = within(
        "follow-up",
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
    let a = within("GET", get(&http_client(), router.http, "up.test", "/")).await;
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
    let a = within("GET", get(&http_client(), router.http, "up.test", "/")).await;
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
    let resp = within("POST", http_client().request(req))
        .await
        .expect("POST through the router");
    assert_eq!(resp.status(), 200);
    let body = within("body", resp.into_body().collect())
        .await
        .expect("body")
        .to_bytes();
    assert_eq!(body, format!("got {}", sent.len()));
    let seen = up.seen();
    assert_eq!(seen.len(), 1);
    // nginx forwards a content-length body with Content-Length (upstreams may not take chunked).
    assert_eq!(seen[0].head.content_length(), Some(sent.len()));
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
    let (head, body) = wire.exchange(&req).await;
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
    within(
        "write head",
        wire.write(
            b"POST /expect HTTP/1.1\r\nHost: up.test\r\nContent-Length: 11\r\nExpect: 100-continue\r\n\r\n",
        ),
    )
    .await
    .expect("write head");
    let interim = within("100 Continue before the body", wire.read_head())
        .await
        .expect("read")
        .expect("a response");
    assert_eq!(interim.status(), 100, "{interim:?}");
    within("write body", wire.write(b"hello world"))
        .await
        .expect("write body");
    let (head, body) = within("final response", wire.final_response_to("POST"))
        .await
        .expect("final response");
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
    let (head, _) = wire
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
    let (head, _) = wire.exchange(&get_raw("/a%20b/c?x=1&y=%2F")).await;
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
        let mut pending = std::mem::take(&mut wire.buf);
        loop {
            if !pending.is_empty() {
                wire.write(&pending).await?;
            }
            let mut chunk = [0u8; 4096];
            let n = wire.stream.read(&mut chunk).await?;
            if n == 0 {
                return Ok(());
            }
            pending = chunk[..n].to_vec();
        }
    })
    .await;
    let router = router(up.addr, None).await;
    let mut wire = Wire::connect(router.http).await;
    within(
        "write",
        wire.write(
            b"GET /up HTTP/1.1\r\nHost: up.test\r\nConnection: upgrade\r\nUpgrade: foo\r\n\r\n",
        ),
    )
    .await
    .expect("write");
    let head = within("101", wire.read_head())
        .await
        .expect("read")
        .expect("a response");
    assert_eq!(head.status(), 101, "{head:?}");
    assert_eq!(head.get("upgrade"), Some("foo"));
    let early = within("early bytes", wire.take(15))
        .await
        .expect("early bytes");
    assert_eq!(early, b"hello-after-101");
    for msg in [&b"ping-1"[..], b"a longer second message"] {
        within("echo write", wire.write(msg)).await.expect("write");
        let echoed = within("echo", wire.take(msg.len())).await.expect("echo");
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
    let resp = within("response head before the rest", http_client().request(req))
        .await
        .expect("request through the router");
    assert_eq!(resp.status(), 200);
    let mut body = resp.into_body();
    let mut got = Vec::new();
    while got.len() < 5 {
        let frame = within("first chunk before the rest", body.frame())
            .await
            .expect("a frame")
            .expect("frame ok");
        if let Ok(data) = frame.into_data() {
            got.extend_from_slice(&data);
        }
    }
    assert_eq!(got, b"first");
    release.notify_one();
    let rest = within("rest", body.collect())
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
    within(
        "write",
        wire.write(b"GET / HTTP/1.0\r\nHost: up.test\r\n\r\n"),
    )
    .await
    .expect("write");
    let head = within("head", wire.read_head())
        .await
        .expect("read")
        .expect("a response");
    assert_eq!(head.status(), 200, "{head:?}");
    assert!(
        !head.chunked(),
        "no chunked encoding towards HTTP/1.0: {head:?}"
    );
    let rest = within("the router closes the connection", wire.read_to_eof())
        .await
        .expect("read to EOF");
    let body = match head.content_length() {
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
        let resp = within("h2c request", client.request(req))
            .await
            .expect("h2c request through the router");
        assert_eq!(resp.version(), Version::HTTP_2);
        assert_eq!(resp.status(), 200);
        let body = within("body", resp.into_body().collect())
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
    let (head, body) = wire
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
    within("the answer", async {
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
