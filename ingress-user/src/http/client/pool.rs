//! Idle upstream connections, per endpoint. One pool per router worker: a connection is
//! registered with the reactor of the worker that opened it, so it is only reused there.
//! Newest first (LIFO), so a burst's extra connections go cold and expire.
//!
//! A connection is handed out only when it is provably clean: a connection that became
//! readable while idle (the upstream closed it, or sent bytes nobody asked for: a late
//! body after HEAD/204/304, a second response) is closed, never reused, or those bytes
//! would be read as the next client's response. The check costs no system call while
//! the reactor reports nothing: a read that drained the socket cleared its readiness.

use std::{
    io,
    net::SocketAddr,
    os::fd::AsRawFd as _,
    sync::{Mutex, PoisonError},
    time::Duration,
};

use bytes::BytesMut;
use prometheus_client::metrics::counter::Counter;
use tracing::debug;

use super::stream::Stream;
use crate::http::FastMap;

/// Most idle connections kept per endpoint (nginx's `keepalive` is per worker too).
pub const MAX_IDLE_PER_ENDPOINT: usize = 256;

/// An open connection to an upstream endpoint, with its read buffer.
#[derive(Debug)]
pub struct Conn {
    /// The socket, or TLS over it.
    pub stream: Stream,
    /// Bytes read and not consumed yet.
    pub buf: BytesMut,
    /// The endpoint.
    pub addr: SocketAddr,
    /// The TLS client it was made with ([`UpstreamTls::id`](crate::snapshot::upstream_tls::UpstreamTls)),
    /// 0 for cleartext: it is only reused by requests asking for the same.
    pub tls: u64,
}

#[derive(Debug)]
struct Idle {
    conn: Conn,
    /// [`coarse_now`] when it was checked in.
    since: Duration,
}

/// Counters of connections closed instead of reused (the metric's `reason` label).
#[derive(Clone, Debug, Default)]
pub struct Discards {
    /// The upstream closed (or reset) the connection while it was idle.
    pub closed: Counter,
    /// The upstream sent bytes while the connection was idle.
    pub unsolicited_bytes: Counter,
    /// Bytes were already read past the end of a response.
    pub surplus_bytes: Counter,
}

/// Why a connection is not clean.
enum Dirty {
    Closed,
    Unsolicited,
}

/// The time on `CLOCK_MONOTONIC_COARSE`: the last timer tick, read without the TSC. Idle
/// stamps are taken twice per request and only need to be right to a few milliseconds
/// against timeouts of seconds.
fn coarse_now() -> Duration {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: `ts` is a valid timespec to write; the clock id is a constant Linux has.
    unsafe { libc::clock_gettime(libc::CLOCK_MONOTONIC_COARSE, &raw mut ts) };
    Duration::new(
        u64::try_from(ts.tv_sec).unwrap_or(0),
        u32::try_from(ts.tv_nsec).unwrap_or(0),
    )
}

/// The idle connections of one worker.
#[derive(Debug)]
pub struct Pool {
    idle: Mutex<FastMap<(SocketAddr, u64), Vec<Idle>>>,
    timeout: Duration,
    discards: Discards,
}

impl Pool {
    /// A pool dropping connections idle longer than `timeout`, counting the unclean ones
    /// it closes in `discards`.
    pub fn new(timeout: Duration, discards: Discards) -> Self {
        Self {
            idle: Mutex::default(),
            timeout,
            discards,
        }
    }

    /// The most recently used idle connection to `addr` that is still clean; unclean ones
    /// met on the way are closed and counted. With `thorough`, each is asked of the kernel
    /// (one system call), for a request that could not be sent again should the upstream
    /// have closed it a moment ago; otherwise the reactor's readiness decides.
    pub fn checkout(&self, addr: SocketAddr, tls: u64, thorough: bool) -> Option<Conn> {
        let now = coarse_now();
        let mut idle = self.idle.lock().unwrap_or_else(PoisonError::into_inner);
        let list = idle.get_mut(&(addr, tls))?;
        while let Some(entry) = list.pop() {
            if now.saturating_sub(entry.since) >= self.timeout {
                // The newest is too old, so all are.
                list.clear();
                break;
            }
            let dirty = if thorough {
                peek_dirty(&entry.conn)
            } else {
                dirty(&entry.conn)
            };
            match dirty {
                None => return Some(entry.conn),
                Some(Dirty::Closed) => {
                    self.discards.closed.inc();
                }
                Some(Dirty::Unsolicited) => {
                    debug!(%addr, "upstream sent bytes on an idle connection; closing it");
                    self.discards.unsolicited_bytes.inc();
                }
            }
        }
        None
    }

