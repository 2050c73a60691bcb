//! The control plane's pure half: Kubernetes objects in, one immutable `Snapshot` out.
//! No IO, no tokio, no kube client here.
//!
//! - [`build`] translates a whole [`Store`] at once: the reference, used by `check`.
//! - [`incremental::Engine`] takes the [`Change`]s sources send (`crate::source`) and
//!   redoes only what each change touches; the controller runs it. A property test keeps
//!   the two equal.

pub mod store;

pub use store::{Change, Objects, Store};

/// The vocabulary of the Snapshot, re-exported where translation code has always found it.
pub use crate::snapshot::{
    L4Protocol, L4Service, ServiceRef, Snapshot,
    problem::{self, ObjectRef, Problem},
};

pub mod alias;
pub mod annotations;
pub mod auth_tls;
pub mod backend;
pub mod basic_auth;
pub mod class;
pub mod gateway;
pub mod incremental;
pub mod ingress;
pub mod l4;
pub mod legacy;
pub mod proxy_ssl;
pub mod slice;
pub mod tls;

#[cfg(test)]
pub(crate) mod fixtures;
#[cfg(test)]
mod tests;

use std::{collections::BTreeMap, fmt, str::FromStr};

use backend::{Cells, Resolver};

use crate::snapshot::routes::{HostMatch, RouteTable};

/// `namespace/name`, as given to flags like `--tcp-services-configmap`.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct NamespacedName {
    /// Namespace.
    pub namespace: String,
    /// Name.
    pub name: String,
}

impl fmt::Display for NamespacedName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.namespace, self.name)
    }
}

/// Why a `namespace/name` string was refused.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("expected namespace/name (e.g. ingress-nginx/tcp-services), got {0:?}")]
pub struct NamespacedNameError(String);

impl FromStr for NamespacedName {
    type Err = NamespacedNameError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s.split_once('/') {
            Some((ns, name))
                if !ns.is_empty()
                    && !name.is_empty()
                    && !name.contains('/')
                    && !s.contains(char::is_whitespace) =>
            {
                Ok(Self {
                    namespace: ns.to_owned(),
                    name: name.to_owned(),
                })
            }
            _ => Err(NamespacedNameError(s.to_owned())),
        }
    }
}

/// What [`build`] needs from the command line: which Ingresses are ours, which ConfigMaps
/// hold the L4 services, and which ports those may not take.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Options {
    /// `--ingress-class`: matched against `ingressClassName` and the legacy annotation.
    pub ingress_class: String,
    /// `--controller-class`: matched against IngressClass `spec.controller`.
    pub controller_class: String,
    /// `--watch-ingress-without-class`: serve Ingresses that name no class.
    pub watch_without_class: bool,
    /// `--watch-namespace`: only Ingresses in this namespace are served (None = all).
    pub watch_namespace: Option<String>,
    /// `--tcp-services-configmap`.
    pub tcp_services: Option<NamespacedName>,
    /// `--udp-services-configmap`.
    pub udp_services: Option<NamespacedName>,
    /// `--default-backend-service` (its first port is used).
    pub default_backend_service: Option<NamespacedName>,
    /// `--http-port`: reserved, refused as an L4 port.
    pub http_port: u16,
    /// `--https-port`: reserved, refused as an L4 port.
    pub https_port: u16,
    /// `--health-port`: reserved, refused as an L4 port.
    pub health_port: u16,
    /// `--annotations-prefix`: the ingress-nginx annotations read are `<prefix>/<name>`.
    pub annotations_prefix: String,
    /// `--global-allowed-response-headers`: what `custom-headers` may set.
    pub allowed_response_headers: Vec<hyper::header::HeaderName>,
}

impl Default for Options {
    fn default() -> Self {
        Self {
            ingress_class: "xdp".to_owned(),
            controller_class: "xdp-ingress.dev/controller".to_owned(),
            watch_without_class: false,
            watch_namespace: None,
            tcp_services: None,
            udp_services: None,
            default_backend_service: None,
            http_port: 80,
            https_port: 443,
            health_port: 10254,
            annotations_prefix: annotations::DEFAULT_PREFIX.to_owned(),
            allowed_response_headers: Vec::new(),
        }
    }
}

