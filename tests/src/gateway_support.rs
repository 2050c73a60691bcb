//! Hand-built Gateway API planes for the router suites (`tests/tests/http_gateway.rs`):
//! rules, backends and listening addresses as the translation would produce them, without
//! going through Gateway and HTTPRoute objects. Also: a free port on a loopback address,
//! and waiting for a listener to open or close.

use std::{
    collections::BTreeMap,
    net::{IpAddr, SocketAddr},
    sync::Arc,
    time::Duration,
};

use hyper::{
    Method,
    header::{HeaderName, HeaderValue},
};
use k8s_openapi::api::core::v1::Secret;
use xdp_ingress::{
    config::{ObjectRef, ServiceRef, Snapshot, tls::TlsCert},
    snapshot::{
        certs::CertSet,
        gateway::{
            Filter, GatewayHosts, GatewayPlane, GatewayRule, HeaderEdits, HeaderMatch, HostRules,
            InvalidBackend, ListenAddr, PathMatch, PortRoutes, QueryMatch, RequestMatch,
            RuleAction, ValueMatch, WeightedBackend,
            matching::{RuleKey, full_regex, precedence_order},
        },
        routes::Backend,
    },
};

/// `default/NAME` as an HTTPRoute reference.
pub fn route_ref(name: &str) -> ObjectRef {
    ObjectRef {
        kind: "HTTPRoute".into(),
        namespace: Some("default".into()),
        name: name.into(),
    }
}

/// A Service `default/SERVICE:80` with `endpoints`, routed by HTTPRoute `default/ROUTE`
/// (its metric labels are the route and the Service, as the translation makes them).
pub fn backend(route: &str, service: &str, endpoints: &[SocketAddr]) -> Arc<Backend> {
    Arc::new(Backend::new(
        ServiceRef {
            namespace: "default".into(),
            name: service.into(),
            port: 80,
        },
        endpoints.iter().copied().collect(),
        Some(route_ref(route)),
    ))
}

/// A header name.
pub fn name(n: &str) -> HeaderName {
    HeaderName::from_bytes(n.as_bytes()).expect("header name")
}

/// A header value.
pub fn value(v: &str) -> HeaderValue {
    HeaderValue::from_str(v).expect("header value")
}

/// Builds one match of one rule of an HTTPRoute `default/NAME`.
#[derive(Clone, Debug)]
pub struct Rule {
    route: String,
    rule: usize,
    created: u32,
    matches: RequestMatch,
    action: RuleAction,
}

/// A rule of route `route` matching every path (prefix `/`), with no backends yet.
pub fn rule(route: &str) -> Rule {
    Rule {
        route: route.into(),
        rule: 0,
        created: 0,
        matches: RequestMatch {
            path: PathMatch::Prefix("/".into()),
            method: None,
            headers: Vec::new(),
            query: Vec::new(),
        },
        action: RuleAction::default(),
    }
}

impl Rule {
    /// Its place in the precedence order.
    fn key(&self) -> RuleKey<'_, u32> {
        RuleKey {
            matches: &self.matches,
            created: self.created,
            namespace: "default",
            name: &self.route,
            rule: self.rule,
            index: 0,
        }
    }

    /// Its index in `spec.rules`.
    #[must_use]
    pub fn index(mut self, rule: usize) -> Self {
        self.rule = rule;
        self
    }

    /// The route's creation time (smaller is older).
    #[must_use]
    pub fn created(mut self, t: u32) -> Self {
        self.created = t;
        self
    }

    /// Path prefix condition.
    #[must_use]
    pub fn prefix(mut self, p: &str) -> Self {
        self.matches.path = PathMatch::Prefix(p.into());
        self
    }

    /// Exact path condition.
    #[must_use]
    pub fn exact(mut self, p: &str) -> Self {
        self.matches.path = PathMatch::Exact(p.into());
        self
    }

    /// Regular expression path condition.
    #[must_use]
    pub fn regex(mut self, p: &str) -> Self {
        self.matches.path = PathMatch::Regex(full_regex(p).expect("regex"));
        self
    }

    /// Method condition.
    #[must_use]
    pub fn method(mut self, m: Method) -> Self {
        self.matches.method = Some(m);
        self
    }

    /// Exact header condition.
    #[must_use]
    pub fn header(mut self, n: &str, v: &str) -> Self {
        self.matches.headers.push(HeaderMatch {
            name: name(n),
            value: ValueMatch::Exact(v.into()),
        });
        self
    }

    /// Exact query parameter condition.
    #[must_use]
    pub fn query(mut self, n: &str, v: &str) -> Self {
        self.matches.query.push(QueryMatch {
            name: n.into(),
            value: ValueMatch::Exact(v.into()),
        });
        self
    }

    /// A rule-level filter.
    #[must_use]
    pub fn filter(mut self, f: Filter) -> Self {
        self.action.filters.push(f);
        self
    }

    /// A backendRef to a usable Service.
    #[must_use]
    pub fn to(self, weight: u32, backend: &Arc<Backend>) -> Self {
        self.to_with(weight, backend, Vec::new())
    }

    /// A backendRef with its own filters.
    #[must_use]
    pub fn to_with(mut self, weight: u32, backend: &Arc<Backend>, filters: Vec<Filter>) -> Self {
        self.action.backends.push(WeightedBackend {
            weight,
            target: Ok(Arc::clone(backend)),
            filters,
        });
        self
    }

    /// A backendRef that cannot be used.
    #[must_use]
    pub fn to_invalid(mut self, weight: u32, why: InvalidBackend) -> Self {
        self.action.backends.push(WeightedBackend {
            weight,
            target: Err(why),
            filters: Vec::new(),
        });
        self
    }
}

