//! `config::build` tables: class filtering, precedence across Ingresses, default backends,
//! endpoint resolution and TLS Secrets.

use std::net::SocketAddr;

use k8s_openapi::api::core::v1::Secret;

use super::{
    fixtures::{
        Cond, IngressBuilder as Ing, config_map, ingress_class, secret, service, slice, tls_secret,
    },
    *,
};
use crate::config::problem::Severity;

fn opts() -> Options {
    Options::default()
}

/// A Store with Services `svc-a`..`svc-d` in `ns` (port 80 named `http` → 8080) and one
/// ready endpoint each (10.0.0.1..4).
fn store() -> Store {
    let mut s = Store::default();
    for (i, name) in ["svc-a", "svc-b", "svc-c", "svc-d"].iter().enumerate() {
        s.services
            .push(service("ns", name, &[("http", 80, "8080")]));
        let ip = format!("10.0.0.{}", i + 1);
        s.endpoint_slices.push(slice(
            "ns",
            name,
            &format!("{name}-1"),
            &[("http", 8080)],
            &[(&ip, Cond::Ready)],
        ));
    }
    s
}

fn routed(snap: &Snapshot, host: &str, path: &str) -> Option<String> {
    snap.http
        .route(host, path)
        .map(|m| m.backend.service.name.clone())
}

fn kinds(snap: &Snapshot) -> Vec<(&str, &str, Option<&str>)> {
    snap.problems
        .iter()
        .map(|p| (p.kind, p.object.name.as_str(), p.field.as_deref()))
        .collect()
}

#[test]
fn class_filtering_table() {
    // (ingress builder, IngressClasses, watch_without_class, served?)
    let ours = ingress_class("mine", "xdp-ingress.dev/controller", false);
    let ours_default = ingress_class("mine", "xdp-ingress.dev/controller", true);
    let theirs_default = ingress_class("nginx", "k8s.io/ingress-nginx", true);
    let base = || Ing::new("ns", "i").path("/", "Prefix", "svc-a", "80");
    #[rustfmt::skip]
    let rows: Vec<(&str, Ing, Vec<_>, bool, bool)> = vec![
        ("ingressClassName equals --ingress-class", base(), vec![], false, true),
        ("ingressClassName names an IngressClass of our controller", base().class(Some("mine")), vec![ours.clone()], false, true),
        ("ingressClassName names another controller's class", base().class(Some("nginx")), vec![theirs_default.clone()], false, false),
        ("ingressClassName names an unknown class", base().class(Some("mine")), vec![], false, false),
        ("legacy annotation equals --ingress-class", base().class(None).class_annotation("xdp"), vec![], false, true),
        ("legacy annotation names another class", base().class(None).class_annotation("nginx"), vec![], true, false),
        ("no class, nothing default", base().class(None), vec![ours.clone()], false, false),
        ("no class, our IngressClass is default", base().class(None), vec![ours_default.clone()], false, true),
        ("no class, another controller's class is default", base().class(None), vec![theirs_default.clone()], false, false),
        ("no class, --watch-ingress-without-class", base().class(None), vec![], true, true),
    ];
    for (rule, ing, classes, without, want) in rows {
        let mut s = store();
        s.ingresses.push(ing.build());
        s.ingress_classes = classes;
        let o = Options {
            watch_without_class: without,
            ..opts()
        };
        let snap = build(&s, &o);
        assert_eq!(snap.http.route("h", "/").is_some(), want, "{rule}");
    }
}

#[test]
fn watch_namespace_limits_ingresses() {
    let mut s = store();
    s.ingresses.push(
        Ing::new("ns", "in")
            .host("a")
            .path("/", "Prefix", "svc-a", "80")
            .build(),
    );
    s.ingresses.push(
        Ing::new("other", "out")
            .host("b")
            .path("/", "Prefix", "svc-a", "80")
            .build(),
    );
    let snap = build(
        &s,
        &Options {
            watch_namespace: Some("ns".into()),
            ..opts()
        },
    );
    assert!(snap.http.route("a", "/").is_some());
    assert!(snap.http.route("b", "/").is_none());
}

