//! Gateway API translation: our GatewayClasses, their Gateways and the HTTPRoutes attached
//! to them become the Snapshot's [`GatewayPlane`], TCPRoutes and UDPRoutes become L4 plans
//! ([`l4routes`]), plus the status conditions the spec asks for and Problems for what
//! cannot be served.
//!
//! Pure, like the Ingress translation. The whole Gateway API set is translated at once:
//! Gateways and routes are few next to Ingresses and Services, and a route's meaning
//! depends on every listener it may attach to. Backends share the Ingress translation's
//! endpoint cells, so an endpoint change rebuilds nothing here.

pub mod hostname;
pub mod l4routes;
mod listeners;
mod plane;
mod routes;
pub mod status;
mod tls_routes;
pub mod types;

pub use types::{Gateway, GatewayClass, HTTPRoute, ReferenceGrant, TCPRoute, TLSRoute, UDPRoute};

use k8s_openapi::apimachinery::pkg::apis::meta::v1::{LabelSelector, ObjectMeta};

use super::{
    Options, Problem,
    backend::{Cells, Resolver},
    ingress::SecretCache,
    store::{Key, Objects},
};
use crate::snapshot::{
    ObjectRef,
    gateway::{GatewayHosts, GatewayPlane, ListenAddr},
    problem::Severity,
    routes::{HostMatch, RouteTable},
};
use status::Statuses;

/// What [`translate`] gives.
#[derive(Debug, Default)]
pub struct Translated {
    /// The listeners and routes to serve.
    pub plane: GatewayPlane,
    /// The status of our objects.
    pub statuses: Statuses,
    /// What cannot be served, and why.
    pub problems: Vec<Problem>,
    /// TCP and UDP listeners with their routes, for the L4 table.
    pub l4: Vec<l4routes::L4Plan>,
}

/// Translates every Gateway API object of ours in `objects`.
pub fn translate(
    objects: &Objects,
    opts: &Options,
    cells: &mut Cells,
    secrets: &mut SecretCache,
) -> Translated {
    let mut out = Translated::default();
    let classes = listeners::our_classes(objects, opts, &mut out.statuses);
    if classes.is_empty() {
        return out;
    }
    let mut gateways = listeners::resolve(objects, opts, &classes, secrets, &mut out.problems);
    let resolver = Resolver::new(objects);
    let routes = routes::attach(objects, resolver, cells, &mut gateways, &mut out);
    let tls_routes = tls_routes::attach(objects, resolver, cells, &mut gateways, &mut out);
    out.l4 = l4routes::attach(objects, &mut gateways, &mut out);
    out.statuses
        .routes
        .sort_by(|a, b| (&a.key, a.kind).cmp(&(&b.key, b.kind)));
    out.plane = plane::assemble(&gateways, &routes, &tls_routes);
    out.statuses.gateways = gateways.iter().map(listeners::Resolved::state).collect();
    out
}

/// Ingress hosts that a Gateway serves on the Ingress listener's own sockets
/// (`--bind-address` with `--http-port` or `--https-port`): there the Gateway's routes
/// win, host by host, and each shadowed Ingress gets a Warning. Why the Gateway: it is the
/// API being migrated to, and an HTTPRoute must be explicitly allowed by a listener of a
/// Gateway of our class, so the takeover is always deliberate; deleting the HTTPRoute
/// gives the host back to the Ingress.
pub fn shadowed(table: &RouteTable, plane: &GatewayPlane, opts: &Options) -> Vec<Problem> {
    let shared: Vec<(u16, &GatewayHosts)> = [opts.http_port, opts.https_port]
        .into_iter()
        .filter_map(|port| {
            let at = ListenAddr { ip: None, port };
            plane.ports.get(&at).map(|p| (port, &p.hosts))
        })
        .collect();
    if shared.is_empty() {
        return Vec::new();
    }
    let mut out = Vec::new();
    for (host, routes) in table.hosts() {
        for (port, hosts) in &shared {
            if !covers(hosts, &host) {
                continue;
            }
            for ingress in routes.ingresses() {
                out.push(Problem {
                    object: ingress.clone(),
                    field: Some("spec.rules".to_owned()),
                    kind: "shadowed_by_gateway",
                    message: format!(
                        "host {host} on port {port} is served by a Gateway API route there; this Ingress's rules for it are not used"
                    ),
                    severity: Severity::Warning,
                });
            }
        }
    }
    out
}

/// Whether a Gateway serves requests for an Ingress host.
fn covers(hosts: &GatewayHosts, host: &HostMatch) -> bool {
    match host {
        HostMatch::Any => hosts.any.is_some(),
        // The router's own lookup: exact, wildcards, then every host.
        HostMatch::Exact(h) => hosts.lookup(h).is_some(),
        HostMatch::Wildcard(_) if hosts.any.is_some() => true,
        HostMatch::Wildcard(s) => {
            let suffix = format!(".{s}");
            hosts.wildcard.keys().any(|w| suffix.ends_with(w.as_str()))
        }
    }
}

/// The generation of an object (0 when unset, as in file mode).
fn generation(meta: &ObjectMeta) -> i64 {
    meta.generation.unwrap_or(0)
}

/// `(namespace, name)` of an object.
fn key(meta: &ObjectMeta) -> Key {
    (
        meta.namespace.clone().unwrap_or_default(),
        meta.name.clone().unwrap_or_default(),
    )
}

/// The ObjectRef of a Gateway API object for Problems.
fn object_ref(kind: &str, key: &Key) -> ObjectRef {
    ObjectRef {
        kind: kind.to_owned(),
        namespace: (!key.0.is_empty()).then(|| key.0.clone()),
        name: key.1.clone(),
    }
}

/// Whether a ReferenceGrant in `to_namespace` lets a `from_kind` in `from_namespace` refer
/// to the `to_group`/`to_kind` object `to_name`.
fn granted(
    objects: &Objects,
    from_kind: &str,
    from_namespace: &str,
    to_group: &str,
    to_kind: &str,
    to_namespace: &str,
    to_name: &str,
) -> bool {
    objects
        .reference_grants
        .range((to_namespace.to_owned(), String::new())..)
        .take_while(|((ns, _), _)| ns == to_namespace)
        .any(|(_, grant)| {
            grant.spec.from.iter().any(|f| {
                f.group == types::GROUP && f.kind == from_kind && f.namespace == from_namespace
            }) && grant.spec.to.iter().any(|t| {
                t.group == to_group
                    && t.kind == to_kind
                    && t.name.as_deref().is_none_or(|n| n == to_name)
            })
        })
}

/// Whether `labels` satisfy a LabelSelector (matchLabels and matchExpressions).
fn selects(selector: &LabelSelector, labels: &std::collections::BTreeMap<String, String>) -> bool {
    let by_label = selector
        .match_labels
        .iter()
        .flatten()
        .all(|(k, v)| labels.get(k) == Some(v));
    by_label
        && selector.match_expressions.iter().flatten().all(|e| {
            let values = e.values.as_deref().unwrap_or_default();
            let value = labels.get(&e.key);
            match e.operator.as_str() {
                "In" => value.is_some_and(|v| values.contains(v)),
                "NotIn" => value.is_none_or(|v| !values.contains(v)),
                "Exists" => value.is_some(),
                "DoesNotExist" => value.is_none(),
                _ => false,
            }
        })
}

#[cfg(test)]
mod tests;
