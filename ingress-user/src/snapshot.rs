//! What the control plane publishes and both data planes obey: the [`Snapshot`], its route
//! table ([`routes`]), the shared endpoint sets ([`endpoints`]) and the [`Problem`]s found.
//! It depends on no other module of the crate, so the translation (`config`) and the planes
//! (`http`, `l4`) both build on it without importing each other.

pub mod affinity;
pub mod canary;
pub mod certs;
pub mod client_auth;
pub mod endpoints;
pub mod gateway;
pub mod htpasswd;
pub mod passthrough;
pub mod policy;
pub mod problem;
pub mod rate_limit;
pub mod routes;
pub mod upstream_tls;

use std::{
    fmt,
    net::{IpAddr, SocketAddr},
    sync::Arc,
};

pub use endpoints::Endpoints;
pub use problem::{ObjectRef, Problem};
use routes::RouteTable;

/// The hash map of the per-request lookups (hosts, paths, endpoints, idle connections).
/// foldhash costs a fraction of SipHash on short keys and is still seeded per process;
/// the keys come from configuration, so clients cannot flood a map with collisions.
pub(crate) type FastMap<K, V> = std::collections::HashMap<K, V, foldhash::fast::RandomState>;

/// Everything both data planes obey, built by [`build`] from one [`Store`]. Immutable;
/// published as `Arc<Snapshot>` so readers never lock.
#[derive(Clone, Debug, Default)]
pub struct Snapshot {
    /// HTTP routes for the L7 router.
    pub http: RouteTable,
    /// tcp/udp-services entries and Gateway API TCP/UDP listeners, sorted by (protocol,
    /// port, addresses).
    pub l4: Vec<L4Service>,
    /// TLS certificates by SNI host.
    pub tls: Arc<certs::CertSet>,
    /// Gateway API listeners and their HTTPRoutes (empty without Gateways).
    pub gateway: Arc<gateway::GatewayPlane>,
    /// Every Problem found (the source's and the translation's), sorted.
    pub problems: Vec<Problem>,
}

/// A Service port: what an Ingress backend or a ConfigMap entry points at.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct ServiceRef {
    /// Namespace of the Service.
    pub namespace: String,
    /// Name of the Service.
    pub name: String,
    /// The Service port (not the target port).
    pub port: u16,
}

impl fmt::Display for ServiceRef {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}:{}", self.namespace, self.name, self.port)
    }
}

/// Transport of an L4 service.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum L4Protocol {
    /// From the tcp-services ConfigMap.
    Tcp,
    /// From the udp-services ConfigMap.
    Udp,
}

impl fmt::Display for L4Protocol {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::Tcp => "TCP",
            Self::Udp => "UDP",
        })
    }
}

/// One tcp/udp-services entry or Gateway API TCP/UDP listener with its route, resolved.
/// Empty `endpoints` means the port must reject connections (TCP RST), not that it is
/// absent.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct L4Service {
    /// External port (the ConfigMap key, or the listener's port).
    pub port: u16,
    /// TCP or UDP.
    pub protocol: L4Protocol,
    /// The Service port behind it.
    pub service: ServiceRef,
    /// Resolved target `addr:port`s, sorted.
    pub endpoints: Vec<SocketAddr>,
    /// 3rd field `PROXY`: clients send PROXY protocol.
    pub proxy_protocol_in: bool,
    /// 4th field `PROXY`: send PROXY protocol to backends.
    pub proxy_protocol_out: bool,
    /// Where it listens: the Gateway's `spec.addresses`; empty means every node address
    /// (ConfigMap entries, Gateways without addresses).
    pub addrs: Vec<IpAddr>,
    /// A route's weighted backendRefs; empty means every endpoint has the same share
    /// (ConfigMap entries). `endpoints` is then the union of the splits with a weight.
    pub split: Vec<L4Split>,
}

/// One backendRef of a TCPRoute or UDPRoute: its share of new flows is
/// `weight / (sum of weights)`, spread evenly over its endpoints.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct L4Split {
    /// The backendRef's weight; 0 receives no new flows.
    pub weight: u32,
    /// Its endpoints, sorted; empty (an invalid reference, or no ready endpoint) means its
    /// share of new flows is rejected, as the spec requires.
    pub endpoints: Vec<SocketAddr>,
}

/// Who gets new flows, and in which proportion.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Share {
    /// An endpoint.
    To(SocketAddr),
    /// Rejected (TCP RST, or the datagram dropped).
    Reject,
}

impl L4Service {
    /// Every receiver of new flows with its relative weight (> 0), endpoints first in
    /// `endpoints` order, then the rejected share if any. An endpoint in two splits gets
    /// both shares.
    pub fn shares(&self) -> Vec<(Share, f64)> {
        if self.split.is_empty() {
            return self
                .endpoints
                .iter()
                .map(|e| (Share::To(*e), 1.0))
                .collect();
        }
        let mut out: Vec<(Share, f64)> = self
            .endpoints
            .iter()
            .map(|e| (Share::To(*e), 0.0))
            .collect();
        let mut reject = 0.0;
        for s in self.split.iter().filter(|s| s.weight > 0) {
            let w = f64::from(s.weight);
            if s.endpoints.is_empty() {
                reject += w;
                continue;
            }
            let each = w / s.endpoints.len() as f64;
            for e in &s.endpoints {
                if let Some(i) = self.endpoints.iter().position(|x| x == e) {
                    out[i].1 += each;
                }
            }
        }
        out.retain(|(_, w)| *w > 0.0);
        if reject > 0.0 {
            out.push((Share::Reject, reject));
        }
        out
    }
}
