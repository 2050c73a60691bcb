//! Our GatewayClasses and Gateways: which listeners are valid, where they listen, their
//! certificates, and the conditions that say so.

use std::{collections::HashMap, net::IpAddr, sync::Arc};

use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;

use super::{
    Key, Objects, Options, Problem, generation, granted,
    hostname::validate,
    key, object_ref,
    status::{ClassState, Cond, GatewayState, ListenerState, Statuses},
    types::{Gateway, GatewayAddress, Listener, RouteGroupKind},
};
use crate::{
    config::ingress::SecretCache,
    snapshot::{certs::TlsCert, gateway::ListenAddr, problem::Severity},
};

/// The route kinds an HTTP or HTTPS listener takes.
pub const HTTP_ROUTE: &str = "HTTPRoute";
/// The route kind a TCP listener takes.
pub const TCP_ROUTE: &str = "TCPRoute";
/// The route kind a UDP listener takes.
pub const UDP_ROUTE: &str = "UDPRoute";

/// The one route kind a listener of `protocol` takes; `None` for protocols we do not serve.
fn route_kind(protocol: &str) -> Option<&'static str> {
    match protocol {
        "HTTP" | "HTTPS" => Some(HTTP_ROUTE),
        "TCP" => Some(TCP_ROUTE),
        "UDP" => Some(UDP_ROUTE),
        "TLS" => Some(TLS_ROUTE),
        _ => None,
    }
}

/// The route kind a TLS listener (Passthrough mode) takes.
pub const TLS_ROUTE: &str = "TLSRoute";

/// The names of our GatewayClasses (`spec.controllerName` is `--controller-class`), with
/// their Accepted condition recorded.
pub fn our_classes(objects: &Objects, opts: &Options, statuses: &mut Statuses) -> Vec<String> {
    let mut names = Vec::new();
    for class in objects.gateway_classes.values() {
        if class.spec.controller_name != opts.controller_class {
            continue;
        }
        let name = class.metadata.name.clone().unwrap_or_default();
        statuses.classes.push(ClassState {
            name: name.clone(),
            conditions: vec![Cond::new(
                "Accepted",
                true,
                "Accepted",
                "served by xdp-ingress",
                generation(&class.metadata),
            )],
        });
        names.push(name);
    }
    names
}

/// A Gateway of ours, checked.
pub struct Resolved<'a> {
    /// Namespace and name.
    pub key: Key,
    /// The object.
    pub gateway: &'a Gateway,
    /// Where its listeners listen: its IPAddress addresses, or `[None]` (`--bind-address`).
    pub addrs: Vec<Option<IpAddr>>,
    /// Why the Gateway as a whole is refused (bad `spec.addresses`).
    pub refused: Option<(&'static str, String)>,
    /// Its listeners, in spec order.
    pub listeners: Vec<ResolvedListener<'a>>,
}

