use super::*;
use crate::snapshot::{ServiceRef, policy::RoutePolicy, routes::PathType};

fn route(name: &str) -> Arc<PassthroughRoute> {
    Arc::new(PassthroughRoute {
        route: ObjectRef {
            kind: "TLSRoute".into(),
            namespace: Some("default".into()),
            name: name.into(),
        },
        backends: Vec::new(),
    })
}

fn hosts(entries: &[(&str, &str)]) -> PassthroughHosts {
    let mut h = PassthroughHosts::default();
    for (host, name) in entries {
        match *host {
            "" => h.any = Some(route(name)),
            w if w.starts_with('*') => {
                h.wildcard.insert(w[1..].to_owned(), route(name));
            }
            e => {
                h.exact.insert(e.to_owned(), route(name));
            }
        }
    }
    h
}

fn said(d: &Decision) -> String {
    match d {
        Decision::Terminate => "terminate".into(),
        Decision::NoRoute => "close".into(),
        Decision::Pass(r) => format!("pass {}", r.route.name),
    }
}

#[test]
fn route_hostnames_exact_then_longest_wildcard_then_any() {
    let h = hosts(&[
        ("a.example.com", "exact"),
        ("*.example.com", "wild"),
        ("*.b.example.com", "longer-wild"),
        ("", "any"),
    ]);
    for (sni, want) in [
        ("a.example.com", "exact"),
        ("x.example.com", "wild"),
        ("x.y.example.com", "wild"),
        ("c.b.example.com", "longer-wild"),
        ("b.example.com", "wild"),
        ("example.com", "any"),
        ("other.org", "any"),
    ] {
        assert_eq!(
            h.lookup(sni).map(|r| r.route.name.as_str()),
            Some(want),
            "{sni}"
        );
    }
    assert!(hosts(&[("a.test", "x")]).lookup("b.test").is_none());
}

/// The Gateway API lets HTTPS and TLS Passthrough listeners share a port when their
/// hostnames differ; the most specific listener hostname for the SNI decides (the
/// precedence `PortRoutes::listener_for` uses for HTTPS listeners).
#[test]
fn the_most_specific_listener_decides_between_passthrough_and_termination() {
    let port = PortRoutes {
        tls: true,
        listener_hosts: vec![
            Some("*.example.com".into()),
            Some("secure.pass.test".into()),
        ],
        passthrough: vec![
            PassthroughListener {
                hostname: Some("abc.example.com".into()),
                routes: hosts(&[("abc.example.com", "abc")]),
            },
            PassthroughListener {
                hostname: Some("*.pass.test".into()),
                routes: hosts(&[("a.pass.test", "a"), ("*.deep.pass.test", "deep")]),
            },
        ],
        ..PortRoutes::default()
    };
    let cases = [
        (
            "passthrough listener exact beats HTTPS wildcard",
            Some("abc.example.com"),
            "pass abc",
        ),
        ("HTTPS wildcard", Some("other.example.com"), "terminate"),
        (
            "passthrough wildcard listener, exact route",
            Some("a.pass.test"),
            "pass a",
        ),
        (
            "passthrough wildcard listener, wildcard route",
            Some("x.deep.pass.test"),
            "pass deep",
        ),
        (
            "HTTPS exact beats passthrough wildcard",
            Some("secure.pass.test"),
            "terminate",
        ),
        (
            "passthrough listener without a route for the name",
            Some("b.pass.test"),
            "close",
        ),
        (
            "no listener: left to the Ingress table",
            Some("elsewhere.test"),
            "terminate",
        ),
        ("no SNI is terminated", None, "terminate"),
    ];
    for (name, sni, want) in cases {
        assert_eq!(said(&decide(sni, Some(&port), None)), want, "{name}");
    }
    // A passthrough listener without hostname takes every name no HTTPS listener has.
    let any = PortRoutes {
        tls: true,
        listener_hosts: vec![Some("web.test".into())],
        passthrough: vec![PassthroughListener {
            hostname: None,
            routes: hosts(&[("", "all")]),
        }],
        ..PortRoutes::default()
    };
    assert_eq!(
        said(&decide(Some("web.test"), Some(&any), None)),
        "terminate"
    );
    assert_eq!(said(&decide(Some("db.test"), Some(&any), None)), "pass all");
    // A socket of Passthrough listeners only closes what it cannot pass.
    let only = PortRoutes {
        tls: true,
        passthrough: vec![PassthroughListener {
            hostname: Some("*.db.test".into()),
            routes: hosts(&[("*.db.test", "db")]),
        }],
        ..PortRoutes::default()
    };
    assert_eq!(
        said(&decide(Some("a.db.test"), Some(&only), None)),
        "pass db"
    );
    assert_eq!(said(&decide(Some("web.test"), Some(&only), None)), "close");
    assert_eq!(said(&decide(None, Some(&only), None)), "close");
    // Shared with the Ingress HTTPS socket, the Ingress answers the rest.
    let table = RouteTable::new();
    assert_eq!(
        said(&decide(Some("web.test"), Some(&only), Some(&table))),
        "terminate"
    );
    assert_eq!(said(&decide(None, Some(&only), Some(&table))), "terminate");
}