#[test]
fn oldest_ingress_wins_a_host_and_path_conflict() {
    let mut s = store();
    s.ingresses.push(
        Ing::new("ns", "young")
            .created(2000)
            .host("h")
            .path("/x", "Prefix", "svc-b", "80")
            .build(),
    );
    s.ingresses.push(
        Ing::new("ns", "old")
            .created(1000)
            .host("h")
            .path("/x", "Prefix", "svc-a", "80")
            .build(),
    );
    let snap = build(&s, &opts());
    assert_eq!(routed(&snap, "h", "/x").as_deref(), Some("svc-a"));
    assert_eq!(
        kinds(&snap),
        [(
            "route_conflict",
            "young",
            Some("spec.rules[0].http.paths[0].path")
        )]
    );
    assert_eq!(snap.problems[0].severity, Severity::Error);
    assert_eq!(
        snap.problems[0].message,
        "host h path /x is already routed to ns/svc-a:80 by an older Ingress (or an earlier rule); this path is ignored"
    );
}

#[test]
fn equal_timestamps_fall_back_to_namespace_name_order() {
    let mut s = store();
    s.ingresses.push(
        Ing::new("ns", "b")
            .created(1000)
            .host("h")
            .path("/", "Prefix", "svc-b", "80")
            .build(),
    );
    s.ingresses.push(
        Ing::new("ns", "a")
            .created(1000)
            .host("h")
            .path("/", "Prefix", "svc-a", "80")
            .build(),
    );
    let snap = build(&s, &opts());
    assert_eq!(routed(&snap, "h", "/").as_deref(), Some("svc-a"));
    let mut reversed = s.clone();
    reversed.ingresses.reverse();
    assert_eq!(
        routed(&build(&reversed, &opts()), "h", "/").as_deref(),
        Some("svc-a")
    );
}

#[test]
fn precedence_across_several_ingresses() {
    let mut s = store();
    s.ingresses.push(
        Ing::new("ns", "catch-all")
            .created(1)
            .path("/", "Prefix", "svc-a", "80")
            .build(),
    );
    s.ingresses.push(
        Ing::new("ns", "wild")
            .created(2)
            .host("*.foo.com")
            .path("/api", "Prefix", "svc-b", "80")
            .build(),
    );
    s.ingresses.push(
        Ing::new("ns", "exact")
            .created(3)
            .host("www.foo.com")
            .path("/api", "Prefix", "svc-c", "80")
            .path("/api/v1", "Exact", "svc-d", "80")
            .build(),
    );
    let snap = build(&s, &opts());
    #[rustfmt::skip]
    let rows = [
        ("www.foo.com", "/api/v1", "svc-d"),  // Exact, longest
        ("www.foo.com", "/api/v1/x", "svc-c"), // Exact does not match a subpath
        ("www.foo.com", "/api", "svc-c"),     // exact host beats wildcard
        ("x.foo.com", "/api/v1", "svc-b"),    // wildcard
        ("x.y.foo.com", "/api", "svc-a"),     // two labels: no wildcard, host-less rule
        ("www.foo.com", "/", "svc-a"),        // exact host has no match: host-less rule
    ];
    for (host, path, want) in rows {
        assert_eq!(
            routed(&snap, host, path).as_deref(),
            Some(want),
            "{host}{path}"
        );
    }
    assert!(snap.problems.is_empty(), "{:?}", snap.problems);
}

#[test]
fn default_backend_resolution_table() {
    // (Ingresses, --default-backend-service, expected default backend Service)
    let with_default = |name: &str, created: i64, svc: &str| {
        Ing::new("ns", name)
            .created(created)
            .host(name)
            .path("/", "Prefix", "svc-a", "80")
            .default_backend(svc, "80")
            .build()
    };
    let dbs = Some(NamespacedName {
        namespace: "ns".into(),
        name: "svc-d".into(),
    });
    #[rustfmt::skip]
    let rows: Vec<(&str, Vec<_>, Option<NamespacedName>, Option<&str>)> = vec![
        ("nothing: built-in 404", vec![], None, None),
        ("--default-backend-service only", vec![], dbs.clone(), Some("svc-d")),
        ("Ingress defaultBackend beats the flag", vec![with_default("i1", 5, "svc-b")], dbs.clone(), Some("svc-b")),
        ("oldest Ingress defaultBackend wins", vec![with_default("young", 9, "svc-c"), with_default("old", 1, "svc-b")], None, Some("svc-b")),
    ];
    for (rule, ings, flag, want) in rows {
        let mut s = store();
        s.ingresses = ings;
        let snap = build(
            &s,
            &Options {
                default_backend_service: flag,
                ..opts()
            },
        );
        assert_eq!(
            snap.http.default_backend().map(|b| b.service.name.as_str()),
            want,
            "{rule}"
        );
    }
}

