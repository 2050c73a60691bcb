//! The one place where a failure becomes an HTTP status, a short body and a metrics label.

use std::{net::SocketAddr, time::Duration};

use hyper::{Response, StatusCode, header};

use super::body::{Body, BoxError, full};
use crate::config::ServiceRef;

/// Why a request was answered locally instead of by an upstream.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// No rule matched and there is no default backend.
    #[error("no route for this host and path")]
    NoRoute,
    /// A Gateway API rule chose a backendRef that cannot be used (no such Service, a
    /// reference not permitted, no backend with a weight): the spec's 500.
    #[error("the route's backend is invalid")]
    InvalidBackend,
    /// The matched Service has no ready (or serving) endpoints.
    #[error("service {0} has no endpoints")]
    NoEndpoints(ServiceRef),
    /// Connecting to the endpoint failed (refused, unreachable, connect timeout).
    #[error("connecting to {addr} failed: {source}")]
    Connect {
        /// The endpoint.
        addr: SocketAddr,
        /// What the connector said.
        #[source]
        source: BoxError,
    },
    /// The upstream did not send response headers in time.
    #[error("upstream {addr} sent no response within {timeout:?}")]
    UpstreamTimeout {
        /// The endpoint.
        addr: SocketAddr,
        /// The `--upstream-response-timeout` in force.
        timeout: Duration,
    },
    /// The upstream connection broke or the upstream sent something unusable.
    #[error("upstream {addr} failed: {source}")]
    Upstream {
        /// The endpoint.
        addr: SocketAddr,
        /// What the client said.
        #[source]
        source: BoxError,
    },
    /// The request itself is unusable (e.g. an unparsable URI).
    #[error("bad request: {0}")]
    BadRequest(&'static str),
    /// The request has no one valid host (duplicate, missing, invalid, or HTTP/2
    /// `:authority` and `host` disagreeing).
    #[error("bad request: {0}")]
    BadHost(#[from] super::host::HostError),
    /// The request body broke off or its framing is invalid (e.g. bad chunk sizes).
    #[error("bad request body: {0}")]
    BadRequestBody(#[source] BoxError),
    /// The client sent nothing for `--client-body-timeout` while sending the body.
    #[error("client sent no body bytes for {0:?}")]
    ClientBodyTimeout(Duration),
    /// The client was too slow to send its request.
    #[error("request timeout")]
    RequestTimeout,
    /// The request body is larger than `--max-body-bytes`.
    #[error("request body larger than {limit} bytes")]
    BodyTooLarge {
        /// The limit in force.
        limit: u64,
    },
    /// The request headers are larger than `--max-header-bytes`.
    #[error("request headers too large")]
    HeadersTooLarge,
    /// The client address is refused by the route's source ranges (`denylist-source-range`,
    /// `allowlist-source-range`).
    #[error("client address refused by the route's source ranges")]
    Forbidden,
    /// The route's access annotations are unusable, so it serves nobody (fails closed).
    #[error("the route's access annotations are invalid")]
    LocationDenied,
    /// Over the route's `limit-rps`, `limit-rpm` or `limit-connections` for this client;
    /// the status of `--limit-req-status-code` or `--limit-conn-status-code`.
    #[error("client over the route's request limits")]
    RateLimited(StatusCode),
    /// `auth-type: basic` and no valid credentials: 401 with the realm.
    #[error("missing or wrong credentials")]
    Unauthorized {
        /// `auth-realm`.
        realm: String,
    },
    /// The user's password hash in the `auth-secret` cannot be checked (nginx's 500).
    #[error("the user's password hash cannot be checked")]
    AuthUnusable,
}

impl Error {
    /// The status the client gets.
    pub fn status(&self) -> StatusCode {
        match self {
            Self::NoRoute => StatusCode::NOT_FOUND,
            Self::InvalidBackend => StatusCode::INTERNAL_SERVER_ERROR,
            Self::NoEndpoints(_) => StatusCode::SERVICE_UNAVAILABLE,
            Self::Connect { .. } | Self::Upstream { .. } => StatusCode::BAD_GATEWAY,
            Self::UpstreamTimeout { .. } => StatusCode::GATEWAY_TIMEOUT,
            Self::BadRequest(_) | Self::BadHost(_) | Self::BadRequestBody(_) => {
                StatusCode::BAD_REQUEST
            }
            Self::RequestTimeout | Self::ClientBodyTimeout(_) => StatusCode::REQUEST_TIMEOUT,
            Self::BodyTooLarge { .. } => StatusCode::PAYLOAD_TOO_LARGE,
            Self::HeadersTooLarge => StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE,
            Self::Forbidden => StatusCode::FORBIDDEN,
            Self::LocationDenied => StatusCode::SERVICE_UNAVAILABLE,
            Self::RateLimited(status) => *status,
            Self::Unauthorized { .. } => StatusCode::UNAUTHORIZED,
            Self::AuthUnusable => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }

    /// A stable snake_case label for metrics and logs.
    pub fn label(&self) -> &'static str {
        match self {
            Self::NoRoute => "no_route",
            Self::InvalidBackend => "invalid_backend",
            Self::NoEndpoints(_) => "no_endpoints",
            Self::Connect { .. } => "connect_failed",
            Self::UpstreamTimeout { .. } => "upstream_timeout",
            Self::Upstream { .. } => "upstream_failed",
            Self::BadRequest(_) => "bad_request",
            Self::BadHost(_) => "bad_host",
            Self::BadRequestBody(_) => "bad_request_body",
            Self::ClientBodyTimeout(_) => "client_body_timeout",
            Self::RequestTimeout => "request_timeout",
            Self::BodyTooLarge { .. } => "body_too_large",
            Self::HeadersTooLarge => "headers_too_large",
            Self::Forbidden => "forbidden",
            Self::LocationDenied => "location_denied",
            Self::RateLimited(_) => "rate_limited",
            Self::Unauthorized { .. } => "unauthorized",
            Self::AuthUnusable => "auth_unusable",
        }
    }

    /// Whose fault it is: the client's (4xx), the upstream's (5xx), the configuration's
    /// (an Ingress whose annotations make it serve nobody), or nobody's (no route: an
    /// ordinary 404).
    pub fn fault(&self) -> &'static str {
        match self {
            Self::NoRoute => "none",
            Self::LocationDenied | Self::InvalidBackend | Self::AuthUnusable => "config",
            Self::NoEndpoints(_)
            | Self::Connect { .. }
            | Self::UpstreamTimeout { .. }
            | Self::Upstream { .. } => "upstream",
            Self::BadRequest(_)
            | Self::BadHost(_)
            | Self::BadRequestBody(_)
            | Self::ClientBodyTimeout(_)
            | Self::RequestTimeout
            | Self::BodyTooLarge { .. }
            | Self::HeadersTooLarge
            | Self::Forbidden
            | Self::RateLimited(_)
            | Self::Unauthorized { .. } => "client",
        }
    }

    /// The error for a request body that failed while it was read: over
    /// `--max-body-bytes` (413), silent for `--client-body-timeout` (408), else broken
    /// framing or a client gone mid-body (400). Each is the client's fault.
    pub fn from_request_body(e: BoxError) -> Self {
        let mut cur: Option<&(dyn std::error::Error + 'static)> = Some(&*e);
        while let Some(err) = cur {
            if let Some(limited) = err.downcast_ref::<super::body::BodyLimitError>() {
                return Self::BodyTooLarge {
                    limit: limited.limit,
                };
            }
            if let Some(timeout) = err.downcast_ref::<super::upload::BodyTimeoutError>() {
                return Self::ClientBodyTimeout(timeout.timeout);
            }
            cur = err.source();
        }
        Self::BadRequestBody(e)
    }

    /// The short body the client reads. It never echoes request data or internal addresses.
    fn body(&self) -> &'static str {
        match self {
            Self::NoRoute => "404 not found: no route for this host and path\n",
            Self::InvalidBackend => "500 internal server error: the route's backend is invalid\n",
            Self::NoEndpoints(_) => "503 service unavailable: the service has no endpoints\n",
            Self::Connect { .. } => "502 bad gateway: could not connect to the service\n",
            Self::Upstream { .. } => "502 bad gateway: the service failed to answer\n",
            Self::UpstreamTimeout { .. } => {
                "504 gateway timeout: the service did not answer in time\n"
            }
            Self::BadRequest(_) | Self::BadRequestBody(_) => "400 bad request\n",
            Self::BadHost(_) => "400 bad request: invalid or ambiguous host\n",
            Self::RequestTimeout | Self::ClientBodyTimeout(_) => "408 request timeout\n",
            Self::BodyTooLarge { .. } => "413 request body too large\n",
            Self::HeadersTooLarge => "431 request header fields too large\n",
            Self::Forbidden => "403 forbidden\n",
            Self::LocationDenied => {
                "503 service unavailable: this route's access annotations are invalid\n"
            }
            Self::RateLimited(_) => "too many requests from this address\n",
            // nginx's page says "401 Authorization Required" (ingress-nginx's e2e tests look
            // for it).
            Self::Unauthorized { .. } => "401 Authorization Required\n",
            Self::AuthUnusable => "500 internal server error\n",
        }
    }

    /// The response for this failure.
    pub fn to_response(&self) -> Response<Body> {
        let body = match self {
            // The status is configurable (--limit-req-status-code): the body starts with it.
            Self::RateLimited(status) => full(format!("{} {}", status.as_u16(), self.body())),
            _ => full(self.body()),
        };
        let mut resp = Response::new(body);
        *resp.status_mut() = self.status();
        resp.headers_mut().insert(
            header::CONTENT_TYPE,
            header::HeaderValue::from_static("text/plain; charset=utf-8"),
        );
        // nginx's challenge, the realm quoted as is (checked when the Snapshot was built).
        if let Self::Unauthorized { realm } = self {
            let challenge = header::HeaderValue::try_from(format!("Basic realm=\"{realm}\""))
                .unwrap_or(header::HeaderValue::from_static("Basic realm=\"\""));
            resp.headers_mut()
                .insert(header::WWW_AUTHENTICATE, challenge);
        }
        resp
    }
}

#[cfg(test)]
mod tests {
    use std::io;

    use http_body_util::BodyExt as _;

    use super::*;

    fn svc() -> ServiceRef {
        ServiceRef {
            namespace: "default".into(),
            name: "web".into(),
            port: 80,
        }
    }

    fn addr() -> SocketAddr {
        "10.0.0.1:8080".parse().unwrap()
    }

    #[tokio::test]
    async fn each_cause_maps_to_its_status_label_and_body() {
        let refused =
            || -> BoxError { Box::new(io::Error::from(io::ErrorKind::ConnectionRefused)) };
        let cases: Vec<(Error, u16, &str)> = vec![
            (Error::NoRoute, 404, "no_route"),
            (Error::InvalidBackend, 500, "invalid_backend"),
            (Error::Forbidden, 403, "forbidden"),
            (Error::LocationDenied, 503, "location_denied"),
            (
                Error::RateLimited(StatusCode::SERVICE_UNAVAILABLE),
                503,
                "rate_limited",
            ),
            (
                Error::RateLimited(StatusCode::TOO_MANY_REQUESTS),
                429,
                "rate_limited",
            ),
            (
                Error::Unauthorized {
                    realm: String::new(),
                },
                401,
                "unauthorized",
            ),
            (Error::AuthUnusable, 500, "auth_unusable"),
            (Error::NoEndpoints(svc()), 503, "no_endpoints"),
            (
                Error::Connect {
                    addr: addr(),
                    source: refused(),
                },
                502,
                "connect_failed",
            ),
            (
                Error::Upstream {
                    addr: addr(),
                    source: refused(),
                },
                502,
                "upstream_failed",
            ),
            (
                Error::UpstreamTimeout {
                    addr: addr(),
                    timeout: Duration::from_secs(1),
                },
                504,
                "upstream_timeout",
            ),
            (Error::BadRequest("no uri"), 400, "bad_request"),
            (
                Error::BadHost(crate::http::host::HostError::Duplicate),
                400,
                "bad_host",
            ),
            (
                Error::BadRequestBody("bad chunk".into()),
                400,
                "bad_request_body",
            ),
            (
                Error::ClientBodyTimeout(Duration::from_secs(1)),
                408,
                "client_body_timeout",
            ),
            (Error::RequestTimeout, 408, "request_timeout"),
            (Error::BodyTooLarge { limit: 10 }, 413, "body_too_large"),
            (Error::HeadersTooLarge, 431, "headers_too_large"),
        ];
        for (err, status, label) in cases {
            assert_eq!(err.status().as_u16(), status, "{err}");
            assert_eq!(err.label(), label, "{err}");
            let resp = err.to_response();
            assert_eq!(resp.status().as_u16(), status);
            let body = resp.into_body().collect().await.unwrap().to_bytes();
            let body = std::str::from_utf8(&body).unwrap();
            assert!(body.starts_with(&status.to_string()), "{label}: {body:?}");
            assert!(
                !body.contains("10.0.0.1"),
                "{label} leaks the endpoint address: {body:?}"
            );
        }
    }
}
