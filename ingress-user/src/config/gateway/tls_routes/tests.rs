//! TLSRoute translation tables. Rows named after a Gateway API conformance test
//! transcribe it (conformance/tests/tlsroute-*.go and gateway-https-and-tls-passthrough-
//! same-port.go in kubernetes-sigs/gateway-api, v1.5).

use std::path::Path;

use crate::{
    config::{
        Objects, Options,
        backend::Cells,
        fixtures::tls_secret,
        gateway::{Translated, status::Cond, translate},
        ingress::SecretCache,
        store::Store,
    },
    snapshot::{
        gateway::{InvalidBackend, ListenAddr},
        passthrough::{Decision, decide},
    },
    source::files::Loader,
};

const BASE: &str = "
apiVersion: gateway.networking.k8s.io/v1
kind: GatewayClass
metadata: {name: xdp}
spec: {controllerName: xdp-ingress.dev/controller}
---
apiVersion: v1
kind: Service
metadata: {name: tls-backend, namespace: infra}
spec: {ports: [{port: 443}]}
---
apiVersion: discovery.k8s.io/v1
kind: EndpointSlice
metadata: {name: tls-backend-1, namespace: infra, labels: {kubernetes.io/service-name: tls-backend}}
addressType: IPv4
ports: [{port: 8443}]
endpoints: [{addresses: [10.0.0.7]}]
---
apiVersion: v1
kind: Service
metadata: {name: other-ns-backend, namespace: backends}
spec: {ports: [{port: 443}]}
";

/// A Gateway `infra/gw` on 127.0.0.10 with these listeners.
fn gateway(listeners: &[&str]) -> String {
    let mut y = "\n---\napiVersion: gateway.networking.k8s.io/v1\nkind: Gateway\nmetadata: {name: gw, namespace: infra, generation: 2}\nspec:\n  gatewayClassName: xdp\n  addresses: [{type: IPAddress, value: 127.0.0.10}]\n  listeners:\n".to_owned();
    for l in listeners {
        y.push_str(&format!("  - {l}\n"));
    }
    y
}

const PASSTHROUGH: &str = "{name: tls, port: 443, protocol: TLS, tls: {mode: Passthrough}}";

/// A TLSRoute `infra/NAME` in apiVersion `version`.
fn tls_route(version: &str, name: &str, spec: &str) -> String {
    format!(
        "\n---\napiVersion: gateway.networking.k8s.io/{version}\nkind: TLSRoute\nmetadata: {{name: {name}, namespace: infra, generation: 5}}\nspec:\n{spec}"
    )
}

fn run(yaml: &str) -> Translated {
    let mut loader = Loader::default();
    loader.add_file(Path::new("t.yaml"), yaml);
    let mut store: Store = loader.store;
    store.secrets.push(tls_secret("infra", "cert"));
    assert!(store.problems.is_empty(), "fixture: {:?}", store.problems);
    translate(
        &Objects::from_store(&store),
        &Options::default(),
        &mut Cells::default(),
        &mut SecretCache::default(),
    )
}

fn conds(c: &[Cond]) -> Vec<(&'static str, bool, &'static str)> {
    c.iter().map(|c| (c.type_, c.status, c.reason)).collect()
}

fn route_conds(t: &Translated, name: &str) -> Vec<(&'static str, bool, &'static str)> {
    let r = t
        .statuses
        .routes
        .iter()
        .find(|r| r.kind == "TLSRoute" && r.key.1 == name)
        .unwrap_or_else(|| panic!("no status for {name}: {:?}", t.statuses.routes));
    conds(&r.parents[0].conditions)
}

/// (supportedKinds, attachedRoutes, Accepted reason, ResolvedRefs reason) of a listener.
fn listener(t: &Translated, name: &str) -> (Vec<String>, i32, &'static str, &'static str) {
    let l = t.statuses.gateways[0]
        .listeners
        .iter()
        .find(|l| l.name == name)
        .unwrap_or_else(|| panic!("no listener {name}"));
    let reason = |ty: &str| {
        l.conditions
            .iter()
            .find(|c| c.type_ == ty)
            .map_or("", |c| c.reason)
    };
    (
        l.supported_kinds.iter().map(|k| k.kind.clone()).collect(),
        l.attached_routes,
        reason("Accepted"),
        reason("ResolvedRefs"),
    )
}

