//! TCPRoute and UDPRoute tables: manifests in, L4 table, statuses and Problems out. Rows
//! named after a Gateway API conformance test transcribe its expectations
//! (kubernetes-sigs/gateway-api, conformance/tests/<name>.go).

use std::{net::SocketAddr, path::Path};

use crate::{
    config::{
        L4Protocol, Objects, Options, build, gateway::status::Statuses, gateway_statuses,
        store::Store,
    },
    snapshot::{L4Split, Snapshot},
    source::files::Loader,
};

/// Our class; namespaces `infra` and `apps`; TCP Services `v1` (10.0.0.1, 10.0.0.2:7001),
/// `v2` (10.0.0.3:7002), `infra/redis` (10.0.1.1:6379); UDP Service `dns`
/// (10.0.2.1:5353); `apps/far` (10.0.3.1:7003).
const BASE: &str = "
apiVersion: gateway.networking.k8s.io/v1
kind: GatewayClass
metadata: {name: xdp}
spec: {controllerName: xdp-ingress.dev/controller}
---
apiVersion: v1
kind: Namespace
metadata: {name: infra}
---
apiVersion: v1
kind: Namespace
metadata: {name: apps}
---
apiVersion: v1
kind: Service
metadata: {name: v1, namespace: infra}
spec: {ports: [{port: 7001}]}
---
apiVersion: discovery.k8s.io/v1
kind: EndpointSlice
metadata: {name: v1-a, namespace: infra, labels: {kubernetes.io/service-name: v1}}
addressType: IPv4
ports: [{port: 7001}]
endpoints: [{addresses: [10.0.0.1]}, {addresses: [10.0.0.2]}]
---
apiVersion: v1
kind: Service
metadata: {name: v2, namespace: infra}
spec: {ports: [{port: 7002}]}
---
apiVersion: discovery.k8s.io/v1
kind: EndpointSlice
metadata: {name: v2-a, namespace: infra, labels: {kubernetes.io/service-name: v2}}
addressType: IPv4
ports: [{port: 7002}]
endpoints: [{addresses: [10.0.0.3]}]
---
apiVersion: v1
kind: Service
metadata: {name: redis, namespace: infra}
spec: {ports: [{port: 6379}]}
---
apiVersion: discovery.k8s.io/v1
kind: EndpointSlice
metadata: {name: redis-a, namespace: infra, labels: {kubernetes.io/service-name: redis}}
addressType: IPv4
ports: [{port: 6379}]
endpoints: [{addresses: [10.0.1.1]}]
---
apiVersion: v1
kind: Service
metadata: {name: dns, namespace: infra}
spec: {ports: [{port: 53, protocol: UDP}]}
---
apiVersion: discovery.k8s.io/v1
kind: EndpointSlice
metadata: {name: dns-a, namespace: infra, labels: {kubernetes.io/service-name: dns}}
addressType: IPv4
ports: [{port: 5353, protocol: UDP}]
endpoints: [{addresses: [10.0.2.1]}]
---
apiVersion: v1
kind: Service
metadata: {name: far, namespace: apps}
spec: {ports: [{port: 7003}]}
---
apiVersion: discovery.k8s.io/v1
kind: EndpointSlice
metadata: {name: far-a, namespace: apps, labels: {kubernetes.io/service-name: far}}
addressType: IPv4
ports: [{port: 7003}]
endpoints: [{addresses: [10.0.3.1]}]
---
apiVersion: gateway.networking.k8s.io/v1
kind: Gateway
metadata: {name: gw, namespace: infra, generation: 4}
spec:
  gatewayClassName: xdp
  listeners:
  - {name: one, port: 9001, protocol: TCP}
  - {name: two, port: 9002, protocol: TCP}
  - {name: three, port: 9003, protocol: TCP}
  - {name: dns, port: 5300, protocol: UDP}
  - {name: web, port: 8080, protocol: HTTP}
";

fn route(kind: &str, name: &str, body: &str) -> String {
    format!(
        "\n---\napiVersion: gateway.networking.k8s.io/v1alpha2\nkind: {kind}\nmetadata: {{name: {name}, namespace: infra, generation: 2}}\nspec:\n{body}"
    )
}

fn tcp(name: &str, body: &str) -> String {
    route("TCPRoute", name, body)
}

fn opts() -> Options {
    Options {
        tcp_services: Some("infra/tcp".parse().unwrap()),
        udp_services: Some("infra/udp".parse().unwrap()),
        ..Options::default()
    }
}

