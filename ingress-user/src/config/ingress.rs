//! Served Ingresses → HTTP routes, TLS hosts and the default backend.
//!
//! Ingresses are applied oldest first (`creationTimestamp`, then namespace/name), so the
//! oldest wins a host + path conflict and the loser gets a Problem. A rule whose Service or
//! Service port does not exist still claims its path and answers 503 (like a Service with
//! no endpoints), so a typo never silently sends traffic to a shorter prefix.

use std::{
    collections::{BTreeMap, BTreeSet, HashMap},
    sync::Arc,
};

use k8s_openapi::{
    api::{
        core::v1::Secret,
        networking::v1::{HTTPIngressPath, Ingress, IngressBackend},
    },
    apimachinery::pkg::apis::meta::v1::Time,
};

use super::{
    ObjectRef, Options, Problem, ServiceRef, annotations, auth_tls,
    backend::{Cells, PortSpec, ResolveError, Resolver},
    basic_auth,
    problem::Severity,
    proxy_ssl,
    store::Key,
    tls::{self, CertSet, TlsCert},
};
use crate::snapshot::{
    Endpoints,
    canary::Canary,
    policy::RoutePolicy,
    rate_limit,
    routes::{Backend, HostMatch, HostRoutes, InsertError, PathType, Protocol, TlsHosts},
};

/// The Secret type we read.
pub const TLS_SECRET_TYPE: &str = "kubernetes.io/tls";

/// An object reference for an Ingress.
pub fn object_ref(ing: &Ingress) -> ObjectRef {
    ObjectRef {
        kind: "Ingress".to_owned(),
        namespace: ing.metadata.namespace.clone(),
        name: ing.metadata.name.clone().unwrap_or_default(),
    }
}

/// When an Ingress was made, for "oldest wins": by `creationTimestamp`, objects without
/// one (file mode) last, then by namespace/name.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub struct Age {
    untimed: bool,
    created: Option<Time>,
    /// Namespace and name.
    pub key: Key,
}

impl Age {
    /// The age of an Ingress.
    pub fn of(ing: &Ingress) -> Self {
        let created = ing.metadata.creation_timestamp.clone();
        Self {
            untimed: created.is_none(),
            created,
            key: (
                ing.metadata.namespace.clone().unwrap_or_default(),
                ing.metadata.name.clone().unwrap_or_default(),
            ),
        }
    }
}

/// One path of a translated Ingress.
#[derive(Clone, Debug)]
pub struct PathRoute {
    /// As written (empty became `/`).
    pub path: String,
    /// Its type.
    pub path_type: PathType,
    /// Where it goes.
    pub backend: Arc<Backend>,
    /// `spec.rules[rule].http.paths[index]`, for messages.
    pub rule: usize,
    /// See `rule`.
    pub index: usize,
}

/// One `spec.tls` entry.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TlsEntry {
    /// Its index in `spec.tls`.
    pub index: usize,
    /// Its hosts.
    pub hosts: Vec<String>,
    /// Its Secret (none: the hosts use the default certificate).
    pub secret: Option<String>,
}

/// One served Ingress translated on its own: everything that depends only on it and the
/// Services it names. The merges ([`merge_host`], [`merge_tls`], [`merge_default`]) combine
/// the translations of all served Ingresses, oldest first.
#[derive(Clone, Debug)]
pub struct Translated {
    /// The Ingress.
    pub object: ObjectRef,
    /// Its age.
    pub age: Age,
    /// Its paths grouped by host, each group in rule order.
    pub hosts: Vec<(HostMatch, Vec<PathRoute>)>,
    /// Its `spec.defaultBackend`.
    pub default_backend: Option<Arc<Backend>>,
    /// Its TLS entries.
    pub tls: Vec<TlsEntry>,
    /// Its own Problems (the merges add conflicts).
    pub problems: Vec<Problem>,
    /// The Services it names, sorted (a Vec: a B-tree node per Ingress cost half a KiB):
    /// a change to one of them translates it again.
    pub services: Vec<Key>,
    /// The Secrets its annotations name (`auth-secret`, `proxy-ssl-secret`,
    /// `auth-tls-secret`), present or not: a change to one of them translates it again.
    pub secrets: Vec<Key>,
    /// The ConfigMaps it reads (`custom-headers`): a change to one translates it again.
    pub config_maps: Vec<Key>,
    /// `server-alias` host names.
    pub aliases: Vec<String>,
    /// The host they answer for: its first rule host with paths (none without aliases).
    pub alias_target: Option<HostMatch>,
}

