//! The Gateway API data plane end to end: the real router with hand-built Snapshots that
//! carry a Gateway plane, over loopback addresses 127.0.0.x, and real backends that echo
//! what they received. Listening addresses opening and closing, two Gateways on one port
//! at different addresses, sharing the Ingress listener, every filter, weights, mirrors,
//! HTTPS with SNI, and the 404 / 500 / 503 answers.

use std::{net::SocketAddr, sync::Arc, time::Duration};

use bytes::Bytes;
use http_body_util::{BodyExt as _, Empty, Full};
use hyper::{Method, Request, StatusCode, header};
use hyper_util::{
    client::legacy::{Client, connect::HttpConnector},
    rt::TokioIo,
};
use ingress_tests::{
    gateway_support::{
        at, backend, edits, free_port, hosts, http_port, https_port, rule, tls_cert,
        wait_listening, with_gateway,
    },
    http_support::{
        Answer, RunningRouter, TestBackend, TestCa, get, http_client, ingress_yaml, peer_leaf,
        service_yaml, snapshot, tls_connect, tls_connector, tls_get,
    },
};
use xdp_ingress::{
    config::Snapshot,
    http::{
        Limits, Metrics,
        metrics::{ListenerLabels, MirrorLabels, RequestLabels},
    },
    snapshot::{
        certs::CertSet,
        gateway::{Filter, InvalidBackend, Mirror, PathRewrite, Redirect, Rewrite},
    },
};

type Http = Client<HttpConnector, Full<Bytes>>;

/// Sends `req` (target `http://ADDR...`) and reads the answer.
async fn send(client: &Http, req: Request<Full<Bytes>>) -> Answer {
    let resp = client
        .request(req)
        .await
        .expect("request through the router");
    let (parts, body) = resp.into_parts();
    let body = body.collect().await.expect("body").to_bytes();
    Answer {
        status: parts.status,
        headers: parts.headers,
        body: String::from_utf8_lossy(&body).into_owned(),
    }
}

fn request(
    method: Method,
    addr: SocketAddr,
    host: &str,
    target: &str,
) -> hyper::http::request::Builder {
    Request::builder()
        .method(method)
        .uri(format!("http://{addr}{target}"))
        .header(header::HOST, host)
}

fn sock(ip: &str, port: u16) -> SocketAddr {
    SocketAddr::new(ip.parse().unwrap(), port)
}

/// Requests answered with `status` for a route and Service (the metric labels).
fn requests(metrics: &Metrics, route: &str, service: &str, status: u16) -> u64 {
    metrics
        .requests
        .get_or_create(&RequestLabels {
            ingress: Arc::new(route.into()),
            service: Arc::new(service.into()),
            status,
        })
        .get()
}

/// Mirrored copies to a Service with an outcome.
fn mirrored(metrics: &Metrics, service: &str, outcome: &'static str) -> u64 {
    metrics
        .mirrors
        .get_or_create(&MirrorLabels {
            service: Arc::new(service.into()),
            outcome,
        })
        .get()
}