fn run(yaml: &str) -> (Snapshot, Statuses) {
    let mut loader = Loader::default();
    loader.add_file(Path::new("t.yaml"), yaml);
    let store: Store = loader.store;
    assert!(store.problems.is_empty(), "fixture: {:?}", store.problems);
    let mut snap = build(&store, &opts());
    // Most rows have no ConfigMaps: their Warnings are not what these tables check.
    snap.problems.retain(|p| p.kind != "configmap_not_found");
    let statuses = gateway_statuses(&Objects::from_store(&store), &opts());
    (snap, statuses)
}

fn addrs(list: &[&str]) -> Vec<SocketAddr> {
    list.iter().map(|a| a.parse().unwrap()).collect()
}

/// `(type, status, reason)` of route `name`'s parents.
fn parents(s: &Statuses, kind: &str, name: &str) -> Vec<Vec<C>> {
    let r = s
        .routes
        .iter()
        .find(|r| r.kind == kind && r.key.1 == name)
        .unwrap_or_else(|| panic!("no status for {kind} {name}: {:?}", s.routes));
    r.parents
        .iter()
        .map(|p| {
            p.conditions
                .iter()
                .map(|c| (c.type_, c.status, c.reason))
                .collect()
        })
        .collect()
}

/// `(attachedRoutes, conditions)` of a listener of `infra/gw`.
fn listener(s: &Statuses, name: &str) -> (i32, Vec<C>, Vec<String>) {
    let l = s.gateways[0]
        .listeners
        .iter()
        .find(|l| l.name == name)
        .unwrap_or_else(|| panic!("no listener {name}"));
    (
        l.attached_routes,
        l.conditions
            .iter()
            .map(|c| (c.type_, c.status, c.reason))
            .collect(),
        l.supported_kinds.iter().map(|k| k.kind.clone()).collect(),
    )
}

/// `(type, status, reason)` of a condition.
type C = (&'static str, bool, &'static str);

const ACCEPTED: (&str, bool, &str) = ("Accepted", true, "Accepted");
const RESOLVED: (&str, bool, &str) = ("ResolvedRefs", true, "ResolvedRefs");

/// Attachment by port, sectionName or both, and to every TCP listener when neither is set;
/// the route's parent conditions and the ports it serves.
#[test]
fn attachment_table() {
    #[rustfmt::skip]
    let rows: &[(&str, &str, Vec<C>, &[u16])] = &[
        // TCPRouteParentRefPortAndSectionName (tcproute-parentref-port-and-section-name.go)
        ("TCPRouteParentRefPortAndSectionName: by port", "{name: gw, port: 9001}", vec![ACCEPTED, RESOLVED], &[9001]),
        ("TCPRouteParentRefPortAndSectionName: by sectionName", "{name: gw, sectionName: two}", vec![ACCEPTED, RESOLVED], &[9002]),
        ("TCPRouteParentRefPortAndSectionName: by both", "{name: gw, sectionName: three, port: 9003}", vec![ACCEPTED, RESOLVED], &[9003]),
        // TCPRouteParentRefAttachAll (tcproute-parentref-attach-all.go)
        ("TCPRouteParentRefAttachAll: every TCP listener, not UDP or HTTP", "{name: gw}", vec![ACCEPTED, RESOLVED], &[9001, 9002, 9003]),
        ("sectionName and port that disagree", "{name: gw, sectionName: two, port: 9001}", vec![("Accepted", false, "NoMatchingParent"), RESOLVED], &[]),
        ("no such listener", "{name: gw, sectionName: nope}", vec![("Accepted", false, "NoMatchingParent"), RESOLVED], &[]),
        ("a UDP listener takes no TCPRoute", "{name: gw, sectionName: dns}", vec![("Accepted", false, "NotAllowedByListeners"), RESOLVED], &[]),
        ("an HTTP listener takes no TCPRoute", "{name: gw, sectionName: web}", vec![("Accepted", false, "NotAllowedByListeners"), RESOLVED], &[]),
    ];
    for (rule, parent, want, ports) in rows {
        let yaml = format!(
            "{BASE}{}",
            tcp(
                "r",
                &format!(
                    "  parentRefs: [{parent}]\n  rules: [{{backendRefs: [{{name: redis, port: 6379}}]}}]\n"
                )
            )
        );
        let (snap, s) = run(&yaml);
        assert_eq!(
            parents(&s, "TCPRoute", "r"),
            std::slice::from_ref(want),
            "{rule}"
        );
        let got: Vec<u16> = snap.l4.iter().map(|l| l.port).collect();
        assert_eq!(got, *ports, "{rule}");
        for l in &snap.l4 {
            assert_eq!(l.endpoints, addrs(&["10.0.1.1:6379"]), "{rule}");
            assert_eq!(l.protocol, L4Protocol::Tcp, "{rule}");
        }
    }
}

