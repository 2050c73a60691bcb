//! `default-backend` and `custom-http-errors`: ingress-nginx's error pages. A forwarded
//! request whose answer has one of the Ingress's `custom-http-errors` statuses (upstream
//! or proxy-made, as nginx's `error_page`), or whose Service has no endpoints while the
//! Ingress names a `default-backend`, is answered by the default backend instead (the
//! annotation's, else the global one): it gets a copy of the request head (same method, no body) for `/` with
//! the headers ingress-nginx's `@custom_*` locations set (`X-Code`, `X-Format`,
//! `X-Original-URI`, `X-Namespace`, `X-Ingress-Name`, `X-Service-Name`, `X-Service-Port`;
//! `X-Request-ID` and the forwarding headers as for the original request), and its answer
//! goes to the client unchanged (status included), as nginx does.

use std::sync::Arc;

use hyper::{
    Request, Response, Uri,
    header::{self, HeaderName, HeaderValue},
    http::request::Parts,
};
use tracing::debug;

use super::Router;
use crate::{
    http::{
        body::{Body, empty},
        headers::ProxyHeaders,
        proxy::{Outgoing, Upstream},
    },
    snapshot::{policy::RoutePolicy, routes::Backend},
};

/// Where a route's error pages come from.
#[derive(Debug)]
pub(super) struct ErrorPages {
    policy: Arc<RoutePolicy>,
    backend: Arc<Backend>,
}

impl ErrorPages {
    /// The error pages of a route with `policy`, `global` being the default backend of
    /// unmatched requests; `None` when it has none (or no backend can give them). Boxed: it
    /// rides in the forwarding future.
    pub(super) fn of(
        policy: Option<&Arc<RoutePolicy>>,
        global: Option<&Arc<Backend>>,
    ) -> Option<Box<Self>> {
        let policy = policy?;
        if policy.custom_http_errors.is_empty() && policy.default_backend.is_none() {
            return None;
        }
        let backend = policy.default_backend.as_ref().or(global)?;
        Some(Box::new(Self {
            backend: Arc::clone(backend),
            policy: Arc::clone(policy),
        }))
    }

    /// Whether a request to `backend` goes to the default backend at once (503): its
    /// Service has no endpoints and the Ingress names a `default-backend`.
    pub(super) fn replaces_unserved(&self, backend: &Backend) -> bool {
        self.policy.default_backend.is_some() && backend.endpoints.is_empty()
    }

    /// Whether an answer with `status` is replaced.
    pub(super) fn intercepts(&self, status: u16) -> bool {
        self.policy
            .custom_http_errors
            .binary_search(&status)
            .is_ok()
    }
}

/// The head of the request to the default backend for an error `code` of a request to
/// `failed` (its head as forwarded: `parts`). Pure.
pub(super) fn error_request(code: u16, failed: &Backend, parts: &Parts) -> Parts {
    let (mut head, ()) = Request::new(()).into_parts();
    head.method = parts.method.clone();
    head.uri = Uri::from_static("/");
    head.version = parts.version;
    head.headers = parts.headers.clone();
    // No body goes with it.
    for name in [
        header::CONTENT_LENGTH,
        header::TRANSFER_ENCODING,
        header::EXPECT,
    ] {
        head.headers.remove(name);
    }
    let format = parts.headers.get(header::ACCEPT).cloned();
    let original = parts.uri.path_and_query().map_or("/", |pq| pq.as_str());
    let ingress = failed.ingress.as_ref();
    let service = &failed.service;
    let set: [(&str, Option<HeaderValue>); 7] = [
        ("x-code", Some(HeaderValue::from(code))),
        ("x-format", format),
        ("x-original-uri", HeaderValue::from_str(original).ok()),
        (
            "x-namespace",
            HeaderValue::from_str(&service.namespace).ok(),
        ),
        (
            "x-ingress-name",
            ingress.and_then(|i| HeaderValue::from_str(&i.name).ok()),
        ),
        ("x-service-name", HeaderValue::from_str(&service.name).ok()),
        ("x-service-port", Some(HeaderValue::from(service.port))),
    ];
    for (name, value) in set {
        let name = HeaderName::from_static(name);
        match value {
            Some(v) => {
                head.headers.insert(name, v);
            }
            None => {
                head.headers.remove(name);
            }
        }
    }
    head
}

impl Router {
    /// The default backend's answer for an error `code` of a request to `failed`; a
    /// failure to get one is answered as any forwarding failure.
    pub(super) async fn error_page(
        &self,
        upstream: &Upstream,
        pages: &ErrorPages,
        code: u16,
        failed: &Backend,
        parts: &Parts,
        extra: &ProxyHeaders,
    ) -> Response<Body> {
        let head = error_request(code, failed, parts);
        let out = Outgoing {
            parts: &head,
            extra,
            sticky: None,
        };
        let backend = &pages.backend;
        debug!(code, service = %failed.service, error_backend = %backend.service, "answering with the default backend's error page");
        let sent = upstream
            .forward(
                &self.balancer,
                &self.metrics,
                backend,
                out,
                empty(),
                None,
                &mut None,
            )
            .await;
        sent.unwrap_or_else(|e| {
            debug!(error = %e, "the default backend's error page failed");
            e.to_response()
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::snapshot::{Endpoints, ObjectRef, ServiceRef};

    /// default_backend.go and the custom-errors reference: the headers ingress-nginx
    /// sends to the default backend.
    #[test]
    fn error_request_carries_ingress_nginx_headers() {
        let failed = Backend::new(
            ServiceRef {
                namespace: "ns".into(),
                name: "invalid".into(),
                port: 80,
            },
            Endpoints::default(),
            Some(ObjectRef {
                kind: "Ingress".into(),
                namespace: Some("ns".into()),
                name: "default-backend".into(),
            }),
        );
        let (parts, ()) = Request::post("/alma/armud?x=1")
            .header("accept", "application/json")
            .header("content-length", "5")
            .header("x-request-id", "something-unique")
            .header("x-code", "spoofed")
            .body(())
            .unwrap()
            .into_parts();
        let head = error_request(503, &failed, &parts);
        assert_eq!(head.uri, "/");
        assert_eq!(head.method, "POST");
        let h = |n: &str| head.headers.get(n).map(|v| v.to_str().unwrap().to_owned());
        for (name, want) in [
            ("x-code", Some("503")),
            ("x-format", Some("application/json")),
            ("x-original-uri", Some("/alma/armud?x=1")),
            ("x-namespace", Some("ns")),
            ("x-ingress-name", Some("default-backend")),
            ("x-service-name", Some("invalid")),
            ("x-service-port", Some("80")),
            ("x-request-id", Some("something-unique")),
            ("content-length", None),
        ] {
            assert_eq!(h(name).as_deref(), want, "{name}");
        }
        let (parts, ()) = Request::get("/").body(()).unwrap().into_parts();
        let head = error_request(404, &failed, &parts);
        assert!(head.headers.get("x-format").is_none());
    }
}
