//! Gateway API, GATEWAY-HTTP profile: the conformance suite's tests
//! (kubernetes-sigs/gateway-api `conformance/tests/*.go` and their manifests, on top of
//! `conformance/base/manifests.yaml`) transcribed as tables and run against the real binary
//! with echo backends, in file mode (`--manifests DIR`) and in kube mode (the fake API
//! server, objects loaded with `kubectl apply`, status written with `--update-status` and
//! read back; in file mode the status is read from `xdp-ingress check`'s report).
//!
//! Each conformance test is a function named after it, run as `NAME::file` and
//! `NAME::kube`; its rows carry the suite's requests and expectations. Rows marked
//! "derived" check a consequence the suite does not spell out as a request (noted where).
//! Every Gateway listens on its own 127.x address on port 80, so these tests need root.
//!
//! Covered: HTTPRouteSimpleSameNamespace, HTTPRouteMatching, HTTPExactPathMatching,
//! HTTPRouteHeaderMatching, HTTPRouteQueryParamMatching, HTTPRouteMethodMatching,
//! HTTPRouteHostnameIntersection, HTTPRouteListenerHostnameMatching,
//! HTTPRouteMatchingAcrossRoutes, HTTPRoutePathMatchOrder, HTTPRouteCrossNamespace,
//! HTTPRouteReferenceGrant, HTTPRouteInvalidCrossNamespaceBackendRef,
//! HTTPRouteInvalidNonExistentBackendRef, HTTPRouteInvalidBackendRefUnknownKind,
//! HTTPRouteInvalidCrossNamespaceParentRef, HTTPRouteInvalidParentRefNotMatchingSectionName,
//! HTTPRouteInvalidParentRefNotMatchingListenerPort, HTTPRouteRequestHeaderModifier,
//! HTTPRouteResponseHeaderModifier, HTTPRouteBackendRequestHeaderModifier,
//! HTTPRouteRedirectHostAndStatus, HTTPRouteRedirectPath, HTTPRouteRedirectPort,
//! HTTPRouteRedirectScheme, HTTPRouteRewriteHost, HTTPRouteRewritePath,
//! HTTPRouteRequestMirror, HTTPRouteWeight, HTTPRouteObservedGenerationBump,
//! HTTPRouteInvalidReferenceGrant, HTTPRoutePartiallyInvalidViaInvalidReferenceGrant,
//! GatewayWithAttachedRoutes, GatewayObservedGenerationBump,
//! GatewayClassObservedGenerationBump, HTTPRouteHTTPSListener,
//! HTTPRouteRequestMultipleMirrors, GatewaySecretReferenceGrantSpecific,
//! GatewaySecretReferenceGrantAllInNamespace, GatewaySecretMissingReferenceGrant,
//! GatewaySecretInvalidReferenceGrant, HTTPRouteRedirectPortAndScheme,
//! GatewayInvalidRouteKind, HTTPRouteDisallowedKind, GatewayModifyListeners,
//! HTTPRouteServiceTypes, HTTPRouteListenerPortMatching, GatewayInvalidTLSConfiguration.

use ingress_tests::{
    gateway::{
        APP, INFRA, Mode, Row, WEB, World, get,
        request::{TEST_ID, send},
        status::{is_false, is_false_any, is_true},
    },
    http_support::TestBackend,
};

/// Each conformance test runs twice: `NAME::file` and `NAME::kube`.
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

conformance!(
    harness_plain_ingress,
    simple_same_namespace,
    matching,
    exact_path_matching,
    header_matching,
    query_param_matching,
    method_matching,
    hostname_intersection,
    listener_hostname_matching,
    matching_across_routes,
    path_match_order,
    cross_namespace,
    reference_grant,
    invalid_cross_namespace_backend_ref,
    invalid_nonexistent_backend_ref,
    invalid_backend_ref_unknown_kind,
    invalid_cross_namespace_parent_ref,
    invalid_parent_ref_not_matching,
    request_header_modifier,
    response_header_modifier,
    backend_request_header_modifier,
    redirect_host_and_status,
    redirect_path,
    redirect_port,
    redirect_scheme,
    rewrite_host,
    rewrite_path,
    request_mirror,
    weight,
    observed_generation_bump,
    invalid_reference_grant,
    partially_invalid_via_invalid_reference_grant,
    gateway_with_attached_routes,
    gateway_observed_generation_bump,
    gatewayclass_observed_generation_bump,
    https_listener,
    request_multiple_mirrors,
    gateway_secret_reference_grant,
    redirect_port_and_scheme,
    gateway_invalid_route_kind,
    disallowed_kind,
    gateway_modify_listeners,
    service_types,
    listener_port_matching,
    gateway_invalid_tls_configuration,
);

/// An HTTPRoute `INFRA/name` attached to `same-namespace` with `rules` (YAML, indented
/// for `spec.rules`).
fn route(name: &str, rules: &str) -> String {
    format!(
        "---\napiVersion: gateway.networking.k8s.io/v1\nkind: HTTPRoute\nmetadata: {{name: {name}, namespace: {INFRA}}}\nspec:\n  parentRefs: [{{name: same-namespace}}]\n  rules:\n{rules}"
    )
}

/// A rule matching path prefix `prefix`, with `filters` (flow YAML list), to
/// `infra-backend-v1` (or no backend when `backend` is empty).
fn prefix_rule(prefix: &str, filters: &str, backend: &str) -> String {
    let refs = if backend.is_empty() {
        String::new()
    } else {
        format!("\n    backendRefs: [{{name: {backend}, port: 8080}}]")
    };
    format!(
        "  - matches: [{{path: {{type: PathPrefix, value: {prefix}}}}}]\n    filters: {filters}{refs}\n"
    )
}

/// Harness check, not a conformance test: a plain Ingress through the same world, client
/// and echo backends (the router's Ingress path works here, so a Gateway row that fails
/// fails for the Gateway).
async fn harness_plain_ingress(mode: Mode) {
    let manifests = format!(
        "---\napiVersion: networking.k8s.io/v1\nkind: Ingress\nmetadata: {{name: plain, namespace: {INFRA}}}\nspec:\n  ingressClassName: xdp\n  rules:\n  - host: plain.example\n    http:\n      paths:\n      - {{path: /, pathType: Prefix, backend: {{service: {{name: infra-backend-v2, port: {{number: 8080}}}}}}}}\n"
    );
    let w = World::start(mode, 1, &manifests).await;
    w.run(
        "harness: plain Ingress",
        &[
            get("/a?b=c")
                .via_ingress()
                .host("plain.example")
                .header("x-sent", "yes")
                .to("infra-backend-v2")
                .saw_header("x-sent", "yes"),
            get("/").via_ingress().host("other.example").status(404),
        ],
    )
    .await;
}

/// Harness check: rows that do not hold fail, each with what was expected and what came.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn harness_wrong_rows_fail_with_expected_and_got() {
    let manifests = format!(
        "---\napiVersion: networking.k8s.io/v1\nkind: Ingress\nmetadata: {{name: plain, namespace: {INFRA}}}\nspec:\n  ingressClassName: xdp\n  rules:\n  - host: plain.example\n    http:\n      paths:\n      - {{path: /, pathType: Prefix, backend: {{service: {{name: infra-backend-v2, port: {{number: 8080}}}}}}}}\n"
    );
    let w = World::start(Mode::File, 31, &manifests).await;
    let at = || get("/x?y=z").via_ingress().host("plain.example");
    let rows = [
        at().to("infra-backend-v1"),
        at().status(404),
        at().to("infra-backend-v2").saw_path("/elsewhere"),
        at().to("infra-backend-v2").saw_host("other.example"),
        at().to("infra-backend-v2").saw_header("x-missing", "v"),
        at().header("x-sent", "1")
            .to("infra-backend-v2")
            .saw_no_header("x-sent"),
        at().to("infra-backend-v2").resp_header("x-nope", "v"),
        at().redirect(302),
        at().to("infra-backend-v2").mirrored_to("infra-backend-v3"),
    ];
    let run = tokio::spawn(async move { w.run("harness: wrong rows", &rows).await });
    let err = run.await.expect_err("every row is wrong, so the run fails");
    let panic = err.into_panic();
    let msg = panic.downcast_ref::<String>().cloned().unwrap_or_default();
    for want in [
        "9 of 9 checks failed",
        "answered by gateway-conformance-infra/infra-backend-v2 (want gateway-conformance-infra/infra-backend-v1)",
        "status 200 (want 404)",
        "backend saw path \"/x?y=z\" (want \"/elsewhere\")",
        "backend saw host \"plain.example\" (want \"other.example\")",
        "backend saw x-missing: None (want \"v\")",
        "backend saw x-sent: \"1\" (want none)",
        "response header x-nope: None (want \"v\")",
        "no Location header",
        "no mirrored copy reached gateway-conformance-infra/infra-backend-v3",
    ] {
        assert!(msg.contains(want), "{want:?} in:\n{msg}");
    }
}

/// Harness check: the echo backend reports the method, path with query, host and headers
/// it received, and sets the response headers asked for.
#[tokio::test]
async fn harness_echo_backend_reports_what_it_received() {
    let echo = TestBackend::start("ns/echo").await;
    let headers = vec![
        (TEST_ID.to_owned(), "42".to_owned()),
        ("x-one".to_owned(), "1".to_owned()),
        (
            "x-echo-set-header".to_owned(),
            "X-Back:b,X-Other:o".to_owned(),
        ),
    ];
    let got = send(echo.addr, "PATCH", "h.example", "/p?q=1", &headers)
        .await
        .expect("echo answers");
    assert_eq!(got.status, 200);
    assert_eq!(got.backend(), Some("ns/echo"));
    assert_eq!(got.headers["x-request-method"], "PATCH");
    assert_eq!(got.headers["x-back"], "b");
    assert_eq!(got.headers["x-other"], "o");
    let seen = echo.seen_with(TEST_ID, "42");
    assert_eq!(seen.len(), 1, "one request recorded: {seen:?}");
    assert_eq!(seen[0].method, "PATCH");
    assert_eq!(seen[0].uri, "/p?q=1");
    assert_eq!(seen[0].header("host").as_deref(), Some("h.example"));
    assert_eq!(seen[0].header("X-One").as_deref(), Some("1"));
}

/// HTTPRouteSimpleSameNamespace (httproute-simple-same-namespace.go).
async fn simple_same_namespace(mode: Mode) {
    let m = route(
        "gateway-conformance-infra-test",
        "  - backendRefs: [{name: infra-backend-v1, port: 8080}]\n",
    );
    let w = World::start(mode, 2, &m).await;
    w.routes_accepted(
        "same-namespace",
        &[(INFRA, "gateway-conformance-infra-test")],
    )
    .await;
    w.run(
        "HTTPRouteSimpleSameNamespace",
        &[get("/").to("infra-backend-v1")],
    )
    .await;
}

/// HTTPRouteMatching (httproute-matching.go).
async fn matching(mode: Mode) {
    let m = route(
        "matching",
        "  - matches: [{path: {type: PathPrefix, value: /}}, {headers: [{name: version, value: one}]}]\n    backendRefs: [{name: infra-backend-v1, port: 8080}]\n  - matches: [{path: {type: PathPrefix, value: /v2}}, {headers: [{name: version, value: two}]}]\n    backendRefs: [{name: infra-backend-v2, port: 8080}]\n",
    );
    let w = World::start(mode, 3, &m).await;
    w.routes_accepted("same-namespace", &[(INFRA, "matching")])
        .await;
    w.run(
        "HTTPRouteMatching",
        &[
            get("/").to("infra-backend-v1"),
            get("/example").to("infra-backend-v1"),
            get("/").header("Version", "one").to("infra-backend-v1"),
            get("/v2").to("infra-backend-v2"),
            get("/v2/example").to("infra-backend-v2"),
            get("/").header("Version", "two").to("infra-backend-v2"),
        ],
    )
    .await;
}

/// HTTPExactPathMatching (httproute-exact-path-matching.go).
async fn exact_path_matching(mode: Mode) {
    let m = route(
        "exact-matching",
        "  - matches: [{path: {type: Exact, value: /one}}]\n    backendRefs: [{name: infra-backend-v1, port: 8080}]\n  - matches: [{path: {type: Exact, value: /two}}]\n    backendRefs: [{name: infra-backend-v2, port: 8080}]\n",
    );
    let w = World::start(mode, 4, &m).await;
    w.routes_accepted("same-namespace", &[(INFRA, "exact-matching")])
        .await;
    w.run(
        "HTTPExactPathMatching",
        &[
            get("/one").to("infra-backend-v1"),
            get("/two").to("infra-backend-v2"),
            get("/").status(404),
            get("/one/example").status(404),
            get("/two/").status(404),
            get("/Two").status(404),
        ],
    )
    .await;
}