/// Translates one Ingress (whether it is served is the caller's decision). Its annotations
/// under `--annotations-prefix` become the policy of all its backends.
pub fn translate(
    ing: &Ingress,
    resolver: Resolver<'_>,
    cells: &mut Cells,
    opts: &Options,
) -> Translated {
    let object = object_ref(ing);
    let Annotations {
        parsed,
        config_maps,
        services,
        aliases,
    } = annotations_of(ing, resolver, cells, opts);
    let ns = ing
        .metadata
        .namespace
        .clone()
        .unwrap_or_else(|| "default".to_owned());
    let prefix = opts.annotations_prefix.as_str();
    let mut auth = basic_auth::resolve(
        ing.metadata.annotations.as_ref(),
        prefix,
        &object,
        &ns,
        resolver,
    );
    let auth_secret = auth.secret.clone();
    let auth_problems = std::mem::take(&mut auth.problems);
    let policy = complete_policy(parsed.policy, auth, &object).map(|p| tag_sessions(p, &object));
    let (policy, secret, mut troubles) = proxy_ssl::resolve(policy, &ns, resolver, prefix);
    let (policy, ca_secret, more) = auth_tls::resolve(policy, &ns, resolver, prefix);
    troubles.extend(more);
    let mut tr = Translation {
        resolver,
        cells,
        object: object.clone(),
        ns,
        backends: HashMap::new(),
        problems: auth_problems,
        services,
        policy,
    };
    for f in parsed.findings {
        tr.problem(f.field, f.kind, f.message, f.severity);
    }
    for (field, kind, message) in troubles {
        tr.problem(field, kind, message, Severity::Error);
    }
    let mut hosts: Vec<(HostMatch, Vec<PathRoute>)> = Vec::new();
    let mut default_backend = None;
    let mut tls = Vec::new();
    let canary = tr
        .policy
        .as_ref()
        .is_some_and(|p| p.canary_rules().is_some());
    if let Some(spec) = &ing.spec {
        if canary && spec.default_backend.is_some() {
            let message = "ignored: a canary Ingress's defaultBackend is not used (only its paths become alternatives of main Ingresses' paths)".to_owned();
            tr.problem(
                "spec.defaultBackend".to_owned(),
                "canary_default_backend",
                message,
                Severity::Warning,
            );
        } else if let Some(db) = &spec.default_backend {
            // Without the annotations' policy: it may serve requests of any host, which
            // the Ingress's annotations (written for its own paths) are not about.
            default_backend = tr.backend(db, "spec.defaultBackend").map(|b| {
                if b.policy.is_some() {
                    Arc::new((*b).clone().with_policy(None))
                } else {
                    b
                }
            });
        }
        for (ri, rule) in spec.rules.iter().flatten().enumerate() {
            let Some(host) = tr.host(ri, rule.host.as_deref().unwrap_or("")) else {
                continue;
            };
            let Some(http) = &rule.http else { continue };
            for (pi, p) in http.paths.iter().enumerate() {
                let Some(route) = tr.path(ri, pi, p) else {
                    continue;
                };
                match hosts.iter_mut().find(|(h, _)| *h == host) {
                    Some((_, routes)) => routes.push(route),
                    None => hosts.push((host.clone(), vec![route])),
                }
            }
        }
        if tr.policy.as_ref().is_some_and(|p| p.ssl_passthrough) {
            passthrough_problems(&mut tr, &hosts, prefix);
        }
        for (ti, t) in spec.tls.iter().flatten().enumerate() {
            let secret = t.secret_name.clone().filter(|s| !s.is_empty());
            if secret.is_none() {
                let message =
                    "no secretName: these hosts are served with the default certificate, if any"
                        .to_owned();
                tr.problem(
                    format!("spec.tls[{ti}].secretName"),
                    "tls_no_secret",
                    message,
                    Severity::Warning,
                );
            }
            tls.push(TlsEntry {
                index: ti,
                hosts: t.hosts.clone().unwrap_or_default(),
                secret,
            });
        }
    }
    let alias_target = hosts
        .iter()
        .map(|(h, _)| h)
        .find(|h| **h != HostMatch::Any)
        .filter(|_| !aliases.is_empty())
        .cloned();
    Translated {
        object,
        age: Age::of(ing),
        hosts,
        default_backend,
        tls,
        problems: tr.problems,
        services: {
            let mut s = tr.services;
            s.sort_unstable();
            s.dedup();
            s
        },
        secrets: {
            let mut s: Vec<Key> = auth_secret
                .into_iter()
                .chain(secret)
                .chain(ca_secret)
                .collect();
            s.sort_unstable();
            s.dedup();
            s
        },
        config_maps,
        alias_target,
        aliases,
    }
}

/// Marks an Ingress's affinity sessions as its own (see
/// [`Affinity::tag`](crate::snapshot::affinity::Affinity::tag)).
fn tag_sessions(mut policy: Arc<RoutePolicy>, object: &ObjectRef) -> Arc<RoutePolicy> {
    if policy.affinity.is_some() {
        let name = format!(
            "{}/{}",
            object.namespace.as_deref().unwrap_or(""),
            object.name
        );
        if let Some(a) = Arc::make_mut(&mut policy).affinity.as_mut() {
            a.tag = crate::snapshot::affinity::tag_of(&name);
        }
    }
    policy
}

