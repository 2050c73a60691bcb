//! Served Ingresses → HTTP routes, TLS hosts and the default backend.
//!
//! Ingresses are applied oldest first (`creationTimestamp`, then namespace/name), so the
//! oldest wins a host + path conflict and the loser gets a Problem. A rule whose Service or
//! Service port does not exist still claims its path and answers 503 (like a Service with
//! no endpoints), so a typo never silently sends traffic to a shorter prefix.

use std::{collections::HashMap, sync::Arc};

use k8s_openapi::api::{
    core::v1::Secret,
    networking::v1::{Ingress, IngressBackend},
};

use super::{
    ObjectRef, Options, Problem, ServiceRef,
    backend::{PortSpec, Resolver},
    problem::Severity,
    tls::{self, CertSet, TlsCert},
};
use crate::http::route::{Backend, HostMatch, InsertError, PathType, Protocol, RouteTable};

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

/// Sort key: oldest first, objects without a timestamp (file mode) last, then ns/name.
pub fn age_key(ing: &Ingress) -> impl Ord + '_ {
    let ts = ing.metadata.creation_timestamp.as_ref().map(|t| t.0);
    (
        ts.is_none(),
        ts,
        ing.metadata.namespace.as_deref().unwrap_or(""),
        ing.metadata.name.as_deref().unwrap_or(""),
    )
}

/// Accumulates routes, certificates and Problems over the served Ingresses.
pub struct Translator<'s, 'r> {
    /// Service/endpoint resolution.
    pub resolver: &'r mut Resolver<'s>,
    /// Secrets by (namespace, name).
    secrets: HashMap<(&'s str, &'s str), &'s Secret>,
    /// Parsed Secrets; `None` = already reported as broken.
    parsed: HashMap<(String, String), Option<Arc<TlsCert>>>,
    /// Backends shared by (Ingress, Service port), so 5 paths to one Service cost one Arc.
    backends: HashMap<(ObjectRef, ServiceRef), Arc<Backend>>,
    /// The route table being built.
    pub table: RouteTable,
    /// Certificates being collected.
    pub certs: CertSet,
    /// The oldest Ingress `defaultBackend`, and who set it.
    pub default_backend: Option<(Arc<Backend>, ObjectRef)>,
    /// Problems found.
    pub problems: Vec<Problem>,
}

impl<'s, 'r> Translator<'s, 'r> {
    /// A translator over one Store's Secrets.
    pub fn new(resolver: &'r mut Resolver<'s>, secrets: &'s [Secret]) -> Self {
        let secrets = secrets
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
        Self {
            resolver,
            secrets,
            parsed: HashMap::new(),
            backends: HashMap::new(),
            table: RouteTable::new(),
            certs: CertSet::default(),
            default_backend: None,
            problems: Vec::new(),
        }
    }

    fn problem(
        &mut self,
        object: &ObjectRef,
        field: String,
        kind: &'static str,
        message: String,
        severity: Severity,
    ) {
        self.problems.push(Problem {
            object: object.clone(),
            field: Some(field),
            kind,
            message,
            severity,
        });
    }

