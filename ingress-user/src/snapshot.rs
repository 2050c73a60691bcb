//! What the control plane publishes and both data planes obey: the [`Snapshot`], its route
//! table ([`routes`]), the shared endpoint sets ([`endpoints`]) and the [`Problem`]s found.
//! It depends on no other module of the crate, so the translation (`config`) and the planes
//! (`http`, `l4`) both build on it without importing each other.

pub mod certs;
pub mod endpoints;
pub mod gateway;
pub mod passthrough;
pub mod policy;
pub mod problem;
pub mod routes;

use std::{fmt, net::SocketAddr, sync::Arc};

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
    /// tcp/udp-services entries, sorted by (protocol, port).
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

/// One tcp/udp-services entry, resolved. Empty `endpoints` means the port must reject
/// connections (TCP RST), not that it is absent.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct L4Service {
    /// External port (the ConfigMap key).
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
}
