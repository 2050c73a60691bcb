//! Counters of the L7 router, as prometheus-client types the ops module registers.

use std::sync::Arc;

use prometheus_client::{
    encoding::EncodeLabelSet,
    metrics::{
        counter::Counter,
        family::Family,
        gauge::Gauge,
        histogram::{Histogram, exponential_buckets},
    },
    registry::Registry,
};

/// Labels of a finished request.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct RequestLabels {
    /// `namespace/name` of the Ingress that routed it; empty for the default backend.
    pub ingress: Arc<String>,
    /// `namespace/name:port` of the Service; empty when answered locally.
    pub service: Arc<String>,
    /// Response status code.
    pub status: u16,
}

/// Labels of a forwarded request's latency.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct RouteLabels {
    /// `namespace/name` of the Ingress that routed it; empty for the default backend.
    pub ingress: Arc<String>,
    /// `namespace/name:port` of the Service.
    pub service: Arc<String>,
}

/// The latency buckets: 1 ms to about 33 s, doubling.
fn latency_histogram() -> Histogram {
    Histogram::new(exponential_buckets(0.001, 2.0, 16))
}

/// Labels of a locally answered failure.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ErrorLabels {
    /// The rescue label, e.g. `no_route`, `connect_failed`.
    pub kind: &'static str,
    /// Whose fault: `client` (4xx), `upstream` (5xx) or `none` (no route).
    pub fault: &'static str,
}

/// Labels of request header lines the router dropped.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct DroppedHeaderLabels {
    /// Why: `underscore` (a name with `_`, see `--allow-underscores-in-headers`).
    pub reason: &'static str,
}

/// Labels of upstream connections closed instead of reused.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct DiscardLabels {
    /// Why: `closed` (the upstream closed it while idle), `unsolicited_bytes` (it sent
    /// bytes while idle), `surplus_bytes` (bytes past the end of a response).
    pub reason: &'static str,
}

/// Labels of a completed TLS handshake.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct HandshakeLabels {
    /// `full` (certificate and signature sent) or `resumed` (from a ticket or the session
    /// cache: no signature, no certificate).
    pub kind: &'static str,
}

/// Labels naming a Service.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ServiceLabels {
    /// `namespace/name:port`.
    pub service: String,
}

/// Labels of a connection whose ClientHello could not be read (TLS passthrough).
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ClientHelloErrorLabels {
    /// Why: `not_tls`, `bad_record`, `not_client_hello`, `oversized`, `malformed`,
    /// `bad_sni`, `truncated`, `too_long`, `timeout`.
    pub reason: &'static str,
}

/// Labels of a TLS connection a Passthrough listener or `ssl-passthrough` host took.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct PassthroughLabels {
    /// `passed` (spliced to an endpoint until closed), `no_route`, `invalid_backend`,
    /// `no_endpoints`, `connect_failed`.
    pub outcome: &'static str,
}

/// Labels of mirrored requests (Gateway API RequestMirror).
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct MirrorLabels {
    /// `namespace/name:port` of the mirror's Service.
    pub service: Arc<String>,
    /// `sent` (the mirror answered), `failed` (no endpoint, connect or upstream error),
    /// `skipped_body` (the request body was too large to copy), `dropped_busy` (too many
    /// mirrors in flight).
    pub outcome: &'static str,
}

/// Labels of a Gateway listening address.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ListenerLabels {
    /// The address as bound, e.g. `127.0.0.2:80`.
    pub address: String,
}

/// The router's metrics. Cheap to update from the data path (atomics only).
#[derive(Debug)]
pub struct Metrics {
    /// Requests answered, by Ingress, Service and status.
    pub requests: Family<RequestLabels, Counter>,
    /// Time from a forwarded request's head to its response head, by Ingress and Service.
    pub request_duration: Family<RouteLabels, Histogram, fn() -> Histogram>,
    /// Access log lines dropped: the writer fell behind (queue full) or writing failed.
    pub access_log_dropped: Counter,
    /// Requests answered locally because of a failure, by cause.
    pub errors: Family<ErrorLabels, Counter>,
    /// Failed connection attempts to upstream endpoints, by Service (retries included).
    pub upstream_connect_errors: Family<ServiceLabels, Counter>,
    /// Failed TLS handshakes with upstreams (`backend-protocol: HTTPS | GRPCS`).
    pub upstream_tls_handshake_errors: Family<ServiceLabels, Counter>,
    /// Client connections currently open (HTTP and HTTPS listeners).
    pub active_connections: Gauge,
    /// Upgraded connections (WebSockets) currently tunnelled.
    pub active_tunnels: Gauge,
    /// TLS handshakes that failed.
    pub tls_handshake_errors: Counter,
    /// TLS handshakes completed, full or resumed (the resumption rate shows whether
    /// clients come back with tickets).
    pub tls_handshakes: Family<HandshakeLabels, Counter>,
    /// Request header lines dropped, by reason.
    pub headers_dropped: Family<DroppedHeaderLabels, Counter>,
    /// Upstream connections closed instead of reused, by reason.
    pub upstream_discarded: Family<DiscardLabels, Counter>,
    /// Mirrored request copies, by mirror Service and outcome.
    pub mirrors: Family<MirrorLabels, Counter>,
    /// Gateway listening addresses that could not be bound (retried with the next
    /// Snapshot).
    pub listener_bind_errors: Family<ListenerLabels, Counter>,
    /// Gateway listening addresses open now (beside the Ingress listeners).
    pub gateway_listeners: Gauge,
    /// TLS connections closed because their ClientHello was unusable (read only where
    /// passthrough could apply), by reason.
    pub tls_client_hello_errors: Family<ClientHelloErrorLabels, Counter>,
    /// TLS connections taken by passthrough, by outcome.
    pub tls_passthrough_connections: Family<PassthroughLabels, Counter>,
}

