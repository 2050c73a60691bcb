//! Request rows: what a client sends to a Gateway, and what it must get back and the
//! backend must have received. The conformance suite's `http.ExpectedResponse`, as a
//! builder: `get("/v2").header("version", "two").to("infra-backend-v2")`.

use std::{
    collections::BTreeMap,
    fmt::Write as _,
    net::SocketAddr,
    sync::atomic::{AtomicU64, Ordering},
    time::{Duration, Instant},
};

use bytes::Bytes;
use http_body_util::{BodyExt as _, Full};
use hyper::{HeaderMap, Request, header};
use hyper_util::rt::TokioIo;

use super::{INFRA, World};
use crate::http_support::{SeenRequest, TestCa, tls_connect, tls_connector};

/// How long one row may keep failing before it counts as failed (the configuration is
/// eventually consistent, as in the conformance suite).
pub const ROW_WITHIN: Duration = Duration::from_secs(5);

/// The header every request carries with a unique value, to find it in a backend's log.
pub const TEST_ID: &str = "x-conformance-id";

static IDS: AtomicU64 = AtomicU64::new(1);

/// Where a row's request goes.
#[derive(Clone, Debug)]
enum Target {
    /// The Gateway of that name, port 80.
    Gateway(String),
    /// The binary's own `--http-port` (Ingress routes).
    Ingress,
}

/// The `Location` a redirect must carry; `None` fields default as in the conformance
/// suite: the request's host, `http`, the request's path, and no port or the scheme's
/// own (80 for http, 443 for https).
#[derive(Clone, Debug, Default)]
struct Location {
    scheme: Option<String>,
    host: Option<String>,
    port: Option<String>,
    path: Option<String>,
}

/// One table row.
#[derive(Clone, Debug)]
pub struct Row {
    label: Option<String>,
    target: Target,
    method: String,
    host: Option<String>,
    path: String,
    headers: Vec<(String, String)>,
    /// Response headers the backend is asked to set (`x-echo-set-header`).
    backend_sets: Vec<(String, String)>,
    status: u16,
    backend: Option<(String, String)>,
    any_backend: bool,
    saw_path: Option<String>,
    saw_host: Option<String>,
    saw_headers: Vec<(String, String)>,
    saw_absent: Vec<String>,
    resp_headers: Vec<(String, String)>,
    resp_absent: Vec<String>,
    location: Option<Location>,
    mirrored_to: Vec<(String, String)>,
    /// HTTPS to port 443 with this SNI.
    sni: Option<String>,
    /// The Gateway port (default 80, or 443 for HTTPS).
    port: Option<u16>,
}

/// A `GET` of `path` (with its query) on the Gateway `same-namespace`, expecting 200.
pub fn get(path: &str) -> Row {
    request("GET", path)
}

/// A `method` request of `path` on the Gateway `same-namespace`, expecting 200.
pub fn request(method: &str, path: &str) -> Row {
    Row {
        label: None,
        target: Target::Gateway("same-namespace".into()),
        method: method.into(),
        host: None,
        path: path.into(),
        headers: Vec::new(),
        backend_sets: Vec::new(),
        status: 200,
        backend: None,
        any_backend: false,
        saw_path: None,
        saw_host: None,
        saw_headers: Vec::new(),
        saw_absent: Vec::new(),
        resp_headers: Vec::new(),
        resp_absent: Vec::new(),
        location: None,
        mirrored_to: Vec::new(),
        sni: None,
        port: None,
    }
}

impl Row {
    /// Names the row (default: method, host, path and headers).
    #[must_use]
    pub fn named(mut self, label: &str) -> Self {
        self.label = Some(label.into());
        self
    }

    /// Sends to the Gateway `gateway` instead of `same-namespace`.
    #[must_use]
    pub fn via(mut self, gateway: &str) -> Self {
        self.target = Target::Gateway(gateway.into());
        self
    }

