//! TLS passthrough: which TLS connections are not terminated but passed, bytes as they
//! come, to a backend chosen by the ClientHello's SNI. Two sources:
//! - Gateway API TLS listeners in `Passthrough` mode with their TLSRoutes
//!   ([`PassthroughListener`], in `PortRoutes::passthrough`);
//! - Ingress hosts whose `/` path belongs to an Ingress with ingress-nginx's
//!   `ssl-passthrough` annotation (`RouteTable::passthrough`).
//!
//! [`decide`] is the whole decision, pure, for the accept path (`http::passthrough`).

use std::{collections::BTreeMap, sync::Arc};

use super::{
    ObjectRef,
    gateway::{PortRoutes, WeightedBackend},
    routes::{Backend, RouteTable},
};

/// One TLS listener in Passthrough mode on a listening address.
#[derive(Clone, Debug, Default)]
pub struct PassthroughListener {
    /// Its hostname (`None`: every name), lowercase; `*.` wildcards allowed.
    pub hostname: Option<String>,
    /// The TLSRoutes attached to it, by hostname (already intersected with `hostname`).
    pub routes: PassthroughHosts,
}

/// TLSRoutes by SNI hostname, Gateway API semantics: an exact name wins over the longest
/// wildcard (`*.example.com` matches one or more labels), which wins over "every name".
#[derive(Clone, Debug, Default)]
pub struct PassthroughHosts {
    /// Lowercase exact hostnames.
    pub exact: BTreeMap<String, Arc<PassthroughRoute>>,
    /// Wildcards by their suffix including the dot (`.example.com`).
    pub wildcard: BTreeMap<String, Arc<PassthroughRoute>>,
    /// The route for every hostname.
    pub any: Option<Arc<PassthroughRoute>>,
}

impl PassthroughHosts {
    /// The route for `sni` (lowercase): exact, else the longest wildcard, else any.
    pub fn lookup(&self, sni: &str) -> Option<&Arc<PassthroughRoute>> {
        if let Some(r) = self.exact.get(sni) {
            return Some(r);
        }
        let mut suffix = sni;
        while let Some(dot) = suffix.find('.') {
            // `.example.com` then `.com`: the longest suffix first.
            let candidate = &suffix[dot..];
            if let Some(r) = self.wildcard.get(candidate) {
                return Some(r);
            }
            suffix = &candidate[1..];
        }
        self.any.as_ref()
    }

    /// Whether no route is attached.
    pub fn is_empty(&self) -> bool {
        self.exact.is_empty() && self.wildcard.is_empty() && self.any.is_none()
    }
}

/// Where passed-through connections of one TLSRoute rule (or one Ingress host) go.
#[derive(Clone, Debug)]
pub struct PassthroughRoute {
    /// The TLSRoute or Ingress it came from (for logs and metrics).
    pub route: ObjectRef,
    /// The backendRefs, weighted; none (or only invalid ones) closes the connection.
    pub backends: Vec<WeightedBackend>,
}

/// What to do with a TLS connection, from its SNI.
#[derive(Clone, Debug)]
pub enum Decision {
    /// Terminate TLS here (an HTTPS listener or an Ingress host serves the name).
    Terminate,
    /// Pass the connection through to one of these backends.
    Pass(Arc<PassthroughRoute>),
    /// A Passthrough listener was selected but no route of it serves the name: close.
    NoRoute,
}

/// How specifically a listener hostname matches `name`: exact, then the longest
/// wildcard, then a listener without hostname (as `PortRoutes::listener_for` ranks).
pub fn rank(hostname: Option<&str>, name: &str) -> Option<(u8, usize)> {
    match hostname {
        Some(h) if h == name => Some((3, h.len())),
        Some(h) => h
            .strip_prefix('*')
            .filter(|suffix| name.len() > suffix.len() && name.ends_with(suffix))
            .map(|suffix| (2, suffix.len())),
        None => Some((1, 0)),
    }
}

/// The decision for a connection with `sni` (lowercase, `None`: no SNI) on a socket
/// whose Gateway address routes are `gateway` (the first candidate address that has
/// any, see `http::router::gateway`), and, on the Ingress HTTPS socket, the Ingress
/// `table`.
///
/// The Gateway's listeners come first, as they do for requests: the most specific
/// listener hostname among the HTTPS and Passthrough listeners wins (the spec lets them
/// share a port when their hostnames differ). Without SNI nothing is passed through (no
/// listener can be chosen for it, and ingress-nginx too hands such connections to its
/// HTTPS server); on a Gateway socket of Passthrough listeners only, such connections
/// and names no listener takes are closed.
pub fn decide(
    sni: Option<&str>,
    gateway: Option<&PortRoutes>,
    table: Option<&RouteTable>,
) -> Decision {
    let only_passthrough = |p: &PortRoutes| {
        table.is_none() && p.listener_hosts.is_empty() && !p.passthrough.is_empty()
    };
    let Some(sni) = sni else {
        return match gateway {
            Some(p) if only_passthrough(p) => Decision::NoRoute,
            _ => Decision::Terminate,
        };
    };
    if let Some(port) = gateway {
        let best_pass = port
            .passthrough
            .iter()
            .filter_map(|l| Some((rank(l.hostname.as_deref(), sni)?, l)))
            .max_by_key(|(r, _)| *r);
        let best_https = port
            .listener_hosts
            .iter()
            .filter_map(|h| rank(h.as_deref(), sni))
            .max();
        match (best_pass, best_https) {
            (Some((pass, l)), https) if https.is_none_or(|h| pass > h) => {
                return l
                    .routes
                    .lookup(sni)
                    .map_or(Decision::NoRoute, |r| Decision::Pass(Arc::clone(r)));
            }
            (_, Some(_)) => return Decision::Terminate,
            // A Gateway socket of Passthrough listeners only: nothing here terminates
            // TLS, so a name no listener takes is closed rather than answered with the
            // default certificate.
            _ if only_passthrough(port) => return Decision::NoRoute,
            _ => {}
        }
    }
    match table.and_then(|t| t.passthrough(sni)) {
        Some(route) => Decision::Pass(Arc::clone(route)),
        None => Decision::Terminate,
    }
}

/// The passthrough route of an Ingress host: its `/` path's backend, when that path's
/// Ingress has `ssl-passthrough` (as ingress-nginx passes a host to the backend of its
/// root location and ignores the other paths).
pub fn ingress_route(backend: &Arc<Backend>) -> Option<Arc<PassthroughRoute>> {
    let ingress = backend.ingress.clone()?;
    backend.policy().ssl_passthrough.then(|| {
        Arc::new(PassthroughRoute {
            route: ingress,
            backends: vec![WeightedBackend {
                weight: 1,
                target: Ok(Arc::clone(backend)),
                filters: Vec::new(),
            }],
        })
    })
}

#[cfg(test)]
mod tests;