#[test]
fn default_backend_conflict_is_a_warning_on_the_younger() {
    let mut s = store();
    for (name, t, svc) in [("old", 1, "svc-b"), ("young", 2, "svc-c")] {
        s.ingresses.push(
            Ing::new("ns", name)
                .created(t)
                .default_backend(svc, "80")
                .build(),
        );
    }
    let snap = build(&s, &opts());
    assert_eq!(
        kinds(&snap),
        [(
            "default_backend_conflict",
            "young",
            Some("spec.defaultBackend")
        )]
    );
    assert_eq!(snap.problems[0].severity, Severity::Warning);
}

#[test]
fn unknown_default_backend_service_is_a_problem() {
    let snap = build(
        &store(),
        &Options {
            default_backend_service: Some("ns/nope".parse().unwrap()),
            ..opts()
        },
    );
    assert!(snap.http.default_backend().is_none());
    assert_eq!(kinds(&snap), [("unknown_default_backend", "nope", None)]);
    assert_eq!(
        snap.problems[0].message,
        "--default-backend-service ns/nope: Service not found; unmatched requests get 404"
    );
}

#[test]
fn backend_port_by_number_or_name_resolves_target_port_through_the_slice() {
    let mut s = Store::default();
    s.services.push(service(
        "ns",
        "web",
        &[("http", 80, "web"), ("admin", 9000, "9001")],
    ));
    s.endpoint_slices.push(slice(
        "ns",
        "web",
        "web-x",
        &[("http", 8080), ("admin", 9001)],
        &[("10.1.0.2", Cond::Ready), ("10.1.0.1", Cond::Ready)],
    ));
    s.ingresses.push(
        Ing::new("ns", "i")
            .path("/by-number", "Prefix", "web", "80")
            .path("/by-name", "Prefix", "web", "admin")
            .build(),
    );
    let snap = build(&s, &opts());
    let eps = |p: &str| snap.http.route("h", p).unwrap().backend.endpoints.to_vec();
    let addr = |s: &str| s.parse::<SocketAddr>().unwrap();
    assert_eq!(
        eps("/by-number"),
        [addr("10.1.0.1:8080"), addr("10.1.0.2:8080")]
    );
    assert_eq!(
        eps("/by-name"),
        [addr("10.1.0.1:9001"), addr("10.1.0.2:9001")]
    );
    assert_eq!(
        snap.http
            .route("h", "/by-name")
            .unwrap()
            .backend
            .service
            .port,
        9000
    );
}

#[test]
#[expect(clippy::type_complexity, reason = "a test table")]
fn endpoint_conditions_table() {
    // (endpoint conditions, expected addresses)
    #[rustfmt::skip]
    let rows: &[(&str, &[(&str, Cond)], &[&str])] = &[
        ("ready ones only", &[("10.0.0.1", Cond::Ready), ("10.0.0.2", Cond::NotReady), ("10.0.0.3", Cond::Terminating)], &["10.0.0.1:8080"]),
        ("no ready: serving + terminating", &[("10.0.0.2", Cond::NotReady), ("10.0.0.3", Cond::Terminating)], &["10.0.0.3:8080"]),
        ("nothing usable: empty", &[("10.0.0.2", Cond::NotReady)], &[]),
    ];
    for (rule, eps, want) in rows {
        let mut s = Store::default();
        s.services
            .push(service("ns", "web", &[("http", 80, "8080")]));
        s.endpoint_slices
            .push(slice("ns", "web", "web-1", &[("http", 8080)], eps));
        s.ingresses
            .push(Ing::new("ns", "i").path("/", "Prefix", "web", "80").build());
        let snap = build(&s, &opts());
        let got: Vec<String> = snap
            .http
            .route("h", "/")
            .unwrap()
            .backend
            .endpoints
            .to_vec()
            .iter()
            .map(ToString::to_string)
            .collect();
        assert_eq!(got, *want, "{rule}");
    }
}

