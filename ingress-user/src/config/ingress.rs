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
    ObjectRef, Options, Problem, ServiceRef, annotations,
    backend::{Cells, PortSpec, ResolveError, Resolver},
    problem::Severity,
    store::Key,
    tls::{self, CertSet, TlsCert},
};
use crate::snapshot::{
    Endpoints,
    policy::RoutePolicy,
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
}

/// Translates one Ingress (whether it is served is the caller's decision). Its annotations
/// under `prefix` (`--annotations-prefix`) become the policy of all its backends.
pub fn translate(
    ing: &Ingress,
    resolver: Resolver<'_>,
    cells: &mut Cells,
    prefix: &str,
) -> Translated {
    let object = object_ref(ing);
    let parsed = annotations::parse(ing.metadata.annotations.as_ref(), prefix);
    let mut tr = Translation {
        resolver,
        cells,
        object: object.clone(),
        ns: ing
            .metadata
            .namespace
            .clone()
            .unwrap_or_else(|| "default".to_owned()),
        backends: HashMap::new(),
        problems: Vec::new(),
        services: Vec::new(),
        policy: parsed.policy,
    };
    for f in parsed.findings {
        tr.problem(f.field, f.kind, f.message, f.severity);
    }
    let mut hosts: Vec<(HostMatch, Vec<PathRoute>)> = Vec::new();
    let mut default_backend = None;
    let mut tls = Vec::new();
    if let Some(spec) = &ing.spec {
        if let Some(db) = &spec.default_backend {
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
    }
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
            Ok((service, sp)) => {
                let (service, endpoints) = self.cells.get(self.resolver, service, sp);
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

/// Merges the paths that served Ingresses (oldest first) give one host: the first Ingress
/// (and within it the first rule) to claim a path keeps it; later ones get a Problem.
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
    for (object, paths) in claims {
        for p in paths {
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
    (routes, problems)
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
