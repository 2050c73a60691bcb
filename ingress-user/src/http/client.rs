//! The upstream HTTP/1.1 client. The task serving the client connection writes the request
//! and reads the response itself — no connection task and no channel between tasks, so a
//! proxied request costs two socket wake-ups, like nginx's event loop — and the response
//! body is read from the upstream socket as the server writes it out ([`ResponseBody`]).
//!
//! Connections are kept per endpoint in a [`Pool`] owned by one router worker, which hands
//! out only connections that are provably clean (see [`pool`]). A reused connection the
//! upstream closes just as the request goes out is detected when it fails before any
//! response byte; an idempotent request without a body is then sent again on a new
//! connection (what browsers do).
//!
//! The response timeout starts once the request is fully written: a slow upload is the
//! client body timeout's business, not the upstream's.

pub mod body;
pub mod chunked;
pub mod codec;
pub mod pool;
pub mod stream;

use std::{io, net::SocketAddr, sync::Arc, time::Duration};

use bytes::BytesMut;
use futures::FutureExt as _;
use http_body_util::BodyExt as _;
use hyper::{HeaderMap, Method, Response, StatusCode, Version, body::Body as _};
use rustls_pki_types::ServerName;
use tokio::{io::AsyncWriteExt as _, net::TcpStream};
use tracing::debug;

pub use self::{
    body::{BodyError, ResponseBody},
    codec::{Framing, HeadError, RequestFraming},
    pool::{Conn, Discards, Pool},
    stream::Stream,
};
use super::body::{Body, BoxError};
use crate::snapshot::{ServiceRef, upstream_tls::UpstreamTls};

/// Coalescing limit for the request head and small body frames (one write).
const WRITE_COALESCE: usize = 16 * 1024;
/// How long an upstream whose connection failed while the request body was being written
/// may take to deliver the answer it sent first (see `Client::early_answer`).
const EARLY_ANSWER_WAIT: Duration = Duration::from_secs(1);

/// The request line and headers to send (already rewritten by the router).
#[derive(Clone, Copy, Debug)]
pub struct RequestHead<'a> {
    /// The method.
    pub method: &'a Method,
    /// The origin-form target: path and query, byte-exact as the client sent them.
    pub target: &'a str,
    /// The headers, `Host` included.
    pub headers: &'a HeaderMap,
    /// Header lines the proxy adds after `headers` (`X-Forwarded-*` and the like),
    /// already encoded.
    pub extra: &'a [u8],
    /// This request's timeouts (a route's `proxy-*-timeout` annotations); `None`: the
    /// client's.
    pub timeouts: Option<Timeouts>,
    /// TLS to the upstream (`backend-protocol: HTTPS`); `None`: cleartext.
    pub tls: Option<TlsTarget<'a>>,
}

/// The TLS client of a request and the Service it goes to (whose DNS name is verified
/// when `proxy-ssl-name` gives none).
#[derive(Clone, Copy, Debug)]
pub struct TlsTarget<'a> {
    /// The client config, made when the Snapshot was.
    pub tls: &'a UpstreamTls,
    /// The Service.
    pub service: &'a ServiceRef,
}

impl TlsTarget<'_> {
    /// The name verified, and sent as SNI when `proxy-ssl-server-name` is on:
    /// `proxy-ssl-name`, else `<service>.<namespace>.svc`.
    pub fn server_name(&self) -> io::Result<ServerName<'static>> {
        let name = self
            .tls
            .name
            .clone()
            .unwrap_or_else(|| format!("{}.{}.svc", self.service.name, self.service.namespace));
        ServerName::try_from(name).map_err(|e| io::Error::new(io::ErrorKind::InvalidInput, e))
    }

    /// Runs the TLS handshake over `tcp`.
    pub async fn handshake(
        &self,
        tcp: TcpStream,
    ) -> io::Result<tokio_rustls::client::TlsStream<TcpStream>> {
        let name = self.server_name()?;
        tokio_rustls::TlsConnector::from(Arc::clone(&self.tls.config))
            .connect(name, tcp)
            .await
    }
}

/// How long one exchange may wait on the upstream.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Timeouts {
    /// Opening the TCP connection.
    pub connect: Duration,
    /// The response head once the request is sent, and each silence within the
    /// response body.
    pub read: Duration,
    /// Each blocked write of the request body.
    pub send: Duration,
}

/// What the upstream answered.
#[derive(Debug)]
pub enum Exchange {
    /// A final response; its body streams from the upstream connection.
    Response(Response<Option<ResponseBody>>),
    /// `101 Switching Protocols`: the head, and the connection to tunnel (its buffer holds
    /// bytes the upstream already sent past the head).
    Upgrade(Response<()>, Conn),
}

