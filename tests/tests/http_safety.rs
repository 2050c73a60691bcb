//! HTTP safety (issue 14), end to end against the real `xdp-ingress` binary on 127.0.0.1
//! (file mode, userspace L4, one HTTP worker so upstream connection reuse is deterministic)
//! with raw scripted backends and raw clients:
//!
//! - response desync: a pooled upstream connection that got bytes nobody asked for (late
//!   body bytes after HEAD/204/304, surplus after a content-length body, a second
//!   unsolicited response, the answer to a request smuggled in an ignored body) is never
//!   reused, so no later client gets another request's answer; the discard is counted;
//! - host rules (RFC 9112 §3.2, RFC 9113 §8.3.1): one valid host or 400;
//! - stalled and slow uploads: `--client-body-timeout` (408) and
//!   `--client-body-buffer-size` (small bodies are read before an upstream is taken);
//! - header names with underscores are dropped unless `--allow-underscores-in-headers`;
//! - broken chunked framing in a request body is the client's fault: 400, not 502.
//!
//! Timings only bound liveness ("within seconds"), except where the scenario is itself
//! timed (stray bytes 20 ms after a response, the next request 150 ms later).

use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt as _, Empty};
use hyper::header;
use hyper_util::rt::{TokioExecutor, TokioIo};
use ingress_tests::{
    http_support::{ingress_yaml, service_yaml},
    process::{IngressProcess, Metrics},
    scripted::{
        Bodies, GUARD, RawResponse, Reply, Request, ScriptedBackend, Wire, answer_body,
        answer_bytes, exchange, within,
    },
};
use tokio::net::TcpStream;

const DISCARDED: &str = "xdp_ingress_http_upstream_connections_discarded_total";
const LOCAL_ERRORS: &str = "xdp_ingress_http_local_errors_total";
const CONNECT_ERRORS: &str = "xdp_ingress_http_upstream_connect_errors_total";
const HEADERS_DROPPED: &str = "xdp_ingress_http_headers_dropped_total";

/// Service `web` at `backend`, routed for host `web.test`.
fn site(backend: &ScriptedBackend) -> String {
    format!(
        "{}{}",
        service_yaml("web", &[backend.addr]),
        ingress_yaml("web", Some("web.test"), &[("/", "Prefix", "web")])
    )
}

fn get(path: &str) -> Vec<u8> {
    format!("GET {path} HTTP/1.1\r\nHost: web.test\r\n\r\n").into_bytes()
}

fn head(path: &str) -> Vec<u8> {
    format!("HEAD {path} HTTP/1.1\r\nHost: web.test\r\n\r\n").into_bytes()
}

/// A request sent on a new client connection, or on the one given.
async fn send(ingress: &IngressProcess, kept: Option<&mut Wire>, request: &[u8]) -> RawResponse {
    match kept {
        Some(wire) => wire.exchange(request).await,
        None => exchange(ingress.http, request).await,
    }
}

// ---------------------------------------------------------------------------------------
// 1. Response desync
// ---------------------------------------------------------------------------------------

/// When stray bytes follow a response, in a later write.
const LATE: Duration = Duration::from_millis(20);
/// How long after the dirty response the next client asks: well after [`LATE`], so the
/// stray bytes are waiting in the idle pooled connection.
const SETTLE: Duration = Duration::from_millis(150);
/// Clients after the dirty response.
const CLIENTS: usize = 10;

/// A body that a GET's backend ignores, so it reads it as the next request.
const SMUGGLED: &str = "GET /smuggled HTTP/1.1\r\nHost: x\r\n\r\n";

/// A complete response nobody asked for, meant for whoever asks next.
const EVIL: &str = "HTTP/1.1 200 OK\r\nx-answer-to: /evil\r\nset-cookie: victim=stolen\r\ncontent-length: 5\r\n\r\nevil\n";

/// Which discard reason the router must count.
#[derive(Clone, Copy, Debug)]
enum Reason {
    /// Bytes arrived while the connection sat idle in the pool.
    Unsolicited,
    /// Bytes were read together with the response, beyond its end.
    Surplus,
    /// Either (which one depends on when the bytes arrive).
    Either,
}