/// backendRefs: weights become splits; an invalid reference keeps its share, which is
/// rejected, and the route is still Accepted with ResolvedRefs False.
#[test]
fn backend_table() {
    let far_grant = "\n---\napiVersion: gateway.networking.k8s.io/v1beta1\nkind: ReferenceGrant\nmetadata: {name: g, namespace: apps}\nspec:\n  from: [{group: gateway.networking.k8s.io, kind: TCPRoute, namespace: infra}]\n  to: [{group: '', kind: Service}]\n";
    let v1 = addrs(&["10.0.0.1:7001", "10.0.0.2:7001"]);
    let v2 = addrs(&["10.0.0.3:7002"]);
    let split = |w: u32, e: &[SocketAddr]| L4Split {
        weight: w,
        endpoints: e.to_vec(),
    };
    #[rustfmt::skip]
    type Row<'a> = (&'a str, &'a str, &'a str, C, Vec<L4Split>, Vec<&'a str>);
    let rows: Vec<Row<'_>> = vec![
        // TCPRouteWeightedRouting (tcproute-weighted-routing.go): 70/30.
        (
            "TCPRouteWeightedRouting",
            "[{name: v1, port: 7001, weight: 70}, {name: v2, port: 7002, weight: 30}]",
            "",
            RESOLVED,
            vec![split(70, &v1), split(30, &v2)],
            vec![],
        ),
        (
            "default weight 1",
            "[{name: v1, port: 7001}, {name: v2, port: 7002}]",
            "",
            RESOLVED,
            vec![split(1, &v1), split(1, &v2)],
            vec![],
        ),
        (
            "weight 0 keeps its endpoints out of the union",
            "[{name: v1, port: 7001, weight: 0}, {name: v2, port: 7002}]",
            "",
            RESOLVED,
            vec![split(0, &v1), split(1, &v2)],
            vec![],
        ),
        (
            "unknown Service: its share is rejected",
            "[{name: v1, port: 7001}, {name: nope, port: 1}]",
            "",
            ("ResolvedRefs", false, "BackendNotFound"),
            vec![split(1, &v1), split(1, &[])],
            vec!["unknown_service"],
        ),
        (
            "unknown Service port",
            "[{name: v1, port: 7999}]",
            "",
            ("ResolvedRefs", false, "BackendNotFound"),
            vec![split(1, &[])],
            vec!["unknown_service_port"],
        ),
        (
            "no port",
            "[{name: v1}]",
            "",
            ("ResolvedRefs", false, "BackendNotFound"),
            vec![split(1, &[])],
            vec!["unknown_service_port"],
        ),
        (
            "unsupported kind",
            "[{group: example.com, kind: Thing, name: v1, port: 7001}]",
            "",
            ("ResolvedRefs", false, "InvalidKind"),
            vec![split(1, &[])],
            vec!["invalid_backend_kind"],
        ),
        // TCPRouteInvalidReferenceGrant (tcproute-invalid-reference-grant.go): still Accepted,
        // ResolvedRefs False with RefNotPermitted; the share is rejected.
        (
            "TCPRouteInvalidReferenceGrant",
            "[{name: far, namespace: apps, port: 7003}]",
            "",
            ("ResolvedRefs", false, "RefNotPermitted"),
            vec![split(1, &[])],
            vec!["ref_not_permitted"],
        ),
        // TCPRouteReferenceGrant (tcproute-reference-grant.go)
        (
            "TCPRouteReferenceGrant",
            "[{name: far, namespace: apps, port: 7003}]",
            far_grant,
            RESOLVED,
            vec![split(1, &addrs(&["10.0.3.1:7003"]))],
            vec![],
        ),
    ];
    for (rule, refs, extra, resolved, want, kinds) in rows {
        let yaml = format!(
            "{BASE}{extra}{}",
            tcp(
                "r",
                &format!(
                    "  parentRefs: [{{name: gw, sectionName: one}}]\n  rules: [{{backendRefs: {refs}}}]\n"
                )
            )
        );
        let (snap, s) = run(&yaml);
        assert_eq!(
            parents(&s, "TCPRoute", "r"),
            [vec![ACCEPTED, resolved]],
            "{rule}"
        );
        assert_eq!(snap.l4.len(), 1, "{rule}: {:?}", snap.l4);
        assert_eq!(snap.l4[0].split, want, "{rule}");
        let mut union: Vec<SocketAddr> = want
            .iter()
            .filter(|s| s.weight > 0)
            .flat_map(|s| s.endpoints.clone())
            .collect();
        union.sort();
        assert_eq!(snap.l4[0].endpoints, union, "{rule}");
        let got: Vec<&str> = snap.problems.iter().map(|p| p.kind).collect();
        assert_eq!(got, kinds, "{rule}: {:?}", snap.problems);
        for p in &snap.problems {
            assert_eq!(p.object.to_string(), "TCPRoute infra/r", "{rule}");
            let field = p.field.as_deref().unwrap_or_default();
            assert!(
                field.starts_with("spec.rules[0].backendRefs["),
                "{rule}: {field}"
            );
            assert!(
                p.message
                    .ends_with("; its share of connections is rejected"),
                "{rule}"
            );
        }
    }
}

