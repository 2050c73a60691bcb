//! HTTP/2 over cleartext (h2c, prior knowledge) to upstreams whose Service port asks for it
//! (`appProtocol: kubernetes.io/h2c`, `grpc`, ...; see [`Protocol`](crate::snapshot::routes::Protocol)).
//! gRPC needs this: HTTP/2 end to end, request and response trailers included.
//!
//! One multiplexed connection per endpoint per worker, made by hyper's HTTP/2 client and
//! shared by every request of that worker until it closes.
//!
//! The same over TLS (ALPN `h2`) for `backend-protocol: GRPCS`: connections are kept per
//! endpoint and TLS client, as the HTTP/1.1 pool does.

use std::{io, net::SocketAddr, sync::Mutex, time::Duration};

use hyper::{
    HeaderMap, Request, Uri, Version,
    client::conn::http2::{self, SendRequest},
    header::{self, HeaderName, HeaderValue},
    http::request::Parts,
};
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use tokio::net::TcpStream;
use tracing::debug;

use super::{
    FastMap,
    body::Body,
    client::{Error as ConnectError, TlsTarget},
};

/// A request head that cannot be expressed in HTTP/2.
#[derive(Debug, thiserror::Error)]
#[error("request not expressible in HTTP/2: {0}")]
pub struct RequestError(String);

/// The worker's h2c connections, by endpoint.
#[derive(Debug)]
pub struct H2c {
    /// By endpoint and TLS client id (0: cleartext).
    conns: Mutex<FastMap<(SocketAddr, u64), SendRequest<Body>>>,
    connect_timeout: Duration,
    keep_alive: Duration,
}

impl H2c {
    /// No connections yet; new ones time out after `connect_timeout` and are pinged every
    /// `keep_alive` while idle, so a dead peer is noticed.
    pub fn new(connect_timeout: Duration, keep_alive: Duration) -> Self {
        Self {
            conns: Mutex::new(FastMap::default()),
            connect_timeout,
            keep_alive,
        }
    }