/// One way for an upstream connection to become dirty.
#[derive(Clone, Copy)]
struct Dirty {
    what: &'static str,
    /// The request that gets the dirty answer, for target `path`.
    request: fn(&str) -> Vec<u8>,
    /// The backend's dirty answer to it.
    reply: fn(&Request) -> Reply,
    /// What that request's own client must get: status, and body for target `path`.
    status: u16,
    body: fn(&str) -> Vec<u8>,
    reason: Reason,
}

fn no_body(_: &str) -> Vec<u8> {
    Vec::new()
}

fn hello(_: &str) -> Vec<u8> {
    b"hello".to_vec()
}

fn normal_body(path: &str) -> Vec<u8> {
    answer_body("web", path).into_bytes()
}

fn late_after_head(req: &Request) -> Reply {
    Reply::bytes(format!(
        "HTTP/1.1 200 OK\r\nx-answer-to: {}\r\ncontent-length: 5\r\n\r\n",
        req.target()
    ))
    .then(LATE, "hello")
}

fn late_after_204(req: &Request) -> Reply {
    Reply::bytes(format!(
        "HTTP/1.1 204 No Content\r\nx-answer-to: {}\r\n\r\n",
        req.target()
    ))
    .then(LATE, "hello")
}

fn late_after_304(req: &Request) -> Reply {
    Reply::bytes(format!(
        "HTTP/1.1 304 Not Modified\r\nx-answer-to: {}\r\netag: \"v1\"\r\n\r\n",
        req.target()
    ))
    .then(LATE, "hello")
}

fn surplus_same_write(req: &Request) -> Reply {
    Reply::bytes(format!(
        "HTTP/1.1 200 OK\r\nx-answer-to: {}\r\ncontent-length: 5\r\n\r\nhelloSURPLUS-BYTES",
        req.target()
    ))
}

fn surplus_later_write(req: &Request) -> Reply {
    Reply::bytes(format!(
        "HTTP/1.1 200 OK\r\nx-answer-to: {}\r\ncontent-length: 5\r\n\r\nhello",
        req.target()
    ))
    .then(LATE, "SURPLUS-BYTES")
}

fn unsolicited_response(req: &Request) -> Reply {
    Reply::bytes(answer_bytes(req)).then(LATE, EVIL)
}

fn smuggling_get(path: &str) -> Vec<u8> {
    format!(
        "GET {path} HTTP/1.1\r\nHost: web.test\r\nContent-Length: {}\r\n\r\n{SMUGGLED}",
        SMUGGLED.len()
    )
    .into_bytes()
}

#[derive(Clone, Copy, Debug)]
enum Clients {
    /// Every client on its own connection.
    NewConnections,
    /// The dirty request and every later one on one keep-alive client connection.
    KeepAlive,
}

/// Starts a backend whose `/dirty*` answers are `case.reply` (everything else gets the
/// normal answer; GET bodies are ignored, as case f needs) and the binary in front of it,
/// then runs the case with new client connections and with one keep-alive connection.
async fn desync(case: Dirty) {
    let reply = case.reply;
    let backend = ScriptedBackend::start("web", Bodies::IgnoredOnGetAndHead, move |req| {
        if req.target().starts_with("/dirty") {
            reply(req)
        } else {
            Reply::answer(req)
        }
    })
    .await;
    let ingress = IngressProcess::start(&site(&backend), &[]).await;
    for clients in [Clients::NewConnections, Clients::KeepAlive] {
        desync_run(case, clients, &ingress, &backend).await;
    }
}

