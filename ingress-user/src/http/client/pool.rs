//! Idle upstream connections, per endpoint. One pool per router worker: a connection is
//! registered with the reactor of the worker that opened it, so it is only reused there.
//! Newest first (LIFO), so a burst's extra connections go cold and expire.

use std::{
    net::SocketAddr,
    sync::{Mutex, PoisonError},
    time::{Duration, Instant},
};

use bytes::BytesMut;
use tokio::net::TcpStream;

use crate::http::FastMap;

/// Most idle connections kept per endpoint (nginx's `keepalive` is per worker too).
pub const MAX_IDLE_PER_ENDPOINT: usize = 256;

/// An open connection to an upstream endpoint, with its read buffer.
#[derive(Debug)]
pub struct Conn {
    /// The socket.
    pub stream: TcpStream,
    /// Bytes read and not consumed yet.
    pub buf: BytesMut,
    /// The endpoint.
    pub addr: SocketAddr,
}

#[derive(Debug)]
struct Idle {
    conn: Conn,
    since: Instant,
}

/// The idle connections of one worker.
#[derive(Debug)]
pub struct Pool {
    idle: Mutex<FastMap<SocketAddr, Vec<Idle>>>,
    timeout: Duration,
}

impl Pool {
    /// A pool dropping connections idle longer than `timeout`.
    pub fn new(timeout: Duration) -> Self {
        Self {
            idle: Mutex::default(),
            timeout,
        }
    }

    /// The most recently used idle connection to `addr`.
    pub fn checkout(&self, addr: SocketAddr) -> Option<Conn> {
        let now = Instant::now();
        let mut idle = self.idle.lock().unwrap_or_else(PoisonError::into_inner);
        let list = idle.get_mut(&addr)?;
        while let Some(entry) = list.pop() {
            if now.saturating_duration_since(entry.since) < self.timeout {
                return Some(entry.conn);
            }
            // The newest is too old, so all are.
            list.clear();
        }
        None
    }

    /// Keeps `conn` for reuse, unless the endpoint already has enough idle ones.
    pub fn checkin(&self, conn: Conn) {
        debug_assert!(
            conn.buf.is_empty(),
            "a pooled connection has no pending bytes"
        );
        let mut idle = self.idle.lock().unwrap_or_else(PoisonError::into_inner);
        let list = idle.entry(conn.addr).or_default();
        if list.len() < MAX_IDLE_PER_ENDPOINT {
            list.push(Idle {
                conn,
                since: Instant::now(),
            });
        }
    }

    /// Closes connections idle longer than the timeout (and forgets endpoints with none),
    /// so endpoints that stopped getting traffic do not keep sockets open.
    pub fn sweep(&self) -> usize {
        let now = Instant::now();
        let mut closed = 0;
        let mut idle = self.idle.lock().unwrap_or_else(PoisonError::into_inner);
        idle.retain(|_, list| {
            let before = list.len();
            list.retain(|e| now.saturating_duration_since(e.since) < self.timeout);
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

#[cfg(test)]
mod tests {
    use tokio::net::TcpListener;

    use super::*;

    async fn conn(listener: &TcpListener) -> Conn {
        let addr = listener.local_addr().unwrap();
        let stream = TcpStream::connect(addr).await.unwrap();
        Conn {
            stream,
            buf: BytesMut::new(),
            addr,
        }
    }

    #[tokio::test]
    async fn newest_connection_is_reused_first_and_only_for_its_endpoint() {
        let (a, b) = (
            TcpListener::bind("127.0.0.1:0").await.unwrap(),
            TcpListener::bind("127.0.0.1:0").await.unwrap(),
        );
        let pool = Pool::new(Duration::from_secs(60));
        let (first, second) = (conn(&a).await, conn(&a).await);
        let second_port = second.stream.local_addr().unwrap().port();
        pool.checkin(first);
        pool.checkin(second);
        assert!(pool.checkout(b.local_addr().unwrap()).is_none());
        let got = pool.checkout(a.local_addr().unwrap()).unwrap();
        assert_eq!(got.stream.local_addr().unwrap().port(), second_port);
        assert_eq!(pool.len(), 1);
    }

    #[tokio::test]
    async fn expired_connections_are_never_handed_out_and_are_swept() {
        let a = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let pool = Pool::new(Duration::ZERO);
        pool.checkin(conn(&a).await);
        assert!(pool.checkout(a.local_addr().unwrap()).is_none());
        pool.checkin(conn(&a).await);
        assert_eq!(pool.sweep(), 1);
        assert!(pool.is_empty());
    }
}