/// UDPRoute (udproute-simple.go): a UDP listener forwards to the route's UDP Service port.
#[test]
fn udp_route_serves_the_udp_listener() {
    let yaml = format!(
        "{BASE}{}",
        route(
            "UDPRoute",
            "u",
            "  parentRefs: [{name: gw}]\n  rules: [{backendRefs: [{name: dns, port: 53}]}]\n"
        )
    );
    let (snap, s) = run(&yaml);
    assert_eq!(parents(&s, "UDPRoute", "u"), [vec![ACCEPTED, RESOLVED]]);
    assert_eq!(snap.l4.len(), 1);
    let l = &snap.l4[0];
    assert_eq!((l.protocol, l.port), (L4Protocol::Udp, 5300));
    assert_eq!(l.endpoints, addrs(&["10.0.2.1:5353"]));
    assert_eq!(listener(&s, "dns").0, 1);
    assert_eq!(listener(&s, "dns").2, ["UDPRoute"]);
    assert_eq!(listener(&s, "one").2, ["TCPRoute"]);
    assert!(snap.problems.is_empty(), "{:?}", snap.problems);
}

/// The ConfigMap wins a port over a TCP/UDP listener: the listener is Conflicted (and not
/// Programmed), names the ConfigMap in its Problem, and the ConfigMap entry is served.
#[test]
fn configmap_wins_a_port_over_a_listener() {
    let cm = "\n---\napiVersion: v1\nkind: ConfigMap\nmetadata: {name: tcp, namespace: infra}\ndata: {\"9001\": infra/v2:7002}\n";
    let yaml = format!(
        "{BASE}{cm}{}",
        tcp(
            "r",
            "  parentRefs: [{name: gw}]\n  rules: [{backendRefs: [{name: redis, port: 6379}]}]\n"
        )
    );
    let (snap, s) = run(&yaml);
    let (attached, conds, _) = listener(&s, "one");
    assert_eq!(attached, 0);
    assert_eq!(
        conds,
        [
            ("Accepted", true, "Accepted"),
            ("ResolvedRefs", true, "ResolvedRefs"),
            ("Conflicted", true, "ConfigMapConflict"),
            ("Programmed", false, "Invalid"),
        ]
    );
    // The route still serves the other TCP listeners; for `one` it is told why not.
    assert_eq!(parents(&s, "TCPRoute", "r"), [vec![ACCEPTED, RESOLVED]]);
    let one = snap
        .problems
        .iter()
        .filter(|p| p.object.kind == "TCPRoute")
        .map(|p| p.message.as_str())
        .collect::<Vec<_>>();
    assert!(one.is_empty(), "{one:?}");
    let ports: Vec<(u16, &str)> = snap
        .l4
        .iter()
        .map(|l| (l.port, l.service.name.as_str()))
        .collect();
    assert_eq!(ports, [(9001, "v2"), (9002, "redis"), (9003, "redis")]);
    let p: Vec<_> = snap
        .problems
        .iter()
        .filter(|p| p.object.kind == "Gateway")
        .map(|p| (p.field.as_deref(), p.message.as_str()))
        .collect();
    assert_eq!(
        p,
        [(
            Some("spec.listeners[0]"),
            "TCP port 9001 is an entry of the --tcp-services-configmap ConfigMap, which wins; remove the entry to serve this listener"
        )]
    );
}

