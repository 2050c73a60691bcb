//! The HTTP/1.1 fast path for plain-HTTP client connections.
//!
//! Most traffic through an ingress is small bodiless requests on keep-alive connections.
//! For those, hyper's server machinery (its dispatcher, a timer armed and cancelled per
//! request, the auto builder's version sniffing) cost about as much CPU as the rest of
//! the router together. This loop reads such a request with httparse, routes and forwards
//! it, and writes the response itself, with one idle timer per connection that is re-armed
//! only when it fires.
//!
//! Anything else ([`codec::Decline`]: a request body, an upgrade, HTTP/1.0, an HTTP/2
//! preface, a head not complete in one read, a malformed or oversized head) hands the
//! connection, with the bytes already read, to hyper for the rest of its life. hyper then
//! answers exactly as it would have from the start: 400, 431, slowloris timeouts,
//! WebSocket, h2c. So the fast path only ever serves requests whose handling is plain.

pub mod codec;

use std::{
    future::{Future, poll_fn},
    pin::{Pin, pin},
    sync::Arc,
    task::{Context, Poll},
    time::Duration,
};

use bytes::{Bytes, BytesMut};
use http_body_util::{BodyExt as _, Empty};
use hyper::{Method, Response, body::Body as _};
use tokio::{
    io::{AsyncRead, AsyncReadExt as _, AsyncWrite, AsyncWriteExt as _},
    time::{Instant, Sleep},
};
use tracing::{debug, trace};

use self::codec::{Framing, encode_response_head, framing, parse_request};
use super::{
    body::Body,
    client::codec::{LAST_CHUNK, chunk_size_line},
    drain::Signal,
    proxy::Upstream,
    router::{Conn, Handled, Router},
};

/// Read buffer per connection; a request head that does not fit goes to hyper.
const READ_BUF: usize = 8 * 1024;
/// Body chunks up to this size are copied behind the head (one write); larger ones are
/// written from where they are.
const COPY_MAX: usize = 16 * 1024;
/// The response buffer is shrunk back after a response that grew it past this.
const OUT_KEEP: usize = 64 * 1024;

/// What the fast path needs from the limits.
#[derive(Clone, Copy, Debug)]
pub struct Settings {
    /// How long a connection may sit without a complete request head (idle keep-alive
    /// included), as hyper's header read timeout.
    pub header_read_timeout: Duration,
    /// The largest request head (`--max-header-bytes`).
    pub max_head: usize,
}

/// How the fast path left a connection.
pub enum Ended<I> {
    /// Closed (by the client, an error, a timeout, `Connection: close` or draining).
    Closed,
    /// Declined a request: hyper serves the connection from here, starting with `buf`.
    Handoff(I, BytesMut),
}

/// Serves requests on `io` until it closes or a request is one for hyper.
pub async fn serve<I>(
    mut io: I,
    conn: Conn,
    router: &Arc<Router>,
    upstream: &Arc<Upstream>,
    settings: Settings,
    signal: &Signal,
) -> Ended<I>
where
    I: AsyncRead + AsyncWrite + Unpin,
{
    let mut buf = BytesMut::with_capacity(READ_BUF);
    let mut out = Vec::new();
    let mut waiting = Waiting::new(settings.header_read_timeout, signal);
    loop {
        if buf.is_empty() {
            // The previous request's head is gone with it, so the buffer can start over.
            if !buf.try_reclaim(READ_BUF) {
                buf.reserve(READ_BUF);
            }
            match waiting.read(&mut io, &mut buf).await {
                Ok(true) => {}
                Ok(false) => return Ended::Closed,
                Err(e) => {
                    debug!(remote = %conn.remote, error = %e, "HTTP connection read failed");
                    return Ended::Closed;
                }
            }
        }
        let accepted = match parse_request(&mut buf, settings.max_head) {
            Ok(accepted) => accepted,
            Err(why) => {
                trace!(remote = %conn.remote, ?why, "handing the connection to hyper");
                return Ended::Handoff(io, buf);
            }
        };
        let method = accepted.req.method().clone();
        let req = accepted.req.map(|()| Empty::<Bytes>::new());
        let handled = router.handle(req, conn, upstream);
        let Some(resp) = unless_gone(handled, &mut io, &mut buf).await else {
            debug!(remote = %conn.remote, "client closed the connection before the response");
            return Ended::Closed;
        };
        let close = accepted.close || signal.is_draining();
        match write_response(&mut io, resp, &method, close, &mut out).await {
            Ok(true) if !close => {}
            Ok(_) => {
                let _ = io.shutdown().await;
                return Ended::Closed;
            }
            Err(e) => {
                debug!(remote = %conn.remote, error = %e, "writing the response failed");
                return Ended::Closed;
            }
        }
        if out.capacity() > OUT_KEEP {
            out = Vec::new();
        }
    }
}