/// The annotations' policy with what needs more than their values: the users of the
/// `auth-secret` (or `denied` when unusable) and the live state of the limits.
fn complete_policy(
    policy: Option<Arc<RoutePolicy>>,
    auth: basic_auth::Resolved,
    object: &ObjectRef,
) -> Option<Arc<RoutePolicy>> {
    let limits = policy.as_ref().is_some_and(|p| p.limit_settings.limits());
    if auth.auth.is_none() && !auth.denied && !limits {
        return policy;
    }
    let mut p = policy.map(|p| (*p).clone()).unwrap_or_default();
    p.basic_auth = auth.auth;
    p.denied |= auth.denied;
    if limits {
        p.rate_limit = Some(rate_limit::zone(object, p.limit_settings.clone()));
    }
    Some(Arc::new(p))
}

/// An Ingress's annotations, parsed and resolved against the objects they name.
pub struct Annotations {
    /// The policy, verdicts (invalid where a named object is unusable) and findings.
    pub parsed: annotations::Parsed,
    /// The ConfigMaps read (`custom-headers`).
    pub config_maps: Vec<Key>,
    /// The Services named (`default-backend`, `mirror-target`).
    pub services: Vec<Key>,
    /// `server-alias` host names (moved out of the policy).
    pub aliases: Vec<String>,
}

/// Parses an Ingress's annotations under `--annotations-prefix` and resolves the objects
/// they name. Also what `xdp-ingress check` reports.
pub fn annotations_of(
    ing: &Ingress,
    resolver: Resolver<'_>,
    cells: &mut Cells,
    opts: &Options,
) -> Annotations {
    let object = object_ref(ing);
    let prefix = opts.annotations_prefix.as_str();
    let mut parsed = annotations::parse(ing.metadata.annotations.as_ref(), prefix);
    let ns = ing.metadata.namespace.as_deref().unwrap_or("default");
    let config_maps = resolve_custom_headers(&mut parsed, ns, resolver, opts);
    let aliases = take_aliases(&mut parsed);
    let services = resolve_default_backend(&mut parsed, ns, resolver, cells, &object, prefix)
        .into_iter()
        .chain(resolve_mirror(
            &mut parsed,
            ns,
            resolver,
            cells,
            &object,
            prefix,
        ))
        .collect();
    Annotations {
        parsed,
        config_maps,
        services,
        aliases,
    }
}

/// Resolves `default-backend` (a Service of the Ingress's namespace, its first port) into
/// the policy. Returns the Service it names (found or not), which the engine watches.
fn resolve_default_backend(
    parsed: &mut annotations::Parsed,
    ns: &str,
    resolver: Resolver<'_>,
    cells: &mut Cells,
    object: &ObjectRef,
    prefix: &str,
) -> Option<Key> {
    let policy = parsed.policy.as_mut()?;
    let name = policy.default_backend_service.clone()?;
    let service = resolver.service(ns, &name);
    let port = service
        .and_then(|s| s.spec.as_ref())
        .and_then(|s| s.ports.as_ref())
        .and_then(|p| p.first());
    if let (Some(service), Some(port)) = (service, port) {
        let (sref, endpoints) = cells.get(resolver, service, port);
        let protocol = Protocol::from_app_protocol(port.app_protocol.as_deref());
        let backend = Backend::new(sref, endpoints, Some(object.clone())).with_protocol(protocol);
        Arc::make_mut(policy).default_backend = Some(Arc::new(backend));
    } else {
        let why = if service.is_none() {
            "not found"
        } else {
            "has no ports"
        };
        let message =
            format!("Service {ns}/{name} {why}; the global default backend is used instead");
        parsed.invalid(prefix, "default-backend", message);
    }
    Some((ns.to_owned(), name))
}

/// Resolves `mirror-target` into the backend its copies go to: an address, or a Service's
/// port (by the URL's port number) and its endpoints. Returns the Service it names, if
/// any, which the engine watches.
fn resolve_mirror(
    parsed: &mut annotations::Parsed,
    ns: &str,
    resolver: Resolver<'_>,
    cells: &mut Cells,
    object: &ObjectRef,
    prefix: &str,
) -> Option<Key> {
    use crate::snapshot::policy::mirror::MirrorHost;
    let policy = parsed.policy.as_mut()?;
    let target = policy.mirror_target.clone()?;
    let (backend, key) = match &target.host {
        MirrorHost::Ip(ip) => {
            let service = ServiceRef {
                namespace: ns.to_owned(),
                name: target.authority.clone(),
                port: target.port,
            };
            let endpoints = Endpoints::new(vec![std::net::SocketAddr::new(*ip, target.port)]);
            (
                Ok(Backend::new(service, endpoints, Some(object.clone()))),
                None,
            )
        }
        MirrorHost::Service(svc_ns, name) => {
            let svc_ns = svc_ns.clone().unwrap_or_else(|| ns.to_owned());
            let port = PortSpec::Number(i32::from(target.port));
            let backend = match resolver.port(&svc_ns, name, &port, false) {
                Ok((service, sp)) => {
                    let (sref, endpoints) = cells.get(resolver, service, sp);
                    let protocol = Protocol::from_app_protocol(sp.app_protocol.as_deref());
                    Ok(Backend::new(sref, endpoints, Some(object.clone())).with_protocol(protocol))
                }
                Err(e) => Err(e.to_string()),
            };
            (backend, Some((svc_ns, name.clone())))
        }
    };
    match backend {
        Ok(b) => Arc::make_mut(policy).mirror_backend = Some(Arc::new(b)),
        Err(why) => {
            let message = format!("{why}; requests are not mirrored");
            parsed.invalid(prefix, "mirror-target", message);
        }
    }
    key
}

