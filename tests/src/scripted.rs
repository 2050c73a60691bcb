//! Raw HTTP/1.1 peers that write exactly what a test scripts: a backend on 127.0.0.1 port
//! 0 that answers each request with scripted bytes (possibly late, in several writes, or
//! more than one response), and a raw client that reads responses framed per RFC 9112.
//!
//! Every normal answer names the request it answers (`x-answer-to: PATH` and the body), so
//! a test can tell whose response a client got — the point of the desync suites.

use std::{
    future::Future,
    io,
    net::SocketAddr,
    sync::{
        Arc, Mutex, PoisonError,
        atomic::{AtomicUsize, Ordering},
    },
    time::Duration,
};

use tokio::{
    io::{AsyncReadExt as _, AsyncWriteExt as _},
    net::{TcpListener, TcpStream},
    task::{JoinHandle, JoinSet},
};

/// How long any single await may take before the test fails: a hang guard, never a
/// timing assertion.
pub const GUARD: Duration = Duration::from_secs(10);

/// Awaits `fut`, failing the test with `what` if it does not finish within `limit`.
pub async fn within<T>(what: &str, limit: Duration, fut: impl Future<Output = T>) -> T {
    match tokio::time::timeout(limit, fut).await {
        Ok(v) => v,
        Err(_) => panic!("{what}: nothing within {limit:?}"),
    }
}

/// A parsed HTTP/1 message head: the start line and the header lines in wire order, names
/// as sent (not lowercased).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Head {
    /// Request line or status line.
    pub start: String,
    /// `(name, value)` per header line, values trimmed.
    pub headers: Vec<(String, String)>,
}

