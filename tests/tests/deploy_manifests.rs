//! `deploy/`: every manifest parses strictly into its k8s-openapi type, the kustomization is
//! complete, the RBAC rules grant exactly the API calls the controller makes (listed here and
//! derived from `ingress-user/src`), the DaemonSet only passes flags the binary knows, and the
//! capabilities it grants are enough, and each one needed, to attach the eBPF programs and
//! serve (the real binary, in a network namespace, with exactly that capability set).

use std::{
    collections::{BTreeMap, BTreeSet},
    io::{BufRead as _, BufReader, Read as _, Write as _},
    path::{Path, PathBuf},
    process::{Command, Stdio},
    sync::mpsc,
    time::{Duration, Instant},
};

use ingress_tests::{
    netns::{KillOnDrop, Netns, PinDir, veth},
    xdp_ingress_bin,
};
use k8s_openapi::{
    Resource,
    api::{
        apps::v1::{DaemonSet, Deployment},
        coordination::v1::Lease,
        core::v1::{
            ConfigMap, Container, Endpoints, Event as CoreEvent, Namespace, Node, Pod, Secret,
            Service, ServiceAccount,
        },
        discovery::v1::EndpointSlice,
        events::v1::Event,
        networking::v1::{Ingress, IngressClass},
        rbac::v1::{ClusterRole, ClusterRoleBinding, PolicyRule, Role, RoleBinding, Subject},
    },
};
use serde::{Serialize, de::DeserializeOwned};
use serde_json::Value;
use xdp_ingress::config::gateway::{
    Gateway, GatewayClass, HTTPRoute, ReferenceGrant, TCPRoute, UDPRoute,
};

// ---------------------------------------------------------------------------------------------
// The API calls the controller makes. Keep in step with ingress-user/src: the test
// `rbac_table_matches_the_calls_in_the_source` fails when a call appears there without a row
// here, or a row here has no call left.

/// Where a permission is needed.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
enum Scope {
    /// In every namespace (or for a cluster-scoped resource): a ClusterRole.
    Cluster,
    /// Only in the controller's own namespace (its ConfigMaps, its Lease): a Role there.
    Own,
}

/// One permission the controller needs: (API group, resource, verb, scope, why).
type Need = (
    &'static str,
    &'static str,
    &'static str,
    Scope,
    &'static str,
);

#[rustfmt::skip]
const NEEDED: &[Need] = &[
    ("networking.k8s.io", "ingresses", "list", Scope::Cluster, "kube source watcher"),
    ("networking.k8s.io", "ingresses", "watch", Scope::Cluster, "kube source watcher"),
    ("networking.k8s.io", "ingressclasses", "list", Scope::Cluster, "kube source watcher"),
    ("networking.k8s.io", "ingressclasses", "watch", Scope::Cluster, "kube source watcher"),
    ("", "services", "list", Scope::Cluster, "kube source watcher"),
    ("", "services", "watch", Scope::Cluster, "kube source watcher"),
    ("discovery.k8s.io", "endpointslices", "list", Scope::Cluster, "kube source watcher"),
    ("discovery.k8s.io", "endpointslices", "watch", Scope::Cluster, "kube source watcher"),
    ("", "secrets", "list", Scope::Cluster, "kube source watcher (TLS)"),
    ("", "secrets", "watch", Scope::Cluster, "kube source watcher (TLS)"),
    ("", "configmaps", "list", Scope::Own, "tcp/udp-services ConfigMaps"),
    ("", "configmaps", "watch", Scope::Own, "tcp/udp-services ConfigMaps"),
    ("networking.k8s.io", "ingresses/status", "patch", Scope::Cluster, "--update-status"),
    ("", "services", "get", Scope::Own, "--publish-service"),
    ("coordination.k8s.io", "leases", "get", Scope::Own, "leader election, member Lease"),
    ("coordination.k8s.io", "leases", "create", Scope::Own, "leader election, member Lease"),
    ("coordination.k8s.io", "leases", "update", Scope::Own, "leader election, member Lease"),
    ("coordination.k8s.io", "leases", "list", Scope::Own, "member Leases (status addresses)"),
    ("coordination.k8s.io", "leases", "delete", Scope::Own, "member Lease on shutdown"),
    ("gateway.networking.k8s.io", "gatewayclasses", "list", Scope::Cluster, "kube source watcher (Gateway API)"),
    ("gateway.networking.k8s.io", "gatewayclasses", "watch", Scope::Cluster, "kube source watcher (Gateway API)"),
    ("gateway.networking.k8s.io", "gateways", "list", Scope::Cluster, "kube source watcher (Gateway API)"),
    ("gateway.networking.k8s.io", "gateways", "watch", Scope::Cluster, "kube source watcher (Gateway API)"),
    ("gateway.networking.k8s.io", "httproutes", "list", Scope::Cluster, "kube source watcher (Gateway API)"),
    ("gateway.networking.k8s.io", "httproutes", "watch", Scope::Cluster, "kube source watcher (Gateway API)"),
    ("gateway.networking.k8s.io", "tlsroutes", "list", Scope::Cluster, "kube source watcher (Gateway API)"),
    ("gateway.networking.k8s.io", "tlsroutes", "watch", Scope::Cluster, "kube source watcher (Gateway API)"),
    ("gateway.networking.k8s.io", "referencegrants", "list", Scope::Cluster, "kube source watcher (Gateway API)"),
    ("gateway.networking.k8s.io", "referencegrants", "watch", Scope::Cluster, "kube source watcher (Gateway API)"),
    ("gateway.networking.k8s.io", "tcproutes", "list", Scope::Cluster, "kube source watcher (Gateway API)"),
    ("gateway.networking.k8s.io", "tcproutes", "watch", Scope::Cluster, "kube source watcher (Gateway API)"),
    ("gateway.networking.k8s.io", "udproutes", "list", Scope::Cluster, "kube source watcher (Gateway API)"),
    ("gateway.networking.k8s.io", "udproutes", "watch", Scope::Cluster, "kube source watcher (Gateway API)"),
    ("", "namespaces", "list", Scope::Cluster, "allowedRoutes namespace selectors"),
    ("", "namespaces", "watch", Scope::Cluster, "allowedRoutes namespace selectors"),
    ("gateway.networking.k8s.io", "gatewayclasses/status", "patch", Scope::Cluster, "--update-status (Gateway API)"),
    ("gateway.networking.k8s.io", "gateways/status", "patch", Scope::Cluster, "--update-status (Gateway API)"),
    ("gateway.networking.k8s.io", "httproutes/status", "patch", Scope::Cluster, "--update-status (Gateway API)"),
    ("gateway.networking.k8s.io", "tcproutes/status", "patch", Scope::Cluster, "--update-status (Gateway API)"),
    ("gateway.networking.k8s.io", "udproutes/status", "patch", Scope::Cluster, "--update-status (Gateway API)"),
    ("gateway.networking.k8s.io", "tlsroutes/status", "patch", Scope::Cluster, "--update-status (Gateway API)"),
    ("", "events", "create", Scope::Cluster, "Events for Problems"),
    ("", "events", "get", Scope::Cluster, "Events: aggregate a predecessor's Event"),
    ("", "events", "patch", Scope::Cluster, "Events: bump the count"),
];