/// Moves `server-alias` out of the policy (it is routing, merged across Ingresses).
fn take_aliases(parsed: &mut annotations::Parsed) -> Vec<String> {
    let Some(policy) = parsed.policy.as_mut() else {
        return Vec::new();
    };
    if policy.server_alias.is_empty() {
        return Vec::new();
    }
    let aliases = std::mem::take(&mut Arc::make_mut(policy).server_alias);
    if policy.is_default() {
        parsed.policy = None;
    }
    aliases
}

/// Reads the `custom-headers` ConfigMap into the policy's response headers; when it is
/// missing, in another namespace or refused, the Ingress's paths answer 503 (ingress-nginx's
/// "location denied") and a Problem on the annotation says why. Returns the ConfigMap it
/// names, which the engine watches.
fn resolve_custom_headers(
    parsed: &mut annotations::Parsed,
    ns: &str,
    resolver: Resolver<'_>,
    opts: &Options,
) -> Vec<Key> {
    let Some(policy) = parsed.policy.as_mut() else {
        return Vec::new();
    };
    let Some((cm_ns, name)) = policy.custom_headers.clone() else {
        return Vec::new();
    };
    let cm_ns = cm_ns.unwrap_or_else(|| ns.to_owned());
    let read = if cm_ns == ns {
        resolver
            .config_map(&cm_ns, &name)
            .ok_or_else(|| format!("ConfigMap {cm_ns}/{name} not found"))
            .and_then(|cm| {
                let empty = BTreeMap::new();
                annotations::custom_headers::headers_from_data(
                    cm.data.as_ref().unwrap_or(&empty),
                    &opts.allowed_response_headers,
                )
                .map_err(|e| format!("ConfigMap {cm_ns}/{name}: {e}"))
            })
    } else {
        Err(format!(
            "ConfigMap {cm_ns}/{name} is in another namespace; only the Ingress's own ({ns}) is read"
        ))
    };
    let policy = Arc::make_mut(policy);
    match read {
        Ok(headers) => policy.response_headers = headers,
        Err(why) => {
            policy.denied = true;
            let message = format!("{why}; every request to this Ingress's paths gets 503");
            parsed.invalid(&opts.annotations_prefix, "custom-headers", message);
        }
    }
    vec![(cm_ns, name)]
}

/// What `ssl-passthrough` cannot do for some of an Ingress's hosts: ingress-nginx
/// compares the SNI with exact server names and passes a host to its `/` path's backend
/// (`buildPassthroughBackends` in internal/ingress/controller/controller.go), so wildcard
/// and host-less rules, and hosts without a `/` path, are not passed through; TLS for them
/// is terminated as without the annotation.
fn passthrough_problems(
    tr: &mut Translation<'_, '_>,
    hosts: &[(HostMatch, Vec<PathRoute>)],
    prefix: &str,
) {
    let field = format!("metadata.annotations[\"{prefix}/ssl-passthrough\"]");
    for (host, paths) in hosts {
        let why = match host {
            HostMatch::Exact(_) if paths.iter().any(|p| p.path == "/") => continue,
            HostMatch::Exact(_) => "has no path /, whose backend passthrough would use",
            HostMatch::Wildcard(_) => "is a wildcard; only exact hosts are passed through",
            HostMatch::Any => "is every host; only exact hosts are passed through",
        };
        let message = format!("host {host} {why}; its TLS connections are terminated here");
        tr.problem(
            field.clone(),
            "ssl_passthrough_unused",
            message,
            Severity::Warning,
        );
    }
}

/// The state of one [`translate`] call.
struct Translation<'a, 's> {
    resolver: Resolver<'s>,
    cells: &'a mut Cells,
    object: ObjectRef,
    ns: String,
    /// One Backend per Service port, so 5 paths to one Service cost one Arc.
    backends: HashMap<ServiceRef, Arc<Backend>>,
    problems: Vec<Problem>,
    services: Vec<Key>,
    /// What its annotations ask of every one of its backends.
    policy: Option<Arc<RoutePolicy>>,
}

impl Translation<'_, '_> {
    fn problem(&mut self, field: String, kind: &'static str, message: String, severity: Severity) {
        self.problems.push(Problem {
            object: self.object.clone(),
            field: Some(field),
            kind,
            message,
            severity,
        });
    }

