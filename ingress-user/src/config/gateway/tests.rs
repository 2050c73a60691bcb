//! Translation tables: manifests in, plane and status out. The behaviours are the Gateway
//! API spec's (and its conformance tests', named per row where one exists).

use std::{net::IpAddr, path::Path};

use super::{Translated, status::Cond, translate};
use crate::{
    config::{
        Objects, Options, backend::Cells, fixtures::tls_secret, ingress::SecretCache, store::Store,
    },
    snapshot::gateway::{InvalidBackend, ListenAddr, PathMatch},
    source::files::Loader,
};

const BASE: &str = "
apiVersion: gateway.networking.k8s.io/v1
kind: GatewayClass
metadata: {name: xdp}
spec: {controllerName: xdp-ingress.dev/controller}
---
apiVersion: gateway.networking.k8s.io/v1
kind: GatewayClass
metadata: {name: other}
spec: {controllerName: example.com/other}
---
apiVersion: v1
kind: Namespace
metadata: {name: infra}
---
apiVersion: v1
kind: Namespace
metadata: {name: apps, labels: {gateway-access: granted}}
---
apiVersion: v1
kind: Service
metadata: {name: web, namespace: apps}
spec: {ports: [{port: 8080}]}
---
apiVersion: discovery.k8s.io/v1
kind: EndpointSlice
metadata: {name: web-1, namespace: apps, labels: {kubernetes.io/service-name: web}}
addressType: IPv4
ports: [{port: 8080}]
endpoints: [{addresses: [10.0.0.1]}]
---
apiVersion: v1
kind: Service
metadata: {name: web, namespace: infra}
spec: {ports: [{port: 8080}]}
";

fn gateway(extra_listeners: &str) -> String {
    format!(
        "
---
apiVersion: gateway.networking.k8s.io/v1
kind: Gateway
metadata: {{name: gw, namespace: infra, generation: 3}}
spec:
  gatewayClassName: xdp
  addresses: [{{type: IPAddress, value: 127.0.0.10}}]
  listeners:
  - {{name: http, port: 80, protocol: HTTP, allowedRoutes: {{namespaces: {{from: All}}}}}}
  - {{name: same, port: 8081, protocol: HTTP}}
  - {{name: selected, port: 8082, protocol: HTTP, allowedRoutes: {{namespaces: {{from: Selector, selector: {{matchLabels: {{gateway-access: granted}}}}}}}}}}
  - {{name: foo, port: 8083, protocol: HTTP, hostname: '*.foo.com', allowedRoutes: {{namespaces: {{from: All}}}}}}
{extra_listeners}"
    )
}

fn route(ns: &str, name: &str, body: &str) -> String {
    format!(
        "
---
apiVersion: gateway.networking.k8s.io/v1
kind: HTTPRoute
metadata: {{name: {name}, namespace: {ns}, generation: 2}}
spec:
{body}"
    )
}

fn run(yaml: &str) -> Translated {
    let mut loader = Loader::default();
    loader.add_file(Path::new("t.yaml"), yaml);
    let mut store: Store = loader.store;
    store.secrets.push(tls_secret("infra", "cert"));
    store.secrets.push(tls_secret("apps", "cert"));
    assert!(
        store.problems.is_empty(),
        "fixture does not parse: {:?}",
        store.problems
    );
    translate(
        &Objects::from_store(&store),
        &Options::default(),
        &mut Cells::default(),
        &mut SecretCache::default(),
    )
}

/// `(type, status, reason)` of conditions.
fn conds(c: &[Cond]) -> Vec<(&'static str, bool, &'static str)> {
    c.iter().map(|c| (c.type_, c.status, c.reason)).collect()
}

/// The conditions of route `ns/name`'s first parent.
fn parent(t: &Translated, ns: &str, name: &str) -> Vec<(&'static str, bool, &'static str)> {
    let r = t
        .statuses
        .routes
        .iter()
        .find(|r| r.key == (ns.to_owned(), name.to_owned()))
        .unwrap_or_else(|| panic!("no status for route {ns}/{name}: {:?}", t.statuses.routes));
    conds(&r.parents[0].conditions)
}