// ---------------------------------------------------------------------------------------------
// Reading deploy/.

fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("tests/ has a parent")
        .to_path_buf()
}

fn deploy_dir() -> PathBuf {
    repo_root().join("deploy")
}

/// One YAML document of one file.
struct Doc {
    /// `path#index` for messages.
    at: String,
    value: Value,
}

fn yaml_files(dir: &Path, out: &mut Vec<PathBuf>) {
    let mut entries: Vec<_> = std::fs::read_dir(dir)
        .unwrap_or_else(|e| panic!("reading {}: {e}", dir.display()))
        .map(|e| e.expect("dir entry").path())
        .collect();
    entries.sort();
    for path in entries {
        if path.is_dir() {
            yaml_files(&path, out);
        } else if path.extension().is_some_and(|e| e == "yaml" || e == "yml") {
            out.push(path);
        }
    }
}

/// Every YAML document under `deploy/` (recursively, so `deploy/examples/` too), except the
/// kustomization, which is not a Kubernetes object, and `deploy/monitoring/`: its
/// PrometheusRule is a prometheus-operator object, checked by `promtool` and a real
/// Prometheus in `ops_monitoring.rs`.
fn deploy_docs() -> Vec<Doc> {
    let mut files = Vec::new();
    yaml_files(&deploy_dir(), &mut files);
    files.retain(|f| !f.starts_with(deploy_dir().join("monitoring")));
    let mut docs = Vec::new();
    for file in files {
        if file.file_name().is_some_and(|n| n == "kustomization.yaml") {
            continue;
        }
        let text = std::fs::read_to_string(&file).expect("read manifest");
        let rel = file
            .strip_prefix(repo_root())
            .unwrap_or(&file)
            .display()
            .to_string();
        docs.extend(parse_docs(&rel, &text));
    }
    docs
}

fn parse_docs(name: &str, text: &str) -> Vec<Doc> {
    let mut docs = Vec::new();
    for (i, de) in serde_yaml::Deserializer::from_str(text).enumerate() {
        let value: Value = serde::Deserialize::deserialize(de)
            .unwrap_or_else(|e| panic!("{name}#{i}: not valid YAML for JSON: {e}"));
        if !value.is_null() {
            docs.push(Doc {
                at: format!("{name}#{i}"),
                value,
            });
        }
    }
    docs
}

/// Parses `value` as `K`, then re-serialises it: every field the manifest sets must come back
/// with the same value, so a misspelt or misplaced field (which serde would silently drop)
/// fails. Returns the typed object or what differs.
fn strict<K: Resource + DeserializeOwned + Serialize>(value: &Value) -> Result<K, String> {
    let api_version = value["apiVersion"].as_str().unwrap_or_default();
    if api_version != K::API_VERSION {
        return Err(format!(
            "apiVersion {api_version:?}, expected {:?} for {}",
            K::API_VERSION,
            K::KIND
        ));
    }
    let typed: K = serde_json::from_value(value.clone()).map_err(|e| e.to_string())?;
    let back = serde_json::to_value(&typed).map_err(|e| e.to_string())?;
    let mut lost = Vec::new();
    lost_fields(value, &back, "", &mut lost);
    if lost.is_empty() {
        Ok(typed)
    } else {
        Err(format!("unknown or mistyped fields: {}", lost.join(", ")))
    }
}

/// Paths in `original` that `back` does not reproduce.
fn lost_fields(original: &Value, back: &Value, path: &str, lost: &mut Vec<String>) {
    match (original, back) {
        (Value::Null, _) => {}
        (Value::Object(o), Value::Object(b)) => {
            for (k, v) in o {
                let p = format!("{path}.{k}");
                match b.get(k) {
                    Some(bv) => lost_fields(v, bv, &p, lost),
                    None if v.is_null() => {}
                    None => lost.push(p),
                }
            }
        }
        (Value::Array(o), Value::Array(b)) if o.len() == b.len() => {
            for (i, (v, bv)) in o.iter().zip(b).enumerate() {
                lost_fields(v, bv, &format!("{path}[{i}]"), lost);
            }
        }
        (o, b) if o == b => {}
        _ => lost.push(format!("{path} (value {original} came back as {back})")),
    }
}

/// The kinds deploy/ may contain, parsed strictly. `Err` names what is wrong.
fn check_kind(value: &Value) -> Result<&'static str, String> {
    macro_rules! kinds {
        ($($k:ty),* $(,)?) => {
            match value["kind"].as_str().unwrap_or_default() {
                $(k if k == <$k>::KIND => strict::<$k>(value).map(|_| <$k>::KIND),)*
                other => Err(format!("kind {other:?} is not one deploy/ is checked for")),
            }
        };
    }
    kinds!(
        Namespace,
        ServiceAccount,
        ClusterRole,
        ClusterRoleBinding,
        Role,
        RoleBinding,
        IngressClass,
        ConfigMap,
        DaemonSet,
        Deployment,
        Service,
        Ingress,
        Secret,
        EndpointSlice,
        GatewayClass,
        Gateway,
        HTTPRoute,
        TCPRoute,
        UDPRoute,
        ReferenceGrant,
    )
}

fn docs_of<K: Resource + DeserializeOwned + Serialize>(docs: &[Doc]) -> Vec<(String, K)> {
    docs.iter()
        .filter(|d| d.value["kind"] == K::KIND)
        .map(|d| {
            let k = strict::<K>(&d.value).unwrap_or_else(|e| panic!("{}: {e}", d.at));
            (d.at.clone(), k)
        })
        .collect()
}

/// The documents that `kubectl apply -k deploy/` applies (not the examples).
fn kustomized_docs() -> Vec<Doc> {
    let out = Command::new("kubectl")
        .arg("kustomize")
        .arg(deploy_dir())
        .output()
        .expect("running kubectl kustomize");
    assert!(
        out.status.success(),
        "kubectl kustomize deploy/ failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    parse_docs(
        "kubectl kustomize deploy/",
        &String::from_utf8_lossy(&out.stdout),
    )
}