/// One listener, checked.
pub struct ResolvedListener<'a> {
    /// The spec.
    pub spec: &'a Listener,
    /// Validated, lowercase.
    pub hostname: Option<String>,
    /// The port.
    pub port: u16,
    /// HTTPS, or TLS (Passthrough).
    pub tls: bool,
    /// TLS in Passthrough mode: connections are routed by SNI to TLSRoutes' backends
    /// without termination.
    pub passthrough: bool,
    /// HTTPS: the certificates of `tls.certificateRefs` that resolved.
    pub certs: Vec<Arc<TlsCert>>,
    /// Route kinds taken.
    pub kinds: Vec<RouteGroupKind>,
    /// `Err((reason, message))` when not Accepted.
    pub accepted: Result<(), (&'static str, String)>,
    /// `Err((reason, message))` when a reference did not resolve.
    pub resolved: Result<(), (&'static str, String)>,
    /// `(reason, message)` when in conflict with another listener.
    pub conflicted: Option<(&'static str, String)>,
    /// Routes attached.
    pub attached: i32,
}

impl ResolvedListener<'_> {
    /// Whether it serves: accepted, its certificates resolved, no conflict.
    pub fn usable(&self) -> bool {
        self.accepted.is_ok()
            && self.conflicted.is_none()
            && (self.resolved.is_ok() || self.resolved_kinds_only())
    }

    /// Whether routes may attach: accepted and not in conflict, even if its references did
    /// not resolve (then it is not served, but the routes still count as attached).
    pub fn takes_routes(&self) -> bool {
        self.accepted.is_ok() && self.conflicted.is_none()
    }

    /// Unresolved only because some `allowedRoutes.kinds` are unknown: the known kinds
    /// still attach.
    fn resolved_kinds_only(&self) -> bool {
        matches!(self.resolved, Err(("InvalidRouteKinds", _))) && !self.kinds.is_empty()
    }

    /// Whether it takes routes of `kind`.
    pub fn takes(&self, kind: &str) -> bool {
        self.kinds.iter().any(|k| k.kind == kind)
    }

    /// A TCP or UDP listener: the L4 plane serves it, not the HTTP router.
    pub fn is_l4(&self) -> bool {
        matches!(self.spec.protocol.as_str(), "TCP" | "UDP")
    }
}

impl Resolved<'_> {
    /// Its status.
    pub fn state(&self) -> GatewayState {
        let generation = generation(&self.gateway.metadata);
        let mut listeners = Vec::with_capacity(self.listeners.len());
        for l in &self.listeners {
            let mut c = Vec::with_capacity(4);
            let accepted = self.refused.is_none() && l.accepted.is_ok();
            c.push(match &l.accepted {
                Ok(()) => Cond::new("Accepted", true, "Accepted", "", generation),
                Err((reason, msg)) => Cond::new("Accepted", false, reason, msg.clone(), generation),
            });
            c.push(match &l.resolved {
                Ok(()) => Cond::new("ResolvedRefs", true, "ResolvedRefs", "", generation),
                Err((reason, msg)) => {
                    Cond::new("ResolvedRefs", false, reason, msg.clone(), generation)
                }
            });
            c.push(match &l.conflicted {
                None => Cond::new("Conflicted", false, "NoConflicts", "", generation),
                Some((reason, msg)) => {
                    Cond::new("Conflicted", true, reason, msg.clone(), generation)
                }
            });
            c.push(if accepted && l.usable() {
                Cond::new("Programmed", true, "Programmed", "", generation)
            } else {
                Cond::new(
                    "Programmed",
                    false,
                    "Invalid",
                    "not served: see the other conditions",
                    generation,
                )
            });
            listeners.push(ListenerState {
                name: l.spec.name.clone(),
                supported_kinds: l.kinds.clone(),
                attached_routes: l.attached,
                conditions: c,
            });
        }
        let serving = self.refused.is_none() && self.listeners.iter().any(ResolvedListener::usable);
        let accepted = match &self.refused {
            Some((reason, msg)) => Cond::new("Accepted", false, reason, msg.clone(), generation),
            None if self.listeners.iter().all(|l| l.accepted.is_err()) => Cond::new(
                "Accepted",
                false,
                "ListenersNotValid",
                "no listener is valid",
                generation,
            ),
            None => Cond::new("Accepted", true, "Accepted", "", generation),
        };
        let programmed = if serving {
            Cond::new("Programmed", true, "Programmed", "", generation)
        } else {
            Cond::new(
                "Programmed",
                false,
                "Invalid",
                "no listener is served",
                generation,
            )
        };
        let addresses = self
            .addrs
            .iter()
            .flatten()
            .map(|ip| GatewayAddress {
                type_: Some("IPAddress".to_owned()),
                value: ip.to_string(),
            })
            .collect();
        GatewayState {
            key: self.key.clone(),
            addresses,
            conditions: vec![accepted, programmed],
            listeners,
        }
    }

    /// The listening addresses of a listener.
    pub fn listen_addrs(&self, l: &ResolvedListener<'_>) -> impl Iterator<Item = ListenAddr> {
        let port = l.port;
        self.addrs
            .clone()
            .into_iter()
            .map(move |ip| ListenAddr { ip, port })
    }
}