    /// Keeps `conn` for reuse after a response that ended cleanly, unless bytes past the
    /// response's end were read with it (closed and counted) or the endpoint already has
    /// enough idle connections.
    pub fn checkin(&self, conn: Conn) {
        if !conn.buf.is_empty() {
            debug!(addr = %conn.addr, surplus = conn.buf.len(), "upstream sent bytes past the end of a response; closing the connection");
            self.discards.surplus_bytes.inc();
            return;
        }
        let mut idle = self.idle.lock().unwrap_or_else(PoisonError::into_inner);
        let list = idle.entry((conn.addr, conn.tls)).or_default();
        if list.len() < MAX_IDLE_PER_ENDPOINT {
            list.push(Idle {
                conn,
                since: coarse_now(),
            });
        }
    }

    /// Closes connections idle longer than the timeout (and forgets endpoints with none),
    /// so endpoints that stopped getting traffic do not keep sockets open.
    pub fn sweep(&self) -> usize {
        let now = coarse_now();
        let mut closed = 0;
        let mut idle = self.idle.lock().unwrap_or_else(PoisonError::into_inner);
        idle.retain(|_, list| {
            let before = list.len();
            list.retain(|e| now.saturating_sub(e.since) < self.timeout);
            closed += before - list.len();
            !list.is_empty()
        });
        closed
    }

    /// Idle connections held, over all endpoints.
    pub fn len(&self) -> usize {
        self.idle
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .values()
            .map(Vec::len)
            .sum()
    }

    /// Whether no connection is idle.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// [`dirty`], asked of the kernel whatever the reactor has seen so far.
fn peek_dirty(conn: &Conn) -> Option<Dirty> {
    let mut byte = 0u8;
    // SAFETY: the descriptor is open for as long as `conn` is borrowed, and the buffer is
    // one byte we own. MSG_PEEK leaves any byte in the socket; MSG_DONTWAIT never blocks.
    let n = unsafe {
        libc::recv(
            conn.stream.tcp().as_raw_fd(),
            (&raw mut byte).cast(),
            1,
            libc::MSG_PEEK | libc::MSG_DONTWAIT,
        )
    };
    match n {
        0 => Some(Dirty::Closed),
        1.. => Some(Dirty::Unsolicited),
        _ if io::Error::last_os_error().kind() == io::ErrorKind::WouldBlock => None,
        _ => Some(Dirty::Closed),
    }
}

/// Whether an idle connection became readable: EOF or reset (closed), or bytes nobody
/// asked for. `try_read` makes no system call while tokio holds no read readiness for the
/// socket, which is the usual case: the read that ended the last response drained it.
fn dirty(conn: &Conn) -> Option<Dirty> {
    let mut probe = [0u8; 1];
    match conn.stream.tcp().try_read(&mut probe) {
        Err(e) if e.kind() == io::ErrorKind::WouldBlock => None,
        Ok(0) | Err(_) => Some(Dirty::Closed),
        Ok(_) => Some(Dirty::Unsolicited),
    }
}

#[cfg(test)]
mod tests {
    use tokio::net::{TcpListener, TcpStream};

    use super::*;

    async fn conn(listener: &TcpListener) -> Conn {
        let addr = listener.local_addr().unwrap();
        let stream = Stream::Plain(TcpStream::connect(addr).await.unwrap());
        Conn {
            stream,
            buf: BytesMut::new(),
            addr,
            tls: 0,
        }
    }

    #[tokio::test]
    async fn newest_connection_is_reused_first_and_only_for_its_endpoint() {
        let (a, b) = (
            TcpListener::bind("127.0.0.1:0").await.unwrap(),
            TcpListener::bind("127.0.0.1:0").await.unwrap(),
        );
        let pool = Pool::new(Duration::from_secs(60), Discards::default());
        let (first, second) = (conn(&a).await, conn(&a).await);
        let second_port = second.stream.tcp().local_addr().unwrap().port();
        pool.checkin(first);
        pool.checkin(second);
        assert!(pool.checkout(b.local_addr().unwrap(), 0, false).is_none());
        let got = pool.checkout(a.local_addr().unwrap(), 0, false).unwrap();
        assert_eq!(got.stream.tcp().local_addr().unwrap().port(), second_port);
        assert_eq!(pool.len(), 1);
    }