impl Default for Metrics {
    fn default() -> Self {
        Self {
            requests: Family::default(),
            request_duration: Family::new_with_constructor(latency_histogram),
            access_log_dropped: Counter::default(),
            errors: Family::default(),
            upstream_connect_errors: Family::default(),
            upstream_tls_handshake_errors: Family::default(),
            active_connections: Gauge::default(),
            active_tunnels: Gauge::default(),
            tls_handshake_errors: Counter::default(),
            headers_dropped: Family::default(),
            upstream_discarded: Family::default(),
            mirrors: Family::default(),
            listener_bind_errors: Family::default(),
            gateway_listeners: Gauge::default(),
            tls_handshakes: Family::default(),
            tls_client_hello_errors: Family::default(),
            tls_passthrough_connections: Family::default(),
        }
    }
}

impl Metrics {
    /// Registers every metric under `registry` (names get the registry's prefix).
    pub fn register(&self, registry: &mut Registry) {
        registry.register(
            "http_requests",
            "HTTP requests answered",
            self.requests.clone(),
        );
        registry.register(
            "http_request_duration_seconds",
            "Time from a forwarded request's head to the upstream's response head",
            self.request_duration.clone(),
        );
        registry.register(
            "access_log_dropped_lines",
            "Access log lines dropped because the writer fell behind or writing failed",
            self.access_log_dropped.clone(),
        );
        registry.register(
            "http_local_errors",
            "HTTP requests answered locally because of a failure",
            self.errors.clone(),
        );
        registry.register(
            "http_upstream_connect_errors",
            "Failed connection attempts to upstream endpoints",
            self.upstream_connect_errors.clone(),
        );
        registry.register(
            "http_upstream_tls_handshake_errors",
            "Failed TLS handshakes with upstream endpoints (backend-protocol HTTPS or GRPCS)",
            self.upstream_tls_handshake_errors.clone(),
        );
        registry.register(
            "http_active_connections",
            "Client connections currently open",
            self.active_connections.clone(),
        );
        registry.register(
            "http_active_tunnels",
            "Upgraded (e.g. WebSocket) connections currently tunnelled",
            self.active_tunnels.clone(),
        );
        registry.register(
            "http_headers_dropped",
            "Request header lines the router dropped instead of forwarding",
            self.headers_dropped.clone(),
        );
        registry.register(
            "http_upstream_connections_discarded",
            "Upstream connections closed instead of reused, because they were not provably clean",
            self.upstream_discarded.clone(),
        );
        registry.register(
            "http_mirror_requests",
            "Copies of requests sent by Gateway API RequestMirror filters, by outcome",
            self.mirrors.clone(),
        );
        registry.register(
            "http_listener_bind_errors",
            "Gateway listening addresses that could not be bound",
            self.listener_bind_errors.clone(),
        );
        registry.register(
            "http_gateway_listeners",
            "Gateway listening addresses open beside the Ingress listeners",
            self.gateway_listeners.clone(),
        );
        registry.register(
            "tls_handshake_errors",
            "TLS handshakes that failed",
            self.tls_handshake_errors.clone(),
        );
        registry.register(
            "tls_handshakes",
            "TLS handshakes completed, by kind (full or resumed)",
            self.tls_handshakes.clone(),
        );
        registry.register(
            "tls_client_hello_errors",
            "TLS connections closed because their ClientHello was unusable (read only where passthrough could apply), by reason",
            self.tls_client_hello_errors.clone(),
        );
        registry.register(
            "tls_passthrough_connections",
            "TLS connections passed through by SNI without termination, by outcome",
            self.tls_passthrough_connections.clone(),
        );
    }
}

#[cfg(test)]
mod tests {
    use prometheus_client::encoding::text::encode;

    use super::*;

    #[test]
    fn registered_metrics_appear_in_the_exposition() {
        let m = Metrics::default();
        m.requests
            .get_or_create(&RequestLabels {
                ingress: Arc::new("default/web".into()),
                service: Arc::new("default/web:80".into()),
                status: 200,
            })
            .inc();
        m.errors
            .get_or_create(&ErrorLabels {
                kind: "no_route",
                fault: "none",
            })
            .inc();
        m.tls_handshakes
            .get_or_create(&HandshakeLabels { kind: "resumed" })
            .inc();
        let mut registry = Registry::with_prefix("xdp_ingress");
        m.register(&mut registry);
        let mut text = String::new();
        encode(&mut text, &registry).unwrap();
        assert!(
            text.contains(r#"xdp_ingress_http_requests_total{ingress="default/web",service="default/web:80",status="200"} 1"#),
            "{text}"
        );
        assert!(
            text.contains(r#"xdp_ingress_http_local_errors_total{kind="no_route",fault="none"} 1"#),
            "{text}"
        );
        assert!(
            text.contains(r#"xdp_ingress_tls_handshakes_total{kind="resumed"} 1"#),
            "{text}"
        );
    }
}