// ---------------------------------------------------------------------------------------------
// Manifests.

#[test]
fn every_manifest_parses_into_its_kind_without_unknown_fields() {
    let docs = deploy_docs();
    let mut failures = Vec::new();
    let mut kinds = BTreeMap::<&str, usize>::new();
    for doc in &docs {
        match check_kind(&doc.value) {
            Ok(kind) => *kinds.entry(kind).or_default() += 1,
            Err(e) => failures.push(format!("{}: {e}", doc.at)),
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
    for kind in [
        "Namespace",
        "ServiceAccount",
        "ClusterRole",
        "ClusterRoleBinding",
        "Role",
        "RoleBinding",
        "IngressClass",
        "ConfigMap",
        "DaemonSet",
    ] {
        assert!(
            kinds.contains_key(kind),
            "no {kind} under deploy/ ({kinds:?})"
        );
    }
}

#[test]
fn strict_parsing_rejects_misspelt_and_misplaced_fields() {
    let docs = deploy_docs();
    let ds = docs
        .iter()
        .find(|d| d.value["kind"] == "DaemonSet")
        .expect("a DaemonSet");
    assert_eq!(check_kind(&ds.value), Ok("DaemonSet"));
    type Mutation = (&'static str, fn(&mut Value));
    let cases: &[Mutation] = &[
        ("a misspelt field", |v| {
            let spec = v["spec"]["template"]["spec"].as_object_mut().unwrap();
            let host = spec.remove("hostNetwork").unwrap();
            spec.insert("hostNetwrok".into(), host);
        }),
        ("a field one level too high", |v| {
            v["spec"]["hostNetwork"] = Value::Bool(true);
        }),
        ("a string where a number belongs", |v| {
            v["spec"]["template"]["spec"]["terminationGracePeriodSeconds"] = "35".into();
        }),
        ("a wrong apiVersion", |v| {
            v["apiVersion"] = "extensions/v1beta1".into();
        }),
    ];
    for (what, mutate) in cases {
        let mut v = ds.value.clone();
        mutate(&mut v);
        assert!(check_kind(&v).is_err(), "{what} was accepted");
    }
}

#[test]
fn kustomization_lists_every_manifest_and_builds() {
    let dir = deploy_dir();
    let text = std::fs::read_to_string(dir.join("kustomization.yaml")).expect("kustomization");
    let k: Value = serde_yaml::from_str(&text).expect("kustomization.yaml is YAML");
    assert_eq!(k["kind"], "Kustomization");
    let listed: BTreeSet<String> = k["resources"]
        .as_array()
        .expect("resources: a list")
        .iter()
        .map(|r| r.as_str().expect("resource: a path").to_owned())
        .collect();
    for r in &listed {
        assert!(
            dir.join(r).is_file(),
            "kustomization lists {r}, which does not exist"
        );
    }
    let on_disk: BTreeSet<String> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|n| n.ends_with(".yaml") && n != "kustomization.yaml")
        .collect();
    assert_eq!(
        listed, on_disk,
        "deploy/*.yaml and the kustomization's resources differ"
    );

    let built = kustomized_docs();
    let mut kinds: Vec<String> = built
        .iter()
        .map(|d| {
            check_kind(&d.value).unwrap_or_else(|e| panic!("{}: {e}", d.at));
            let ns = d.value["metadata"]["namespace"].as_str().unwrap_or("-");
            format!(
                "{}/{}/{}",
                d.value["kind"].as_str().unwrap(),
                ns,
                d.value["metadata"]["name"].as_str().unwrap()
            )
        })
        .collect();
    kinds.sort();
    assert_eq!(
        kinds,
        [
            "ClusterRole/-/xdp-ingress",
            "ClusterRoleBinding/-/xdp-ingress",
            "ConfigMap/xdp-ingress/tcp-services",
            "ConfigMap/xdp-ingress/udp-services",
            "DaemonSet/xdp-ingress/xdp-ingress",
            "IngressClass/-/xdp",
            "Namespace/-/xdp-ingress",
            "Role/xdp-ingress/xdp-ingress",
            "RoleBinding/xdp-ingress/xdp-ingress",
            "ServiceAccount/xdp-ingress/xdp-ingress",
        ]
    );
}

#[test]
fn ingress_class_is_ours_and_not_the_default() {
    let classes = docs_of::<IngressClass>(&kustomized_docs());
    let [(_, class)] = classes.as_slice() else {
        panic!("expected one IngressClass, got {}", classes.len());
    };
    assert_eq!(class.metadata.name.as_deref(), Some("xdp"));
    let spec = class.spec.as_ref().expect("spec");
    assert_eq!(
        spec.controller.as_deref(),
        Some("xdp-ingress.dev/controller")
    );
    let default = class
        .metadata
        .annotations
        .as_ref()
        .and_then(|a| a.get("ingressclass.kubernetes.io/is-default-class"));
    assert_eq!(default.map(String::as_str), Some("false"));
}

// ---------------------------------------------------------------------------------------------
// RBAC.

/// What the bindings grant the DaemonSet's ServiceAccount: (group, resource, verb, scope).
fn granted(docs: &[Doc]) -> BTreeSet<(String, String, String, Scope)> {
    let (sa_ns, sa_name) = daemonset_service_account(docs);
    let binds_us = |subjects: &Option<Vec<Subject>>| {
        subjects.iter().flatten().any(|s| {
            s.kind == "ServiceAccount"
                && s.name == sa_name
                && s.namespace.as_deref() == Some(sa_ns.as_str())
        })
    };
    let cluster_roles: BTreeMap<String, Vec<PolicyRule>> = docs_of::<ClusterRole>(docs)
        .into_iter()
        .map(|(_, r)| (r.metadata.name.unwrap(), r.rules.unwrap_or_default()))
        .collect();
    let roles: BTreeMap<(String, String), Vec<PolicyRule>> = docs_of::<Role>(docs)
        .into_iter()
        .map(|(_, r)| {
            (
                (r.metadata.namespace.unwrap(), r.metadata.name.unwrap()),
                r.rules.unwrap_or_default(),
            )
        })
        .collect();
    let mut out = BTreeSet::new();
    let mut add = |rules: &[PolicyRule], scope: Scope| {
        for rule in rules {
            for group in rule.api_groups.iter().flatten() {
                for resource in rule.resources.iter().flatten() {
                    for verb in &rule.verbs {
                        assert!(
                            !(group == "*" || resource == "*" || verb == "*"),
                            "wildcard in an RBAC rule: {rule:?}"
                        );
                        out.insert((group.clone(), resource.clone(), verb.clone(), scope));
                    }
                }
            }
        }
    };
    for (at, b) in docs_of::<ClusterRoleBinding>(docs) {
        if binds_us(&b.subjects) {
            assert_eq!(b.role_ref.kind, "ClusterRole", "{at}");
            let rules = cluster_roles.get(&b.role_ref.name).unwrap_or_else(|| {
                panic!("{at}: ClusterRole {} is not in deploy/", b.role_ref.name)
            });
            add(rules, Scope::Cluster);
        }
    }
    for (at, b) in docs_of::<RoleBinding>(docs) {
        let ns = b.metadata.namespace.clone().unwrap_or_default();
        if binds_us(&b.subjects) {
            assert_eq!(ns, sa_ns, "{at}: binds the controller in another namespace");
            let rules = match b.role_ref.kind.as_str() {
                "Role" => roles.get(&(ns.clone(), b.role_ref.name.clone())),
                _ => cluster_roles.get(&b.role_ref.name),
            };
            let rules =
                rules.unwrap_or_else(|| panic!("{at}: {} is not in deploy/", b.role_ref.name));
            add(rules, Scope::Own);
        }
    }
    out
}

fn daemonset_service_account(docs: &[Doc]) -> (String, String) {
    let (_, ds) = the_daemonset(docs);
    let ns = ds.metadata.namespace.clone().expect("DaemonSet namespace");
    let pod = ds.spec.as_ref().unwrap().template.spec.as_ref().unwrap();
    let name = pod
        .service_account_name
        .clone()
        .expect("serviceAccountName");
    let accounts = docs_of::<ServiceAccount>(docs);
    assert!(
        accounts.iter().any(|(_, sa)| {
            sa.metadata.name.as_deref() == Some(&name)
                && sa.metadata.namespace.as_deref() == Some(&ns)
        }),
        "the DaemonSet's ServiceAccount {ns}/{name} is not in deploy/"
    );
    (ns, name)
}

fn the_daemonset(docs: &[Doc]) -> (String, DaemonSet) {
    let mut all = docs_of::<DaemonSet>(docs);
    assert_eq!(all.len(), 1, "expected one DaemonSet");
    all.remove(0)
}

#[test]
fn rbac_grants_exactly_the_calls_the_controller_makes() {
    let docs = kustomized_docs();
    let granted = granted(&docs);
    let covers = |(g, r, v, scope, _): &Need| {
        let cluster =
            granted.contains(&(g.to_string(), r.to_string(), v.to_string(), Scope::Cluster));
        let own = granted.contains(&(g.to_string(), r.to_string(), v.to_string(), Scope::Own));
        match scope {
            Scope::Cluster => cluster,
            Scope::Own => own || cluster,
        }
    };
    let missing: Vec<_> = NEEDED.iter().filter(|n| !covers(n)).collect();
    assert!(missing.is_empty(), "RBAC does not grant: {missing:#?}");
    let needed: BTreeSet<(String, String, String, Scope)> = NEEDED
        .iter()
        .map(|(g, r, v, s, _)| (g.to_string(), r.to_string(), v.to_string(), *s))
        .collect();
    let extra: Vec<_> = granted.difference(&needed).collect();
    assert!(
        extra.is_empty(),
        "RBAC grants more than the controller uses: {extra:#?}"
    );
}

/// A resource kind the controller may address through `kube::Api`: (group, plural).
fn kind_resource(path_group: &str, kind: &str) -> Option<(&'static str, &'static str)> {
    macro_rules! known {
        ($($k:ty),* $(,)?) => {
            $(if kind == <$k>::KIND && group_of_path(path_group) == Some(<$k>::GROUP) {
                return Some((<$k>::GROUP, <$k>::URL_PATH_SEGMENT));
            })*
        };
    }
    known!(
        Ingress,
        IngressClass,
        Service,
        Endpoints,
        EndpointSlice,
        Secret,
        ConfigMap,
        Lease,
        CoreEvent,
        Event,
        Pod,
        Node,
        Namespace,
        DaemonSet,
        Deployment,
    );
    None
}

/// The API group of a `k8s_openapi::api::<module>` path.
fn group_of_path(module: &str) -> Option<&'static str> {
    Some(match module {
        "core" => "",
        "networking" => "networking.k8s.io",
        "discovery" => "discovery.k8s.io",
        "coordination" => "coordination.k8s.io",
        "events" => "events.k8s.io",
        "apps" => "apps",
        _ => return None,
    })
}

/// `use k8s_openapi::{a::{b, c as d}, e};` → full paths with their local names.
fn expand_use_tree(tree: &str, prefix: &str, out: &mut Vec<(String, String)>) {
    let tree = tree.trim();
    if let Some(open) = tree.find('{') {
        let head = tree[..open].trim().trim_end_matches("::");
        let inner = &tree[open + 1..tree.rfind('}').expect("balanced use tree")];
        let prefix = if head.is_empty() {
            prefix.to_owned()
        } else {
            format!("{prefix}::{head}")
        };
        let mut depth = 0;
        let mut start = 0;
        for (i, c) in inner.char_indices() {
            match c {
                '{' => depth += 1,
                '}' => depth -= 1,
                ',' if depth == 0 => {
                    expand_use_tree(&inner[start..i], &prefix, out);
                    start = i + 1;
                }
                _ => {}
            }
        }
        expand_use_tree(&inner[start..], &prefix, out);
    } else if !tree.is_empty() {
        let (path, alias) = match tree.split_once(" as ") {
            Some((p, a)) => (p.trim(), a.trim()),
            None => (tree, tree.rsplit("::").next().unwrap_or(tree)),
        };
        out.push((format!("{prefix}::{path}"), alias.to_owned()));
    }
}

/// Source text without comments (doc comments mention calls that are not made).
fn strip_comments(src: &str) -> String {
    src.lines()
        .map(|l| match l.find("//") {
            Some(i) if !l[..i].contains('"') => &l[..i],
            _ => l,
        })
        .collect::<Vec<_>>()
        .join("\n")
}

/// Identifiers following `pat` up to `>` (e.g. `Api<K>` → K), last path segment only.
fn generic_args<'a>(src: &'a str, pat: &str) -> Vec<&'a str> {
    src.match_indices(pat)
        .filter_map(|(i, _)| {
            let rest = &src[i + pat.len()..];
            let end = rest.find('>')?;
            let ty = rest[..end].trim();
            ty.chars()
                .all(|c| c.is_alphanumeric() || c == '_' || c == ':')
                .then(|| ty.rsplit("::").next().unwrap_or(ty))
        })
        .collect()
}

