//! `mirror-target`: a copy of each request of the route goes to the target, fire and
//! forget, through the Gateway API RequestMirror path (`gateway`: bounded copies in
//! flight, the answer read and dropped, outcomes counted in `http_mirror_requests`). The
//! copy has the request's method and headers, the target's path (with the original path
//! and query where the URL ends with `$request_uri`) and `Host` (`mirror-host`, else the
//! URL's). Its body is the request's when that is read whole anyway (at most the route's
//! client body buffer size; a longer body streams to the backend only and the copy is
//! skipped), none with `mirror-request-body: off`.

use std::sync::Arc;

use bytes::Bytes;
use hyper::body::Body as _;
use hyper::{
    Request, Uri,
    header::{self, HeaderValue},
    http::request::Parts,
};

use super::Router;
use crate::{
    http::{
        body::{Body, BoxError, empty, full},
        headers::ProxyHeaders,
        proxy::Upstream,
        upload::{Buffered, buffer, buffer_whole},
    },
    snapshot::{gateway::Mirror, policy::RoutePolicy, routes::Backend},
};

/// The head of the copy of a request (`parts`, as forwarded) for the policy's target;
/// `None` if the target path does not make a URI. Pure.
pub(super) fn mirror_head(policy: &RoutePolicy, parts: &Parts, with_body: bool) -> Option<Parts> {
    let target = policy.mirror_target.as_ref()?;
    let original = parts.uri.path_and_query().map_or("/", |pq| pq.as_str());
    let uri: Uri = target.path_for(original).parse().ok()?;
    let (mut head, ()) = Request::new(()).into_parts();
    head.method = parts.method.clone();
    head.uri = uri;
    head.version = parts.version;
    head.headers = parts.headers.clone();
    let host = match &policy.mirror_host {
        Some(h) => h.clone(),
        None => HeaderValue::from_str(&target.authority).ok()?,
    };
    head.headers.insert(header::HOST, host);
    if !with_body {
        for name in [
            header::CONTENT_LENGTH,
            header::TRANSFER_ENCODING,
            header::EXPECT,
        ] {
            head.headers.remove(name);
        }
    }
    Some(head)
}

impl Router {
    /// Reads the request body as far as the route needs, sends the copy to `to`, and
    /// returns the body for the backend.
    #[expect(
        clippy::too_many_arguments,
        reason = "one request's context, as `forward`"
    )]
    pub(super) async fn mirror_ingress(
        self: &Arc<Self>,
        upstream: &Arc<Upstream>,
        policy: &RoutePolicy,
        to: &Arc<Backend>,
        parts: &Parts,
        extra: &ProxyHeaders,
        body: Body,
        size: usize,
    ) -> Result<Body, BoxError> {
        let m = Mirror {
            backend: Arc::clone(to),
            percent: 100.0,
        };
        let bodiless = body.is_end_stream();
        if policy.mirror_skip_body || bodiless {
            if let Some(head) = mirror_head(policy, parts, false) {
                self.mirror(upstream, &m, &head, extra, Bytes::new());
            }
            return if bodiless {
                Ok(body)
            } else {
                buffer(body, size).await
            };
        }
        match buffer_whole(body, size).await? {
            Buffered::Whole(bytes) => {
                if let Some(head) = mirror_head(policy, parts, true) {
                    self.mirror(upstream, &m, &head, extra, bytes.clone());
                }
                Ok(if bytes.is_empty() {
                    empty()
                } else {
                    full(bytes)
                })
            }
            Buffered::Streaming(body) => {
                self.count_mirror(&m, "skipped_body");
                Ok(body)
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_copy_goes_to_the_target_path_and_host() {
        let (parts, ()) = Request::post("/x?y=1")
            .header("host", "mirror.foo.com")
            .header("content-length", "3")
            .header("x-a", "1")
            .body(())
            .unwrap()
            .into_parts();
        for (target, host, with_body, uri, want_host) in [
            ("http://10.0.0.1/mirror", None, true, "/mirror", "10.0.0.1"),
            (
                "http://10.0.0.1:81$request_uri",
                None,
                true,
                "/x?y=1",
                "10.0.0.1:81",
            ),
            (
                "http://mirror.ns/m$request_uri",
                Some("test.env.com"),
                false,
                "/m/x?y=1",
                "test.env.com",
            ),
        ] {
            let policy = RoutePolicy {
                mirror_target: Some(target.parse().unwrap()),
                mirror_host: host.map(HeaderValue::from_static),
                ..RoutePolicy::default()
            };
            let head = mirror_head(&policy, &parts, with_body).unwrap();
            assert_eq!(head.uri, uri, "{target}");
            assert_eq!(head.method, "POST");
            assert_eq!(head.headers["host"], want_host, "{target}");
            assert_eq!(head.headers["x-a"], "1");
            assert_eq!(
                head.headers.contains_key("content-length"),
                with_body,
                "{target}"
            );
        }
    }
}
