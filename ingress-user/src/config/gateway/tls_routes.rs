//! TLSRoutes: attached, like HTTPRoutes (parentRefs, `allowedRoutes`, hostname
//! intersection), to the TLS listeners in Passthrough mode of our Gateways; their
//! backendRefs become the weighted backends connections are passed through to.

use std::sync::Arc;

use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;

use super::{
    Key, Objects, Problem, Translated, generation, granted,
    hostname::validate,
    key,
    listeners::{Resolved, TLS_ROUTE},
    object_ref,
    routes::{attach_parent, our_gateway, parent_state},
    status::RouteState,
    types::{TLSRoute, WeightedBackendRef},
};
use crate::{
    config::backend::{Cells, PortSpec, Resolver},
    snapshot::{
        ObjectRef,
        gateway::{InvalidBackend, WeightedBackend},
        problem::Severity,
        routes::Backend,
    },
};

/// A TLSRoute attached to at least one listener, oldest first.
pub struct AttachedTls {
    /// The TLSRoute.
    pub route: ObjectRef,
    /// The backendRefs of all its rules, weighted.
    pub backends: Vec<WeightedBackend>,
    /// Where it attached: (Gateway index, listener index, hostnames; `None` = any).
    pub attachments: Vec<(usize, usize, Vec<Option<String>>)>,
}

/// Attaches every TLSRoute that names a Gateway of ours, recording parent statuses,
/// listener `attachedRoutes` and Problems.
pub fn attach(
    objects: &Objects,
    resolver: Resolver<'_>,
    cells: &mut Cells,
    gateways: &mut [Resolved<'_>],
    out: &mut Translated,
) -> Vec<AttachedTls> {
    let mut routes: Vec<&TLSRoute> = objects.tls_routes.values().map(|r| &**r).collect();
    routes.sort_by_cached_key(|r| age(r));
    let mut attached = Vec::new();
    for route in routes {
        let rkey = key(&route.metadata);
        let object = object_ref(TLS_ROUTE, &rkey);
        let route_gen = generation(&route.metadata);
        let mut parents = Vec::new();
        let mut attachments = Vec::new();
        let mut compiled: Option<(Vec<WeightedBackend>, Verdict)> = None;
        for (pi, parent) in route.spec.parent_refs.iter().enumerate() {
            let Some(gi) = our_gateway(gateways, parent, &rkey.0) else {
                continue;
            };
            let (_, resolved) = compiled.get_or_insert_with(|| {
                compile(
                    objects,
                    resolver,
                    cells,
                    route,
                    &rkey,
                    &object,
                    &mut out.problems,
                )
            });
            let accepted = attach_parent(
                objects,
                TLS_ROUTE,
                &route.spec.hostnames,
                &rkey,
                parent,
                gi,
                gateways,
                &mut attachments,
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
        if parents.is_empty() {
            continue;
        }
        out.statuses.routes.push(RouteState {
            key: rkey.clone(),
            kind: TLS_ROUTE,
            parents,
        });
        if !attachments.is_empty()
            && let Some((backends, _)) = compiled
        {
            attached.push(AttachedTls {
                route: object,
                backends,
                attachments,
            });
        }
    }
    out.statuses
        .routes
        .sort_by(|a, b| (a.kind, &a.key).cmp(&(b.kind, &b.key)));
    attached
}

/// `Err((reason, message))` of a ResolvedRefs condition that is False.
type Verdict = Result<(), (&'static str, String)>;

/// The spec's order between routes: oldest first, then `{namespace}/{name}`.
fn age(r: &TLSRoute) -> (bool, Option<Time>, String) {
    let created = r.metadata.creation_timestamp.clone();
    let (ns, name) = key(&r.metadata);
    (created.is_none(), created, format!("{ns}/{name}"))
}

/// The backendRefs of every rule (a TLSRoute rule has nothing else), and the
/// ResolvedRefs verdict: the first that did not resolve, if any.
fn compile(
    objects: &Objects,
    resolver: Resolver<'_>,
    cells: &mut Cells,
    route: &TLSRoute,
    rkey: &Key,
    object: &ObjectRef,
    problems: &mut Vec<Problem>,
) -> (Vec<WeightedBackend>, Verdict) {
    let mut verdict: Verdict = Ok(());
    let mut problem = |field: String, kind: &'static str, message: String| {
        problems.push(Problem {
            object: object.clone(),
            field: Some(field),
            kind,
            message,
            severity: Severity::Error,
        });
    };
    for (i, h) in route.spec.hostnames.iter().enumerate() {
        if let Err(e) = validate(h) {
            problem(
                format!("spec.hostnames[{i}]"),
                "invalid_hostname",
                e.to_string(),
            );
        }
    }
    let mut backends = Vec::new();
    for (ri, rule) in route.spec.rules.iter().enumerate() {
        for (bi, b) in rule.backend_refs.iter().enumerate() {
            let field = format!("spec.rules[{ri}].backendRefs[{bi}]");
            let target = match backend(objects, resolver, cells, rkey, object, b) {
                Ok(backend) => Ok(backend),
                Err((invalid, kind, reason, message)) => {
                    if verdict.is_ok() {
                        verdict = Err((reason, format!("{field}: {message}")));
                    }
                    problem(field, kind, message);
                    Err(invalid)
                }
            };
            backends.push(WeightedBackend {
                weight: u32::try_from(b.weight.unwrap_or(1)).unwrap_or(0),
                target,
                filters: Vec::new(),
            });
        }
    }
    (backends, verdict)
}

/// Resolves a backendRef to a Service port, or says why not: (what the data plane
/// sees, Problem kind, ResolvedRefs reason, message).
fn backend(
    objects: &Objects,
    resolver: Resolver<'_>,
    cells: &mut Cells,
    rkey: &Key,
    object: &ObjectRef,
    b: &WeightedBackendRef,
) -> Result<Arc<Backend>, (InvalidBackend, &'static str, &'static str, String)> {
    let b = &b.target;
    let group = b.group.as_deref().unwrap_or("");
    let kind = b.kind.as_deref().unwrap_or("Service");
    if !group.is_empty() || kind != "Service" {
        let msg = format!("{group}/{kind} is not a supported backend kind (core Services are)");
        return Err((
            InvalidBackend::InvalidKind,
            "invalid_backend_kind",
            "InvalidKind",
            msg,
        ));
    }
    let ns = b.namespace.as_deref().unwrap_or(&rkey.0);
    if ns != rkey.0 && !granted(objects, TLS_ROUTE, &rkey.0, "", "Service", ns, &b.name) {
        let msg = format!(
            "Service {ns}/{} is in another namespace and no ReferenceGrant there allows it",
            b.name
        );
        return Err((
            InvalidBackend::RefNotPermitted,
            "ref_not_permitted",
            "RefNotPermitted",
            msg,
        ));
    }
    let Some(port) = b.port else {
        let msg = "a Service backendRef needs a port".to_owned();
        return Err((
            InvalidBackend::NotFound,
            "unknown_service_port",
            "BackendNotFound",
            msg,
        ));
    };
    match resolver.port(ns, &b.name, &PortSpec::Number(port), false) {
        Ok((service, sp)) => {
            let (sref, endpoints) = cells.get(resolver, service, sp);
            Ok(Arc::new(Backend::new(
                sref,
                endpoints,
                Some(object.clone()),
            )))
        }
        Err(e) => Err((
            InvalidBackend::NotFound,
            e.kind(),
            "BackendNotFound",
            e.to_string(),
        )),
    }
}

#[cfg(test)]
mod tests;