fn listener<'a>(t: &'a Translated, name: &str) -> &'a super::status::ListenerState {
    t.statuses.gateways[0]
        .listeners
        .iter()
        .find(|l| l.name == name)
        .unwrap_or_else(|| panic!("no listener {name}"))
}

fn at(port: u16) -> ListenAddr {
    ListenAddr {
        ip: Some("127.0.0.10".parse::<IpAddr>().unwrap()),
        port,
    }
}

const ACCEPTED: (&str, bool, &str) = ("Accepted", true, "Accepted");
const RESOLVED: (&str, bool, &str) = ("ResolvedRefs", true, "ResolvedRefs");

#[test]
fn only_our_classes_are_served() {
    let t = run(&format!(
        "{BASE}{}",
        gateway("").replace("gatewayClassName: xdp", "gatewayClassName: other")
    ));
    assert_eq!(t.statuses.classes.len(), 1, "only our class has a status");
    assert!(t.statuses.gateways.is_empty());
    assert!(t.plane.ports.is_empty());
}

/// Route attachment: the parent conditions of the conformance tests named per row.
#[test]
fn route_attachment_table() {
    let backend = "  rules: [{backendRefs: [{name: web, port: 8080}]}]\n";
    for (test, route_ns, parent_ref, hostnames, want) in [
        (
            "HTTPRouteSimpleSameNamespace",
            "infra",
            "{name: gw, sectionName: same}",
            "[]",
            vec![ACCEPTED, RESOLVED],
        ),
        (
            "HTTPRouteCrossNamespace (from: All)",
            "apps",
            "{name: gw, namespace: infra, sectionName: http}",
            "[]",
            vec![ACCEPTED, RESOLVED],
        ),
        (
            "HTTPRouteInvalidCrossNamespaceParentRef",
            "apps",
            "{name: gw, namespace: infra, sectionName: same}",
            "[]",
            vec![("Accepted", false, "NotAllowedByListeners"), RESOLVED],
        ),
        (
            "allowedRoutes Selector matches the namespace's labels",
            "apps",
            "{name: gw, namespace: infra, sectionName: selected}",
            "[]",
            vec![ACCEPTED, RESOLVED],
        ),
        (
            "HTTPRouteInvalidParentRefNotMatchingSectionName",
            "infra",
            "{name: gw, sectionName: nope}",
            "[]",
            vec![("Accepted", false, "NoMatchingParent"), RESOLVED],
        ),
        (
            "HTTPRouteInvalidParentRefNotMatchingListenerPort",
            "infra",
            "{name: gw, port: 9999}",
            "[]",
            vec![("Accepted", false, "NoMatchingParent"), RESOLVED],
        ),
        (
            "HTTPRouteHostnameIntersection (no intersection)",
            "infra",
            "{name: gw, sectionName: foo}",
            "[bar.com]",
            vec![("Accepted", false, "NoMatchingListenerHostname"), RESOLVED],
        ),
        (
            "HTTPRouteHostnameIntersection (intersection)",
            "infra",
            "{name: gw, sectionName: foo}",
            "[a.foo.com, bar.com]",
            vec![ACCEPTED, RESOLVED],
        ),
    ] {
        let body = format!("  parentRefs: [{parent_ref}]\n  hostnames: {hostnames}\n{backend}");
        let t = run(&format!(
            "{BASE}{}{}",
            gateway(""),
            route(route_ns, "r", &body)
        ));
        assert_eq!(parent(&t, route_ns, "r"), want, "{test}");
        let r = &t.statuses.routes[0];
        assert_eq!(
            r.parents[0].conditions[0].observed_generation, 2,
            "{test}: observedGeneration"
        );
    }
}