/// HTTPRouteHeaderMatching (httproute-header-matching.go).
async fn header_matching(mode: Mode) {
    let m = route(
        "header-matching",
        "  - matches: [{headers: [{name: version, value: one}]}]\n    backendRefs: [{name: infra-backend-v1, port: 8080}]\n  - matches: [{headers: [{name: version, value: two}]}]\n    backendRefs: [{name: infra-backend-v2, port: 8080}]\n  - matches: [{headers: [{name: version, value: two}, {name: color, value: orange}]}]\n    backendRefs: [{name: infra-backend-v1, port: 8080}]\n  - matches: [{headers: [{name: color, value: blue}]}, {headers: [{name: color, value: green}]}]\n    backendRefs: [{name: infra-backend-v1, port: 8080}]\n  - matches: [{headers: [{name: color, value: red}]}, {headers: [{name: color, value: yellow}]}]\n    backendRefs: [{name: infra-backend-v2, port: 8080}]\n",
    );
    let w = World::start(mode, 5, &m).await;
    w.routes_accepted("same-namespace", &[(INFRA, "header-matching")])
        .await;
    w.run(
        "HTTPRouteHeaderMatching",
        &[
            get("/").header("Version", "one").to("infra-backend-v1"),
            get("/").header("Version", "two").to("infra-backend-v2"),
            get("/")
                .header("Version", "two")
                .header("Color", "orange")
                .to("infra-backend-v1"),
            get("/")
                .header("Version", "two")
                .header("Color", "blue")
                .to("infra-backend-v2"),
            get("/").header("Color", "orange").status(404),
            get("/").header("Some-Other-Header", "one").status(404),
            get("/").header("Color", "blue").to("infra-backend-v1"),
            get("/").header("Color", "green").to("infra-backend-v1"),
            get("/").header("Color", "red").to("infra-backend-v2"),
            get("/").header("Color", "yellow").to("infra-backend-v2"),
            get("/").header("Color", "purple").status(404),
        ],
    )
    .await;
}

/// HTTPRouteQueryParamMatching (httproute-query-param-matching.go; extended).
async fn query_param_matching(mode: Mode) {
    let m = route(
        "query-param-matching",
        "  - matches: [{queryParams: [{name: animal, value: whale}]}]\n    backendRefs: [{name: infra-backend-v1, port: 8080}]\n  - matches: [{queryParams: [{name: animal, value: dolphin}]}]\n    backendRefs: [{name: infra-backend-v2, port: 8080}]\n  - matches: [{queryParams: [{name: animal, value: dolphin}, {name: color, value: blue}]}, {queryParams: [{name: ANIMAL, value: Whale}]}]\n    backendRefs: [{name: infra-backend-v3, port: 8080}]\n  - matches: [{path: {type: PathPrefix, value: /path1}, queryParams: [{name: animal, value: whale}]}]\n    backendRefs: [{name: infra-backend-v1, port: 8080}]\n  - matches: [{headers: [{name: version, value: one}], queryParams: [{name: animal, value: whale}]}]\n    backendRefs: [{name: infra-backend-v2, port: 8080}]\n  - matches: [{path: {type: PathPrefix, value: /path2}, headers: [{name: version, value: two}], queryParams: [{name: animal, value: whale}]}]\n    backendRefs: [{name: infra-backend-v3, port: 8080}]\n  - matches: [{path: {type: PathPrefix, value: /path3}, queryParams: [{name: animal, value: shark}]}, {path: {type: PathPrefix, value: /path4}, headers: [{name: version, value: three}], queryParams: [{name: animal, value: kraken}]}]\n    backendRefs: [{name: infra-backend-v1, port: 8080}]\n  - matches: [{path: {type: PathPrefix, value: /path5}}]\n    backendRefs: [{name: infra-backend-v1, port: 8080}]\n  - matches: [{queryParams: [{name: animal, value: hydra}]}]\n    backendRefs: [{name: infra-backend-v2, port: 8080}]\n  - matches: [{headers: [{name: version, value: four}]}]\n    backendRefs: [{name: infra-backend-v3, port: 8080}]\n",
    );
    let w = World::start(mode, 6, &m).await;
    w.routes_accepted("same-namespace", &[(INFRA, "query-param-matching")])
        .await;
    w.run(
        "HTTPRouteQueryParamMatching",
        &[
            get("/?animal=whale").to("infra-backend-v1"),
            get("/?animal=dolphin").to("infra-backend-v2"),
            get("/?animal=dolphin&color=blue").to("infra-backend-v3"),
            get("/?ANIMAL=Whale").to("infra-backend-v3"),
            get("/?animal=whale&otherparam=irrelevant").to("infra-backend-v1"),
            get("/?animal=dolphin&color=yellow").to("infra-backend-v2"),
            get("/?color=blue").status(404),
            get("/?animal=dog").status(404),
            get("/?animal=whaledolphin").status(404),
            get("/").status(404),
            // Combinations with core match types.
            get("/path1?animal=whale").to("infra-backend-v1"),
            get("/?animal=whale")
                .header("version", "one")
                .to("infra-backend-v2"),
            get("/path2?animal=whale")
                .header("version", "two")
                .to("infra-backend-v3"),
            // ORed matches match with either one.
            get("/path3?animal=shark").to("infra-backend-v1"),
            get("/path4?animal=kraken")
                .header("version", "three")
                .to("infra-backend-v1"),
            // ANDed conditions do not match with a subset.
            get("/?animal=shark").status(404),
            get("/path4?animal=kraken").status(404),
            // Precedence across rules.
            get("/path5?animal=hydra").to("infra-backend-v1"),
            get("/?animal=hydra")
                .header("version", "four")
                .to("infra-backend-v3"),
        ],
    )
    .await;
}

/// HTTPRouteMethodMatching (httproute-method-matching.go; extended).
async fn method_matching(mode: Mode) {
    use ingress_tests::gateway::request as req;
    let m = route(
        "method-matching",
        "  - matches: [{method: POST}]\n    backendRefs: [{name: infra-backend-v1, port: 8080}]\n  - matches: [{method: GET}]\n    backendRefs: [{name: infra-backend-v2, port: 8080}]\n  - matches: [{path: {type: PathPrefix, value: /path1}, method: GET}]\n    backendRefs: [{name: infra-backend-v1, port: 8080}]\n  - matches: [{headers: [{name: version, value: one}], method: PUT}]\n    backendRefs: [{name: infra-backend-v2, port: 8080}]\n  - matches: [{path: {type: PathPrefix, value: /path2}, headers: [{name: version, value: two}], method: POST}]\n    backendRefs: [{name: infra-backend-v3, port: 8080}]\n  - matches: [{path: {type: PathPrefix, value: /path3}, method: PATCH}, {path: {type: PathPrefix, value: /path4}, headers: [{name: version, value: three}], method: DELETE}]\n    backendRefs: [{name: infra-backend-v1, port: 8080}]\n  - matches: [{path: {type: PathPrefix, value: /path5}}]\n    backendRefs: [{name: infra-backend-v1, port: 8080}]\n  - matches: [{method: PATCH}]\n    backendRefs: [{name: infra-backend-v2, port: 8080}]\n  - matches: [{headers: [{name: version, value: four}]}]\n    backendRefs: [{name: infra-backend-v3, port: 8080}]\n",
    );
    let w = World::start(mode, 7, &m).await;
    w.routes_accepted("same-namespace", &[(INFRA, "method-matching")])
        .await;
    w.run(
        "HTTPRouteMethodMatching",
        &[
            req("POST", "/").to("infra-backend-v1"),
            req("GET", "/").to("infra-backend-v2"),
            req("HEAD", "/").status(404),
            // Combinations with core match types.
            req("GET", "/path1").to("infra-backend-v1"),
            req("PUT", "/")
                .header("version", "one")
                .to("infra-backend-v2"),
            req("POST", "/path2")
                .header("version", "two")
                .to("infra-backend-v3"),
            // ORed matches.
            req("PATCH", "/path3").to("infra-backend-v1"),
            req("DELETE", "/path4")
                .header("version", "three")
                .to("infra-backend-v1"),
            // ANDed conditions.
            req("PUT", "/").status(404),
            req("DELETE", "/path4").status(404),
            // Precedence.
            req("PATCH", "/path5").to("infra-backend-v1"),
            req("PATCH", "/")
                .header("version", "four")
                .to("infra-backend-v2"),
        ],
    )
    .await;
}

/// HTTPRouteHostnameIntersection (httproute-hostname-intersection.go).
async fn hostname_intersection(mode: Mode) {
    let gw = "httproute-hostname-intersection";
    let mut m = format!(
        "---\napiVersion: gateway.networking.k8s.io/v1\nkind: Gateway\nmetadata: {{name: {gw}, namespace: {INFRA}}}\nspec:\n  gatewayClassName: {{CLASS}}\n  addresses: [{{type: IPAddress, value: \"{{ADDR:{gw}}}\"}}]\n  listeners:\n  - {{name: listener-1, port: 80, protocol: HTTP, hostname: very.specific.com, allowedRoutes: {{namespaces: {{from: Same}}}}}}\n  - {{name: listener-2, port: 80, protocol: HTTP, hostname: \"*.wildcard.io\", allowedRoutes: {{namespaces: {{from: Same}}}}}}\n  - {{name: listener-3, port: 80, protocol: HTTP, hostname: \"*.anotherwildcard.io\", allowedRoutes: {{namespaces: {{from: Same}}}}}}\n"
    );
    for (name, hosts, prefix, backend) in [
        (
            "specific-host-matches-listener-specific-host",
            "[non.matching.com, \"*.nonmatchingwildcard.io\", very.specific.com]",
            "/s1",
            "infra-backend-v1",
        ),
        (
            "specific-host-matches-listener-wildcard-host",
            "[non.matching.com, wildcard.io, foo.wildcard.io, bar.wildcard.io, foo.bar.wildcard.io]",
            "/s2",
            "infra-backend-v2",
        ),
        (
            "wildcard-host-matches-listener-specific-host",
            "[non.matching.com, \"*.specific.com\"]",
            "/s3",
            "infra-backend-v3",
        ),
        (
            "wildcard-host-matches-listener-wildcard-host",
            "[\"*.anotherwildcard.io\"]",
            "/s4",
            "infra-backend-v1",
        ),
        (
            "no-intersecting-hosts",
            "[specific.but.wrong.com, wildcard.io]",
            "/s5",
            "infra-backend-v2",
        ),
    ] {
        m.push_str(&format!(
            "---\napiVersion: gateway.networking.k8s.io/v1\nkind: HTTPRoute\nmetadata: {{name: {name}, namespace: {INFRA}}}\nspec:\n  parentRefs: [{{name: {gw}, namespace: {INFRA}}}]\n  hostnames: {hosts}\n  rules:\n  - matches: [{{path: {{type: PathPrefix, value: {prefix}}}}}]\n    backendRefs: [{{name: {backend}, port: 8080}}]\n"
        ));
    }
    let w = World::start(mode, 8, &m).await;
    w.routes_accepted(
        gw,
        &[
            (INFRA, "specific-host-matches-listener-specific-host"),
            (INFRA, "specific-host-matches-listener-wildcard-host"),
            (INFRA, "wildcard-host-matches-listener-specific-host"),
            (INFRA, "wildcard-host-matches-listener-wildcard-host"),
        ],
    )
    .await;
    w.route_parent(
        INFRA,
        "no-intersecting-hosts",
        gw,
        &[is_false("Accepted", "NoMatchingListenerHostname")],
    )
    .await;
    let at = |host: &str, path: &str| get(path).via(gw).host(host);
    w.run(
        "HTTPRouteHostnameIntersection",
        &[
            at("very.specific.com", "/s1").to("infra-backend-v1"),
            // The port in Host is not part of the hostname match.
            at("very.specific.com:1234", "/s1").to("infra-backend-v1"),
            at("non.matching.com", "/s1").status(404),
            at("foo.nonmatchingwildcard.io", "/s1").status(404),
            at("foo.wildcard.io", "/s1").status(404),
            at("very.specific.com", "/non-matching-prefix").status(404),
            at("foo.wildcard.io", "/s2").to("infra-backend-v2"),
            at("bar.wildcard.io", "/s2").to("infra-backend-v2"),
            at("foo.bar.wildcard.io", "/s2").to("infra-backend-v2"),
            at("non.matching.com", "/s2").status(404),
            at("wildcard.io", "/s2").status(404),
            at("very.specific.com", "/s2").status(404),
            at("foo.wildcard.io", "/non-matching-prefix").status(404),
            at("very.specific.com", "/s3").to("infra-backend-v3"),
            at("non.matching.com", "/s3").status(404),
            at("foo.specific.com", "/s3").status(404),
            at("foo.wildcard.io", "/s3").status(404),
            at("very.specific.com", "/non-matching-prefix").status(404),
            at("foo.anotherwildcard.io", "/s4").to("infra-backend-v1"),
            at("bar.anotherwildcard.io", "/s4").to("infra-backend-v1"),
            at("foo.bar.anotherwildcard.io", "/s4").to("infra-backend-v1"),
            at("anotherwildcard.io", "/s4").status(404),
            at("foo.wildcard.io", "/s4").status(404),
            at("very.specific.com", "/s4").status(404),
            at("foo.anotherwildcard.io", "/non-matching-prefix").status(404),
            // The route whose hostnames intersect no listener.
            at("specific.but.wrong.com", "/s5").status(404),
            at("wildcard.io", "/s5").status(404),
        ],
    )
    .await;
}

