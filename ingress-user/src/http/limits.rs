//! Limits and timeouts of the L7 router, with defaults that protect it without surprising
//! ordinary clients.

use std::time::Duration;

/// What the router tolerates from clients and waits for from upstreams.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Limits {
    /// How long a client may take to send a request's headers (slowloris protection). For
    /// HTTP/1 it also bounds how long an idle keep-alive connection stays open, and for
    /// TLS how long the handshake may take.
    pub header_read_timeout: Duration,
    /// Largest request head (request line and headers) accepted; larger gets 431.
    /// hyper's read buffer cannot go below 8 KiB, so smaller values act as 8 KiB for HTTP/1.
    pub max_header_bytes: usize,
    /// Largest request body accepted; larger gets 413. `None`: unlimited (streamed).
    pub max_body_bytes: Option<u64>,
    /// How long a client may send nothing while sending a request body (nginx's
    /// `client_body_timeout`); then the request gets 408.
    pub client_body_timeout: Duration,
    /// Request bodies up to this size are read whole before an upstream connection is
    /// taken; larger ones stream.
    pub client_body_buffer_size: usize,
    /// How long connecting to an upstream endpoint may take before it counts as failed
    /// (and the request is retried on another endpoint).
    pub upstream_connect_timeout: Duration,
    /// How long an upstream may take to send response headers once the request is fully
    /// sent (longer gets 504), how long it may stay silent while sending the body (then
    /// the response is cut), and how long a write of the request to it may block.
    pub upstream_response_timeout: Duration,
    /// How long idle pooled upstream connections are kept, how long a client connection
    /// served by hyper (HTTP/2 above all) may have no request open before it is closed
    /// gracefully, and the HTTP/2 keep-alive ping interval towards clients.
    pub idle_timeout: Duration,
    /// How long in-flight requests may take to finish after shutdown starts.
    pub shutdown_grace_period: Duration,
    /// The status of requests over an Ingress's `limit-rps`/`limit-rpm`.
    pub limit_req_status: hyper::StatusCode,
    /// The status of requests over an Ingress's `limit-connections`.
    pub limit_conn_status: hyper::StatusCode,
}

impl Default for Limits {
    fn default() -> Self {
        Self {
            header_read_timeout: Duration::from_secs(20),
            max_header_bytes: 32 * 1024,
            max_body_bytes: None,
            client_body_timeout: Duration::from_secs(60),
            client_body_buffer_size: 64 * 1024,
            upstream_connect_timeout: Duration::from_secs(5),
            upstream_response_timeout: Duration::from_secs(60),
            idle_timeout: Duration::from_secs(60),
            shutdown_grace_period: Duration::from_secs(30),
            // ingress-nginx's defaults.
            limit_req_status: hyper::StatusCode::SERVICE_UNAVAILABLE,
            limit_conn_status: hyper::StatusCode::SERVICE_UNAVAILABLE,
        }
    }
}

/// The smallest read buffer hyper's HTTP/1 server accepts.
pub const MIN_HTTP1_BUF: usize = 8 * 1024;