#[test]
fn service_without_endpoints_still_routes_with_no_problem() {
    let mut s = Store::default();
    s.services.push(service("ns", "idle", &[("", 80, "80")]));
    s.ingresses.push(
        Ing::new("ns", "i")
            .path("/", "Prefix", "idle", "80")
            .build(),
    );
    let snap = build(&s, &opts());
    assert!(
        snap.http
            .route("h", "/")
            .unwrap()
            .backend
            .endpoints
            .is_empty()
    );
    assert!(snap.problems.is_empty());
}

#[test]
fn unknown_service_or_port_claims_the_path_and_is_reported() {
    let mut s = store();
    s.ingresses.push(
        Ing::new("ns", "i")
            .path("/", "Prefix", "svc-a", "80")
            .path("/typo", "Prefix", "svc-nope", "80")
            .path("/badport", "Prefix", "svc-a", "grpc")
            .build(),
    );
    let snap = build(&s, &opts());
    assert_eq!(
        snap.http
            .route("h", "/typo/x")
            .unwrap()
            .backend
            .service
            .name,
        "svc-nope"
    );
    assert!(
        snap.http
            .route("h", "/typo/x")
            .unwrap()
            .backend
            .endpoints
            .is_empty()
    );
    assert!(
        snap.http
            .route("h", "/badport")
            .unwrap()
            .backend
            .endpoints
            .is_empty()
    );
    assert!(
        !snap
            .http
            .route("h", "/ok")
            .unwrap()
            .backend
            .endpoints
            .is_empty()
    );
    let got: Vec<_> = snap
        .problems
        .iter()
        .map(|p| (p.kind, p.field.as_deref().unwrap(), p.message.as_str()))
        .collect();
    assert_eq!(
        got,
        [
            (
                "unknown_service",
                "spec.rules[0].http.paths[1].backend.service.name",
                "Service ns/svc-nope not found; requests get 503"
            ),
            (
                "unknown_service_port",
                "spec.rules[0].http.paths[2].backend.service.port",
                "Service ns/svc-a has no port \"grpc\" (ports: 80/http); requests get 503"
            ),
        ]
    );
}

#[test]
fn a_broken_ingress_does_not_affect_others() {
    let mut s = store();
    s.ingresses.push(
        Ing::new("ns", "good")
            .host("good")
            .path("/", "Prefix", "svc-a", "80")
            .build(),
    );
    let mut bad = Ing::new("ns", "bad")
        .host("f*o.com")
        .path("/", "Prefix", "svc-b", "80")
        .host("bad")
        .path("rel", "Prefix", "svc-b", "80")
        .build();
    bad.spec.as_mut().unwrap().rules.as_mut().unwrap()[1]
        .http
        .as_mut()
        .unwrap()
        .paths
        .push(k8s_openapi::api::networking::v1::HTTPIngressPath {
            path: Some("/x".into()),
            path_type: "Regex".into(),
            backend: super::fixtures::backend("svc-b", "80"),
        });
    s.ingresses.push(bad);
    let snap = build(&s, &opts());
    assert_eq!(routed(&snap, "good", "/").as_deref(), Some("svc-a"));
    assert_eq!(
        kinds(&snap),
        [
            ("invalid_host", "bad", Some("spec.rules[0].host")),
            (
                "invalid_path",
                "bad",
                Some("spec.rules[1].http.paths[0].path")
            ),
            (
                "invalid_path_type",
                "bad",
                Some("spec.rules[1].http.paths[1].pathType")
            ),
        ]
    );
}