/// HTTPRouteListenerHostnameMatching (httproute-listener-hostname-matching.go).
async fn listener_hostname_matching(mode: Mode) {
    let gw = "httproute-listener-hostname-matching";
    let mut m = format!(
        "---\napiVersion: gateway.networking.k8s.io/v1\nkind: Gateway\nmetadata: {{name: {gw}, namespace: {INFRA}}}\nspec:\n  gatewayClassName: {{CLASS}}\n  addresses: [{{type: IPAddress, value: \"{{ADDR:{gw}}}\"}}]\n  listeners:\n  - {{name: listener-1, port: 80, protocol: HTTP, hostname: bar.com, allowedRoutes: {{namespaces: {{from: Same}}}}}}\n  - {{name: listener-2, port: 80, protocol: HTTP, hostname: foo.bar.com, allowedRoutes: {{namespaces: {{from: Same}}}}}}\n  - {{name: listener-3, port: 80, protocol: HTTP, hostname: \"*.bar.com\", allowedRoutes: {{namespaces: {{from: Same}}}}}}\n  - {{name: listener-4, port: 80, protocol: HTTP, hostname: \"*.foo.com\", allowedRoutes: {{namespaces: {{from: Same}}}}}}\n"
    );
    for (name, sections, backend) in [
        ("backend-v1", &["listener-1"][..], "infra-backend-v1"),
        ("backend-v2", &["listener-2"][..], "infra-backend-v2"),
        (
            "backend-v3",
            &["listener-3", "listener-4"][..],
            "infra-backend-v3",
        ),
    ] {
        let parents: Vec<String> = sections
            .iter()
            .map(|s| format!("{{name: {gw}, namespace: {INFRA}, sectionName: {s}}}"))
            .collect();
        m.push_str(&format!(
            "---\napiVersion: gateway.networking.k8s.io/v1\nkind: HTTPRoute\nmetadata: {{name: {name}, namespace: {INFRA}}}\nspec:\n  parentRefs: [{}]\n  rules:\n  - backendRefs: [{{name: {backend}, port: 8080}}]\n",
            parents.join(", ")
        ));
    }
    let w = World::start(mode, 9, &m).await;
    w.routes_accepted(
        gw,
        &[
            (INFRA, "backend-v1"),
            (INFRA, "backend-v2"),
            (INFRA, "backend-v3"),
        ],
    )
    .await;
    for (listener, attached) in [
        ("listener-1", 1),
        ("listener-2", 1),
        ("listener-3", 1),
        ("listener-4", 1),
    ] {
        w.listener_status(
            gw,
            listener,
            attached,
            &[is_true("Accepted"), is_true("Programmed")],
        )
        .await;
    }
    let at = |host: &str| get("/").via(gw).host(host);
    w.run(
        "HTTPRouteListenerHostnameMatching",
        &[
            at("bar.com").to("infra-backend-v1"),
            at("foo.bar.com").to("infra-backend-v2"),
            at("baz.bar.com").to("infra-backend-v3"),
            at("boo.bar.com").to("infra-backend-v3"),
            at("multiple.prefixes.bar.com").to("infra-backend-v3"),
            at("multiple.prefixes.foo.com").to("infra-backend-v3"),
            at("foo.com").status(404),
            at("no.matching.host").status(404),
        ],
    )
    .await;
}

/// HTTPRouteMatchingAcrossRoutes (httproute-matching-across-routes.go).
async fn matching_across_routes(mode: Mode) {
    let m = format!(
        "---\napiVersion: gateway.networking.k8s.io/v1\nkind: HTTPRoute\nmetadata: {{name: matching-part1, namespace: {INFRA}}}\nspec:\n  parentRefs: [{{name: same-namespace}}]\n  hostnames: [example.com, example.net]\n  rules:\n  - matches: [{{path: {{type: PathPrefix, value: /}}}}, {{headers: [{{name: version, value: one}}]}}]\n    backendRefs: [{{name: infra-backend-v1, port: 8080}}]\n---\napiVersion: gateway.networking.k8s.io/v1\nkind: HTTPRoute\nmetadata: {{name: matching-part2, namespace: {INFRA}}}\nspec:\n  parentRefs: [{{name: same-namespace}}]\n  hostnames: [example.com]\n  rules:\n  - matches: [{{path: {{type: PathPrefix, value: /v2}}}}, {{headers: [{{name: version, value: two}}]}}]\n    backendRefs: [{{name: infra-backend-v2, port: 8080}}]\n"
    );
    let w = World::start(mode, 10, &m).await;
    w.routes_accepted(
        "same-namespace",
        &[(INFRA, "matching-part1"), (INFRA, "matching-part2")],
    )
    .await;
    w.run(
        "HTTPRouteMatchingAcrossRoutes",
        &[
            get("/").host("example.com").to("infra-backend-v1"),
            get("/example").host("example.com").to("infra-backend-v1"),
            get("/example").host("example.net").to("infra-backend-v1"),
            get("/example")
                .host("example.com")
                .header("Version", "one")
                .to("infra-backend-v1"),
            get("/v2").host("example.com").to("infra-backend-v2"),
            // The v2 matches are limited to example.com.
            get("/v2").host("example.net").to("infra-backend-v1"),
            get("/v2/example")
                .host("example.com")
                .to("infra-backend-v2"),
            get("/")
                .host("example.com")
                .header("Version", "two")
                .to("infra-backend-v2"),
        ],
    )
    .await;
}

/// HTTPRoutePathMatchOrder (httproute-path-match-order.go).
async fn path_match_order(mode: Mode) {
    let rule = |ty: &str, path: &str, backend: &str| {
        format!(
            "  - matches: [{{path: {{type: {ty}, value: {path}}}}}]\n    backendRefs: [{{name: {backend}, port: 8080}}]\n"
        )
    };
    let rules = [
        rule("Exact", "/match", "infra-backend-v1"),
        rule("Exact", "/match/exact", "infra-backend-v2"),
        rule("Exact", "/match/exact/one", "infra-backend-v3"),
        rule("PathPrefix", "/match/", "infra-backend-v3"),
        rule("PathPrefix", "/match/prefix/", "infra-backend-v1"),
        rule("PathPrefix", "/match/prefix/one", "infra-backend-v2"),
    ]
    .concat();
    let w = World::start(mode, 11, &route("path-matching-order", &rules)).await;
    w.routes_accepted("same-namespace", &[(INFRA, "path-matching-order")])
        .await;
    w.run(
        "HTTPRoutePathMatchOrder",
        &[
            get("/match/exact/one").to("infra-backend-v3"),
            get("/match/exact").to("infra-backend-v2"),
            get("/match").to("infra-backend-v1"),
            get("/match/prefix/one/any").to("infra-backend-v2"),
            get("/match/prefix/any").to("infra-backend-v1"),
            get("/match/any").to("infra-backend-v3"),
        ],
    )
    .await;
}

/// HTTPRouteCrossNamespace (httproute-cross-namespace.go): a route in a backend namespace
/// attaches to `backend-namespaces` (namespaces selected by label).
async fn cross_namespace(mode: Mode) {
    let m = format!(
        "---\napiVersion: gateway.networking.k8s.io/v1\nkind: HTTPRoute\nmetadata: {{name: cross-namespace, namespace: {WEB}}}\nspec:\n  parentRefs: [{{name: backend-namespaces, namespace: {INFRA}}}]\n  rules:\n  - backendRefs: [{{name: web-backend, port: 8080}}]\n"
    );
    let w = World::start(mode, 12, &m).await;
    w.routes_accepted("backend-namespaces", &[(WEB, "cross-namespace")])
        .await;
    w.run(
        "HTTPRouteCrossNamespace",
        &[get("/").via("backend-namespaces").to_in(WEB, "web-backend")],
    )
    .await;
}

/// HTTPRouteReferenceGrant (httproute-reference-grant.go): a v1beta1 ReferenceGrant lets
/// an infra route use `web-backend`.
async fn reference_grant(mode: Mode) {
    let m = format!(
        "---\napiVersion: gateway.networking.k8s.io/v1beta1\nkind: ReferenceGrant\nmetadata: {{name: reference-grant, namespace: {WEB}}}\nspec:\n  from: [{{group: gateway.networking.k8s.io, kind: HTTPRoute, namespace: {INFRA}}}]\n  to: [{{group: \"\", kind: Service, name: web-backend}}]\n{}",
        route(
            "reference-grant",
            &format!("  - backendRefs: [{{name: web-backend, namespace: {WEB}, port: 8080}}]\n")
        )
    );
    let w = World::start(mode, 13, &m).await;
    w.routes_accepted("same-namespace", &[(INFRA, "reference-grant")])
        .await;
    w.run(
        "HTTPRouteReferenceGrant",
        &[get("/").to_in(WEB, "web-backend")],
    )
    .await;
}

/// HTTPRouteInvalidCrossNamespaceBackendRef (httproute-invalid-cross-namespace-backend-ref.go):
/// no ReferenceGrant, so ResolvedRefs is False with RefNotPermitted and requests get 500.
async fn invalid_cross_namespace_backend_ref(mode: Mode) {
    let m = route(
        "invalid-cross-namespace-backend-ref",
        &format!("  - backendRefs: [{{name: web-backend, namespace: {WEB}, port: 8080}}]\n"),
    );
    let w = World::start(mode, 14, &m).await;
    w.class_accepted().await;
    w.route_parent(
        INFRA,
        "invalid-cross-namespace-backend-ref",
        "same-namespace",
        &[
            is_true("Accepted"),
            is_false("ResolvedRefs", "RefNotPermitted"),
        ],
    )
    .await;
    w.run(
        "HTTPRouteInvalidCrossNamespaceBackendRef",
        &[get("/").status(500)],
    )
    .await;
}

/// HTTPRouteInvalidNonExistentBackendRef (httproute-invalid-nonexistent-backendref.go).
async fn invalid_nonexistent_backend_ref(mode: Mode) {
    let m = route(
        "invalid-nonexistent-backend-ref",
        &format!("  - backendRefs: [{{name: nonexistent, namespace: {INFRA}, port: 8080}}]\n"),
    );
    let w = World::start(mode, 15, &m).await;
    w.route_parent(
        INFRA,
        "invalid-nonexistent-backend-ref",
        "same-namespace",
        &[
            is_true("Accepted"),
            is_false("ResolvedRefs", "BackendNotFound"),
        ],
    )
    .await;
    w.run(
        "HTTPRouteInvalidNonExistentBackendRef",
        &[get("/").status(500)],
    )
    .await;
}

/// HTTPRouteInvalidBackendRefUnknownKind (httproute-invalid-backendref-unknown-kind.go).
async fn invalid_backend_ref_unknown_kind(mode: Mode) {
    let m = route(
        "invalid-backend-ref-unknown-kind",
        "  - backendRefs: [{group: unknownkind.example.com, kind: NonExistent, name: infra-backend-v1, port: 8080}]\n",
    );
    let w = World::start(mode, 16, &m).await;
    w.route_parent(
        INFRA,
        "invalid-backend-ref-unknown-kind",
        "same-namespace",
        &[is_true("Accepted"), is_false("ResolvedRefs", "InvalidKind")],
    )
    .await;
    w.run(
        "HTTPRouteInvalidBackendRefUnknownKind",
        &[get("/").status(500)],
    )
    .await;
}

/// HTTPRouteInvalidCrossNamespaceParentRef (httproute-invalid-cross-namespace-parent-ref.go):
/// a web-backend route may not attach to `same-namespace` (from: Same).
async fn invalid_cross_namespace_parent_ref(mode: Mode) {
    let m = format!(
        "---\napiVersion: gateway.networking.k8s.io/v1\nkind: HTTPRoute\nmetadata: {{name: invalid-cross-namespace-parent-ref, namespace: {WEB}}}\nspec:\n  parentRefs: [{{name: same-namespace, namespace: {INFRA}}}]\n  rules:\n  - backendRefs: [{{name: web-backend, port: 8080}}]\n"
    );
    let w = World::start(mode, 17, &m).await;
    w.route_parent(
        WEB,
        "invalid-cross-namespace-parent-ref",
        "same-namespace",
        &[
            is_false("Accepted", "NotAllowedByListeners"),
            is_true("ResolvedRefs"),
        ],
    )
    .await;
    w.listener_status("same-namespace", "http", 0, &[]).await;
    w.run(
        "HTTPRouteInvalidCrossNamespaceParentRef",
        // Derived: the route is not attached, so nothing routes to web-backend.
        &[get("/")
            .status(404)
            .named("derived: GET / is not routed (404)")],
    )
    .await;
}

/// HTTPRouteInvalidParentRefNotMatchingSectionName and
/// HTTPRouteInvalidParentRefNotMatchingListenerPort
/// (httproute-invalid-parentref-not-matching-{section-name,listener-port}.go): Accepted
/// False with NoMatchingParent.
async fn invalid_parent_ref_not_matching(mode: Mode) {
    let m = format!(
        "---\napiVersion: gateway.networking.k8s.io/v1\nkind: HTTPRoute\nmetadata: {{name: httproute-listener-not-matching-section-name, namespace: {INFRA}}}\nspec:\n  parentRefs: [{{name: same-namespace, namespace: {INFRA}, port: 80, sectionName: http1}}]\n  rules:\n  - backendRefs: [{{name: infra-backend-v1, kind: Service, port: 8080}}]\n---\napiVersion: gateway.networking.k8s.io/v1\nkind: HTTPRoute\nmetadata: {{name: httproute-listener-not-matching-route-port, namespace: {INFRA}}}\nspec:\n  parentRefs: [{{name: same-namespace, namespace: {INFRA}, port: 81}}]\n  rules:\n  - backendRefs: [{{name: infra-backend-v1, kind: Service, port: 8080}}]\n"
    );
    let w = World::start(mode, 18, &m).await;
    for name in [
        "httproute-listener-not-matching-section-name",
        "httproute-listener-not-matching-route-port",
    ] {
        w.route_parent(
            INFRA,
            name,
            "same-namespace",
            &[is_false("Accepted", "NoMatchingParent")],
        )
        .await;
    }
    w.run(
        "HTTPRouteInvalidParentRefNotMatching{SectionName,ListenerPort}",
        &[get("/")
            .status(404)
            .named("derived: GET / is not routed (404)")],
    )
    .await;
}

