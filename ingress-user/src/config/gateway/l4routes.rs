//! TCPRoutes and UDPRoutes: a TCP or UDP listener of our Gateways is a port the L4 plane
//! forwards (the eBPF NAT, or the userspace proxy), exactly like a tcp/udp-services
//! ConfigMap entry, and the one route attached to it says to which endpoints, by weight.
//!
//! Rules (documented in the README's Gateway API section):
//! - A ConfigMap entry and a TCP/UDP listener on the same port and protocol: the ConfigMap
//!   wins. It is the operator's (a controller flag names it) and the older API; a Gateway
//!   must not take over traffic that is already served. The listener gets
//!   `Conflicted=True` (reason `ConfigMapConflict`) and a Problem.
//! - A TCP listener on an address and port an HTTP/HTTPS listener (or the Ingress
//!   listener, `--http-port`/`--https-port`) already uses is `PortUnavailable`; so is a
//!   second TCP (or UDP) listener on the same address and port, in Gateway age order.
//! - One route per listener: the oldest attached route serves it; a younger one gets
//!   `Accepted=False` (`NotAllowedByListeners`).
//! - backendRefs of every rule share the listener's new flows by weight. An invalid
//!   backendRef (unknown Service or port, another namespace without a ReferenceGrant, a
//!   kind other than Service) keeps its share, and that share is rejected (the spec:
//!   "Connection rejections must respect weight").
//!
//! Translation is split in two so endpoint changes stay cheap: [`attach`] (with the rest of
//! the Gateway API) gives [`L4Plan`]s naming Services; [`services`] (with the ConfigMap
//! table, on every endpoint change) resolves them to endpoints.

use std::{
    collections::{BTreeSet, HashMap},
    net::IpAddr,
};

use k8s_openapi::apimachinery::pkg::apis::meta::v1::{ObjectMeta, Time};

use super::{
    Key, Objects, Options, Problem, Translated, generation, granted, key,
    listeners::{Resolved, TCP_ROUTE, UDP_ROUTE},
    object_ref,
    routes::{listener_allows, named_listeners, namespace_labels, our_gateway, parent_state},
    status::RouteState,
    types::{L4RouteSpec, ParentReference, WeightedBackendRef},
};
use crate::{
    config::{
        L4Protocol, L4Service, ServiceRef,
        backend::{self, PortSpec, Resolver},
        l4::parse_entry,
    },
    snapshot::{L4Split, ObjectRef, gateway::ListenAddr, problem::Severity},
};

/// A TCP/UDP listener with the route that serves it, before endpoints are resolved.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct L4Plan {
    /// TCP or UDP.
    pub protocol: L4Protocol,
    /// The listener's port.
    pub port: u16,
    /// The Gateway's addresses; empty means every node address.
    pub addrs: Vec<IpAddr>,
    /// The route (for the service name of a route without a valid backend).
    pub route: ObjectRef,
    /// backendRefs of every rule, in order.
    pub backends: Vec<PlannedBackend>,
}

/// One backendRef: its weight and, if valid, the Service port `(namespace, name, port)`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PlannedBackend {
    /// Weight (default 1).
    pub weight: u32,
    /// `None`: the reference is invalid and its share is rejected.
    pub target: Option<(String, String, i32)>,
}

/// The transport and protocol of a TCP/UDP listener.
fn protocol(p: &str) -> Option<L4Protocol> {
    match p {
        "TCP" => Some(L4Protocol::Tcp),
        "UDP" => Some(L4Protocol::Udp),
        _ => None,
    }
}

/// `(protocol, port)` of every well-formed tcp/udp-services ConfigMap entry.
fn configmap_ports(objects: &Objects, opts: &Options) -> BTreeSet<(L4Protocol, u16)> {
    let mut out = BTreeSet::new();
    for (cm, protocol) in [
        (&opts.tcp_services, L4Protocol::Tcp),
        (&opts.udp_services, L4Protocol::Udp),
    ] {
        let Some(cm) = cm else { continue };
        let Some(cm) = objects
            .config_maps
            .get(&(cm.namespace.clone(), cm.name.clone()))
        else {
            continue;
        };
        for (k, v) in cm.data.iter().flatten() {
            if let Ok(e) = parse_entry(k, v, protocol, opts) {
                out.insert((protocol, e.port));
            }
        }
    }
    out
}