/// The argument text of the call starting at `open` (the index of `(`).
fn call_args(src: &str, open: usize) -> &str {
    let mut depth = 0;
    for (i, c) in src[open..].char_indices() {
        match c {
            '(' => depth += 1,
            ')' => {
                depth -= 1;
                if depth == 0 {
                    return &src[open + 1..open + i];
                }
            }
            _ => {}
        }
    }
    &src[open + 1..]
}

/// The identifier right before `.` at `dot` (the receiver of a method call), if any.
fn receiver(src: &str, dot: usize) -> &str {
    let before = &src[..dot];
    let start = before
        .rfind(|c: char| !(c.is_alphanumeric() || c == '_'))
        .map_or(0, |i| i + 1);
    &before[start..]
}

/// What one source file does with the API: the kinds it addresses and the verbs it uses
/// (`resource/status` verbs are kept apart as (suffix, verb)).
#[derive(Debug, Default)]
struct FileCalls {
    kinds: BTreeSet<(&'static str, &'static str)>,
    verbs: BTreeSet<(&'static str, &'static str)>,
    unknown: Vec<String>,
}

fn calls_in(src: &str) -> FileCalls {
    let src = strip_comments(src);
    let mut calls = FileCalls::default();
    // Kinds: imported from k8s_openapi::api, or named in an Api/Reader/Store type.
    let mut local = BTreeMap::<String, (&'static str, &'static str)>::new();
    let mut paths = Vec::new();
    for (i, _) in src.match_indices("use k8s_openapi") {
        let stmt = &src[i + "use ".len()..];
        let stmt = &stmt[..stmt.find(';').expect("use ends with ;")];
        let stmt: String = stmt.split_whitespace().collect::<Vec<_>>().join(" ");
        expand_use_tree(
            stmt.trim_start_matches("k8s_openapi")
                .trim_start_matches("::"),
            "k8s_openapi",
            &mut paths,
        );
    }
    for (i, _) in src.match_indices("k8s_openapi::api::") {
        let rest = &src[i..];
        let end = rest
            .find(|c: char| !(c.is_alphanumeric() || c == '_' || c == ':'))
            .unwrap_or(rest.len());
        let path = rest[..end].trim_end_matches(':');
        paths.push((
            path.to_owned(),
            path.rsplit("::").next().unwrap().to_owned(),
        ));
    }
    for (path, alias) in paths {
        let segs: Vec<&str> = path.split("::").collect();
        if let ["k8s_openapi", "api", group, _version, kind] = segs.as_slice()
            && let Some(res) = kind_resource(group, kind)
        {
            local.insert(alias, res);
            calls.kinds.insert(res);
        }
    }
    // Our own Gateway API types (`crate::config::gateway`), imported by name.
    if src.contains("config::gateway") {
        for (name, plural) in [
            ("GatewayClass", "gatewayclasses"),
            ("Gateway", "gateways"),
            ("HTTPRoute", "httproutes"),
            ("TCPRoute", "tcproutes"),
            ("UDPRoute", "udproutes"),
            ("TLSRoute", "tlsroutes"),
            // The same kinds in their other served version (`types::other_version!`).
            ("TCPRouteV1", "tcproutes"),
            ("UDPRouteV1", "udproutes"),
            ("TLSRouteV1Alpha2", "tlsroutes"),
            ("ReferenceGrant", "referencegrants"),
        ] {
            let imported = [format!("{name},"), format!("{name}}}"), format!("<{name}>")]
                .iter()
                .any(|p| src.contains(p.as_str()));
            if imported {
                let res = ("gateway.networking.k8s.io", plural);
                local.insert(name.to_owned(), res);
                calls.kinds.insert(res);
            }
        }
    }
    for pat in [
        "Api<",
        "Api::<",
        "Reader<",
        "reflector::Store<",
        "ObjectRef<",
    ] {
        for ty in generic_args(&src, pat) {
            match local.get(ty) {
                Some(res) => {
                    calls.kinds.insert(*res);
                }
                None if pat.starts_with("Api") && ty != "K" => {
                    calls
                        .unknown
                        .push(format!("{pat}{ty}>: a kind this test does not know"));
                }
                None => {}
            }
        }
    }
    // Names bound to an Api, so that `name.get(..)` counts and `map.get(..)` does not.
    let mut apis = BTreeSet::new();
    for (i, _) in src
        .match_indices("Api<")
        .chain(src.match_indices("= Api::"))
    {
        let before = src[..i].trim_end();
        let before = before
            .strip_suffix(':')
            .or_else(|| before.strip_suffix('='))
            .unwrap_or(before);
        let before = before.trim_end().trim_end_matches('&').trim_end();
        let name = receiver(before, before.len());
        if !name.is_empty() {
            apis.insert(name.to_owned());
        }
    }
    // Verbs.
    let uses_api = src.contains("kube::") && (src.contains("Api") || src.contains("Recorder"));
    if !uses_api {
        return FileCalls::default();
    }
    if src.contains("watcher(") || src.contains("reflector(") || src.contains("metadata_watcher(") {
        calls.verbs.insert(("", "list"));
        calls.verbs.insert(("", "watch"));
    }
    if src.contains("runtime::events") && src.contains("Recorder::new") {
        // kube-runtime's Recorder creates events.k8s.io Events and patches their series.
        calls.kinds.insert((Event::GROUP, Event::URL_PATH_SEGMENT));
        calls.verbs.insert(("", "create"));
        calls.verbs.insert(("", "patch"));
    }
    let methods: &[(&str, &str, &str, Option<&str>)] = &[
        // (method, subresource, verb, argument type that marks a kube call)
        ("get", "", "get", None),
        ("get_opt", "", "get", Some("")),
        ("get_metadata", "", "get", Some("")),
        ("get_metadata_opt", "", "get", Some("")),
        ("list", "", "list", Some("ListParams")),
        ("list_metadata", "", "list", Some("")),
        ("watch", "", "watch", Some("WatchParams")),
        ("create", "", "create", Some("PostParams")),
        ("replace", "", "update", Some("PostParams")),
        ("patch", "", "patch", Some("PatchParams")),
        ("delete", "", "delete", Some("DeleteParams")),
        ("delete_collection", "", "deletecollection", Some("")),
        ("get_status", "/status", "get", Some("")),
        ("patch_status", "/status", "patch", Some("")),
        ("replace_status", "/status", "update", Some("")),
    ];
    for (method, sub, verb, marker) in methods {
        let pat = format!(".{method}(");
        for (i, _) in src.match_indices(&pat) {
            let args = call_args(&src, i + pat.len() - 1);
            let is_kube = apis.contains(receiver(&src, i))
                || marker.is_some_and(|m| m.is_empty() || args.contains(m));
            if is_kube {
                calls.verbs.insert((sub, verb));
            }
        }
    }
    calls
}

