//! The `--manifests DIR` source: Kubernetes manifests in a directory, so xdp-ingress runs
//! with no cluster.
//!
//! - Reads `*.yaml`, `*.yml` and `*.json` directly in `DIR` (not recursive), in name order;
//!   multi-document YAML and `kind: List` are accepted.
//! - Kinds we read: Ingress (v1, and the legacy `extensions/v1beta1` /
//!   `networking.k8s.io/v1beta1` converted with a Warning), IngressClass, Service,
//!   EndpointSlice, core v1 Endpoints (converted to EndpointSlices, since there is no
//!   EndpointSlice controller here), Secret, ConfigMap, Namespace (its labels select
//!   Gateway API routes), and the Gateway API's GatewayClass, Gateway, HTTPRoute and
//!   ReferenceGrant (`gateway.networking.k8s.io` v1, or v1beta1 of the same shape), TLSRoute
//!   (v1, v1alpha3 or v1alpha2), TCPRoute and UDPRoute (v1, or v1alpha2). Other
//!   kinds (Deployment, ...) are ignored silently.
//! - A document that does not parse, or is not a Kubernetes object, is a Problem naming the
//!   file and line; every other document still applies.
//! - Change detection: an inotify event on the directory (or a 1 s poll behind it, or a
//!   25 ms poll where inotify is unavailable; see [`DirWatch`]) makes the
//!   poller compare each file's name, size, mtime and inode (a `readdir` and a `stat` per
//!   file). It follows the `..data` symlink swaps of mounted ConfigMaps, which are renames
//!   inside the directory, and keeps change → Snapshot well under the 100 ms budget (see
//!   `examples/change_latency.rs`).

use std::{
    collections::{HashMap, HashSet},
    fs, io,
    path::{Path, PathBuf},
};

use k8s_openapi::{
    api::{
        core::v1::{ConfigMap, Endpoints, Namespace, Secret, Service},
        discovery::v1::EndpointSlice,
        networking::v1::{Ingress, IngressClass},
    },
    apimachinery::pkg::apis::meta::v1::ObjectMeta,
};
use serde::de::DeserializeOwned;
use serde_json::Value;
use tracing::{debug, info, warn};

use super::{Update, UpdateTx, dir_watch::DirWatch, manifest_dir::ManifestDir};
use crate::config::{
    ObjectRef, Problem, Store,
    gateway::{Gateway, GatewayClass, HTTPRoute, ReferenceGrant, TCPRoute, TLSRoute, UDPRoute},
    legacy::{self, LEGACY_INGRESS_VERSIONS},
    problem::Severity,
};

/// Kinds without a namespace.
const CLUSTER_SCOPED: [&str; 3] = ["IngressClass", "Namespace", "GatewayClass"];

/// Whether `api_version` is a Gateway API version we read `kind` in.
fn gateway_version(api_version: &str, kind: &str) -> bool {
    let kinds = ["GatewayClass", "Gateway", "HTTPRoute", "ReferenceGrant"];
    // TCPRoute and UDPRoute: v1alpha2 until Gateway API v1.6, v1 since (the same shape).
    let l4 = ["TCPRoute", "UDPRoute"];
    // TLSRoute: v1 since Gateway API v1.5, and the experimental versions of the same shape.
    let tls = kind == "TLSRoute";
    match api_version {
        "gateway.networking.k8s.io/v1" => kinds.contains(&kind) || l4.contains(&kind) || tls,
        "gateway.networking.k8s.io/v1beta1" => kinds.contains(&kind),
        "gateway.networking.k8s.io/v1alpha3" => tls,
        "gateway.networking.k8s.io/v1alpha2" => l4.contains(&kind) || tls,
        _ => false,
    }
}

/// Why the directory could not be read at all (single files never fail the load).
#[derive(Debug, thiserror::Error)]
#[error("reading manifest directory {}: {source}", dir.display())]
pub struct LoadError {
    /// The directory.
    pub dir: PathBuf,
    /// The IO error.
    #[source]
    pub source: io::Error,
}