#[test]
fn routes_of_other_gateways_get_no_status() {
    let body =
        "  parentRefs: [{name: elsewhere}]\n  rules: [{backendRefs: [{name: web, port: 8080}]}]\n";
    let t = run(&format!(
        "{BASE}{}{}",
        gateway(""),
        route("infra", "r", body)
    ));
    assert!(t.statuses.routes.is_empty(), "{:?}", t.statuses.routes);
    assert!(t.problems.is_empty(), "{:?}", t.problems);
}

/// backendRefs: ResolvedRefs reasons (HTTPRouteInvalidNonExistentBackendRef,
/// HTTPRouteInvalidBackendRefUnknownKind, HTTPRouteInvalidCrossNamespaceBackendRef,
/// HTTPRouteReferenceGrant) and what the plane does with the rule (500 for an invalid
/// backend).
#[test]
fn backend_ref_table() {
    let grant = "
---
apiVersion: gateway.networking.k8s.io/v1beta1
kind: ReferenceGrant
metadata: {name: g, namespace: apps}
spec:
  from: [{group: gateway.networking.k8s.io, kind: HTTPRoute, namespace: infra}]
  to: [{group: '', kind: Service, name: web}]
";
    for (test, backend_ref, extra, want, target) in [
        ("resolves", "{name: web, port: 8080}", "", RESOLVED, Ok(())),
        (
            "HTTPRouteInvalidNonExistentBackendRef",
            "{name: nope, port: 8080}",
            "",
            ("ResolvedRefs", false, "BackendNotFound"),
            Err(InvalidBackend::NotFound),
        ),
        (
            "no such Service port",
            "{name: web, port: 1}",
            "",
            ("ResolvedRefs", false, "BackendNotFound"),
            Err(InvalidBackend::NotFound),
        ),
        (
            "HTTPRouteInvalidBackendRefUnknownKind",
            "{group: example.com, kind: Foo, name: web, port: 8080}",
            "",
            ("ResolvedRefs", false, "InvalidKind"),
            Err(InvalidBackend::InvalidKind),
        ),
        (
            "HTTPRouteInvalidCrossNamespaceBackendRef",
            "{name: web, namespace: apps, port: 8080}",
            "",
            ("ResolvedRefs", false, "RefNotPermitted"),
            Err(InvalidBackend::RefNotPermitted),
        ),
        (
            "HTTPRouteReferenceGrant",
            "{name: web, namespace: apps, port: 8080}",
            grant,
            RESOLVED,
            Ok(()),
        ),
    ] {
        let body = format!(
            "  parentRefs: [{{name: gw, sectionName: same}}]\n  rules: [{{backendRefs: [{backend_ref}]}}]\n"
        );
        let t = run(&format!(
            "{BASE}{}{}{extra}",
            gateway(""),
            route("infra", "r", &body)
        ));
        assert_eq!(parent(&t, "infra", "r"), vec![ACCEPTED, want], "{test}");
        let port = &t.plane.ports[&at(8081)];
        let rules = port.hosts.any.as_ref().expect("rules for any host");
        let got = rules[0].action.backends[0]
            .target
            .as_ref()
            .map(|_| ())
            .map_err(|e| *e);
        assert_eq!(got, target, "{test}");
        assert_eq!(
            t.problems.is_empty(),
            target.is_ok(),
            "{test}: {:?}",
            t.problems
        );
    }
}