async fn desync_run(
    case: Dirty,
    clients: Clients,
    ingress: &IngressProcess,
    backend: &ScriptedBackend,
) {
    let tag = match clients {
        Clients::NewConnections => "new",
        Clients::KeepAlive => "kept",
    };
    let ctx = format!("{} ({clients:?})", case.what);
    let before = ingress.metrics().await;
    let mut kept = match clients {
        Clients::NewConnections => None,
        Clients::KeepAlive => Some(Wire::connect(ingress.http).await),
    };

    let dirty_path = format!("/dirty-{tag}");
    let dirty = send(ingress, kept.as_mut(), &(case.request)(&dirty_path)).await;
    assert_eq!(
        (dirty.status(), dirty.answer_to()),
        (case.status, Some(dirty_path.as_str())),
        "{ctx}: the dirty request's own response: {dirty:?}"
    );
    assert_eq!(
        dirty.text(),
        String::from_utf8_lossy(&(case.body)(&dirty_path)),
        "{ctx}: the dirty request's own body"
    );

    tokio::time::sleep(SETTLE).await;
    for i in 0..CLIENTS {
        let path = format!("/{tag}-client-{i}");
        let resp = send(ingress, kept.as_mut(), &get(&path)).await;
        assert_eq!(
            (resp.status(), resp.answer_to()),
            (200, Some(path.as_str())),
            "{ctx}: client {i} asked for {path} and got another answer: {resp:?}\nlog:\n{}",
            ingress.log()
        );
        assert!(
            resp.head.get_all("set-cookie").is_empty(),
            "{ctx}: client {i} got a cookie: {resp:?}"
        );
        assert_eq!(resp.text(), answer_body("web", &path), "{ctx}: client {i}");
    }

    let seen = backend.requests();
    let dirty_conn = seen
        .iter()
        .find(|r| r.target() == dirty_path)
        .unwrap_or_else(|| panic!("{ctx}: the backend never saw {dirty_path}"))
        .conn;
    let prefix = format!("/{tag}-client-");
    let later: Vec<&Request> = seen
        .iter()
        .filter(|r| r.target().starts_with(&prefix))
        .collect();
    let on_dirty: Vec<&str> = later
        .iter()
        .filter(|r| r.conn == dirty_conn)
        .map(|r| r.target())
        .collect();
    assert!(
        on_dirty.is_empty(),
        "{ctx}: requests sent on the dirty upstream connection #{dirty_conn}: {on_dirty:?}"
    );
    assert!(
        later.iter().any(|r| r.conn > dirty_conn),
        "{ctx}: no later request reached the backend on a fresh upstream connection \
         (dirty one: #{dirty_conn}; later: {:?})",
        later
            .iter()
            .map(|r| (r.target(), r.conn))
            .collect::<Vec<_>>()
    );

    let after = ingress.metrics().await;
    let delta = |reason: &str| {
        after.sum(DISCARDED, &[("reason", reason)]) - before.sum(DISCARDED, &[("reason", reason)])
    };
    let (unsolicited, surplus) = (delta("unsolicited_bytes"), delta("surplus_bytes"));
    let counted = match case.reason {
        Reason::Unsolicited => unsolicited > 0.0,
        Reason::Surplus => surplus > 0.0,
        Reason::Either => unsolicited + surplus > 0.0,
    };
    assert!(
        counted,
        "{ctx}: expected a discard counted as {:?}; unsolicited_bytes +{unsolicited}, \
         surplus_bytes +{surplus}; exposition:\n{}",
        case.reason,
        after.family(DISCARDED)
    );
}

/// a. A HEAD answered `200`, `content-length: 5`, then 5 body bytes it must not have.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn late_body_bytes_after_a_head_response_never_answer_a_later_request() {
    desync(Dirty {
        what: "HEAD, then 5 late body bytes",
        request: head,
        reply: late_after_head,
        status: 200,
        body: no_body,
        reason: Reason::Unsolicited,
    })
    .await;
}

/// b. `204 No Content`, then body bytes.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn late_body_bytes_after_204_never_answer_a_later_request() {
    desync(Dirty {
        what: "204, then late body bytes",
        request: get,
        reply: late_after_204,
        status: 204,
        body: no_body,
        reason: Reason::Unsolicited,
    })
    .await;
}

/// c. `304 Not Modified`, then body bytes.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn late_body_bytes_after_304_never_answer_a_later_request() {
    desync(Dirty {
        what: "304, then late body bytes",
        request: get,
        reply: late_after_304,
        status: 304,
        body: no_body,
        reason: Reason::Unsolicited,
    })
    .await;
}

/// d. `content-length: 5` and more bytes in the same write: read with the response.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn surplus_bytes_in_the_same_write_never_answer_a_later_request() {
    desync(Dirty {
        what: "content-length 5 plus surplus in the same write",
        request: get,
        reply: surplus_same_write,
        status: 200,
        body: hello,
        reason: Reason::Surplus,
    })
    .await;
}

