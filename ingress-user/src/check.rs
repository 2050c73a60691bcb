//! `xdp-ingress check`: build one Snapshot from the configured source and print what the
//! data planes would serve, like `nginx -t`. Exit status 1 when any Problem is an error.

use std::{fmt::Write as _, sync::Arc, time::Duration};

use crate::{
    cli::CheckArgs,
    config::{
        self, ObjectRef, Snapshot, Store,
        annotations::{Status, Verdict},
        problem::Severity,
    },
    source::{
        self, files,
        kube::{self as kube_source, KubeSourceConfig},
    },
};

/// How long `check` waits for the API server to answer, and then for the initial sync.
pub const CLUSTER_TIMEOUT: Duration = Duration::from_secs(15);

/// Why `check` could not produce a Snapshot at all.
#[derive(Debug, thiserror::Error)]
pub enum CheckError {
    /// No `--manifests`, and no kubeconfig or in-cluster configuration either.
    #[error("no --manifests DIR given and no Kubernetes configuration found: {0}")]
    NoSource(#[source] kube::Error),
    /// The API server did not answer.
    #[error("the Kubernetes API server did not answer within {timeout:?}: {reason}")]
    Unreachable {
        /// The limit.
        timeout: Duration,
        /// The last error, or `timed out`.
        reason: String,
    },
    /// The watchers did not finish their initial list in time.
    #[error("the initial sync with the Kubernetes API server did not finish within {0:?}")]
    SyncTimeout(Duration),
    /// The tokio runtime for the cluster source could not start.
    #[error("starting the runtime: {0}")]
    Runtime(#[source] std::io::Error),
    /// The manifest directory could not be read.
    #[error(transparent)]
    Load(#[from] files::LoadError),
}

/// What `check` found: the Snapshot, and the annotation migration report.
#[derive(Debug)]
pub struct Checked {
    /// What the data planes would serve.
    pub snapshot: Snapshot,
    /// Per served Ingress with annotations under `--annotations-prefix`, what became of
    /// each.
    pub annotations: Vec<(ObjectRef, Vec<Verdict>)>,
    /// The Gateway API conditions the status writer would write.
    pub gateway: config::gateway::status::Statuses,
}

/// The Gateway API section of the report (empty without Gateway API objects of ours).
pub fn gateway_report(statuses: &config::gateway::status::Statuses) -> String {
    let body = statuses.report();
    if body.is_empty() {
        return body;
    }
    format!("\nGateway API status:\n{body}")
}

/// Loads the objects `args` point at (the `--manifests` directory, else the cluster from the
/// kubeconfig or in-cluster config), builds the Snapshot and the annotation report.
pub fn snapshot(args: &CheckArgs) -> Result<Checked, CheckError> {
    let store = match &args.source.manifests {
        Some(dir) => Arc::new(files::load(dir)?),
        None => tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .map_err(CheckError::Runtime)?
            .block_on(cluster_store(args))?,
    };
    let opts = args.source.options(args.ports);
    let objects = config::Objects::from_store(&store);
    Ok(Checked {
        snapshot: config::build_objects(&objects, &opts),
        annotations: config::annotation_verdicts(&objects, &opts),
        gateway: config::gateway_statuses(&objects, &opts),
    })
}

/// One Store from the cluster: the kube source's first publication after its initial sync.
/// Unlike the controller, `check` does not retry forever: it fails after [`CLUSTER_TIMEOUT`].
async fn cluster_store(args: &CheckArgs) -> Result<Arc<Store>, CheckError> {
    let client = kube::Client::try_default()
        .await
        .map_err(CheckError::NoSource)?;
    let unreachable = |reason: String| CheckError::Unreachable {
        timeout: CLUSTER_TIMEOUT,
        reason,
    };
    match tokio::time::timeout(CLUSTER_TIMEOUT, client.apiserver_version()).await {
        Ok(Ok(_)) => {}
        Ok(Err(e)) => return Err(unreachable(e.to_string())),
        Err(_) => return Err(unreachable("timed out".to_owned())),
    }
    let cm = |n: &Option<config::NamespacedName>| {
        n.as_ref().map(|n| (n.namespace.clone(), n.name.clone()))
    };
    let cfg = KubeSourceConfig {
        watch_namespace: args.source.watch_namespace.clone(),
        tcp_configmap: cm(&args.source.tcp_services_configmap),
        udp_configmap: cm(&args.source.udp_services_configmap),
        all_configmaps: !args.source.global_allowed_response_headers.is_empty(),
    };
    let (tx, mut rx) = source::channel();
    let source = tokio::spawn(kube_source::run(client, cfg, tx));
    let store = tokio::time::timeout(CLUSTER_TIMEOUT, async {
        let mut follower = source::Follower::default();
        while follower.next(&mut rx).await {
            if follower.synced {
                return Some(Arc::new(follower.objects.to_store()));
            }
        }
        None
    })
    .await;
    source.abort();
    match store {
        Ok(Some(store)) => Ok(store),
        Ok(None) | Err(_) => Err(CheckError::SyncTimeout(CLUSTER_TIMEOUT)),
    }
}

/// Whether `check` fails: any Error-severity Problem (warnings do not fail).
pub fn failed(snapshot: &Snapshot) -> bool {
    snapshot
        .problems
        .iter()
        .any(|p| p.severity == Severity::Error)
}

fn endpoints(eps: &[std::net::SocketAddr]) -> String {
    if eps.is_empty() {
        return "(none)".to_owned();
    }
    eps.iter()
        .map(ToString::to_string)
        .collect::<Vec<_>>()
        .join(",")
}

/// Formats `rows` as left-aligned columns under `header`.
fn table(out: &mut String, header: &[&str], rows: &[Vec<String>]) {
    let mut widths: Vec<usize> = header.iter().map(|h| h.len()).collect();
    for row in rows {
        for (w, cell) in widths.iter_mut().zip(row) {
            *w = (*w).max(cell.len());
        }
    }
    let line = |out: &mut String, cells: &mut dyn Iterator<Item = &str>| {
        let mut s = String::from("  ");
        for (cell, w) in cells.zip(&widths) {
            let _ = write!(s, "{cell:<w$}  ");
        }
        out.push_str(s.trim_end());
        out.push('\n');
    };
    line(out, &mut header.iter().copied());
    for row in rows {
        line(out, &mut row.iter().map(String::as_str));
    }
}

/// The Gateway API rules, per listening address and hostname, in the order the router
/// tries them.
fn gateway_routes(out: &mut String, plane: &crate::snapshot::gateway::GatewayPlane) {
    use crate::snapshot::gateway::{GatewayRule, InvalidBackend, PathMatch};
    let describe = |r: &GatewayRule| {
        let m = &r.matches;
        let mut s = match &m.path {
            PathMatch::Exact(p) => format!("Exact {p}"),
            PathMatch::Prefix(p) => format!("PathPrefix {p}"),
            PathMatch::Regex(re) => format!("RegularExpression {}", re.as_str()),
        };
        if let Some(method) = &m.method {
            let _ = write!(s, " {method}");
        }
        for h in &m.headers {
            let _ = write!(s, " header:{}", h.name);
        }
        for q in &m.query {
            let _ = write!(s, " query:{}", q.name);
        }
        s
    };
    let backends = |r: &GatewayRule| {
        let redirect = r
            .action
            .filters
            .iter()
            .any(|f| matches!(f, crate::snapshot::gateway::Filter::Redirect(_)));
        if redirect {
            return "(redirect)".to_owned();
        }
        if r.action.backends.is_empty() {
            return "(none: 500)".to_owned();
        }
        r.action
            .backends
            .iter()
            .map(|b| {
                let target = match &b.target {
                    Ok(b) => b.service.to_string(),
                    Err(InvalidBackend::NotFound) => "(not found: 500)".to_owned(),
                    Err(InvalidBackend::InvalidKind) => "(invalid kind: 500)".to_owned(),
                    Err(InvalidBackend::RefNotPermitted) => "(not permitted: 500)".to_owned(),
                };
                format!("{target}*{}", b.weight)
            })
            .collect::<Vec<_>>()
            .join(",")
    };
    let mut rows = Vec::new();
    for (at, port) in &plane.ports {
        let h = &port.hosts;
        let entries = h
            .exact
            .iter()
            .map(|(k, v)| (k.clone(), v))
            .chain(h.wildcard.iter().map(|(k, v)| (format!("*{k}"), v)))
            .chain(h.any.iter().map(|v| ("*".to_owned(), v)));
        let mut any = false;
        for (host, rules) in entries {
            for r in rules.iter() {
                any = true;
                rows.push(vec![
                    format!("{at}{}", if port.tls { " (HTTPS)" } else { "" }),
                    host.clone(),
                    describe(r),
                    backends(r),
                    format!(
                        "{}/{} rule {}",
                        r.route.namespace.as_deref().unwrap_or(""),
                        r.route.name,
                        r.rule
                    ),
                ]);
            }
        }
        // TLSRoutes: connections passed through by SNI, untouched.
        for l in &port.passthrough {
            let h = &l.routes;
            let entries = h
                .exact
                .iter()
                .map(|(k, v)| (k.clone(), v))
                .chain(h.wildcard.iter().map(|(k, v)| (format!("*{k}"), v)))
                .chain(h.any.iter().map(|v| ("*".to_owned(), v)));
            for (host, r) in entries {
                any = true;
                let targets = r
                    .backends
                    .iter()
                    .map(|b| match &b.target {
                        Ok(t) => format!("{}*{}", t.service, b.weight),
                        Err(e) => format!("({e:?}: closed)*{}", b.weight),
                    })
                    .collect::<Vec<_>>()
                    .join(",");
                rows.push(vec![
                    format!("{at} (TLS passthrough)"),
                    host,
                    "SNI".to_owned(),
                    if targets.is_empty() {
                        "(none: closed)".to_owned()
                    } else {
                        targets
                    },
                    format!(
                        "{}/{}",
                        r.route.namespace.as_deref().unwrap_or(""),
                        r.route.name
                    ),
                ]);
            }
        }
        if !any {
            rows.push(vec![
                format!("{at}{}", if port.tls { " (HTTPS)" } else { "" }),
                "(no routes: 404)".to_owned(),
                String::new(),
                String::new(),
                String::new(),
            ]);
        }
    }
    let _ = writeln!(out, "\nGateway API routes ({}):", rows.len());
    table(
        out,
        &["ADDRESS", "HOST", "MATCH", "BACKENDS", "ROUTE"],
        &rows,
    );
}

/// The human-readable report: HTTP routes, default backend, TLS hosts, L4 table, Problems.
pub fn report(snapshot: &Snapshot) -> String {
    let mut out = String::new();
    let rules = snapshot.http.rules();
    let _ = writeln!(out, "HTTP routes ({}):", rules.len());
    let rows: Vec<Vec<String>> = rules
        .iter()
        .map(|r| {
            vec![
                r.host.to_string(),
                r.path.clone(),
                if r.regex {
                    format!("{} (regex)", r.path_type)
                } else {
                    r.path_type.to_string()
                },
                // A canary Ingress's alternative backend rides on the main route.
                r.backend.canary.as_ref().map_or_else(
                    || r.backend.service.to_string(),
                    |c| format!("{} (canary: {})", r.backend.service, c.backend.service),
                ),
                endpoints(&r.backend.endpoints.load()),
                r.backend.ingress.as_ref().map_or_else(String::new, |i| {
                    format!("{}/{}", i.namespace.as_deref().unwrap_or(""), i.name)
                }),
            ]
        })
        .collect();
    table(
        &mut out,
        &["HOST", "PATH", "TYPE", "BACKEND", "ENDPOINTS", "INGRESS"],
        &rows,
    );
    match snapshot.http.default_backend() {
        Some(b) => {
            let from = b.ingress.as_ref().map_or_else(
                || "--default-backend-service".to_owned(),
                |i| format!("defaultBackend of {i}"),
            );
            let _ = writeln!(
                out,
                "Default backend: {} endpoints {} ({from})",
                b.service,
                endpoints(&b.endpoints.load())
            );
        }
        None => out.push_str("Default backend: built-in 404\n"),
    }
    // ssl-passthrough hosts: TLS on the HTTPS port goes to their `/` backend untouched.
    let mut passed: Vec<String> = snapshot
        .http
        .hosts()
        .filter_map(|(host, _)| match host {
            crate::snapshot::routes::HostMatch::Exact(h) => {
                let r = snapshot.http.passthrough(&h)?;
                let to = r.backends.first()?.target.as_ref().ok()?;
                Some(format!("{h} -> {} ({})", to.service, r.route))
            }
            _ => None,
        })
        .collect();
    passed.sort();
    if !passed.is_empty() {
        let _ = writeln!(
            out,
            "TLS passthrough (ssl-passthrough): {}",
            passed.join(", ")
        );
    }
    if !snapshot.gateway.ports.is_empty() {
        gateway_routes(&mut out, &snapshot.gateway);
    }
    let certs = snapshot.tls.entries();
    let _ = writeln!(out, "\nTLS certificates ({}):", certs.len());
    let rows: Vec<Vec<String>> = certs
        .iter()
        .map(|(host, c)| {
            vec![
                host.clone(),
                c.secret.to_string(),
                c.chain.len().to_string(),
            ]
        })
        .collect();
    table(&mut out, &["HOST", "SECRET", "CHAIN"], &rows);
    let _ = writeln!(out, "\nL4 services ({}):", snapshot.l4.len());
    let rows: Vec<Vec<String>> = snapshot
        .l4
        .iter()
        .map(|s| {
            let proxy = match (s.proxy_protocol_in, s.proxy_protocol_out) {
                (false, false) => "-",
                (true, false) => "in",
                (false, true) => "out",
                (true, true) => "in,out",
            };
            // A Gateway's TCP/UDP listener on its own addresses: port@address,...
            let port = if s.addrs.is_empty() {
                s.port.to_string()
            } else {
                let addrs: Vec<String> = s.addrs.iter().map(ToString::to_string).collect();
                format!("{}@{}", s.port, addrs.join(","))
            };
            vec![
                s.protocol.to_string(),
                port,
                s.service.to_string(),
                endpoints(&s.endpoints),
                proxy.to_owned(),
            ]
        })
        .collect();
    table(
        &mut out,
        &["PROTO", "PORT", "SERVICE", "ENDPOINTS", "PROXY"],
        &rows,
    );
    let errors = snapshot
        .problems
        .iter()
        .filter(|p| p.severity == Severity::Error)
        .count();
    let warnings = snapshot.problems.len() - errors;
    let _ = writeln!(out, "\nProblems ({errors} errors, {warnings} warnings):");
    for p in &snapshot.problems {
        let sev = match p.severity {
            Severity::Error => "error",
            Severity::Warning => "warning",
        };
        let _ = writeln!(out, "  {sev}[{}]: {p}", p.kind);
    }
    out
}

/// The migration report: per Ingress, each annotation under the prefix and what became
/// of it (applied, invalid, ignored with the nearest equivalent, refused).
pub fn annotation_report(annotations: &[(ObjectRef, Vec<Verdict>)]) -> String {
    let mut out = String::new();
    let count = |s: Status| {
        annotations
            .iter()
            .flat_map(|(_, v)| v)
            .filter(|v| v.status == s)
            .count()
    };
    let _ = writeln!(
        out,
        "\nAnnotations ({} applied, {} invalid, {} ignored, {} refused):",
        count(Status::Applied),
        count(Status::Invalid),
        count(Status::Ignored),
        count(Status::Refused),
    );
    let rows: Vec<Vec<String>> = annotations
        .iter()
        .flat_map(|(object, verdicts)| {
            let ingress = format!(
                "{}/{}",
                object.namespace.as_deref().unwrap_or(""),
                object.name
            );
            verdicts.iter().map(move |v| {
                vec![
                    ingress.clone(),
                    v.name.clone(),
                    v.status.to_string(),
                    v.note.clone(),
                ]
            })
        })
        .collect();
    table(
        &mut out,
        &["INGRESS", "ANNOTATION", "STATUS", "NOTE"],
        &rows,
    );
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::{
        Options, Store,
        fixtures::{Cond, IngressBuilder, service, slice},
    };

    #[test]
    fn report_lists_routes_default_backend_and_problems() {
        let mut s = Store::default();
        s.services
            .push(service("ns", "web", &[("http", 80, "8080")]));
        s.endpoint_slices.push(slice(
            "ns",
            "web",
            "w",
            &[("http", 8080)],
            &[("10.0.0.1", Cond::Ready)],
        ));
        s.ingresses.push(
            IngressBuilder::new("ns", "i")
                .host("a.com")
                .path("/", "Prefix", "web", "80")
                .build(),
        );
        s.ingresses.push(
            IngressBuilder::new("ns", "j")
                .host("b.com")
                .path("/x", "Exact", "gone", "80")
                .build(),
        );
        let snap = config::build(&s, &Options::default());
        let r = report(&snap);
        assert!(failed(&snap));
        let want = "HTTP routes (2):
  HOST   PATH  TYPE    BACKEND     ENDPOINTS      INGRESS
  a.com  /     Prefix  ns/web:80   10.0.0.1:8080  ns/i
  b.com  /x    Exact   ns/gone:80  (none)         ns/j
Default backend: built-in 404

TLS certificates (0):
  HOST  SECRET  CHAIN

L4 services (0):
  PROTO  PORT  SERVICE  ENDPOINTS  PROXY

Problems (1 errors, 0 warnings):
  error[unknown_service]: Ingress ns/j spec.rules[0].http.paths[0].backend.service.name: Service ns/gone not found; requests get 503
";
        assert_eq!(r, want);
    }

    /// ssl-passthrough hosts and TLSRoutes are listed with where their connections go.
    #[test]
    fn report_lists_passthrough_hosts_and_tls_routes() {
        let yaml = "
apiVersion: gateway.networking.k8s.io/v1
kind: GatewayClass
metadata: {name: xdp}
spec: {controllerName: xdp-ingress.dev/controller}
---
apiVersion: gateway.networking.k8s.io/v1
kind: Gateway
metadata: {name: gw, namespace: ns}
spec:
  gatewayClassName: xdp
  listeners:
  - {name: tls, port: 8443, protocol: TLS, hostname: '*.db.test', tls: {mode: Passthrough}}
---
apiVersion: gateway.networking.k8s.io/v1alpha2
kind: TLSRoute
metadata: {name: db, namespace: ns}
spec:
  parentRefs: [{name: gw}]
  hostnames: [a.db.test]
  rules:
  - backendRefs: [{name: web, port: 80, weight: 2}]
";
        let mut loader = crate::source::files::Loader::default();
        loader.add_file(std::path::Path::new("t.yaml"), yaml);
        let mut s = loader.store;
        s.services
            .push(service("ns", "web", &[("http", 80, "8080")]));
        s.ingresses.push(
            IngressBuilder::new("ns", "i")
                .host("pass.com")
                .path("/", "Prefix", "web", "80")
                .annotation("nginx.ingress.kubernetes.io/ssl-passthrough", "true")
                .build(),
        );
        let r = report(&config::build(&s, &Options::default()));
        assert!(
            r.contains("TLS passthrough (ssl-passthrough): pass.com -> ns/web:80 (Ingress ns/i)\n"),
            "{r}"
        );
        assert!(
            r.contains("  *:8443 (TLS passthrough)  a.db.test  SNI    ns/web:80*2  ns/db\n"),
            "{r}"
        );
    }
}