/// Listener conditions: GatewayInvalidTLSConfiguration, GatewaySecretMissingReferenceGrant,
/// GatewaySecretReferenceGrantSpecific, GatewayInvalidRouteKind, conflicts, and a port the
/// Ingress listener holds.
#[test]
fn listener_table() {
    let grant = "
---
apiVersion: gateway.networking.k8s.io/v1beta1
kind: ReferenceGrant
metadata: {name: g, namespace: apps}
spec:
  from: [{group: gateway.networking.k8s.io, kind: Gateway, namespace: infra}]
  to: [{group: '', kind: Secret, name: cert}]
";
    let bad = |reason| {
        vec![
            ("Accepted", true, "Accepted"),
            ("ResolvedRefs", false, reason),
            ("Conflicted", false, "NoConflicts"),
            ("Programmed", false, "Invalid"),
        ]
    };
    let good = vec![
        ACCEPTED,
        RESOLVED,
        ("Conflicted", false, "NoConflicts"),
        ("Programmed", true, "Programmed"),
    ];
    for (test, listener_yaml, extra, want, open) in [
        (
            "HTTPS with a certificate",
            "{name: x, port: 8443, protocol: HTTPS, tls: {certificateRefs: [{name: cert}]}}",
            "",
            good.clone(),
            true,
        ),
        (
            "GatewayInvalidTLSConfiguration: no such Secret",
            "{name: x, port: 8443, protocol: HTTPS, tls: {certificateRefs: [{name: nope}]}}",
            "",
            bad("InvalidCertificateRef"),
            false,
        ),
        (
            "GatewayInvalidTLSConfiguration: no certificateRefs",
            "{name: x, port: 8443, protocol: HTTPS}",
            "",
            bad("InvalidCertificateRef"),
            false,
        ),
        (
            "GatewaySecretMissingReferenceGrant",
            "{name: x, port: 8443, protocol: HTTPS, tls: {certificateRefs: [{name: cert, namespace: apps}]}}",
            "",
            bad("RefNotPermitted"),
            false,
        ),
        (
            "GatewaySecretReferenceGrantSpecific",
            "{name: x, port: 8443, protocol: HTTPS, tls: {certificateRefs: [{name: cert, namespace: apps}]}}",
            grant,
            good.clone(),
            true,
        ),
        (
            "GatewayInvalidRouteKind",
            "{name: x, port: 8443, protocol: HTTP, allowedRoutes: {kinds: [{kind: FooRoute}]}}",
            "",
            bad("InvalidRouteKinds"),
            false,
        ),
        (
            "unsupported protocol",
            "{name: x, port: 8443, protocol: SCTP}",
            "",
            vec![
                ("Accepted", false, "UnsupportedProtocol"),
                RESOLVED,
                ("Conflicted", false, "NoConflicts"),
                ("Programmed", false, "Invalid"),
            ],
            false,
        ),
        (
            "protocol conflict with listener http",
            "{name: x, port: 80, protocol: HTTPS, tls: {certificateRefs: [{name: cert}]}}",
            "",
            vec![
                ACCEPTED,
                RESOLVED,
                ("Conflicted", true, "ProtocolConflict"),
                ("Programmed", false, "Invalid"),
            ],
            false,
        ),
        (
            "hostname conflict with listener http",
            "{name: x, port: 80, protocol: HTTP}",
            "",
            vec![
                ACCEPTED,
                RESOLVED,
                ("Conflicted", true, "HostnameConflict"),
                ("Programmed", false, "Invalid"),
            ],
            false,
        ),
    ] {
        let t = run(&format!(
            "{BASE}{}{extra}",
            gateway(&format!("  - {listener_yaml}\n"))
        ));
        let l = listener(&t, "x");
        assert_eq!(conds(&l.conditions), want, "{test}");
        // Listeners on 80 share the Gateway's port 80 socket; the others have their own.
        if !listener_yaml.contains("port: 80,") {
            assert_eq!(
                t.plane.ports.contains_key(&at(8443)),
                open,
                "{test}: socket opened"
            );
        }
        if open {
            assert!(t.plane.ports[&at(8443)].tls, "{test}");
            assert_eq!(l.supported_kinds.len(), 1, "{test}");
        }
    }
}

