//! Service port → endpoint addresses, through EndpointSlices (`kubernetes.io/service-name`).
//!
//! Ready endpoints are used; if a Service has none, serving + terminating ones are (so a
//! rolling restart does not blackhole traffic). The endpoint port is the slice port named
//! like the Service port (that is how the EndpointSlice controller resolves `targetPort`);
//! a hand-written slice without port names falls back to a numeric `targetPort`.

use std::{
    collections::{BTreeMap, BTreeSet},
    net::{IpAddr, SocketAddr},
};

use k8s_openapi::{
    api::core::v1::{ConfigMap, Service, ServicePort},
    apimachinery::pkg::util::intstr::IntOrString,
};

use super::{ServiceRef, slice::Slice, store::Objects};
use crate::snapshot::Endpoints;

/// The label that ties an EndpointSlice to its Service.
pub const SERVICE_NAME_LABEL: &str = "kubernetes.io/service-name";

/// How a Service port was asked for: `spec.port.number`/`spec.port.name` of an Ingress
/// backend, or the port field of a ConfigMap entry.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum PortSpec<'a> {
    /// A Service port number.
    Number(i32),
    /// A Service port name.
    Name(&'a str),
}

impl std::fmt::Display for PortSpec<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Number(n) => write!(f, "{n}"),
            Self::Name(n) => write!(f, "{n:?}"),
        }
    }
}

/// Why a Service port could not be resolved.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum ResolveError {
    /// No such Service.
    #[error("Service {namespace}/{name} not found")]
    UnknownService {
        /// Namespace.
        namespace: String,
        /// Name.
        name: String,
    },
    /// The Service exists but has no such port.
    #[error("Service {namespace}/{name} has no port {port} (ports: {known})")]
    UnknownPort {
        /// Namespace.
        namespace: String,
        /// Name.
        name: String,
        /// What was asked for.
        port: String,
        /// What the Service has, e.g. `80/http, 443/https`.
        known: String,
    },
}

impl ResolveError {
    /// The metric label of the matching Problem.
    pub fn kind(&self) -> &'static str {
        match self {
            Self::UnknownService { .. } => "unknown_service",
            Self::UnknownPort { .. } => "unknown_service_port",
        }
    }
}

/// Service and endpoint lookups over one [`Objects`]. Holds no state of its own, so it
/// costs nothing to make one per change.
#[derive(Clone, Copy)]
pub struct Resolver<'s> {
    objects: &'s Objects,
}

impl<'s> Resolver<'s> {
    /// Lookups over `objects`.
    pub fn new(objects: &'s Objects) -> Self {
        Self { objects }
    }

    /// Finds a Secret.
    pub fn secret(
        &self,
        namespace: &str,
        name: &str,
    ) -> Option<&'s k8s_openapi::api::core::v1::Secret> {
        self.objects
            .secrets
            .get(&(namespace.to_owned(), name.to_owned()))
            .map(|s| &**s)
    }

    /// Finds a Service.
    pub fn service(&self, namespace: &str, name: &str) -> Option<&'s Service> {
        self.objects.service(namespace, name)
    }

    /// A ConfigMap by namespace and name.
    pub fn config_map(&self, namespace: &str, name: &str) -> Option<&'s ConfigMap> {
        self.objects
            .config_maps
            .get(&(namespace.to_owned(), name.to_owned()))
            .map(|c| &**c)
    }

    /// Resolves a Service port. For UDP entries a UDP port is preferred when a number or
    /// name is shared by several protocols.
    pub fn port(
        &self,
        namespace: &str,
        name: &str,
        port: &PortSpec<'_>,
        prefer_udp: bool,
    ) -> Result<(&'s Service, &'s ServicePort), ResolveError> {
        let service =
            self.service(namespace, name)
                .ok_or_else(|| ResolveError::UnknownService {
                    namespace: namespace.to_owned(),
                    name: name.to_owned(),
                })?;
        let ports = service
            .spec
            .as_ref()
            .and_then(|s| s.ports.as_deref())
            .unwrap_or_default();
        let wanted = |p: &&ServicePort| match port {
            PortSpec::Number(n) => p.port == *n,
            PortSpec::Name(n) => p.name.as_deref() == Some(*n),
        };
        let is_udp = |p: &&ServicePort| p.protocol.as_deref() == Some("UDP");
        let found = ports
            .iter()
            .filter(wanted)
            .find(|p| is_udp(p) == prefer_udp)
            .or_else(|| ports.iter().find(wanted));
        match found {
            Some(p) => Ok((service, p)),
            None => Err(ResolveError::UnknownPort {
                namespace: namespace.to_owned(),
                name: name.to_owned(),
                port: port.to_string(),
                known: describe_ports(ports),
            }),
        }
    }

    /// The endpoints of a resolved Service port, sorted and deduplicated: ready ones, else
    /// serving + terminating ones.
    pub fn addrs(&self, service: &Service, port: &ServicePort) -> Vec<SocketAddr> {
        let ns = service.metadata.namespace.as_deref().unwrap_or_default();
        let name = service.metadata.name.as_deref().unwrap_or_default();
        let slices: Vec<&Slice> = self.objects.slices_of(ns, name).collect();
        let mut eps = collect(&slices, port, |c| c.ready.unwrap_or(true));
        if eps.is_empty() {
            eps = collect(&slices, port, |c| {
                c.serving.unwrap_or(c.ready.unwrap_or(true)) && c.terminating.unwrap_or(false)
            });
        }
        eps.into_iter().collect()
    }
}