/// The request rows HTTPRouteRequestHeaderModifier and
/// HTTPRouteBackendRequestHeaderModifier share.
fn request_header_rows() -> Vec<Row> {
    let v1 = "infra-backend-v1";
    vec![
        get("/set")
            .header("Some-Other-Header", "val")
            .to(v1)
            .saw_header("Some-Other-Header", "val")
            .saw_header("X-Header-Set", "set-overwrites-values"),
        get("/set")
            .header("Some-Other-Header", "val")
            .header("X-Header-Set", "some-other-value")
            .to(v1)
            .saw_header("Some-Other-Header", "val")
            .saw_header("X-Header-Set", "set-overwrites-values"),
        get("/add")
            .header("Some-Other-Header", "val")
            .to(v1)
            .saw_header("Some-Other-Header", "val")
            .saw_header("X-Header-Add", "add-appends-values"),
        get("/add")
            .header("Some-Other-Header", "val")
            .header("X-Header-Add", "some-other-value")
            .to(v1)
            .saw_header("Some-Other-Header", "val")
            .saw_header("X-Header-Add", "some-other-value,add-appends-values"),
        get("/remove")
            .header("X-Header-Remove", "val")
            .to(v1)
            .saw_no_header("X-Header-Remove"),
        get("/multiple")
            .header("X-Header-Set-2", "set-val-2")
            .header("X-Header-Add-2", "add-val-2")
            .header("X-Header-Remove-2", "remove-val-2")
            .header("Another-Header", "another-header-val")
            .to(v1)
            .saw_header("X-Header-Set-1", "header-set-1")
            .saw_header("X-Header-Set-2", "header-set-2")
            .saw_header("X-Header-Add-1", "header-add-1")
            .saw_header("X-Header-Add-2", "add-val-2,header-add-2")
            .saw_header("X-Header-Add-3", "header-add-3")
            .saw_header("Another-Header", "another-header-val")
            .saw_no_header("X-Header-Remove-1")
            .saw_no_header("X-Header-Remove-2"),
        // The filter names headers canonically, the request in lowercase.
        get("/case-insensitivity")
            .header("x-header-set", "original-val-set")
            .header("x-header-add", "original-val-add")
            .header("x-header-remove", "original-val-remove")
            .header("Another-Header", "another-header-val")
            .to(v1)
            .saw_header("X-Header-Set", "header-set")
            .saw_header("X-Header-Add", "original-val-add,header-add")
            .saw_header("Another-Header", "another-header-val")
            .saw_no_header("X-Header-Remove"),
    ]
}

/// The RequestHeaderModifier filters of request-header-modifier.yaml, by path prefix.
const REQUEST_HEADER_FILTERS: &[(&str, &str)] = &[
    (
        "/set",
        "{set: [{name: X-Header-Set, value: set-overwrites-values}]}",
    ),
    (
        "/add",
        "{add: [{name: X-Header-Add, value: add-appends-values}]}",
    ),
    ("/remove", "{remove: [X-Header-Remove]}"),
    (
        "/multiple",
        "{set: [{name: X-Header-Set-1, value: header-set-1}, {name: X-Header-Set-2, value: header-set-2}], add: [{name: X-Header-Add-1, value: header-add-1}, {name: X-Header-Add-2, value: header-add-2}, {name: X-Header-Add-3, value: header-add-3}], remove: [X-Header-Remove-1, X-Header-Remove-2]}",
    ),
    (
        "/case-insensitivity",
        "{set: [{name: X-Header-Set, value: header-set}], add: [{name: X-Header-Add, value: header-add}], remove: [X-Header-Remove]}",
    ),
];

/// HTTPRouteRequestHeaderModifier (httproute-request-header-modifier.go).
async fn request_header_modifier(mode: Mode) {
    let rules: String = REQUEST_HEADER_FILTERS
        .iter()
        .map(|(prefix, edit)| {
            prefix_rule(
                prefix,
                &format!("[{{type: RequestHeaderModifier, requestHeaderModifier: {edit}}}]"),
                "infra-backend-v1",
            )
        })
        .collect();
    let w = World::start(mode, 19, &route("request-header-modifier", &rules)).await;
    w.routes_accepted("same-namespace", &[(INFRA, "request-header-modifier")])
        .await;
    w.run("HTTPRouteRequestHeaderModifier", &request_header_rows())
        .await;
}

/// HTTPRouteBackendRequestHeaderModifier (httproute-request-header-modifier-backend.go):
/// the same filters on the backendRef instead of the rule.
async fn backend_request_header_modifier(mode: Mode) {
    let rules: String = REQUEST_HEADER_FILTERS
        .iter()
        .map(|(prefix, edit)| {
            format!(
                "  - matches: [{{path: {{type: PathPrefix, value: {prefix}}}}}]\n    backendRefs:\n    - name: infra-backend-v1\n      port: 8080\n      filters: [{{type: RequestHeaderModifier, requestHeaderModifier: {edit}}}]\n"
            )
        })
        .collect();
    let w = World::start(mode, 20, &route("request-header-modifier", &rules)).await;
    w.routes_accepted("same-namespace", &[(INFRA, "request-header-modifier")])
        .await;
    w.run(
        "HTTPRouteBackendRequestHeaderModifier",
        &request_header_rows(),
    )
    .await;
}

/// HTTPRouteResponseHeaderModifier (httproute-response-header-modifier.go; extended). The
/// backend sets response headers on request (the suite's `BackendSetResponseHeaders`).
async fn response_header_modifier(mode: Mode) {
    let resp =
        |edit: &str| format!("[{{type: ResponseHeaderModifier, responseHeaderModifier: {edit}}}]");
    let rules = [
        prefix_rule(
            "/set",
            &resp("{set: [{name: X-Header-Set, value: set-overwrites-values}]}"),
            "infra-backend-v1",
        ),
        prefix_rule(
            "/add",
            &resp("{add: [{name: X-Header-Add, value: add-appends-values}]}"),
            "infra-backend-v1",
        ),
        prefix_rule("/remove", &resp("{remove: [X-Header-Remove]}"), "infra-backend-v1"),
        prefix_rule(
            "/multiple",
            &resp("{set: [{name: X-Header-Set-1, value: header-set-1}, {name: X-Header-Set-2, value: header-set-2}], add: [{name: X-Header-Add-1, value: header-add-1}, {name: X-Header-Add-2, value: header-add-2}, {name: X-Header-Add-3, value: header-add-3}], remove: [X-Header-Remove-1, X-Header-Remove-2]}"),
            "infra-backend-v1",
        ),
        prefix_rule(
            "/case-insensitivity",
            &resp("{set: [{name: X-Header-Set, value: header-set}], add: [{name: X-Header-Add, value: header-add}, {name: x-lowercase-add, value: lowercase-add}, {name: x-Mixedcase-ADD-1, value: mixedcase-add-1}, {name: X-mixeDcase-add-2, value: mixedcase-add-2}, {name: X-UPPERCASE-ADD, value: uppercase-add}], remove: [X-Header-Remove]}"),
            "infra-backend-v1",
        ),
        prefix_rule(
            "/response-and-request-header-modifiers",
            "[{type: ResponseHeaderModifier, responseHeaderModifier: {set: [{name: X-Header-Set-1, value: header-set-1}, {name: X-Header-Set-2, value: header-set-2}], add: [{name: X-Header-Add-1, value: header-add-1}, {name: X-Header-Add-2, value: header-add-2}], remove: [X-Header-Remove-1, X-Header-Remove-2]}}, {type: RequestHeaderModifier, requestHeaderModifier: {set: [{name: X-Header-Set, value: set-overwrites-values}], add: [{name: X-Header-Add, value: header-val-1}, {name: X-Header-Add-Append, value: header-val-2}], remove: [X-Header-Remove]}}]",
            "infra-backend-v1",
        ),
    ]
    .concat();
    let w = World::start(mode, 21, &route("response-header-modifier", &rules)).await;
    w.routes_accepted("same-namespace", &[(INFRA, "response-header-modifier")])
        .await;
    let v1 = "infra-backend-v1";
    w.run(
        "HTTPRouteResponseHeaderModifier",
        &[
            get("/set")
                .backend_sets("Some-Other-Header", "val")
                .to(v1)
                .resp_header("Some-Other-Header", "val")
                .resp_header("X-Header-Set", "set-overwrites-values"),
            get("/set")
                .backend_sets("Some-Other-Header", "val")
                .backend_sets("X-Header-Set", "some-other-value")
                .to(v1)
                .resp_header("Some-Other-Header", "val")
                .resp_header("X-Header-Set", "set-overwrites-values"),
            get("/add")
                .backend_sets("Some-Other-Header", "val")
                .to(v1)
                .resp_header("Some-Other-Header", "val")
                .resp_header("X-Header-Add", "add-appends-values"),
            get("/add")
                .backend_sets("Some-Other-Header", "val")
                .backend_sets("X-Header-Add", "some-other-value")
                .to(v1)
                .resp_header("Some-Other-Header", "val")
                .resp_header("X-Header-Add", "some-other-value,add-appends-values"),
            get("/remove")
                .backend_sets("X-Header-Remove", "val")
                .to(v1)
                .resp_no_header("X-Header-Remove"),
            get("/multiple")
                .backend_sets("X-Header-Set-2", "set-val-2")
                .backend_sets("X-Header-Add-2", "add-val-2")
                .backend_sets("X-Header-Remove-2", "remove-val-2")
                .backend_sets("Another-Header", "another-header-val")
                .backend_sets("X-Header-Remove-1", "val")
                .to(v1)
                .resp_header("X-Header-Set-1", "header-set-1")
                .resp_header("X-Header-Set-2", "header-set-2")
                .resp_header("X-Header-Add-1", "header-add-1")
                .resp_header("X-Header-Add-2", "add-val-2,header-add-2")
                .resp_header("X-Header-Add-3", "header-add-3")
                .resp_header("Another-Header", "another-header-val")
                .resp_no_header("X-Header-Remove-1")
                .resp_no_header("X-Header-Remove-2"),
            get("/case-insensitivity")
                .backend_sets("x-header-set", "original-val-set")
                .backend_sets("x-header-add", "original-val-add")
                .backend_sets("x-header-remove", "original-val-remove")
                .backend_sets("Another-Header", "another-header-val")
                .to(v1)
                .resp_header("X-Header-Set", "header-set")
                .resp_header("X-Header-Add", "original-val-add,header-add")
                .resp_header("X-Lowercase-Add", "lowercase-add")
                .resp_header("X-Mixedcase-Add-1", "mixedcase-add-1")
                .resp_header("X-Mixedcase-Add-2", "mixedcase-add-2")
                .resp_header("X-Uppercase-Add", "uppercase-add")
                .resp_header("Another-Header", "another-header-val")
                .resp_no_header("X-Header-Remove"),
            get("/response-and-request-header-modifiers")
                .header("X-Header-Remove", "remove-val")
                .header("X-Header-Add-Append", "append-val-1")
                .header("X-Header-Echo", "echo")
                .backend_sets("X-Header-Set-2", "set-val-2")
                .backend_sets("X-Header-Add-2", "add-val-2")
                .backend_sets("X-Header-Remove-2", "remove-val-2")
                .backend_sets("Another-Header", "another-header-val")
                .backend_sets("X-Header-Remove-1", "remove-val-1")
                .backend_sets("X-Header-Echo", "echo")
                .to(v1)
                .saw_header("X-Header-Add", "header-val-1")
                .saw_header("X-Header-Set", "set-overwrites-values")
                .saw_header("X-Header-Add-Append", "append-val-1,header-val-2")
                .saw_header("X-Header-Echo", "echo")
                .saw_no_header("X-Header-Remove")
                .resp_header("X-Header-Set-1", "header-set-1")
                .resp_header("X-Header-Set-2", "header-set-2")
                .resp_header("X-Header-Add-1", "header-add-1")
                .resp_header("X-Header-Add-2", "add-val-2,header-add-2")
                .resp_header("Another-Header", "another-header-val")
                .resp_header("X-Header-Echo", "echo")
                .resp_no_header("X-Header-Remove-1")
                .resp_no_header("X-Header-Remove-2"),
        ],
    )
    .await;
}

/// A RequestRedirect filter list with `fields` (flow YAML mapping entries).
fn redirect(fields: &str) -> String {
    format!("[{{type: RequestRedirect, requestRedirect: {{{fields}}}}}]")
}

/// HTTPRouteRedirectHostAndStatus (httproute-redirect-host-and-status.go).
async fn redirect_host_and_status(mode: Mode) {
    let rules = [
        prefix_rule("/hostname-redirect", &redirect("hostname: example.org"), ""),
        prefix_rule(
            "/host-and-status",
            &redirect("statusCode: 301, hostname: example.org"),
            "",
        ),
    ]
    .concat();
    let w = World::start(mode, 22, &route("redirect-host-and-status", &rules)).await;
    w.routes_accepted("same-namespace", &[(INFRA, "redirect-host-and-status")])
        .await;
    w.run(
        "HTTPRouteRedirectHostAndStatus",
        &[
            get("/hostname-redirect")
                .redirect(302)
                .location_host("example.org"),
            get("/host-and-status")
                .redirect(301)
                .location_host("example.org"),
        ],
    )
    .await;
}