impl Head {
    /// Parses a head (without its final empty line).
    pub fn parse(raw: &[u8]) -> Self {
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
    pub fn get_all(&self, name: &str) -> Vec<&str> {
        self.headers
            .iter()
            .filter(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
            .collect()
    }

    /// The first value of header `name`.
    pub fn get(&self, name: &str) -> Option<&str> {
        self.get_all(name).into_iter().next()
    }

    /// Whether a comma-separated header `name` lists `token`.
    pub fn lists(&self, name: &str, token: &str) -> bool {
        self.get_all(name)
            .iter()
            .flat_map(|v| v.split(','))
            .any(|t| t.trim().eq_ignore_ascii_case(token))
    }

    /// The method of a request head.
    pub fn method(&self) -> &str {
        self.start.split(' ').next().unwrap_or_default()
    }

    /// The request target of a request head.
    pub fn target(&self) -> &str {
        self.start.split(' ').nth(1).unwrap_or_default()
    }

    /// The status code of a response head (0 if the start line is not a status line).
    pub fn status(&self) -> u16 {
        self.start
            .split(' ')
            .nth(1)
            .and_then(|s| s.parse().ok())
            .unwrap_or(0)
    }

    /// `Content-Length`, if present; an unparsable one is an error.
    pub fn content_length(&self) -> io::Result<Option<usize>> {
        self.get("content-length")
            .map(|v| {
                v.parse()
                    .map_err(|_| invalid(format!("bad content-length {v:?}")))
            })
            .transpose()
    }

    /// Whether the message is chunked.
    pub fn chunked(&self) -> bool {
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
#[derive(Debug)]
pub struct Wire {
    stream: TcpStream,
    buf: Vec<u8>,
}

impl Wire {
    /// Wraps an open stream.
    pub fn new(stream: TcpStream) -> Self {
        let _ = stream.set_nodelay(true);
        Self {
            stream,
            buf: Vec::new(),
        }
    }

    /// The stream and the bytes already read from it but not consumed (e.g. to relay an
    /// upgraded connection).
    pub fn into_parts(self) -> (TcpStream, Vec<u8>) {
        (self.stream, self.buf)
    }

    /// Connects to `addr`, failing the test if that does not work within [`GUARD`].
    pub async fn connect(addr: SocketAddr) -> Self {
        let stream = within("connect", GUARD, TcpStream::connect(addr))
            .await
            .unwrap_or_else(|e| panic!("connect to {addr}: {e}"));
        Self::new(stream)
    }

    /// Reads more bytes into the buffer; `false` on EOF.
    async fn fill(&mut self) -> io::Result<bool> {
        let mut chunk = [0u8; 16 * 1024];
        let n = self.stream.read(&mut chunk).await?;
        self.buf.extend_from_slice(&chunk[..n]);
        Ok(n > 0)
    }

    /// Writes `bytes` in one `write_all`.
    pub async fn write(&mut self, bytes: &[u8]) -> io::Result<()> {
        self.stream.write_all(bytes).await?;
        self.stream.flush().await
    }

    /// Writes `bytes`, failing the test on error.
    pub async fn send(&mut self, bytes: &[u8]) {
        within("write", GUARD, self.write(bytes))
            .await
            .expect("write to the peer");
    }

    /// The next message head; `None` if the peer closed before sending any byte of it.
    pub async fn read_head(&mut self) -> io::Result<Option<Head>> {
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

    /// The next `n` bytes, whatever they are (e.g. after a `101`); EOF before them is `Err`.
    pub async fn take(&mut self, n: usize) -> io::Result<Vec<u8>> {
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
    /// then the trailer section. Returns the decoded bytes.
    async fn chunked(&mut self) -> io::Result<Vec<u8>> {
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
        while !self.line().await?.is_empty() {}
        Ok(body)
    }

    /// Everything until the peer closes.
    pub async fn read_to_eof(&mut self) -> io::Result<Vec<u8>> {
        while self.fill().await? {}
        Ok(std::mem::take(&mut self.buf))
    }

    /// A request body as framed by `head` (chunked, content-length, or none).
    pub async fn request_body(&mut self, head: &Head) -> io::Result<Vec<u8>> {
        if head.chunked() {
            self.chunked().await
        } else {
            self.take(head.content_length()?.unwrap_or(0)).await
        }
    }

    /// A response to a request with `method`: head and body, framed per RFC 9112 §6.3.
    async fn response_to(&mut self, method: &str) -> io::Result<RawResponse> {
        let head = self
            .read_head()
            .await?
            .ok_or_else(|| eof("closed before a response"))?;
        let status = head.status();
        if status == 0 {
            return Err(invalid(format!("not a status line: {:?}", head.start)));
        }
        let body = if method == "HEAD" || status < 200 || status == 204 || status == 304 {
            Vec::new()
        } else if head.chunked() {
            self.chunked().await?
        } else if let Some(n) = head.content_length()? {
            self.take(n).await?
        } else {
            self.read_to_eof().await?
        };
        Ok(RawResponse { head, body })
    }

    /// The final response to a request with `method`, skipping interim 1xx responses.
    pub async fn try_response(&mut self, method: &str) -> io::Result<RawResponse> {
        loop {
            let resp = self.response_to(method).await?;
            if resp.status() >= 200 {
                return Ok(resp);
            }
        }
    }

    /// The final response to a request with `method`, failing the test on error or if
    /// none arrives within `limit`.
    pub async fn response_within(&mut self, method: &str, limit: Duration) -> RawResponse {
        within("read response", limit, self.try_response(method))
            .await
            .unwrap_or_else(|e| panic!("reading the response to {method}: {e}"))
    }

    /// The final response to a request with `method` (see [`Self::response_within`]).
    pub async fn response(&mut self, method: &str) -> RawResponse {
        self.response_within(method, GUARD).await
    }

    /// Sends `request` (raw bytes) and reads the final response to it.
    pub async fn exchange(&mut self, request: &[u8]) -> RawResponse {
        self.send(request).await;
        self.response(&method_of(request)).await
    }

    /// Whether the peer closes the connection (EOF or reset) within `limit`, discarding
    /// whatever else it sends.
    pub async fn closed_within(&mut self, limit: Duration) -> bool {
        tokio::time::timeout(limit, async {
            loop {
                match self.fill().await {
                    Ok(true) => self.buf.clear(),
                    Ok(false) | Err(_) => return,
                }
            }
        })
        .await
        .is_ok()
    }
}

/// The method of a raw request.
pub fn method_of(request: &[u8]) -> String {
    String::from_utf8_lossy(request)
        .split(' ')
        .next()
        .unwrap_or_default()
        .to_owned()
}

/// Sends `request` on a fresh connection to `addr` and reads the final response.
pub async fn exchange(addr: SocketAddr, request: &[u8]) -> RawResponse {
    Wire::connect(addr).await.exchange(request).await
}

/// A response as a raw client read it.
#[derive(Clone, Debug)]
pub struct RawResponse {
    /// Status line and headers.
    pub head: Head,
    /// The body, de-chunked.
    pub body: Vec<u8>,
}

impl RawResponse {
    /// The status code.
    pub fn status(&self) -> u16 {
        self.head.status()
    }

    /// The first value of header `name`.
    pub fn header(&self, name: &str) -> Option<&str> {
        self.head.get(name)
    }

    /// Which request the backend says this answers (`x-answer-to`).
    pub fn answer_to(&self) -> Option<&str> {
        self.header("x-answer-to")
    }

    /// The body as text.
    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }
}

/// A request a [`ScriptedBackend`] received.
#[derive(Clone, Debug)]
pub struct Request {
    /// The name of the backend that received it.
    pub backend: Arc<str>,
    /// Which accepted connection it came on (1 for the first).
    pub conn: usize,
    /// The head as sent.
    pub head: Head,
    /// The body as framed by the head; empty when the backend ignored it.
    pub body: Vec<u8>,
}

impl Request {
    /// The request target.
    pub fn target(&self) -> &str {
        self.head.target()
    }

    /// The method.
    pub fn method(&self) -> &str {
        self.head.method()
    }
}

/// The body of the normal answer from `backend` to `target`.
pub fn answer_body(backend: &str, target: &str) -> String {
    format!("answer to {target} from {backend}\n")
}

/// The normal answer to `req`: `200`, naming the request it answers in `x-answer-to` and
/// in the body, with `x-backend`, `x-conn` (the connection it came on) and
/// `x-body-bytes` (the length of the request body the backend read). For `HEAD`, the
/// same head and no body.
pub fn answer_bytes(req: &Request) -> Vec<u8> {
    let body = answer_body(&req.backend, req.target());
    let mut out = format!(
        "HTTP/1.1 200 OK\r\nx-answer-to: {}\r\nx-backend: {}\r\nx-conn: {}\r\nx-body-bytes: {}\r\ncontent-type: text/plain\r\ncontent-length: {}\r\n\r\n",
        req.target(),
        req.backend,
        req.conn,
        req.body.len(),
        body.len()
    )
    .into_bytes();
    if req.method() != "HEAD" {
        out.extend_from_slice(body.as_bytes());
    }
    out
}

/// What a [`ScriptedBackend`] does for one request: writes, each after a pause, then
/// optionally closes the connection. The next request on the connection is read only after
/// the last write, so late writes always land before the next answer.
#[derive(Clone, Debug, Default)]
pub struct Reply {
    /// `(pause before it, bytes)` per write, in order.
    pub writes: Vec<(Duration, Vec<u8>)>,
    /// Close the connection after the writes.
    pub close: bool,
}

impl Reply {
    /// The normal answer to `req` ([`answer_bytes`]) in one write.
    pub fn answer(req: &Request) -> Self {
        Self::bytes(answer_bytes(req))
    }

    /// `bytes` in one immediate write.
    pub fn bytes(bytes: impl Into<Vec<u8>>) -> Self {
        Self {
            writes: vec![(Duration::ZERO, bytes.into())],
            close: false,
        }
    }

    /// Another write, `after` the previous one.
    #[must_use]
    pub fn then(mut self, after: Duration, bytes: impl Into<Vec<u8>>) -> Self {
        self.writes.push((after, bytes.into()));
        self
    }

    /// Close the connection after the writes.
    #[must_use]
    pub fn and_close(mut self) -> Self {
        self.close = true;
        self
    }
}

/// Which request bodies a [`ScriptedBackend`] reads.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Bodies {
    /// Every body, as framed by its head.
    Framed,
    /// None for `GET` and `HEAD` (as some servers do): whatever follows their head is read
    /// as the next request. The others are read as framed.
    IgnoredOnGetAndHead,
}

type Script = dyn Fn(&Request) -> Reply + Send + Sync;

/// A raw HTTP/1.1 backend on 127.0.0.1 port 0 that answers each request with what its
/// script returns, serving each connection's requests in order. It counts accepted
/// connections and records every request head (as soon as it is read), every request
/// (once its body was read) and how each connection that failed failed (e.g. bytes that
/// are no valid chunked framing inside a chunked body).
pub struct ScriptedBackend {
    /// Where it listens.
    pub addr: SocketAddr,
    /// Its name (in `x-backend` of normal answers).
    pub name: String,
    accepted: Arc<AtomicUsize>,
    heads: Arc<Mutex<Vec<(usize, Head)>>>,
    requests: Arc<Mutex<Vec<Request>>>,
    errors: Arc<Mutex<Vec<(usize, io::Error)>>>,
    task: JoinHandle<()>,
}

impl Drop for ScriptedBackend {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl ScriptedBackend {
    /// A backend that gives every request the normal answer ([`answer_bytes`]).
    pub async fn answering(name: &str) -> Self {
        Self::start(name, Bodies::Framed, Reply::answer).await
    }

    /// A backend reading bodies per `bodies` and answering per `script`.
    pub async fn start(
        name: &str,
        bodies: Bodies,
        script: impl Fn(&Request) -> Reply + Send + Sync + 'static,
    ) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind scripted backend");
        let addr = listener.local_addr().expect("backend addr");
        let accepted = Arc::new(AtomicUsize::new(0));
        let heads: Arc<Mutex<Vec<(usize, Head)>>> = Arc::default();
        let requests: Arc<Mutex<Vec<Request>>> = Arc::default();
        let errors: Arc<Mutex<Vec<(usize, io::Error)>>> = Arc::default();
        let script: Arc<Script> = Arc::new(script);
        let backend: Arc<str> = Arc::from(name);
        let task = {
            let (accepted, heads, requests, errors) = (
                Arc::clone(&accepted),
                Arc::clone(&heads),
                Arc::clone(&requests),
                Arc::clone(&errors),
            );
            tokio::spawn(async move {
                // Connection tasks die with the backend (the set is dropped on abort).
                let mut conns = JoinSet::new();
                while let Ok((stream, _)) = listener.accept().await {
                    let conn = accepted.fetch_add(1, Ordering::SeqCst) + 1;
                    let served = serve_connection(
                        Wire::new(stream),
                        Served {
                            conn,
                            bodies,
                            backend: Arc::clone(&backend),
                            script: Arc::clone(&script),
                            heads: Arc::clone(&heads),
                            requests: Arc::clone(&requests),
                        },
                    );
                    let errors = Arc::clone(&errors);
                    conns.spawn(async move {
                        if let Err(e) = served.await {
                            lock(&errors).push((conn, e));
                        }
                    });
                    while conns.try_join_next().is_some() {}
                }
            })
        };
        Self {
            addr,
            name: name.to_owned(),
            accepted,
            heads,
            requests,
            errors,
            task,
        }
    }

    /// Connections accepted so far.
    pub fn accepted(&self) -> usize {
        self.accepted.load(Ordering::SeqCst)
    }

    /// Requests whose head (and body, if read) arrived, in order.
    pub fn requests(&self) -> Vec<Request> {
        lock(&self.requests).clone()
    }

    /// Every request head read, with its connection, including requests whose body never
    /// arrived in full.
    pub fn heads(&self) -> Vec<(usize, Head)> {
        lock(&self.heads).clone()
    }

    /// How connections failed, as `(connection, kind, message)`: `UnexpectedEof` when the
    /// peer closed inside a message, `InvalidData` when it sent bytes that do not frame.
    pub fn errors(&self) -> Vec<(usize, io::ErrorKind, String)> {
        lock(&self.errors)
            .iter()
            .map(|(c, e)| (*c, e.kind(), e.to_string()))
            .collect()
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

struct Served {
    conn: usize,
    bodies: Bodies,
    backend: Arc<str>,
    script: Arc<Script>,
    heads: Arc<Mutex<Vec<(usize, Head)>>>,
    requests: Arc<Mutex<Vec<Request>>>,
}

async fn serve_connection(mut wire: Wire, s: Served) -> io::Result<()> {
    while let Some(head) = wire.read_head().await? {
        lock(&s.heads).push((s.conn, head.clone()));
        let ignored =
            s.bodies == Bodies::IgnoredOnGetAndHead && matches!(head.method(), "GET" | "HEAD");
        let body = if ignored {
            Vec::new()
        } else {
            if head.lists("expect", "100-continue") {
                wire.write(b"HTTP/1.1 100 Continue\r\n\r\n").await?;
            }
            wire.request_body(&head).await?
        };
        let req = Request {
            backend: Arc::clone(&s.backend),
            conn: s.conn,
            head,
            body,
        };
        lock(&s.requests).push(req.clone());
        let reply = (s.script)(&req);
        for (after, bytes) in &reply.writes {
            if !after.is_zero() {
                tokio::time::sleep(*after).await;
            }
            wire.write(bytes).await?;
        }
        if reply.close {
            break;
        }
    }
    Ok(())
}
