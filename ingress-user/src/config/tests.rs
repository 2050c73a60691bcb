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

/// An Ingress for `host` `path` → `svc`, created at `created`, with annotations (names
/// without the prefix).
fn annotated(
    name: &str,
    created: i64,
    (host, path, path_type, svc): (&str, &str, &str, &str),
    annotations: &[(&str, &str)],
) -> k8s_openapi::api::networking::v1::Ingress {
    let mut b = Ing::new("ns", name)
        .created(created)
        .host(host)
        .path(path, path_type, svc, "80");
    for (k, v) in annotations {
        b = b.annotation(&format!("nginx.ingress.kubernetes.io/{k}"), v);
    }
    b.build()
}

/// A canary (`canary: "true"`, by header) for `host` `path` → `svc`.
const CANARY: &[(&str, &str)] = &[("canary", "true"), ("canary-by-header", "X-Canary")];

/// How canary Ingresses merge (ingress-nginx's `mergeAlternativeBackends`): a canary path
/// becomes the alternative backend of the main route with the same host, path and
/// (effective) type, whichever is older; without one it is not served; one canary per path.
#[test]
fn canary_ingresses_merge_into_the_main_route() {
    type Row = (
        &'static str,
        Vec<k8s_openapi::api::networking::v1::Ingress>,
        // (path, main Service, canary Service) on host h; main None: not routed.
        (&'static str, Option<&'static str>, Option<&'static str>),
        Vec<(&'static str, &'static str)>,
    );
    let main = |created| annotated("main", created, ("h", "/x", "Prefix", "svc-a"), &[]);
    let rows: Vec<Row> = vec![
        (
            "a canary becomes the alternative of the main path",
            vec![
                main(1),
                annotated("can", 2, ("h", "/x", "Prefix", "svc-b"), CANARY),
            ],
            ("/x", Some("svc-a"), Some("svc-b")),
            vec![],
        ),
        (
            "an older canary attaches too",
            vec![
                main(2),
                annotated("can", 1, ("h", "/x", "Prefix", "svc-b"), CANARY),
            ],
            ("/x/y", Some("svc-a"), Some("svc-b")),
            vec![],
        ),
        (
            "ImplementationSpecific matches a Prefix main",
            vec![
                main(1),
                annotated(
                    "can",
                    2,
                    ("h", "/x/", "ImplementationSpecific", "svc-b"),
                    CANARY,
                ),
            ],
            ("/x", Some("svc-a"), Some("svc-b")),
            vec![],
        ),
        (
            "an Exact canary has no Prefix main",
            vec![
                main(1),
                annotated("can", 2, ("h", "/x", "Exact", "svc-b"), CANARY),
            ],
            ("/x", Some("svc-a"), None),
            vec![("canary_without_main", "can")],
        ),
        (
            "a canary without a main Ingress is not served",
            vec![annotated("can", 2, ("h", "/x", "Prefix", "svc-b"), CANARY)],
            ("/x", None, None),
            vec![("canary_without_main", "can")],
        ),
        (
            "one canary per path: the older one",
            vec![
                main(1),
                annotated("can1", 2, ("h", "/x", "Prefix", "svc-b"), CANARY),
                annotated("can2", 3, ("h", "/x", "Prefix", "svc-c"), CANARY),
            ],
            ("/x", Some("svc-a"), Some("svc-b")),
            vec![("canary_conflict", "can2")],
        ),
        (
            "a canary of the main Service is ignored",
            vec![
                main(1),
                annotated("can", 2, ("h", "/x", "Prefix", "svc-a"), CANARY),
            ],
            ("/x", Some("svc-a"), None),
            vec![("canary_conflict", "can")],
        ),
        (
            "canary false is an ordinary Ingress: a conflict",
            vec![
                main(1),
                annotated(
                    "can",
                    2,
                    ("h", "/x", "Prefix", "svc-b"),
                    &[("canary", "false"), ("canary-by-header", "X-Canary")],
                ),
            ],
            ("/x", Some("svc-a"), None),
            vec![("route_conflict", "can")],
        ),
    ];
    for (case, ingresses, (path, want_main, want_canary), want_problems) in rows {
        let mut s = store();
        s.ingresses = ingresses;
        let snap = build(&s, &opts());
        let m = snap.http.route("h", path);
        assert_eq!(
            m.map(|m| m.backend.service.name.as_str()),
            want_main,
            "{case}"
        );
        let canary = m.and_then(|m| m.backend.canary.as_ref());
        assert_eq!(
            canary.map(|c| c.backend.service.name.as_str()),
            want_canary,
            "{case}"
        );
        let got: Vec<(&str, &str)> = kinds(&snap).iter().map(|k| (k.0, k.1)).collect();
        assert_eq!(got, want_problems, "{case}");
        if let Some(c) = canary {
            assert_eq!(
                c.rules.header.as_ref().map(hyper::http::HeaderName::as_str),
                Some("x-canary")
            );
            let owner = &c.backend.ingress.as_ref().unwrap().name;
            assert!(owner.starts_with("can"), "{case}: {owner}");
        }
    }
}

/// custom-headers (customheaders.go): the ConfigMap's data become the route's response
/// headers when every name is allowed by --global-allowed-response-headers; a missing
/// ConfigMap (customheaders.go "invalid secret": 503), one in another namespace, or a
/// refused header deny the location and name the annotation.
#[test]
fn custom_headers_read_the_config_map_or_deny() {
    let field = r#"metadata.annotations["nginx.ingress.kubernetes.io/custom-headers"]"#;
    for (reference, data, served, problem) in [
        ("hdr", &[("My-Custom-Header", "42")][..], true, ""),
        ("ns/hdr", &[("My-Custom-Header", "$remote_addr")], true, ""),
        ("missing", &[], false, "ConfigMap ns/missing not found"),
        ("other/hdr", &[], false, "another namespace"),
        ("hdr", &[("X-Secret", "1")], false, "not allowed"),
    ] {
        let mut s = store();
        s.config_maps.push(config_map("ns", "hdr", data));
        s.config_maps
            .push(config_map("other", "hdr", &[("My-Custom-Header", "1")]));
        s.ingresses.push(
            Ing::new("ns", "i")
                .host("a.com")
                .path("/", "Prefix", "svc-a", "80")
                .annotation("nginx.ingress.kubernetes.io/custom-headers", reference)
                .build(),
        );
        let o = Options {
            allowed_response_headers: vec!["my-custom-header".parse().unwrap()],
            ..opts()
        };
        let snap = build(&s, &o);
        let policy = snap.http.route("a.com", "/").unwrap().backend.policy();
        assert_eq!(policy.denied, !served, "{reference} {data:?}");
        if served {
            assert!(snap.problems.is_empty(), "{:?}", snap.problems);
            let got: Vec<(&str, &str)> = policy
                .response_headers
                .iter()
                .map(|(n, v)| (n.as_str(), v.to_str().unwrap()))
                .collect();
            assert_eq!(got, vec![("my-custom-header", data[0].1)]);
        } else {
            let p = &snap.problems[0];
            assert_eq!(p.field.as_deref(), Some(field));
            assert!(p.message.contains(problem), "{}", p.message);
            assert!(p.message.contains("503"), "{}", p.message);
        }
        // `xdp-ingress check` says so too.
        let verdicts = annotation_verdicts(&Objects::from_store(&s), &o);
        let want = if served {
            annotations::Status::Applied
        } else {
            annotations::Status::Invalid
        };
        assert_eq!(verdicts[0].1[0].status, want, "{reference} {data:?}");
    }
}

/// server-alias (alias.go, and ingress-nginx's rule that an alias never takes over a host
/// an Ingress defines): (Ingresses as (name, host, path, service, alias), requests as
/// (host, path, routed to), Problems on the alias).
#[test]
fn server_alias_answers_for_its_host_unless_another_ingress_defines_it() {
    type Ing4 = (
        &'static str,
        &'static str,
        &'static str,
        &'static str,
        &'static str,
    );
    /// (host, path, Service routed to).
    type Req = (&'static str, &'static str, Option<&'static str>);
    let cases: &[(&[Ing4], &[Req], usize)] = &[
        (
            &[("foo", "foo", "/", "svc-a", "")],
            &[("foo", "/", Some("svc-a")), ("bar", "/", None)],
            0,
        ),
        (
            &[("foo", "foo", "/", "svc-a", "bar")],
            &[
                ("foo", "/", Some("svc-a")),
                ("bar", "/", Some("svc-a")),
                ("BAR:80", "/x", Some("svc-a")),
            ],
            0,
        ),
        (
            // Two Ingresses on one host, one alias: the alias gets every path of the host.
            &[
                ("app-a", "foo", "/app-a", "svc-a", ""),
                ("app-b", "foo", "/app-b", "svc-b", "bar"),
            ],
            &[
                ("bar", "/app-a", Some("svc-a")),
                ("bar", "/app-b", Some("svc-b")),
            ],
            0,
        ),
        (
            // The alias names a host another Ingress defines: ignored, even from the
            // older Ingress.
            &[
                ("old", "foo", "/", "svc-a", "bar"),
                ("new", "bar", "/", "svc-b", ""),
            ],
            &[("bar", "/", Some("svc-b")), ("foo", "/", Some("svc-a"))],
            1,
        ),
        (
            // One alias for two hosts: the older Ingress keeps it.
            &[
                ("old", "foo", "/", "svc-a", "bar"),
                ("new", "baz", "/", "svc-b", "bar, qux"),
            ],
            &[("bar", "/", Some("svc-a")), ("qux", "/", Some("svc-b"))],
            1,
        ),
        (
            // An exact alias is tried before wildcard hosts, as nginx's server names.
            &[
                ("wild", "*.example.com", "/", "svc-a", ""),
                ("foo", "foo", "/", "svc-b", "bar.example.com"),
            ],
            &[
                ("bar.example.com", "/", Some("svc-b")),
                ("x.example.com", "/", Some("svc-a")),
            ],
            0,
        ),
    ];
    for (i, (ingresses, requests, problems)) in cases.iter().enumerate() {
        let mut s = store();
        for (n, (name, host, path, svc, alias)) in ingresses.iter().enumerate() {
            let mut b = Ing::new("ns", name)
                .created(i64::try_from(n).unwrap())
                .host(host)
                .path(path, "Prefix", svc, "80");
            if !alias.is_empty() {
                b = b.annotation("nginx.ingress.kubernetes.io/server-alias", alias);
            }
            s.ingresses.push(b.build());
        }
        let snap = build(&s, &opts());
        for (host, path, want) in *requests {
            let got = snap
                .http
                .route(host, path)
                .map(|m| m.backend.service.name.clone());
            assert_eq!(got.as_deref(), *want, "case {i}: {host}{path}");
        }
        assert_eq!(
            snap.problems.len(),
            *problems,
            "case {i}: {:?}",
            snap.problems
        );
        for p in &snap.problems {
            assert_eq!(p.kind, "alias_conflict");
            assert_eq!(
                p.field.as_deref(),
                Some(r#"metadata.annotations["nginx.ingress.kubernetes.io/server-alias"]"#)
            );
        }
    }
}

/// A canary's own annotations are ignored except affinity (annotations.md, "Canary"): its
/// backend carries the main route's policy with its own session affinity; its
/// defaultBackend is not used.
#[test]
fn a_canary_takes_the_main_policy_and_its_own_affinity() {
    let mut s = store();
    s.ingresses.push(annotated(
        "main",
        1,
        ("h", "/", "Prefix", "svc-a"),
        &[("upstream-vhost", "internal.example")],
    ));
    let mut canary = annotated(
        "can",
        2,
        ("h", "/", "Prefix", "svc-b"),
        &[
            ("canary", "true"),
            ("canary-weight", "10"),
            ("affinity", "cookie"),
            ("ssl-redirect", "false"),
        ],
    );
    canary.spec.as_mut().unwrap().default_backend = Ing::new("ns", "x")
        .default_backend("svc-c", "80")
        .build()
        .spec
        .unwrap()
        .default_backend;
    s.ingresses.push(canary);
    let snap = build(&s, &opts());
    let m = snap.http.route("h", "/").unwrap();
    assert!(m.backend.policy().affinity().is_none(), "the main has none");
    let c = m.backend.canary.as_ref().unwrap();
    let p = c.backend.policy();
    assert_eq!(p.upstream_vhost.as_deref(), Some("internal.example"));
    assert!(p.affinity().is_some());
    assert_eq!(p.ssl_redirect, None, "the canary's ssl-redirect is ignored");
    assert_eq!(c.rules.weight, 10);
    assert!(snap.http.default_backend().is_none());
    assert_eq!(
        kinds(&snap),
        [("canary_default_backend", "can", Some("spec.defaultBackend"))]
    );
    let verdicts = annotation_verdicts(&Objects::from_store(&s), &opts());
    let ignored: Vec<_> = verdicts
        .iter()
        .flat_map(|(_, v)| v.iter())
        .filter(|v| v.status == annotations::Status::Ignored)
        .map(|v| (v.name.as_str(), v.note.contains("canary")))
        .collect();
    assert_eq!(ignored, [("ssl-redirect", true)]);
}

/// `affinity-canary-behavior: legacy` on a canary: its session affinity is ignored; each
/// Ingress's sessions carry its own tag.
#[test]
fn a_legacy_canary_has_no_affinity_and_sessions_are_tagged_per_ingress() {
    for (behavior, canary_affinity) in [("sticky", true), ("legacy", false)] {
        let mut s = store();
        s.ingresses.push(annotated(
            "main",
            1,
            ("h", "/", "Prefix", "svc-a"),
            &[("affinity", "cookie")],
        ));
        s.ingresses.push(annotated(
            "can",
            2,
            ("h", "/", "Prefix", "svc-b"),
            &[
                ("canary", "true"),
                ("affinity", "cookie"),
                ("affinity-canary-behavior", behavior),
            ],
        ));
        let snap = build(&s, &opts());
        let m = snap.http.route("h", "/").unwrap();
        let main = m.backend.policy().affinity().unwrap();
        assert_eq!(main.tag, crate::snapshot::affinity::tag_of("ns/main"));
        let canary = m
            .backend
            .canary
            .as_ref()
            .unwrap()
            .backend
            .policy()
            .affinity();
        assert_eq!(canary.is_some(), canary_affinity, "{behavior}");
        if let Some(c) = canary {
            assert_eq!(c.tag, crate::snapshot::affinity::tag_of("ns/can"));
        }
        assert!(snap.problems.is_empty(), "{behavior}: {:?}", snap.problems);
    }
}

/// service-upstream (serviceupstream.go: the backend's address is the Service's
/// ClusterIP): `true` forwards to ClusterIP:port; `false` or absent to the endpoints; a
/// Service without a ClusterIP keeps its endpoints, with a warning.
#[test]
fn service_upstream_forwards_to_the_cluster_ip() {
    for (value, cluster_ip, want, warned) in [
        (Some("true"), Some("10.96.0.10"), "10.96.0.10:80", false),
        (Some("false"), Some("10.96.0.10"), "10.0.0.1:8080", false),
        (None, Some("10.96.0.10"), "10.0.0.1:8080", false),
        (Some("true"), Some("None"), "10.0.0.1:8080", true),
        (Some("true"), None, "10.0.0.1:8080", true),
    ] {
        let mut s = store();
        s.services[0].spec.as_mut().unwrap().cluster_ip = cluster_ip.map(str::to_owned);
        let mut ing = Ing::new("ns", "i")
            .host("a.com")
            .path("/", "Prefix", "svc-a", "80");
        if let Some(v) = value {
            ing = ing.annotation("nginx.ingress.kubernetes.io/service-upstream", v);
        }
        s.ingresses.push(ing.build());
        let snap = build(&s, &opts());
        let m = snap.http.route("a.com", "/").unwrap();
        let addrs: Vec<String> = m
            .backend
            .endpoints
            .to_vec()
            .iter()
            .map(ToString::to_string)
            .collect();
        assert_eq!(addrs, vec![want.to_owned()], "{value:?} {cluster_ip:?}");
        let kinds: Vec<&str> = snap.problems.iter().map(|p| p.kind).collect();
        assert_eq!(
            kinds,
            if warned {
                vec!["no_cluster_ip"]
            } else {
                vec![]
            },
            "{value:?} {cluster_ip:?}"
        );
    }
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