/// HTTPRouteRedirectPath (httproute-redirect-path.go; extended).
async fn redirect_path(mode: Mode) {
    let prefix = "path: {type: ReplacePrefixMatch, replacePrefixMatch: /replacement-prefix}";
    let rules = [
        prefix_rule("/original-prefix", &redirect(prefix), ""),
        prefix_rule(
            "/full",
            &redirect("path: {type: ReplaceFullPath, replaceFullPath: /full-path-replacement}"),
            "",
        ),
        prefix_rule(
            "/path-and-host",
            &redirect(&format!("hostname: example.org, {prefix}")),
            "",
        ),
        prefix_rule(
            "/path-and-status",
            &redirect(&format!("{prefix}, statusCode: 301")),
            "",
        ),
        prefix_rule(
            "/full-path-and-host",
            &redirect("hostname: example.org, path: {type: ReplaceFullPath, replaceFullPath: /replacement-full}"),
            "",
        ),
        prefix_rule(
            "/full-path-and-status",
            &redirect("path: {type: ReplaceFullPath, replaceFullPath: /replacement-full}, statusCode: 301"),
            "",
        ),
    ]
    .concat();
    let w = World::start(mode, 23, &route("redirect-path", &rules)).await;
    w.routes_accepted("same-namespace", &[(INFRA, "redirect-path")])
        .await;
    w.run(
        "HTTPRouteRedirectPath",
        &[
            get("/original-prefix/lemon")
                .redirect(302)
                .location_path("/replacement-prefix/lemon"),
            get("/full/path/original")
                .redirect(302)
                .location_path("/full-path-replacement"),
            get("/path-and-host")
                .redirect(302)
                .location_host("example.org")
                .location_path("/replacement-prefix"),
            get("/path-and-status")
                .redirect(301)
                .location_path("/replacement-prefix"),
            get("/full-path-and-host")
                .redirect(302)
                .location_host("example.org")
                .location_path("/replacement-full"),
            get("/full-path-and-status")
                .redirect(301)
                .location_path("/replacement-full"),
        ],
    )
    .await;
}

/// HTTPRouteRedirectPort (httproute-redirect-port.go; extended).
async fn redirect_port(mode: Mode) {
    let rules = [
        prefix_rule("/port", &redirect("port: 8083"), ""),
        prefix_rule(
            "/port-and-host",
            &redirect("hostname: example.org, port: 8083"),
            "",
        ),
        prefix_rule(
            "/port-and-status",
            &redirect("port: 8083, statusCode: 301"),
            "",
        ),
        prefix_rule(
            "/port-and-host-and-status",
            &redirect("port: 8083, hostname: example.org, statusCode: 302"),
            "",
        ),
    ]
    .concat();
    let w = World::start(mode, 24, &route("redirect-port", &rules)).await;
    w.routes_accepted("same-namespace", &[(INFRA, "redirect-port")])
        .await;
    w.run(
        "HTTPRouteRedirectPort",
        &[
            get("/port").redirect(302).location_port("8083"),
            get("/port-and-host")
                .redirect(302)
                .location_host("example.org")
                .location_port("8083"),
            get("/port-and-status").redirect(301).location_port("8083"),
            get("/port-and-host-and-status")
                .redirect(302)
                .location_port("8083")
                .location_host("example.org"),
        ],
    )
    .await;
}

/// HTTPRouteRedirectScheme (httproute-redirect-scheme.go; extended).
async fn redirect_scheme(mode: Mode) {
    let rules = [
        prefix_rule("/scheme", &redirect("scheme: https"), ""),
        prefix_rule(
            "/scheme-and-host",
            &redirect("hostname: example.org, scheme: https"),
            "",
        ),
        prefix_rule(
            "/scheme-and-status",
            &redirect("scheme: https, statusCode: 301"),
            "",
        ),
        prefix_rule(
            "/scheme-and-host-and-status",
            &redirect("scheme: https, statusCode: 302, hostname: example.org"),
            "",
        ),
    ]
    .concat();
    let w = World::start(mode, 25, &route("redirect-scheme", &rules)).await;
    w.routes_accepted("same-namespace", &[(INFRA, "redirect-scheme")])
        .await;
    w.run(
        "HTTPRouteRedirectScheme",
        &[
            get("/scheme").redirect(302).location_scheme("https"),
            get("/scheme-and-host")
                .redirect(302)
                .location_host("example.org")
                .location_scheme("https"),
            get("/scheme-and-status")
                .redirect(301)
                .location_scheme("https"),
            get("/scheme-and-host-and-status")
                .redirect(302)
                .location_scheme("https")
                .location_host("example.org"),
        ],
    )
    .await;
}

/// The filters that rewrite request headers in the rewrite and mirror tests.
const MODIFY_HEADERS: &str = "{type: RequestHeaderModifier, requestHeaderModifier: {set: [{name: X-Header-Set, value: set-overwrites-values}], add: [{name: X-Header-Add, value: header-val-1}, {name: X-Header-Add-Append, value: header-val-2}], remove: [X-Header-Remove]}}";

/// HTTPRouteRewriteHost (httproute-rewrite-host.go; extended).
async fn rewrite_host(mode: Mode) {
    let m = format!(
        "---\napiVersion: gateway.networking.k8s.io/v1\nkind: HTTPRoute\nmetadata: {{name: rewrite-host, namespace: {INFRA}}}\nspec:\n  hostnames: [rewrite.example]\n  parentRefs: [{{name: same-namespace}}]\n  rules:\n{}  - filters: [{{type: URLRewrite, urlRewrite: {{hostname: example.org}}}}]\n    backendRefs: [{{name: infra-backend-v2, port: 8080}}]\n{}",
        prefix_rule(
            "/one",
            "[{type: URLRewrite, urlRewrite: {hostname: one.example.org}}]",
            "infra-backend-v1"
        ),
        prefix_rule(
            "/rewrite-host-and-modify-headers",
            &format!(
                "[{{type: URLRewrite, urlRewrite: {{hostname: test.example.org}}}}, {MODIFY_HEADERS}]"
            ),
            "infra-backend-v2"
        ),
    );
    let w = World::start(mode, 26, &m).await;
    w.routes_accepted("same-namespace", &[(INFRA, "rewrite-host")])
        .await;
    w.run(
        "HTTPRouteRewriteHost",
        &[
            get("/one")
                .host("rewrite.example")
                .to("infra-backend-v1")
                .saw_host("one.example.org"),
            get("/two")
                .host("rewrite.example")
                .to("infra-backend-v2")
                .saw_host("example.org"),
            get("/rewrite-host-and-modify-headers")
                .host("rewrite.example")
                .header("X-Header-Remove", "remove-val")
                .header("X-Header-Add-Append", "append-val-1")
                .to("infra-backend-v2")
                .saw_host("test.example.org")
                .saw_header("X-Header-Add", "header-val-1")
                .saw_header("X-Header-Add-Append", "append-val-1,header-val-2")
                .saw_header("X-Header-Set", "set-overwrites-values")
                .saw_no_header("X-Header-Remove"),
        ],
    )
    .await;
}

/// HTTPRouteRewritePath (httproute-rewrite-path.go; extended).
async fn rewrite_path(mode: Mode) {
    let rw = |path: &str| format!("{{type: URLRewrite, urlRewrite: {{path: {path}}}}}");
    let rules = [
        prefix_rule(
            "/prefix/one",
            &format!(
                "[{}]",
                rw("{type: ReplacePrefixMatch, replacePrefixMatch: /one}")
            ),
            "infra-backend-v1",
        ),
        prefix_rule(
            "/strip-prefix",
            &format!(
                "[{}]",
                rw("{type: ReplacePrefixMatch, replacePrefixMatch: /}")
            ),
            "infra-backend-v1",
        ),
        prefix_rule(
            "/full/one",
            &format!("[{}]", rw("{type: ReplaceFullPath, replaceFullPath: /one}")),
            "infra-backend-v1",
        ),
        prefix_rule(
            "/full/rewrite-path-and-modify-headers",
            &format!(
                "[{}, {MODIFY_HEADERS}]",
                rw("{type: ReplaceFullPath, replaceFullPath: /test}")
            ),
            "infra-backend-v1",
        ),
        prefix_rule(
            "/prefix/rewrite-path-and-modify-headers",
            &format!(
                "[{}, {MODIFY_HEADERS}]",
                rw("{type: ReplacePrefixMatch, replacePrefixMatch: /prefix}")
            ),
            "infra-backend-v1",
        ),
    ]
    .concat();
    let w = World::start(mode, 27, &route("rewrite-path", &rules)).await;
    w.routes_accepted("same-namespace", &[(INFRA, "rewrite-path")])
        .await;
    let v1 = "infra-backend-v1";
    w.run(
        "HTTPRouteRewritePath",
        &[
            get("/prefix/one/two").to(v1).saw_path("/one/two"),
            get("/strip-prefix/three").to(v1).saw_path("/three"),
            get("/strip-prefix").to(v1).saw_path("/"),
            get("/full/one/two").to(v1).saw_path("/one"),
            get("/full/rewrite-path-and-modify-headers/test")
                .header("X-Header-Remove", "remove-val")
                .header("X-Header-Add-Append", "append-val-1")
                .header("X-Header-Set", "set-val")
                .to(v1)
                .saw_path("/test")
                .saw_header("X-Header-Add", "header-val-1")
                .saw_header("X-Header-Add-Append", "append-val-1,header-val-2")
                .saw_header("X-Header-Set", "set-overwrites-values")
                .saw_no_header("X-Header-Remove"),
            get("/prefix/rewrite-path-and-modify-headers/one")
                .header("X-Header-Remove", "remove-val")
                .header("X-Header-Add-Append", "append-val-1")
                .header("X-Header-Set", "set-val")
                .to(v1)
                .saw_path("/prefix/one")
                .saw_header("X-Header-Add", "header-val-1")
                .saw_header("X-Header-Add-Append", "append-val-1,header-val-2")
                .saw_header("X-Header-Set", "set-overwrites-values")
                .saw_no_header("X-Header-Remove"),
        ],
    )
    .await;
}

/// HTTPRouteRequestMirror (httproute-request-mirror.go; extended).
async fn request_mirror(mode: Mode) {
    let mirror = format!(
        "{{type: RequestMirror, requestMirror: {{backendRef: {{name: infra-backend-v2, namespace: {INFRA}, port: 8080}}}}}}"
    );
    let rules = [
        prefix_rule("/mirror", &format!("[{mirror}]"), "infra-backend-v1"),
        prefix_rule(
            "/mirror-and-modify-headers",
            &format!("[{MODIFY_HEADERS}, {mirror}]"),
            "infra-backend-v1",
        ),
    ]
    .concat();
    let w = World::start(mode, 28, &route("request-mirror", &rules)).await;
    w.class_accepted().await;
    w.gateway_programmed("same-namespace").await;
    w.route_parent(
        INFRA,
        "request-mirror",
        "same-namespace",
        &[is_true("Accepted")],
    )
    .await;
    w.run(
        "HTTPRouteRequestMirror",
        &[
            get("/mirror")
                .to("infra-backend-v1")
                .mirrored_to("infra-backend-v2"),
            get("/mirror-and-modify-headers")
                .header("X-Header-Remove", "remove-val")
                .header("X-Header-Add-Append", "append-val-1")
                .to("infra-backend-v1")
                .saw_header("X-Header-Add", "header-val-1")
                .saw_header("X-Header-Add-Append", "append-val-1,header-val-2")
                .saw_header("X-Header-Set", "set-overwrites-values")
                .saw_no_header("X-Header-Remove")
                .mirrored_to("infra-backend-v2"),
        ],
    )
    .await;
}

/// HTTPRouteWeight (httproute-weight.go): 500 requests split 70/30/0 within 5 points,
/// up to 10 attempts as in the suite.
async fn weight(mode: Mode) {
    let m = route(
        "weighted-backends",
        "  - backendRefs: [{name: infra-backend-v1, port: 8080, weight: 70}, {name: infra-backend-v2, port: 8080, weight: 30}, {name: infra-backend-v3, port: 8080, weight: 0}]\n",
    );
    let w = World::start(mode, 29, &m).await;
    w.routes_accepted("same-namespace", &[(INFRA, "weighted-backends")])
        .await;
    // The suite first waits for one 200.
    w.run(
        "HTTPRouteWeight",
        &[get("/").named("GET / answers 200").from_any_backend()],
    )
    .await;
    let want = [
        (format!("{INFRA}/infra-backend-v1"), 0.7),
        (format!("{INFRA}/infra-backend-v2"), 0.3),
        (format!("{INFRA}/infra-backend-v3"), 0.0),
    ];
    let mut attempts = Vec::new();
    for _ in 0..10 {
        let seen = w.distribution(&get("/"), 500).await;
        let total: usize = seen.values().sum();
        let mut errors = Vec::new();
        if seen.keys().any(|k| !want.iter().any(|(b, _)| b == k)) {
            errors.push(format!("unexpected answers {seen:?}"));
        }
        for (backend, share) in &want {
            #[expect(clippy::cast_precision_loss, reason = "counts up to 500")]
            let got = *seen.get(backend).unwrap_or(&0) as f64 / total as f64;
            if (got - share).abs() > 0.05 {
                errors.push(format!(
                    "{backend}: {got:.3} of requests (want {share} ± 0.05)"
                ));
            }
        }
        if errors.is_empty() {
            println!("PASS HTTPRouteWeight ({mode:?}) distribution {seen:?}");
            return;
        }
        attempts.push(errors.join("; "));
    }
    panic!(
        "HTTPRouteWeight ({mode:?} mode): the distribution missed 70/30/0 in 10 attempts:\n{}",
        attempts.join("\n")
    );
}