    /// Sends to the binary's own HTTP port (Ingress routes), to check the harness.
    #[must_use]
    pub fn via_ingress(mut self) -> Self {
        self.target = Target::Ingress;
        self
    }

    /// Sends over TLS to port 443 with SNI `sni`, trusting the world's CA.
    #[must_use]
    pub fn https(mut self, sni: &str) -> Self {
        self.sni = Some(sni.into());
        self
    }

    /// Sends to this port of the Gateway (default 80, or 443 for HTTPS).
    #[must_use]
    pub fn port(mut self, port: u16) -> Self {
        self.port = Some(port);
        self
    }

    /// The port a Gateway row goes to.
    fn gateway_port(&self) -> u16 {
        self.port
            .unwrap_or(if self.sni.is_some() { 443 } else { 80 })
    }

    /// The `Host` header (default: the Gateway's address).
    #[must_use]
    pub fn host(mut self, host: &str) -> Self {
        self.host = Some(host.into());
        self
    }

    /// A request header.
    #[must_use]
    pub fn header(mut self, name: &str, value: &str) -> Self {
        self.headers.push((name.into(), value.into()));
        self
    }

    /// Asks the echo backend to answer with this response header.
    #[must_use]
    pub fn backend_sets(mut self, name: &str, value: &str) -> Self {
        self.backend_sets.push((name.into(), value.into()));
        self
    }

    /// Expects 200 from Service `name` in the infra namespace.
    #[must_use]
    pub fn to(self, name: &str) -> Self {
        self.to_in(INFRA, name)
    }

    /// Expects 200 from Service `namespace/name`.
    #[must_use]
    pub fn to_in(mut self, namespace: &str, name: &str) -> Self {
        self.status = 200;
        self.backend = Some((namespace.into(), name.into()));
        self
    }

    /// Expects this status and no backend (unless [`to`](Self::to) follows).
    #[must_use]
    pub fn status(mut self, status: u16) -> Self {
        self.status = status;
        self.backend = None;
        self.any_backend = false;
        self
    }

    /// Expects 200 from whichever backend (the suite's rows that name no backend).
    #[must_use]
    pub fn from_any_backend(mut self) -> Self {
        self.status = 200;
        self.backend = None;
        self.any_backend = true;
        self
    }

    /// The path and query the backend must receive (default: the request's).
    #[must_use]
    pub fn saw_path(mut self, path: &str) -> Self {
        self.saw_path = Some(path.into());
        self
    }

    /// The `Host` the backend must receive.
    #[must_use]
    pub fn saw_host(mut self, host: &str) -> Self {
        self.saw_host = Some(host.into());
        self
    }

    /// A header the backend must receive with this value (several values joined by `,`).
    #[must_use]
    pub fn saw_header(mut self, name: &str, value: &str) -> Self {
        self.saw_headers.push((name.into(), value.into()));
        self
    }

    /// A header the backend must not receive.
    #[must_use]
    pub fn saw_no_header(mut self, name: &str) -> Self {
        self.saw_absent.push(name.into());
        self
    }

    /// A response header the client must get with this value (values joined by `,`).
    #[must_use]
    pub fn resp_header(mut self, name: &str, value: &str) -> Self {
        self.resp_headers.push((name.into(), value.into()));
        self
    }

    /// A response header the client must not get.
    #[must_use]
    pub fn resp_no_header(mut self, name: &str) -> Self {
        self.resp_absent.push(name.into());
        self
    }

    /// Expects a redirect with this status and a `Location` as the default (the request's
    /// scheme, host and path, no port) changed by the `location_*` calls that follow.
    #[must_use]
    pub fn redirect(mut self, status: u16) -> Self {
        self.status = status;
        self.backend = None;
        self.location = Some(Location::default());
        self
    }

    /// The scheme the `Location` must have.
    #[must_use]
    pub fn location_scheme(mut self, scheme: &str) -> Self {
        self.location.get_or_insert_default().scheme = Some(scheme.into());
        self
    }