/// d. `content-length: 5`, then more bytes in a later write: they arrive while pooled.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn surplus_bytes_in_a_later_write_never_answer_a_later_request() {
    desync(Dirty {
        what: "content-length 5, surplus in a later write",
        request: get,
        reply: surplus_later_write,
        status: 200,
        body: hello,
        reason: Reason::Unsolicited,
    })
    .await;
}

/// e. A complete second response (`/evil`, with a cookie) after the real one.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unsolicited_second_response_never_reaches_another_client() {
    desync(Dirty {
        what: "a second, unsolicited response",
        request: get,
        reply: unsolicited_response,
        status: 200,
        body: normal_body,
        reason: Reason::Unsolicited,
    })
    .await;
}

/// f. A request smuggled in a GET body the backend ignores: it answers it as the next
/// request, right after the real answer.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_answer_to_a_request_smuggled_in_an_ignored_body_never_reaches_another_client() {
    desync(Dirty {
        what: "a request smuggled in an ignored GET body",
        request: smuggling_get,
        reply: Reply::answer,
        status: 200,
        body: normal_body,
        reason: Reason::Either,
    })
    .await;
}

// ---------------------------------------------------------------------------------------
// 2. Host rules
// ---------------------------------------------------------------------------------------

/// Backends for `web.test`, `other.test` and requests without a host.
struct Hosts {
    web: ScriptedBackend,
    other: ScriptedBackend,
    any: ScriptedBackend,
    ingress: IngressProcess,
}

impl Hosts {
    async fn start() -> Self {
        let web = ScriptedBackend::answering("web").await;
        let other = ScriptedBackend::answering("other").await;
        let any = ScriptedBackend::answering("any").await;
        let yaml = [
            service_yaml("web", &[web.addr]),
            service_yaml("other", &[other.addr]),
            service_yaml("any", &[any.addr]),
            ingress_yaml("web", Some("web.test"), &[("/", "Prefix", "web")]),
            ingress_yaml("other", Some("other.test"), &[("/", "Prefix", "other")]),
            ingress_yaml("any", None, &[("/", "Prefix", "any")]),
        ]
        .concat();
        let ingress = IngressProcess::start(&yaml, &[]).await;
        Self {
            web,
            other,
            any,
            ingress,
        }
    }

    /// Requests each backend received, for failure messages.
    fn received(&self) -> Vec<(String, String)> {
        [&self.web, &self.other, &self.any]
            .iter()
            .flat_map(|b| {
                b.requests()
                    .into_iter()
                    .map(|r| (b.name.clone(), r.head.start.clone()))
            })
            .collect()
    }