    /// A rule's host; `None` (with a Problem) when it is not a valid host or wildcard.
    fn host(&mut self, ri: usize, host_raw: &str) -> Option<HostMatch> {
        let host = HostMatch::parse(host_raw);
        if host_raw.contains('*')
            && (!matches!(host, HostMatch::Wildcard(_)) || host_raw.matches('*').count() > 1)
        {
            let message = format!(
                "host {host_raw:?} is invalid: a wildcard must be the whole first label, as in *.example.com"
            );
            self.problem(
                format!("spec.rules[{ri}].host"),
                "invalid_host",
                message,
                Severity::Error,
            );
            return None;
        }
        Some(host)
    }

    fn path(&mut self, ri: usize, pi: usize, p: &HTTPIngressPath) -> Option<PathRoute> {
        let field = || format!("spec.rules[{ri}].http.paths[{pi}]");
        let path_type = match p.path_type.as_str() {
            "Exact" => PathType::Exact,
            "Prefix" => PathType::Prefix,
            "ImplementationSpecific" | "" => PathType::ImplementationSpecific,
            other => {
                let message = format!(
                    "pathType {other:?} is not one of Exact, Prefix, ImplementationSpecific"
                );
                self.problem(
                    format!("{}.pathType", field()),
                    "invalid_path_type",
                    message,
                    Severity::Error,
                );
                return None;
            }
        };
        let backend = self.backend(&p.backend, &format!("{}.backend", field()))?;
        let path = match p.path.as_deref() {
            None | Some("") => "/",
            Some(path) => path,
        };
        if !path.starts_with('/') {
            let message = InsertError::NotAbsolute(path.to_owned()).to_string();
            self.problem(
                format!("{}.path", field()),
                "invalid_path",
                message,
                Severity::Error,
            );
            return None;
        }
        Some(PathRoute {
            path: path.to_owned(),
            path_type,
            backend,
            rule: ri,
            index: pi,
        })
    }

    /// Resolves an Ingress backend; `None` (with a Problem) only when it cannot name a
    /// Service port at all. Unknown Services and ports resolve to an empty backend (503).
    fn backend(&mut self, b: &IngressBackend, field: &str) -> Option<Arc<Backend>> {
        let ns = self.ns.clone();
        let Some(svc) = &b.service else {
            let message = if b.resource.is_some() {
                "resource backends are not supported; use a Service backend".to_owned()
            } else {
                "backend names no Service".to_owned()
            };
            self.problem(
                field.to_owned(),
                "unsupported_backend",
                message,
                Severity::Error,
            );
            return None;
        };
        let port = match svc.port.as_ref().map(|p| (p.number, p.name.as_deref())) {
            Some((Some(n), _)) if n > 0 => PortSpec::Number(n),
            Some((_, Some(n))) if !n.is_empty() => PortSpec::Name(n),
            _ => {
                let message = format!(
                    "Service {ns}/{} backend needs port.number or port.name",
                    svc.name
                );
                self.problem(
                    format!("{field}.service.port"),
                    "invalid_backend_port",
                    message,
                    Severity::Error,
                );
                return None;
            }
        };
        self.services.push((ns.clone(), svc.name.clone()));
        let (service, endpoints, protocol) = match self.resolver.port(&ns, &svc.name, &port, false)
        {
            Ok((svc, sp)) => {
                let (service, mut endpoints) = self.cells.get(self.resolver, svc, sp);
                if self.policy.as_ref().is_some_and(|p| p.service_upstream) {
                    match cluster_ip(svc, sp) {
                        Some(addr) => endpoints = Endpoints::new(vec![addr]),
                        None => {
                            let message = format!(
                                "service-upstream: Service {ns}/{} has no ClusterIP (headless or ExternalName); its endpoints are used",
                                svc.metadata.name.as_deref().unwrap_or_default()
                            );
                            let field = format!("{field}.service.name");
                            self.problem(field, "no_cluster_ip", message, Severity::Warning);
                        }
                    }
                }
                let protocol = Protocol::from_app_protocol(sp.app_protocol.as_deref());
                (service, endpoints, protocol)
            }
            Err(e) => {
                let f = match e {
                    ResolveError::UnknownService { .. } => format!("{field}.service.name"),
                    ResolveError::UnknownPort { .. } => format!("{field}.service.port"),
                };
                let message = format!("{e}; requests get 503");
                self.problem(f, e.kind(), message, Severity::Error);
                let number = match port {
                    PortSpec::Number(n) => u16::try_from(n).unwrap_or(0),
                    PortSpec::Name(_) => 0,
                };
                let service = ServiceRef {
                    namespace: ns,
                    name: svc.name.clone(),
                    port: number,
                };
                (service, Endpoints::default(), Protocol::default())
            }
        };
        let (object, policy) = (&self.object, &self.policy);
        let backend = self.backends.entry(service).or_insert_with_key(|service| {
            let backend = Backend::new(service.clone(), endpoints, Some(object.clone()));
            Arc::new(backend.with_protocol(protocol).with_policy(policy.clone()))
        });
        Some(backend.clone())
    }
}

