//! The router's half of TLS passthrough: whether a TLS connection's ClientHello must be
//! read before termination, what its SNI decides, and which endpoint gets it.

use std::{net::SocketAddr, sync::Arc};

use super::{Conn, Router, Socket, gateway::candidates};
use crate::{
    http::balance::Pick,
    snapshot::{
        gateway::{PortRoutes, filters::pick_weighted},
        passthrough::{self, Decision, PassthroughRoute},
    },
};

/// Why a passed-through connection found no endpoint (a metric label).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum NoEndpoint {
    /// The chosen backendRef is invalid, or every weight is 0.
    InvalidBackend,
    /// The Service has no ready endpoint.
    NoEndpoints,
}

impl NoEndpoint {
    /// The metric label.
    pub fn label(self) -> &'static str {
        match self {
            Self::InvalidBackend => "invalid_backend",
            Self::NoEndpoints => "no_endpoints",
        }
    }
}

impl Router {
    /// The Gateway routes of the first address a TLS connection on `conn` may belong to
    /// that has Passthrough listeners or HTTPS listeners (the order requests use).
    fn tls_port(&self, conn: Conn) -> Option<Arc<PortRoutes>> {
        let snapshot = self.snapshot.load();
        let plane = &snapshot.gateway;
        if plane.ports.is_empty() {
            return None;
        }
        candidates(conn, self.opts.bind_ip)
            .find_map(|a| plane.ports.get(&a).filter(|p| p.tls).cloned())
    }

    /// Whether a TLS connection on `conn` must have its ClientHello read before it is
    /// terminated: some Passthrough listener or `ssl-passthrough` host could take it.
    /// Otherwise the handshake starts at once, as without passthrough.
    pub(crate) fn wants_client_hello(&self, conn: Conn) -> bool {
        let ingress = conn.socket == Socket::Ingress && self.snapshot.load().http.has_passthrough();
        ingress
            || self
                .tls_port(conn)
                .is_some_and(|p| !p.passthrough.is_empty())
    }

    /// What a connection's SNI decides (see [`passthrough::decide`]).
    pub(crate) fn passthrough_decision(&self, conn: Conn, sni: Option<&str>) -> Decision {
        let port = self.tls_port(conn);
        let snapshot = self.snapshot.load();
        let table = (conn.socket == Socket::Ingress).then_some(&snapshot.http);
        passthrough::decide(sni, port.as_deref(), table)
    }

    /// An endpoint of one of `route`'s backends, by weight then by the balancer; `avoid`
    /// (a failed endpoint) when there is another.
    pub(crate) fn passthrough_endpoint(
        &self,
        route: &PassthroughRoute,
        avoid: Option<SocketAddr>,
    ) -> Result<(Pick, String), NoEndpoint> {
        let turn = self.balancer.turn(std::ptr::from_ref(route) as usize);
        let i = pick_weighted(&route.backends, turn).ok_or(NoEndpoint::InvalidBackend)?;
        let backend = route.backends[i]
            .target
            .as_ref()
            .map_err(|_| NoEndpoint::InvalidBackend)?;
        let pick = self
            .balancer
            .pick(backend, avoid)
            .ok_or(NoEndpoint::NoEndpoints)?;
        Ok((pick, backend.service.to_string()))
    }
}