    /// Adds one served Ingress. Ingresses must come oldest first.
    pub fn add(&mut self, ing: &Ingress) {
        let obj = object_ref(ing);
        let ns = ing.metadata.namespace.as_deref().unwrap_or("default");
        let Some(spec) = &ing.spec else {
            return;
        };
        if let Some(db) = &spec.default_backend
            && let Some(backend) = self.backend(&obj, ns, db, "spec.defaultBackend")
        {
            match &self.default_backend {
                None => self.default_backend = Some((backend, obj.clone())),
                Some((winner, owner)) if winner.service != backend.service => {
                    let message = format!(
                        "ignored: {owner} is older and its defaultBackend {} wins",
                        winner.service
                    );
                    self.problem(
                        &obj,
                        "spec.defaultBackend".into(),
                        "default_backend_conflict",
                        message,
                        Severity::Warning,
                    );
                }
                Some(_) => {}
            }
        }
        for (ri, rule) in spec.rules.iter().flatten().enumerate() {
            let host_raw = rule.host.as_deref().unwrap_or("");
            let host = HostMatch::parse(host_raw);
            if host_raw.contains('*')
                && (!matches!(host, HostMatch::Wildcard(_)) || host_raw.matches('*').count() > 1)
            {
                let message = format!(
                    "host {host_raw:?} is invalid: a wildcard must be the whole first label, as in *.example.com"
                );
                self.problem(
                    &obj,
                    format!("spec.rules[{ri}].host"),
                    "invalid_host",
                    message,
                    Severity::Error,
                );
                continue;
            }
            let Some(http) = &rule.http else { continue };
            for (pi, p) in http.paths.iter().enumerate() {
                let field = format!("spec.rules[{ri}].http.paths[{pi}]");
                let path_type = match p.path_type.as_str() {
                    "Exact" => PathType::Exact,
                    "Prefix" => PathType::Prefix,
                    "ImplementationSpecific" | "" => PathType::ImplementationSpecific,
                    other => {
                        let message = format!(
                            "pathType {other:?} is not one of Exact, Prefix, ImplementationSpecific"
                        );
                        self.problem(
                            &obj,
                            format!("{field}.pathType"),
                            "invalid_path_type",
                            message,
                            Severity::Error,
                        );
                        continue;
                    }
                };
                let Some(backend) = self.backend(&obj, ns, &p.backend, &format!("{field}.backend"))
                else {
                    continue;
                };
                let path = p.path.as_deref().unwrap_or("/");
                match self.table.insert(host.clone(), path, path_type, backend) {
                    Ok(()) => {}
                    Err(e @ InsertError::NotAbsolute(_)) => {
                        self.problem(
                            &obj,
                            format!("{field}.path"),
                            "invalid_path",
                            e.to_string(),
                            Severity::Error,
                        );
                    }
                    Err(InsertError::Conflict { existing, .. }) => {
                        let message = format!(
                            "host {host} path {path} is already routed to {existing} by an older Ingress (or an earlier rule); this path is ignored"
                        );
                        self.problem(
                            &obj,
                            format!("{field}.path"),
                            "route_conflict",
                            message,
                            Severity::Error,
                        );
                    }
                }
            }
        }
        for (ti, t) in spec.tls.iter().flatten().enumerate() {
            self.add_tls(
                &obj,
                ns,
                ti,
                t.hosts.as_deref().unwrap_or_default(),
                t.secret_name.as_deref(),
            );
        }
    }

    fn add_tls(
        &mut self,
        obj: &ObjectRef,
        ns: &str,
        ti: usize,
        hosts: &[String],
        secret_name: Option<&str>,
    ) {
        for host in hosts {
            self.table.add_tls_host(host);
        }
        let field = format!("spec.tls[{ti}].secretName");
        let Some(secret_name) = secret_name.filter(|s| !s.is_empty()) else {
            let message =
                "no secretName: these hosts are served with the default certificate, if any"
                    .to_owned();
            self.problem(obj, field, "tls_no_secret", message, Severity::Warning);
            return;
        };
        let Some(cert) = self.cert(obj, ns, secret_name, &field) else {
            return;
        };
        if hosts.is_empty() {
            if let Err(owner) = self.certs.set_default(cert)
                && owner.name != secret_name
            {
                let message = format!(
                    "a tls entry without hosts sets the default certificate, which {owner} already set"
                );
                self.problem(obj, field, "tls_conflict", message, Severity::Warning);
            }
            return;
        }
        for (hi, host) in hosts.iter().enumerate() {
            if let Err(owner) = self.certs.insert(host, cert.clone())
                && (owner.namespace.as_deref() != Some(ns) || owner.name != secret_name)
            {
                let message = format!(
                    "host {host} already has the certificate of {owner} (older Ingress); this one is ignored"
                );
                self.problem(
                    obj,
                    format!("spec.tls[{ti}].hosts[{hi}]"),
                    "tls_conflict",
                    message,
                    Severity::Warning,
                );
            }
        }
    }