/// HTTPRouteObservedGenerationBump (httproute-observed-generation-bump.go): after a spec
/// change the route's conditions carry the new generation. Derived rows check that routing
/// follows the change (file mode checks only those).
async fn observed_generation_bump(mode: Mode) {
    let w = World::start(mode, 30, "").await;
    w.apply(
        "route",
        &route(
            "observed-generation-bump",
            "  - backendRefs: [{name: infra-backend-v1, port: 8080}]\n",
        ),
    )
    .await;
    w.routes_accepted("same-namespace", &[(INFRA, "observed-generation-bump")])
        .await;
    if let Some(api) = &w.api {
        let route = api
            .object(
                "gateway.networking.k8s.io/v1",
                "HTTPRoute",
                INFRA,
                "observed-generation-bump",
            )
            .expect("route stored");
        assert_eq!(
            route["metadata"]["generation"], 1,
            "generation before: {route}"
        );
    }
    w.run(
        "HTTPRouteObservedGenerationBump",
        &[get("/")
            .to("infra-backend-v1")
            .named("derived: before, / goes to v1")],
    )
    .await;
    w.apply(
        "route",
        &route(
            "observed-generation-bump",
            "  - backendRefs: [{name: infra-backend-v2, port: 8080}]\n",
        ),
    )
    .await;
    if let Some(api) = &w.api {
        let route = api
            .object(
                "gateway.networking.k8s.io/v1",
                "HTTPRoute",
                INFRA,
                "observed-generation-bump",
            )
            .expect("route stored");
        assert_eq!(
            route["metadata"]["generation"], 2,
            "generation after: {route}"
        );
    }
    w.routes_accepted("same-namespace", &[(INFRA, "observed-generation-bump")])
        .await;
    w.run(
        "HTTPRouteObservedGenerationBump",
        &[get("/")
            .to("infra-backend-v2")
            .named("derived: after, / goes to v2")],
    )
    .await;
}

/// A ReferenceGrant `namespace/name` from (group, kind, namespace) to (group, kind, name).
fn grant(namespace: &str, name: &str, from: (&str, &str, &str), to: (&str, &str, &str)) -> String {
    format!(
        "---\napiVersion: gateway.networking.k8s.io/v1beta1\nkind: ReferenceGrant\nmetadata: {{name: {name}, namespace: {namespace}}}\nspec:\n  from: [{{group: \"{}\", kind: {}, namespace: {}}}]\n  to: [{{group: \"{}\", kind: {}, name: {}}}]\n",
        from.0, from.1, from.2, to.0, to.1, to.2
    )
}

/// HTTPRouteInvalidReferenceGrant (httproute-invalid-reference-grant.go): seven
/// ReferenceGrants that each miss in one field do not allow the reference.
async fn invalid_reference_grant(mode: Mode) {
    const GW: &str = "gateway.networking.k8s.io";
    let mut m = [
        grant(
            INFRA,
            "reference-grant-wrong-namespace",
            (GW, "HTTPRoute", INFRA),
            ("", "Service", "web-backend"),
        ),
        grant(
            WEB,
            "reference-grant-wrong-from-group",
            ("not-the-group-youre-looking-for", "HTTPRoute", INFRA),
            ("", "Service", "web-backend"),
        ),
        grant(
            WEB,
            "reference-grant-wrong-from-kind",
            (GW, "Gateway", INFRA),
            ("", "Service", "web-backend"),
        ),
        grant(
            WEB,
            "reference-grant-wrong-from-namespace",
            (GW, "HTTPRoute", "not-the-namespace-youre-looking-for"),
            ("", "Service", "web-backend"),
        ),
        grant(
            WEB,
            "reference-grant-wrong-to-group",
            (GW, "HTTPRoute", INFRA),
            ("not-the-group-youre-looking-for", "Service", "web-backend"),
        ),
        grant(
            WEB,
            "reference-grant-wrong-to-kind",
            (GW, "HTTPRoute", INFRA),
            ("", "Secret", "web-backend"),
        ),
        grant(
            WEB,
            "reference-grant-wrong-to-name",
            (GW, "HTTPRoute", INFRA),
            ("", "Service", "not-the-service-youre-looking-for"),
        ),
    ]
    .concat();
    m.push_str(&route(
        "reference-grant",
        &format!("  - backendRefs: [{{name: web-backend, namespace: {WEB}, port: 8080}}]\n"),
    ));
    let w = World::start(mode, 32, &m).await;
    w.route_parent(
        INFRA,
        "reference-grant",
        "same-namespace",
        &[
            is_true("Accepted"),
            is_false("ResolvedRefs", "RefNotPermitted"),
        ],
    )
    .await;
    w.run("HTTPRouteInvalidReferenceGrant", &[get("/").status(500)])
        .await;
}

/// HTTPRoutePartiallyInvalidViaInvalidReferenceGrant
/// (httproute-partially-invalid-via-invalid-reference-grant.go): the grant covers
/// app-backend-v1 only; the rule to app-backend-v2 answers 500, its sibling works.
async fn partially_invalid_via_invalid_reference_grant(mode: Mode) {
    let m = format!(
        "{}{}",
        grant(
            APP,
            "invalid-reference-grant",
            ("gateway.networking.k8s.io", "HTTPRoute", INFRA),
            ("", "Service", "app-backend-v1")
        ),
        route(
            "invalid-reference-grant",
            &format!(
                "  - matches: [{{path: {{type: PathPrefix, value: /v2}}}}]\n    backendRefs: [{{name: app-backend-v2, namespace: {APP}, port: 8080}}]\n  - backendRefs: [{{name: app-backend-v1, namespace: {APP}, port: 8080}}]\n"
            )
        )
    );
    let w = World::start(mode, 33, &m).await;
    w.class_accepted().await;
    w.gateway_programmed("same-namespace").await;
    w.route_parent(
        INFRA,
        "invalid-reference-grant",
        "same-namespace",
        &[
            is_true("Accepted"),
            is_false("ResolvedRefs", "RefNotPermitted"),
        ],
    )
    .await;
    w.run(
        "HTTPRoutePartiallyInvalidViaInvalidReferenceGrant",
        &[
            get("/v2").status(500),
            get("/").to_in(APP, "app-backend-v1"),
        ],
    )
    .await;
}

/// GatewayWithAttachedRoutes (gateway-with-attached-routes.go): attachedRoutes per
/// listener, also on a listener whose certificate does not resolve. The Gateways select
/// their namespace by the `kubernetes.io/metadata.name` label every Namespace carries.
async fn gateway_with_attached_routes(mode: Mode) {
    let by_name = format!(
        "{{namespaces: {{from: Selector, selector: {{matchLabels: {{kubernetes.io/metadata.name: {INFRA}}}}}}}, kinds: [{{kind: HTTPRoute}}]}}"
    );
    let gateway = |name: &str, listener: &str| {
        format!(
            "---\napiVersion: gateway.networking.k8s.io/v1\nkind: Gateway\nmetadata: {{name: {name}, namespace: {INFRA}}}\nspec:\n  gatewayClassName: {{CLASS}}\n  addresses: [{{type: IPAddress, value: \"{{ADDR:{name}}}\"}}]\n  listeners:\n  - {listener}\n"
        )
    };
    let attached = |route: &str, gw: &str, backend: &str, section: &str| {
        format!(
            "---\napiVersion: gateway.networking.k8s.io/v1\nkind: HTTPRoute\nmetadata: {{name: {route}, namespace: {INFRA}}}\nspec:\n  parentRefs: [{{kind: Gateway, name: {gw}, namespace: {INFRA}{section}}}]\n  rules:\n  - backendRefs: [{{name: {backend}, port: 8080}}]\n"
        )
    };
    let http = format!("{{name: http, port: 80, protocol: HTTP, allowedRoutes: {by_name}}}");
    let tls = format!(
        "{{name: tls, port: 443, protocol: HTTPS, allowedRoutes: {by_name}, tls: {{mode: Terminate, certificateRefs: [{{group: \"\", kind: Secret, name: does-not-exist}}]}}}}"
    );
    let m = [
        gateway("gateway-with-one-attached-route", &http),
        attached(
            "http-route-1",
            "gateway-with-one-attached-route",
            "infra-backend-v1",
            "",
        ),
        gateway("gateway-with-two-attached-routes", &http),
        attached(
            "http-route-2",
            "gateway-with-two-attached-routes",
            "infra-backend-v1",
            "",
        ),
        attached(
            "http-route-3",
            "gateway-with-two-attached-routes",
            "infra-backend-v1",
            "",
        ),
        gateway("unresolv-gw-with-one-attached-unresolv-route", &tls),
        attached(
            "http-route-4",
            "unresolv-gw-with-one-attached-unresolv-route",
            "does-not-exist",
            ", sectionName: tls",
        ),
    ]
    .concat();
    let w = World::start(mode, 34, &m).await;
    let resolved = [is_true("Accepted"), is_true("ResolvedRefs")];
    w.listener_status("gateway-with-one-attached-route", "http", 1, &resolved)
        .await;
    w.listener_status("gateway-with-two-attached-routes", "http", 2, &resolved)
        .await;
    w.listener_status(
        "unresolv-gw-with-one-attached-unresolv-route",
        "tls",
        1,
        &[is_false_any("Programmed"), is_false_any("ResolvedRefs")],
    )
    .await;
    w.route_parent(
        INFRA,
        "http-route-4",
        "unresolv-gw-with-one-attached-unresolv-route",
        &[is_false_any("ResolvedRefs")],
    )
    .await;
    w.run(
        "GatewayWithAttachedRoutes",
        &[
            get("/")
                .via("gateway-with-one-attached-route")
                .to("infra-backend-v1")
                .named("derived: the attached route serves on its Gateway"),
            get("/")
                .via("gateway-with-two-attached-routes")
                .to("infra-backend-v1")
                .named("derived: the attached routes serve on their Gateway"),
        ],
    )
    .await;
}

/// GatewayObservedGenerationBump (gateway-observed-generation-bump.go): a new listener
/// bumps the Gateway's generation; its conditions follow. Derived: the new listener serves.
async fn gateway_observed_generation_bump(mode: Mode) {
    let gw = "gateway-observed-generation-bump";
    let gateway = |listeners: &str| {
        format!(
            "---\napiVersion: gateway.networking.k8s.io/v1\nkind: Gateway\nmetadata: {{name: {gw}, namespace: {INFRA}}}\nspec:\n  gatewayClassName: {{CLASS}}\n  addresses: [{{type: IPAddress, value: \"{{ADDR:{gw}}}\"}}]\n  listeners:\n{listeners}"
        )
    };
    let first =
        "  - {name: http, port: 80, protocol: HTTP, allowedRoutes: {namespaces: {from: Same}}}\n";
    let second = "  - {name: http-8080, port: 8080, protocol: HTTP, allowedRoutes: {namespaces: {from: Same}}}\n";
    let w = World::start(mode, 35, "").await;
    w.apply("gateway", &gateway(first)).await;
    w.apply(
        "route",
        &format!(
            "---\napiVersion: gateway.networking.k8s.io/v1\nkind: HTTPRoute\nmetadata: {{name: r, namespace: {INFRA}}}\nspec:\n  parentRefs: [{{name: {gw}}}]\n  rules:\n  - backendRefs: [{{name: infra-backend-v1, port: 8080}}]\n"
        ),
    )
    .await;
    w.gateway_programmed(gw).await;
    w.apply("gateway", &gateway(&format!("{first}{second}")))
        .await;
    if let Some(api) = &w.api {
        let obj = api
            .object("gateway.networking.k8s.io/v1", "Gateway", INFRA, gw)
            .expect("Gateway stored");
        assert_eq!(
            obj["metadata"]["generation"], 2,
            "a new listener bumps: {obj}"
        );
    }
    w.gateway_programmed(gw).await;
    for listener in ["http", "http-8080"] {
        w.listener_status(
            gw,
            listener,
            1,
            &[is_true("Accepted"), is_true("Programmed")],
        )
        .await;
    }
    let on_8080 = std::net::SocketAddr::from((w.gateway_ip(gw), 8080));
    let answered = wait_for_answer(on_8080).await;
    w.run(
        "GatewayObservedGenerationBump",
        &[get("/")
            .via(gw)
            .to("infra-backend-v1")
            .named("derived: port 80 still serves")],
    )
    .await;
    assert_eq!(
        answered.as_deref(),
        Ok("gateway-conformance-infra/infra-backend-v1"),
        "derived: the added listener on port 8080 serves the route"
    );
}