#[test]
fn a_gateway_without_addresses_may_not_take_the_ingress_https_port_for_http() {
    let yaml = format!(
        "{BASE}
---
apiVersion: gateway.networking.k8s.io/v1
kind: Gateway
metadata: {{name: gw, namespace: infra}}
spec:
  gatewayClassName: xdp
  listeners:
  - {{name: a, port: 443, protocol: HTTP}}
  - {{name: b, port: 80, protocol: HTTP}}
"
    );
    let t = run(&yaml);
    let a = listener(&t, "a");
    assert_eq!(
        conds(&a.conditions)[0],
        ("Accepted", false, "PortUnavailable")
    );
    let b = listener(&t, "b");
    assert_eq!(
        conds(&b.conditions)[0],
        ACCEPTED,
        "port 80 is shared with the Ingress listener"
    );
    assert!(
        t.plane
            .ports
            .contains_key(&ListenAddr { ip: None, port: 80 })
    );
    assert!(!t.plane.ports.contains_key(&ListenAddr {
        ip: None,
        port: 443
    }));
    assert!(
        t.problems
            .iter()
            .any(|p| p.message.contains("Ingress listener")),
        "{:?}",
        t.problems
    );
}

/// GatewayWithAttachedRoutes: attachedRoutes counts accepted routes per listener.
#[test]
fn attached_routes_are_counted_per_listener() {
    let ok = "  parentRefs: [{name: gw, namespace: infra}]\n  rules: [{backendRefs: [{name: web, port: 8080}]}]\n";
    let t = run(&format!(
        "{BASE}{}{}{}",
        gateway(""),
        route("infra", "a", ok),
        route("apps", "b", ok)
    ));
    let count = |name| listener(&t, name).attached_routes;
    // `a` (infra) attaches to every listener but `foo` (no hostname intersection? routes
    // without hostnames take the listener's), `b` (apps) only where allowed.
    assert_eq!(count("http"), 2);
    assert_eq!(count("same"), 1);
    assert_eq!(
        count("selected"),
        1,
        "a is in infra (no label), b in apps (labelled)"
    );
    assert_eq!(count("foo"), 2);
}

/// HTTPRoutePathMatchOrder and HTTPRouteMatchingAcrossRoutes: the rules of a host come
/// sorted by the spec's precedence; then older routes first.
#[test]
fn precedence_order() {
    let a = "  parentRefs: [{name: gw, sectionName: same}]
  rules:
  - matches: [{path: {type: PathPrefix, value: /}}]
    backendRefs: [{name: web, port: 8080}]
  - matches: [{path: {type: PathPrefix, value: /one/two}}]
    backendRefs: [{name: web, port: 8080}]
  - matches: [{path: {type: Exact, value: /one}}]
    backendRefs: [{name: web, port: 8080}]
  - matches: [{path: {type: PathPrefix, value: /one}, headers: [{name: x, value: y}]}]
    backendRefs: [{name: web, port: 8080}]
  - matches: [{path: {type: PathPrefix, value: /one}, method: GET}]
    backendRefs: [{name: web, port: 8080}]
";
    let t = run(&format!("{BASE}{}{}", gateway(""), route("infra", "a", a)));
    let rules = t.plane.ports[&at(8081)].hosts.any.clone().unwrap();
    let order: Vec<usize> = rules.iter().map(|r| r.rule).collect();
    assert_eq!(order, vec![2, 1, 4, 3, 0]);
    assert!(matches!(rules[0].matches.path, PathMatch::Exact(_)));
}