/// The Service's ClusterIP and port (`service-upstream`); `None` when it has none.
fn cluster_ip(
    service: &k8s_openapi::api::core::v1::Service,
    port: &k8s_openapi::api::core::v1::ServicePort,
) -> Option<std::net::SocketAddr> {
    let ip: std::net::IpAddr = service.spec.as_ref()?.cluster_ip.as_deref()?.parse().ok()?;
    let port = u16::try_from(port.port).ok()?;
    Some(std::net::SocketAddr::new(ip, port))
}

/// Merges the paths that served Ingresses (oldest first) give one host: the first Ingress
/// (and within it the first rule) to claim a path keeps it; later ones get a Problem.
///
/// A canary Ingress's paths (`canary: "true"`) claim nothing: each becomes the alternative
/// backend of the main route with the same path and type (see [`attach_canary`]).
///
/// If any claimed path's Ingress has `use-regex` or rewrites it (`rewrite-target`), every
/// path of the host, whichever Ingress claims it, becomes a regex, as in ingress-nginx; a
/// path that is not a valid regex then gets a Problem and matches nothing.
pub fn merge_host<'a>(
    host: &HostMatch,
    claims: impl IntoIterator<Item = (&'a ObjectRef, &'a [PathRoute])>,
) -> (HostRoutes, Vec<Problem>) {
    let mut routes = HostRoutes::default();
    let mut problems = Vec::new();
    // Who owns each inserted rule, by insertion index; whether the host is regex.
    let mut owners: Vec<(&ObjectRef, &PathRoute)> = Vec::new();
    let mut regex = false;
    let mut canaries = Vec::new();
    for (object, paths) in claims {
        for p in paths {
            if p.backend.policy().canary_rules().is_some() {
                canaries.push((object, p));
                continue;
            }
            regex |= p.backend.policy().wants_regex(&p.path);
            let Err(e) = routes.insert(host, &p.path, p.path_type, p.backend.clone()) else {
                owners.push((object, p));
                continue;
            };
            let InsertError::Conflict { existing, .. } = e else {
                continue; // paths are checked by `translate`
            };
            problems.push(Problem {
                object: object.clone(),
                field: Some(format!("spec.rules[{}].http.paths[{}].path", p.rule, p.index)),
                kind: "route_conflict",
                message: format!(
                    "host {host} path {} is already routed to {existing} by an older Ingress (or an earlier rule); this path is ignored",
                    p.path
                ),
                severity: Severity::Error,
            });
        }
    }
    if regex {
        for (i, why) in routes.enforce_regex() {
            let (object, p) = owners[i];
            problems.push(Problem {
                object: object.clone(),
                field: Some(format!("spec.rules[{}].http.paths[{}].path", p.rule, p.index)),
                kind: "invalid_path_regex",
                message: format!(
                    "host {host} matches its paths as regexes (use-regex or rewrite-target on one of its Ingresses), and {:?} is not a valid one: {}; this path is ignored",
                    p.path,
                    why.lines().last().unwrap_or(&why)
                ),
                severity: Severity::Error,
            });
        }
    }
    for (object, p) in canaries {
        problems.extend(attach_canary(&mut routes, host, object, p));
    }
    (routes, problems)
}

/// Makes a canary Ingress's path the alternative backend of the main route with the same
/// path and type, as ingress-nginx's `mergeAlternativeBackends` does. The canary backend
/// takes the main route's policy, except its own session affinity (annotations.md:
/// a canary's other annotations are ignored). A Warning when there is no such route (the
/// path is not served), when it already has a canary (ingress-nginx allows one per rule),
/// or when the main route already goes to the same Service.
fn attach_canary(
    routes: &mut HostRoutes,
    host: &HostMatch,
    object: &ObjectRef,
    p: &PathRoute,
) -> Option<Problem> {
    let rules = p.backend.policy().canary_rules()?.clone();
    let warn = |kind, message| Problem {
        object: object.clone(),
        field: Some(format!(
            "spec.rules[{}].http.paths[{}].path",
            p.rule, p.index
        )),
        kind,
        message,
        severity: Severity::Warning,
    };
    let Some(main) = routes.backend_mut(&p.path, p.path_type) else {
        return Some(warn(
            "canary_without_main",
            format!(
                "canary: no main Ingress routes host {host} path {} ({}); this canary path is not served",
                p.path, p.path_type
            ),
        ));
    };
    if let Some(existing) = &main.canary {
        return Some(warn(
            "canary_conflict",
            format!(
                "host {host} path {} already has a canary ({}, from an older Ingress); one canary per path, as in ingress-nginx; this one is ignored",
                p.path, existing.backend.service
            ),
        ));
    }
    if main.service == p.backend.service {
        return Some(warn(
            "canary_conflict",
            format!(
                "the main Ingress already routes host {host} path {} to Service {}; a canary of the same Service is ignored",
                p.path, main.service
            ),
        ));
    }
    let mut policy = main.policy().clone();
    // `affinity-canary-behavior: legacy`: the canary's session affinity is ignored.
    policy.affinity = p
        .backend
        .policy()
        .affinity
        .clone()
        .filter(|a| !a.legacy_canary);
    let backend = (*p.backend).clone().with_policy(Some(Arc::new(policy)));
    let mut with_canary = (**main).clone();
    with_canary.canary = Some(Arc::new(Canary {
        rules,
        backend: Arc::new(backend),
    }));
    *main = Arc::new(with_canary);
    None
}

