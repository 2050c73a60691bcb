//! The request body on its way upstream. Two rules keep slow or stalled uploads from
//! holding upstream connections (nginx's `client_body_timeout` and request buffering):
//!
//! - [`timed`]: a body whose client sends nothing for `--client-body-timeout` between two
//!   reads fails with [`BodyTimeoutError`] (answered 408).
//! - [`buffer`]: a body of at most `--client-body-buffer-size` bytes is read whole before
//!   an upstream connection is taken, so a stalled small upload holds none, and the
//!   upstream's response timeout only starts once the request is sent. A larger body
//!   streams, behind the part already read.

use std::{
    future::Future as _,
    pin::Pin,
    task::{Context, Poll, ready},
    time::Duration,
};

use bytes::{Bytes, BytesMut};
use http_body_util::BodyExt as _;
use hyper::body::{Body as HttpBody, Frame, SizeHint};
use tokio::{
    sync::oneshot,
    time::{Instant, Sleep},
};

use super::body::{Body, BoxError, full};

/// The client sent no body bytes for `--client-body-timeout`.
#[derive(Debug, thiserror::Error)]
#[error("client sent no request body bytes for {timeout:?}")]
pub struct BodyTimeoutError {
    /// The timeout in force.
    pub timeout: Duration,
}

/// `body`, failing with [`BodyTimeoutError`] when no frame arrives for `timeout`. The
/// timer is armed only while the client is silent.
pub fn timed(body: Body, timeout: Duration) -> Body {
    Timed {
        body,
        timeout,
        idle: None,
    }
    .boxed()
}

struct Timed {
    body: Body,
    timeout: Duration,
    /// Armed on the first wait, re-armed on each wait after a frame arrived.
    idle: Option<(Pin<Box<Sleep>>, bool)>,
}

impl HttpBody for Timed {
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        let this = &mut *self;
        if let Poll::Ready(frame) = Pin::new(&mut this.body).poll_frame(cx) {
            // The next wait starts a new period.
            if let Some((_, fresh)) = this.idle.as_mut() {
                *fresh = false;
            }
            return Poll::Ready(frame);
        }
        let timeout = this.timeout;
        let (sleep, fresh) = this
            .idle
            .get_or_insert_with(|| (Box::pin(tokio::time::sleep(timeout)), true));
        if !*fresh {
            sleep.as_mut().reset(Instant::now() + timeout);
            *fresh = true;
        }
        ready!(sleep.as_mut().poll(cx));
        Poll::Ready(Some(Err(Box::new(BodyTimeoutError { timeout }))))
    }

    fn is_end_stream(&self) -> bool {
        self.body.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.body.size_hint()
    }
}

/// Reads `body` whole when it has at most `limit` bytes, and returns it as one complete
/// body of known length. A body that turns out longer comes back as the bytes read so far
/// followed by the rest, streaming. A body that fails while being read is the error.
pub async fn buffer(body: Body, limit: usize) -> Result<Body, BoxError> {
    if body.is_end_stream() {
        return Ok(body);
    }
    Ok(match buffer_whole(body, limit).await? {
        Buffered::Whole(bytes) => full(bytes),
        Buffered::Streaming(body) => body,
    })
}

/// A request body after [`buffer_whole`].
pub enum Buffered {
    /// All of it (at most the limit).
    Whole(Bytes),
    /// Longer than the limit: what was read, then the rest, streaming.
    Streaming(Body),
}

/// As [`buffer`], but a body read whole comes back as its bytes (e.g. to copy it for a
/// mirror).
pub async fn buffer_whole(body: Body, limit: usize) -> Result<Buffered, BoxError> {
    if body.is_end_stream() {
        return Ok(Buffered::Whole(Bytes::new()));
    }
    if body.size_hint().exact().is_some_and(|n| n > limit as u64) {
        return Ok(Buffered::Streaming(body));
    }
    let mut body = body;
    let mut read = BytesMut::new();
    while let Some(frame) = body.frame().await {
        // Trailers are not forwarded upstream (HTTP/1.1 requests carry none from here).
        let Ok(data) = frame?.into_data() else {
            continue;
        };
        read.extend_from_slice(&data);
        if read.len() > limit && !body.is_end_stream() {
            return Ok(Buffered::Streaming(
                Prefixed {
                    first: Some(read.freeze()),
                    rest: body,
                }
                .boxed(),
            ));
        }
    }
    Ok(Buffered::Whole(read.freeze()))
}

/// `body`, and a receiver that completes when it has been read to its end (or dropped,
/// or failed): the moment a request is fully sent.
pub fn watch_end(body: Body) -> (Body, oneshot::Receiver<()>) {
    let (tx, rx) = oneshot::channel();
    let tx = if body.is_end_stream() {
        let _ = tx.send(());
        None
    } else {
        Some(tx)
    };
    (Watched { body, tx }.boxed(), rx)
}