#[test]
#[expect(clippy::type_complexity, reason = "a test table")]
fn tls_secret_table() {
    use super::fixtures::{CERT_PEM, KEY_PEM};
    // (rule, Secret or none, expected Problem (object kind, field, kind, message) or none)
    #[rustfmt::skip]
    let rows: Vec<(&str, Option<Secret>, Option<(&str, &str, &str, &str)>)> = vec![
        ("valid Secret", Some(tls_secret("ns", "cert")), None),
        ("missing Secret", None, Some(("Ingress", "spec.tls[0].secretName", "unknown_secret",
            "Secret ns/cert not found (only kubernetes.io/tls Secrets are read)"))),
        ("wrong type", Some(secret("ns", "cert", "Opaque", &[("tls.crt", CERT_PEM), ("tls.key", KEY_PEM)])),
            Some(("Secret", "type", "secret_wrong_type", "type is \"Opaque\", expected \"kubernetes.io/tls\" (used by Ingress ns/i spec.tls[0].secretName)"))),
        ("missing tls.key", Some(secret("ns", "cert", "kubernetes.io/tls", &[("tls.crt", CERT_PEM)])),
            Some(("Secret", "data[\"tls.key\"]", "secret_missing_key", "missing key tls.key (used by Ingress ns/i spec.tls[0].secretName)"))),
        ("missing tls.crt", Some(secret("ns", "cert", "kubernetes.io/tls", &[("tls.key", KEY_PEM)])),
            Some(("Secret", "data[\"tls.crt\"]", "secret_missing_key", "missing key tls.crt (used by Ingress ns/i spec.tls[0].secretName)"))),
        ("garbage tls.crt", Some(secret("ns", "cert", "kubernetes.io/tls", &[("tls.crt", "hello"), ("tls.key", KEY_PEM)])),
            Some(("Secret", "data[\"tls.crt\"]", "secret_invalid_pem", "tls.crt: no PEM CERTIFICATE block found (used by Ingress ns/i spec.tls[0].secretName)"))),
        ("key in tls.crt's place", Some(secret("ns", "cert", "kubernetes.io/tls", &[("tls.crt", CERT_PEM), ("tls.key", CERT_PEM)])),
            Some(("Secret", "data[\"tls.key\"]", "secret_invalid_pem", "tls.key: no PEM private key block found (expected PRIVATE KEY, RSA PRIVATE KEY or EC PRIVATE KEY) (used by Ingress ns/i spec.tls[0].secretName)"))),
    ];
    for (rule, sec, want) in rows {
        let mut s = store();
        s.secrets.extend(sec);
        s.ingresses.push(
            Ing::new("ns", "i")
                .host("secure.com")
                .path("/", "Prefix", "svc-a", "80")
                .tls(&["secure.com", "*.secure.com"], "cert")
                .build(),
        );
        let snap = build(&s, &opts());
        assert!(
            snap.http.is_tls_host("secure.com"),
            "{rule}: tls host is listed whatever the Secret"
        );
        assert!(
            snap.http.route("secure.com", "/").is_some(),
            "{rule}: the routes stay"
        );
        let got = snap.problems.first().map(|p| {
            (
                p.object.kind.as_str(),
                p.field.as_deref().unwrap(),
                p.kind,
                p.message.as_str(),
            )
        });
        assert_eq!(got, want, "{rule}");
        assert_eq!(snap.problems.len(), usize::from(want.is_some()), "{rule}");
        let cert = snap.tls.get("secure.com");
        assert_eq!(cert.is_some(), want.is_none(), "{rule}");
        if let Some(c) = cert {
            assert_eq!(c.secret.name, "cert");
            assert_eq!(c.chain.len(), 1);
            assert!(snap.tls.get("a.secure.com").is_some());
            assert!(snap.tls.get("a.b.secure.com").is_none());
        }
    }
}

#[test]
fn a_broken_secret_is_reported_once_for_many_ingresses() {
    let mut s = store();
    s.secrets.push(secret("ns", "cert", "Opaque", &[]));
    for name in ["a", "b", "c"] {
        s.ingresses.push(
            Ing::new("ns", name)
                .host(name)
                .path("/", "Prefix", "svc-a", "80")
                .tls(&[name], "cert")
                .build(),
        );
    }
    let snap = build(&s, &opts());
    assert_eq!(snap.problems.len(), 1, "{:?}", snap.problems);
}

#[test]
fn build_is_deterministic_whatever_the_input_order() {
    let mut s = store();
    s.config_maps.push(config_map(
        "ingress",
        "tcp",
        &[
            ("9000", "ns/svc-a:80"),
            ("abc", "x"),
            ("9001", "ns/svc-b:http"),
        ],
    ));
    for i in 0..20 {
        s.ingresses.push(
            Ing::new("ns", &format!("i{i}"))
                .host("h")
                .path("/same", "Prefix", "svc-a", "80")
                .path(&format!("/p{i}"), "Exact", "svc-c", "80")
                .build(),
        );
    }
    let o = Options {
        tcp_services: Some("ingress/tcp".parse().unwrap()),
        ..opts()
    };
    let a = build(&s, &o);
    s.ingresses.reverse();
    s.services.reverse();
    let b = build(&s, &o);
    assert_eq!(a.problems, b.problems);
    assert_eq!(a.l4, b.l4);
    assert_eq!(a.problems.len(), 20, "19 conflicts + 1 bad key");
    assert_eq!(
        routed(&a, "h", "/same").as_deref(),
        routed(&b, "h", "/same").as_deref()
    );
}

