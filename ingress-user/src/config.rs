//! The control plane's pure half: Kubernetes objects in, one immutable `Snapshot` out.
//! No IO, no tokio, no kube client here; sources (`crate::source`) fill a [`Store`].

pub mod problem;
pub mod store;

pub use problem::{ObjectRef, Problem};
pub use store::Store;

pub mod backend;
pub mod class;
pub mod ingress;
pub mod l4;
pub mod legacy;
pub mod tls;

#[cfg(test)]
pub(crate) mod fixtures;
#[cfg(test)]
mod tests;

use std::{fmt, net::SocketAddr, str::FromStr};

use crate::http::route::RouteTable;

/// Everything both data planes obey, built by [`build`] from one [`Store`]. Immutable;
/// published as `Arc<Snapshot>` so readers never lock.
#[derive(Clone, Debug, Default)]
pub struct Snapshot {
    /// HTTP routes for the L7 router.
    pub http: RouteTable,
    /// tcp/udp-services entries, sorted by (protocol, port).
    pub l4: Vec<L4Service>,
    /// TLS certificates by SNI host.
    pub tls: tls::CertSet,
    /// Every Problem found (the source's and the translation's), sorted.
    pub problems: Vec<Problem>,
}

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
        }
    }
}

/// A Service port: what an Ingress backend or a ConfigMap entry points at.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct ServiceRef {
    /// Namespace of the Service.
    pub namespace: String,
    /// Name of the Service.
    pub name: String,
    /// The Service port (not the target port).
    pub port: u16,
}

impl fmt::Display for ServiceRef {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}:{}", self.namespace, self.name, self.port)
    }
}

/// Transport of an L4 service.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum L4Protocol {
    /// From the tcp-services ConfigMap.
    Tcp,
    /// From the udp-services ConfigMap.
    Udp,
}

impl fmt::Display for L4Protocol {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::Tcp => "TCP",
            Self::Udp => "UDP",
        })
    }
}

/// One tcp/udp-services entry, resolved. Empty `endpoints` means the port must reject
/// connections (TCP RST), not that it is absent.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct L4Service {
    /// External port (the ConfigMap key).
    pub port: u16,
    /// TCP or UDP.
    pub protocol: L4Protocol,
    /// The Service port behind it.
    pub service: ServiceRef,
    /// Resolved target `addr:port`s, sorted.
    pub endpoints: Vec<SocketAddr>,
    /// 3rd field `PROXY`: clients send PROXY protocol.
    pub proxy_protocol_in: bool,
    /// 4th field `PROXY`: send PROXY protocol to backends.
    pub proxy_protocol_out: bool,
}

/// Translates a [`Store`] into a [`Snapshot`]. Pure and synchronous; never panics; a bad
/// object becomes a [`Problem`] and never changes another object's routes. The output is
/// deterministic: the same Store gives the same Snapshot whatever the input order.
pub fn build(store: &Store, opts: &Options) -> Snapshot {
    let mut problems = store.problems.clone();
    let mut resolver = backend::Resolver::new(&store.services, &store.endpoint_slices);

    let classes = class::ClassFilter::new(&store.ingress_classes, opts);
    let mut served: Vec<_> = store
        .ingresses
        .iter()
        .filter(|i| classes.serves(i))
        .collect();
    served.sort_by(|a, b| ingress::age_key(a).cmp(&ingress::age_key(b)));

    let mut tr = ingress::Translator::new(&mut resolver, &store.secrets);
    for ing in served {
        tr.add(ing);
    }
    let ingress::Translator {
        mut table,
        certs,
        default_backend,
        problems: ingress_problems,
        ..
    } = tr;
    problems.extend(ingress_problems);
    let fallback = ingress::default_backend_service(&mut resolver, opts, &mut problems);
    table.set_default_backend(default_backend.map(|(b, _)| b).or(fallback));

    let mut l4 = Vec::new();
    for (cm, protocol) in [
        (&opts.tcp_services, L4Protocol::Tcp),
        (&opts.udp_services, L4Protocol::Udp),
    ] {
        if let Some(cm) = cm {
            l4.extend(l4::services(
                cm,
                &store.config_maps,
                protocol,
                opts,
                &mut resolver,
                &mut problems,
            ));
        }
    }
    l4.sort_by_key(|s| (s.protocol, s.port));

    problems.sort_by(|a, b| {
        (&a.object, &a.field, a.kind, &a.message).cmp(&(&b.object, &b.field, b.kind, &b.message))
    });
    problems.dedup();
    Snapshot {
        http: table,
        l4,
        tls: certs,
        problems,
    }
}