/// Listener rules: protocols, ports the HTTP side holds, one route per listener.
#[test]
fn listener_table() {
    #[rustfmt::skip]
    let rows: &[(&str, &str, (&str, bool, &str))] = &[
        ("TCP on the Ingress HTTP port", "{name: x, port: 80, protocol: TCP}", ("Accepted", false, "PortUnavailable")),
        ("TCP on the health port", "{name: x, port: 10254, protocol: TCP}", ("Accepted", false, "PortUnavailable")),
        ("UDP on the Ingress HTTP port (another transport)", "{name: x, port: 80, protocol: UDP}", ("Accepted", true, "Accepted")),
        ("TCP on the port of the Gateway's own HTTP listener", "{name: x, port: 8080, protocol: TCP}", ("Conflicted", true, "ProtocolConflict")),
        ("UDP beside a TCP listener on one port", "{name: x, port: 9001, protocol: UDP}", ("Accepted", true, "Accepted")),
        ("SCTP", "{name: x, port: 9100, protocol: SCTP}", ("Accepted", false, "UnsupportedProtocol")),
        ("allowedRoutes naming HTTPRoute on a TCP listener", "{name: x, port: 9100, protocol: TCP, allowedRoutes: {kinds: [{kind: HTTPRoute}]}}", ("ResolvedRefs", false, "InvalidRouteKinds")),
    ];
    for (rule, extra, want) in rows {
        let yaml = BASE.replace(
            "  - {name: web, port: 8080, protocol: HTTP}\n",
            &format!("  - {{name: web, port: 8080, protocol: HTTP}}\n  - {extra}\n"),
        );
        let (_, s) = run(&yaml);
        let (_, conds, _) = listener(&s, "x");
        assert!(conds.contains(want), "{rule}: {conds:?}");
    }
}

/// One route per TCP listener: the older route keeps it; the younger is not Accepted.
#[test]
fn the_oldest_route_keeps_a_listener() {
    let body = |svc: &str| {
        format!(
            "  parentRefs: [{{name: gw, sectionName: one}}]\n  rules: [{{backendRefs: [{{name: {svc}, port: {}}}]}}]\n",
            if svc == "v1" { 7001 } else { 6379 }
        )
    };
    let old = tcp("old", &body("v1")).replace(
        "generation: 2}",
        "generation: 2, creationTimestamp: '2024-01-01T00:00:00Z'}",
    );
    let young = tcp("young", &body("redis")).replace(
        "generation: 2}",
        "generation: 2, creationTimestamp: '2025-01-01T00:00:00Z'}",
    );
    let (snap, s) = run(&format!("{BASE}{young}{old}"));
    assert_eq!(parents(&s, "TCPRoute", "old"), [vec![ACCEPTED, RESOLVED]]);
    assert_eq!(
        parents(&s, "TCPRoute", "young"),
        [vec![("Accepted", false, "NotAllowedByListeners"), RESOLVED]]
    );
    assert_eq!(listener(&s, "one").0, 1);
    assert_eq!(snap.l4.len(), 1);
    assert_eq!(snap.l4[0].service.name, "v1");
}

/// A Gateway with addresses serves its L4 ports on them only.
#[test]
fn gateway_addresses_scope_the_service() {
    let yaml = BASE.replace(
        "  gatewayClassName: xdp\n",
        "  gatewayClassName: xdp\n  addresses: [{type: IPAddress, value: 10.9.0.1}, {value: 'fd00::1'}]\n",
    ) + &tcp("r", "  parentRefs: [{name: gw, sectionName: one}]\n  rules: [{backendRefs: [{name: redis, port: 6379}]}]\n");
    let (snap, _) = run(&yaml);
    assert_eq!(snap.l4.len(), 1);
    let want: Vec<std::net::IpAddr> = vec!["10.9.0.1".parse().unwrap(), "fd00::1".parse().unwrap()];
    assert_eq!(snap.l4[0].addrs, want);
}

