//! The body of an upstream response, read from the upstream socket as the server writes it
//! to the client: no copy into a channel, no extra task. When the body ends cleanly on a
//! keep-alive connection, the connection goes back to the pool at once.

use std::{
    future::Future as _,
    io,
    pin::{Pin, pin},
    sync::Arc,
    task::{Context, Poll, ready},
    time::Duration,
};

use bytes::Bytes;
use hyper::body::{Body as HttpBody, Frame, SizeHint};
use tokio::{
    io::AsyncReadExt as _,
    time::{Instant, Sleep},
};

use super::{
    chunked::{self, ChunkedError, Step},
    codec::Framing,
    pool::{Conn, Pool},
};

/// Read size when the buffer runs low.
pub(super) const READ_CHUNK: usize = 16 * 1024;

/// Why a response body was cut. The client sees its response end early.
#[derive(Debug, thiserror::Error)]
pub enum BodyError {
    /// The upstream closed before the declared end.
    #[error("upstream closed the connection before the end of the body")]
    Truncated,
    /// Reading the socket failed.
    #[error("reading the upstream body: {0}")]
    Io(#[from] io::Error),
    /// The chunked framing is broken.
    #[error("upstream body: {0}")]
    Chunked(#[from] ChunkedError),
    /// The upstream sent nothing for the response timeout.
    #[error("upstream sent nothing for {0:?} while sending the body")]
    Timeout(Duration),
}

#[derive(Debug)]
enum State {
    Length(u64),
    Chunked(chunked::Decoder),
    UntilClose,
    Done,
}

/// A streaming upstream response body.
#[derive(Debug)]
pub struct ResponseBody {
    conn: Option<Conn>,
    state: State,
    keep_alive: bool,
    pool: Arc<Pool>,
    read_timeout: Duration,
    idle: Option<Pin<Box<Sleep>>>,
}

impl ResponseBody {
    /// The body of a response framed by `framing` on `conn`. An empty body is the
    /// client's to pool at once (it never builds one).
    pub(super) fn new(
        conn: Conn,
        framing: Framing,
        keep_alive: bool,
        pool: Arc<Pool>,
        read_timeout: Duration,
    ) -> Self {
        let state = match framing {
            Framing::Empty | Framing::Length(0) => State::Done,
            Framing::Length(n) => State::Length(n),
            Framing::Chunked => State::Chunked(chunked::Decoder::default()),
            Framing::UntilClose => State::UntilClose,
        };
        Self {
            conn: Some(conn),
            state,
            keep_alive,
            pool,
            read_timeout,
            idle: None,
        }
    }

    /// The body is complete: the connection goes back to the pool if it may carry another
    /// request (the pool closes it if bytes past the body were read), else closed.
    fn finish(&mut self) {
        self.state = State::Done;
        if let Some(conn) = self.conn.take()
            && self.keep_alive
        {
            self.pool.checkin(conn);
        }
    }

    /// The body failed: the connection is in an unknown state and is closed.
    fn fail(&mut self, e: BodyError) -> Poll<Option<Result<Frame<Bytes>, BodyError>>> {
        self.state = State::Done;
        self.conn = None;
        Poll::Ready(Some(Err(e)))
    }

    /// Reads more into the buffer. `Ok(0)` is end of stream. While nothing arrives, the
    /// response timeout runs; every read restarts it.
    ///
    /// Read through `AsyncRead`, which clears the socket's readiness after a read that
    /// did not fill the buffer (the socket is drained), so the pool's cleanliness check
    /// on the idle connection later costs no system call.
    fn poll_fill(&mut self, cx: &mut Context<'_>) -> Poll<Result<usize, BodyError>> {
        let Some(conn) = self.conn.as_mut() else {
            return Poll::Ready(Ok(0));
        };
        if conn.buf.capacity() - conn.buf.len() < READ_CHUNK / 4 {
            conn.buf.reserve(READ_CHUNK);
        }
        match pin!(conn.stream.read_buf(&mut conn.buf)).poll(cx) {
            Poll::Ready(Ok(n)) => {
                if let Some(idle) = self.idle.as_mut() {
                    idle.as_mut().reset(Instant::now() + self.read_timeout);
                }
                return Poll::Ready(Ok(n));
            }
            Poll::Ready(Err(e)) => return Poll::Ready(Err(e.into())),
            Poll::Pending => {}
        }
        let timeout = self.read_timeout;
        let idle = self
            .idle
            .get_or_insert_with(|| Box::pin(tokio::time::sleep(timeout)));
        ready!(idle.as_mut().poll(cx));
        Poll::Ready(Err(BodyError::Timeout(timeout)))
    }
}

impl HttpBody for ResponseBody {
    type Data = Bytes;
    type Error = BodyError;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BodyError>>> {
        let this = self.get_mut();
        loop {
            let Some(conn) = this.conn.as_mut() else {
                return Poll::Ready(None);
            };
            match &mut this.state {
                State::Done => return Poll::Ready(None),
                State::Length(left) => {
                    if !conn.buf.is_empty() {
                        let n = usize::try_from(*left)
                            .unwrap_or(usize::MAX)
                            .min(conn.buf.len());
                        *left -= n as u64;
                        let data = conn.buf.split_to(n).freeze();
                        if *left == 0 {
                            this.finish();
                        }
                        return Poll::Ready(Some(Ok(Frame::data(data))));
                    }
                }
                State::Chunked(decoder) => match decoder.decode(&mut conn.buf) {
                    Ok(Step::Data(data)) => return Poll::Ready(Some(Ok(Frame::data(data)))),
                    Ok(Step::Done) => {
                        this.finish();
                        return Poll::Ready(None);
                    }
                    Ok(Step::NeedMore) => {}
                    Err(e) => return this.fail(e.into()),
                },
                State::UntilClose => {
                    if !conn.buf.is_empty() {
                        let data = conn.buf.split().freeze();
                        return Poll::Ready(Some(Ok(Frame::data(data))));
                    }
                }
            }
            match ready!(this.poll_fill(cx)) {
                Ok(0) if matches!(this.state, State::UntilClose) => {
                    this.state = State::Done;
                    this.conn = None;
                    return Poll::Ready(None);
                }
                Ok(0) => return this.fail(BodyError::Truncated),
                Ok(_) => {}
                Err(e) => return this.fail(e),
            }
        }
    }

    fn is_end_stream(&self) -> bool {
        matches!(self.state, State::Done)
    }

    fn size_hint(&self) -> SizeHint {
        match self.state {
            State::Length(n) => SizeHint::with_exact(n),
            State::Done => SizeHint::with_exact(0),
            State::Chunked(_) | State::UntilClose => SizeHint::default(),
        }
    }
}