fn rust_files(dir: &Path, out: &mut Vec<PathBuf>) {
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            rust_files(&path, out);
        } else if path.extension().is_some_and(|e| e == "rs") {
            out.push(path);
        }
    }
}

#[test]
fn rbac_table_matches_the_calls_in_the_source() {
    let mut files = Vec::new();
    rust_files(&repo_root().join("ingress-user/src"), &mut files);
    files.sort();
    let mut problems = Vec::new();
    let mut derived = BTreeSet::new(); // (group, resource, verb) some file may call
    for file in &files {
        let src = std::fs::read_to_string(file).unwrap();
        let calls = calls_in(&src);
        let name = file
            .strip_prefix(repo_root())
            .unwrap()
            .display()
            .to_string();
        problems.extend(calls.unknown.iter().map(|u| format!("{name}: {u}")));
        if calls.verbs.is_empty() {
            continue;
        }
        for (group, resource) in &calls.kinds {
            if !NEEDED
                .iter()
                .any(|n| n.0 == *group && n.1.split('/').next() == Some(resource))
            {
                problems.push(format!(
                    "{name}: addresses {group}/{resource}; NEEDED has no row for it"
                ));
            }
        }
        for (sub, verb) in &calls.verbs {
            let row = NEEDED.iter().any(|n| {
                n.2 == *verb
                    && calls
                        .kinds
                        .iter()
                        .any(|(g, r)| n.0 == *g && n.1 == format!("{r}{sub}"))
            });
            if !row {
                problems.push(format!(
                    "{name}: calls {verb}{sub} but NEEDED grants it on none of {:?}",
                    calls.kinds
                ));
            }
            for (g, r) in &calls.kinds {
                derived.insert((*g, format!("{r}{sub}"), *verb));
            }
        }
    }
    for n in NEEDED {
        if !derived.contains(&(n.0, n.1.to_owned(), n.2)) {
            problems.push(format!(
                "NEEDED row {n:?} matches no call in ingress-user/src"
            ));
        }
    }
    assert!(problems.is_empty(), "{}", problems.join("\n"));
}