fn backend(ingress: &str, passthrough: bool) -> Arc<Backend> {
    let policy = RoutePolicy {
        ssl_passthrough: passthrough,
        ..RoutePolicy::default()
    };
    Arc::new(
        Backend::new(
            ServiceRef {
                namespace: "default".into(),
                name: format!("{ingress}-svc"),
                port: 443,
            },
            crate::snapshot::Endpoints::default(),
            Some(ObjectRef {
                kind: "Ingress".into(),
                namespace: Some("default".into()),
                name: ingress.into(),
            }),
        )
        .with_policy((!policy.is_default()).then(|| Arc::new(policy))),
    )
}

/// ingress-nginx (internal/ingress/controller/controller.go, `getBackendServers`): a
/// passthrough server's backend is that of its root location `/`; other locations are
/// ignored; the TCP proxy compares the SNI with server names exactly
/// (internal/ingress/controller/tcp.go, `TCPProxy.Get`).
#[test]
fn an_ingress_host_is_passed_through_to_the_backend_of_its_root_path() {
    let mut table = RouteTable::new();
    let host = |h: &str| crate::snapshot::routes::HostMatch::parse(h);
    table
        .insert(
            &host("pass.test"),
            "/api",
            PathType::Prefix,
            backend("api", true),
        )
        .unwrap();
    table
        .insert(
            &host("pass.test"),
            "/",
            PathType::Prefix,
            backend("root", true),
        )
        .unwrap();
    table
        .insert(
            &host("only-api.test"),
            "/api",
            PathType::Prefix,
            backend("api", true),
        )
        .unwrap();
    table
        .insert(
            &host("plain.test"),
            "/",
            PathType::Prefix,
            backend("plain", false),
        )
        .unwrap();
    table
        .insert(
            &host("*.wild.test"),
            "/",
            PathType::Prefix,
            backend("wild", true),
        )
        .unwrap();
    table
        .insert(
            &host("exact-root.test"),
            "/",
            PathType::Exact,
            backend("exact", true),
        )
        .unwrap();
    let cases = [
        ("pass.test", "pass root"),
        ("only-api.test", "terminate"),
        ("plain.test", "terminate"),
        ("a.wild.test", "terminate"),
        ("exact-root.test", "pass exact"),
        ("unknown.test", "terminate"),
    ];
    for (sni, want) in cases {
        assert_eq!(said(&decide(Some(sni), None, Some(&table))), want, "{sni}");
    }
    assert!(table.has_passthrough());
    // Replacing the host's paths drops its passthrough.
    let mut routes = crate::snapshot::routes::HostRoutes::default();
    routes
        .insert(
            &host("pass.test"),
            "/",
            PathType::Prefix,
            backend("root", false),
        )
        .unwrap();
    table.set_host(&host("pass.test"), routes);
    table.set_host(
        &host("exact-root.test"),
        crate::snapshot::routes::HostRoutes::default(),
    );
    assert_eq!(
        said(&decide(Some("pass.test"), None, Some(&table))),
        "terminate"
    );
    assert!(!table.has_passthrough());
}
