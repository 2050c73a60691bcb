//! L7 routing end to end: the Kubernetes documentation's path and host tables, through
//! `config::build`, the real router on 127.0.0.1, and real backends that name themselves.

use ingress_tests::http_support::{
    RunningRouter, TestBackend, get, http_client, ingress_yaml, service_yaml, snapshot,
};
use xdp_ingress::http::Limits;

/// Services `b0..bN` backed by test backends of the same names.
async fn backends(n: usize) -> (Vec<TestBackend>, String) {
    let mut list = Vec::new();
    let mut yaml = String::new();
    for i in 0..n {
        let b = TestBackend::start(&format!("b{i}")).await;
        yaml.push_str(&service_yaml(&b.name, &[b.addr]));
        list.push(b);
    }
    (list, yaml)
}

/// (rule, paths as (pathType, path), request path, expected backend).
type PathRow = (
    &'static str,
    &'static [(&'static str, &'static str)],
    &'static str,
    Option<&'static str>,
);

/// The "Examples" table of the Ingress documentation (path types). Each path of a row goes
/// to its own backend (`b0`, `b1`, ...); `None` means "no match: default backend (404)".
#[tokio::test]
async fn path_table_of_the_kubernetes_docs() {
    let (_backends, services) = backends(3).await;
    let rows: &[PathRow] = &[
        (
            "Prefix / matches all paths",
            &[("Prefix", "/")],
            "/anything/at/all",
            Some("b0"),
        ),
        (
            "Exact /foo matches /foo",
            &[("Exact", "/foo")],
            "/foo",
            Some("b0"),
        ),
        (
            "Exact /foo does not match /bar",
            &[("Exact", "/foo")],
            "/bar",
            None,
        ),
        (
            "Exact /foo does not match /foo/",
            &[("Exact", "/foo")],
            "/foo/",
            None,
        ),
        (
            "Exact /foo/ does not match /foo",
            &[("Exact", "/foo/")],
            "/foo",
            None,
        ),
        (
            "Prefix /foo matches /foo",
            &[("Prefix", "/foo")],
            "/foo",
            Some("b0"),
        ),
        (
            "Prefix /foo matches /foo/",
            &[("Prefix", "/foo")],
            "/foo/",
            Some("b0"),
        ),
        (
            "Prefix /foo/ matches /foo",
            &[("Prefix", "/foo/")],
            "/foo",
            Some("b0"),
        ),
        (
            "Prefix /foo/ matches /foo/",
            &[("Prefix", "/foo/")],
            "/foo/",
            Some("b0"),
        ),
        (
            "Prefix /aaa/bb does not match /aaa/bbb",
            &[("Prefix", "/aaa/bb")],
            "/aaa/bbb",
            None,
        ),
        (
            "Prefix /aaa/bbb matches /aaa/bbb",
            &[("Prefix", "/aaa/bbb")],
            "/aaa/bbb",
            Some("b0"),
        ),
        (
            "Prefix /aaa/bbb/ ignores the trailing slash",
            &[("Prefix", "/aaa/bbb/")],
            "/aaa/bbb",
            Some("b0"),
        ),
        (
            "Prefix /aaa/bbb matches the trailing slash",
            &[("Prefix", "/aaa/bbb")],
            "/aaa/bbb/",
            Some("b0"),
        ),
        (
            "Prefix /aaa/bbb matches a subpath",
            &[("Prefix", "/aaa/bbb")],
            "/aaa/bbb/ccc",
            Some("b0"),
        ),
        (
            "Prefix /aaa/bbb is not a string prefix",
            &[("Prefix", "/aaa/bbb")],
            "/aaa/bbbxyz",
            None,
        ),
        (
            "Prefix /, /aaa: /aaa/ccc matches /aaa",
            &[("Prefix", "/"), ("Prefix", "/aaa")],
            "/aaa/ccc",
            Some("b1"),
        ),
        (
            "Prefix /, /aaa, /aaa/bbb: /aaa/bbb matches /aaa/bbb",
            &[("Prefix", "/"), ("Prefix", "/aaa"), ("Prefix", "/aaa/bbb")],
            "/aaa/bbb",
            Some("b2"),
        ),
        (
            "Prefix /, /aaa, /aaa/bbb: /ccc matches /",
            &[("Prefix", "/"), ("Prefix", "/aaa"), ("Prefix", "/aaa/bbb")],
            "/ccc",
            Some("b0"),
        ),
        (
            "Prefix /aaa does not match /ccc",
            &[("Prefix", "/aaa")],
            "/ccc",
            None,
        ),
        (
            "Exact beats Prefix for the same path",
            &[("Prefix", "/foo"), ("Exact", "/foo")],
            "/foo",
            Some("b1"),
        ),
        (
            "ImplementationSpecific is Prefix",
            &[("ImplementationSpecific", "/foo")],
            "/foo/bar",
            Some("b0"),
        ),
    ];
    let router = RunningRouter::start(snapshot(&services, Vec::new()), Limits::default()).await;
    let client = http_client();
    let mut failures = Vec::new();
    for (rule, paths, request, want) in rows {
        let paths: Vec<(&str, &str, String)> = paths
            .iter()
            .enumerate()
            .map(|(i, (ty, p))| (*p, *ty, format!("b{i}")))
            .collect();
        let paths: Vec<(&str, &str, &str)> =
            paths.iter().map(|(p, t, s)| (*p, *t, s.as_str())).collect();
        let yaml = format!("{services}{}", ingress_yaml("table", None, &paths));
        router.publish(snapshot(&yaml, Vec::new())).await;
        let answer = get(&client, router.http, "docs.test", request).await;
        let got = (answer.status.as_u16() == 200).then(|| answer.backend().to_owned());
        if got.as_deref() != *want {
            failures.push(format!(
                "{rule}: GET {request} gave {} {:?}, want {want:?}",
                answer.status,
                answer.backend()
            ));
        } else if want.is_none() {
            assert_eq!(
                answer.status, 404,
                "{rule}: unmatched requests get the built-in 404"
            );
        }
    }
    assert!(failures.is_empty(), "{failures:#?}");
}