#[test]
fn source_scan_finds_calls_by_their_kube_signature() {
    let src = r#"
        use k8s_openapi::{api::{coordination::v1::Lease, core::v1::{Pod as P, Service}}};
        use kube::{Api, api::{PatchParams, PostParams}};
        // leases.delete(&name, &DeleteParams::default()) is only mentioned here
        fn f(client: kube::Client, map: std::collections::HashMap<u8, u8>) {
            let leases: Api<Lease> = Api::namespaced(client.clone(), "ns");
            let l = leases.get("x");
            leases.replace("x", &PostParams::default(), &l);
            let pods = Api::<P>::all(client);
            let _ = map.get(&1);
            pods.patch_status("p", &PatchParams::default(), &patch);
        }
    "#;
    let calls = calls_in(src);
    assert_eq!(
        calls.kinds,
        BTreeSet::from([
            ("", "pods"),
            ("", "services"),
            ("coordination.k8s.io", "leases")
        ])
    );
    assert_eq!(
        calls.verbs,
        BTreeSet::from([("", "get"), ("", "update"), ("/status", "patch")])
    );
    let unknown =
        calls_in("use kube::Api; fn f(c: kube::Client) { let _: Api<Gizmo> = Api::all(c); }");
    assert_eq!(unknown.unknown.len(), 1, "{unknown:?}");
    let plain = calls_in("fn f(m: std::collections::HashMap<u8, u8>) { m.get(&1); }");
    assert!(plain.verbs.is_empty(), "{plain:?}");
}

// ---------------------------------------------------------------------------------------------
// The DaemonSet.

fn container(ds: &DaemonSet) -> &Container {
    let pod = ds.spec.as_ref().unwrap().template.spec.as_ref().unwrap();
    assert_eq!(pod.containers.len(), 1, "one container");
    &pod.containers[0]
}

/// `--flag=value` / `--flag value` pairs of the container's args.
fn flags(args: &[String]) -> Vec<(String, Option<String>)> {
    let mut out = Vec::new();
    let mut it = args.iter().peekable();
    while let Some(a) = it.next() {
        let a = a
            .strip_prefix("--")
            .unwrap_or_else(|| panic!("argument {a:?} is not a --flag"));
        match a.split_once('=') {
            Some((f, v)) => out.push((f.to_owned(), Some(v.to_owned()))),
            None => {
                let v = it.next_if(|n| !n.starts_with("--")).cloned();
                out.push((a.to_owned(), v));
            }
        }
    }
    out
}

fn flag<'a>(flags: &'a [(String, Option<String>)], name: &str) -> Option<&'a str> {
    flags
        .iter()
        .find(|(f, _)| f == name)
        .and_then(|(_, v)| v.as_deref())
}

/// `--help` of the real binary: the flags it knows and the defaults it prints.
fn help_text() -> String {
    let out = Command::new(xdp_ingress_bin())
        .arg("--help")
        .output()
        .expect("xdp-ingress --help");
    assert!(out.status.success(), "--help failed");
    String::from_utf8(out.stdout).expect("UTF-8 help")
}

fn help_flags(help: &str) -> BTreeSet<String> {
    help.match_indices("--")
        .map(|(i, _)| {
            let rest = &help[i + 2..];
            let end = rest
                .find(|c: char| !(c.is_ascii_alphanumeric() || c == '-'))
                .unwrap_or(rest.len());
            rest[..end].to_owned()
        })
        .filter(|f| !f.is_empty())
        .collect()
}

/// The `[default: N]` clap prints for `--flag`.
fn help_default(help: &str, flag: &str) -> Option<String> {
    let at = help.find(&format!("--{flag} "))?;
    let rest = &help[at..];
    let next_flag = rest[2..].find("\n  -").map_or(rest.len(), |i| i + 2);
    let d = rest[..next_flag].find("[default: ")?;
    let v = &rest[d + "[default: ".len()..];
    Some(v[..v.find(']')?].to_owned())
}

