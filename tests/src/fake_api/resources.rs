//! The kinds the fake API server knows, and the discovery documents built from them.

use serde_json::{Value, json};

/// One served resource (a kind under a group/version), like a row of `kubectl api-resources`.
#[derive(Debug)]
pub struct Resource {
    /// API group; empty for the core group.
    pub group: &'static str,
    /// API version inside the group.
    pub version: &'static str,
    /// Plural name used in paths.
    pub plural: &'static str,
    /// Singular name.
    pub singular: &'static str,
    /// `kind` of one object.
    pub kind: &'static str,
    /// Whether objects live in a namespace.
    pub namespaced: bool,
    /// Whether the kind has a `status` subresource (status is kept apart from spec writes).
    pub status: bool,
    /// Whether `metadata.generation` is maintained (bumped on spec changes).
    pub generation: bool,
    /// Short names, for `kubectl get ing`.
    pub short_names: &'static [&'static str],
    /// The version whose storage this row serves (its own version, or the storage version
    /// of a kind served under several versions, as `gateway.networking.k8s.io` v1beta1 is).
    /// Objects are stored once and shown with the `apiVersion` of the version asked for.
    pub stored_as: &'static str,
}

impl Resource {
    /// `apiVersion` of objects of this kind.
    pub fn api_version(&self) -> String {
        if self.group.is_empty() {
            self.version.to_owned()
        } else {
            format!("{}/{}", self.group, self.version)
        }
    }
}

#[expect(clippy::too_many_arguments, reason = "one row of the table below")]
const fn res(
    group: &'static str,
    version: &'static str,
    plural: &'static str,
    singular: &'static str,
    kind: &'static str,
    namespaced: bool,
    status: bool,
    short_names: &'static [&'static str],
) -> Resource {
    Resource {
        group,
        version,
        plural,
        singular,
        kind,
        namespaced,
        status,
        generation: status,
        short_names,
        stored_as: version,
    }
}

/// A custom resource of the Gateway API: `metadata.generation` always kept (as for every
/// CRD), a `status` subresource if `status`, stored as v1 whatever `version` serves it.
const fn gateway_api(
    version: &'static str,
    plural: &'static str,
    singular: &'static str,
    kind: &'static str,
    namespaced: bool,
    status: bool,
    short_names: &'static [&'static str],
) -> Resource {
    Resource {
        group: GATEWAY_GROUP,
        version,
        plural,
        singular,
        kind,
        namespaced,
        status,
        generation: true,
        short_names,
        stored_as: "v1",
    }
}

/// The Gateway API group.
pub const GATEWAY_GROUP: &str = "gateway.networking.k8s.io";

