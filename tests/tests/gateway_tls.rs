//! TLSRoute status through the real binary, in file mode (`xdp-ingress check`) and kube
//! mode (written to the fake API server), transcribing the Gateway API conformance tests
//! TLSRouteSimpleSameNamespace, TLSRouteInvalidReferenceGrant,
//! TLSRouteInvalidNoMatchingListener and TLSRouteListenerPassthroughSupportedKinds
//! (conformance/tests/tlsroute-*.go, v1.5). The traffic itself is tests/tls_passthrough.rs's.

use ingress_tests::gateway::{
    INFRA, Mode, World,
    status::{is_false, is_true},
};

macro_rules! conformance {
    ($($name:ident),* $(,)?) => {$(
        mod $name {
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn file() {
                super::$name(super::Mode::File).await;
            }

            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn kube() {
                super::$name(super::Mode::Kube).await;
            }
        }
    )*};
}

conformance!(tls_route_status);

fn gateway(name: &str, listeners: &[&str]) -> String {
    let mut y = format!(
        "---\napiVersion: gateway.networking.k8s.io/v1\nkind: Gateway\nmetadata: {{name: {name}, namespace: {INFRA}}}\nspec:\n  gatewayClassName: {{CLASS}}\n  addresses: [{{type: IPAddress, value: \"{{ADDR:{name}}}\"}}]\n  listeners:\n"
    );
    for l in listeners {
        y.push_str(&format!("  - {l}\n"));
    }
    y
}

fn tls_route(name: &str, parent: &str, backend: &str) -> String {
    format!(
        "---\napiVersion: gateway.networking.k8s.io/v1\nkind: TLSRoute\nmetadata: {{name: {name}, namespace: {INFRA}}}\nspec:\n  parentRefs: [{parent}]\n  hostnames: [abc.example.com]\n  rules:\n  - backendRefs: [{backend}]\n"
    )
}

async fn tls_route_status(mode: Mode) {
    let passthrough = "{name: tls, port: 443, protocol: TLS, tls: {mode: Passthrough}}";
    let tls_cert = format!(
        "{{certificateRefs: [{{name: tls-validity-checks-certificate, namespace: {INFRA}}}]}}"
    );
    let https = format!("{{name: https, port: 443, protocol: HTTPS, tls: {tls_cert}}}");
    let m = [
        gateway("gateway-tlsroute", &[passthrough]),
        gateway("gateway-http-only", &["{name: http, port: 80, protocol: HTTP}"]),
        gateway("gateway-https-only", &[&https]),
        gateway(
            "gateway-tlsroute-passthrough-supported-kind",
            &["{name: tls-passthrough, port: 443, protocol: TLS, tls: {mode: Passthrough}, allowedRoutes: {kinds: [{kind: TLSRoute}, {kind: TCPRoute}]}}"],
        ),
        gateway(
            "gateway-tls-terminate",
            &[&format!("{{name: tls, port: 443, protocol: TLS, tls: {tls_cert}}}")],
        ),
        tls_route(
            "gateway-conformance-infra-test",
            "{name: gateway-tlsroute}",
            "{name: infra-backend-v1, port: 8080}",
        ),
        tls_route(
            "invalid-reference-grant",
            "{name: gateway-tlsroute}",
            "{name: web-backend, namespace: gateway-conformance-web-backend, port: 8080}",
        ),
        tls_route(
            "tlsroute-no-matching-listener",
            "{name: gateway-http-only}",
            "{name: infra-backend-v1, port: 8080}",
        ),
        tls_route(
            "tlsroute-wrong-protocol",
            "{name: gateway-https-only}",
            "{name: infra-backend-v1, port: 8080}",
        ),
        tls_route(
            "tlsroute-no-matching-section-name",
            "{name: gateway-tlsroute, sectionName: nope}",
            "{name: infra-backend-v1, port: 8080}",
        ),
    ]
    .concat();
    let w = World::start(mode, 60, &m).await;
    let tls = "TLSRoute";
    // TLSRouteSimpleSameNamespace.
    w.kind_route_parent(
        tls,
        INFRA,
        "gateway-conformance-infra-test",
        "gateway-tlsroute",
        &[is_true("Accepted"), is_true("ResolvedRefs")],
    )
    .await;
    // TLSRouteInvalidReferenceGrant.
    w.kind_route_parent(
        tls,
        INFRA,
        "invalid-reference-grant",
        "gateway-tlsroute",
        &[
            is_true("Accepted"),
            is_false("ResolvedRefs", "RefNotPermitted"),
        ],
    )
    .await;
    w.listener_status_kinds("gateway-tlsroute", "tls", 2, &[tls], &[is_true("Accepted")])
        .await;
    // TLSRouteInvalidNoMatchingListener.
    for (route, gw, reason) in [
        (
            "tlsroute-no-matching-listener",
            "gateway-http-only",
            "NotAllowedByListeners",
        ),
        (
            "tlsroute-wrong-protocol",
            "gateway-https-only",
            "NotAllowedByListeners",
        ),
        (
            "tlsroute-no-matching-section-name",
            "gateway-tlsroute",
            "NoMatchingParent",
        ),
    ] {
        w.kind_route_parent(tls, INFRA, route, gw, &[is_false("Accepted", reason)])
            .await;
    }
    w.listener_status_kinds("gateway-http-only", "http", 0, &["HTTPRoute"], &[])
        .await;
    w.listener_status_kinds("gateway-https-only", "https", 0, &["HTTPRoute"], &[])
        .await;
    // TLSRouteListenerPassthroughSupportedKinds.
    w.listener_status_kinds(
        "gateway-tlsroute-passthrough-supported-kind",
        "tls-passthrough",
        0,
        &[tls],
        &[is_false("ResolvedRefs", "InvalidRouteKinds")],
    )
    .await;
    // Ours: TLS termination with TLSRoutes is not supported, and the listener says so.
    w.listener_status_kinds(
        "gateway-tls-terminate",
        "tls",
        0,
        &[],
        &[is_false("Accepted", "UnsupportedProtocol")],
    )
    .await;
    w.run("TLSRoute status", &[]).await;
}