#[test]
fn daemonset_passes_only_flags_the_binary_knows() {
    let docs = kustomized_docs();
    let (_, ds) = the_daemonset(&docs);
    let c = container(&ds);
    let args = c.args.clone().unwrap_or_default();
    let help = help_text();
    let known = help_flags(&help);
    let unknown: Vec<_> = flags(&args)
        .into_iter()
        .filter(|(f, _)| !known.contains(f))
        .collect();
    assert!(
        unknown.is_empty(),
        "flags `xdp-ingress --help` does not list: {unknown:?}"
    );
    // Every $(VAR) in the args is defined in the container's env (else Kubernetes passes it
    // through literally).
    let env: BTreeSet<&str> = c.env.iter().flatten().map(|e| e.name.as_str()).collect();
    for a in &args {
        for (i, _) in a.match_indices("$(") {
            let var = &a[i + 2..i + 2 + a[i + 2..].find(')').expect("closing )")];
            assert!(
                env.contains(var),
                "{a}: ${var} is not in the container's env"
            );
        }
    }
    for var in ["POD_NAME", "POD_NAMESPACE", "NODE_NAME"] {
        let e = c.env.iter().flatten().find(|e| e.name == var);
        let field = e
            .and_then(|e| e.value_from.as_ref())
            .and_then(|v| v.field_ref.as_ref())
            .map(|f| f.field_path.as_str());
        assert!(field.is_some(), "{var} is not set from the downward API");
    }
    let flags = flags(&args);
    for (f, v) in [
        ("tcp-services-configmap", "xdp-ingress/tcp-services"),
        ("udp-services-configmap", "xdp-ingress/udp-services"),
    ] {
        assert_eq!(flag(&flags, f), Some(v), "--{f}");
    }
    assert!(
        flags.iter().any(|(f, _)| f == "update-status"),
        "--update-status is not passed"
    );
}

#[test]
fn daemonset_probes_ports_and_lifecycle_match_the_binary() {
    let docs = kustomized_docs();
    let (_, ds) = the_daemonset(&docs);
    let c = container(&ds);
    let flags = flags(&c.args.clone().unwrap_or_default());
    let help = help_text();
    let port_of = |f: &str| -> i32 {
        flag(&flags, f)
            .map(str::to_owned)
            .or_else(|| help_default(&help, f))
            .unwrap_or_else(|| panic!("no --{f} and no default in --help"))
            .parse()
            .unwrap()
    };
    let health = port_of("health-port");
    let container_port = |p: &k8s_openapi::apimachinery::pkg::util::intstr::IntOrString| match p {
        k8s_openapi::apimachinery::pkg::util::intstr::IntOrString::Int(n) => *n,
        k8s_openapi::apimachinery::pkg::util::intstr::IntOrString::String(name) => {
            c.ports
                .iter()
                .flatten()
                .find(|p| p.name.as_deref() == Some(name))
                .unwrap_or_else(|| panic!("probe names port {name}, which the container lacks"))
                .container_port
        }
    };
    for (probe, path) in [
        (&c.liveness_probe, "/healthz"),
        (&c.readiness_probe, "/readyz"),
    ] {
        let get = probe
            .as_ref()
            .and_then(|p| p.http_get.as_ref())
            .expect("httpGet probe");
        assert_eq!(get.path.as_deref(), Some(path));
        assert_eq!(
            container_port(&get.port),
            health,
            "{path} probe is not on --health-port"
        );
    }
    let declared: BTreeSet<i32> = c.ports.iter().flatten().map(|p| p.container_port).collect();
    for f in ["http-port", "https-port", "health-port"] {
        assert!(
            declared.contains(&port_of(f)),
            "--{f} is not a containerPort"
        );
    }

    let spec = ds.spec.as_ref().unwrap();
    let pod = spec.template.spec.as_ref().unwrap();
    assert_eq!(pod.host_network, Some(true));
    assert_eq!(pod.dns_policy.as_deref(), Some("ClusterFirstWithHostNet"));
    let strategy = spec.update_strategy.as_ref().expect("updateStrategy");
    assert_eq!(strategy.type_.as_deref(), Some("RollingUpdate"));
    assert_eq!(
        strategy
            .rolling_update
            .as_ref()
            .and_then(|r| r.max_unavailable.clone()),
        Some(k8s_openapi::apimachinery::pkg::util::intstr::IntOrString::Int(1))
    );
    let grace: i64 = flag(&flags, "shutdown-grace-period")
        .map(str::to_owned)
        .or_else(|| help_default(&help, "shutdown-grace-period"))
        .expect("shutdown grace")
        .parse()
        .unwrap();
    let termination = pod
        .termination_grace_period_seconds
        .expect("terminationGracePeriodSeconds");
    assert!(
        termination > grace,
        "terminationGracePeriodSeconds {termination} leaves no room for the {grace} s drain"
    );
    let resources = c.resources.as_ref().expect("resources");
    assert!(resources.requests.is_some() && resources.limits.is_some());

    // The pin path is on the bpffs hostPath.
    let pin = flag(&flags, "bpf-pin-path")
        .map(str::to_owned)
        .or_else(|| help_default(&help, "bpf-pin-path"))
        .expect("bpf pin path");
    let bpffs = pod
        .volumes
        .iter()
        .flatten()
        .find(|v| {
            v.host_path
                .as_ref()
                .is_some_and(|h| h.path == "/sys/fs/bpf")
        })
        .expect("a hostPath volume for /sys/fs/bpf");
    let mount = c
        .volume_mounts
        .iter()
        .flatten()
        .find(|m| m.name == bpffs.name)
        .expect("the bpffs volume is mounted");
    assert!(
        Path::new(&pin).starts_with(&mount.mount_path),
        "{pin} is not under {}",
        mount.mount_path
    );
    assert_ne!(
        mount.read_only,
        Some(true),
        "pinning needs a writable bpffs"
    );
    let sc = c.security_context.as_ref().expect("securityContext");
    assert_eq!(sc.privileged, Some(false));
    if mount.mount_propagation.as_deref() == Some("Bidirectional") {
        panic!("Bidirectional mount propagation is only allowed in privileged containers");
    }
}

// ---------------------------------------------------------------------------------------------
// Capabilities: the real binary, with exactly the DaemonSet's capability set.

/// The capabilities the DaemonSet adds (and that it drops everything else).
fn daemonset_caps() -> Vec<String> {
    let docs = kustomized_docs();
    let (_, ds) = the_daemonset(&docs);
    let caps = container(&ds)
        .security_context
        .as_ref()
        .and_then(|s| s.capabilities.as_ref())
        .expect("capabilities");
    assert_eq!(
        caps.drop.as_deref(),
        Some(&["ALL".to_owned()][..]),
        "drop ALL first"
    );
    caps.add.clone().expect("capabilities.add")
}