/// Parsed Secrets, kept while the Secret object is the same one.
#[derive(Debug, Default)]
pub struct SecretCache {
    parsed: HashMap<Key, (Arc<Secret>, ParsedSecret)>,
}

/// A Secret parsed: the certificate, or (field, kind, message) of why not.
type ParsedSecret = Result<Arc<TlsCert>, (String, &'static str, String)>;

impl SecretCache {
    /// The parsed Secret, parsed again only when the Secret object changed.
    pub fn get(&mut self, key: &Key, secret: &Arc<Secret>) -> ParsedSecret {
        if let Some((s, parsed)) = self.parsed.get(key)
            && Arc::ptr_eq(s, secret)
        {
            return parsed.clone();
        }
        let sref = ObjectRef {
            kind: "Secret".to_owned(),
            namespace: Some(key.0.clone()),
            name: key.1.clone(),
        };
        let parsed = parse_secret(secret, &sref).map(Arc::new);
        self.parsed
            .insert(key.clone(), (secret.clone(), parsed.clone()));
        parsed
    }

    /// Forgets Secrets that are gone.
    pub fn retain_existing(&mut self, secrets: &BTreeMap<Key, Arc<Secret>>) {
        self.parsed.retain(|k, _| secrets.contains_key(k));
    }
}

/// What the TLS entries of all served Ingresses give: certificates by host, the hosts that
/// redirect to HTTPS, and Problems.
pub struct MergedTls {
    /// Certificates.
    pub certs: CertSet,
    /// Hosts listed in a `tls` entry.
    pub hosts: TlsHosts,
    /// Problems.
    pub problems: Vec<Problem>,
}

/// Merges the TLS entries of served Ingresses, oldest first: the first certificate for a
/// host (or the default one) wins. A Secret that does not parse is reported once, on the
/// Secret, naming its oldest user.
pub fn merge_tls<'a>(
    ingresses: impl IntoIterator<Item = &'a Translated>,
    secrets: &BTreeMap<Key, Arc<Secret>>,
    cache: &mut SecretCache,
) -> MergedTls {
    let mut out = MergedTls {
        certs: CertSet::default(),
        hosts: TlsHosts::default(),
        problems: Vec::new(),
    };
    let mut reported = BTreeSet::new();
    for t in ingresses {
        let ns = t.age.key.0.as_str();
        for entry in &t.tls {
            for host in &entry.hosts {
                out.hosts.add(host);
            }
            let Some(name) = &entry.secret else { continue };
            let field = format!("spec.tls[{}].secretName", entry.index);
            let key = (ns.to_owned(), name.clone());
            let Some(secret) = secrets.get(&key) else {
                out.problems.push(Problem {
                    object: t.object.clone(),
                    field: Some(field),
                    kind: "unknown_secret",
                    message: format!(
                        "Secret {ns}/{name} not found (only {TLS_SECRET_TYPE} Secrets are read)"
                    ),
                    severity: Severity::Error,
                });
                continue;
            };
            let cert = match cache.get(&key, secret) {
                Ok(cert) => cert,
                Err((f, kind, message)) => {
                    if reported.insert(key.clone()) {
                        out.problems.push(Problem {
                            object: ObjectRef {
                                kind: "Secret".to_owned(),
                                namespace: Some(ns.to_owned()),
                                name: name.clone(),
                            },
                            field: Some(f),
                            kind,
                            message: format!("{message} (used by {} {field})", t.object),
                            severity: Severity::Error,
                        });
                    }
                    continue;
                }
            };
            add_cert(&mut out, t, entry, &key, cert);
        }
    }
    out
}

/// Adds one entry's certificate for its hosts (or as the default), with conflict Problems.
fn add_cert(out: &mut MergedTls, t: &Translated, entry: &TlsEntry, key: &Key, cert: Arc<TlsCert>) {
    let same_secret =
        |owner: &ObjectRef| owner.namespace.as_deref() == Some(&key.0) && owner.name == key.1;
    if entry.hosts.is_empty() {
        if let Err(owner) = out.certs.set_default(cert)
            && owner.name != key.1
        {
            out.problems.push(Problem {
                object: t.object.clone(),
                field: Some(format!("spec.tls[{}].secretName", entry.index)),
                kind: "tls_conflict",
                message: format!(
                    "a tls entry without hosts sets the default certificate, which {owner} already set"
                ),
                severity: Severity::Warning,
            });
        }
        return;
    }
    for (hi, host) in entry.hosts.iter().enumerate() {
        if let Err(owner) = out.certs.insert(host, cert.clone())
            && !same_secret(&owner)
        {
            out.problems.push(Problem {
                object: t.object.clone(),
                field: Some(format!("spec.tls[{}].hosts[{hi}]", entry.index)),
                kind: "tls_conflict",
                message: format!(
                    "host {host} already has the certificate of {owner} (older Ingress); this one is ignored"
                ),
                severity: Severity::Warning,
            });
        }
    }
}