/// The response, or `None` when the client closes the connection first: then forwarding
/// stops at once (as hyper does without half-close) instead of holding an upstream
/// connection for a response nobody reads. Bytes the client pipelines meanwhile are kept
/// in `buf`, up to its size.
///
/// Polling the client's read side costs no system call while nothing arrives: tokio keeps
/// the readiness epoll reported, and reads only when there is some.
async fn unless_gone<I: AsyncRead + Unpin>(
    mut handled: Handled,
    io: &mut I,
    buf: &mut BytesMut,
) -> Option<Response<Body>> {
    poll_fn(|cx| {
        if let Poll::Ready(resp) = Pin::new(&mut handled).poll(cx) {
            return Poll::Ready(Some(resp));
        }
        while buf.len() < READ_BUF {
            match pin!(io.read_buf(&mut *buf)).poll(cx) {
                Poll::Ready(Ok(0) | Err(_)) => return Poll::Ready(None),
                Poll::Ready(Ok(_)) => {}
                Poll::Pending => break,
            }
        }
        Poll::Pending
    })
    .await
}

/// Waiting for the next request: a read raced against the idle deadline and draining.
struct Waiting<'s> {
    timeout: Duration,
    /// When the current wait times out.
    deadline: Instant,
    /// Fires at or before `deadline`; re-armed only when it fires early, so a busy
    /// connection does not touch the timer wheel per request.
    sleep: Option<Pin<Box<Sleep>>>,
    signal: &'s Signal,
    draining: Option<Pin<Box<dyn Future<Output = ()> + Send>>>,
}

impl<'s> Waiting<'s> {
    fn new(timeout: Duration, signal: &'s Signal) -> Self {
        Self {
            timeout,
            deadline: Instant::now() + timeout,
            sleep: None,
            signal,
            draining: None,
        }
    }

    /// Reads into `buf`: `Ok(true)` when bytes came, `Ok(false)` when the connection is
    /// over (closed by the client, idle too long, or draining).
    async fn read<I: AsyncRead + Unpin>(
        &mut self,
        io: &mut I,
        buf: &mut BytesMut,
    ) -> std::io::Result<bool> {
        let mut reading = pin!(io.read_buf(buf));
        // Usually the bytes are there or the wait is short: no timer work unless we wait.
        if let Poll::Ready(read) = poll_fn(|cx| Poll::Ready(reading.as_mut().poll(cx))).await {
            return read.map(|n| n > 0);
        }
        if self.signal.is_draining() {
            return Ok(false);
        }
        self.deadline = Instant::now() + self.timeout;
        poll_fn(|cx| {
            if let Poll::Ready(read) = reading.as_mut().poll(cx) {
                return Poll::Ready(read.map(|n| n > 0));
            }
            if self.poll_over(cx) {
                return Poll::Ready(Ok(false));
            }
            Poll::Pending
        })
        .await
    }

    /// Whether the wait is over: the deadline passed, or draining started.
    fn poll_over(&mut self, cx: &mut Context<'_>) -> bool {
        let signal = self.signal;
        let draining = self.draining.get_or_insert_with(|| signal.draining());
        if draining.as_mut().poll(cx).is_ready() {
            return true;
        }
        let deadline = self.deadline;
        let sleep = self
            .sleep
            .get_or_insert_with(|| Box::pin(tokio::time::sleep_until(deadline)));
        loop {
            if sleep.as_mut().poll(cx).is_pending() {
                return false;
            }
            if sleep.deadline() >= deadline {
                return true;
            }
            sleep.as_mut().reset(deadline);
        }
    }
}

/// Writes `resp`; `Ok(false)` when its body failed part way (the connection must close,
/// so the client sees the response cut rather than a wrong one).
///
/// Body frames that are ready at once are gathered behind the head, so a small response
/// goes out in one write.
async fn write_response<I: AsyncWrite + Unpin>(
    io: &mut I,
    resp: Response<Body>,
    method: &Method,
    close: bool,
    out: &mut Vec<u8>,
) -> std::io::Result<bool> {
    let (parts, mut body) = resp.into_parts();
    let framing = framing(method, &parts, body.size_hint().exact());
    out.clear();
    encode_response_head(&parts, framing, close, out);
    drop(parts);
    if matches!(framing, Framing::Bodiless | Framing::Announced(_)) {
        io.write_all(out).await?;
        return Ok(true);
    }
    let chunked = framing == Framing::Chunked;
    loop {
        let frame = match poll_fn(|cx| Poll::Ready(Pin::new(&mut body).poll_frame(cx))).await {
            Poll::Ready(frame) => frame,
            Poll::Pending => {
                io.write_all(out).await?;
                out.clear();
                body.frame().await
            }
        };
        let data = match frame {
            None => break,
            Some(Ok(frame)) => match frame.into_data() {
                Ok(data) if !data.is_empty() => data,
                // Trailers have no place in HTTP/1.1 without `TE: trailers`; dropped, as
                // hyper does.
                _ => continue,
            },
            Some(Err(e)) => {
                debug!(error = %e, "response body failed; closing the connection");
                io.write_all(out).await?;
                return Ok(false);
            }
        };
        if chunked {
            chunk_size_line(data.len(), out);
        }
        if data.len() > COPY_MAX {
            io.write_all(out).await?;
            out.clear();
            io.write_all(&data).await?;
        } else {
            out.extend_from_slice(&data);
        }
        if chunked {
            out.extend_from_slice(b"\r\n");
        }
    }
    if chunked {
        out.extend_from_slice(LAST_CHUNK);
    }
    io.write_all(out).await?;
    Ok(true)
}