/// The UDPRoute conformance tests' expectations, on the UDP listener `dns` (5300).
#[test]
fn udp_route_table() {
    let dns = addrs(&["10.0.2.1:5353"]);
    #[rustfmt::skip]
    type Row<'a> = (&'a str, &'a str, &'a str, Vec<C>, Option<Vec<L4Split>>);
    let rows: Vec<Row<'_>> = vec![
        // UDPRouteParentRefPortAndSectionName (udproute-parentref-port-and-section-name.go)
        (
            "UDPRouteParentRefPortAndSectionName: by port",
            "{name: gw, port: 5300}",
            "[{name: dns, port: 53}]",
            vec![ACCEPTED, RESOLVED],
            Some(vec![L4Split {
                weight: 1,
                endpoints: dns.clone(),
            }]),
        ),
        (
            "UDPRouteParentRefPortAndSectionName: by sectionName",
            "{name: gw, sectionName: dns}",
            "[{name: dns, port: 53}]",
            vec![ACCEPTED, RESOLVED],
            Some(vec![L4Split {
                weight: 1,
                endpoints: dns.clone(),
            }]),
        ),
        (
            "UDPRouteParentRefPortAndSectionName: neither (every UDP listener)",
            "{name: gw}",
            "[{name: dns, port: 53}]",
            vec![ACCEPTED, RESOLVED],
            Some(vec![L4Split {
                weight: 1,
                endpoints: dns.clone(),
            }]),
        ),
        (
            "a TCP listener takes no UDPRoute",
            "{name: gw, sectionName: one}",
            "[{name: dns, port: 53}]",
            vec![("Accepted", false, "NotAllowedByListeners"), RESOLVED],
            None,
        ),
        // UDPRouteInvalidCrossNamespaceBackendRef (udproute-invalid-cross-namespace-backend-ref.go):
        // still Accepted; ResolvedRefs False, RefNotPermitted; the share is rejected.
        (
            "UDPRouteInvalidCrossNamespaceBackendRef",
            "{name: gw}",
            "[{name: far, namespace: apps, port: 7003}]",
            vec![ACCEPTED, ("ResolvedRefs", false, "RefNotPermitted")],
            Some(vec![L4Split {
                weight: 1,
                endpoints: vec![],
            }]),
        ),
        // UDPRouteWeightedRouting (udproute-weighted-routing.go): a backend of weight 0 gets nothing.
        (
            "UDPRouteWeightedRouting: weight 0",
            "{name: gw}",
            "[{name: dns, port: 53, weight: 0}, {name: dns, port: 53, weight: 5}]",
            vec![ACCEPTED, RESOLVED],
            Some(vec![
                L4Split {
                    weight: 0,
                    endpoints: dns.clone(),
                },
                L4Split {
                    weight: 5,
                    endpoints: dns.clone(),
                },
            ]),
        ),
    ];
    for (rule, parent, refs, want, split) in rows {
        let yaml = format!(
            "{BASE}{}",
            route(
                "UDPRoute",
                "u",
                &format!("  parentRefs: [{parent}]\n  rules: [{{backendRefs: {refs}}}]\n")
            )
        );
        let (snap, s) = run(&yaml);
        assert_eq!(parents(&s, "UDPRoute", "u"), [want], "{rule}");
        let got: Vec<_> = snap
            .l4
            .iter()
            .map(|l| (l.protocol, l.port, l.split.clone()))
            .collect();
        let want: Vec<_> = split
            .into_iter()
            .map(|s| (L4Protocol::Udp, 5300, s))
            .collect();
        assert_eq!(got, want, "{rule}");
    }
}

/// A route naming only a listener the ConfigMap took is told so.
#[test]
fn a_route_to_a_conflicted_listener_says_why() {
    let cm = "\n---\napiVersion: v1\nkind: ConfigMap\nmetadata: {name: tcp, namespace: infra}\ndata: {\"9001\": infra/v2:7002}\n";
    let yaml = format!(
        "{BASE}{cm}{}",
        tcp(
            "r",
            "  parentRefs: [{name: gw, sectionName: one}]\n  rules: [{backendRefs: [{name: redis, port: 6379}]}]\n"
        )
    );
    let (snap, s) = run(&yaml);
    assert_eq!(
        parents(&s, "TCPRoute", "r"),
        [vec![("Accepted", false, "NotAllowedByListeners"), RESOLVED]]
    );
    let msgs: Vec<_> = snap
        .problems
        .iter()
        .filter(|p| p.object.kind == "TCPRoute")
        .map(|p| (p.field.as_deref(), p.message.as_str()))
        .collect();
    assert_eq!(
        msgs,
        [(
            Some("spec.parentRefs[0]"),
            "listener \"one\" of Gateway infra/gw is not accepted or is in conflict (see its conditions)"
        )]
    );
}