    /// Parses a Secret once; its Problems name the Secret and its key.
    fn cert(&mut self, obj: &ObjectRef, ns: &str, name: &str, field: &str) -> Option<Arc<TlsCert>> {
        let key = (ns.to_owned(), name.to_owned());
        if let Some(c) = self.parsed.get(&key) {
            return c.clone();
        }
        let sref = ObjectRef {
            kind: "Secret".to_owned(),
            namespace: Some(ns.to_owned()),
            name: name.to_owned(),
        };
        let result = match self.secrets.get(&(ns, name)) {
            None => {
                let message = format!(
                    "Secret {ns}/{name} not found (only {TLS_SECRET_TYPE} Secrets are read)"
                );
                self.problem(
                    obj,
                    field.to_owned(),
                    "unknown_secret",
                    message,
                    Severity::Error,
                );
                None
            }
            Some(secret) => match parse_secret(secret, &sref) {
                Ok(c) => Some(Arc::new(c)),
                Err((f, kind, message)) => {
                    let message = format!("{message} (used by {obj} {field})");
                    self.problem(&sref, f, kind, message, Severity::Error);
                    None
                }
            },
        };
        self.parsed.insert(key, result.clone());
        result
    }

    /// Resolves an Ingress backend; `None` (with a Problem) only when it cannot name a
    /// Service port at all. Unknown Services and ports resolve to an empty backend (503).
    fn backend(
        &mut self,
        obj: &ObjectRef,
        ns: &str,
        b: &IngressBackend,
        field: &str,
    ) -> Option<Arc<Backend>> {
        let Some(svc) = &b.service else {
            let message = if b.resource.is_some() {
                "resource backends are not supported; use a Service backend".to_owned()
            } else {
                "backend names no Service".to_owned()
            };
            self.problem(
                obj,
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
                    obj,
                    format!("{field}.service.port"),
                    "invalid_backend_port",
                    message,
                    Severity::Error,
                );
                return None;
            }
        };
        let (service, endpoints, protocol) = match self.resolver.port(ns, &svc.name, &port, false) {
            Ok((service, sp)) => {
                let (service, endpoints) = self.resolver.endpoints(service, sp);
                let protocol = Protocol::from_app_protocol(sp.app_protocol.as_deref());
                (service, endpoints, protocol)
            }
            Err(e) => {
                let f = match e {
                    super::backend::ResolveError::UnknownService { .. } => {
                        format!("{field}.service.name")
                    }
                    super::backend::ResolveError::UnknownPort { .. } => {
                        format!("{field}.service.port")
                    }
                };
                let message = format!("{e}; requests get 503");
                self.problem(obj, f, e.kind(), message, Severity::Error);
                let number = match port {
                    PortSpec::Number(n) => u16::try_from(n).unwrap_or(0),
                    PortSpec::Name(_) => 0,
                };
                let service = ServiceRef {
                    namespace: ns.to_owned(),
                    name: svc.name.clone(),
                    port: number,
                };
                (service, Arc::from(Vec::new()), Protocol::default())
            }
        };
        let key = (obj.clone(), service);
        let backend = self
            .backends
            .entry(key)
            .or_insert_with_key(|(obj, service)| {
                let backend = Backend::new(service.clone(), endpoints, Some(obj.clone()));
                Arc::new(backend.with_protocol(protocol))
            });
        Some(backend.clone())
    }
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
    resolver: &mut Resolver<'_>,
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
    let (service, endpoints) = resolver.endpoints(service, port);
    let protocol = Protocol::from_app_protocol(port.app_protocol.as_deref());
    Some(Arc::new(
        Backend::new(service, endpoints, None).with_protocol(protocol),
    ))
}
