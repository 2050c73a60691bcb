//! Counters of the userspace L4 proxy: plain atomics, read by whoever exports them (the ops
//! metrics), written on the data path with relaxed ordering.

use std::sync::atomic::{AtomicU64, Ordering};

use crate::config::{L4Protocol, ServiceRef};

/// Counters of one listener (one external port and protocol). They survive config changes
/// and the removal of the port, so exported counters never go backwards.
#[derive(Debug, Default)]
pub struct ServiceStats {
    /// TCP connections accepted.
    pub accepted: AtomicU64,
    /// TCP connections open now (a gauge).
    pub active: AtomicU64,
    /// Bytes from clients to backends (TCP payload, UDP datagrams).
    pub bytes_in: AtomicU64,
    /// Bytes from backends to clients.
    pub bytes_out: AtomicU64,
    /// Failed or timed-out connects to an endpoint (each attempt), and UDP endpoints that
    /// answered with ICMP port unreachable.
    pub connect_errors: AtomicU64,
    /// Connections reset, or datagrams dropped, because the service had no endpoint, or
    /// because every endpoint tried failed.
    pub no_endpoint: AtomicU64,
    /// Connections closed for a missing, malformed or late PROXY protocol header.
    pub proxy_protocol_errors: AtomicU64,
    /// UDP sessions created.
    pub udp_sessions: AtomicU64,
    /// UDP sessions open now (a gauge).
    pub udp_sessions_active: AtomicU64,
    /// UDP datagrams dropped because the session table was full.
    pub udp_sessions_full: AtomicU64,
}

impl ServiceStats {
    /// Reads one counter.
    pub fn get(counter: &AtomicU64) -> u64 {
        counter.load(Ordering::Relaxed)
    }

    pub(super) fn inc(counter: &AtomicU64) {
        counter.fetch_add(1, Ordering::Relaxed);
    }

    pub(super) fn add(counter: &AtomicU64, n: u64) {
        counter.fetch_add(n, Ordering::Relaxed);
    }
}

/// One listener's counters, with what it serves, as returned by
/// [`L4Proxy::stats`](super::L4Proxy::stats).
#[derive(Clone, Debug)]
pub struct StatsEntry {
    /// TCP or UDP.
    pub protocol: L4Protocol,
    /// The external port.
    pub port: u16,
    /// The Service it served last.
    pub service: ServiceRef,
    /// Whether the port is open now (false once removed, or when binding failed).
    pub listening: bool,
    /// The counters.
    pub stats: std::sync::Arc<ServiceStats>,
}

/// Increments a gauge for as long as it lives, so aborted tasks still decrement it.
pub(super) struct Gauge<'a>(&'a AtomicU64);

impl<'a> Gauge<'a> {
    pub(super) fn up(counter: &'a AtomicU64) -> Self {
        counter.fetch_add(1, Ordering::Relaxed);
        Self(counter)
    }
}

impl Drop for Gauge<'_> {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::Relaxed);
    }
}