/// Why an exchange failed.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The TCP connection could not be opened (refused, unreachable, timed out).
    #[error("connecting failed: {0}")]
    Connect(#[source] io::Error),
    /// The TLS handshake with the upstream failed (certificate refused, no common
    /// version, client certificate refused, ...).
    #[error("TLS handshake with the upstream failed: {0}")]
    Handshake(#[source] io::Error),
    /// Writing the request failed.
    #[error("writing the request failed: {0}")]
    Write(#[source] io::Error),
    /// Reading the response head failed.
    #[error("reading the response failed: {0}")]
    Read(#[source] io::Error),
    /// The upstream closed the connection before a complete response head.
    #[error("upstream closed the connection before a complete response head")]
    Closed,
    /// The response head is unusable.
    #[error(transparent)]
    Head(#[from] HeadError),
    /// No response head within the response timeout of the request being sent, or a
    /// request write blocked that long.
    #[error("upstream sent no response within {0:?}")]
    Timeout(Duration),
    /// The client's request body failed (client gone, or over `--max-body-bytes`).
    #[error("request body: {0}")]
    Body(#[source] BoxError),
}

/// A failed send: the error, and the request body if no byte of it was read (so the
/// request can go to another endpoint).
#[derive(Debug)]
pub struct Failure {
    /// What went wrong.
    pub error: Error,
    /// The untouched request body, after a failed connect.
    pub body: Option<Body>,
}

/// One worker's upstream client.
#[derive(Debug)]
pub struct Client {
    pool: Arc<Pool>,
    defaults: Timeouts,
}

impl Client {
    /// A client that gives up connecting after `connect_timeout`, waits `read_timeout`
    /// for a response head once the request is sent (and cuts a response body silent
    /// that long), and pools idle connections for `idle_timeout`, counting the unclean
    /// ones it closes in `discards`.
    pub fn new(
        connect_timeout: Duration,
        read_timeout: Duration,
        idle_timeout: Duration,
        discards: Discards,
    ) -> Self {
        Self {
            pool: Arc::new(Pool::new(idle_timeout, discards)),
            defaults: Timeouts {
                connect: connect_timeout,
                read: read_timeout,
                send: read_timeout,
            },
        }
    }

    /// The idle connections.
    pub fn pool(&self) -> &Arc<Pool> {
        &self.pool
    }

    /// Sends a request to `addr` and reads the response head.
    pub async fn send(
        &self,
        addr: SocketAddr,
        req: RequestHead<'_>,
        body: Body,
    ) -> Result<Exchange, Failure> {
        let framing = if body.is_end_stream() {
            RequestFraming::Empty
        } else {
            match body.size_hint().exact() {
                Some(0) => RequestFraming::Empty,
                Some(n) => RequestFraming::Length(n),
                None => RequestFraming::Chunked,
            }
        };
        let mut head = Vec::new();
        codec::encode_request(
            req.method,
            req.target,
            req.headers,
            req.extra,
            framing,
            &mut head,
        );
        let replayable = framing == RequestFraming::Empty && req.method.is_idempotent();
        let t = req.timeouts.unwrap_or(self.defaults);

        let tls_id = req.tls.map_or(0, |t| t.tls.id);
        let reused = self.pool.checkout(addr, tls_id, !replayable);
        let fresh = reused.is_none();
        let conn = match reused {
            Some(conn) => conn,
            // Boxed here and below: connecting, resending and writing a body are the
            // uncommon paths, and inline they would make every request's future larger.
            None => match Box::pin(self.connect(addr, t.connect, req.tls)).await {
                Ok(conn) => conn,
                Err(error) => {
                    return Err(Failure {
                        error,
                        body: Some(body),
                    });
                }
            },
        };
        let body = (framing != RequestFraming::Empty).then_some(body);
        // In a block, so the first result is not kept in the future during a resend.
        {
            match self
                .exchange(conn, &head, framing, body, req.method, t)
                .await
            {
                Err(Sent::Nothing(_)) if !fresh && replayable => {}
                other => return other.map_err(Sent::into_failure),
            }
        }
        // The reused connection had been closed: send again on a new one. The body was
        // empty, so an empty one stands in for it if this endpoint now refuses and the
        // request moves to another.
        let conn = Box::pin(self.connect(addr, t.connect, req.tls))
            .await
            .map_err(|error| Failure {
                error,
                body: Some(super::body::empty()),
            })?;
        Box::pin(self.exchange(conn, &head, framing, None, req.method, t))
            .await
            .map_err(Sent::into_failure)
    }

    /// Opens a connection, and with `tls` runs the handshake; both within `timeout`.
    async fn connect(
        &self,
        addr: SocketAddr,
        timeout: Duration,
        tls: Option<TlsTarget<'_>>,
    ) -> Result<Conn, Error> {
        let timed_out = || io::Error::new(io::ErrorKind::TimedOut, "connect timed out");
        let deadline = tokio::time::Instant::now() + timeout;
        let tcp = tokio::time::timeout_at(deadline, TcpStream::connect(addr))
            .await
            .map_err(|_| Error::Connect(timed_out()))?
            .map_err(Error::Connect)?;
        tcp.set_nodelay(true).map_err(Error::Connect)?;
        let stream = match tls {
            None => Stream::Plain(tcp),
            Some(target) => {
                let tls = tokio::time::timeout_at(deadline, target.handshake(tcp))
                    .await
                    .map_err(|_| Error::Handshake(timed_out()))?
                    .map_err(Error::Handshake)?;
                Stream::Tls(Box::new(tls))
            }
        };
        Ok(Conn {
            stream,
            buf: BytesMut::with_capacity(body::READ_CHUNK),
            addr,
            tls: tls.map_or(0, |t| t.tls.id),
        })
    }

    /// Writes the request on `conn` and reads until a final response head.
    async fn exchange(
        &self,
        mut conn: Conn,
        head: &[u8],
        framing: RequestFraming,
        body: Option<Body>,
        method: &Method,
        t: Timeouts,
    ) -> Result<Exchange, Sent> {
        match body {
            // Flushed: TLS may hold back what the socket did not take at once.
            None => async {
                conn.stream.write_all(head).await?;
                conn.stream.flush().await
            }
            .await
            .map_err(|e| Sent::Nothing(Error::Write(e)))?,
            Some(body) => {
                let written =
                    Box::pin(write_body(&mut conn.stream, head, body, framing, t.send)).await;
                if let Err(sent) = written {
                    return Box::pin(self.early_answer(conn, method, sent, t.read)).await;
                }
            }
        }
        match tokio::time::timeout(t.read, read_head(&mut conn, method)).await {
            Ok(Ok(head)) => Ok(self.respond(head, conn, t.read)),
            Ok(Err(sent)) => Err(sent),
            Err(_elapsed) => Err(Sent::Some(Error::Timeout(t.read))),
        }
    }

    /// Writing the request body failed. An upstream that refuses a body (413, 401, ...)
    /// often answers at once and closes without reading the rest, so the write fails with
    /// the answer already on its way: pass that answer on rather than the write error.
    /// The connection is dead, so reading ends at once (EOF or reset) unless an answer is
    /// arriving; [`EARLY_ANSWER_WAIT`] bounds it anyway. The connection is never reused.
    async fn early_answer(
        &self,
        mut conn: Conn,
        method: &Method,
        sent: Sent,
        read_timeout: Duration,
    ) -> Result<Exchange, Sent> {
        if !matches!(sent, Sent::Some(Error::Write(_))) {
            return Err(sent);
        }
        let answer = tokio::time::timeout(EARLY_ANSWER_WAIT, async {
            loop {
                match codec::parse_response(&mut conn.buf, method) {
                    Ok(Some(head)) if !head.status.is_informational() => return Some(head),
                    Ok(Some(_) | None) => {}
                    Err(_) => return None,
                }
                conn.buf.reserve(body::READ_CHUNK);
                let read = tokio::io::AsyncReadExt::read_buf(&mut conn.stream, &mut conn.buf);
                if !matches!(read.await, Ok(n) if n > 0) {
                    return None;
                }
            }
        });
        match answer.await {
            Ok(Some(mut head)) => {
                debug!(addr = %conn.addr, status = %head.status, "upstream answered before reading the whole request body");
                head.keep_alive = false;
                Ok(self.respond(head, conn, read_timeout))
            }
            _ => Err(sent),
        }
    }

    fn respond(&self, head: codec::Head, conn: Conn, read_timeout: Duration) -> Exchange {
        let mut resp = Response::new(());
        *resp.status_mut() = head.status;
        *resp.version_mut() = Version::HTTP_11;
        *resp.headers_mut() = head.headers;
        if head.status == StatusCode::SWITCHING_PROTOCOLS {
            return Exchange::Upgrade(resp, conn);
        }
        let body = if head.framing == Framing::Empty {
            if head.keep_alive {
                self.pool.checkin(conn);
            }
            None
        } else {
            Some(ResponseBody::new(
                conn,
                head.framing,
                head.keep_alive,
                Arc::clone(&self.pool),
                read_timeout,
            ))
        };
        Exchange::Response(resp.map(|()| body))
    }
}

/// How far a failed exchange got: whether the upstream may have seen the request.
enum Sent {
    /// No response byte came back and the request may not have been processed: a reused
    /// connection the upstream had closed.
    Nothing(Error),
    /// The upstream answered something, or the request body was consumed.
    Some(Error),
}

impl Sent {
    fn into_failure(self) -> Failure {
        let (Self::Nothing(error) | Self::Some(error)) = self;
        Failure { error, body: None }
    }
}

/// Reads until a final response head (or `101`) on `conn`, skipping interim responses.
async fn read_head(conn: &mut Conn, method: &Method) -> Result<codec::Head, Sent> {
    // Reuse the front of the buffer once the previous response's bytes are gone, so
    // each exchange reads into the same warm cache lines instead of walking through
    // the buffer (with hundreds of connections, that walk evicts everything else).
    if conn.buf.is_empty() {
        let _ = conn.buf.try_reclaim(body::READ_CHUNK);
    }
    let mut received = false;
    loop {
        if !conn.buf.is_empty() {
            received = true;
            match codec::parse_response(&mut conn.buf, method) {
                Ok(Some(head)) => {
                    if head.status.is_informational()
                        && head.status != StatusCode::SWITCHING_PROTOCOLS
                    {
                        continue;
                    }
                    return Ok(head);
                }
                Ok(None) => {}
                Err(e) => return Err(Sent::Some(e.into())),
            }
        }
        if conn.buf.capacity() - conn.buf.len() < body::READ_CHUNK / 4 {
            conn.buf.reserve(body::READ_CHUNK);
        }
        let read = tokio::io::AsyncReadExt::read_buf(&mut conn.stream, &mut conn.buf).await;
        match read {
            Ok(0) if received => return Err(Sent::Some(Error::Closed)),
            Ok(0) => return Err(Sent::Nothing(Error::Closed)),
            Ok(_) => {}
            Err(e) if received => return Err(Sent::Some(Error::Read(e))),
            Err(e) => return Err(Sent::Nothing(Error::Read(e))),
        }
    }
}

/// Writes the head and the body, coalescing small frames while more are ready, and
/// writing whatever is pending before waiting for the client. A write blocked for
/// `timeout` (an upstream not reading) fails the request; a client that sends nothing is
/// the body's own timeout.
async fn write_body(
    stream: &mut Stream,
    head: &[u8],
    mut body: Body,
    framing: RequestFraming,
    timeout: Duration,
) -> Result<(), Sent> {
    let chunked = framing == RequestFraming::Chunked;
    let mut out = Vec::with_capacity(head.len() + 1024);
    out.extend_from_slice(head);
    let mut stream = Bounded { stream, timeout };
    let write = Sent::Some;
    loop {
        let next = match body.frame().now_or_never() {
            Some(next) => next,
            None => {
                if !out.is_empty() {
                    stream.write_all(&out).await.map_err(write)?;
                    out.clear();
                }
                body.frame().await
            }
        };
        let frame = match next {
            None => break,
            Some(Ok(frame)) => frame,
            Some(Err(e)) => return Err(Sent::Some(Error::Body(e))),
        };
        let Ok(data) = frame.into_data() else {
            continue; // trailers are not forwarded
        };
        if data.is_empty() {
            continue;
        }
        if chunked {
            codec::chunk_size_line(data.len(), &mut out);
        }
        if out.len() + data.len() <= WRITE_COALESCE {
            out.extend_from_slice(&data);
        } else {
            stream.write_all(&out).await.map_err(write)?;
            out.clear();
            stream.write_all(&data).await.map_err(write)?;
        }
        if chunked {
            out.extend_from_slice(b"\r\n");
        }
        if out.len() >= WRITE_COALESCE {
            stream.write_all(&out).await.map_err(write)?;
            out.clear();
        }
    }
    if chunked {
        out.extend_from_slice(codec::LAST_CHUNK);
    }
    if !out.is_empty() {
        stream.write_all(&out).await.map_err(write)?;
    }
    Ok(())
}

/// The upstream socket with each write bounded in time.
struct Bounded<'a> {
    stream: &'a mut Stream,
    timeout: Duration,
}

impl Bounded<'_> {
    /// Writes and flushes `bytes` (a no-op on TCP; TLS may hold back what the socket did
    /// not take at once).
    async fn write_all(&mut self, bytes: &[u8]) -> Result<(), Error> {
        let written = async {
            self.stream.write_all(bytes).await?;
            self.stream.flush().await
        };
        match tokio::time::timeout(self.timeout, written).await {
            Ok(written) => written.map_err(Error::Write),
            Err(_elapsed) => Err(Error::Timeout(self.timeout)),
        }
    }
}