/// The [`ServiceRef`] of a Service port.
pub fn service_ref(service: &Service, port: &ServicePort) -> ServiceRef {
    ServiceRef {
        namespace: service.metadata.namespace.clone().unwrap_or_default(),
        name: service.metadata.name.clone().unwrap_or_default(),
        port: u16::try_from(port.port).unwrap_or(0),
    }
}

/// A Service port's cell key: the port's name too, since TCP and UDP ports may share a
/// number.
type CellKey = (String, String, u16, Option<String>);

/// The [`Endpoints`] cell of every Service port some Backend names, so all Backends of one
/// Service port share one cell and an EndpointSlice change is one store into it.
#[derive(Debug, Default)]
pub struct Cells {
    cells: BTreeMap<CellKey, Endpoints>,
}

impl Cells {
    /// The cell of a resolved Service port, made (with its current endpoints) if new.
    pub fn get(
        &mut self,
        resolver: Resolver<'_>,
        service: &Service,
        port: &ServicePort,
    ) -> (ServiceRef, Endpoints) {
        let sref = service_ref(service, port);
        let key = (
            sref.namespace.clone(),
            sref.name.clone(),
            sref.port,
            port.name.clone(),
        );
        let cell = self
            .cells
            .entry(key)
            .or_insert_with(|| Endpoints::new(resolver.addrs(service, port)))
            .clone();
        (sref, cell)
    }

    /// Recomputes the cells of one Service (its slices or ports changed). A port the
    /// Service no longer has gets no endpoints. `true` if any cell changed.
    pub fn refresh(&self, resolver: Resolver<'_>, namespace: &str, name: &str) -> bool {
        let from = (namespace.to_owned(), name.to_owned(), 0, None);
        let service = resolver.service(namespace, name);
        let mut changed = false;
        for ((ns, n, number, port_name), cell) in self.cells.range(from..) {
            if ns != namespace || n != name {
                break;
            }
            let port =
                service.and_then(|s| {
                    s.spec.as_ref()?.ports.as_ref()?.iter().find(|p| {
                        u16::try_from(p.port).ok() == Some(*number) && &p.name == port_name
                    })
                });
            let addrs = match (service, port) {
                (Some(s), Some(p)) => resolver.addrs(s, p),
                _ => Vec::new(),
            };
            changed |= cell.set(addrs);
        }
        changed
    }

    /// Forgets cells no Backend holds any more.
    pub fn prune(&mut self) {
        self.cells.retain(|_, cell| !cell.is_unshared());
    }

    /// Number of cells.
    pub fn len(&self) -> usize {
        self.cells.len()
    }

    /// Whether there are none.
    pub fn is_empty(&self) -> bool {
        self.cells.is_empty()
    }
}

/// Endpoints of `slices` whose conditions pass `accept`, on the slice port matching `port`.
fn collect(
    slices: &[&Slice],
    port: &ServicePort,
    accept: impl Fn(&k8s_openapi::api::discovery::v1::EndpointConditions) -> bool,
) -> BTreeSet<SocketAddr> {
    let mut out = BTreeSet::new();
    for slice in slices {
        if slice.address_type != "IPv4" && slice.address_type != "IPv6" {
            continue; // FQDN slices cannot be dialled without DNS
        }
        let Some(target) = slice_port(slice, port) else {
            continue;
        };
        for ep in &slice.endpoints {
            let ok = ep.conditions.as_ref().is_none_or(&accept);
            if !ok {
                continue;
            }
            // Addresses are fungible; the first one is enough (API docs).
            if let Some(ip) = ep.addresses.iter().find_map(|a| a.parse::<IpAddr>().ok()) {
                out.insert(SocketAddr::new(ip, target));
            }
        }
    }
    out
}

/// The target port of `port` in `slice`: the slice port with the same name; else, for a
/// hand-written slice without names, a numeric `targetPort` (or the port itself).
fn slice_port(slice: &Slice, port: &ServicePort) -> Option<u16> {
    let name = port.name.as_deref().unwrap_or("");
    let ports = slice.ports.as_deref().unwrap_or_default();
    if let Some(p) = ports
        .iter()
        .find(|p| p.name.as_deref().unwrap_or("") == name)
    {
        return p
            .port
            .and_then(|n| u16::try_from(n).ok())
            .filter(|&n| n != 0);
    }
    match &port.target_port {
        Some(IntOrString::Int(n)) => u16::try_from(*n).ok().filter(|&n| n != 0),
        Some(IntOrString::String(_)) => None,
        None => u16::try_from(port.port).ok(),
    }
}

/// `80/http, 443/https` for messages.
pub fn describe_ports(ports: &[ServicePort]) -> String {
    if ports.is_empty() {
        return "none".to_owned();
    }
    ports
        .iter()
        .map(|p| match &p.name {
            Some(n) if !n.is_empty() => format!("{}/{n}", p.port),
            _ => p.port.to_string(),
        })
        .collect::<Vec<_>>()
        .join(", ")
}