fn said(t: &Translated, sni: &str) -> String {
    let at = ListenAddr {
        ip: Some("127.0.0.10".parse().unwrap()),
        port: 443,
    };
    let port = t.plane.ports.get(&at);
    match decide(Some(sni), port.map(|p| &**p), None) {
        Decision::Terminate => "terminate".into(),
        Decision::NoRoute => "close".into(),
        Decision::Pass(r) => {
            let targets: Vec<String> = r
                .backends
                .iter()
                .map(|b| match &b.target {
                    Ok(b) => format!("{}*{}", b.service, r.backends.len()),
                    Err(e) => format!("{e:?}"),
                })
                .collect();
            format!("pass {} {}", r.route.name, targets.join(","))
        }
    }
}

const ACCEPTED: (&str, bool, &str) = ("Accepted", true, "Accepted");
const RESOLVED: (&str, bool, &str) = ("ResolvedRefs", true, "ResolvedRefs");

/// TLSRouteSimpleSameNamespace: a TLSRoute for abc.example.com attaches to a Passthrough
/// listener of a Gateway in its namespace; read in v1, v1alpha3 and v1alpha2 alike.
#[test]
fn tls_route_simple_same_namespace() {
    for version in ["v1", "v1alpha3", "v1alpha2"] {
        let t = run(&format!(
            "{BASE}{}{}",
            gateway(&[PASSTHROUGH]),
            tls_route(
                version,
                "gateway-conformance-infra-test",
                "  parentRefs: [{name: gw}]\n  hostnames: [abc.example.com]\n  rules:\n  - backendRefs: [{name: tls-backend, port: 443}]\n"
            )
        ));
        assert_eq!(
            route_conds(&t, "gateway-conformance-infra-test"),
            [ACCEPTED, RESOLVED],
            "{version}"
        );
        assert_eq!(
            listener(&t, "tls"),
            (vec!["TLSRoute".to_owned()], 1, "Accepted", "ResolvedRefs")
        );
        assert_eq!(
            said(&t, "abc.example.com"),
            "pass gateway-conformance-infra-test infra/tls-backend:443*1",
            "{version}"
        );
        assert_eq!(
            said(&t, "other.example.com"),
            "close",
            "{version}: no route for the name"
        );
        assert!(t.problems.is_empty(), "{:?}", t.problems);
    }
}

/// TLSRouteInvalidReferenceGrant: a backendRef to another namespace without a
/// ReferenceGrant: Accepted, ResolvedRefs False RefNotPermitted; connections to it close.
#[test]
fn tls_route_invalid_reference_grant() {
    let t = run(&format!(
        "{BASE}{}{}",
        gateway(&[PASSTHROUGH]),
        tls_route(
            "v1",
            "r",
            "  parentRefs: [{name: gw}]\n  hostnames: [abc.example.com]\n  rules:\n  - backendRefs: [{name: other-ns-backend, namespace: backends, port: 443}]\n"
        )
    ));
    assert_eq!(
        route_conds(&t, "r"),
        [ACCEPTED, ("ResolvedRefs", false, "RefNotPermitted")]
    );
    assert_eq!(
        said(&t, "abc.example.com"),
        format!("pass r {:?}", InvalidBackend::RefNotPermitted)
    );
    assert!(t.problems.iter().any(|p| p.kind == "ref_not_permitted"
        && p.field.as_deref() == Some("spec.rules[0].backendRefs[0]")));
}

