//! The [`GatewayPlane`] from checked Gateways and attached routes: one [`PortRoutes`] per
//! listening address, rules per hostname in the spec's precedence order.

use std::{
    collections::{BTreeMap, btree_map::Entry},
    sync::Arc,
};

use super::{listeners::Resolved, routes::Attached, tls_routes::AttachedTls};
use crate::snapshot::{
    certs::CertSet,
    gateway::{
        GatewayHosts, GatewayPlane, GatewayRule, HostRules, ListenAddr, PortRoutes,
        matching::MatchPrecedence,
    },
    passthrough::{PassthroughListener, PassthroughRoute},
};

/// Where a rule was written, for the tie-breaks after the match itself (the spec's): the
/// route's rank by age then `{namespace}/{name}`, then rule index, then match index.
type Origin = (usize, usize, usize);

/// Builds the plane.
pub fn assemble(
    gateways: &[Resolved<'_>],
    routes: &[Attached],
    tls_routes: &[AttachedTls],
) -> GatewayPlane {
    let mut ports: BTreeMap<ListenAddr, Port> = BTreeMap::new();
    // Every served listener opens its address, with or without routes (without, it
    // answers 404), and brings its certificates.
    for g in gateways.iter().filter(|g| g.refused.is_none()) {
        for l in g.listeners.iter().filter(|l| l.usable() && !l.is_l4()) {
            for at in g.listen_addrs(l) {
                let port = ports.entry(at).or_insert_with(|| Port::new(l.tls));
                if l.passthrough {
                    // Its hostname is unique on the port (conflicts are refused).
                    port.passthrough.push(PassthroughListener {
                        hostname: l.hostname.clone(),
                        ..PassthroughListener::default()
                    });
                    continue;
                }
                if !port.listener_hosts.contains(&l.hostname) {
                    port.listener_hosts.push(l.hostname.clone());
                }
                for cert in &l.certs {
                    // The first listener (oldest Gateway, spec order) keeps a hostname.
                    let _ = match &l.hostname {
                        Some(h) => port.certs.insert(h, Arc::clone(cert)),
                        None => port.certs.set_default(Arc::clone(cert)),
                    };
                }
            }
        }
    }
    // Routes are in age order, so their index is the age rank.
    for (ri, route) in routes.iter().enumerate() {
        for (gi, li, hosts) in &route.attachments {
            let g = &gateways[*gi];
            let l = &g.listeners[*li];
            if !l.usable() {
                continue; // attached (and counted), but the listener is not served
            }
            for at in g.listen_addrs(l) {
                let Some(port) = ports.get_mut(&at) else {
                    continue;
                };
                for host in hosts {
                    let bucket = port.bucket(host.as_deref());
                    for rule in &route.rules {
                        for (mi, m) in rule.matches.iter().enumerate() {
                            bucket.push((
                                m.precedence(),
                                (ri, rule.index, mi),
                                Arc::new(GatewayRule {
                                    route: route.route.clone(),
                                    rule: rule.index,
                                    matches: m.clone(),
                                    action: Arc::clone(&rule.action),
                                }),
                            ));
                        }
                    }
                }
            }
        }
    }
    // TLSRoutes, oldest first: the first route for a hostname of a listener keeps it.
    for route in tls_routes {
        let pass = Arc::new(PassthroughRoute {
            route: route.route.clone(),
            backends: route.backends.clone(),
        });
        for (gi, li, hosts) in &route.attachments {
            let g = &gateways[*gi];
            let l = &g.listeners[*li];
            if !l.usable() {
                continue;
            }
            for at in g.listen_addrs(l) {
                let Some(listener) = ports
                    .get_mut(&at)
                    .and_then(|p| p.passthrough.iter_mut().find(|p| p.hostname == l.hostname))
                else {
                    continue;
                };
                let routes = &mut listener.routes;
                for host in hosts {
                    let (map, key) = match host.as_deref() {
                        None => {
                            routes.any.get_or_insert_with(|| Arc::clone(&pass));
                            continue;
                        }
                        Some(h) => match h.strip_prefix('*') {
                            Some(suffix) => (&mut routes.wildcard, suffix),
                            None => (&mut routes.exact, h),
                        },
                    };
                    map.entry(key.to_owned())
                        .or_insert_with(|| Arc::clone(&pass));
                }
            }
        }
    }
    GatewayPlane {
        ports: ports
            .into_iter()
            .map(|(at, p)| (at, Arc::new(p.finish())))
            .collect(),
    }
}

/// A rule with its sort key: the match's precedence, then where it was written.
type Ranked = (MatchPrecedence, Origin, Arc<GatewayRule>);

/// A [`PortRoutes`] being built.
struct Port {
    tls: bool,
    certs: CertSet,
    exact: BTreeMap<String, Vec<Ranked>>,
    wildcard: BTreeMap<String, Vec<Ranked>>,
    any: Option<Vec<Ranked>>,
    listener_hosts: Vec<Option<String>>,
    passthrough: Vec<PassthroughListener>,
}

impl Port {
    fn new(tls: bool) -> Self {
        Self {
            tls,
            certs: CertSet::default(),
            exact: BTreeMap::new(),
            wildcard: BTreeMap::new(),
            any: None,
            listener_hosts: Vec::new(),
            passthrough: Vec::new(),
        }
    }

    fn bucket(&mut self, host: Option<&str>) -> &mut Vec<Ranked> {
        match host {
            None => self.any.get_or_insert_with(Vec::new),
            Some(h) => match h.strip_prefix('*') {
                Some(suffix) => match self.wildcard.entry(suffix.to_owned()) {
                    Entry::Occupied(e) => e.into_mut(),
                    Entry::Vacant(e) => e.insert(Vec::new()),
                },
                None => self.exact.entry(h.to_owned()).or_default(),
            },
        }
    }

    /// Sorts each bucket. A bucket holds only the rules whose hostname is exactly its own:
    /// the router tries the less specific buckets that also cover a request's host after
    /// it ([`GatewayHosts::route`]).
    fn finish(self) -> PortRoutes {
        fn sorted(mut v: Vec<Ranked>) -> HostRules {
            v.sort_by(|a, b| a.0.cmp(&b.0).then(a.1.cmp(&b.1)));
            v.into_iter().map(|r| r.2).collect::<Vec<_>>().into()
        }
        PortRoutes {
            tls: self.tls,
            listener_hosts: self.listener_hosts,
            certs: Arc::new(self.certs),
            hosts: GatewayHosts {
                exact: self
                    .exact
                    .into_iter()
                    .map(|(h, v)| (h, sorted(v)))
                    .collect(),
                wildcard: self
                    .wildcard
                    .into_iter()
                    .map(|(h, v)| (h, sorted(v)))
                    .collect(),
                any: self.any.map(sorted),
            },
            passthrough: self.passthrough,
        }
    }
}