    #[tokio::test]
    async fn connections_are_only_reused_with_the_tls_client_they_were_made_with() {
        let a = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = a.local_addr().unwrap();
        let pool = Pool::new(Duration::from_secs(60), Discards::default());
        let mut tls = conn(&a).await;
        tls.tls = 7;
        pool.checkin(tls);
        assert!(pool.checkout(addr, 0, false).is_none(), "not for cleartext");
        assert!(
            pool.checkout(addr, 8, false).is_none(),
            "not for another client"
        );
        assert_eq!(pool.checkout(addr, 7, false).map(|c| c.tls), Some(7));
    }

    #[tokio::test]
    async fn expired_connections_are_never_handed_out_and_are_swept() {
        let a = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let pool = Pool::new(Duration::ZERO, Discards::default());
        pool.checkin(conn(&a).await);
        assert!(pool.checkout(a.local_addr().unwrap(), 0, false).is_none());
        pool.checkin(conn(&a).await);
        assert_eq!(pool.sweep(), 1);
        assert!(pool.is_empty());
    }

    /// Waits until the reactor has seen what the peer did.
    async fn settle() {
        tokio::time::sleep(Duration::from_millis(50)).await;
    }

    #[tokio::test]
    async fn connections_that_became_readable_while_idle_are_closed_and_counted() {
        use tokio::io::AsyncWriteExt as _;
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let discards = Discards::default();
        let pool = Pool::new(Duration::from_secs(60), discards.clone());
        // Oldest first: a clean one, one the upstream closes, one it writes to.
        let mut peers = Vec::new();
        for _ in 0..3 {
            let c = conn(&listener).await;
            peers.push(listener.accept().await.unwrap().0);
            pool.checkin(c);
        }
        let clean_port = peers[0].peer_addr().unwrap().port();
        drop(peers.remove(1));
        peers[1]
            .write_all(b"HTTP/1.1 200 OK\r\n\r\n")
            .await
            .unwrap();
        settle().await;
        let got = pool
            .checkout(addr, 0, false)
            .expect("the clean connection is still handed out");
        assert_eq!(got.stream.tcp().local_addr().unwrap().port(), clean_port);
        assert_eq!(discards.unsolicited_bytes.get(), 1);
        assert_eq!(discards.closed.get(), 1);
        assert!(pool.is_empty());
    }

    #[tokio::test]
    async fn a_thorough_checkout_asks_the_kernel_and_leaves_clean_connections_intact() {
        use tokio::io::AsyncWriteExt as _;
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let discards = Discards::default();
        let pool = Pool::new(Duration::from_secs(60), discards.clone());
        let clean = conn(&listener).await;
        let _clean_peer = listener.accept().await.unwrap().0;
        pool.checkin(clean);
        let dirty = conn(&listener).await;
        let mut dirty_peer = listener.accept().await.unwrap().0;
        pool.checkin(dirty);
        dirty_peer.write_all(b"x").await.unwrap();
        // No waiting for the reactor: over loopback the byte is queued by the time the
        // write returns, and the peek asks the kernel.
        let got = pool.checkout(addr, 0, true).expect("the clean connection");
        assert_eq!(discards.unsolicited_bytes.get() + discards.closed.get(), 1);
        assert!(pool.is_empty());
        pool.checkin(got);
        assert!(
            pool.checkout(addr, 0, true).is_some(),
            "peeking took nothing"
        );
    }

    #[tokio::test]
    async fn a_connection_with_bytes_past_the_response_is_not_pooled() {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let discards = Discards::default();
        let pool = Pool::new(Duration::from_secs(60), discards.clone());
        let mut c = conn(&listener).await;
        c.buf.extend_from_slice(b"late");
        pool.checkin(c);
        assert!(pool.is_empty());
        assert_eq!(discards.surplus_bytes.get(), 1);
    }
}