struct Watched {
    body: Body,
    /// Dropped (which completes the receiver) when the body ends.
    tx: Option<oneshot::Sender<()>>,
}

impl HttpBody for Watched {
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        let frame = ready!(Pin::new(&mut self.body).poll_frame(cx));
        if frame.is_none() || self.body.is_end_stream() {
            self.tx = None;
        }
        Poll::Ready(frame)
    }

    fn is_end_stream(&self) -> bool {
        self.body.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.body.size_hint()
    }
}

/// Bytes already read from a body, then the rest of it.
struct Prefixed {
    first: Option<Bytes>,
    rest: Body,
}

impl HttpBody for Prefixed {
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        if let Some(first) = self.first.take() {
            return Poll::Ready(Some(Ok(Frame::data(first))));
        }
        Pin::new(&mut self.rest).poll_frame(cx)
    }

    fn is_end_stream(&self) -> bool {
        self.first.is_none() && self.rest.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        let first = self.first.as_ref().map_or(0, |b| b.len() as u64);
        let rest = self.rest.size_hint();
        let mut hint = SizeHint::new();
        hint.set_lower(rest.lower() + first);
        if let Some(upper) = rest.upper() {
            hint.set_upper(upper + first);
        }
        hint
    }
}

#[cfg(test)]
mod tests {
    use std::convert::Infallible;

    use futures::stream;
    use http_body_util::StreamBody;

    use super::*;

    /// A body of `chunks`, with no declared length (like a chunked upload).
    fn chunked(chunks: &[&'static str]) -> Body {
        let frames: Vec<Result<Frame<Bytes>, Infallible>> = chunks
            .iter()
            .map(|c| Ok(Frame::data(Bytes::from_static(c.as_bytes()))))
            .collect();
        StreamBody::new(stream::iter(frames))
            .map_err(|never| match never {})
            .boxed()
    }

    async fn collect(body: Body) -> (Vec<u8>, Option<u64>) {
        let exact = body.size_hint().exact();
        (body.collect().await.unwrap().to_bytes().to_vec(), exact)
    }

    #[tokio::test]
    async fn small_bodies_are_read_whole_and_get_a_length_larger_ones_stream_on() {
        for (chunks, limit, whole) in [
            (&["ab", "cd"][..], 4, true),
            (&["ab", "cd"][..], 16, true),
            (&["ab", "cd", "ef"][..], 3, false),
            (&["abcdef"][..], 3, false),
        ] {
            let body = buffer(chunked(chunks), limit).await.unwrap();
            let (bytes, exact) = collect(body).await;
            assert_eq!(bytes, chunks.concat().as_bytes(), "{chunks:?} {limit}");
            if whole {
                assert_eq!(exact, Some(bytes.len() as u64), "{chunks:?} {limit}");
            }
        }
    }

    #[tokio::test]
    async fn the_end_of_a_watched_body_is_told_once_it_is_read() {
        let (body, mut ended) = watch_end(chunked(&["ab", "cd"]));
        assert!(ended.try_recv().is_err(), "not ended before it is read");
        assert_eq!(collect(body).await.0, b"abcd");
        assert!(matches!(
            ended.try_recv(),
            Ok(()) | Err(oneshot::error::TryRecvError::Closed)
        ));
        let (_, ended) = watch_end(full(""));
        assert!(
            ended.await.is_ok(),
            "an empty body has ended from the start"
        );
    }

    #[tokio::test]
    async fn a_declared_length_over_the_limit_is_not_read_and_keeps_its_length() {
        let body = buffer(full("0123456789"), 4).await.unwrap();
        assert_eq!(body.size_hint().exact(), Some(10));
        assert_eq!(collect(body).await.0, b"0123456789");
    }

    #[tokio::test]
    async fn a_silent_client_fails_the_body_after_the_timeout_only() {
        let (tx, rx) = futures::channel::mpsc::channel::<Result<Frame<Bytes>, BoxError>>(4);
        let body = timed(StreamBody::new(rx).boxed(), Duration::from_millis(800));
        let mut tx = tx;
        let reader = tokio::spawn(async move {
            let mut body = body;
            let mut got = Vec::new();
            while let Some(frame) = body.frame().await {
                match frame {
                    Ok(f) => got.extend_from_slice(&f.into_data().unwrap()),
                    Err(e) => return (got, Some(e.to_string())),
                }
            }
            (got, None)
        });
        // A byte every 200 ms keeps it going well past one timeout in total...
        for b in ["a", "b", "c", "d", "e", "f"] {
            tokio::time::sleep(Duration::from_millis(200)).await;
            futures::SinkExt::send(&mut tx, Ok(Frame::data(Bytes::from(b))))
                .await
                .unwrap();
        }
        // ...then silence ends it.
        let (got, err) = reader.await.unwrap();
        assert_eq!(got, b"abcdef");
        assert!(err.unwrap().contains("no request body bytes"));
        drop(tx);
    }
}