    /// The host the `Location` must have.
    #[must_use]
    pub fn location_host(mut self, host: &str) -> Self {
        self.location.get_or_insert_default().host = Some(host.into());
        self
    }

    /// The port the `Location` must have.
    #[must_use]
    pub fn location_port(mut self, port: &str) -> Self {
        self.location.get_or_insert_default().port = Some(port.into());
        self
    }

    /// The path the `Location` must have.
    #[must_use]
    pub fn location_path(mut self, path: &str) -> Self {
        self.location.get_or_insert_default().path = Some(path.into());
        self
    }

    /// A copy of the request must reach Service `name` in the infra namespace.
    #[must_use]
    pub fn mirrored_to(mut self, name: &str) -> Self {
        self.mirrored_to.push((INFRA.into(), name.into()));
        self
    }

    /// The row's label.
    pub fn label(&self) -> String {
        if let Some(l) = &self.label {
            return l.clone();
        }
        let mut s = format!("{} ", self.method);
        if let Some(sni) = &self.sni {
            let _ = write!(s, "(TLS, SNI {sni}) ");
        }
        if let Some(h) = &self.host {
            let _ = write!(s, "{h}");
        }
        s.push_str(&self.path);
        for (k, v) in &self.headers {
            let _ = write!(s, " [{k}: {v}]");
        }
        for (k, v) in &self.backend_sets {
            let _ = write!(s, " [backend sets {k}: {v}]");
        }
        s
    }
}

/// A response, read fully.
#[derive(Debug)]
pub struct Got {
    /// Status code.
    pub status: u16,
    /// Response headers.
    pub headers: HeaderMap,
    /// Body (for echo answers: the backend's name, then the request headers it saw).
    pub body: String,
}

impl Got {
    /// The echo backend that answered (`namespace/name`), if one did.
    pub fn backend(&self) -> Option<&str> {
        self.headers.get("x-backend").and_then(|v| v.to_str().ok())
    }

    fn header(&self, name: &str) -> Option<String> {
        let values: Vec<&str> = self
            .headers
            .get_all(name)
            .iter()
            .map(|v| v.to_str().unwrap_or("<binary>"))
            .collect();
        (!values.is_empty()).then(|| values.join(","))
    }
}

/// Sends one request on a fresh connection. `Err` describes a transport failure.
///
/// # Errors
/// If the connection, the request or the response fails, or nothing comes within 5 s.
pub async fn send(
    addr: SocketAddr,
    method: &str,
    host: &str,
    path: &str,
    headers: &[(String, String)],
) -> Result<Got, String> {
    let connect = async {
        tokio::net::TcpStream::connect(addr)
            .await
            .map_err(|e| format!("connect {addr}: {e}"))
    };
    let stream = tokio::time::timeout(Duration::from_secs(5), connect)
        .await
        .unwrap_or_else(|_| Err(format!("connect {addr}: nothing within 5 s")))?;
    exchange(stream, addr, method, host, path, headers).await
}

/// As [`send`], over TLS with SNI `sni`, trusting `ca`.
///
/// # Errors
/// As [`send`], and if the TLS handshake fails.
pub async fn send_tls(
    addr: SocketAddr,
    sni: &str,
    ca: &TestCa,
    request: (&str, &str, &str),
    headers: &[(String, String)],
) -> Result<Got, String> {
    let (method, host, path) = request;
    let connector = tls_connector(&ca.cert, &[b"http/1.1"]);
    let handshake = tls_connect(&connector, addr, sni);
    let stream = tokio::time::timeout(Duration::from_secs(5), handshake)
        .await
        .map_err(|_| format!("TLS to {addr} (SNI {sni}): nothing within 5 s"))?
        .map_err(|e| format!("TLS to {addr} (SNI {sni}): {e}"))?;
    exchange(stream, addr, method, host, path, headers).await
}