/// Polls `GET /` on `addr` until a backend answers (up to 15 s): its name, or the last
/// failure.
async fn wait_for_answer(addr: std::net::SocketAddr) -> Result<String, String> {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(15);
    loop {
        let last = match send(addr, "GET", &addr.ip().to_string(), "/", &[]).await {
            Ok(got) => match got.backend() {
                Some(b) => return Ok(b.to_owned()),
                None => format!("status {} from no backend", got.status),
            },
            Err(e) => e,
        };
        if std::time::Instant::now() > deadline {
            return Err(last);
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
}

/// GatewayClassObservedGenerationBump (gatewayclass-observed-generation-bump.go): a spec
/// change of the class bumps its generation and Accepted follows.
async fn gatewayclass_observed_generation_bump(mode: Mode) {
    let w = World::start(mode, 36, "").await;
    w.class_accepted().await;
    w.apply(
        "class",
        "---\napiVersion: gateway.networking.k8s.io/v1\nkind: GatewayClass\nmetadata: {name: \"{CLASS}\"}\nspec: {controllerName: xdp-ingress.dev/controller, description: \"the class, described\"}\n",
    )
    .await;
    if let Some(api) = &w.api {
        let obj = api
            .object(
                "gateway.networking.k8s.io/v1",
                "GatewayClass",
                "",
                "xdp-conformance",
            )
            .expect("GatewayClass stored");
        assert_eq!(
            obj["metadata"]["generation"], 2,
            "a spec change bumps: {obj}"
        );
    }
    w.class_accepted().await;
    w.run(
        "GatewayClassObservedGenerationBump",
        &[get("/")
            .status(404)
            .named("derived: the class's Gateway still serves (no routes: 404)")],
    )
    .await;
}

/// HTTPRouteHTTPSListener (httproute-https-listener.go): the base Gateway
/// `same-namespace-with-https-listener` (two HTTPS listeners on 443, one for
/// second-example.org, both with the base certificate; declared here, not in every
/// test's base) and two routes.
async fn https_listener(mode: Mode) {
    let gw = "same-namespace-with-https-listener";
    let tls = format!(
        "{{certificateRefs: [{{group: \"\", kind: Secret, name: tls-validity-checks-certificate, namespace: {INFRA}}}]}}"
    );
    let m = format!(
        "---\napiVersion: gateway.networking.k8s.io/v1\nkind: Gateway\nmetadata: {{name: {gw}, namespace: {INFRA}}}\nspec:\n  gatewayClassName: {{CLASS}}\n  addresses: [{{type: IPAddress, value: \"{{ADDR:{gw}}}\"}}]\n  listeners:\n  - {{name: https, port: 443, protocol: HTTPS, allowedRoutes: {{namespaces: {{from: Same}}}}, tls: {tls}}}\n  - {{name: https-with-hostname, port: 443, hostname: second-example.org, protocol: HTTPS, allowedRoutes: {{namespaces: {{from: Same}}}}, tls: {tls}}}\n---\napiVersion: gateway.networking.k8s.io/v1\nkind: HTTPRoute\nmetadata: {{name: httproute-https-test, namespace: {INFRA}}}\nspec:\n  parentRefs: [{{name: {gw}}}]\n  hostnames: [example.org]\n  rules:\n  - backendRefs: [{{name: infra-backend-v1, port: 8080}}]\n---\napiVersion: gateway.networking.k8s.io/v1\nkind: HTTPRoute\nmetadata: {{name: httproute-https-test-no-hostname, namespace: {INFRA}}}\nspec:\n  parentRefs: [{{name: {gw}, sectionName: https-with-hostname}}]\n  rules:\n  - backendRefs: [{{name: infra-backend-v1, port: 8080}}]\n"
    );
    let w = World::start(mode, 37, &m).await;
    w.routes_accepted(
        gw,
        &[
            (INFRA, "httproute-https-test"),
            (INFRA, "httproute-https-test-no-hostname"),
        ],
    )
    .await;
    let at = |sni: &str, host: &str| get("/").via(gw).https(sni).host(host);
    w.run(
        "HTTPRouteHTTPSListener",
        &[
            at("example.org", "example.org").to("infra-backend-v1"),
            at("unknown-example.org", "second-example.org").status(404),
            at("second-example.org", "second-example.org").to("infra-backend-v1"),
            at("unknown-example.org", "unknown-example.org").status(404),
        ],
    )
    .await;
}

/// HTTPRouteRequestMultipleMirrors (httproute-request-multiple-mirrors.go; extended).
async fn request_multiple_mirrors(mode: Mode) {
    let mirror = |to: &str| {
        format!(
            "{{type: RequestMirror, requestMirror: {{backendRef: {{name: {to}, namespace: {INFRA}, port: 8080}}}}}}"
        )
    };
    let (v2, v3) = (mirror("infra-backend-v2"), mirror("infra-backend-v3"));
    let rules = [
        prefix_rule(
            "/multi-mirror",
            &format!("[{v2}, {v3}]"),
            "infra-backend-v1",
        ),
        prefix_rule(
            "/multi-mirror-and-modify-request-headers",
            &format!("[{MODIFY_HEADERS}, {v2}, {v3}]"),
            "infra-backend-v1",
        ),
    ]
    .concat();
    let w = World::start(mode, 38, &route("request-multiple-mirrors", &rules)).await;
    w.class_accepted().await;
    w.gateway_programmed("same-namespace").await;
    w.route_parent(
        INFRA,
        "request-multiple-mirrors",
        "same-namespace",
        &[is_true("Accepted")],
    )
    .await;
    w.run(
        "HTTPRouteRequestMultipleMirrors",
        &[
            get("/multi-mirror")
                .to("infra-backend-v1")
                .mirrored_to("infra-backend-v2")
                .mirrored_to("infra-backend-v3"),
            get("/multi-mirror-and-modify-request-headers")
                .header("X-Header-Remove", "remove-val")
                .header("X-Header-Add-Append", "append-val-1")
                .to("infra-backend-v1")
                .saw_header("X-Header-Add", "header-val-1")
                .saw_header("X-Header-Add-Append", "append-val-1,header-val-2")
                .saw_header("X-Header-Set", "set-overwrites-values")
                .saw_no_header("X-Header-Remove")
                .mirrored_to("infra-backend-v2")
                .mirrored_to("infra-backend-v3"),
        ],
    )
    .await;
}

/// GatewaySecretReferenceGrantSpecific, GatewaySecretReferenceGrantAllInNamespace,
/// GatewaySecretMissingReferenceGrant and GatewaySecretInvalidReferenceGrant
/// (gateway-secret-*.go): an HTTPS listener's certificate in another namespace resolves
/// only with a ReferenceGrant for Gateways of this namespace to that Secret (or all
/// Secrets); the invalid grant here names another Secret. Derived: a granted listener
/// completes a TLS handshake with that certificate.
async fn gateway_secret_reference_grant(mode: Mode) {
    let gateway = |name: &str| {
        format!(
            "---\napiVersion: gateway.networking.k8s.io/v1\nkind: Gateway\nmetadata: {{name: {name}, namespace: {INFRA}}}\nspec:\n  gatewayClassName: {{CLASS}}\n  addresses: [{{type: IPAddress, value: \"{{ADDR:{name}}}\"}}]\n  listeners:\n  - {{name: https, port: 443, protocol: HTTPS, allowedRoutes: {{namespaces: {{from: All}}}}, tls: {{certificateRefs: [{{group: \"\", kind: Secret, name: certificate, namespace: {WEB}}}]}}}}\n"
        )
    };
    let grant_to = |name: &str, to: &str| {
        format!(
            "---\napiVersion: gateway.networking.k8s.io/v1beta1\nkind: ReferenceGrant\nmetadata: {{name: {name}, namespace: {WEB}}}\nspec:\n  from: [{{group: gateway.networking.k8s.io, kind: Gateway, namespace: {INFRA}}}]\n  to: [{{group: \"\", kind: Secret{to}}}]\n"
        )
    };
    let granted = [
        is_true("Accepted"),
        is_true("Programmed"),
        is_true("ResolvedRefs"),
    ];
    let refused = [
        is_false("ResolvedRefs", "RefNotPermitted"),
        is_false("Programmed", "Invalid"),
    ];
    // Grants are per namespace (every Gateway of INFRA), so each case has a world.
    for (slot, test, grant, want) in [
        (
            39,
            "GatewaySecretReferenceGrantSpecific",
            grant_to("reference-grant-specific", ", name: certificate"),
            true,
        ),
        (
            40,
            "GatewaySecretReferenceGrantAllInNamespace",
            grant_to("reference-grant-all-in-namespace", ""),
            true,
        ),
        (
            41,
            "GatewaySecretMissingReferenceGrant",
            String::new(),
            false,
        ),
        (
            42,
            "GatewaySecretInvalidReferenceGrant",
            grant_to("reference-grant-wrong-name", ", name: not-the-certificate"),
            false,
        ),
    ] {
        let gw = "gateway-secret";
        let w = World::start(mode, slot, &format!("{}{grant}", gateway(gw))).await;
        if want {
            w.listener_status(gw, "https", 0, &granted).await;
            w.run(
                test,
                &[get("/")
                    .via(gw)
                    .https("example.org")
                    .host("example.org")
                    .status(404)
                    .named("derived: TLS with the granted certificate, no route (404)")],
            )
            .await;
        } else {
            w.listener_status(gw, "https", 0, &refused).await;
            w.run(test, &[]).await;
        }
    }
}

/// A Gateway `INFRA/name` on its own address with `listeners` (YAML list entries).
fn gateway(name: &str, listeners: &[String]) -> String {
    let mut y = format!(
        "---\napiVersion: gateway.networking.k8s.io/v1\nkind: Gateway\nmetadata: {{name: {name}, namespace: {INFRA}}}\nspec:\n  gatewayClassName: {{CLASS}}\n  addresses: [{{type: IPAddress, value: \"{{ADDR:{name}}}\"}}]\n  listeners:\n"
    );
    for l in listeners {
        y.push_str(&format!("  - {l}\n"));
    }
    y
}

/// HTTPRouteRedirectPortAndScheme (httproute-redirect-port-and-scheme.go; extended): the
/// redirect's port follows the scheme and the listener's port when unset. A missing
/// expected port accepts none or the scheme's own.
async fn redirect_port_and_scheme(mode: Mode) {
    let tls = format!(
        "{{certificateRefs: [{{group: \"\", kind: Secret, name: tls-validity-checks-certificate, namespace: {INFRA}}}]}}"
    );
    let rules = |gw: &str, name: &str, rules: &[(&str, &str)]| {
        let rules: String = rules
            .iter()
            .map(|(prefix, fields)| {
                prefix_rule(
                    prefix,
                    &redirect(&format!("hostname: example.org{fields}")),
                    "",
                )
            })
            .collect();
        format!(
            "---\napiVersion: gateway.networking.k8s.io/v1\nkind: HTTPRoute\nmetadata: {{name: {name}, namespace: {INFRA}}}\nspec:\n  parentRefs: [{{name: {gw}}}]\n  rules:\n{rules}"
        )
    };
    let on8080 = "same-namespace-with-http-listener-on-8080";
    let on443 = "same-namespace-with-https-listener";
    let m = [
        gateway(
            on8080,
            &["{name: http, port: 8080, protocol: HTTP, allowedRoutes: {namespaces: {from: Same}}}".into()],
        ),
        gateway(
            on443,
            &[format!("{{name: https, port: 443, protocol: HTTPS, allowedRoutes: {{namespaces: {{from: Same}}}}, tls: {tls}}}")],
        ),
        rules(
            "same-namespace",
            "http-route-for-listener-on-port-80",
            &[
                ("/scheme-nil-and-port-nil", ""),
                ("/scheme-nil-and-port-80", ", port: 80"),
                ("/scheme-nil-and-port-8080", ", port: 8080"),
                ("/scheme-https-and-port-nil", ", scheme: https"),
                ("/scheme-https-and-port-443", ", scheme: https, port: 443"),
                ("/scheme-https-and-port-8443", ", scheme: https, port: 8443"),
            ],
        ),
        rules(
            on8080,
            "http-route-for-listener-on-port-8080",
            &[
                ("/scheme-nil-and-port-nil", ""),
                ("/scheme-nil-and-port-80", ", port: 80"),
                ("/scheme-https-and-port-nil", ", scheme: https"),
            ],
        ),
        rules(
            on443,
            "http-route-for-listener-on-port-443",
            &[
                ("/scheme-nil-and-port-nil", ""),
                ("/scheme-nil-and-port-443", ", port: 443"),
                ("/scheme-nil-and-port-8443", ", port: 8443"),
                ("/scheme-http-and-port-nil", ", scheme: http"),
                ("/scheme-http-and-port-80", ", scheme: http, port: 80"),
                ("/scheme-http-and-port-8080", ", scheme: http, port: 8080"),
            ],
        ),
    ]
    .concat();
    let w = World::start(mode, 43, &m).await;
    w.routes_accepted(
        "same-namespace",
        &[(INFRA, "http-route-for-listener-on-port-80")],
    )
    .await;
    w.routes_accepted(on8080, &[(INFRA, "http-route-for-listener-on-port-8080")])
        .await;
    w.routes_accepted(on443, &[(INFRA, "http-route-for-listener-on-port-443")])
        .await;
    let at80 = |path: &str| get(path).redirect(302).location_host("example.org");
    let at8080 = |path: &str| at80(path).via(on8080).port(8080);
    let at443 = |path: &str| {
        get(path)
            .via(on443)
            .https("example.org")
            .host("example.org")
            .redirect(302)
            .location_host("example.org")
    };
    w.run(
        "HTTPRouteRedirectPortAndScheme",
        &[
            at80("/scheme-nil-and-port-nil").location_scheme("http"),
            at80("/scheme-nil-and-port-80").location_scheme("http"),
            at80("/scheme-nil-and-port-8080")
                .location_scheme("http")
                .location_port("8080"),
            at80("/scheme-https-and-port-nil").location_scheme("https"),
            at80("/scheme-https-and-port-443").location_scheme("https"),
            at80("/scheme-https-and-port-8443")
                .location_scheme("https")
                .location_port("8443"),
            at8080("/scheme-nil-and-port-nil")
                .location_scheme("http")
                .location_port("8080"),
            at8080("/scheme-nil-and-port-80").location_scheme("http"),
            at8080("/scheme-https-and-port-nil").location_scheme("https"),
            at443("/scheme-nil-and-port-nil").location_scheme("https"),
            at443("/scheme-nil-and-port-443").location_scheme("https"),
            at443("/scheme-nil-and-port-8443")
                .location_scheme("https")
                .location_port("8443"),
            at443("/scheme-http-and-port-nil").location_scheme("http"),
            at443("/scheme-http-and-port-80").location_scheme("http"),
            at443("/scheme-http-and-port-8080")
                .location_scheme("http")
                .location_port("8080"),
        ],
    )
    .await;
}

/// GatewayInvalidRouteKind (gateway-invalid-route-kind.go): a listener that allows only an
/// unknown route kind has no supportedKinds and ResolvedRefs False with InvalidRouteKinds;
/// with HTTPRoute beside it, HTTPRoute is supported. Status only (kube mode).
async fn gateway_invalid_route_kind(mode: Mode) {
    let m = [
        gateway(
            "gateway-only-invalid-route-kind",
            &["{name: http, port: 80, protocol: HTTP, allowedRoutes: {namespaces: {from: All}, kinds: [{kind: InvalidRoute}]}}".into()],
        ),
        gateway(
            "gateway-supported-and-invalid-route-kind",
            &["{name: http, port: 80, protocol: HTTP, allowedRoutes: {namespaces: {from: All}, kinds: [{kind: InvalidRoute}, {kind: HTTPRoute}]}}".into()],
        ),
    ]
    .concat();
    let w = World::start(mode, 44, &m).await;
    let invalid = [is_false("ResolvedRefs", "InvalidRouteKinds")];
    w.listener_status_kinds("gateway-only-invalid-route-kind", "http", 0, &[], &invalid)
        .await;
    w.listener_status_kinds(
        "gateway-supported-and-invalid-route-kind",
        "http",
        0,
        &["HTTPRoute"],
        &invalid,
    )
    .await;
    w.run("GatewayInvalidRouteKind", &[]).await;
}

/// HTTPRouteDisallowedKind (httproute-disallowed-kind.go): a listener for TLSRoutes only
/// does not accept an HTTPRoute (NotAllowedByListeners).
async fn disallowed_kind(mode: Mode) {
    let m = format!(
        "{}---\napiVersion: gateway.networking.k8s.io/v1\nkind: HTTPRoute\nmetadata: {{name: disallowed-kind, namespace: {INFRA}}}\nspec:\n  parentRefs: [{{name: tlsroutes-only, namespace: {INFRA}}}]\n  rules:\n  - backendRefs: [{{name: infra-backend-v1, port: 8080}}]\n",
        gateway(
            "tlsroutes-only",
            &["{name: tls, port: 443, protocol: TLS, tls: {mode: Passthrough}, allowedRoutes: {namespaces: {from: Same}, kinds: [{kind: TLSRoute}]}}".into()],
        )
    );
    let w = World::start(mode, 45, &m).await;
    w.route_parent(
        INFRA,
        "disallowed-kind",
        "tlsroutes-only",
        &[is_false("Accepted", "NotAllowedByListeners")],
    )
    .await;
    w.run("HTTPRouteDisallowedKind", &[]).await;
}

/// GatewayModifyListeners (gateway-modify-listeners.go): a listener added to a Gateway
/// starts serving and gets a status; a removed one stops and loses its status. The
/// generation changes with each. Derived rows: the traffic follows.
async fn gateway_modify_listeners(mode: Mode) {
    let tls = format!(
        "{{certificateRefs: [{{group: \"\", kind: Secret, name: tls-validity-checks-certificate, namespace: {INFRA}}}]}}"
    );
    let https = format!(
        "{{name: https, port: 443, protocol: HTTPS, hostname: secure.test.com, allowedRoutes: {{namespaces: {{from: All}}}}, tls: {tls}}}"
    );
    let http = "{name: http, port: 80, protocol: HTTP, hostname: data.test.com, allowedRoutes: {namespaces: {from: All}}}".to_owned();
    let http_any =
        "{name: http, port: 80, protocol: HTTP, allowedRoutes: {namespaces: {from: All}}}"
            .to_owned();
    let route_to = |name: &str, gw: &str| {
        format!(
            "---\napiVersion: gateway.networking.k8s.io/v1\nkind: HTTPRoute\nmetadata: {{name: {name}, namespace: {INFRA}}}\nspec:\n  parentRefs: [{{kind: Gateway, name: {gw}, namespace: {INFRA}}}]\n  rules:\n  - backendRefs: [{{name: infra-backend-v1, port: 8080}}]\n"
        )
    };
    let (add, remove) = ("gateway-add-listener", "gateway-remove-listener");
    let w = World::start(
        mode,
        46,
        &format!(
            "{}{}",
            route_to("http-route-1", add),
            route_to("http-route-2", remove)
        ),
    )
    .await;
    w.apply("add", &gateway(add, std::slice::from_ref(&https)))
        .await;
    w.apply(
        "remove",
        &gateway(remove, &[https.clone(), http_any.clone()]),
    )
    .await;
    w.gateway_programmed(add).await;
    w.gateway_programmed(remove).await;
    w.run(
        "GatewayModifyListeners (before)",
        &[get("/")
            .via(remove)
            .https("secure.test.com")
            .host("secure.test.com")
            .to("infra-backend-v1")
            .named("derived: before, the https listener of gateway-remove-listener serves")],
    )
    .await;
    // Add an HTTP listener to one Gateway, remove the HTTPS listener of the other.
    w.apply("add", &gateway(add, &[https.clone(), http])).await;
    w.apply("remove", &gateway(remove, &[http_any])).await;
    if let Some(api) = &w.api {
        for gw in [add, remove] {
            let obj = api
                .object("gateway.networking.k8s.io/v1", "Gateway", INFRA, gw)
                .expect("Gateway stored");
            assert_eq!(
                obj["metadata"]["generation"], 2,
                "the change bumps {gw}: {obj}"
            );
        }
    }
    let resolved = [is_true("Accepted"), is_true("ResolvedRefs")];
    w.listener_status(add, "https", 1, &resolved).await;
    w.listener_status(add, "http", 1, &resolved).await;
    w.listeners_are(add, &["https", "http"]).await;
    w.gateway_programmed(add).await;
    w.listener_status(remove, "http", 1, &resolved).await;
    w.listeners_are(remove, &["http"]).await;
    w.gateway_programmed(remove).await;
    w.run(
        "GatewayModifyListeners (after)",
        &[
            get("/")
                .via(add)
                .host("data.test.com")
                .to("infra-backend-v1")
                .named("derived: the added listener serves its route"),
            get("/")
                .via(remove)
                .to("infra-backend-v1")
                .named("derived: the kept listener still serves"),
        ],
    )
    .await;
    let closed = std::net::SocketAddr::from((w.gateway_ip(remove), 443));
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(15);
    while tokio::net::TcpStream::connect(closed).await.is_ok() {
        assert!(
            std::time::Instant::now() < deadline,
            "derived: the removed https listener still accepts connections on {closed} after 15 s"
        );
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
}

/// HTTPRouteServiceTypes (httproute-service-types.go): Services with endpoints written by
/// hand (v1 Endpoints, EndpointSlices), headless ones, all pointing at infra-backend-v1's
/// endpoint as the suite copies it. In kube mode the EndpointSlices that Kubernetes'
/// mirroring controller makes from the hand-written Endpoints are written too (the fake
/// API server runs no controllers).
async fn service_types(mode: Mode) {
    let names = [
        ("manual-endpoints", false),
        ("manual-endpointslices", false),
        ("headless", true),
        ("headless-manual-endpoints", true),
        ("headless-manual-endpointslices", true),
    ];
    let rules: String = names
        .iter()
        .map(|(n, _)| {
            format!(
                "  - matches: [{{path: {{type: Exact, value: /{n}}}}}]\n    backendRefs: [{{name: {n}, port: 8080}}]\n"
            )
        })
        .collect();
    let w = World::start(mode, 47, &route("service-types", &rules)).await;
    let v1 = w.backend(INFRA, "infra-backend-v1").addr;
    let (ip, port) = (v1.ip(), v1.port());
    let slice = |name: &str, service: &str, extra: &str| {
        format!(
            "---\napiVersion: discovery.k8s.io/v1\nkind: EndpointSlice\nmetadata: {{name: {name}, namespace: {INFRA}, labels: {{kubernetes.io/service-name: {service}{extra}}}}}\naddressType: IPv4\nports: [{{name: first-port, port: {port}, protocol: TCP}}]\nendpoints: [{{addresses: [\"{ip}\"], conditions: {{ready: true}}}}]\n"
        )
    };
    let mut m = String::new();
    for (name, headless) in names {
        let cluster_ip = if headless { "  clusterIP: None\n" } else { "" };
        let selector = if name == "headless" {
            "  selector: {app: infra-backend-v1}\n"
        } else {
            ""
        };
        m.push_str(&format!(
            "---\napiVersion: v1\nkind: Service\nmetadata: {{name: {name}, namespace: {INFRA}}}\nspec:\n{cluster_ip}{selector}  ports: [{{name: first-port, protocol: TCP, port: 8080, targetPort: 3000}}]\n"
        ));
        if name.ends_with("manual-endpoints") {
            m.push_str(&format!(
                "---\napiVersion: v1\nkind: Endpoints\nmetadata: {{name: {name}, namespace: {INFRA}}}\nsubsets: [{{addresses: [{{ip: \"{ip}\"}}], ports: [{{name: first-port, port: {port}, protocol: TCP}}]}}]\n"
            ));
            if mode == Mode::Kube {
                m.push_str(&slice(
                    &format!("{name}-mirrored"),
                    name,
                    ", endpointslice.kubernetes.io/managed-by: endpointslicemirroring-controller.k8s.io",
                ));
            }
        } else {
            // The hand-written slices, and the one the EndpointSlice controller makes for
            // the headless Service with a selector.
            m.push_str(&slice(name, name, ""));
        }
    }
    w.apply("service-types", &m).await;
    w.routes_accepted("same-namespace", &[(INFRA, "service-types")])
        .await;
    let rows: Vec<Row> = names
        .iter()
        .map(|(n, _)| get(&format!("/{n}")).to("infra-backend-v1"))
        .collect();
    w.run("HTTPRouteServiceTypes", &rows).await;
}

/// HTTPRouteListenerPortMatching (httproute-listener-port-matching.yaml; extended
/// ParentRefPort): routes attach by `parentRefs[].port` (and section name). The rows
/// follow from the manifest: a route bound to a port serves every listener on it, and
/// only those.
async fn listener_port_matching(mode: Mode) {
    let gw = "httproute-listener-port-matching";
    let listener = |name: &str, port: u16, host: &str| {
        format!(
            "{{name: {name}, port: {port}, protocol: HTTP, hostname: {host}, allowedRoutes: {{namespaces: {{from: Same}}}}}}"
        )
    };
    let bound = |name: &str, port: &str, backend: &str| {
        format!(
            "---\napiVersion: gateway.networking.k8s.io/v1\nkind: HTTPRoute\nmetadata: {{name: {name}, namespace: {INFRA}}}\nspec:\n  parentRefs: [{{name: {gw}, namespace: {INFRA}, {port}}}]\n  rules:\n  - backendRefs: [{{name: {backend}, port: 8080}}]\n"
        )
    };
    let m = [
        gateway(
            gw,
            &[
                listener("listener-1", 80, "foo.com"),
                listener("listener-2", 8080, "foo.com"),
                listener("listener-3", 8080, "bar.com"),
                listener("listener-4", 8090, "foo.com"),
                listener("listener-5", 8090, "bar.com"),
            ],
        ),
        bound("backend-v1", "port: 80", "infra-backend-v1"),
        bound("backend-v2", "port: 8080", "infra-backend-v2"),
        bound(
            "backend-v3",
            "port: 8090, sectionName: listener-4",
            "infra-backend-v3",
        ),
    ]
    .concat();
    let w = World::start(mode, 48, &m).await;
    w.routes_accepted(
        gw,
        &[
            (INFRA, "backend-v1"),
            (INFRA, "backend-v2"),
            (INFRA, "backend-v3"),
        ],
    )
    .await;
    let at = |port: u16, host: &str| get("/").via(gw).port(port).host(host);
    w.run(
        "HTTPRouteListenerPortMatching",
        &[
            at(80, "foo.com").to("infra-backend-v1"),
            at(8080, "foo.com:8080").to("infra-backend-v2"),
            at(8080, "bar.com:8080").to("infra-backend-v2"),
            at(8090, "foo.com:8090").to("infra-backend-v3"),
            at(8090, "bar.com:8090").status(404),
            at(80, "bar.com").status(404),
        ],
    )
    .await;
}

/// GatewayInvalidTLSConfiguration (gateway-invalid-tls-configuration.go): a certificate
/// reference to a missing Secret, another group, another kind, or a malformed Secret leaves
/// the listener with ResolvedRefs False (InvalidCertificateRef). Status only (kube mode).
async fn gateway_invalid_tls_configuration(mode: Mode) {
    let cases = [
        (
            "gateway-certificate-nonexistent-secret",
            "group: \"\", kind: Secret, name: nonexistent-certificate",
        ),
        (
            "gateway-certificate-unsupported-group",
            "group: wrong.group.company.io, kind: Secret, name: tls-validity-checks-certificate",
        ),
        (
            "gateway-certificate-unsupported-kind",
            "group: \"\", kind: WrongKind, name: tls-validity-checks-certificate",
        ),
        (
            "gateway-certificate-malformed-secret",
            "group: \"\", kind: Secret, name: malformed-certificate",
        ),
    ];
    let mut m: String = cases
        .iter()
        .map(|(name, cert)| {
            gateway(
                name,
                &[format!(
                    "{{name: https, port: 443, protocol: HTTPS, allowedRoutes: {{namespaces: {{from: All}}}}, tls: {{certificateRefs: [{{{cert}}}]}}}}"
                )],
            )
        })
        .collect();
    // Not PEM ("Hello world"), and the certificate and the key are the same.
    m.push_str(&format!(
        "---\napiVersion: v1\nkind: Secret\nmetadata: {{name: malformed-certificate, namespace: {INFRA}}}\ntype: kubernetes.io/tls\ndata: {{tls.crt: SGVsbG8gd29ybGQK, tls.key: SGVsbG8gd29ybGQK}}\n"
    ));
    let w = World::start(mode, 49, &m).await;
    for (name, _) in cases {
        w.listener_status(
            name,
            "https",
            0,
            &[is_false("ResolvedRefs", "InvalidCertificateRef")],
        )
        .await;
    }
    w.run("GatewayInvalidTLSConfiguration", &[]).await;
}
