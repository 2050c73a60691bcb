//! Body types shared by the server and the proxy: one boxed body for every response, and
//! the `--max-body-bytes` cap on request bodies.

use bytes::Bytes;
use http_body_util::{BodyExt as _, Empty, Full, combinators::BoxBody};
use hyper::body::Body as HttpBody;

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