    async fn bad_host_count(&self) -> f64 {
        self.ingress
            .metrics()
            .await
            .sum(LOCAL_ERRORS, &[("kind", "bad_host"), ("fault", "client")])
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn http1_requests_without_exactly_one_valid_host_get_400() {
    let hosts = Hosts::start().await;
    let bad: [(&str, &str); 7] = [
        (
            "two different Host lines",
            "GET /h HTTP/1.1\r\nHost: web.test\r\nHost: other.test\r\n\r\n",
        ),
        (
            "the same Host line twice",
            "GET /h HTTP/1.1\r\nHost: web.test\r\nHost: web.test\r\n\r\n",
        ),
        (
            "no Host on HTTP/1.1",
            "GET /h HTTP/1.1\r\nAccept: */*\r\n\r\n",
        ),
        ("an empty Host", "GET /h HTTP/1.1\r\nHost: \r\n\r\n"),
        ("a space in Host", "GET /h HTTP/1.1\r\nHost: a b\r\n\r\n"),
        ("userinfo in Host", "GET /h HTTP/1.1\r\nHost: a@b\r\n\r\n"),
        (
            "a port that is no number",
            "GET /h HTTP/1.1\r\nHost: x:port\r\n\r\n",
        ),
    ];
    let mut wrong = Vec::new();
    for (what, request) in bad {
        let resp = exchange(hosts.ingress.http, request.as_bytes()).await;
        if resp.status() != 400 {
            wrong.push(format!(
                "{what}: {} (from {:?})",
                resp.status(),
                resp.header("x-backend")
            ));
        }
    }
    assert!(wrong.is_empty(), "not answered 400:\n{}", wrong.join("\n"));
    assert_eq!(
        hosts.received(),
        Vec::<(String, String)>::new(),
        "no request with a bad host reaches a backend"
    );
    let counted = hosts.bad_host_count().await;
    assert_eq!(
        counted,
        bad.len() as f64,
        "{LOCAL_ERRORS}{{kind=\"bad_host\",fault=\"client\"}}; exposition:\n{}",
        hosts.ingress.metrics().await.family(LOCAL_ERRORS)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn http1_absolute_form_target_wins_over_host_and_http10_needs_no_host() {
    let hosts = Hosts::start().await;
    let resp = exchange(
        hosts.ingress.http,
        b"GET http://web.test/abs HTTP/1.1\r\nHost: other.test\r\n\r\n",
    )
    .await;
    assert_eq!(
        (resp.status(), resp.header("x-backend"), resp.answer_to()),
        (200, Some("web"), Some("/abs")),
        "absolute-form target routes on its host: {resp:?}"
    );
    let seen = hosts.web.requests();
    let abs = seen
        .iter()
        .find(|r| r.target() == "/abs")
        .expect("web got /abs");
    assert_eq!(
        abs.head.get_all("host"),
        ["web.test"],
        "exactly one Host line, from the target: {:?}",
        abs.head
    );
    assert!(hosts.other.requests().is_empty(), "{:?}", hosts.received());

    let mut wire = Wire::connect(hosts.ingress.http).await;
    wire.send(b"GET /old HTTP/1.0\r\n\r\n").await;
    let resp = wire.response("GET").await;
    assert_eq!(
        (resp.status(), resp.header("x-backend"), resp.answer_to()),
        (200, Some("any"), Some("/old")),
        "HTTP/1.0 without Host routes as host-less: {resp:?}"
    );
    assert_eq!(hosts.bad_host_count().await, 0.0);
}

/// `GET URI` over h2c with prior knowledge, with `host` as a regular header when given.
async fn h2c_get(
    addr: std::net::SocketAddr,
    uri: &str,
    host: Option<&str>,
) -> (u16, Option<String>) {
    let tcp = within("connect", GUARD, TcpStream::connect(addr))
        .await
        .expect("connect");
    let (mut send, conn) = within(
        "h2c handshake",
        GUARD,
        hyper::client::conn::http2::handshake(TokioExecutor::new(), TokioIo::new(tcp)),
    )
    .await
    .expect("h2c handshake");
    tokio::spawn(conn);
    let mut req = hyper::Request::get(uri);
    if let Some(h) = host {
        req = req.header(header::HOST, h);
    }
    let req = req.body(Empty::<Bytes>::new()).expect("request");
    let resp = within("h2c response", GUARD, send.send_request(req))
        .await
        .expect("h2c response");
    let status = resp.status().as_u16();
    let backend = resp
        .headers()
        .get("x-backend")
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned);
    let _ = within("h2c body", GUARD, resp.into_body().collect()).await;
    (status, backend)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn h2c_authority_and_host_must_agree() {
    let hosts = Hosts::start().await;
    let mismatch = h2c_get(
        hosts.ingress.http,
        "http://web.test/h2-mismatch",
        Some("other.test"),
    )
    .await;
    assert_eq!(
        mismatch.0, 400,
        ":authority web.test with host: other.test (answered by {:?})",
        mismatch.1
    );
    assert!(
        hosts.received().is_empty(),
        "nothing reaches a backend: {:?}",
        hosts.received()
    );

    let ok = h2c_get(hosts.ingress.http, "http://web.test/h2-ok", None).await;
    assert_eq!(ok, (200, Some("web".to_owned())), ":authority alone routes");
    let seen = hosts.web.requests();
    let r = seen
        .iter()
        .find(|r| r.target() == "/h2-ok")
        .expect("web got /h2-ok");
    assert_eq!(r.head.get_all("host"), ["web.test"], "{:?}", r.head);
    assert_eq!(hosts.bad_host_count().await, 1.0);
}

// ---------------------------------------------------------------------------------------
// 3. Stalled and slow uploads
// ---------------------------------------------------------------------------------------

/// A POST head announcing `len` body bytes.
fn post_head(path: &str, len: usize) -> String {
    format!("POST {path} HTTP/1.1\r\nHost: web.test\r\nContent-Length: {len}\r\n\r\n")
}

async fn counted(ingress: &IngressProcess, kind: &str, fault: &str) -> f64 {
    ingress
        .metrics()
        .await
        .sum(LOCAL_ERRORS, &[("kind", kind), ("fault", fault)])
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stalled_upload_gets_408_and_never_takes_an_upstream_connection() {
    let backend = ScriptedBackend::answering("web").await;
    let ingress = IngressProcess::start(&site(&backend), &["--client-body-timeout", "1"]).await;
    let mut wire = Wire::connect(ingress.http).await;
    wire.send(format!("{}0123456789", post_head("/stalled", 100)).as_bytes())
        .await;
    let resp = wire.response_within("POST", Duration::from_secs(10)).await;
    assert_eq!(resp.status(), 408, "{resp:?}");
    assert_eq!(backend.accepted(), 0, "the backend got a connection");
    assert_eq!(
        counted(&ingress, "client_body_timeout", "client").await,
        1.0
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fifty_stalled_uploads_hold_no_upstream_connection() {
    const STALLED: usize = 50;
    let backend = ScriptedBackend::answering("web").await;
    let ingress = IngressProcess::start(&site(&backend), &["--client-body-timeout", "3"]).await;
    let mut wires = Vec::new();
    for i in 0..STALLED {
        let mut wire = Wire::connect(ingress.http).await;
        wire.send(format!("{}0123456789", post_head(&format!("/stalled-{i}"), 100)).as_bytes())
            .await;
        wires.push(wire);
    }
    tokio::time::sleep(Duration::from_secs(1)).await;
    assert_eq!(
        backend.accepted(),
        0,
        "upstream connections taken while {STALLED} uploads stall"
    );
    // Others are still served meanwhile.
    let resp = exchange(ingress.http, &get("/meanwhile")).await;
    assert_eq!(
        (resp.status(), resp.answer_to()),
        (200, Some("/meanwhile")),
        "{resp:?}"
    );

    let statuses = futures::future::join_all(
        wires
            .iter_mut()
            .map(|w| w.response_within("POST", Duration::from_secs(15))),
    )
    .await
    .iter()
    .map(RawResponse::status)
    .collect::<Vec<_>>();
    assert_eq!(statuses, vec![408; STALLED]);
    assert_eq!(
        backend.accepted(),
        1,
        "only the GET took an upstream connection"
    );
    assert_eq!(
        counted(&ingress, "client_body_timeout", "client").await,
        STALLED as f64
    );
}

/// Sends `head`, then `body` one byte every 200 ms, then reads the response. A write that
/// fails (the router answered early and closed) ends the upload; the response is still
/// read, so the test reports what the router said.
async fn slow_upload(ingress: &IngressProcess, head: &str, body: &[u8]) -> RawResponse {
    let mut wire = Wire::connect(ingress.http).await;
    wire.send(head.as_bytes()).await;
    for b in body {
        tokio::time::sleep(Duration::from_millis(200)).await;
        if wire.write(&[*b]).await.is_err() {
            break;
        }
    }
    wire.response_within("POST", Duration::from_secs(15)).await
}

async fn slow_upload_succeeds(buffer: Option<&str>, len: usize) {
    let backend = ScriptedBackend::answering("web").await;
    let mut args = vec![
        "--upstream-response-timeout",
        "1",
        "--client-body-timeout",
        "2",
    ];
    if let Some(b) = buffer {
        args.extend(["--client-body-buffer-size", b]);
    }
    let ingress = IngressProcess::start(&site(&backend), &args).await;
    let body: Vec<u8> = (b'a'..=b'z').cycle().take(len).collect();
    let resp = slow_upload(&ingress, &post_head("/slow", len), &body).await;
    assert_eq!(
        (resp.status(), resp.answer_to(), resp.header("x-body-bytes")),
        (200, Some("/slow"), Some(len.to_string().as_str())),
        "{resp:?}\nlog:\n{}",
        ingress.log()
    );
    let seen = backend.requests();
    let got = seen
        .iter()
        .find(|r| r.target() == "/slow")
        .expect("backend got /slow");
    assert_eq!(
        String::from_utf8_lossy(&got.body),
        String::from_utf8_lossy(&body)
    );
}

/// A 20-byte body at one byte per 200 ms (4 s) with a 1 s response timeout: the response
/// timeout starts once the request is sent, and no gap reaches the 2 s body timeout.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_slow_upload_within_the_buffer_succeeds() {
    slow_upload_succeeds(None, 20).await;
}

/// The same with a 40-byte body over a 16-byte buffer: streamed to the upstream.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_slow_upload_larger_than_the_buffer_succeeds() {
    slow_upload_succeeds(Some("16"), 40).await;
}

// ---------------------------------------------------------------------------------------
// 4. Header names with underscores
// ---------------------------------------------------------------------------------------

const UNDERSCORED: [(&str, &str); 3] = [
    ("X_Forwarded_For", "1.2.3.4"),
    ("X_Real_IP", "6.6.6.6"),
    ("Foo_Bar", "x"),
];

/// A bodiless GET (the fast path) and a POST with a body (hyper's path), each with the
/// underscored headers; the backend's record of each.
async fn send_underscored(ingress: &IngressProcess, backend: &ScriptedBackend) -> Vec<Request> {
    let lines: String = UNDERSCORED
        .iter()
        .map(|(n, v)| format!("{n}: {v}\r\n"))
        .collect();
    let requests = [
        (
            "/u-get",
            format!("GET /u-get HTTP/1.1\r\nHost: web.test\r\n{lines}\r\n"),
        ),
        (
            "/u-post",
            format!(
                "POST /u-post HTTP/1.1\r\nHost: web.test\r\n{lines}Content-Length: 2\r\n\r\nhi"
            ),
        ),
    ];
    let mut seen = Vec::new();
    for (path, raw) in requests {
        let resp = exchange(ingress.http, raw.as_bytes()).await;
        assert_eq!(
            (resp.status(), resp.answer_to()),
            (200, Some(path)),
            "{resp:?}"
        );
        let got = backend
            .requests()
            .into_iter()
            .find(|r| r.target() == path)
            .unwrap_or_else(|| panic!("backend got {path}"));
        seen.push(got);
    }
    seen
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn header_names_with_underscores_are_dropped_and_counted_by_default() {
    let backend = ScriptedBackend::answering("web").await;
    let ingress = IngressProcess::start(&site(&backend), &[]).await;
    for req in send_underscored(&ingress, &backend).await {
        let leaked: Vec<&(String, String)> = req
            .head
            .headers
            .iter()
            .filter(|(n, v)| {
                n.contains('_') || ["1.2.3.4", "6.6.6.6"].iter().any(|bad| v.contains(bad))
            })
            .collect();
        assert!(
            leaked.is_empty(),
            "{}: underscored headers (or their values) reached the backend: {leaked:?}",
            req.target()
        );
        assert!(req.head.get("foo-bar").is_none(), "{:?}", req.head);
    }
    let dropped = ingress
        .metrics()
        .await
        .sum(HEADERS_DROPPED, &[("reason", "underscore")]);
    assert_eq!(dropped, 6.0, "3 per request, 2 requests");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn header_names_with_underscores_pass_when_allowed() {
    let backend = ScriptedBackend::answering("web").await;
    let ingress = IngressProcess::start(&site(&backend), &["--allow-underscores-in-headers"]).await;
    for req in send_underscored(&ingress, &backend).await {
        for (name, value) in UNDERSCORED {
            assert_eq!(
                req.head.get_all(name),
                [value],
                "{}: {name} as the backend saw it: {:?}",
                req.target(),
                req.head
            );
        }
    }
    let dropped = ingress
        .metrics()
        .await
        .sum(HEADERS_DROPPED, &[("reason", "underscore")]);
    assert_eq!(dropped, 0.0);
}

// ---------------------------------------------------------------------------------------
// 5. Malformed request bodies
// ---------------------------------------------------------------------------------------

fn chunked_post(path: &str, body: &str) -> Vec<u8> {
    format!("POST {path} HTTP/1.1\r\nHost: web.test\r\nTransfer-Encoding: chunked\r\n\r\n{body}")
        .into_bytes()
}

/// Not counted as the upstream's fault in any way.
fn assert_not_upstreams_fault(m: &Metrics) {
    assert_eq!(
        m.sum(CONNECT_ERRORS, &[]),
        0.0,
        "upstream connect errors:\n{}",
        m.family(CONNECT_ERRORS)
    );
    assert_eq!(
        m.sum(LOCAL_ERRORS, &[("fault", "upstream")]),
        0.0,
        "local errors blamed on the upstream:\n{}",
        m.family(LOCAL_ERRORS)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn broken_chunked_framing_in_a_small_body_is_400_before_any_upstream_connection() {
    let backend = ScriptedBackend::answering("web").await;
    let ingress = IngressProcess::start(&site(&backend), &[]).await;
    let cases = [
        ("a chunk size that is no hex", "zz\r\nhello\r\n0\r\n\r\n"),
        (
            "fewer bytes than the chunk size, then a line that is no hex",
            "5\r\nab\r\nzz\r\n\r\n",
        ),
    ];
    let mut wrong = Vec::new();
    for (i, (what, body)) in cases.iter().enumerate() {
        let resp = exchange(ingress.http, &chunked_post(&format!("/bad-{i}"), body)).await;
        if resp.status() != 400 {
            wrong.push(format!("{what}: {} {:?}", resp.status(), resp.text()));
        }
    }
    assert!(wrong.is_empty(), "not answered 400:\n{}", wrong.join("\n"));
    assert_eq!(
        backend.accepted(),
        0,
        "a small body is read in full before an upstream connection is taken"
    );
    let m = ingress.metrics().await;
    assert_eq!(
        m.sum(
            LOCAL_ERRORS,
            &[("kind", "bad_request_body"), ("fault", "client")]
        ),
        cases.len() as f64,
        "{}",
        m.family(LOCAL_ERRORS)
    );
    assert_not_upstreams_fault(&m);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn broken_chunked_framing_after_the_buffer_is_400_and_the_upstream_connection_is_dropped() {
    let backend = ScriptedBackend::answering("web").await;
    let ingress =
        IngressProcess::start(&site(&backend), &["--client-body-buffer-size", "16"]).await;
    let mut wire = Wire::connect(ingress.http).await;
    let good: String = (b'a'..=b'z').cycle().take(40).map(char::from).collect();
    wire.send(&chunked_post("/big", &format!("28\r\n{good}\r\n")))
        .await;
    // Past the buffer: the router may well be streaming to the upstream by now.
    tokio::time::sleep(Duration::from_millis(300)).await;
    wire.send(b"zz\r\n\r\n").await;
    let resp = wire.response("POST").await;
    assert_eq!(resp.status(), 400, "{resp:?}\nlog:\n{}", ingress.log());

    let after = exchange(ingress.http, &get("/after")).await;
    assert_eq!(
        (after.status(), after.answer_to()),
        (200, Some("/after")),
        "{after:?}"
    );
    let heads = backend.heads();
    let conn_of = |path: &str| {
        heads
            .iter()
            .find(|(_, h)| h.target() == path)
            .map(|(c, _)| *c)
    };
    if let Some(big) = conn_of("/big") {
        assert_ne!(
            conn_of("/after"),
            Some(big),
            "/after went on the connection of the broken upload"
        );
    }
    // Bytes that do not frame inside /big's chunked body: another request written into it,
    // or the client's broken framing passed on.
    let framing: Vec<_> = backend
        .errors()
        .into_iter()
        .filter(|(_, kind, _)| *kind == std::io::ErrorKind::InvalidData)
        .collect();
    assert!(
        framing.is_empty(),
        "the backend read broken framing: {framing:?}"
    );
    let m = ingress.metrics().await;
    assert_eq!(
        m.sum(
            LOCAL_ERRORS,
            &[("kind", "bad_request_body"), ("fault", "client")]
        ),
        1.0,
        "{}",
        m.family(LOCAL_ERRORS)
    );
    assert_not_upstreams_fault(&m);
}
