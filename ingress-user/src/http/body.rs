//! Body types shared by the server and the proxy: one boxed body for every response, and a
//! body that can be taken back when an upstream connection fails before it was read.

use std::{
    pin::Pin,
    sync::{Arc, Mutex, PoisonError},
    task::{Context, Poll},
};

use bytes::Bytes;
use http_body_util::{BodyExt as _, Empty, Full, combinators::BoxBody};
use hyper::body::{Body as HttpBody, Frame, SizeHint};

/// Any error a body can fail with.
pub type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// The body of every response the router sends (local answers and proxied upstream bodies).
pub type Body = BoxBody<Bytes, BoxError>;

/// A complete body from bytes.
pub fn full(bytes: impl Into<Bytes>) -> Body {
    Full::new(bytes.into())
        .map_err(|never| match never {})
        .boxed()
}

/// An empty body.
pub fn empty() -> Body {
    Empty::new().map_err(|never| match never {}).boxed()
}

/// The request body went over `--max-body-bytes` while streaming.
#[derive(Debug, thiserror::Error)]
#[error("request body larger than {limit} bytes")]
pub struct BodyLimitError {
    /// The limit in force.
    pub limit: u64,
}

/// Caps `body` at `limit` bytes; going over fails the body with [`BodyLimitError`].
pub fn limited<B>(body: B, limit: u64) -> Body
where
    B: HttpBody<Data = Bytes> + Send + Sync + 'static,
    B::Error: Into<BoxError>,
{
    let cap = usize::try_from(limit).unwrap_or(usize::MAX);
    http_body_util::Limited::new(body, cap)
        .map_err(move |e| {
            if e.is::<http_body_util::LengthLimitError>() {
                Box::new(BodyLimitError { limit }) as BoxError
            } else {
                e
            }
        })
        .boxed()
}

/// A body whose inner body stays reclaimable until the first time it is polled.
///
/// The pooled client consumes the request it is given; when connecting to the endpoint
/// fails, no byte of the body was read, and [`Reclaim::take`] gives it back so the request
/// can be retried on another endpoint without buffering it.
pub struct ReclaimableBody<B> {
    slot: Arc<Mutex<Option<B>>>,
    inner: Option<B>,
}

/// The handle that gives back a [`ReclaimableBody`]'s inner body if it was never polled.
pub struct Reclaim<B> {
    slot: Arc<Mutex<Option<B>>>,
}

impl<B> ReclaimableBody<B> {
    /// Wraps `body`, returning the body to send and the handle to take it back.
    pub fn new(body: B) -> (Self, Reclaim<B>) {
        let slot = Arc::new(Mutex::new(Some(body)));
        (
            Self {
                slot: Arc::clone(&slot),
                inner: None,
            },
            Reclaim { slot },
        )
    }
}

impl<B> Reclaim<B> {
    /// The inner body, if nobody has started reading it.
    pub fn take(&self) -> Option<B> {
        self.slot
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .take()
    }
}

impl<B> HttpBody for ReclaimableBody<B>
where
    B: HttpBody + Unpin,
{
    type Data = B::Data;
    type Error = B::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Self::Data>, Self::Error>>> {
        let this = &mut *self;
        if this.inner.is_none() {
            this.inner = this
                .slot
                .lock()
                .unwrap_or_else(PoisonError::into_inner)
                .take();
        }
        match this.inner.as_mut() {
            Some(inner) => Pin::new(inner).poll_frame(cx),
            // Reclaimed by the retry path: this copy of the request is abandoned anyway.
            None => Poll::Ready(None),
        }
    }

    fn is_end_stream(&self) -> bool {
        match &self.inner {
            Some(inner) => inner.is_end_stream(),
            None => self
                .slot
                .lock()
                .unwrap_or_else(PoisonError::into_inner)
                .as_ref()
                .is_none_or(HttpBody::is_end_stream),
        }
    }

    fn size_hint(&self) -> SizeHint {
        match &self.inner {
            Some(inner) => inner.size_hint(),
            None => self
                .slot
                .lock()
                .unwrap_or_else(PoisonError::into_inner)
                .as_ref()
                .map_or_else(|| SizeHint::with_exact(0), HttpBody::size_hint),
        }
    }
}

#[cfg(test)]
mod tests {
    use http_body_util::BodyExt as _;

    use super::*;

    #[tokio::test]
    async fn unpolled_body_is_reclaimed_whole() {
        let (body, reclaim) = ReclaimableBody::new(full("payload"));
        drop(body);
        let back = reclaim.take().expect("body was never polled");
        assert_eq!(back.collect().await.unwrap().to_bytes(), "payload");
    }

    #[tokio::test]
    async fn polled_body_is_not_reclaimable() {
        let (body, reclaim) = ReclaimableBody::new(full("payload"));
        assert_eq!(body.collect().await.unwrap().to_bytes(), "payload");
        assert!(reclaim.take().is_none());
    }

    #[test]
    fn size_hint_passes_through_before_polling() {
        let (body, _reclaim) = ReclaimableBody::new(full("12345"));
        assert_eq!(body.size_hint().exact(), Some(5));
        assert!(!body.is_end_stream());
    }
}