/// Checks the Gateways of our classes, oldest first (the older one wins a port conflict
/// between Gateways).
pub fn resolve<'a>(
    objects: &'a Objects,
    opts: &Options,
    classes: &[String],
    secrets: &mut SecretCache,
    problems: &mut Vec<Problem>,
) -> Vec<Resolved<'a>> {
    let mut ours: Vec<&'a Gateway> = objects
        .gateways
        .values()
        .map(|g| &**g)
        .filter(|g| classes.contains(&g.spec.gateway_class_name))
        .collect();
    ours.sort_by_cached_key(|g| age(g));
    let mut out: Vec<Resolved<'a>> = ours
        .into_iter()
        .map(|g| resolve_one(objects, g, secrets))
        .collect();
    ports(&mut out, opts);
    super::l4routes::ports(&mut out, objects, opts);
    for g in &out {
        let object = object_ref("Gateway", &g.key);
        if let Some((_, msg)) = &g.refused {
            problems.push(problem(&object, "spec.addresses", "gateway_address", msg));
        }
        for (i, l) in g.listeners.iter().enumerate() {
            let field = format!("spec.listeners[{i}]");
            let failures = [
                l.accepted.as_ref().err().map(|(_, m)| m),
                l.resolved.as_ref().err().map(|(_, m)| m),
                l.conflicted.as_ref().map(|(_, m)| m),
            ];
            for msg in failures.into_iter().flatten() {
                problems.push(problem(&object, &field, "gateway_listener", msg));
            }
        }
    }
    out
}

/// `(created, namespace, name)`: the spec's tie-break order between objects.
pub fn age(g: &Gateway) -> (bool, Option<Time>, Key) {
    let created = g.metadata.creation_timestamp.clone();
    (created.is_none(), created, key(&g.metadata))
}

fn problem(
    object: &crate::snapshot::ObjectRef,
    field: &str,
    kind: &'static str,
    msg: &str,
) -> Problem {
    Problem {
        object: object.clone(),
        field: Some(field.to_owned()),
        kind,
        message: msg.to_owned(),
        severity: Severity::Error,
    }
}

fn resolve_one<'a>(objects: &Objects, g: &'a Gateway, secrets: &mut SecretCache) -> Resolved<'a> {
    let key = key(&g.metadata);
    let mut refused = None;
    let mut addrs = Vec::new();
    for (i, a) in g.spec.addresses.iter().enumerate() {
        let ty = a.type_.as_deref().unwrap_or("IPAddress");
        match (ty, a.value.parse::<IpAddr>()) {
            ("IPAddress", Ok(ip)) => {
                if !addrs.contains(&Some(ip)) {
                    addrs.push(Some(ip));
                }
            }
            ("IPAddress", Err(_)) => {
                refused = Some((
                    "UnsupportedAddress",
                    format!("spec.addresses[{i}]: {:?} is not an IP address", a.value),
                ));
            }
            (other, _) => {
                refused = Some((
                    "UnsupportedAddress",
                    format!(
                        "spec.addresses[{i}]: address type {other:?} is not supported (only IPAddress)"
                    ),
                ));
            }
        }
    }
    if addrs.is_empty() {
        addrs.push(None);
    }
    let listeners = g
        .spec
        .listeners
        .iter()
        .map(|l| resolve_listener(objects, &key, l, secrets))
        .collect::<Vec<_>>();
    let mut r = Resolved {
        key,
        gateway: g,
        addrs,
        refused,
        listeners,
    };
    conflicts_within(&mut r);
    r
}