/// The manifest files of `dir`, sorted by name.
pub fn manifest_files(dir: &Path) -> Result<Vec<PathBuf>, LoadError> {
    let err = |source| LoadError {
        dir: dir.to_owned(),
        source,
    };
    let mut files = Vec::new();
    for entry in fs::read_dir(dir).map_err(err)? {
        let path = entry.map_err(err)?.path();
        let is_manifest = path
            .extension()
            .and_then(|e| e.to_str())
            .is_some_and(|e| matches!(e, "yaml" | "yml" | "json"));
        let hidden = path
            .file_name()
            .and_then(|n| n.to_str())
            .is_some_and(|n| n.starts_with('.'));
        // `is_file` follows symlinks (mounted ConfigMaps are symlinks into `..data/`).
        if is_manifest && !hidden && path.is_file() {
            files.push(path);
        }
    }
    files.sort();
    Ok(files)
}

/// Reads every manifest of `dir` into a Store. Bad documents become Problems.
pub fn load(dir: &Path) -> Result<Store, LoadError> {
    let mut loader = Loader::default();
    for path in manifest_files(dir)? {
        match fs::read_to_string(&path) {
            Ok(text) => loader.add_file(&path, &text),
            Err(e) => loader.problem(
                &path,
                None,
                "unreadable_file",
                format!("cannot read: {e}"),
                Severity::Error,
            ),
        }
    }
    Ok(loader.store)
}