async fn exchange<S>(
    stream: S,
    addr: SocketAddr,
    method: &str,
    host: &str,
    path: &str,
    headers: &[(String, String)],
) -> Result<Got, String>
where
    S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
{
    let exchange = async {
        let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
            .await
            .map_err(|e| format!("handshake: {e}"))?;
        let conn = tokio::spawn(conn);
        let mut req = Request::builder()
            .method(method)
            .uri(path)
            .header(header::HOST, host);
        for (k, v) in headers {
            req = req.header(k.as_str(), v.as_str());
        }
        let req = req
            .body(Full::new(Bytes::new()))
            .map_err(|e| format!("request: {e}"))?;
        let resp = sender
            .send_request(req)
            .await
            .map_err(|e| format!("response: {e}"))?;
        let status = resp.status().as_u16();
        let (parts, body) = resp.into_parts();
        let body = body
            .collect()
            .await
            .map_err(|e| format!("body: {e}"))?
            .to_bytes();
        conn.abort();
        Ok(Got {
            status,
            headers: parts.headers,
            body: String::from_utf8_lossy(&body).into_owned(),
        })
    };
    tokio::time::timeout(Duration::from_secs(5), exchange)
        .await
        .unwrap_or_else(|_| Err(format!("no answer from {addr} within 5 s")))
}

/// The outcome of one row.
struct Outcome {
    label: String,
    failure: Option<String>,
}

impl World {
    /// Runs `rows` of the conformance test `test` against this world: waits for the
    /// Gateways they use to listen, then retries each row for up to [`ROW_WITHIN`] until it
    /// holds. Prints every row's outcome; fails with every failing row's expected against
    /// got, and every status check that failed since the last run.
    ///
    /// # Panics
    /// If a row fails, or a Gateway never listens.
    pub async fn run(&self, test: &str, rows: &[Row]) {
        let port = Row::gateway_port;
        let mut gateways: Vec<(&str, u16)> = rows
            .iter()
            .filter_map(|r| match &r.target {
                Target::Gateway(g) => Some((g.as_str(), port(r))),
                Target::Ingress => None,
            })
            .collect();
        gateways.sort_unstable();
        gateways.dedup();
        let mut silent = BTreeMap::new();
        for (g, p) in gateways {
            if let Err(why) = self.wait_listening(g, p).await {
                silent.insert((g.to_owned(), p), why);
            }
        }
        let mut outcomes = Vec::new();
        for row in rows {
            let outcome = match &row.target {
                Target::Gateway(g) if silent.contains_key(&(g.clone(), port(row))) => Outcome {
                    label: row.label(),
                    failure: Some(silent[&(g.clone(), port(row))].clone()),
                },
                _ => self.run_row(row).await,
            };
            outcomes.push(outcome);
        }
        let earlier = std::mem::take(&mut *self.failures.lock().expect("failures lock"));
        let mut report = String::new();
        for f in &earlier {
            let _ = writeln!(report, "FAIL {f}");
        }
        let mut failed = earlier.len();
        for o in &outcomes {
            match &o.failure {
                None => {
                    let _ = writeln!(report, "PASS {test} ({:?}) {}", self.mode, o.label);
                }
                Some(why) => {
                    failed += 1;
                    let _ = writeln!(report, "FAIL {test} ({:?}) {}: {why}", self.mode, o.label);
                }
            }
        }
        println!("{report}");
        assert!(
            failed == 0,
            "{test} ({mode:?} mode): {failed} of {total} checks failed:\n{report}\nlog tail:\n{tail}",
            mode = self.mode,
            total = outcomes.len() + earlier.len(),
            tail = self.log_tail()
        );
    }