/// TLSRouteInvalidNoMatchingListener: HTTP, HTTPS and TLS-for-HTTPRoutes listeners do
/// not take a TLSRoute (NotAllowedByListeners, 0 attached); an unknown sectionName is
/// NoMatchingParent.
#[test]
fn tls_route_invalid_no_matching_listener() {
    let https = "{name: https, port: 443, protocol: HTTPS, tls: {certificateRefs: [{name: cert}]}}";
    let cases = [
        (
            "listener protocol HTTP",
            "{name: http, port: 80, protocol: HTTP}",
            "",
            "NotAllowedByListeners",
        ),
        (
            "listener protocol HTTPS",
            https,
            "",
            "NotAllowedByListeners",
        ),
        (
            "kind not allowed",
            "{name: tls, port: 443, protocol: TLS, tls: {mode: Passthrough}, allowedRoutes: {kinds: [{kind: HTTPRoute}]}}",
            "",
            "NotAllowedByListeners",
        ),
        (
            "sectionName not found",
            PASSTHROUGH,
            ", sectionName: nope",
            "NoMatchingParent",
        ),
    ];
    for (name, l, section, reason) in cases {
        let spec = format!(
            "  parentRefs: [{{name: gw{section}}}]\n  rules:\n  - backendRefs: [{{name: tls-backend, port: 443}}]\n"
        );
        let t = run(&format!(
            "{BASE}{}{}",
            gateway(&[l]),
            tls_route("v1", "r", &spec)
        ));
        assert_eq!(
            route_conds(&t, "r")[0],
            ("Accepted", false, reason),
            "{name}"
        );
        let attached: i32 = t.statuses.gateways[0]
            .listeners
            .iter()
            .map(|l| l.attached_routes)
            .sum();
        assert_eq!(attached, 0, "{name}");
    }
}

/// TLSRouteListenerPassthroughSupportedKinds: a Passthrough listener allowing TLSRoute and
/// TCPRoute lists TLSRoute only, with ResolvedRefs False InvalidRouteKinds. And what we
/// do not serve says so: tls.mode Terminate on a TLS listener (TLSRouteTerminate*, an
/// extended feature) is not accepted, with UnsupportedProtocol.
#[test]
fn tls_listener_kinds_and_modes() {
    let cases = [
        (
            "TLSRouteListenerPassthroughSupportedKinds",
            "{name: tls, port: 443, protocol: TLS, tls: {mode: Passthrough}, allowedRoutes: {kinds: [{kind: TLSRoute}, {kind: TCPRoute}]}}",
            (
                vec!["TLSRoute".to_owned()],
                0,
                "Accepted",
                "InvalidRouteKinds",
            ),
        ),
        (
            "tls.mode Terminate is not supported",
            "{name: tls, port: 443, protocol: TLS, tls: {mode: Terminate, certificateRefs: [{name: cert}]}}",
            (Vec::new(), 0, "UnsupportedProtocol", "ResolvedRefs"),
        ),
        (
            "tls.mode defaults to Terminate",
            "{name: tls, port: 443, protocol: TLS}",
            (Vec::new(), 0, "UnsupportedProtocol", "ResolvedRefs"),
        ),
    ];
    for (name, l, want) in cases {
        let t = run(&format!("{BASE}{}", gateway(&[l])));
        assert_eq!(listener(&t, "tls"), want, "{name}");
    }
}

