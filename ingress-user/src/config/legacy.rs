//! Conversions of older API shapes into the ones [`config::build`](super::build) reads:
//! `extensions/v1beta1` and `networking.k8s.io/v1beta1` Ingresses (`serviceName` /
//! `servicePort`, `spec.backend`) into `networking.k8s.io/v1`, and core `v1` Endpoints into
//! EndpointSlices (file mode has no EndpointSlice controller).

use std::{collections::BTreeMap, net::IpAddr};

use k8s_openapi::api::{
    core::v1::Endpoints,
    discovery::v1::{Endpoint, EndpointConditions, EndpointPort, EndpointSlice},
    networking::v1::Ingress,
};
use serde_json::{Map, Value};

use super::backend::SERVICE_NAME_LABEL;

/// API versions of Ingress that [`ingress_from_v1beta1`] converts.
pub const LEGACY_INGRESS_VERSIONS: [&str; 2] = ["extensions/v1beta1", "networking.k8s.io/v1beta1"];

/// Why a legacy Ingress could not be converted.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct ConvertError(String);

/// Converts a v1beta1 Ingress document into a v1 Ingress: `spec.backend` becomes
/// `spec.defaultBackend`, `serviceName`/`servicePort` become `service.name`/`service.port`
/// (a number or a name), and a missing `pathType` becomes `ImplementationSpecific`.
pub fn ingress_from_v1beta1(mut doc: Value) -> Result<Ingress, ConvertError> {
    if let Some(spec) = doc.get_mut("spec").and_then(Value::as_object_mut) {
        if let Some(b) = spec.remove("backend") {
            spec.insert("defaultBackend".to_owned(), backend(b, "spec.backend")?);
        }
        if let Some(rules) = spec.get_mut("rules").and_then(Value::as_array_mut) {
            for (ri, rule) in rules.iter_mut().enumerate() {
                let Some(paths) = rule
                    .pointer_mut("/http/paths")
                    .and_then(Value::as_array_mut)
                else {
                    continue;
                };
                for (pi, path) in paths.iter_mut().enumerate() {
                    let Some(path) = path.as_object_mut() else {
                        continue;
                    };
                    if let Some(b) = path.remove("backend") {
                        let at = format!("spec.rules[{ri}].http.paths[{pi}].backend");
                        path.insert("backend".to_owned(), backend(b, &at)?);
                    }
                    path.entry("pathType")
                        .or_insert_with(|| Value::String("ImplementationSpecific".to_owned()));
                }
            }
        }
    }
    if let Some(obj) = doc.as_object_mut() {
        obj.insert(
            "apiVersion".to_owned(),
            Value::String("networking.k8s.io/v1".to_owned()),
        );
    }
    serde_json::from_value(doc).map_err(|e| ConvertError(e.to_string()))
}

/// `{serviceName, servicePort}` → `{service: {name, port: {number | name}}}`; a `resource`
/// backend is kept as is.
fn backend(b: Value, at: &str) -> Result<Value, ConvertError> {
    let Value::Object(mut b) = b else {
        return Err(ConvertError(format!("{at}: expected an object")));
    };
    if b.contains_key("resource") {
        return Ok(Value::Object(b));
    }
    let name = b
        .remove("serviceName")
        .ok_or_else(|| ConvertError(format!("{at}.serviceName is missing")))?;
    let port = match b.remove("servicePort") {
        Some(Value::Number(n)) => {
            Value::Object(Map::from_iter([("number".to_owned(), Value::Number(n))]))
        }
        Some(Value::String(s)) => match s.parse::<i32>() {
            Ok(n) => Value::Object(Map::from_iter([("number".to_owned(), Value::from(n))])),
            Err(_) => Value::Object(Map::from_iter([("name".to_owned(), Value::String(s))])),
        },
        _ => {
            return Err(ConvertError(format!(
                "{at}.servicePort must be a port number or name"
            )));
        }
    };
    Ok(Value::Object(Map::from_iter([(
        "service".to_owned(),
        Value::Object(Map::from_iter([
            ("name".to_owned(), name),
            ("port".to_owned(), port),
        ])),
    )])))
}