    /// A connection to `addr` (over TLS with `tls`) ready for one more request: the shared
    /// one, or a new one if there is none or it has closed. Fails only when connecting
    /// fails, before anything of the request is sent, so the caller may try another
    /// endpoint.
    pub async fn ready(
        &self,
        addr: SocketAddr,
        tls: Option<TlsTarget<'_>>,
    ) -> Result<SendRequest<Body>, ConnectError> {
        let key = (addr, tls.map_or(0, |t| t.tls.id));
        let mut sender = self.sender(key, tls).await?;
        if sender.ready().await.is_err() {
            // Closed since it was shared: one new connection.
            self.lock().remove(&key);
            sender = self.sender(key, tls).await?;
            sender
                .ready()
                .await
                .map_err(|e| ConnectError::Connect(io::Error::other(e)))?;
        }
        Ok(sender)
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, FastMap<(SocketAddr, u64), SendRequest<Body>>> {
        self.conns
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    async fn sender(
        &self,
        key: (SocketAddr, u64),
        tls: Option<TlsTarget<'_>>,
    ) -> Result<SendRequest<Body>, ConnectError> {
        if let Some(sender) = self.lock().get(&key).filter(|s| !s.is_closed()) {
            return Ok(sender.clone());
        }
        let addr = key.0;
        let timed_out = || io::Error::new(io::ErrorKind::TimedOut, "connect timed out");
        let deadline = tokio::time::Instant::now() + self.connect_timeout;
        let stream = tokio::time::timeout_at(deadline, TcpStream::connect(addr))
            .await
            .map_err(|_| ConnectError::Connect(timed_out()))?
            .map_err(ConnectError::Connect)?;
        let _ = stream.set_nodelay(true);
        let mut builder = http2::Builder::new(TokioExecutor::new());
        builder
            .timer(TokioTimer::new())
            .keep_alive_interval(self.keep_alive)
            .keep_alive_while_idle(true);
        let failed = |e| ConnectError::Connect(io::Error::other(e));
        let sender = match tls {
            None => {
                let (sender, conn) = builder
                    .handshake(TokioIo::new(stream))
                    .await
                    .map_err(failed)?;
                tokio::spawn(async move {
                    if let Err(e) = conn.await {
                        debug!(%addr, error = %e, "h2c upstream connection ended");
                    }
                });
                sender
            }
            Some(target) => {
                let stream = tokio::time::timeout_at(deadline, target.handshake(stream))
                    .await
                    .map_err(|_| ConnectError::Handshake(timed_out()))?
                    .map_err(ConnectError::Handshake)?;
                let (sender, conn) = builder
                    .handshake(TokioIo::new(stream))
                    .await
                    .map_err(failed)?;
                tokio::spawn(async move {
                    if let Err(e) = conn.await {
                        debug!(%addr, error = %e, "h2 upstream connection ended");
                    }
                });
                sender
            }
        };
        self.lock().insert(key, sender.clone());
        Ok(sender)
    }
}

/// Headers HTTP/2 forbids (RFC 9113 §8.2.2); the hop-by-hop ones are already gone, these
/// are the rest.
const CONNECTION_SPECIFIC: [HeaderName; 5] = [
    header::CONNECTION,
    header::TRANSFER_ENCODING,
    header::UPGRADE,
    header::HOST,
    header::TE,
];

/// The HTTP/2 request for a rewritten head: `Host` becomes the authority, the proxy's
/// `extra` lines (`name: value\r\n`) become headers, and gRPC gets `TE: trailers` back
/// (the one TE value HTTP/2 allows, which gRPC servers may require).
pub fn request(
    parts: &Parts,
    extra: &[u8],
    endpoint: SocketAddr,
    body: Body,
) -> Result<Request<Body>, RequestError> {
    let authority = parts
        .headers
        .get(header::HOST)
        .and_then(|h| h.to_str().ok())
        .map_or_else(|| endpoint.to_string(), str::to_owned);
    let path = parts.uri.path_and_query().map_or("/", |pq| pq.as_str());
    let uri = Uri::try_from(format!("http://{authority}{path}"))
        .map_err(|e| RequestError(format!("target: {e}")))?;
    let mut headers = HeaderMap::with_capacity(parts.headers.len() + 8);
    for (name, value) in &parts.headers {
        if !CONNECTION_SPECIFIC.contains(name) {
            headers.append(name.clone(), value.clone());
        }
    }
    for line in extra.split(|&b| b == b'\n') {
        let line = line.strip_suffix(b"\r").unwrap_or(line);
        let Some(colon) = line.iter().position(|&b| b == b':') else {
            continue;
        };
        let name = HeaderName::from_bytes(&line[..colon])
            .map_err(|e| RequestError(format!("added header: {e}")))?;
        let value = HeaderValue::from_bytes(line[colon + 1..].trim_ascii())
            .map_err(|e| RequestError(format!("added header {name}: {e}")))?;
        headers.append(name, value);
    }
    let grpc = parts
        .headers
        .get(header::CONTENT_TYPE)
        .is_some_and(|v| v.as_bytes().starts_with(b"application/grpc"));
    if grpc {
        headers.insert(header::TE, HeaderValue::from_static("trailers"));
    }
    let mut req = Request::new(body);
    *req.method_mut() = parts.method.clone();
    *req.uri_mut() = uri;
    *req.version_mut() = Version::HTTP_2;
    *req.headers_mut() = headers;
    Ok(req)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::http::body::empty;

    #[test]
    fn requests_carry_the_authority_the_added_lines_and_no_connection_headers() {
        let (parts, ()) = Request::post("/pkg.Svc/Call?x=1")
            .header("host", "api.test:8080")
            .header("content-type", "application/grpc")
            .header("connection", "keep-alive")
            .header("transfer-encoding", "chunked")
            .header("x-keep", "1")
            .body(())
            .unwrap()
            .into_parts();
        let extra = b"x-forwarded-for: 10.0.0.1\r\nx-request-id: abc\r\n";
        let endpoint: SocketAddr = "10.1.0.5:50051".parse().unwrap();
        let req = request(&parts, extra, endpoint, empty()).unwrap();
        assert_eq!(req.uri(), "http://api.test:8080/pkg.Svc/Call?x=1");
        assert_eq!(req.version(), Version::HTTP_2);
        let h = req.headers();
        for gone in ["host", "connection", "transfer-encoding"] {
            assert!(!h.contains_key(gone), "{gone}");
        }
        assert_eq!(h["x-keep"], "1");
        assert_eq!(h["x-forwarded-for"], "10.0.0.1");
        assert_eq!(h["x-request-id"], "abc");
        assert_eq!(h["te"], "trailers", "gRPC gets TE: trailers");

        let (parts, ()) = Request::get("/").body(()).unwrap().into_parts();
        let req = request(&parts, b"", endpoint, empty()).unwrap();
        assert_eq!(req.uri(), "http://10.1.0.5:50051/", "no Host: the endpoint");
        assert!(!req.headers().contains_key("te"), "not gRPC: no TE");
    }
}