fn resolve_listener<'a>(
    objects: &Objects,
    gw: &Key,
    l: &'a Listener,
    secrets: &mut SecretCache,
) -> ResolvedListener<'a> {
    let mut out = ResolvedListener {
        spec: l,
        hostname: None,
        port: 0,
        tls: false,
        passthrough: false,
        certs: Vec::new(),
        kinds: Vec::new(),
        accepted: Ok(()),
        resolved: Ok(()),
        conflicted: None,
        attached: 0,
    };
    match u16::try_from(l.port) {
        Ok(p) if p > 0 => out.port = p,
        _ => {
            out.accepted = Err((
                "PortUnavailable",
                format!("port {} is out of range", l.port),
            ));
        }
    }
    if let Some(h) = &l.hostname {
        match validate(h) {
            Ok(h) => out.hostname = Some(h),
            Err(e) => out.accepted = Err(("UnsupportedValue", format!("hostname: {e}"))),
        }
    }
    out.tls = matches!(l.protocol.as_str(), "HTTPS" | "TLS");
    if l.protocol == "TLS" {
        out.passthrough = true;
        if let Err(e) = passthrough_mode(l) {
            out.accepted = Err(("UnsupportedProtocol", e));
            return out;
        }
    }
    let Some(route_kind) = route_kind(&l.protocol) else {
        out.accepted = Err((
            "UnsupportedProtocol",
            format!(
                "protocol {:?} is not supported (HTTP, HTTPS, TLS, TCP and UDP are)",
                l.protocol
            ),
        ));
        return out;
    };
    // Kinds: the protocol's route kind unless allowedRoutes.kinds narrows it (to kinds we
    // know).
    match l.allowed_routes.as_ref().and_then(|a| a.kinds.as_ref()) {
        None => out.kinds.push(RouteGroupKind {
            group: Some(super::types::GROUP.to_owned()),
            kind: route_kind.to_owned(),
        }),
        Some(kinds) => {
            let mut invalid = Vec::new();
            for k in kinds {
                let group = k.group.as_deref().unwrap_or(super::types::GROUP);
                if group == super::types::GROUP && k.kind == route_kind {
                    if !out.takes(route_kind) {
                        out.kinds.push(RouteGroupKind {
                            group: Some(group.to_owned()),
                            kind: k.kind.clone(),
                        });
                    }
                } else {
                    invalid.push(format!("{group}/{}", k.kind));
                }
            }
            if !invalid.is_empty() {
                out.resolved = Err((
                    "InvalidRouteKinds",
                    format!(
                        "allowedRoutes.kinds: {} not supported on {} listeners",
                        invalid.join(", "),
                        l.protocol
                    ),
                ));
            }
        }
    }
    if out.tls && !out.passthrough {
        resolve_certs(objects, gw, l, secrets, &mut out);
    }
    out
}

/// A TLS listener's `tls.mode`: Passthrough is served; Terminate (the spec's default,
/// which would terminate TLS and route the plaintext by TLSRoute) is not.
fn passthrough_mode(l: &Listener) -> Result<(), String> {
    match l.tls.as_ref().and_then(|t| t.mode.as_deref()) {
        Some("Passthrough") => Ok(()),
        mode => Err(format!(
            "tls.mode {:?} on a TLS listener is not supported: TLSRoutes are served in Passthrough mode only (set tls.mode: Passthrough, or terminate with an HTTPS listener and HTTPRoutes)",
            mode.unwrap_or("Terminate")
        )),
    }
}

fn resolve_certs(
    objects: &Objects,
    gw: &Key,
    l: &Listener,
    secrets: &mut SecretCache,
    out: &mut ResolvedListener<'_>,
) {
    let mode = l
        .tls
        .as_ref()
        .and_then(|t| t.mode.as_deref())
        .unwrap_or("Terminate");
    if mode != "Terminate" {
        out.accepted = Err((
            "UnsupportedProtocol",
            format!("tls.mode {mode:?} is not valid on an HTTPS listener (Terminate is)"),
        ));
        return;
    }
    let refs = l
        .tls
        .as_ref()
        .map(|t| t.certificate_refs.as_slice())
        .unwrap_or_default();
    if refs.is_empty() {
        out.resolved = Err((
            "InvalidCertificateRef",
            "an HTTPS listener needs tls.certificateRefs".to_owned(),
        ));
        return;
    }
    for (i, r) in refs.iter().enumerate() {
        let field = format!("tls.certificateRefs[{i}]");
        let group = r.group.as_deref().unwrap_or("");
        let kind = r.kind.as_deref().unwrap_or("Secret");
        if !group.is_empty() || kind != "Secret" {
            out.resolved = Err((
                "InvalidCertificateRef",
                format!("{field}: {group}/{kind} is not supported (core Secrets are)"),
            ));
            continue;
        }
        let ns = r.namespace.as_deref().unwrap_or(&gw.0);
        if ns != gw.0 && !granted(objects, "Gateway", &gw.0, "", "Secret", ns, &r.name) {
            out.resolved = Err((
                "RefNotPermitted",
                format!(
                    "{field}: Secret {ns}/{} is in another namespace and no ReferenceGrant there allows it",
                    r.name
                ),
            ));
            continue;
        }
        let skey = (ns.to_owned(), r.name.clone());
        let Some(secret) = objects.secrets.get(&skey) else {
            out.resolved = Err((
                "InvalidCertificateRef",
                format!("{field}: Secret {ns}/{} not found", r.name),
            ));
            continue;
        };
        match secrets.get(&skey, secret) {
            Ok(cert) => out.certs.push(cert),
            Err((f, _, msg)) => {
                out.resolved = Err((
                    "InvalidCertificateRef",
                    format!("{field}: Secret {ns}/{} {f}: {msg}", r.name),
                ));
            }
        }
    }
}