/// Rules by hostname pattern (`foo.test`, `*.foo.test`, `*` for every host), sorted by
/// the spec's precedence with [`precedence_order`], as the translation does.
pub fn hosts(entries: Vec<(&str, Vec<Rule>)>) -> GatewayHosts {
    let mut out = GatewayHosts::default();
    for (pattern, mut rules) in entries {
        rules.sort_by(|a, b| precedence_order(&a.key(), &b.key()));
        let rules: HostRules = rules
            .into_iter()
            .map(|r| {
                Arc::new(GatewayRule {
                    route: route_ref(&r.route),
                    rule: r.rule,
                    matches: r.matches,
                    action: Arc::new(r.action),
                })
            })
            .collect();
        if pattern == "*" {
            out.any = Some(rules);
        } else if let Some(suffix) = pattern.strip_prefix('*') {
            out.wildcard.insert(suffix.to_owned(), rules);
        } else {
            out.exact.insert(pattern.to_owned(), rules);
        }
    }
    out
}

/// A plain-HTTP listening address.
pub fn http_port(hosts: GatewayHosts) -> Arc<PortRoutes> {
    Arc::new(PortRoutes {
        tls: false,
        certs: Arc::default(),
        hosts,
        listener_hosts: Vec::new(),
        passthrough: Vec::new(),
    })
}

/// An HTTPS listening address with these certificates.
pub fn https_port(hosts: GatewayHosts, certs: CertSet) -> Arc<PortRoutes> {
    Arc::new(PortRoutes {
        tls: true,
        certs: Arc::new(certs),
        hosts,
        // No listener hostnames: every SNI and Host are the same (unnamed) listener's.
        listener_hosts: Vec::new(),
        passthrough: Vec::new(),
    })
}

/// A Snapshot (no Ingress rules unless `base` has them) with these listening addresses.
pub fn with_gateway(base: Snapshot, ports: Vec<(ListenAddr, Arc<PortRoutes>)>) -> Snapshot {
    let ports: BTreeMap<ListenAddr, Arc<PortRoutes>> = ports.into_iter().collect();
    Snapshot {
        gateway: Arc::new(GatewayPlane { ports }),
        ..base
    }
}

/// A listening address.
pub fn at(ip: &str, port: u16) -> ListenAddr {
    ListenAddr {
        ip: Some(ip.parse().expect("ip")),
        port,
    }
}

/// A port that is free on every address in `ips` right now (bound on the first, then
/// checked on the others, retried a few times).
///
/// # Panics
/// If no such port turns up.
pub fn free_port(ips: &[&str]) -> u16 {
    for _ in 0..20 {
        let first: IpAddr = ips[0].parse().expect("ip");
        let probe = std::net::TcpListener::bind((first, 0)).expect("bind probe");
        let port = probe.local_addr().expect("probe addr").port();
        let all_free = ips[1..].iter().all(|ip| {
            let ip: IpAddr = ip.parse().expect("ip");
            std::net::TcpListener::bind((ip, port)).is_ok()
        });
        if all_free {
            return port;
        }
    }
    panic!("no port free on all of {ips:?}");
}

/// Waits until `addr` accepts connections (`true`) or refuses them (`false`).
///
/// # Panics
/// If it is not so within ten seconds.
pub async fn wait_listening(addr: SocketAddr, listening: bool) {
    for _ in 0..1000 {
        let ok = tokio::net::TcpStream::connect(addr).await.is_ok();
        if ok == listening {
            return;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    panic!(
        "{addr} did not become {}",
        if listening { "open" } else { "closed" }
    );
}

/// The certificate of a `kubernetes.io/tls` Secret (from [`TestCa::secret`](crate::http_support::TestCa::secret)).
pub fn tls_cert(secret: &Secret) -> Arc<TlsCert> {
    let data = secret.data.as_ref().expect("secret data");
    let chain = xdp_ingress::config::tls::parse_chain(&data["tls.crt"].0).expect("chain");
    let key = xdp_ingress::config::tls::parse_key(&data["tls.key"].0).expect("key");
    Arc::new(TlsCert {
        secret: ObjectRef {
            kind: "Secret".into(),
            namespace: secret.metadata.namespace.clone(),
            name: secret.metadata.name.clone().unwrap_or_default(),
        },
        chain,
        key,
    })
}

/// Header edits: `set`, `add`, `remove`.
pub fn edits(set: &[(&str, &str)], add: &[(&str, &str)], remove: &[&str]) -> HeaderEdits {
    HeaderEdits {
        set: set.iter().map(|(n, v)| (name(n), value(v))).collect(),
        add: add.iter().map(|(n, v)| (name(n), value(v))).collect(),
        remove: remove.iter().map(|n| name(n)).collect(),
    }
}