/// Translates a [`Store`] into a [`Snapshot`]. Pure and synchronous; never panics; a bad
/// object becomes a [`Problem`] and never changes another object's routes. The output is
/// deterministic: the same Store gives the same Snapshot whatever the input order.
///
/// This is the reference: the controller keeps an [`incremental::Engine`] that applies each
/// change at a cost proportional to it, and a property test checks that the engine always
/// agrees with this function.
pub fn build(store: &Store, opts: &Options) -> Snapshot {
    build_objects(&Objects::from_store(store), opts)
}

/// [`build`] over indexed objects.
pub fn build_objects(objects: &Objects, opts: &Options) -> Snapshot {
    let resolver = Resolver::new(objects);
    let mut cells = Cells::default();
    let classes = class::ClassFilter::new(objects.ingress_classes.values().map(|c| &**c), opts);
    let mut served: Vec<ingress::Translated> = objects
        .ingresses
        .values()
        .filter(|i| classes.serves(i))
        .map(|i| ingress::translate(i, resolver, &mut cells, opts))
        .collect();
    served.sort_by(|a, b| a.age.cmp(&b.age));

    let mut problems: Vec<Problem> = objects.problems.values().flatten().cloned().collect();
    let mut claims: BTreeMap<&HostMatch, Vec<_>> = BTreeMap::new();
    for t in &served {
        problems.extend(t.problems.iter().cloned());
        for (host, paths) in &t.hosts {
            claims
                .entry(host)
                .or_default()
                .push((&t.object, paths.as_slice()));
        }
    }
    let mut table = RouteTable::new();
    for (host, claims) in claims {
        let (routes, conflicts) = ingress::merge_host(host, claims);
        table.set_host(host, routes);
        problems.extend(conflicts);
    }
    let (aliases, alias_problems) = alias::merge(&served, &table, &opts.annotations_prefix);
    table.set_aliases(aliases);
    problems.extend(alias_problems);
    let tls = ingress::merge_tls(
        &served,
        &objects.secrets,
        &mut ingress::SecretCache::default(),
    );
    table.set_tls_hosts(tls.hosts);
    problems.extend(tls.problems);
    let (default_backend, default_problems) = ingress::merge_default(&served);
    problems.extend(default_problems);
    let fallback = ingress::default_backend_service(resolver, &mut cells, opts, &mut problems);
    table.set_default_backend(default_backend.or(fallback));

    let mut l4 = l4::table(objects, opts, resolver, &mut problems);
    let gw = gateway::translate(
        objects,
        opts,
        &mut cells,
        &mut ingress::SecretCache::default(),
    );
    l4::add_gateway(&mut l4, &gw.l4, resolver);
    problems.extend(gw.problems);
    problems.extend(gateway::shadowed(&table, &gw.plane, opts));
    Snapshot {
        http: table,
        l4,
        tls: std::sync::Arc::new(tls.certs),
        gateway: std::sync::Arc::new(gw.plane),
        problems: sorted(problems),
    }
}

/// The Gateway API status of `objects`: what the status writer writes in kube mode and
/// `xdp-ingress check` prints.
pub fn gateway_statuses(objects: &Objects, opts: &Options) -> gateway::status::Statuses {
    let mut cells = Cells::default();
    gateway::translate(
        objects,
        opts,
        &mut cells,
        &mut ingress::SecretCache::default(),
    )
    .statuses
}

/// The migration report: per served Ingress (by namespace/name) that has annotations under
/// `--annotations-prefix`, what became of each. Printed by `xdp-ingress check`.
pub fn annotation_verdicts(
    objects: &Objects,
    opts: &Options,
) -> Vec<(ObjectRef, Vec<annotations::Verdict>)> {
    let classes = class::ClassFilter::new(objects.ingress_classes.values().map(|c| &**c), opts);
    let resolver = Resolver::new(objects);
    let mut cells = Cells::default();
    objects
        .ingresses
        .values()
        .filter(|i| classes.serves(i))
        .filter_map(|i| {
            let verdicts = ingress::annotations_of(i, resolver, &mut cells, opts)
                .parsed
                .verdicts;
            (!verdicts.is_empty()).then(|| (ingress::object_ref(i), verdicts))
        })
        .collect()
}

/// Problems in their canonical order, without duplicates.
pub fn sorted(mut problems: Vec<Problem>) -> Vec<Problem> {
    problems.sort_by(|a, b| {
        (&a.object, &a.field, a.kind, &a.message).cmp(&(&b.object, &b.field, b.kind, &b.message))
    });
    problems.dedup();
    problems
}
