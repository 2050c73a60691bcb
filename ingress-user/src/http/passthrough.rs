//! TLS passthrough on the accept path, before termination: when a Passthrough listener
//! or an `ssl-passthrough` host could take a connection, its ClientHello is read (at most
//! [`client_hello::MAX_READ`] bytes, within the handshake deadline) and its SNI decides
//! ([`crate::snapshot::passthrough::decide`]): pass the bytes as they are to a backend,
//! or terminate here with the bytes replayed to rustls ([`Rewind`]).
//!
//! No `--enable-ssl-passthrough` flag as in ingress-nginx, whose passthrough puts a TCP
//! proxy in front of every HTTPS connection: here a listener reads ClientHellos only
//! while the Snapshot passes some name through on it, and the reader is a few hundred
//! bytes of parsing. A ClientHello that is not one (garbage, no TLS, oversized,
//! truncated, too slow) closes the connection and counts in
//! `tls_client_hello_errors_total{reason}`; passed-through connections count in
//! `tls_passthrough_connections_total{outcome}`.

use std::{net::SocketAddr, time::Duration};

use bytes::{Bytes, BytesMut};
use tokio::{
    io::{AsyncReadExt as _, AsyncWriteExt as _},
    net::TcpStream,
};
use tracing::debug;

use super::{
    client_hello::{self, BadHello, Hello},
    metrics::{ClientHelloErrorLabels, PassthroughLabels, ServiceLabels},
    rewind::Rewind,
    router::{Conn, Router},
};
use crate::snapshot::passthrough::{Decision, PassthroughRoute};

/// Why no ClientHello could be read (the metric's `reason`, with [`BadHello::label`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum ReadError {
    Bad(BadHello),
    /// The client closed (or reset) before the ClientHello was complete.
    Truncated,
    /// [`client_hello::MAX_READ`] bytes without a complete ClientHello.
    TooLong,
    /// The deadline passed.
    Timeout,
}

impl ReadError {
    fn label(self) -> &'static str {
        match self {
            Self::Bad(b) => b.label(),
            Self::Truncated => "truncated",
            Self::TooLong => "too_long",
            Self::Timeout => "timeout",
        }
    }
}

/// Reads the ClientHello when passthrough could apply and acts on its SNI. Returns the
/// stream to terminate TLS on (with any bytes read replayed first), or `None` when the
/// connection was passed through (until both sides closed) or closed. The caller's task
/// holds the worker's drain signal meanwhile, so a draining worker waits for passed
/// connections as for HTTP ones, up to the grace period.
pub(super) async fn accept(
    mut stream: TcpStream,
    conn: Conn,
    router: &Router,
    deadline: Duration,
) -> Option<Rewind<TcpStream>> {
    if !router.wants_client_hello(conn) {
        return Some(Rewind::new(Bytes::new(), stream));
    }
    let metrics = router.metrics();
    let read = tokio::time::timeout(deadline, read_hello(&mut stream)).await;
    let (buf, hello) = match read.unwrap_or(Err(ReadError::Timeout)) {
        Ok(read) => read,
        Err(e) => {
            debug!(remote = %conn.remote, reason = e.label(), "no usable ClientHello; closing");
            metrics
                .tls_client_hello_errors
                .get_or_create(&ClientHelloErrorLabels { reason: e.label() })
                .inc();
            return None;
        }
    };
    let outcome = match router.passthrough_decision(conn, hello.sni.as_deref()) {
        Decision::Terminate => return Some(Rewind::new(buf.freeze(), stream)),
        Decision::NoRoute => {
            debug!(remote = %conn.remote, sni = ?hello.sni, "Passthrough listener has no route for the SNI; closing");
            "no_route"
        }
        Decision::Pass(route) => {
            metrics.active_connections.inc();
            let outcome = splice(stream, buf.freeze(), &route, conn, router).await;
            metrics.active_connections.dec();
            outcome
        }
    };
    metrics
        .tls_passthrough_connections
        .get_or_create(&PassthroughLabels { outcome })
        .inc();
    None
}

/// Reads until the buffered bytes hold a whole ClientHello.
async fn read_hello(stream: &mut TcpStream) -> Result<(BytesMut, Hello), ReadError> {
    let mut buf = BytesMut::with_capacity(2048);
    loop {
        if buf.len() >= client_hello::MAX_READ {
            return Err(ReadError::TooLong);
        }
        buf.reserve(1024);
        let n = stream
            .read_buf(&mut buf)
            .await
            .map_err(|_| ReadError::Truncated)?;
        if n == 0 {
            return Err(ReadError::Truncated);
        }
        if let Some(hello) = client_hello::parse(&buf).map_err(ReadError::Bad)? {
            return Ok((buf, hello));
        }
    }
}

/// Connects to an endpoint of `route` (one retry on another after a failed connect),
/// sends the ClientHello bytes and copies both ways until both sides are done. Returns
/// the outcome label.
async fn splice(
    mut client: TcpStream,
    hello: Bytes,
    route: &PassthroughRoute,
    conn: Conn,
    router: &Router,
) -> &'static str {
    let connect_timeout = router.limits().upstream_connect_timeout;
    let mut failed: Option<SocketAddr> = None;
    let mut upstream = None;
    for _ in 0..2 {
        let (pick, service) = match router.passthrough_endpoint(route, failed) {
            Ok(p) => p,
            Err(e) if failed.is_none() => {
                debug!(remote = %conn.remote, route = %route.route, reason = e.label(), "no endpoint for a passed-through connection; closing");
                return e.label();
            }
            Err(_) => break,
        };
        let addr = pick.addr;
        match tokio::time::timeout(connect_timeout, TcpStream::connect(addr)).await {
            Ok(Ok(s)) => {
                upstream = Some((s, addr, pick));
                break;
            }
            result => {
                debug!(%addr, error = ?result.ok().and_then(Result::err), "passthrough connect failed");
                router
                    .metrics()
                    .upstream_connect_errors
                    .get_or_create(&ServiceLabels { service })
                    .inc();
                failed = Some(addr);
            }
        }
    }
    let Some((mut upstream, addr, _pick)) = upstream else {
        return "connect_failed";
    };
    let _ = upstream.set_nodelay(true);
    let _ = client.set_nodelay(true);
    if upstream.write_all(&hello).await.is_err() {
        return "connect_failed";
    }
    match tokio::io::copy_bidirectional(&mut client, &mut upstream).await {
        Ok((sent, received)) => {
            debug!(remote = %conn.remote, endpoint = %addr, route = %route.route, sent, received, "passthrough connection done");
        }
        Err(e) => {
            debug!(remote = %conn.remote, endpoint = %addr, error = %e, "passthrough connection ended with an error");
        }
    }
    "passed"
}