/// Every served resource. The index into this table identifies a resource in the store.
pub static RESOURCES: &[Resource] = &[
    res(
        "",
        "v1",
        "namespaces",
        "namespace",
        "Namespace",
        false,
        true,
        &["ns"],
    ),
    res(
        "",
        "v1",
        "services",
        "service",
        "Service",
        true,
        true,
        &["svc"],
    ),
    res("", "v1", "secrets", "secret", "Secret", true, false, &[]),
    res(
        "",
        "v1",
        "configmaps",
        "configmap",
        "ConfigMap",
        true,
        false,
        &["cm"],
    ),
    res("", "v1", "events", "event", "Event", true, false, &["ev"]),
    res(
        "",
        "v1",
        "endpoints",
        "endpoints",
        "Endpoints",
        true,
        false,
        &["ep"],
    ),
    res(
        "networking.k8s.io",
        "v1",
        "ingresses",
        "ingress",
        "Ingress",
        true,
        true,
        &["ing"],
    ),
    res(
        "networking.k8s.io",
        "v1",
        "ingressclasses",
        "ingressclass",
        "IngressClass",
        false,
        false,
        &[],
    ),
    res(
        "discovery.k8s.io",
        "v1",
        "endpointslices",
        "endpointslice",
        "EndpointSlice",
        true,
        false,
        &[],
    ),
    res(
        "events.k8s.io",
        "v1",
        "events",
        "event",
        "Event",
        true,
        false,
        &["ev"],
    ),
    res(
        "coordination.k8s.io",
        "v1",
        "leases",
        "lease",
        "Lease",
        true,
        false,
        &[],
    ),
    gateway_api(
        "v1",
        "gatewayclasses",
        "gatewayclass",
        "GatewayClass",
        false,
        true,
        &["gc"],
    ),
    gateway_api("v1", "gateways", "gateway", "Gateway", true, true, &["gtw"]),
    gateway_api(
        "v1",
        "httproutes",
        "httproute",
        "HTTPRoute",
        true,
        true,
        &[],
    ),
    gateway_api("v1", "tcproutes", "tcproute", "TCPRoute", true, true, &[]),
    gateway_api("v1", "udproutes", "udproute", "UDPRoute", true, true, &[]),
    gateway_api(
        "v1alpha2",
        "tcproutes",
        "tcproute",
        "TCPRoute",
        true,
        true,
        &[],
    ),
    gateway_api(
        "v1alpha2",
        "udproutes",
        "udproute",
        "UDPRoute",
        true,
        true,
        &[],
    ),
    gateway_api("v1", "tlsroutes", "tlsroute", "TLSRoute", true, true, &[]),
    gateway_api(
        "v1",
        "referencegrants",
        "referencegrant",
        "ReferenceGrant",
        true,
        false,
        &["refgrant"],
    ),
    gateway_api(
        "v1beta1",
        "gatewayclasses",
        "gatewayclass",
        "GatewayClass",
        false,
        true,
        &["gc"],
    ),
    gateway_api(
        "v1beta1",
        "gateways",
        "gateway",
        "Gateway",
        true,
        true,
        &["gtw"],
    ),
    gateway_api(
        "v1beta1",
        "httproutes",
        "httproute",
        "HTTPRoute",
        true,
        true,
        &[],
    ),
    gateway_api(
        "v1beta1",
        "referencegrants",
        "referencegrant",
        "ReferenceGrant",
        true,
        false,
        &["refgrant"],
    ),
];

/// Index of the row whose storage the row `res` serves (itself unless it is another
/// version of a kind stored once).
pub fn storage(res: usize) -> usize {
    let r = &RESOURCES[res];
    RESOURCES
        .iter()
        .position(|s| s.group == r.group && s.plural == r.plural && s.version == r.stored_as)
        .unwrap_or(res)
}

/// `obj` as the row `served` shows it: the same object under that row's `apiVersion`.
pub fn as_served(obj: &Value, served: usize) -> Value {
    let mut out = obj.clone();
    if let Value::Object(map) = &mut out
        && map.contains_key("apiVersion")
    {
        map.insert(
            "apiVersion".into(),
            Value::String(RESOURCES[served].api_version()),
        );
    }
    out
}

/// Index of the resource with this group, version and plural.
pub fn find(group: &str, version: &str, plural: &str) -> Option<usize> {
    RESOURCES
        .iter()
        .position(|r| r.group == group && r.version == version && r.plural == plural)
}

/// Index of the resource (its storage row) for objects of this `apiVersion` and `kind`.
pub fn by_kind(api_version: &str, kind: &str) -> Option<usize> {
    RESOURCES
        .iter()
        .position(|r| r.kind == kind && r.api_version() == api_version)
        .map(storage)
}

/// Distinct non-core groups, in table order.
fn groups() -> Vec<&'static str> {
    let mut out: Vec<&'static str> = Vec::new();
    for r in RESOURCES {
        if !r.group.is_empty() && !out.contains(&r.group) {
            out.push(r.group);
        }
    }
    out
}

/// `GET /version`.
pub fn version() -> Value {
    json!({
        "major": "1", "minor": "33", "gitVersion": "v1.33.0-fake", "gitCommit": "0000000",
        "gitTreeState": "clean", "buildDate": "2026-01-01T00:00:00Z", "goVersion": "go1.24",
        "compiler": "gc", "platform": "linux/amd64"
    })
}

/// `GET /api`.
pub fn core_versions(server_address: &str) -> Value {
    json!({
        "kind": "APIVersions", "versions": ["v1"],
        "serverAddressByClientCIDRs": [{"clientCIDR": "0.0.0.0/0", "serverAddress": server_address}]
    })
}