    async fn run_row(&self, row: &Row) -> Outcome {
        let deadline = Instant::now() + ROW_WITHIN;
        loop {
            let failure = self.try_row(row).await.err();
            if failure.is_none() || Instant::now() > deadline {
                return Outcome {
                    label: row.label(),
                    failure,
                };
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    fn row_addr(&self, row: &Row) -> SocketAddr {
        match (&row.target, &row.sni) {
            (Target::Gateway(g), _) => SocketAddr::from((self.gateway_ip(g), row.gateway_port())),
            (Target::Ingress, None) => self.proc.http,
            (Target::Ingress, Some(_)) => self.proc.https,
        }
    }

    fn row_host(&self, row: &Row) -> String {
        row.host.clone().unwrap_or_else(|| match &row.target {
            Target::Gateway(g) => self.gateway_ip(g).to_string(),
            Target::Ingress => "localhost".into(),
        })
    }

    /// Sends `row` once and checks everything it expects.
    async fn try_row(&self, row: &Row) -> Result<(), String> {
        let id = IDS.fetch_add(1, Ordering::Relaxed).to_string();
        let host = self.row_host(row);
        let mut headers = row.headers.clone();
        headers.push((TEST_ID.into(), id.clone()));
        if !row.backend_sets.is_empty() {
            let sets: Vec<String> = row
                .backend_sets
                .iter()
                .map(|(k, v)| format!("{k}:{v}"))
                .collect();
            headers.push(("x-echo-set-header".into(), sets.join(",")));
        }
        let addr = self.row_addr(row);
        let got = match &row.sni {
            None => send(addr, &row.method, &host, &row.path, &headers).await?,
            Some(sni) => {
                let request = (row.method.as_str(), host.as_str(), row.path.as_str());
                send_tls(addr, sni, &self.ca, request, &headers).await?
            }
        };
        let mut wrong = Vec::new();
        if got.status != row.status {
            wrong.push(format!("status {} (want {})", got.status, row.status));
        }
        let want_backend = row.backend.as_ref().map(|(ns, n)| format!("{ns}/{n}"));
        if row.any_backend {
            if got.backend().is_none() {
                wrong.push("answered by no backend (want any)".into());
            }
        } else if got.backend() != want_backend.as_deref() {
            wrong.push(format!(
                "answered by {} (want {})",
                got.backend().unwrap_or("no backend"),
                want_backend.as_deref().unwrap_or("no backend")
            ));
        }
        if let Some(backend) = got.backend().and_then(|b| self.backends.get(b))
            && row.backend.is_some()
        {
            match backend.seen_with(TEST_ID, &id).first() {
                None => wrong.push(format!("{} has no record of the request", backend.name)),
                Some(seen) => self.check_seen(row, &host, seen, &mut wrong),
            }
        }
        for (k, v) in &row.resp_headers {
            let have = got.header(k);
            if have.as_deref() != Some(v.as_str()) {
                wrong.push(format!("response header {k}: {have:?} (want {v:?})"));
            }
        }
        for k in &row.resp_absent {
            if let Some(have) = got.header(k) {
                wrong.push(format!("response header {k}: {have:?} (want none)"));
            }
        }
        if let Some(want) = &row.location {
            check_location(want, &host, &row.path, &got, &mut wrong);
        }
        if wrong.is_empty() {
            for (ns, name) in &row.mirrored_to {
                self.wait_mirror(ns, name, &id, row, &mut wrong).await;
            }
        }
        if wrong.is_empty() {
            Ok(())
        } else {
            let body: String = got.body.lines().take(3).collect::<Vec<_>>().join(" | ");
            Err(format!("{}; body: {body:?}", wrong.join("; ")))
        }
    }

    fn check_seen(&self, row: &Row, host: &str, seen: &SeenRequest, wrong: &mut Vec<String>) {
        let want_path = row.saw_path.as_deref().unwrap_or(&row.path);
        if seen.uri != want_path {
            wrong.push(format!(
                "backend saw path {:?} (want {want_path:?})",
                seen.uri
            ));
        }
        if seen.method != row.method {
            wrong.push(format!(
                "backend saw method {} (want {})",
                seen.method, row.method
            ));
        }
        let want_host = row.saw_host.as_deref().unwrap_or(host);
        let have_host = seen.header("host").unwrap_or_default();
        if have_host != want_host {
            wrong.push(format!(
                "backend saw host {have_host:?} (want {want_host:?})"
            ));
        }
        for (k, v) in &row.saw_headers {
            let have = seen.header(k);
            if have.as_deref() != Some(v.as_str()) {
                wrong.push(format!("backend saw {k}: {have:?} (want {v:?})"));
            }
        }
        for k in &row.saw_absent {
            if let Some(have) = seen.header(k) {
                wrong.push(format!("backend saw {k}: {have:?} (want none)"));
            }
        }
    }

    /// Waits (up to [`ROW_WITHIN`]) for the mirrored copy of request `id` at `ns/name`.
    async fn wait_mirror(
        &self,
        ns: &str,
        name: &str,
        id: &str,
        row: &Row,
        wrong: &mut Vec<String>,
    ) {
        let backend = self.backend(ns, name);
        let deadline = Instant::now() + ROW_WITHIN;
        loop {
            if let Some(seen) = backend.seen_with(TEST_ID, id).first() {
                let want_path = row.saw_path.as_deref().unwrap_or(&row.path);
                if seen.uri != want_path {
                    wrong.push(format!(
                        "mirror {ns}/{name} saw path {:?} (want {want_path:?})",
                        seen.uri
                    ));
                }
                return;
            }
            if Instant::now() > deadline {
                wrong.push(format!(
                    "no mirrored copy reached {ns}/{name} within {ROW_WITHIN:?}"
                ));
                return;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// Sends `row` `n` times and counts the answering backends (`namespace/name`, or
    /// `status N` for answers from no backend).
    ///
    /// # Panics
    /// On a transport failure.
    pub async fn distribution(&self, row: &Row, n: usize) -> BTreeMap<String, usize> {
        let host = self.row_host(row);
        let addr = self.row_addr(row);
        let mut seen = BTreeMap::new();
        for _ in 0..n {
            let got = send(addr, &row.method, &host, &row.path, &row.headers)
                .await
                .unwrap_or_else(|e| panic!("{}: {e}", row.label()));
            let key = got
                .backend()
                .map_or_else(|| format!("status {}", got.status), ToOwned::to_owned);
            *seen.entry(key).or_insert(0) += 1;
        }
        seen
    }
}

/// Checks `Location` against `want`, defaults filled from the request.
fn check_location(want: &Location, host: &str, path: &str, got: &Got, wrong: &mut Vec<String>) {
    let Some(location) = got.header("location") else {
        wrong.push("no Location header".into());
        return;
    };
    let Some((scheme, rest)) = location.split_once("://") else {
        wrong.push(format!("Location {location:?} is not absolute"));
        return;
    };
    let (authority, have_path) = rest.find('/').map_or((rest, "/"), |i| rest.split_at(i));
    let have_path = have_path.split('?').next().unwrap_or("");
    let (have_host, have_port) = match authority.rsplit_once(':') {
        Some((h, p)) if !h.ends_with(']') || authority.starts_with('[') => (h, p),
        _ => (authority, ""),
    };
    let req_path = path.split('?').next().unwrap_or("");
    let want_scheme = want.scheme.as_deref().unwrap_or("http");
    let default_port = if scheme == "https" { "443" } else { "80" };
    let want_port = match want.port.as_deref() {
        Some(p) => p,
        // No port, or the scheme's own, is right.
        None if have_port == default_port => default_port,
        None => "",
    };
    let checks = [
        ("scheme", scheme, want_scheme),
        ("host", have_host, want.host.as_deref().unwrap_or(host)),
        ("port", have_port, want_port),
        ("path", have_path, want.path.as_deref().unwrap_or(req_path)),
    ];
    for (what, have, want) in checks {
        if have != want {
            wrong.push(format!(
                "Location {location:?}: {what} {have:?} (want {want:?})"
            ));
        }
    }
}