/// Converts core v1 Endpoints into EndpointSlices (one per subset and address family), as
/// the EndpointSlice mirroring controller would: `addresses` are ready, `notReadyAddresses`
/// are not; the ports keep their names, so a Service's `targetPort` resolves the same way.
pub fn endpoint_slices_from_endpoints(ep: &Endpoints) -> Vec<EndpointSlice> {
    let name = ep.metadata.name.clone().unwrap_or_default();
    let mut out = Vec::new();
    for (si, subset) in ep.subsets.iter().flatten().enumerate() {
        let ports: Vec<EndpointPort> = subset
            .ports
            .iter()
            .flatten()
            .map(|p| EndpointPort {
                name: p.name.clone(),
                port: Some(p.port),
                protocol: p.protocol.clone(),
                app_protocol: p.app_protocol.clone(),
            })
            .collect();
        for (family, v6) in [("IPv4", false), ("IPv6", true)] {
            let mut endpoints = Vec::new();
            let groups = [
                (&subset.addresses, true),
                (&subset.not_ready_addresses, false),
            ];
            for (addrs, ready) in groups {
                for a in addrs.iter().flatten() {
                    match a.ip.parse::<IpAddr>() {
                        Ok(ip) if ip.is_ipv6() == v6 => endpoints.push(Endpoint {
                            addresses: vec![a.ip.clone()],
                            conditions: Some(EndpointConditions {
                                ready: Some(ready),
                                serving: Some(ready),
                                terminating: Some(false),
                            }),
                            hostname: a.hostname.clone(),
                            node_name: a.node_name.clone(),
                            target_ref: a.target_ref.clone(),
                            ..Endpoint::default()
                        }),
                        _ => {}
                    }
                }
            }
            if endpoints.is_empty() {
                continue;
            }
            let mut metadata = ep.metadata.clone();
            metadata.name = Some(format!("{name}-{si}-{}", family.to_ascii_lowercase()));
            metadata
                .labels
                .get_or_insert_with(BTreeMap::new)
                .insert(SERVICE_NAME_LABEL.to_owned(), name.clone());
            out.push(EndpointSlice {
                metadata,
                address_type: family.to_owned(),
                endpoints,
                ports: Some(ports.clone()),
            });
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn seed_dashboard_ingress_converts_to_v1() {
        let doc: Value = serde_yaml::from_str(
            "apiVersion: extensions/v1beta1
kind: Ingress
metadata: {name: dashboard-ingress, namespace: kube-system, annotations: {kubernetes.io/ingress.class: nginx}}
spec:
  rules:
  - host: k8sui.test.com
    http:
      paths:
      - path: /
        backend: {serviceName: kubernetes-dashboard, servicePort: 80}
",
        )
        .unwrap();
        let ing = ingress_from_v1beta1(doc).unwrap();
        let spec = ing.spec.unwrap();
        let rule = &spec.rules.unwrap()[0];
        assert_eq!(rule.host.as_deref(), Some("k8sui.test.com"));
        let path = &rule.http.as_ref().unwrap().paths[0];
        assert_eq!(path.path.as_deref(), Some("/"));
        assert_eq!(path.path_type, "ImplementationSpecific");
        let svc = path.backend.service.as_ref().unwrap();
        assert_eq!(svc.name, "kubernetes-dashboard");
        assert_eq!(svc.port.as_ref().unwrap().number, Some(80));
        assert_eq!(
            ing.metadata.annotations.unwrap()["kubernetes.io/ingress.class"],
            "nginx"
        );
    }

    #[test]
    #[expect(clippy::type_complexity, reason = "a test table")]
    fn backend_forms_table() {
        // (servicePort as written, expected (number, name))
        #[rustfmt::skip]
        let rows: &[(&str, (Option<i32>, Option<&str>))] = &[
            ("80", (Some(80), None)),
            ("\"8080\"", (Some(8080), None)),
            ("http", (None, Some("http"))),
        ];
        for (port, want) in rows {
            let doc: Value = serde_yaml::from_str(&format!(
                "kind: Ingress\nmetadata: {{name: x}}\nspec: {{backend: {{serviceName: s, servicePort: {port}}}}}"
            ))
            .unwrap();
            let ing = ingress_from_v1beta1(doc).unwrap();
            let p = ing
                .spec
                .unwrap()
                .default_backend
                .unwrap()
                .service
                .unwrap()
                .port
                .unwrap();
            assert_eq!((p.number, p.name.as_deref()), *want, "{port}");
        }
    }

    #[test]
    fn missing_service_name_is_an_error_naming_the_field() {
        let doc: Value = serde_yaml::from_str(
            "kind: Ingress\nmetadata: {name: x}\nspec: {rules: [{http: {paths: [{path: /, backend: {servicePort: 80}}]}}]}",
        )
        .unwrap();
        let err = ingress_from_v1beta1(doc).unwrap_err();
        assert_eq!(
            err.to_string(),
            "spec.rules[0].http.paths[0].backend.serviceName is missing"
        );
    }

    #[test]
    fn endpoints_become_slices_with_readiness_and_port_names() {
        let ep: Endpoints = serde_yaml::from_str(
            "metadata: {name: web, namespace: ns}
subsets:
- addresses: [{ip: 10.0.0.1}, {ip: 'fd00::1'}]
  notReadyAddresses: [{ip: 10.0.0.2}]
  ports: [{name: http, port: 8080}]
",
        )
        .unwrap();
        let slices = endpoint_slices_from_endpoints(&ep);
        let summary: Vec<_> = slices
            .iter()
            .map(|s| {
                (
                    s.address_type.as_str(),
                    s.metadata.labels.as_ref().unwrap()[SERVICE_NAME_LABEL].as_str(),
                    s.endpoints
                        .iter()
                        .map(|e| {
                            (
                                e.addresses[0].as_str(),
                                e.conditions.as_ref().unwrap().ready.unwrap(),
                            )
                        })
                        .collect::<Vec<_>>(),
                    s.ports.as_ref().unwrap()[0].name.as_deref(),
                )
            })
            .collect();
        assert_eq!(
            summary,
            [
                (
                    "IPv4",
                    "web",
                    vec![("10.0.0.1", true), ("10.0.0.2", false)],
                    Some("http")
                ),
                ("IPv6", "web", vec![("fd00::1", true)], Some("http")),
            ]
        );
    }
}