/// GatewayHTTPSAndTLSPassthroughSamePort: an HTTPS listener for *.example.com and a
/// Passthrough listener for abc.example.com share port 443, both accepted with a route
/// each; abc.example.com is passed through, other names terminated. Two Passthrough
/// listeners with one hostname conflict; HTTP and TLS on one port conflict.
#[test]
fn https_and_passthrough_share_a_port() {
    let https = "{name: https-terminate, port: 443, protocol: HTTPS, hostname: '*.example.com', tls: {certificateRefs: [{name: cert}]}}";
    let pass = "{name: tls-passthrough, port: 443, protocol: TLS, hostname: abc.example.com, tls: {mode: Passthrough}}";
    let http_route = "\n---\napiVersion: gateway.networking.k8s.io/v1\nkind: HTTPRoute\nmetadata: {name: web, namespace: infra}\nspec:\n  parentRefs: [{name: gw, sectionName: https-terminate}]\n  rules:\n  - backendRefs: [{name: tls-backend, port: 443}]\n";
    let t = run(&format!(
        "{BASE}{}{http_route}{}",
        gateway(&[https, pass]),
        tls_route(
            "v1",
            "pass",
            "  parentRefs: [{name: gw, sectionName: tls-passthrough}]\n  rules:\n  - backendRefs: [{name: tls-backend, port: 443, weight: 3}, {name: tls-backend, port: 443, weight: 1}]\n"
        )
    ));
    assert_eq!(
        listener(&t, "https-terminate"),
        (vec!["HTTPRoute".to_owned()], 1, "Accepted", "ResolvedRefs")
    );
    assert_eq!(
        listener(&t, "tls-passthrough"),
        (vec!["TLSRoute".to_owned()], 1, "Accepted", "ResolvedRefs")
    );
    assert_eq!(
        said(&t, "abc.example.com"),
        "pass pass infra/tls-backend:443*2,infra/tls-backend:443*2"
    );
    assert_eq!(said(&t, "other.example.com"), "terminate");
    // The listener without a route hostname takes the listener's: intersection.
    let weights: Vec<u32> = match decide(
        Some("abc.example.com"),
        t.plane.ports.values().next().map(|p| &**p),
        None,
    ) {
        Decision::Pass(r) => r.backends.iter().map(|b| b.weight).collect(),
        other => panic!("{other:?}"),
    };
    assert_eq!(weights, [3, 1]);

    let conflicted = |listeners: &[&str]| {
        let t = run(&format!("{BASE}{}", gateway(listeners)));
        t.statuses.gateways[0]
            .listeners
            .iter()
            .map(|l| {
                l.conditions
                    .iter()
                    .find(|c| c.type_ == "Conflicted")
                    .map_or("", |c| c.reason)
            })
            .collect::<Vec<_>>()
    };
    let same_host = "{name: https-terminate, port: 443, protocol: HTTPS, hostname: abc.example.com, tls: {certificateRefs: [{name: cert}]}}";
    assert_eq!(
        conflicted(&[same_host, pass]),
        ["HostnameConflict", "HostnameConflict"]
    );
    assert_eq!(
        conflicted(&["{name: http, port: 443, protocol: HTTP}", pass]),
        ["ProtocolConflict", "ProtocolConflict"]
    );
}

/// Route hostnames intersect the listener's as for HTTPRoutes (TLSRouteSpec.Hostnames):
/// the oldest route keeps a hostname; a route whose names miss the listener's is
/// NoMatchingListenerHostname.
#[test]
fn hostnames_intersect_and_the_oldest_route_wins() {
    let l = "{name: tls, port: 443, protocol: TLS, hostname: '*.example.com', tls: {mode: Passthrough}}";
    let r = |name: &str, created: &str, hosts: &str| {
        tls_route("v1", name, &format!("  parentRefs: [{{name: gw}}]\n  hostnames: {hosts}\n  rules:\n  - backendRefs: [{{name: tls-backend, port: 443}}]\n"))
            .replace("generation: 5}", &format!("generation: 5, creationTimestamp: '{created}'}}"))
    };
    let t = run(&format!(
        "{BASE}{}{}{}{}",
        gateway(&[l]),
        r(
            "newer",
            "2024-02-01T00:00:00Z",
            "[a.example.com, '*.example.com']"
        ),
        r("older", "2024-01-01T00:00:00Z", "[a.example.com]"),
        r("elsewhere", "2024-01-01T00:00:00Z", "[a.example.org]"),
    ));
    assert_eq!(said(&t, "a.example.com").split(' ').nth(1), Some("older"));
    assert_eq!(said(&t, "b.example.com").split(' ').nth(1), Some("newer"));
    assert_eq!(said(&t, "x.y.example.com").split(' ').nth(1), Some("newer"));
    assert_eq!(said(&t, "a.example.org"), "close");
    assert_eq!(
        route_conds(&t, "elsewhere")[0],
        ("Accepted", false, "NoMatchingListenerHostname")
    );
    assert_eq!(listener(&t, "tls").1, 2);
}
