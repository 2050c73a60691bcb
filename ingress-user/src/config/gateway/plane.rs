//! The [`GatewayPlane`] from checked Gateways and attached routes: one [`PortRoutes`] per
//! listening address, rules per hostname in the spec's precedence order.

use std::{
    cmp::Reverse,
    collections::{BTreeMap, btree_map::Entry},
    sync::Arc,
};

use super::{hostname::matches, listeners::Resolved, routes::Attached};
use crate::snapshot::{
    certs::CertSet,
    gateway::{
        GatewayHosts, GatewayPlane, GatewayRule, HostRules, ListenAddr, PathMatch, PortRoutes,
        RequestMatch,
    },
};

/// Where a rule was written, for the tie-breaks after the match itself: route age, then
/// rule index, then match index.
type Origin = (usize, usize, usize);

/// Builds the plane.
pub fn assemble(gateways: &[Resolved<'_>], routes: &[Attached]) -> GatewayPlane {
    let mut ports: BTreeMap<ListenAddr, Port> = BTreeMap::new();
    // Every served listener opens its address, with or without routes (without, it
    // answers 404), and brings its certificates.
    for g in gateways.iter().filter(|g| g.refused.is_none()) {
        for l in g.listeners.iter().filter(|l| l.usable()) {
            for at in g.listen_addrs(l) {
                let port = ports.entry(at).or_insert_with(|| Port::new(l.tls));
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
            for at in g.listen_addrs(l) {
                let Some(port) = ports.get_mut(&at) else {
                    continue;
                };
                for host in hosts {
                    let bucket = port.bucket(host.as_deref());
                    for rule in &route.rules {
                        for (mi, m) in rule.matches.iter().enumerate() {
                            bucket.push((
                                rank(m),
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
    GatewayPlane {
        ports: ports
            .into_iter()
            .map(|(at, p)| (at, Arc::new(p.finish())))
            .collect(),
    }
}

/// The spec's precedence of one match, lower first: an exact path; then a regular
/// expression (implementation-specific; longer first); then a prefix, longer first; then
/// having a method; then more header matches; then more query matches.
fn rank(m: &RequestMatch) -> (u8, Reverse<usize>, bool, Reverse<usize>, Reverse<usize>) {
    let (kind, len) = match &m.path {
        PathMatch::Exact(p) => (0, p.len()),
        PathMatch::Regex(r) => (1, r.as_str().len()),
        PathMatch::Prefix(p) => (2, p.trim_end_matches('/').len()),
    };
    (
        kind,
        Reverse(len),
        m.method.is_none(),
        Reverse(m.headers.len()),
        Reverse(m.query.len()),
    )
}

type Ranked = (
    (u8, Reverse<usize>, bool, Reverse<usize>, Reverse<usize>),
    Origin,
    Arc<GatewayRule>,
);

/// A [`PortRoutes`] being built.
struct Port {
    tls: bool,
    certs: CertSet,
    exact: BTreeMap<String, Vec<Ranked>>,
    wildcard: BTreeMap<String, Vec<Ranked>>,
    any: Option<Vec<Ranked>>,
}

impl Port {
    fn new(tls: bool) -> Self {
        Self {
            tls,
            certs: CertSet::default(),
            exact: BTreeMap::new(),
            wildcard: BTreeMap::new(),
            any: None,
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

    /// Sorts each bucket and appends the rules of every less specific bucket that also
    /// covers its hostnames: the spec ranks by hostname first, so a request for
    /// `a.example.com` that matches no rule of `a.example.com` may still match one of
    /// `*.example.com`, then one of a route without hostnames.
    fn finish(self) -> PortRoutes {
        fn sorted(mut v: Vec<Ranked>) -> Vec<Arc<GatewayRule>> {
            v.sort_by(|a, b| a.0.cmp(&b.0).then(a.1.cmp(&b.1)));
            v.into_iter().map(|r| r.2).collect()
        }
        let any = self.any.map(sorted).unwrap_or_default();
        // Wildcards, longest suffix first.
        let mut wild: Vec<(String, Vec<Arc<GatewayRule>>)> = self
            .wildcard
            .into_iter()
            .map(|(s, v)| (s, sorted(v)))
            .collect();
        wild.sort_by_key(|(s, _)| Reverse(s.len()));
        let chain = |own: Vec<Arc<GatewayRule>>, host: &str, strict_longer: bool| -> HostRules {
            let mut all = own;
            for (suffix, rules) in &wild {
                let pattern = format!("*{suffix}");
                let covers = if strict_longer {
                    // `host` is itself a wildcard `*.x`: covered by shorter suffixes.
                    host.len() > pattern.len() && host[1..].ends_with(suffix.as_str())
                } else {
                    matches(&pattern, host)
                };
                if covers {
                    all.extend(rules.iter().cloned());
                }
            }
            all.extend(any.iter().cloned());
            all.into()
        };
        let exact = self
            .exact
            .into_iter()
            .map(|(h, v)| {
                let rules = chain(sorted(v), &h, false);
                (h, rules)
            })
            .collect();
        let wildcard = wild
            .iter()
            .map(|(suffix, own)| {
                let rules = chain(own.clone(), &format!("*{suffix}"), true);
                (suffix.clone(), rules)
            })
            .collect();
        PortRoutes {
            tls: self.tls,
            certs: Arc::new(self.certs),
            hosts: GatewayHosts {
                exact,
                wildcard,
                any: (!any.is_empty()).then(|| any.into()),
            },
        }
    }
}