#[test]
fn store_problems_are_carried_into_the_snapshot() {
    let mut s = store();
    let p = Problem {
        object: ObjectRef {
            kind: "File".into(),
            namespace: None,
            name: "x.yaml".into(),
        },
        field: Some("line 3".into()),
        kind: "invalid_manifest",
        message: "bad".into(),
        severity: Severity::Error,
    };
    s.problems.push(p.clone());
    assert_eq!(build(&s, &opts()).problems, [p]);
}

#[test]
fn namespaced_name_parsing() {
    assert_eq!("a/b".parse::<NamespacedName>().unwrap().to_string(), "a/b");
    for bad in ["", "a", "/b", "a/", "a/b/c", "a b/c"] {
        let err = bad.parse::<NamespacedName>().unwrap_err();
        assert_eq!(
            err.to_string(),
            format!("expected namespace/name (e.g. ingress-nginx/tcp-services), got {bad:?}")
        );
    }
}

#[test]
fn bad_annotations_are_problems_and_the_ingress_is_still_served() {
    let a = |name: &str| format!("nginx.ingress.kubernetes.io/{name}");
    let mut s = store();
    s.ingresses.push(
        Ing::new("ns", "annotated")
            .host("a.com")
            .path("/", "Prefix", "svc-a", "80")
            .path("/b", "Prefix", "svc-b", "80")
            .annotation(&a("ssl-redirect"), "maybe")
            .annotation(&a("force-ssl-redirect"), "true")
            .annotation(&a("configuration-snippet"), "return 200;")
            .annotation(&a("denylist-source-range"), "10.0.0.0/8")
            .default_backend("svc-d", "80")
            .build(),
    );
    s.ingresses.push(
        Ing::new("ns", "plain")
            .host("b.com")
            .path("/", "Prefix", "svc-c", "80")
            .build(),
    );
    let snap = build(&s, &opts());
    assert_eq!(routed(&snap, "a.com", "/b").as_deref(), Some("svc-b"));
    for path in ["/", "/b"] {
        let policy = snap.http.route("a.com", path).unwrap().backend.policy();
        assert!(policy.force_ssl_redirect, "{path}");
        assert_eq!(
            policy.ssl_redirect, None,
            "{path}: the bad value is not applied"
        );
        assert_eq!(policy.deny, vec!["10.0.0.0/8".parse().unwrap()], "{path}");
    }
    let plain = snap.http.route("b.com", "/").unwrap().backend;
    let fallback = snap.http.default_backend().unwrap();
    assert!(
        fallback.policy.is_none(),
        "a defaultBackend serves other hosts too"
    );
    assert!(
        plain.policy.is_none(),
        "another Ingress's annotations stay its own"
    );
    let field = |n: &str| format!("metadata.annotations[{:?}]", a(n));
    let problems: Vec<_> = snap
        .problems
        .iter()
        .map(|p| (p.kind, p.object.name.as_str(), p.field.clone(), p.severity))
        .collect();
    assert_eq!(
        problems,
        [
            (
                "annotation_refused",
                "annotated",
                Some(field("configuration-snippet")),
                Severity::Warning
            ),
            (
                "invalid_annotation",
                "annotated",
                Some(field("ssl-redirect")),
                Severity::Error
            ),
        ]
    );
}

#[test]
fn annotations_prefix_is_configurable() {
    let mut s = store();
    s.ingresses.push(
        Ing::new("ns", "i")
            .host("a.com")
            .path("/", "Prefix", "svc-a", "80")
            .annotation("example.com/force-ssl-redirect", "true")
            .annotation("nginx.ingress.kubernetes.io/ssl-redirect", "bogus")
            .build(),
    );
    let o = Options {
        annotations_prefix: "example.com".to_owned(),
        ..opts()
    };
    let snap = build(&s, &o);
    assert!(snap.problems.is_empty(), "{:?}", snap.problems);
    let policy = snap.http.route("a.com", "/").unwrap().backend.policy();
    assert!(policy.force_ssl_redirect);
    let verdicts = annotation_verdicts(&Objects::from_store(&s), &o);
    assert_eq!(verdicts.len(), 1);
    assert_eq!(verdicts[0].1[0].name, "force-ssl-redirect");
}