/// Parses manifest texts into a Store; public so `check` and tests can feed text directly.
#[derive(Default)]
pub struct Loader {
    /// What was read so far.
    pub store: Store,
    seen: HashSet<(&'static str, String, String)>,
    /// The line of each object's definition, by (kind as written, namespace, name).
    pub lines: HashMap<(&'static str, String, String), usize>,
}

impl Loader {
    fn problem(
        &mut self,
        path: &Path,
        line: Option<usize>,
        kind: &'static str,
        message: String,
        severity: Severity,
    ) {
        self.store
            .problems
            .push(file_problem(path, line, kind, message, severity));
    }

    /// Adds one file's documents (`path` is only used in Problems and to pick JSON/YAML).
    pub fn add_file(&mut self, path: &Path, text: &str) {
        if path.extension().is_some_and(|e| e == "json") {
            match serde_json::from_str::<Value>(text) {
                Ok(doc) => self.add_doc(path, 1, doc),
                Err(e) => {
                    let message = format!("not valid JSON: {e}");
                    self.problem(
                        path,
                        Some(e.line()),
                        "invalid_manifest",
                        message,
                        Severity::Error,
                    );
                }
            }
            return;
        }
        for (start, doc) in split_documents(text) {
            match serde_yaml::from_str::<Value>(doc) {
                Ok(Value::Null) => {}
                Ok(doc) => self.add_doc(path, start, doc),
                Err(e) => {
                    let line = e.location().map_or(start, |l| start + l.line() - 1);
                    let message = format!("not valid YAML: {}", strip_location(&e.to_string()));
                    self.problem(
                        path,
                        Some(line),
                        "invalid_manifest",
                        message,
                        Severity::Error,
                    );
                }
            }
        }
    }

    /// Dispatches one document (starting at `line`) by apiVersion and kind.
    fn add_doc(&mut self, path: &Path, line: usize, doc: Value) {
        let Value::Object(obj) = &doc else {
            let message =
                "not a Kubernetes object (expected a mapping with apiVersion and kind)".to_owned();
            self.problem(
                path,
                Some(line),
                "invalid_manifest",
                message,
                Severity::Error,
            );
            return;
        };
        let api_version = obj
            .get("apiVersion")
            .and_then(Value::as_str)
            .unwrap_or("")
            .to_owned();
        let kind = obj
            .get("kind")
            .and_then(Value::as_str)
            .unwrap_or("")
            .to_owned();
        if api_version.is_empty() || kind.is_empty() {
            let message = "not a Kubernetes object: apiVersion and kind are required".to_owned();
            self.problem(
                path,
                Some(line),
                "invalid_manifest",
                message,
                Severity::Error,
            );
            return;
        }
        match (api_version.as_str(), kind.as_str()) {
            ("v1", "List") => {
                if let Value::Object(mut obj) = doc
                    && let Some(Value::Array(items)) = obj.remove("items")
                {
                    for item in items {
                        self.add_doc(path, line, item);
                    }
                }
            }
            ("networking.k8s.io/v1", "Ingress") => {
                if let Some(i) =
                    self.typed::<Ingress>(path, line, "Ingress", doc, |i| &mut i.metadata)
                {
                    self.store.ingresses.push(i);
                }
            }
            (v, "Ingress") if LEGACY_INGRESS_VERSIONS.contains(&v) => {
                self.add_legacy_ingress(path, line, v, doc);
            }
            ("networking.k8s.io/v1", "IngressClass") => {
                if let Some(c) =
                    self.typed::<IngressClass>(path, line, "IngressClass", doc, |c| &mut c.metadata)
                {
                    self.store.ingress_classes.push(c);
                }
            }
            ("v1", "Service") => {
                if let Some(s) =
                    self.typed::<Service>(path, line, "Service", doc, |s| &mut s.metadata)
                {
                    self.store.services.push(s);
                }
            }
            ("discovery.k8s.io/v1", "EndpointSlice") => {
                if let Some(s) =
                    self.typed::<EndpointSlice>(path, line, "EndpointSlice", doc, |s| {
                        &mut s.metadata
                    })
                {
                    self.store.endpoint_slices.push(s);
                }
            }
            ("v1", "Endpoints") => {
                if let Some(e) =
                    self.typed::<Endpoints>(path, line, "Endpoints", doc, |e| &mut e.metadata)
                {
                    self.store
                        .endpoint_slices
                        .extend(legacy::endpoint_slices_from_endpoints(&e));
                }
            }
            ("v1", "Secret") => {
                if let Some(s) =
                    self.typed::<Secret>(path, line, "Secret", doc, |s| &mut s.metadata)
                {
                    self.store.secrets.push(s);
                }
            }
            ("v1", "ConfigMap") => {
                if let Some(c) =
                    self.typed::<ConfigMap>(path, line, "ConfigMap", doc, |c| &mut c.metadata)
                {
                    self.store.config_maps.push(c);
                }
            }
            ("v1", "Namespace") => {
                if let Some(n) =
                    self.typed::<Namespace>(path, line, "Namespace", doc, |n| &mut n.metadata)
                {
                    self.store.namespaces.push(n);
                }
            }
            (v, k) if gateway_version(v, k) => self.add_gateway_api(path, line, k, doc),
            _ => {
                debug!(file = %path.display(), line, %api_version, %kind, "ignoring a kind xdp-ingress does not use");
            }
        }
    }

    /// A Gateway API object (v1, or v1beta1 of the same shape).
    fn add_gateway_api(&mut self, path: &Path, line: usize, kind: &str, doc: Value) {
        match kind {
            "GatewayClass" => {
                if let Some(o) =
                    self.typed::<GatewayClass>(path, line, "GatewayClass", doc, |o| &mut o.metadata)
                {
                    self.store.gateway_classes.push(o);
                }
            }
            "Gateway" => {
                if let Some(o) =
                    self.typed::<Gateway>(path, line, "Gateway", doc, |o| &mut o.metadata)
                {
                    self.store.gateways.push(o);
                }
            }
            "HTTPRoute" => {
                if let Some(o) =
                    self.typed::<HTTPRoute>(path, line, "HTTPRoute", doc, |o| &mut o.metadata)
                {
                    self.store.http_routes.push(o);
                }
            }
            "TCPRoute" => {
                if let Some(o) =
                    self.typed::<TCPRoute>(path, line, "TCPRoute", doc, |o| &mut o.metadata)
                {
                    self.store.tcp_routes.push(o);
                }
            }
            "UDPRoute" => {
                if let Some(o) =
                    self.typed::<UDPRoute>(path, line, "UDPRoute", doc, |o| &mut o.metadata)
                {
                    self.store.udp_routes.push(o);
                }
            }
            "TLSRoute" => {
                if let Some(o) =
                    self.typed::<TLSRoute>(path, line, "TLSRoute", doc, |o| &mut o.metadata)
                {
                    self.store.tls_routes.push(o);
                }
            }
            "ReferenceGrant" => {
                if let Some(o) =
                    self.typed::<ReferenceGrant>(path, line, "ReferenceGrant", doc, |o| {
                        &mut o.metadata
                    })
                {
                    self.store.reference_grants.push(o);
                }
            }
            _ => {}
        }
    }

    fn add_legacy_ingress(&mut self, path: &Path, line: usize, version: &str, doc: Value) {
        match legacy::ingress_from_v1beta1(doc) {
            Ok(mut ing) => {
                if !self.check_meta(path, line, "Ingress", &mut ing.metadata) {
                    return;
                }
                self.store.problems.push(Problem {
                    object: ObjectRef {
                        kind: "Ingress".to_owned(),
                        namespace: ing.metadata.namespace.clone(),
                        name: ing.metadata.name.clone().unwrap_or_default(),
                    },
                    field: Some("apiVersion".to_owned()),
                    kind: "legacy_api_version",
                    message: format!(
                        "converted from {version} (in {}:{line}); write it as networking.k8s.io/v1",
                        path.display()
                    ),
                    severity: Severity::Warning,
                });
                self.store.ingresses.push(ing);
            }
            Err(e) => {
                let message = format!("{version} Ingress cannot be converted: {e}");
                self.problem(
                    path,
                    Some(line),
                    "invalid_manifest",
                    message,
                    Severity::Error,
                );
            }
        }
    }

    /// Deserializes a known kind, defaults its namespace and rejects duplicates.
    fn typed<T: DeserializeOwned>(
        &mut self,
        path: &Path,
        line: usize,
        kind: &'static str,
        doc: Value,
        meta: impl Fn(&mut T) -> &mut ObjectMeta,
    ) -> Option<T> {
        let name = doc
            .pointer("/metadata/name")
            .and_then(Value::as_str)
            .unwrap_or("?")
            .to_owned();
        match serde_json::from_value::<T>(doc) {
            Ok(mut obj) => self
                .check_meta(path, line, kind, meta(&mut obj))
                .then_some(obj),
            Err(e) => {
                let message = format!("{kind} {name}: {e}");
                self.problem(
                    path,
                    Some(line),
                    "invalid_manifest",
                    message,
                    Severity::Error,
                );
                None
            }
        }
    }

    /// Name required; namespace defaults to `default` (IngressClass is cluster-scoped);
    /// the first definition of an object wins.
    fn check_meta(
        &mut self,
        path: &Path,
        line: usize,
        kind: &'static str,
        meta: &mut ObjectMeta,
    ) -> bool {
        let Some(name) = meta.name.clone().filter(|n| !n.is_empty()) else {
            self.problem(
                path,
                Some(line),
                "invalid_manifest",
                format!("{kind} without metadata.name"),
                Severity::Error,
            );
            return false;
        };
        let ns = if CLUSTER_SCOPED.contains(&kind) {
            meta.namespace = None;
            String::new()
        } else {
            meta.namespace
                .get_or_insert_with(|| "default".to_owned())
                .clone()
        };
        if self.seen.insert((kind, ns.clone(), name.clone())) {
            self.lines.insert((kind, ns, name), line);
            return true;
        }
        self.store
            .problems
            .push(duplicate(path, Some(line), kind, &ns, &name));
        false
    }
}

/// The Warning on a second definition of an object.
pub fn duplicate(path: &Path, line: Option<usize>, kind: &str, ns: &str, name: &str) -> Problem {
    let who = if ns.is_empty() {
        name.to_owned()
    } else {
        format!("{ns}/{name}")
    };
    file_problem(
        path,
        line,
        "duplicate_object",
        format!(
            "{kind} {who} is defined more than once; the first definition (in file name order) is used"
        ),
        Severity::Warning,
    )
}

/// A Problem about a file (or a line of it).
pub fn file_problem(
    path: &Path,
    line: Option<usize>,
    kind: &'static str,
    message: String,
    severity: Severity,
) -> Problem {
    Problem {
        object: ObjectRef {
            kind: "File".to_owned(),
            namespace: None,
            name: path.display().to_string(),
        },
        field: line.map(|l| format!("line {l}")),
        kind,
        message,
        severity,
    }
}

/// Splits multi-document YAML on `---` lines, returning each document with its first line
/// (1-based) so parse errors point into the file, not into the document.
pub fn split_documents(text: &str) -> Vec<(usize, &str)> {
    let mut docs = Vec::new();
    let mut start_byte = 0;
    let mut start_line = 1;
    let mut offset = 0;
    for (i, line) in text.split_inclusive('\n').enumerate() {
        let bare = line.trim_end_matches(['\n', '\r']);
        let is_marker =
            bare.starts_with("---") && bare[3..].chars().next().is_none_or(char::is_whitespace);
        let is_end = bare == "...";
        if is_marker || is_end {
            docs.push((start_line, &text[start_byte..offset]));
            if is_marker {
                // Content after `--- ` on the same line belongs to the next document.
                start_byte = offset + 3;
                start_line = i + 1;
            } else {
                start_byte = offset + line.len();
                start_line = i + 2;
            }
        }
        offset += line.len();
    }
    docs.push((start_line, &text[start_byte..]));
    docs.retain(|(_, d)| !d.trim().is_empty());
    docs
}

/// serde_yaml appends " at line L column C"; the Problem carries the file line instead.
fn strip_location(msg: &str) -> &str {
    msg.find(" at line ").map_or(msg, |i| &msg[..i])
}

/// Reads `dir`, sends its objects and [`Update::Synced`], then sends the Changes of every
/// later edit until `tx` is closed. Only files whose size, mtime or inode changed are read
/// again ([`ManifestDir`]). An unreadable directory keeps the last configuration (and is
/// logged once); nothing is synced until it has been read once.
pub async fn run(dir: PathBuf, tx: UpdateTx) {
    let mut state = Some(ManifestDir::new(dir.clone()));
    let mut synced = false;
    let mut failing = false;
    let mut watch = DirWatch::new(&dir);
    loop {
        watch.changed().await;
        if tx.is_closed() {
            return;
        }
        let Some(mut st) = state.take() else { return };
        let Ok((st, scanned)) = tokio::task::spawn_blocking(move || {
            let r = st.rescan();
            (st, r)
        })
        .await
        else {
            return;
        };
        state = Some(st);
        let r = match scanned {
            Ok(r) => r,
            Err(e) => {
                if !failing {
                    warn!(dir = %dir.display(), error = %e.source, "cannot read the manifest directory; keeping the last configuration");
                    failing = true;
                }
                continue;
            }
        };
        failing = false;
        if r.read + r.removed > 0 {
            info!(
                dir = %dir.display(),
                files = r.files,
                read = r.read,
                removed = r.removed,
                changes = r.changes.len(),
                "manifests changed"
            );
        }
        if !r.changes.is_empty() && tx.send(Update::Changes(r.changes)).is_err() {
            return;
        }
        if !synced {
            synced = true;
            if tx.send(Update::Synced).is_err() {
                return;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;
    use crate::source::test_dir::TempDir;

    const SEED_INGRESS: &str = "apiVersion: extensions/v1beta1
kind: Ingress
metadata: {name: dashboard-ingress, namespace: kube-system, annotations: {kubernetes.io/ingress.class: nginx}}
spec:
  rules:
  - host: k8sui.test.com
    http:
      paths:
      - path: /
        backend: {serviceName: kubernetes-dashboard, servicePort: 80}
";

    fn problems(store: &Store) -> Vec<(String, Option<String>, &'static str, String)> {
        store
            .problems
            .iter()
            .map(|p| {
                (
                    p.object.name.rsplit('/').next().unwrap().to_owned(),
                    p.field.clone(),
                    p.kind,
                    p.message.clone(),
                )
            })
            .collect()
    }

    #[test]
    fn split_documents_reports_each_documents_first_line() {
        let text = "a: 1\n---\nb: 2\nc: 3\n--- {d: 4}\n...\n\n---\n---\ne: 5\n";
        let docs = split_documents(text);
        assert_eq!(
            docs,
            [
                (1, "a: 1\n"),
                (2, "\nb: 2\nc: 3\n"),
                (5, " {d: 4}\n"),
                (9, "\ne: 5\n")
            ]
        );
    }

    #[test]
    fn yaml_error_points_at_the_file_line() {
        let mut l = Loader::default();
        let text = "apiVersion: v1\nkind: Namespace\nmetadata: {name: x}\n---\napiVersion: v1\nkind: Service\nmetadata: {name: x\n";
        l.add_file(Path::new("d/bad.yaml"), text);
        let p = &l.store.problems;
        assert_eq!(p.len(), 1, "{p:?}");
        assert_eq!(p[0].object.name, "d/bad.yaml");
        assert_eq!(p[0].kind, "invalid_manifest");
        // The unterminated flow mapping is detected at the end of document 2 (file line 8).
        assert_eq!(p[0].field.as_deref(), Some("line 8"));
        assert!(
            p[0].message.starts_with("not valid YAML: "),
            "{}",
            p[0].message
        );
    }

    #[test]
    #[expect(clippy::type_complexity, reason = "a test table")]
    fn documents_table() {
        // (rule, file name, text, expected (ingresses, services, slices, configmaps, classes, secrets), expected problem kinds with line)
        #[rustfmt::skip]
        let rows: &[(&str, &str, &str, [usize; 6], &[(&str, Option<&str>)])] = &[
            ("v1 Ingress", "a.yaml",
             "apiVersion: networking.k8s.io/v1\nkind: Ingress\nmetadata: {name: i}\nspec: {}\n", [1, 0, 0, 0, 0, 0], &[]),
            ("seed's legacy Ingress is converted with a warning", "a.yaml", SEED_INGRESS, [1, 0, 0, 0, 0, 0],
             &[("legacy_api_version", Some("apiVersion"))]),
            ("multi-document YAML", "a.yml",
             "apiVersion: v1\nkind: Service\nmetadata: {name: s}\n---\napiVersion: v1\nkind: ConfigMap\nmetadata: {name: c}\n", [0, 1, 0, 1, 0, 0], &[]),
            ("kind: List", "a.yaml",
             "apiVersion: v1\nkind: List\nitems:\n- {apiVersion: v1, kind: Service, metadata: {name: a}}\n- {apiVersion: v1, kind: Service, metadata: {name: b}}\n", [0, 2, 0, 0, 0, 0], &[]),
            ("JSON", "a.json",
             r#"{"apiVersion": "networking.k8s.io/v1", "kind": "IngressClass", "metadata": {"name": "xdp"}, "spec": {"controller": "xdp-ingress.dev/controller"}}"#, [0, 0, 0, 0, 1, 0], &[]),
            ("EndpointSlice and Endpoints", "a.yaml",
             "apiVersion: discovery.k8s.io/v1\nkind: EndpointSlice\nmetadata: {name: e, labels: {kubernetes.io/service-name: s}}\naddressType: IPv4\nendpoints: []\n---\napiVersion: v1\nkind: Endpoints\nmetadata: {name: s2}\nsubsets: [{addresses: [{ip: 10.0.0.1}], ports: [{port: 80}]}]\n", [0, 0, 2, 0, 0, 0], &[]),
            ("Secret with stringData", "a.yaml",
             "apiVersion: v1\nkind: Secret\ntype: kubernetes.io/tls\nmetadata: {name: t}\nstringData: {tls.crt: x, tls.key: y}\n", [0, 0, 0, 0, 0, 1], &[]),
            ("kinds we do not use are ignored silently", "a.yaml",
             "apiVersion: v1\nkind: Namespace\nmetadata: {name: n}\n---\napiVersion: apps/v1\nkind: Deployment\nmetadata: {name: d}\nspec: {}\n", [0, 0, 0, 0, 0, 0], &[]),
            ("empty documents are skipped", "a.yaml", "---\n# nothing\n---\n", [0, 0, 0, 0, 0, 0], &[]),
            ("not an object", "a.yaml", "apiVersion: v1\nkind: Service\nmetadata: {name: s}\n---\n- just\n- a list\n", [0, 1, 0, 0, 0, 0],
             &[("invalid_manifest", Some("line 4"))]),
            ("no kind", "a.yaml", "\n\napiVersion: v1\nmetadata: {name: s}\n", [0, 0, 0, 0, 0, 0], &[("invalid_manifest", Some("line 1"))]),
            ("wrong field type names the object", "a.yaml",
             "apiVersion: v1\nkind: Service\nmetadata: {name: s}\n---\napiVersion: v1\nkind: Service\nmetadata: {name: bad}\nspec: {ports: [{port: eighty}]}\n", [0, 1, 0, 0, 0, 0],
             &[("invalid_manifest", Some("line 4"))]),
            ("no name", "a.yaml", "apiVersion: v1\nkind: Service\nmetadata: {}\n", [0, 0, 0, 0, 0, 0], &[("invalid_manifest", Some("line 1"))]),
            ("duplicate object: first wins", "a.yaml",
             "apiVersion: v1\nkind: Service\nmetadata: {name: s}\n---\napiVersion: v1\nkind: Service\nmetadata: {name: s, namespace: default}\n", [0, 1, 0, 0, 0, 0],
             &[("duplicate_object", Some("line 4"))]),
            ("bad JSON", "a.json", "{\n \"kind\": \n}", [0, 0, 0, 0, 0, 0], &[("invalid_manifest", Some("line 3"))]),
        ];
        for (rule, file, text, counts, want) in rows {
            let mut l = Loader::default();
            l.add_file(Path::new(file), text);
            let s = &l.store;
            let got = [
                s.ingresses.len(),
                s.services.len(),
                s.endpoint_slices.len(),
                s.config_maps.len(),
                s.ingress_classes.len(),
                s.secrets.len(),
            ];
            assert_eq!(got, *counts, "{rule}");
            let kinds: Vec<_> = s
                .problems
                .iter()
                .map(|p| (p.kind, p.field.as_deref()))
                .collect();
            assert_eq!(kinds, *want, "{rule}: {:?}", s.problems);
        }
    }

    #[test]
    fn defaults_namespace_and_reports_field_errors_with_the_object_name() {
        let mut l = Loader::default();
        l.add_file(
            Path::new("x.yaml"),
            "apiVersion: v1\nkind: Service\nmetadata: {name: bad}\nspec: {ports: [{port: eighty}]}\n---\napiVersion: v1\nkind: Service\nmetadata: {name: ok}\n",
        );
        assert_eq!(
            l.store.services[0].metadata.namespace.as_deref(),
            Some("default")
        );
        let p = problems(&l.store);
        assert_eq!(p.len(), 1);
        assert!(
            p[0].3
                .starts_with("Service bad: invalid type: string \"eighty\""),
            "{}",
            p[0].3
        );
    }

    #[test]
    fn seed_legacy_ingress_warning_message() {
        let mut l = Loader::default();
        l.add_file(Path::new("m/dashboard.yaml"), SEED_INGRESS);
        let p = &l.store.problems[0];
        assert_eq!(
            p.object.to_string(),
            "Ingress kube-system/dashboard-ingress"
        );
        assert_eq!(p.severity, Severity::Warning);
        assert_eq!(
            p.message,
            "converted from extensions/v1beta1 (in m/dashboard.yaml:1); write it as networking.k8s.io/v1"
        );
    }

    #[test]
    fn load_reads_only_manifests_non_recursively_in_name_order() {
        let dir = TempDir::new();
        let svc = |n: &str| format!("apiVersion: v1\nkind: Service\nmetadata: {{name: {n}}}\n");
        dir.write("b.yaml", &svc("b"));
        dir.write("a.yml", &svc("a"));
        dir.write(
            "c.json",
            r#"{"apiVersion":"v1","kind":"Service","metadata":{"name":"c"}}"#,
        );
        dir.write("notes.txt", &svc("txt"));
        fs::create_dir(dir.0.join("sub")).unwrap();
        fs::write(dir.0.join("sub/d.yaml"), svc("d")).unwrap();
        let store = load(&dir.0).unwrap();
        let names: Vec<_> = store
            .services
            .iter()
            .map(|s| s.metadata.name.clone().unwrap())
            .collect();
        assert_eq!(names, ["a", "b", "c"]);
    }

    #[test]
    fn missing_directory_is_an_error_naming_it() {
        let err = load(Path::new("/nonexistent/xdp-ingress-manifests")).unwrap_err();
        assert!(
            err.to_string()
                .starts_with("reading manifest directory /nonexistent/xdp-ingress-manifests: "),
            "{err}"
        );
    }

    /// Follows the source until what it sent satisfies `pred`.
    async fn next_store(
        rx: &mut crate::source::UpdateRx,
        f: &mut crate::source::Follower,
        pred: impl Fn(&Store) -> bool,
    ) -> Store {
        tokio::time::timeout(Duration::from_secs(10), async {
            loop {
                assert!(f.next(rx).await, "the source ended");
                let s = f.objects.to_store();
                if f.synced && pred(&s) {
                    return s;
                }
            }
        })
        .await
        .expect("no matching Store published within 10 s")
    }

    #[tokio::test]
    async fn watch_follows_add_edit_remove_and_a_broken_file_keeps_the_others() {
        let dir = TempDir::new();
        let svc = |n: &str, port: u16| {
            format!(
                "apiVersion: v1\nkind: Service\nmetadata: {{name: {n}}}\nspec: {{ports: [{{port: {port}}}]}}\n"
            )
        };
        dir.write("a.yaml", &svc("a", 80));
        let (tx, mut rx) = crate::source::channel();
        let mut f = crate::source::Follower::default();
        let task = tokio::spawn(run(dir.0.clone(), tx));
        let names = |s: &Store| {
            s.services
                .iter()
                .map(|s| s.metadata.name.clone().unwrap())
                .collect::<Vec<_>>()
        };
        let port = |s: &Store, n: &str| {
            s.services
                .iter()
                .find(|s| s.metadata.name.as_deref() == Some(n))
                .map(|s| s.spec.as_ref().unwrap().ports.as_ref().unwrap()[0].port)
        };

        let s = next_store(&mut rx, &mut f, |_| true).await;
        assert_eq!(names(&s), ["a"]);

        dir.write("b.yaml", &svc("b", 81));
        let s = next_store(&mut rx, &mut f, |s| s.services.len() == 2).await;
        assert_eq!(names(&s), ["a", "b"]);

        dir.write("b.yaml", &svc("b", 8081));
        let s = next_store(&mut rx, &mut f, |s| port(s, "b") == Some(8081)).await;
        assert_eq!(names(&s), ["a", "b"]);

        dir.write(
            "c.yaml",
            "apiVersion: v1\nkind: Service\nmetadata: {name: c\n",
        );
        let s = next_store(&mut rx, &mut f, |s| !s.problems.is_empty()).await;
        assert_eq!(
            names(&s),
            ["a", "b"],
            "the broken file does not take the others down"
        );
        assert_eq!(s.problems.len(), 1);
        assert!(s.problems[0].object.name.ends_with("c.yaml"));

        fs::remove_file(dir.0.join("b.yaml")).unwrap();
        fs::remove_file(dir.0.join("c.yaml")).unwrap();
        let s = next_store(&mut rx, &mut f, |s| s.services.len() == 1).await;
        assert_eq!(names(&s), ["a"]);
        assert!(s.problems.is_empty());

        drop(rx);
        tokio::time::timeout(Duration::from_secs(5), task)
            .await
            .unwrap()
            .unwrap();
    }

    /// A mounted ConfigMap: files are symlinks through `..data`, and an update renames a
    /// new `..data` symlink into place (kubelet's atomic writer). The watch follows it.
    #[tokio::test]
    async fn watch_follows_a_configmap_style_symlink_swap() {
        use std::os::unix::fs::symlink;
        let dir = TempDir::new();
        let svc = |port: u16| {
            format!(
                "apiVersion: v1\nkind: Service\nmetadata: {{name: a}}\nspec: {{ports: [{{port: {port}}}]}}\n"
            )
        };
        let version = |name: &str, port: u16| {
            fs::create_dir(dir.0.join(name)).unwrap();
            fs::write(dir.0.join(name).join("a.yaml"), svc(port)).unwrap();
        };
        version("..2026_11_27_1", 80);
        symlink("..2026_11_27_1", dir.0.join("..data")).unwrap();
        symlink("..data/a.yaml", dir.0.join("a.yaml")).unwrap();
        let (tx, mut rx) = crate::source::channel();
        let mut f = crate::source::Follower::default();
        let task = tokio::spawn(run(dir.0.clone(), tx));
        let port = |s: &Store| {
            s.services
                .first()
                .map(|s| s.spec.as_ref().unwrap().ports.as_ref().unwrap()[0].port)
        };
        let s = next_store(&mut rx, &mut f, |_| true).await;
        assert_eq!(port(&s), Some(80));

        version("..2026_11_27_2", 8080);
        symlink("..2026_11_27_2", dir.0.join("..data_tmp")).unwrap();
        fs::rename(dir.0.join("..data_tmp"), dir.0.join("..data")).unwrap();
        let s = next_store(&mut rx, &mut f, |s| port(s) == Some(8080)).await;
        assert_eq!(s.services.len(), 1);

        drop(rx);
        tokio::time::timeout(Duration::from_secs(5), task)
            .await
            .unwrap()
            .unwrap();
    }
}