/// Listeners of one Gateway on the same port: different protocols over the same transport
/// conflict (UDP and a TCP-based protocol share a port number, not a socket), and so do
/// equal hostnames with the same protocol. Every listener in a conflict is marked.
fn conflicts_within(g: &mut Resolved<'_>) {
    let n = g.listeners.len();
    let mut marks: Vec<Option<(&'static str, String)>> = vec![None; n];
    for (i, mark) in marks.iter_mut().enumerate() {
        for j in 0..n {
            let (a, b) = (&g.listeners[i], &g.listeners[j]);
            if i == j || a.port != b.port || a.port == 0 {
                continue;
            }
            // UDP shares no socket with the TCP-based protocols.
            if (a.spec.protocol == "UDP") != (b.spec.protocol == "UDP") {
                continue;
            }
            // HTTPS and TLS listeners share a port, told apart by SNI (hostname).
            let tls_family = |p: &str| matches!(p, "HTTPS" | "TLS");
            let (pa, pb) = (a.spec.protocol.as_str(), b.spec.protocol.as_str());
            if pa != pb && !(tls_family(pa) && tls_family(pb)) {
                *mark = Some((
                    "ProtocolConflict",
                    format!(
                        "port {} is also listener {:?} with protocol {}",
                        a.port, b.spec.name, b.spec.protocol
                    ),
                ));
            } else if a.hostname == b.hostname && mark.is_none() {
                *mark = Some((
                    "HostnameConflict",
                    format!(
                        "listener {:?} has the same port, protocol (or HTTPS and TLS) and hostname",
                        b.spec.name
                    ),
                ));
            }
        }
    }
    for (l, m) in g.listeners.iter_mut().zip(marks) {
        if m.is_some() {
            l.conflicted = m;
        }
    }
}

/// Ports across Gateways (oldest first) and against the Ingress listeners: an address and
/// port serves one protocol; the older Gateway keeps it, and the Ingress ports
/// (`--http-port` plain, `--https-port` TLS, on `--bind-address`) are older than any
/// Gateway. `--health-port` is never available.
fn ports(gateways: &mut [Resolved<'_>], opts: &Options) {
    let mut taken: HashMap<ListenAddr, (bool, String)> = HashMap::new();
    let ingress = |port, tls| {
        (
            ListenAddr { ip: None, port },
            (tls, "the Ingress listener".to_owned()),
        )
    };
    taken.extend([
        ingress(opts.http_port, false),
        ingress(opts.https_port, true),
    ]);
    for g in gateways.iter_mut() {
        if g.refused.is_some() {
            continue;
        }
        let addrs = g.addrs.clone();
        let who = format!("Gateway {}/{}", g.key.0, g.key.1);
        for l in &mut g.listeners {
            // TCP and UDP listeners: see `l4routes::ports`.
            if l.accepted.is_err() || l.conflicted.is_some() || l.is_l4() {
                continue;
            }
            if l.port == opts.health_port {
                l.accepted = Err((
                    "PortUnavailable",
                    format!("port {} is the health port (--health-port)", l.port),
                ));
                continue;
            }
            for ip in &addrs {
                let at = ListenAddr {
                    ip: *ip,
                    port: l.port,
                };
                match taken.get(&at) {
                    Some((tls, owner)) if *tls != l.tls => {
                        l.accepted = Err((
                            "PortUnavailable",
                            format!(
                                "{at} is used by {owner} with {}",
                                if *tls { "HTTPS" } else { "HTTP" }
                            ),
                        ));
                    }
                    Some(_) => {}
                    None => {
                        taken.insert(at, (l.tls, who.clone()));
                    }
                }
            }
        }
    }
}