/// The versions a group serves, preferred (first in the table) first.
fn versions(group: &str) -> Vec<&'static str> {
    let mut out: Vec<&'static str> = Vec::new();
    for r in RESOURCES.iter().filter(|r| r.group == group) {
        if !out.contains(&r.version) {
            out.push(r.version);
        }
    }
    out
}

/// One group as `/apis` and `/apis/<group>` describe it.
fn group_doc(g: &str) -> Value {
    let gvs: Vec<Value> = versions(g)
        .into_iter()
        .map(|v| json!({"groupVersion": format!("{g}/{v}"), "version": v}))
        .collect();
    json!({"name": g, "versions": gvs, "preferredVersion": gvs[0]})
}

/// `GET /apis`.
pub fn group_list() -> Value {
    let groups: Vec<Value> = groups().into_iter().map(group_doc).collect();
    json!({"kind": "APIGroupList", "apiVersion": "v1", "groups": groups})
}

/// `GET /apis/<group>` (one group's versions), if the group is served.
pub fn group(name: &str) -> Option<Value> {
    groups().into_iter().find(|g| *g == name).map(|g| {
        let mut doc = group_doc(g);
        doc["kind"] = json!("APIGroup");
        doc["apiVersion"] = json!("v1");
        doc
    })
}

/// `GET /api/v1` or `/apis/<group>/<version>`, if that group/version is served.
pub fn resource_list(group: &str, version: &str) -> Option<Value> {
    let mut resources = Vec::new();
    for r in RESOURCES
        .iter()
        .filter(|r| r.group == group && r.version == version)
    {
        resources.push(json!({
            "name": r.plural, "singularName": r.singular, "namespaced": r.namespaced, "kind": r.kind,
            "verbs": ["create", "delete", "get", "list", "patch", "update", "watch"],
            "shortNames": r.short_names,
        }));
        if r.status {
            resources.push(json!({
                "name": format!("{}/status", r.plural), "singularName": "", "namespaced": r.namespaced,
                "kind": r.kind, "verbs": ["get", "patch", "update"],
            }));
        }
    }
    if resources.is_empty() {
        return None;
    }
    let gv = if group.is_empty() {
        version.to_owned()
    } else {
        format!("{group}/{version}")
    };
    Some(
        json!({"kind": "APIResourceList", "apiVersion": "v1", "groupVersion": gv, "resources": resources}),
    )
}

/// `GET /openapi/v3`: one document per served group/version.
pub fn openapi_root() -> Value {
    let mut paths = serde_json::Map::new();
    for r in RESOURCES {
        let key = gv_path(r.group, r.version);
        paths.insert(
            key.clone(),
            json!({"serverRelativeURL": format!("/openapi/v3/{key}?hash=fake")}),
        );
    }
    json!({"paths": paths})
}

fn gv_path(group: &str, version: &str) -> String {
    if group.is_empty() {
        format!("api/{version}")
    } else {
        format!("apis/{group}/{version}")
    }
}

/// `GET /openapi/v3/api/v1` or `/openapi/v3/apis/<g>/<v>`: just enough for `kubectl` to see that
/// every kind's PATCH accepts `fieldValidation` (so it validates server-side, which this
/// server accepts, instead of downloading schemas). Objects are not schema-checked.
pub fn openapi_gv(group: &str, version: &str) -> Option<Value> {
    let mut paths = serde_json::Map::new();
    for r in RESOURCES
        .iter()
        .filter(|r| r.group == group && r.version == version)
    {
        let gvk = json!({"group": r.group, "version": r.version, "kind": r.kind});
        let op = json!({
            "x-kubernetes-group-version-kind": gvk,
            "parameters": [{"name": "fieldValidation", "in": "query", "schema": {"type": "string"}}],
            "responses": {"200": {"description": "OK"}},
        });
        let item = if r.namespaced {
            format!(
                "/{}/namespaces/{{namespace}}/{}/{{name}}",
                gv_path(group, version),
                r.plural
            )
        } else {
            format!("/{}/{}/{{name}}", gv_path(group, version), r.plural)
        };
        paths.insert(item, json!({"patch": op}));
    }
    if paths.is_empty() {
        return None;
    }
    Some(json!({
        "openapi": "3.0.0",
        "info": {"title": "Kubernetes (fake)", "version": "v1.33.0"},
        "paths": paths,
        "components": {"schemas": {}},
    }))
}