/// The "Hostname wildcards" table and the name-based virtual hosting example of the docs:
/// exact hosts, a one-label wildcard, and a rule without host that matches any host.
#[tokio::test]
async fn host_table_of_the_kubernetes_docs() {
    let (_backends, services) = backends(3).await;
    let yaml = format!(
        "{services}{}{}{}",
        ingress_yaml("exact", Some("foo.bar.com"), &[("/", "Prefix", "b0")]),
        ingress_yaml("wild", Some("*.foo.com"), &[("/", "Prefix", "b1")]),
        ingress_yaml("any", None, &[("/any", "Prefix", "b2")]),
    );
    let router = RunningRouter::start(snapshot(&yaml, Vec::new()), Limits::default()).await;
    let client = http_client();
    let rows: &[(&str, &str, &str, Option<&str>)] = &[
        ("exact host matches", "foo.bar.com", "/", Some("b0")),
        (
            "host compares case-insensitively and ignores the port",
            "FOO.bar.com:8080",
            "/",
            Some("b0"),
        ),
        (
            "*.foo.com matches bar.foo.com",
            "bar.foo.com",
            "/",
            Some("b1"),
        ),
        (
            "*.foo.com does not match baz.bar.foo.com",
            "baz.bar.foo.com",
            "/",
            None,
        ),
        ("*.foo.com does not match foo.com", "foo.com", "/", None),
        (
            "a rule without host matches any host",
            "other.example",
            "/any/x",
            Some("b2"),
        ),
        (
            "an unknown host with no host-less path gets the default backend",
            "other.example",
            "/",
            None,
        ),
    ];
    let mut failures = Vec::new();
    for (rule, host, path, want) in rows {
        let answer = get(&client, router.http, host, path).await;
        let got = (answer.status.as_u16() == 200).then(|| answer.backend().to_owned());
        if got.as_deref() != *want {
            failures.push(format!(
                "{rule}: {host}{path} gave {} {:?}, want {want:?}",
                answer.status,
                answer.backend()
            ));
        }
    }
    assert!(failures.is_empty(), "{failures:#?}");
}