/// The DaemonSet's args, made runnable here: a manifest directory instead of a cluster,
/// and a test pin directory. The interface is found as on a node (`--interface=auto`).
fn daemonset_args(manifests: &Path, pin: &Path) -> Vec<String> {
    let docs = kustomized_docs();
    let (_, ds) = the_daemonset(&docs);
    let mut args: Vec<String> = container(&ds).args.clone().unwrap_or_default();
    assert!(
        args.iter().any(|a| a == "--interface=auto"),
        "the DaemonSet detects the interface: {args:?}"
    );
    args.push(format!("--manifests={}", manifests.display()));
    args.push(format!("--bpf-pin-path={}", pin.display()));
    args.push("--l4-detach-on-exit".into());
    args
}

/// Outcome of one start: the log lines up to success or exit.
enum Start {
    /// It attached and listens; the process is still running.
    Serving(KillOnDrop),
    /// It exited; its log.
    Exited(String),
}

/// Starts the binary with only `caps` (as the container runtime does for a root process: the
/// bounding set limits what exec grants) and waits until it serves or exits.
fn start_with_caps(ns: &Netns, caps: &[String], args: &[String]) -> Start {
    let bounding = std::iter::once("-all".to_owned())
        .chain(caps.iter().map(|c| format!("+{}", c.to_lowercase())))
        .collect::<Vec<_>>()
        .join(",");
    let mut child = ns
        .command("setpriv")
        .args(["--bounding-set", &bounding])
        .arg(xdp_ingress_bin())
        .args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .env("RUST_BACKTRACE", "0")
        .spawn()
        .expect("spawn setpriv xdp-ingress");
    let (tx, rx) = mpsc::channel::<String>();
    for pipe in [
        Box::new(child.stdout.take().unwrap()) as Box<dyn std::io::Read + Send>,
        Box::new(child.stderr.take().unwrap()),
    ] {
        let tx = tx.clone();
        std::thread::spawn(move || {
            for line in BufReader::new(pipe).lines().map_while(Result::ok) {
                let _ = tx.send(line);
            }
        });
    }
    drop(tx);
    let mut child = KillOnDrop(child);
    let mut log = String::new();
    let (mut attached, mut listening) = (false, false);
    let deadline = Instant::now() + Duration::from_secs(60);
    while Instant::now() < deadline {
        match rx.recv_timeout(Duration::from_millis(100)) {
            Ok(line) => {
                attached |= line.contains("\"attached\"");
                listening |= line.contains("HTTP router listening");
                log.push_str(&line);
                log.push('\n');
                if attached && listening {
                    return Start::Serving(child);
                }
            }
            Err(mpsc::RecvTimeoutError::Timeout) => {}
            Err(mpsc::RecvTimeoutError::Disconnected) => {
                // Both pipes closed: the process is exiting.
                let status = child.0.wait().expect("wait for xdp-ingress");
                return Start::Exited(format!("{status}\n{log}"));
            }
        }
        if let Ok(Some(status)) = child.0.try_wait() {
            while let Ok(line) = rx.recv_timeout(Duration::from_millis(200)) {
                log.push_str(&line);
                log.push('\n');
            }
            return Start::Exited(format!("{status}\n{log}"));
        }
    }
    panic!("xdp-ingress neither served nor exited within 60 s:\n{log}");
}

/// GET `path` on `addr` inside `ns`; the status line.
fn http_status(ns: &Netns, addr: &'static str, path: &'static str) -> String {
    ns.run(move || {
        let Ok(mut s) = std::net::TcpStream::connect(addr) else {
            return "connection refused".to_owned();
        };
        s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
        write!(
            s,
            "GET {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"
        )
        .unwrap();
        let mut resp = String::new();
        let _ = s.read_to_string(&mut resp);
        resp.lines().next().unwrap_or_default().to_owned()
    })
}

#[test]
fn daemonset_capabilities_are_enough_and_each_is_needed() {
    let caps = daemonset_caps();
    assert!(
        !caps.iter().any(|c| c == "SYS_ADMIN"),
        "SYS_ADMIN is granted; see daemonset.yaml"
    );
    let node = Netns::new("capnode");
    let peer = Netns::new("cappeer");
    veth(
        &node,
        "xcap0",
        "10.77.0.1/24",
        &peer,
        "xcap1",
        "10.77.0.2/24",
    );
    let manifests = tempdir("caps");
    std::fs::copy(
        deploy_dir().join("configmaps.yaml"),
        manifests.join("configmaps.yaml"),
    )
    .expect("copy configmaps.yaml");
    let pin = PinDir::new();
    // `--interface=auto` finds xcap0 through the default route, as it finds ens5 on a node.
    let route = node
        .command("ip")
        .args([
            "route",
            "add",
            "default",
            "via",
            "10.77.0.2",
            "dev",
            "xcap0",
        ])
        .status()
        .expect("ip route");
    assert!(route.success(), "adding the default route");
    let args = daemonset_args(&manifests, pin.path());

    match start_with_caps(&node, &caps, &args) {
        Start::Serving(child) => {
            let status = http_status(&node, "10.77.0.1:80", "/healthz");
            assert!(
                status.contains(" 200 "),
                "built-in /healthz on port 80: {status:?}"
            );
            // The probes' endpoints, on the port the probes use.
            for path in ["/healthz", "/readyz"] {
                let deadline = Instant::now() + Duration::from_secs(30);
                let mut status = http_status(&node, "10.77.0.1:10254", path);
                while !status.contains(" 200 ") && Instant::now() < deadline {
                    std::thread::sleep(Duration::from_millis(100));
                    status = http_status(&node, "10.77.0.1:10254", path);
                }
                assert!(status.contains(" 200 "), "{path} on 10254: {status:?}");
            }
            drop(child);
        }
        Start::Exited(log) => panic!("xdp-ingress with {caps:?} failed:\n{log}"),
    }
    for missing in &caps {
        let fewer: Vec<String> = caps.iter().filter(|c| *c != missing).cloned().collect();
        match start_with_caps(&node, &fewer, &args) {
            Start::Serving(_) => panic!("CAP_{missing} is granted but not needed"),
            Start::Exited(log) => assert!(
                log.contains("not permitted") || log.contains("denied"),
                "without CAP_{missing} it failed for another reason:\n{log}"
            ),
        }
    }
    let _ = std::fs::remove_dir_all(&manifests);
}

fn tempdir(what: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("xit-{}-deploy-{what}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).expect("temp dir");
    dir
}