/// The `defaultBackend` of the oldest served Ingress that has one; later ones naming another
/// Service get a Warning.
pub fn merge_default<'a>(
    ingresses: impl IntoIterator<Item = &'a Translated>,
) -> (Option<Arc<Backend>>, Vec<Problem>) {
    let mut winner: Option<(&Arc<Backend>, &ObjectRef)> = None;
    let mut problems = Vec::new();
    for t in ingresses {
        let Some(backend) = &t.default_backend else {
            continue;
        };
        match winner {
            None => winner = Some((backend, &t.object)),
            Some((w, owner)) if w.service != backend.service => problems.push(Problem {
                object: t.object.clone(),
                field: Some("spec.defaultBackend".to_owned()),
                kind: "default_backend_conflict",
                message: format!(
                    "ignored: {owner} is older and its defaultBackend {} wins",
                    w.service
                ),
                severity: Severity::Warning,
            }),
            Some(_) => {}
        }
    }
    (winner.map(|(b, _)| b.clone()), problems)
}

/// Checks and parses a `kubernetes.io/tls` Secret. The error is (field, kind, message).
fn parse_secret(
    secret: &Secret,
    sref: &ObjectRef,
) -> Result<TlsCert, (String, &'static str, String)> {
    let ty = secret.type_.as_deref().unwrap_or("Opaque");
    if ty != TLS_SECRET_TYPE {
        return Err((
            "type".to_owned(),
            "secret_wrong_type",
            format!("type is {ty:?}, expected {TLS_SECRET_TYPE:?}"),
        ));
    }
    let get = |k: &str| -> Option<Vec<u8>> {
        secret
            .string_data
            .as_ref()
            .and_then(|d| d.get(k))
            .map(|s| s.as_bytes().to_vec())
            .or_else(|| {
                secret
                    .data
                    .as_ref()
                    .and_then(|d| d.get(k))
                    .map(|b| b.0.clone())
            })
    };
    let field = |k: &str| format!("data[{k:?}]");
    let crt = get("tls.crt").ok_or_else(|| {
        (
            field("tls.crt"),
            "secret_missing_key",
            "missing key tls.crt".to_owned(),
        )
    })?;
    let key = get("tls.key").ok_or_else(|| {
        (
            field("tls.key"),
            "secret_missing_key",
            "missing key tls.key".to_owned(),
        )
    })?;
    let chain = tls::parse_chain(&crt).map_err(|e| {
        (
            field("tls.crt"),
            "secret_invalid_pem",
            format!("tls.crt: {e}"),
        )
    })?;
    let key = tls::parse_key(&key).map_err(|e| {
        (
            field("tls.key"),
            "secret_invalid_pem",
            format!("tls.key: {e}"),
        )
    })?;
    Ok(TlsCert {
        secret: sref.clone(),
        chain,
        key,
    })
}

/// Resolves `--default-backend-service` (its first port).
pub fn default_backend_service(
    resolver: Resolver<'_>,
    cells: &mut Cells,
    opts: &Options,
    problems: &mut Vec<Problem>,
) -> Option<Arc<Backend>> {
    let nn = opts.default_backend_service.as_ref()?;
    let object = ObjectRef {
        kind: "Service".to_owned(),
        namespace: Some(nn.namespace.clone()),
        name: nn.name.clone(),
    };
    let Some(service) = resolver.service(&nn.namespace, &nn.name) else {
        problems.push(Problem {
            object,
            field: None,
            kind: "unknown_default_backend",
            message: format!(
                "--default-backend-service {nn}: Service not found; unmatched requests get 404"
            ),
            severity: Severity::Error,
        });
        return None;
    };
    let Some(port) = service
        .spec
        .as_ref()
        .and_then(|s| s.ports.as_ref())
        .and_then(|p| p.first())
    else {
        problems.push(Problem {
            object,
            field: Some("spec.ports".to_owned()),
            kind: "unknown_service_port",
            message: format!("--default-backend-service {nn}: the Service has no ports; unmatched requests get 404"),
            severity: Severity::Error,
        });
        return None;
    };
    let (service, endpoints) = cells.get(resolver, service, port);
    let protocol = Protocol::from_app_protocol(port.app_protocol.as_deref());
    Some(Arc::new(
        Backend::new(service, endpoints, None).with_protocol(protocol),
    ))
}
