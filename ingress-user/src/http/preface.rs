//! A read deadline for the first bytes of a connection.
//!
//! hyper-util's auto builder first reads enough bytes to tell HTTP/1 from the HTTP/2
//! preface, and hyper's header timeout only starts after that. A client that connects and
//! sends nothing (or a partial preface) would hold the connection forever. This wrapper
//! fails reads with `TimedOut` if the protocol is still undecided when the deadline passes.

use std::{
    future::Future as _,
    io,
    pin::Pin,
    task::{Context, Poll},
    time::Duration,
};

use tokio::{
    io::{AsyncRead, AsyncWrite, ReadBuf},
    time::Sleep,
};

/// The HTTP/2 connection preface.
const H2_PREFACE: &[u8; 24] = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";

/// An IO whose reads fail after `deadline` while the bytes seen so far could still be
/// the start of the HTTP/2 preface (including "no bytes yet").
#[derive(Debug)]
pub struct PrefaceDeadline<I> {
    io: I,
    matched: usize,
    armed: bool,
    sleep: Pin<Box<Sleep>>,
}

impl<I> PrefaceDeadline<I> {
    /// Wraps `io`; the deadline starts now.
    pub fn new(io: I, deadline: Duration) -> Self {
        Self {
            io,
            matched: 0,
            armed: true,
            sleep: Box::pin(tokio::time::sleep(deadline)),
        }
    }

    fn observe(&mut self, bytes: &[u8]) {
        for b in bytes {
            if self.matched < H2_PREFACE.len() && *b == H2_PREFACE[self.matched] {
                self.matched += 1;
            } else {
                // Not HTTP/2: HTTP/1 parsing (and its header timeout) takes over.
                self.armed = false;
                return;
            }
        }
        if self.matched == H2_PREFACE.len() {
            self.armed = false;
        }
    }
}

impl<I: AsyncRead + Unpin> AsyncRead for PrefaceDeadline<I> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = &mut *self;
        let before = buf.filled().len();
        match Pin::new(&mut this.io).poll_read(cx, buf) {
            Poll::Ready(Ok(())) => {
                if this.armed {
                    let new = buf.filled()[before..].to_vec();
                    this.observe(&new);
                }
                Poll::Ready(Ok(()))
            }
            Poll::Pending if this.armed && this.sleep.as_mut().poll(cx).is_ready() => {
                Poll::Ready(Err(io::Error::new(
                    io::ErrorKind::TimedOut,
                    "no request started before the header timeout",
                )))
            }
            other => other,
        }
    }
}

impl<I: AsyncWrite + Unpin> AsyncWrite for PrefaceDeadline<I> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.io).poll_write(cx, buf)
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.io).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.io).poll_shutdown(cx)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.io).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.io.is_write_vectored()
    }
}

#[cfg(test)]
mod tests {
    use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};

    use super::*;

    #[tokio::test]
    async fn silent_peer_times_out() {
        let (a, _b) = tokio::io::duplex(64);
        let mut io = PrefaceDeadline::new(a, Duration::from_millis(20));
        let err = io.read(&mut [0; 8]).await.unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::TimedOut);
    }

    #[tokio::test]
    async fn partial_h2_preface_times_out() {
        let (a, mut b) = tokio::io::duplex(64);
        b.write_all(b"PRI * HT").await.unwrap();
        let mut io = PrefaceDeadline::new(a, Duration::from_millis(20));
        assert_eq!(io.read(&mut [0; 8]).await.unwrap(), 8);
        assert_eq!(
            io.read(&mut [0; 8]).await.unwrap_err().kind(),
            io::ErrorKind::TimedOut
        );
    }

    #[tokio::test]
    async fn http1_bytes_disarm_the_deadline() {
        let (a, mut b) = tokio::io::duplex(64);
        b.write_all(b"GET").await.unwrap();
        let mut io = PrefaceDeadline::new(a, Duration::from_millis(20));
        assert_eq!(io.read(&mut [0; 8]).await.unwrap(), 3);
        tokio::time::sleep(Duration::from_millis(40)).await;
        let pending = tokio::time::timeout(Duration::from_millis(40), io.read(&mut [0; 8])).await;
        assert!(
            pending.is_err(),
            "after HTTP/1 bytes, reads wait (hyper's header timeout applies)"
        );
    }

    #[tokio::test]
    async fn full_h2_preface_disarms_the_deadline() {
        let (a, mut b) = tokio::io::duplex(64);
        b.write_all(H2_PREFACE).await.unwrap();
        let mut io = PrefaceDeadline::new(a, Duration::from_millis(20));
        let mut buf = [0; 24];
        io.read_exact(&mut buf).await.unwrap();
        tokio::time::sleep(Duration::from_millis(40)).await;
        let pending = tokio::time::timeout(Duration::from_millis(40), io.read(&mut [0; 8])).await;
        assert!(pending.is_err());
    }
}