/// Each hostname entry holds its own rules; the router falls through from a host's entry
/// to the wildcards covering it, then to routes without hostnames (the spec ranks
/// hostnames first, then matches).
#[test]
fn hostname_buckets_fall_through_to_less_specific_ones() {
    let r = |host: &str| {
        format!(
            "  parentRefs: [{{name: gw, sectionName: http}}]\n  hostnames: [{host}]\n  rules: [{{backendRefs: [{{name: web, port: 8080}}]}}]\n"
        )
    };
    let none = "  parentRefs: [{name: gw, sectionName: http}]\n  rules: [{backendRefs: [{name: web, port: 8080}]}]\n";
    let t = run(&format!(
        "{BASE}{}{}{}{}{}",
        gateway(""),
        route("infra", "exact", &r("a.b.example.com")),
        route("infra", "wild", &r("'*.example.com'")),
        route("infra", "wilder", &r("'*.b.example.com'")),
        route("infra", "none", none)
    ));
    let hosts = &t.plane.ports[&at(80)].hosts;
    let names = |rules: &[std::sync::Arc<crate::snapshot::gateway::GatewayRule>]| -> Vec<String> {
        rules.iter().map(|r| r.route.name.clone()).collect()
    };
    assert_eq!(names(&hosts.exact["a.b.example.com"]), ["exact"]);
    assert_eq!(names(&hosts.wildcard[".b.example.com"]), ["wilder"]);
    assert_eq!(names(&hosts.wildcard[".example.com"]), ["wild"]);
    let tried: Vec<Vec<String>> = hosts
        .candidates("a.b.example.com")
        .into_iter()
        .map(|r| names(r))
        .collect();
    assert_eq!(tried, [["exact"], ["wilder"], ["wild"], ["none"]]);
    assert_eq!(names(hosts.any.as_ref().unwrap()), ["none"]);
}

#[test]
fn invalid_filters_and_matches_are_problems_naming_the_field() {
    let body = "  parentRefs: [{name: gw, sectionName: same}]
  rules:
  - matches: [{path: {type: RegularExpression, value: '(unclosed'}}]
    backendRefs: [{name: web, port: 8080}]
  - matches: [{path: {type: Exact, value: /x}}]
    filters: [{type: URLRewrite, urlRewrite: {path: {type: ReplacePrefixMatch, replacePrefixMatch: /y}}}]
    backendRefs: [{name: web, port: 8080}]
  - filters: [{type: ExtensionRef, extensionRef: {group: x, kind: y, name: z}}]
    backendRefs: [{name: web, port: 8080}]
";
    let t = run(&format!(
        "{BASE}{}{}",
        gateway(""),
        route("infra", "r", body)
    ));
    let fields: Vec<(&str, &str)> = t
        .problems
        .iter()
        .map(|p| (p.field.as_deref().unwrap_or(""), p.kind))
        .collect();
    assert_eq!(
        fields,
        vec![
            ("spec.rules[0].matches[0].path.value", "invalid_regex"),
            ("spec.rules[1].filters[0].urlRewrite.path", "invalid_filter"),
            ("spec.rules[2].filters[0].type", "unsupported_filter"),
        ]
    );
    // The regex rule is dropped; the two rules with bad filters stay and answer 500 (no
    // backends).
    let rules = t.plane.ports[&at(8081)].hosts.any.clone().unwrap();
    assert_eq!(rules.len(), 2);
    assert!(rules.iter().all(|r| r.action.backends.is_empty()));
    assert_eq!(
        parent(&t, "infra", "r")[0],
        ACCEPTED,
        "the route as a whole is accepted"
    );
}

#[test]
fn gateway_status_addresses_and_conditions() {
    let t = run(&format!("{BASE}{}", gateway("")));
    let g = &t.statuses.gateways[0];
    assert_eq!(g.addresses.len(), 1);
    assert_eq!(g.addresses[0].value, "127.0.0.10");
    assert_eq!(
        conds(&g.conditions),
        vec![ACCEPTED, ("Programmed", true, "Programmed")]
    );
    assert!(g.conditions.iter().all(|c| c.observed_generation == 3));
    let bad = run(&format!(
        "{BASE}{}",
        gateway("").replace("127.0.0.10", "not-an-ip")
    ));
    assert_eq!(
        conds(&bad.statuses.gateways[0].conditions),
        vec![
            ("Accepted", false, "UnsupportedAddress"),
            ("Programmed", false, "Invalid")
        ]
    );
    assert!(bad.plane.ports.is_empty());
}

