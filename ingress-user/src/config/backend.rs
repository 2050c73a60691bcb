//! Service port → endpoint addresses, through EndpointSlices (`kubernetes.io/service-name`).
//!
//! Ready endpoints are used; if a Service has none, serving + terminating ones are (so a
//! rolling restart does not blackhole traffic). The endpoint port is the slice port named
//! like the Service port (that is how the EndpointSlice controller resolves `targetPort`);
//! a hand-written slice without port names falls back to a numeric `targetPort`.

use std::{
    collections::{BTreeSet, HashMap},
    net::{IpAddr, SocketAddr},
    sync::Arc,
};

use k8s_openapi::{
    api::{
        core::v1::{Service, ServicePort},
        discovery::v1::EndpointSlice,
    },
    apimachinery::pkg::util::intstr::IntOrString,
};

use super::ServiceRef;

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

/// Indexes of one Store's Services and EndpointSlices, with resolved endpoints memoized.
pub struct Resolver<'s> {
    services: HashMap<(&'s str, &'s str), &'s Service>,
    slices: HashMap<(&'s str, &'s str), Vec<&'s EndpointSlice>>,
    /// Keyed by the Service port's name too: TCP and UDP ports may share a number.
    cache: HashMap<(ServiceRef, Option<String>), Arc<[SocketAddr]>>,
}

impl<'s> Resolver<'s> {
    /// Indexes the objects (O(n)).
    pub fn new(services: &'s [Service], slices: &'s [EndpointSlice]) -> Self {
        let services = services
            .iter()
            .filter_map(|s| {
                Some((
                    (
                        s.metadata.namespace.as_deref()?,
                        s.metadata.name.as_deref()?,
                    ),
                    s,
                ))
            })
            .collect();
        let mut by_service: HashMap<_, Vec<_>> = HashMap::new();
        for slice in slices {
            let (Some(ns), Some(svc)) = (
                slice.metadata.namespace.as_deref(),
                slice
                    .metadata
                    .labels
                    .as_ref()
                    .and_then(|l| l.get(SERVICE_NAME_LABEL))
                    .map(String::as_str),
            ) else {
                continue;
            };
            by_service.entry((ns, svc)).or_default().push(slice);
        }
        Self {
            services,
            slices: by_service,
            cache: HashMap::new(),
        }
    }

    /// Finds a Service.
    pub fn service(&self, namespace: &str, name: &str) -> Option<&'s Service> {
        self.services.get(&(namespace, name)).copied()
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

    /// The endpoints of a resolved Service port, sorted and deduplicated; memoized.
    pub fn endpoints(
        &mut self,
        service: &Service,
        port: &ServicePort,
    ) -> (ServiceRef, Arc<[SocketAddr]>) {
        let key = ServiceRef {
            namespace: service.metadata.namespace.clone().unwrap_or_default(),
            name: service.metadata.name.clone().unwrap_or_default(),
            port: u16::try_from(port.port).unwrap_or(0),
        };
        let cache_key = (key, port.name.clone());
        if let Some(eps) = self.cache.get(&cache_key) {
            return (cache_key.0, eps.clone());
        }
        let key = &cache_key.0;
        let slices = self
            .slices
            .get(&(key.namespace.as_str(), key.name.as_str()))
            .map(Vec::as_slice)
            .unwrap_or_default();
        let mut eps = collect(slices, port, |c| c.ready.unwrap_or(true));
        if eps.is_empty() {
            eps = collect(slices, port, |c| {
                c.serving.unwrap_or(c.ready.unwrap_or(true)) && c.terminating.unwrap_or(false)
            });
        }
        let eps: Arc<[SocketAddr]> = eps.into_iter().collect();
        let key = key.clone();
        self.cache.insert(cache_key, eps.clone());
        (key, eps)
    }
}

/// Endpoints of `slices` whose conditions pass `accept`, on the slice port matching `port`.
fn collect(
    slices: &[&EndpointSlice],
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
fn slice_port(slice: &EndpointSlice, port: &ServicePort) -> Option<u16> {
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