/// The built-in default backend answers `/healthz` with 200 and the rest with 404; an
/// Ingress `defaultBackend` replaces it.
#[tokio::test]
async fn default_backend_builtin_and_from_ingress() {
    let (_backends, services) = backends(2).await;
    let yaml = format!(
        "{services}{}",
        ingress_yaml("site", Some("site.test"), &[("/", "Prefix", "b0")])
    );
    let router = RunningRouter::start(snapshot(&yaml, Vec::new()), Limits::default()).await;
    let client = http_client();
    let health = get(&client, router.http, "unknown.test", "/healthz").await;
    assert_eq!(
        (health.status.as_u16(), health.body.as_str()),
        (200, "ok\n")
    );
    let missing = get(&client, router.http, "unknown.test", "/x").await;
    assert_eq!(missing.status, 404);
    assert!(missing.body.starts_with("404"), "{:?}", missing.body);

    let with_default = format!(
        "{yaml}---\napiVersion: networking.k8s.io/v1\nkind: Ingress\nmetadata:\n  name: fallback\n  namespace: default\nspec:\n  ingressClassName: xdp\n  defaultBackend:\n    service:\n      name: b1\n      port:\n        number: 80\n"
    );
    router.publish(snapshot(&with_default, Vec::new())).await;
    let fallback = get(&client, router.http, "unknown.test", "/x").await;
    assert_eq!((fallback.status.as_u16(), fallback.backend()), (200, "b1"));
    let routed = get(&client, router.http, "site.test", "/x").await;
    assert_eq!(routed.backend(), "b0");
}

/// What the backend sees: Host kept, X-Forwarded-* and X-Real-IP set, X-Forwarded-For
/// appended, a generated X-Request-ID, and no hop-by-hop headers.
#[tokio::test]
async fn forwarded_headers_reach_the_backend() {
    let (_backends, services) = backends(1).await;
    let yaml = format!(
        "{services}{}",
        ingress_yaml("site", Some("site.test"), &[("/", "Prefix", "b0")])
    );
    let router = RunningRouter::start(snapshot(&yaml, Vec::new()), Limits::default()).await;
    let request = "GET /h HTTP/1.1\r\nHost: site.test\r\nX-Forwarded-For: 198.51.100.1\r\nConnection: close, X-Secret\r\nX-Secret: s\r\nKeep-Alive: 5\r\nProxy-Authorization: x\r\n\r\n";
    let (raw, closed) = ingress_tests::http_support::raw_exchange(
        router.http,
        request.as_bytes(),
        std::time::Duration::from_secs(5),
    )
    .await;
    assert!(closed, "Connection: close is honoured");
    assert!(raw.starts_with("HTTP/1.1 200"), "{raw}");
    let body = raw.split("\r\n\r\n").nth(1).unwrap_or("");
    let seen = |name: &str| {
        body.lines()
            .find_map(|l| l.strip_prefix(name)?.strip_prefix(": "))
            .map(str::to_owned)
    };
    assert_eq!(seen("host").as_deref(), Some("site.test"));
    assert_eq!(
        seen("x-forwarded-for").as_deref(),
        Some("198.51.100.1, 127.0.0.1")
    );
    assert_eq!(seen("x-real-ip").as_deref(), Some("127.0.0.1"));
    assert_eq!(seen("x-forwarded-proto").as_deref(), Some("http"));
    assert_eq!(seen("x-forwarded-host").as_deref(), Some("site.test"));
    assert_eq!(
        seen("x-forwarded-port").as_deref(),
        Some(router.http.port().to_string().as_str())
    );
    assert_eq!(seen("x-request-id").map(|id| id.len()), Some(32));
    for hop in ["x-secret", "keep-alive", "proxy-authorization"] {
        assert_eq!(seen(hop), None, "{hop} must not be forwarded");
    }
}