/// A readable digest of a plane: per address and host, the rules' route and rule index.
fn digest(plane: &crate::snapshot::gateway::GatewayPlane) -> Vec<String> {
    let mut out = Vec::new();
    for (at, p) in &plane.ports {
        let h = &p.hosts;
        let rules = |rules: &crate::snapshot::gateway::HostRules| {
            rules
                .iter()
                .map(|r| format!("{}#{}", r.route.name, r.rule))
                .collect::<Vec<_>>()
                .join(",")
        };
        for (host, r) in &h.exact {
            out.push(format!("{at} {host} {}", rules(r)));
        }
        for (suffix, r) in &h.wildcard {
            out.push(format!("{at} *{suffix} {}", rules(r)));
        }
        if let Some(r) = &h.any {
            out.push(format!("{at} * {}", rules(r)));
        }
        if h.exact.is_empty() && h.wildcard.is_empty() && h.any.is_none() {
            out.push(format!("{at} (no routes) tls={}", p.tls));
        }
    }
    out
}

/// An Ingress and an HTTPRoute for the same host on the Ingress listener's port: the
/// Gateway serves it and the Ingress gets a Warning; other hosts stay the Ingress's.
#[test]
fn a_gateway_on_the_ingress_port_shadows_ingress_hosts_it_serves() {
    let yaml = format!(
        "{BASE}
---
apiVersion: gateway.networking.k8s.io/v1
kind: Gateway
metadata: {{name: node, namespace: infra}}
spec:
  gatewayClassName: xdp
  listeners: [{{name: http, port: 80, protocol: HTTP}}]
{}
---
apiVersion: networking.k8s.io/v1
kind: Ingress
metadata: {{name: old, namespace: infra}}
spec:
  ingressClassName: xdp
  rules:
  - host: app.example.com
    http: {{paths: [{{path: /, pathType: Prefix, backend: {{service: {{name: web, port: {{number: 8080}}}}}}}}]}}
  - host: other.example.com
    http: {{paths: [{{path: /, pathType: Prefix, backend: {{service: {{name: web, port: {{number: 8080}}}}}}}}]}}
",
        route(
            "infra",
            "new",
            "  parentRefs: [{name: node}]\n  hostnames: [app.example.com]\n  rules: [{backendRefs: [{name: web, port: 8080}]}]\n"
        )
    );
    let mut loader = Loader::default();
    loader.add_file(Path::new("t.yaml"), &yaml);
    let store = loader.store;
    let snapshot = crate::config::build(&store, &Options::default());
    let shadowed: Vec<String> = snapshot
        .problems
        .iter()
        .filter(|p| p.kind == "shadowed_by_gateway")
        .map(ToString::to_string)
        .collect();
    assert_eq!(
        shadowed,
        vec![
            "Ingress infra/old spec.rules: host app.example.com on port 80 is served by a Gateway API route there; this Ingress's rules for it are not used"
        ]
    );
    assert_eq!(
        digest(&snapshot.gateway),
        vec!["*:80 app.example.com new#0"]
    );

    // The incremental engine, fed object by object, agrees with the reference build.
    let mut engine = crate::config::incremental::Engine::new(Options::default());
    for change in store.into_changes("t") {
        engine.apply(change);
    }
    let (incremental, _) = engine.snapshot();
    assert_eq!(digest(&incremental.gateway), digest(&snapshot.gateway));
    assert_eq!(incremental.problems, snapshot.problems);
    assert_eq!(engine.statuses().routes.len(), 1);

    // Deleting the HTTPRoute gives the host back to the Ingress.
    engine.apply(crate::config::Change::Delete(
        crate::config::store::Kind::HTTPRoute,
        ("infra".into(), "new".into()),
    ));
    let (after, _) = engine.snapshot();
    assert!(
        after
            .problems
            .iter()
            .all(|p| p.kind != "shadowed_by_gateway")
    );
    assert_eq!(digest(&after.gateway), vec!["*:80 (no routes) tls=false"]);
}