/// Waits (ten seconds at most) until `done` holds.
async fn eventually(mut done: impl FnMut() -> bool) -> bool {
    for _ in 0..1000 {
        if done() {
            return true;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    done()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_gateways_listen_on_one_port_at_different_addresses() {
    let (a, b) = (TestBackend::start("a").await, TestBackend::start("b").await);
    let port = free_port(&["127.0.0.2", "127.0.0.3"]);
    let snap = with_gateway(
        Snapshot::default(),
        vec![
            (
                at("127.0.0.2", port),
                http_port(hosts(vec![(
                    "site.test",
                    vec![rule("ra").to(1, &backend("ra", "a", &[a.addr]))],
                )])),
            ),
            (
                at("127.0.0.3", port),
                http_port(hosts(vec![(
                    "*.test",
                    vec![rule("rb").to(1, &backend("rb", "b", &[b.addr]))],
                )])),
            ),
        ],
    );
    let router = RunningRouter::start(snap, Limits::default()).await;
    let (two, three) = (sock("127.0.0.2", port), sock("127.0.0.3", port));
    wait_listening(two, true).await;
    wait_listening(three, true).await;
    let client = http_client();

    assert_eq!(get(&client, two, "site.test", "/").await.backend(), "a");
    assert_eq!(
        get(&client, two, "SITE.test:1234", "/x").await.backend(),
        "a"
    );
    assert_eq!(get(&client, three, "site.test", "/").await.backend(), "b");
    assert_eq!(
        get(&client, three, "a.b.test", "/").await.backend(),
        "b",
        "wildcards take more than one label"
    );
    // A host the address's Gateway does not list: 404, never another address's routes,
    // never the Ingress rules (this socket is the Gateway's alone).
    assert_eq!(
        get(&client, two, "other.test", "/").await.status,
        StatusCode::NOT_FOUND
    );
    assert_eq!(
        get(&client, three, "test", "/").await.status,
        StatusCode::NOT_FOUND
    );
    // The Ingress listener does not serve these addresses' routes.
    assert_eq!(
        get(&client, router.http, "site.test", "/").await.status,
        StatusCode::NOT_FOUND
    );

    assert_eq!(router.metrics.gateway_listeners.get(), 2);
    assert_eq!(
        requests(&router.metrics, "default/ra", "default/a:80", 200),
        2,
        "route and Service label the requests"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn removing_a_listening_address_keeps_connections_and_other_addresses() {
    let (a, b) = (TestBackend::start("a").await, TestBackend::start("b").await);
    let port = free_port(&["127.0.0.2", "127.0.0.3"]);
    let (ba, bb) = (backend("ra", "a", &[a.addr]), backend("rb", "b", &[b.addr]));
    let two = (
        at("127.0.0.2", port),
        http_port(hosts(vec![("*", vec![rule("ra").to(1, &ba)])])),
    );
    let three = (
        at("127.0.0.3", port),
        http_port(hosts(vec![("*", vec![rule("rb").to(1, &bb)])])),
    );
    let both = || with_gateway(Snapshot::default(), vec![two.clone(), three.clone()]);
    let router = RunningRouter::start(both(), Limits::default()).await;
    let (addr2, addr3) = (sock("127.0.0.2", port), sock("127.0.0.3", port));
    wait_listening(addr2, true).await;
    wait_listening(addr3, true).await;

    // A keep-alive connection on each address.
    let connect = |addr| async move {
        let tcp = tokio::net::TcpStream::connect(addr).await.unwrap();
        let (send, conn) = hyper::client::conn::http1::handshake(TokioIo::new(tcp))
            .await
            .unwrap();
        (send, tokio::spawn(conn))
    };
    let ka_get = |path: &str| {
        Request::get(path)
            .header("host", "any.test")
            .body(Empty::<Bytes>::new())
            .unwrap()
    };
    let (mut ka2, task2) = connect(addr2).await;
    let (mut ka3, task3) = connect(addr3).await;
    for (ka, want) in [(&mut ka2, "a"), (&mut ka3, "b")] {
        let resp = ka.send_request(ka_get("/before")).await.unwrap();
        assert_eq!(resp.headers()["x-backend"], want);
        let _ = resp.into_body().collect().await.unwrap();
    }

    // 127.0.0.2 goes away: its socket closes; 127.0.0.3 and both open connections stay.
    router
        .publish(with_gateway(Snapshot::default(), vec![three.clone()]))
        .await;
    wait_listening(addr2, false).await;
    let resp = ka3.send_request(ka_get("/after")).await.unwrap();
    assert_eq!(
        resp.headers()["x-backend"],
        "b",
        "the other address's connection serves on"
    );
    let _ = resp.into_body().collect().await.unwrap();
    let resp = ka2.send_request(ka_get("/after")).await.unwrap();
    assert_eq!(
        resp.status(),
        StatusCode::NOT_FOUND,
        "a connection accepted on the removed address is not cut; its address has no routes now"
    );
    let _ = resp.into_body().collect().await.unwrap();
    assert!(
        !task2.is_finished() && !task3.is_finished(),
        "both connections are open"
    );
    let client = http_client();
    assert_eq!(get(&client, addr3, "new.test", "/").await.backend(), "b");

    // It comes back with the next Snapshot that has it.
    router.publish(both()).await;
    wait_listening(addr2, true).await;
    assert_eq!(get(&client, addr2, "new.test", "/").await.backend(), "a");
    assert_eq!(router.metrics.gateway_listeners.get(), 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_busy_address_is_counted_and_bound_once_free() {
    let a = TestBackend::start("a").await;
    let port = free_port(&["127.0.0.5"]);
    // Someone else holds the address (without SO_REUSEPORT, so ours cannot join).
    let squatter = std::net::TcpListener::bind(sock("127.0.0.5", port)).unwrap();
    let snap = || {
        with_gateway(
            Snapshot::default(),
            vec![(
                at("127.0.0.5", port),
                http_port(hosts(vec![(
                    "*",
                    vec![rule("ra").to(1, &backend("ra", "a", &[a.addr]))],
                )])),
            )],
        )
    };
    let router = RunningRouter::start(snap(), Limits::default()).await;
    let client = http_client();
    // The server keeps serving the Ingress listener meanwhile.
    assert_eq!(
        get(&client, router.http, "x.test", "/healthz").await.status,
        StatusCode::OK
    );
    let labels = ListenerLabels {
        address: format!("127.0.0.5:{port}"),
    };
    let errors = router
        .metrics
        .listener_bind_errors
        .get_or_create(&labels)
        .clone();
    assert!(
        eventually(|| errors.get() > 0).await,
        "the bind failure is counted"
    );
    assert_eq!(router.metrics.gateway_listeners.get(), 0);
    drop(squatter);
    // Retried every few seconds, or with the next Snapshot: publish one to retry now.
    router.publish(snap()).await;
    wait_listening(sock("127.0.0.5", port), true).await;
    assert_eq!(
        get(&client, sock("127.0.0.5", port), "x.test", "/")
            .await
            .backend(),
        "a"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_gateway_on_the_ingress_address_answers_its_hosts_and_ingress_the_rest() {
    let (ing, gw) = (
        TestBackend::start("ing").await,
        TestBackend::start("gw").await,
    );
    let yaml = format!(
        "{}{}",
        service_yaml("ing", &[ing.addr]),
        ingress_yaml("web", Some("ingress.test"), &[("/", "Prefix", "ing")])
    );
    let ingress = || snapshot(&yaml, Vec::new());
    let router = RunningRouter::start(ingress(), Limits::default()).await;
    let port = router.http.port();
    let shared = with_gateway(
        ingress(),
        vec![(
            at("127.0.0.1", port),
            http_port(hosts(vec![
                (
                    "gw.test",
                    vec![
                        rule("rg")
                            .prefix("/only")
                            .to(1, &backend("rg", "gw", &[gw.addr])),
                    ],
                ),
                (
                    "ingress.test",
                    vec![
                        rule("rg")
                            .prefix("/gw")
                            .to(1, &backend("rg", "gw", &[gw.addr])),
                    ],
                ),
            ])),
        )],
    );
    router.publish(shared).await;
    let client = http_client();
    assert_eq!(
        get(&client, router.http, "gw.test", "/only/x")
            .await
            .backend(),
        "gw"
    );
    // A host the Gateway lists is the Gateway's: no matching rule is its 404.
    assert_eq!(
        get(&client, router.http, "gw.test", "/other").await.status,
        StatusCode::NOT_FOUND
    );
    // Gateway hosts win over Ingress rules for the same host on the same address.
    assert_eq!(
        get(&client, router.http, "ingress.test", "/gw")
            .await
            .backend(),
        "gw"
    );
    assert_eq!(
        get(&client, router.http, "ingress.test", "/").await.status,
        StatusCode::NOT_FOUND
    );
    // Other hosts: the Ingress rules and the default backend.
    let other = with_gateway(
        ingress(),
        vec![(
            at("127.0.0.1", port),
            http_port(hosts(vec![(
                "gw.test",
                vec![rule("rg").to(1, &backend("rg", "gw", &[gw.addr]))],
            )])),
        )],
    );
    router.publish(other).await;
    assert_eq!(
        get(&client, router.http, "ingress.test", "/")
            .await
            .backend(),
        "ing"
    );
    assert_eq!(
        get(&client, router.http, "nobody.test", "/healthz")
            .await
            .status,
        StatusCode::OK
    );
    assert_eq!(
        get(&client, router.http, "gw.test", "/").await.backend(),
        "gw"
    );
    assert_eq!(
        router.metrics.gateway_listeners.get(),
        0,
        "no socket of its own for a shared address"
    );
}

/// One Gateway on its own address with the given rules for `f.test`; returns the router
/// and the address.
async fn gateway(rules: Vec<ingress_tests::gateway_support::Rule>) -> (RunningRouter, SocketAddr) {
    let port = free_port(&["127.0.0.6"]);
    let snap = with_gateway(
        Snapshot::default(),
        vec![(
            at("127.0.0.6", port),
            http_port(hosts(vec![("f.test", rules)])),
        )],
    );
    let router = RunningRouter::start(snap, Limits::default()).await;
    let addr = sock("127.0.0.6", port);
    wait_listening(addr, true).await;
    (router, addr)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn matches_follow_the_spec_precedence() {
    let names = ["v1", "v2", "v3", "v4", "v5"];
    let mut list = Vec::new();
    for n in names {
        list.push(TestBackend::start(n).await);
    }
    let b = |i: usize| backend("r", names[i], &[list[i].addr]);
    let (_router, addr) = gateway(vec![
        rule("r").index(0).prefix("/").to(1, &b(0)),
        rule("r").index(1).prefix("/api").to(1, &b(1)),
        rule("r").index(2).exact("/api/exact").to(1, &b(2)),
        rule("r")
            .index(3)
            .prefix("/api")
            .header("version", "two")
            .to(1, &b(3)),
        rule("r")
            .index(4)
            .prefix("/api")
            .method(Method::POST)
            .to(1, &b(4)),
        rule("r").index(5).regex("/re/[0-9]+").to(1, &b(2)),
        rule("q")
            .created(1)
            .prefix("/q")
            .query("animal", "whale")
            .to(1, &b(3)),
        rule("q").created(1).index(1).prefix("/q").to(1, &b(1)),
    ])
    .await;
    let client = http_client();
    let go =
        |method: Method, target: &'static str, header: Option<(&'static str, &'static str)>| {
            let client = client.clone();
            async move {
                let mut req = request(method, addr, "f.test", target);
                if let Some((n, v)) = header {
                    req = req.header(n, v);
                }
                send(&client, req.body(Full::new(Bytes::new())).unwrap()).await
            }
        };
    // (method, target, header, backend)
    for (method, target, hdr, want) in [
        (Method::GET, "/", None, "v1"),
        (Method::GET, "/apix", None, "v1"),
        (Method::GET, "/api", None, "v2"),
        (Method::GET, "/api/", None, "v2"),
        (Method::GET, "/api/exact", None, "v3"),
        (Method::GET, "/api/exact/", None, "v2"),
        (Method::POST, "/api/exact", Some(("version", "two")), "v3"),
        (Method::POST, "/api/x", Some(("version", "two")), "v5"),
        (Method::GET, "/api/x", Some(("Version", "two")), "v4"),
        (Method::GET, "/api/x", Some(("version", "three")), "v2"),
        (Method::GET, "/re/123", None, "v3"),
        (Method::GET, "/re/12a", None, "v1"),
        (Method::GET, "/q?animal=whale", None, "v4"),
        (Method::GET, "/q?animal=dolphin&animal=whale", None, "v2"),
        (Method::GET, "/q/x?color=blue&animal=whale", None, "v4"),
    ] {
        let got = go(method.clone(), target, hdr).await;
        assert_eq!(got.backend(), want, "{method} {target} {hdr:?}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn header_modifiers_edit_the_request_and_the_response() {
    let echo = TestBackend::start("echo").await;
    let be = backend("r", "echo", &[echo.addr]);
    let (_router, addr) = gateway(vec![
        rule("r")
            .prefix("/rule")
            .filter(Filter::RequestHeaders(edits(
                &[("x-header-set", "set-overwrites-values")],
                &[
                    ("x-header-add", "header-val-1"),
                    ("x-header-add-append", "header-val-2"),
                ],
                &["x-header-remove"],
            )))
            .filter(Filter::ResponseHeaders(edits(
                &[("x-resp-set", "set")],
                &[("x-resp-add", "added")],
                &["x-backend"],
            )))
            .to(1, &be),
        rule("r").index(1).prefix("/backend").to_with(
            1,
            &be,
            vec![
                Filter::RequestHeaders(edits(&[("x-from-backend-ref", "yes")], &[], &[])),
                Filter::ResponseHeaders(edits(&[("x-resp-backend-ref", "yes")], &[], &[])),
            ],
        ),
    ])
    .await;
    let client = http_client();
    let req = request(Method::GET, addr, "f.test", "/rule")
        .header("x-header-remove", "remove-val")
        .header("x-header-add-append", "append-val-1")
        .header("x-header-set", "set-val")
        .body(Full::new(Bytes::new()))
        .unwrap();
    let got = send(&client, req).await;
    assert_eq!(got.status, StatusCode::OK);
    assert_eq!(
        got.seen_header("x-header-set"),
        Some("set-overwrites-values")
    );
    assert_eq!(got.seen_header("x-header-add"), Some("header-val-1"));
    assert_eq!(
        got.seen_header("x-header-add-append"),
        Some("append-val-1,header-val-2")
    );
    assert_eq!(got.seen_header("x-header-remove"), None);
    assert_eq!(got.headers["x-resp-set"], "set");
    assert_eq!(got.headers["x-resp-add"], "added");
    assert!(
        !got.headers.contains_key("x-backend"),
        "removed from the response"
    );

    let got = get(&client, addr, "f.test", "/backend").await;
    assert_eq!(got.seen_header("x-from-backend-ref"), Some("yes"));
    assert_eq!(got.headers["x-resp-backend-ref"], "yes");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn url_rewrite_replaces_host_and_path_as_the_conformance_test_expects() {
    let echo = TestBackend::start("echo").await;
    let be = backend("r", "echo", &[echo.addr]);
    let rewrite = |host: Option<&str>, path: Option<PathRewrite>| {
        Filter::Rewrite(Rewrite {
            hostname: host.map(Into::into),
            path,
        })
    };
    let (_router, addr) = gateway(vec![
        rule("r")
            .prefix("/prefix/one")
            .filter(rewrite(None, Some(PathRewrite::Prefix("/one".into()))))
            .to(1, &be),
        rule("r")
            .index(1)
            .prefix("/strip-prefix")
            .filter(rewrite(None, Some(PathRewrite::Prefix("/".into()))))
            .to(1, &be),
        rule("r")
            .index(2)
            .prefix("/full/one")
            .filter(rewrite(None, Some(PathRewrite::Full("/one".into()))))
            .to(1, &be),
        rule("r")
            .index(3)
            .prefix("/host")
            .filter(rewrite(Some("elsewhere.example"), None))
            .to(1, &be),
        rule("r").index(4).prefix("/both").to_with(
            1,
            &be,
            vec![rewrite(
                Some("backend.example"),
                Some(PathRewrite::Prefix("/b".into())),
            )],
        ),
    ])
    .await;
    let client = http_client();
    // (request, path and query upstream, Host upstream)
    for (target, uri, host) in [
        ("/prefix/one/two", "/one/two", "f.test"),
        ("/prefix/one", "/one", "f.test"),
        ("/strip-prefix/three", "/three", "f.test"),
        ("/strip-prefix", "/", "f.test"),
        ("/strip-prefix/?q=1", "/?q=1", "f.test"),
        ("/full/one/two?x=y", "/one?x=y", "f.test"),
        ("/host/a", "/host/a", "elsewhere.example"),
        ("/both/c", "/b/c", "backend.example"),
    ] {
        let got = get(&client, addr, "f.test", target).await;
        assert_eq!(got.status, StatusCode::OK, "{target}");
        assert_eq!(got.headers["x-request-uri"], uri, "{target}");
        assert_eq!(got.seen_header("host"), Some(host), "{target}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn request_redirect_builds_location_per_the_spec() {
    let redirect = |scheme: Option<&str>,
                    hostname: Option<&str>,
                    path: Option<PathRewrite>,
                    port: Option<u16>,
                    status: u16| {
        Filter::Redirect(Redirect {
            scheme: scheme.map(Into::into),
            hostname: hostname.map(Into::into),
            path,
            port,
            status,
        })
    };
    let (_router, addr) = gateway(vec![
        rule("r")
            .exact("/scheme-https")
            .filter(redirect(Some("https"), None, None, None, 302)),
        rule("r").index(1).exact("/port-8443").filter(redirect(
            Some("https"),
            None,
            None,
            Some(8443),
            301,
        )),
        rule("r")
            .index(2)
            .exact("/plain")
            .filter(redirect(None, None, None, None, 302)),
        rule("r").index(3).exact("/port-80").filter(redirect(
            None,
            Some("example.org"),
            None,
            Some(80),
            302,
        )),
        rule("r")
            .index(4)
            .prefix("/original-prefix")
            .filter(redirect(
                None,
                None,
                Some(PathRewrite::Prefix("/replacement-prefix".into())),
                None,
                308,
            )),
        rule("r").index(5).prefix("/full").filter(redirect(
            None,
            Some("example.org"),
            Some(PathRewrite::Full("/full-path-replacement".into())),
            None,
            303,
        )),
    ])
    .await;
    let port = addr.port();
    let client = http_client();
    // (target, status, Location)
    for (target, status, location) in [
        (
            "/scheme-https",
            302,
            "https://f.test/scheme-https".to_owned(),
        ),
        (
            "/port-8443",
            301,
            "https://f.test:8443/port-8443".to_owned(),
        ),
        ("/plain?q=1", 302, format!("http://f.test:{port}/plain?q=1")),
        ("/port-80", 302, "http://example.org/port-80".to_owned()),
        (
            "/original-prefix/lemon",
            308,
            format!("http://f.test:{port}/replacement-prefix/lemon"),
        ),
        (
            "/full/path/original",
            303,
            format!("http://example.org:{port}/full-path-replacement"),
        ),
    ] {
        let got = get(&client, addr, "f.test", target).await;
        assert_eq!(got.status.as_u16(), status, "{target}");
        assert_eq!(got.headers[header::LOCATION], location.as_str(), "{target}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn weights_split_requests_exactly_and_invalid_or_empty_backends_answer_500() {
    let (a, b) = (TestBackend::start("a").await, TestBackend::start("b").await);
    let (ba, bb) = (backend("r", "a", &[a.addr]), backend("r", "b", &[b.addr]));
    let dead = backend("r", "dead", &[]);
    let (_router, addr) = gateway(vec![
        rule("r")
            .prefix("/split")
            .to(1, &ba)
            .to(3, &bb)
            .to(0, &dead),
        rule("r")
            .index(1)
            .prefix("/half-invalid")
            .to(1, &ba)
            .to_invalid(1, InvalidBackend::NotFound),
        rule("r").index(2).prefix("/zero").to(0, &ba).to(0, &bb),
        rule("r").index(3).prefix("/none"),
        rule("r")
            .index(4)
            .prefix("/refused")
            .to_invalid(1, InvalidBackend::RefNotPermitted),
        rule("r").index(5).prefix("/no-endpoints").to(1, &dead),
    ])
    .await;
    let client = http_client();
    // The counter is shared by the workers and deterministic: 1 000 requests are exactly
    // 250 and 750, whichever worker serves each.
    let mut counts = std::collections::BTreeMap::<String, usize>::new();
    for _ in 0..1000 {
        let got = get(&client, addr, "f.test", "/split").await;
        *counts.entry(got.backend().to_owned()).or_default() += 1;
    }
    assert_eq!(counts.get("a"), Some(&250), "{counts:?}");
    assert_eq!(counts.get("b"), Some(&750), "{counts:?}");
    assert_eq!(counts.len(), 2, "weight 0 gets nothing: {counts:?}");

    let mut statuses = std::collections::BTreeMap::<u16, usize>::new();
    for _ in 0..100 {
        let got = get(&client, addr, "f.test", "/half-invalid").await;
        *statuses.entry(got.status.as_u16()).or_default() += 1;
    }
    assert_eq!(
        statuses,
        [(200, 50), (500, 50)].into(),
        "the invalid half gets 500"
    );

    for (target, status) in [
        ("/zero", 500),
        ("/none", 500),
        ("/refused", 500),
        ("/no-endpoints", 503),
    ] {
        assert_eq!(
            get(&client, addr, "f.test", target).await.status.as_u16(),
            status,
            "{target}"
        );
    }
    assert_eq!(
        get(&client, addr, "other.test", "/split").await.status,
        StatusCode::NOT_FOUND
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn request_mirror_copies_without_touching_the_main_response() {
    let (main, copy) = (
        TestBackend::start("main").await,
        TestBackend::start("copy").await,
    );
    // An address nothing listens on: the mirror backend is down.
    let down = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap()
    };
    let bm = backend("r", "main", &[main.addr]);
    let mirror = |b: &Arc<_>| {
        Filter::Mirror(Mirror {
            backend: Arc::clone(b),
            percent: 100.0,
        })
    };
    let (router, addr) = gateway(vec![
        rule("r")
            .prefix("/up")
            .filter(mirror(&backend("r", "copy", &[copy.addr])))
            .to(1, &bm),
        rule("r")
            .index(1)
            .prefix("/down")
            .filter(mirror(&backend("r", "down", &[down])))
            .to(1, &bm),
        rule("r").index(2).prefix("/backend-ref").to_with(
            1,
            &bm,
            vec![mirror(&backend("r", "copy", &[copy.addr]))],
        ),
    ])
    .await;
    let client = http_client();
    for _ in 0..5 {
        let got = get(&client, addr, "f.test", "/up").await;
        assert_eq!(got.backend(), "main");
    }
    let req = request(Method::POST, addr, "f.test", "/up")
        .body(Full::new(Bytes::from_static(b"a small body")))
        .unwrap();
    assert_eq!(send(&client, req).await.backend(), "main");
    assert_eq!(
        get(&client, addr, "f.test", "/backend-ref").await.backend(),
        "main"
    );
    // Fire and forget: the copies arrive on their own time.
    assert!(eventually(|| copy.request_count() >= 7).await);
    assert_eq!(copy.request_count(), 7, "every request was copied once");
    assert_eq!(main.request_count(), 7);

    for _ in 0..5 {
        let got = get(&client, addr, "f.test", "/down").await;
        assert_eq!(
            got.status,
            StatusCode::OK,
            "a dead mirror does not fail the request"
        );
        assert_eq!(got.backend(), "main");
    }
    let metrics = &router.metrics;
    assert!(
        eventually(|| mirrored(metrics, "default/down:80", "failed") == 5).await,
        "each failed copy is counted: {}",
        mirrored(metrics, "default/down:80", "failed")
    );
    assert_eq!(mirrored(metrics, "default/copy:80", "sent"), 7);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn https_listener_terminates_tls_with_its_certificates() {
    let echo = TestBackend::start("echo").await;
    let ca = TestCa::new();
    let (named, fallback) = (
        ca.secret("named", &["secure.test"]),
        ca.secret("fallback", &["127.0.0.4"]),
    );
    let mut certs = CertSet::default();
    certs.insert("secure.test", tls_cert(&named)).unwrap();
    certs.set_default(tls_cert(&fallback)).unwrap();
    let port = free_port(&["127.0.0.4"]);
    let snap = with_gateway(
        Snapshot::default(),
        vec![(
            at("127.0.0.4", port),
            https_port(
                hosts(vec![(
                    "*",
                    vec![rule("r").to(1, &backend("r", "echo", &[echo.addr]))],
                )]),
                certs,
            ),
        )],
    );
    let _router = RunningRouter::start(snap, Limits::default()).await;
    let addr = sock("127.0.0.4", port);
    wait_listening(addr, true).await;
    let protocols: [&[&[u8]]; 2] = [&[b"h2"], &[b"http/1.1"]];
    for alpn in protocols {
        let connector = tls_connector(&ca.cert, alpn);
        let stream = tls_connect(&connector, addr, "secure.test")
            .await
            .expect("SNI handshake");
        assert_eq!(peer_leaf(&stream), tls_cert(&named).chain[0]);
        let (_, got) = tls_get(stream, "secure.test", "/x").await;
        assert_eq!(got.backend(), "echo");
        assert_eq!(got.seen_header("x-forwarded-proto"), Some("https"));
        // No SNI (an IP address): the listener's default certificate.
        let stream = tls_connect(&connector, addr, "127.0.0.4")
            .await
            .expect("no-SNI handshake");
        assert_eq!(peer_leaf(&stream), tls_cert(&fallback).chain[0]);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn websocket_upgrades_pass_through_a_gateway_rule() {
    use futures::{SinkExt as _, StreamExt as _};
    use tokio_tungstenite::tungstenite::Message;

    let echo = TestBackend::start("echo").await;
    let (_router, addr) = gateway(vec![
        rule("r")
            .filter(Filter::ResponseHeaders(edits(&[("x-gw", "yes")], &[], &[])))
            .to(1, &backend("r", "echo", &[echo.addr])),
    ])
    .await;
    let tcp = tokio::net::TcpStream::connect(addr).await.unwrap();
    let (mut ws, resp) = tokio_tungstenite::client_async("ws://f.test/ws", tcp)
        .await
        .expect("upgrade through the Gateway");
    assert_eq!(resp.headers()["x-backend"], "echo");
    assert_eq!(resp.headers()["x-gw"], "yes");
    ws.send(Message::text("hello")).await.unwrap();
    assert_eq!(ws.next().await.unwrap().unwrap(), Message::text("hello"));
    ws.close(None).await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_https_gateway_on_the_ingress_https_port_shares_its_socket_and_certificates() {
    let echo = TestBackend::start("echo").await;
    let ca = TestCa::new();
    let secret = ca.secret("gw", &["gwtls.test"]);
    let router = RunningRouter::start(Snapshot::default(), Limits::default()).await;
    let mut certs = CertSet::default();
    certs.insert("gwtls.test", tls_cert(&secret)).unwrap();
    router
        .publish(with_gateway(
            Snapshot::default(),
            vec![(
                at("127.0.0.1", router.https.port()),
                https_port(
                    hosts(vec![(
                        "gwtls.test",
                        vec![rule("r").to(1, &backend("r", "echo", &[echo.addr]))],
                    )]),
                    certs,
                ),
            )],
        ))
        .await;
    let connector = tls_connector(&ca.cert, &[b"http/1.1"]);
    let stream = tls_connect(&connector, router.https, "gwtls.test")
        .await
        .expect("the Gateway's certificate on the shared socket");
    assert_eq!(peer_leaf(&stream), tls_cert(&secret).chain[0]);
    let (_, got) = tls_get(stream, "gwtls.test", "/").await;
    assert_eq!(got.backend(), "echo");
    assert_eq!(router.metrics.gateway_listeners.get(), 0);
}