#[test]
fn use_regex_on_one_ingress_makes_the_whole_host_regex() {
    let mut s = store();
    s.ingresses.push(
        Ing::new("ns", "old")
            .created(1)
            .host("a.com")
            .path("/plain", "Exact", "svc-a", "80")
            .path("/bad(", "Prefix", "svc-a", "80")
            .build(),
    );
    s.ingresses.push(
        Ing::new("ns", "regex")
            .created(2)
            .host("a.com")
            .path("/r/[0-9]+", "ImplementationSpecific", "svc-b", "80")
            .annotation("nginx.ingress.kubernetes.io/use-regex", "true")
            .build(),
    );
    s.ingresses.push(
        Ing::new("ns", "other")
            .host("b.com")
            .path("/bad(", "Prefix", "svc-c", "80")
            .build(),
    );
    let snap = build(&s, &opts());
    // (host, path, backend): Exact becomes a case-insensitive string-prefix regex too.
    for (host, path, want) in [
        ("a.com", "/r/12", Some("svc-b")),
        ("a.com", "/R/12/x", Some("svc-b")),
        ("a.com", "/r/x", None),
        ("a.com", "/PLAIN/more", Some("svc-a")),
        ("a.com", "/plainer", Some("svc-a")),
        ("a.com", "/bad(", None),
        ("b.com", "/bad(/x", Some("svc-c")),
    ] {
        assert_eq!(routed(&snap, host, path).as_deref(), want, "{host}{path}");
    }
    assert_eq!(
        kinds(&snap),
        [(
            "invalid_path_regex",
            "old",
            Some("spec.rules[0].http.paths[1].path")
        )]
    );
    let rules = snap.http.rules();
    assert!(
        rules
            .iter()
            .filter(|r| r.host.to_string() == "a.com")
            .all(|r| r.regex)
    );
    assert!(
        rules
            .iter()
            .filter(|r| r.host.to_string() == "b.com")
            .all(|r| !r.regex)
    );
}

/// `ssl-passthrough`: a host goes to its `/` path's backend (ingress-nginx's
/// `buildPassthroughBackends`: only the root location; exact server names only); hosts it
/// cannot pass through get a Warning naming the annotation, and are terminated as usual.
#[test]
fn ssl_passthrough_takes_exact_hosts_with_a_root_path() {
    let mut s = store();
    s.ingresses.push(
        Ing::new("ns", "pass")
            .host("pass.com")
            .path("/", "Prefix", "svc-a", "80")
            .path("/api", "Prefix", "svc-b", "80")
            .host("*.wild.com")
            .path("/", "Prefix", "svc-a", "80")
            .host("noroot.com")
            .path("/x", "Prefix", "svc-c", "80")
            .annotation("nginx.ingress.kubernetes.io/ssl-passthrough", "true")
            .build(),
    );
    s.ingresses.push(
        Ing::new("ns", "plain")
            .host("plain.com")
            .path("/", "Prefix", "svc-d", "80")
            .build(),
    );
    let snap = build(&s, &opts());
    let passed = |host: &str| {
        snap.http.passthrough(host).map(|r| {
            let b = r.backends[0].target.as_ref().unwrap();
            (r.route.name.clone(), b.service.name.clone())
        })
    };
    assert_eq!(passed("pass.com"), Some(("pass".into(), "svc-a".into())));
    assert_eq!(passed("x.wild.com"), None);
    assert_eq!(passed("noroot.com"), None);
    assert_eq!(passed("plain.com"), None);
    // Plain HTTP still routes every path.
    assert_eq!(routed(&snap, "pass.com", "/api").as_deref(), Some("svc-b"));
    let field = Some("metadata.annotations[\"nginx.ingress.kubernetes.io/ssl-passthrough\"]");
    let problems: Vec<_> = snap
        .problems
        .iter()
        .map(|p| {
            (
                p.kind,
                p.field.as_deref(),
                p.message.split(';').next().unwrap_or(""),
            )
        })
        .collect();
    assert_eq!(
        problems,
        [
            (
                "ssl_passthrough_unused",
                field,
                "host *.wild.com is a wildcard"
            ),
            (
                "ssl_passthrough_unused",
                field,
                "host noroot.com has no path /, whose backend passthrough would use"
            ),
        ]
    );
}