/// Checks the ports of TCP/UDP listeners (Gateways oldest first) against the ConfigMaps,
/// the HTTP side and each other; see the module doc for the rules.
pub fn ports(gateways: &mut [Resolved<'_>], objects: &Objects, opts: &Options) {
    let configmap = configmap_ports(objects, opts);
    // (UDP, address) → who uses it.
    let mut taken: HashMap<(bool, ListenAddr), String> = HashMap::new();
    for (port, flag) in [
        (opts.http_port, "--http-port"),
        (opts.https_port, "--https-port"),
        (opts.health_port, "--health-port"),
    ] {
        let at = ListenAddr { ip: None, port };
        taken.insert((false, at), format!("the Ingress listener ({flag})"));
    }
    for g in gateways.iter().filter(|g| g.refused.is_none()) {
        for l in g.listeners.iter().filter(|l| !l.is_l4() && l.usable()) {
            for at in g.listen_addrs(l) {
                taken
                    .entry((false, at))
                    .or_insert_with(|| format!("Gateway {}/{}", g.key.0, g.key.1));
            }
        }
    }
    for g in gateways.iter_mut() {
        if g.refused.is_some() {
            continue;
        }
        let who = format!("Gateway {}/{}", g.key.0, g.key.1);
        let addrs = g.addrs.clone();
        for l in &mut g.listeners {
            let Some(proto) = protocol(&l.spec.protocol) else {
                continue;
            };
            if l.accepted.is_err() || l.conflicted.is_some() {
                continue;
            }
            if configmap.contains(&(proto, l.port)) {
                let flag = match proto {
                    L4Protocol::Tcp => "--tcp-services-configmap",
                    L4Protocol::Udp => "--udp-services-configmap",
                };
                l.conflicted = Some((
                    "ConfigMapConflict",
                    format!(
                        "{proto} port {} is an entry of the {flag} ConfigMap, which wins; remove the entry to serve this listener",
                        l.port
                    ),
                ));
                continue;
            }
            let udp = proto == L4Protocol::Udp;
            for ip in &addrs {
                let at = ListenAddr {
                    ip: *ip,
                    port: l.port,
                };
                match taken.get(&(udp, at)) {
                    Some(owner) => {
                        l.accepted = Err((
                            "PortUnavailable",
                            format!("{proto} {at} is used by {owner}"),
                        ));
                        break;
                    }
                    None => {
                        taken.insert((udp, at), who.clone());
                    }
                }
            }
        }
    }
}

/// `Err((reason, message))` of a condition that is False.
type Verdict = Result<(), (&'static str, String)>;

/// A route of either kind, as this module reads it.
struct Route<'a> {
    kind: &'static str,
    protocol: L4Protocol,
    meta: &'a ObjectMeta,
    spec: &'a L4RouteSpec,
}

/// Attaches every TCPRoute and UDPRoute that names a Gateway of ours, recording parent
/// statuses, listener `attachedRoutes` and Problems; gives the listeners to serve.
pub fn attach(
    objects: &Objects,
    gateways: &mut [Resolved<'_>],
    out: &mut Translated,
) -> Vec<L4Plan> {
    let mut routes: Vec<Route<'_>> = objects
        .tcp_routes
        .values()
        .map(|r| Route {
            kind: TCP_ROUTE,
            protocol: L4Protocol::Tcp,
            meta: &r.metadata,
            spec: &r.spec,
        })
        .chain(objects.udp_routes.values().map(|r| Route {
            kind: UDP_ROUTE,
            protocol: L4Protocol::Udp,
            meta: &r.metadata,
            spec: &r.spec,
        }))
        .collect();
    routes.sort_by_cached_key(|r| age(r.meta));
    // (Gateway, listener) → the route serving it (the oldest).
    let mut served: HashMap<(usize, usize), (ObjectRef, Vec<PlannedBackend>)> = HashMap::new();
    for route in &routes {
        let rkey = key(route.meta);
        let object = object_ref(route.kind, &rkey);
        let route_gen = generation(route.meta);
        let mut parents = Vec::new();
        let mut planned: Option<(Vec<PlannedBackend>, Verdict)> = None;
        for (pi, parent) in route.spec.parent_refs.iter().enumerate() {
            let Some(gi) = our_gateway(gateways, parent, &rkey.0) else {
                continue;
            };
            let (backends, resolved) = planned.get_or_insert_with(|| {
                plan_backends(objects, route, &rkey, &object, &mut out.problems)
            });
            let accepted = attach_parent(objects, route, &rkey, parent, gi, gateways, &served).map(
                |listeners| {
                    for li in listeners {
                        gateways[gi].listeners[li].attached += 1;
                        served.insert((gi, li), (object.clone(), backends.clone()));
                    }
                },
            );
            parents.push(parent_state(
                parent,
                pi,
                accepted,
                resolved,
                route_gen,
                &object,
                &mut out.problems,
            ));
        }
        if !parents.is_empty() {
            out.statuses.routes.push(RouteState {
                key: rkey,
                kind: route.kind,
                parents,
            });
        }
    }
    let mut plans = Vec::new();
    for ((gi, li), (route, backends)) in served {
        let g = &gateways[gi];
        let l = &g.listeners[li];
        let Some(protocol) = protocol(&l.spec.protocol) else {
            continue;
        };
        if g.refused.is_some() || !l.usable() {
            continue; // attached (and counted), but the listener is not served
        }
        plans.push(L4Plan {
            protocol,
            port: l.port,
            addrs: g.addrs.iter().flatten().copied().collect(),
            route,
            backends,
        });
    }
    plans.sort_by(|a, b| (a.protocol, a.port, &a.addrs).cmp(&(b.protocol, b.port, &b.addrs)));
    plans
}

/// The spec's order between routes: oldest first, then `{namespace}/{name}`.
fn age(meta: &ObjectMeta) -> (bool, Option<Time>, String) {
    let created = meta.creation_timestamp.clone();
    let (ns, name) = key(meta);
    (created.is_none(), created, format!("{ns}/{name}"))
}

/// The listeners of Gateway `gi` a parentRef attaches the route to.
fn attach_parent(
    objects: &Objects,
    route: &Route<'_>,
    rkey: &Key,
    parent: &ParentReference,
    gi: usize,
    gateways: &[Resolved<'_>],
    served: &HashMap<(usize, usize), (ObjectRef, Vec<PlannedBackend>)>,
) -> Result<Vec<usize>, (&'static str, String)> {
    let g = &gateways[gi];
    let candidates = named_listeners(g, parent)?;
    let ns_labels = namespace_labels(objects, &rkey.0);
    let allowed: Vec<usize> = candidates
        .iter()
        .copied()
        .filter(|&i| listener_allows(g, i, route.kind, &rkey.0, &ns_labels))
        .collect();
    if allowed.is_empty() {
        // A listener of the kind that is refused or in conflict says so.
        let refused = candidates
            .iter()
            .map(|&i| &g.listeners[i])
            .find(|l| l.takes(route.kind) && (!l.takes_routes() || g.refused.is_some()));
        let message = match refused {
            Some(l) => format!(
                "listener {:?} of Gateway {}/{} is not accepted or is in conflict (see its conditions)",
                l.spec.name, g.key.0, g.key.1
            ),
            None => format!(
                "no listener of Gateway {}/{} it names allows {}s from namespace {}",
                g.key.0, g.key.1, route.kind, rkey.0
            ),
        };
        return Err(("NotAllowedByListeners", message));
    }
    let free: Vec<usize> = allowed
        .iter()
        .copied()
        .filter(|&i| !served.contains_key(&(gi, i)))
        .collect();
    if free.is_empty() {
        let (other, _) = &served[&(gi, allowed[0])];
        return Err((
            "NotAllowedByListeners",
            format!(
                "listener {:?} of Gateway {}/{} is served by the older {} {}/{} (one route per {} listener)",
                g.listeners[allowed[0]].spec.name,
                g.key.0,
                g.key.1,
                other.kind,
                other.namespace.as_deref().unwrap_or_default(),
                other.name,
                route.protocol,
            ),
        ));
    }
    Ok(free)
}

/// The backendRefs of every rule, checked; the second value is the ResolvedRefs verdict
/// (the first backendRef that did not resolve).
fn plan_backends(
    objects: &Objects,
    route: &Route<'_>,
    rkey: &Key,
    object: &ObjectRef,
    problems: &mut Vec<Problem>,
) -> (Vec<PlannedBackend>, Verdict) {
    let resolver = Resolver::new(objects);
    let mut resolved = Ok(());
    let mut out = Vec::new();
    for (ri, rule) in route.spec.rules.iter().enumerate() {
        for (bi, b) in rule.backend_refs.iter().enumerate() {
            let field = format!("spec.rules[{ri}].backendRefs[{bi}]");
            let weight = u32::try_from(b.weight.unwrap_or(1).max(0)).unwrap_or(0);
            let target = match check_backend(objects, resolver, route, rkey, b) {
                Ok(t) => Some(t),
                Err((reason, kind, msg)) => {
                    if resolved.is_ok() {
                        resolved = Err((reason, format!("{field}: {msg}")));
                    }
                    problems.push(Problem {
                        object: object.clone(),
                        field: Some(field),
                        kind,
                        message: format!("{msg}; its share of connections is rejected"),
                        severity: Severity::Error,
                    });
                    None
                }
            };
            out.push(PlannedBackend { weight, target });
        }
    }
    (out, resolved)
}

/// `(condition reason, Problem kind, message)` of an invalid backendRef.
type BackendError = (&'static str, &'static str, String);

fn check_backend(
    objects: &Objects,
    resolver: Resolver<'_>,
    route: &Route<'_>,
    rkey: &Key,
    b: &WeightedBackendRef,
) -> Result<(String, String, i32), BackendError> {
    let b = &b.target;
    let group = b.group.as_deref().unwrap_or("");
    let kind = b.kind.as_deref().unwrap_or("Service");
    if !group.is_empty() || kind != "Service" {
        return Err((
            "InvalidKind",
            "invalid_backend_kind",
            format!("{group}/{kind} is not a supported backend kind (core Services are)"),
        ));
    }
    let ns = b.namespace.as_deref().unwrap_or(&rkey.0);
    if ns != rkey.0 && !granted(objects, route.kind, &rkey.0, "", "Service", ns, &b.name) {
        return Err((
            "RefNotPermitted",
            "ref_not_permitted",
            format!(
                "Service {ns}/{} is in another namespace and no ReferenceGrant there allows it",
                b.name
            ),
        ));
    }
    let Some(port) = b.port else {
        return Err((
            "BackendNotFound",
            "unknown_service_port",
            "a Service backendRef needs a port".to_owned(),
        ));
    };
    let udp = route.protocol == L4Protocol::Udp;
    match resolver.port(ns, &b.name, &PortSpec::Number(port), udp) {
        Ok(_) => Ok((ns.to_owned(), b.name.clone(), port)),
        Err(e) => Err(("BackendNotFound", e.kind(), e.to_string())),
    }
}

/// Resolves plans to L4 services with their current endpoints.
pub fn services(plans: &[L4Plan], resolver: Resolver<'_>) -> Vec<L4Service> {
    plans.iter().map(|p| service(p, resolver)).collect()
}

fn service(plan: &L4Plan, resolver: Resolver<'_>) -> L4Service {
    let udp = plan.protocol == L4Protocol::Udp;
    let mut named = None;
    let mut split = Vec::with_capacity(plan.backends.len());
    for b in &plan.backends {
        let found = b.target.as_ref().and_then(|(ns, name, port)| {
            resolver.port(ns, name, &PortSpec::Number(*port), udp).ok()
        });
        let endpoints = match found {
            Some((svc, sp)) => {
                if b.weight > 0 && named.is_none() {
                    named = Some(backend::service_ref(svc, sp));
                }
                resolver.addrs(svc, sp)
            }
            None => Vec::new(),
        };
        split.push(L4Split {
            weight: b.weight,
            endpoints,
        });
    }
    let mut endpoints: Vec<_> = split
        .iter()
        .filter(|s| s.weight > 0)
        .flat_map(|s| s.endpoints.iter().copied())
        .collect();
    endpoints.sort();
    endpoints.dedup();
    L4Service {
        port: plan.port,
        protocol: plan.protocol,
        service: named.unwrap_or_else(|| ServiceRef {
            namespace: plan.route.namespace.clone().unwrap_or_default(),
            name: plan.route.name.clone(),
            port: plan.port,
        }),
        endpoints,
        proxy_protocol_in: false,
        proxy_protocol_out: false,
        addrs: plan.addrs.clone(),
        split,
    }
}

#[cfg(test)]
mod tests;
