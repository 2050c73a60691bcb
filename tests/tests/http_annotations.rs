//! ingress-nginx annotations end to end: the real binary in file mode, echo backends, and
//! tables transcribed from ingress-nginx's e2e tests (`test/e2e/annotations/*.go`). Where
//! an e2e test only checks the generated nginx.conf, the behaviour is derived from the
//! annotation reference (`docs/user-guide/nginx-configuration/annotations.md`) and the row
//! says so.

use std::{net::SocketAddr, time::Duration};

use bytes::Bytes;
use http_body_util::{BodyExt as _, Empty};
use hyper::{Request, StatusCode, header};
use hyper_util::rt::TokioIo;
use ingress_tests::{
    http_support::{AnnotatedIngress, TestBackend, TestCa, service_yaml},
    process::IngressProcess,
    xdp_ingress_bin,
};
use tokio::net::TcpSocket;

const PREFIX: &str = "nginx.ingress.kubernetes.io";

/// An Ingress `default/NAME` for `host` → Service `echo` (path `/`, Prefix), with
/// `annotations` (names without the prefix) and, if `tls`, a `tls` entry for the host with
/// the Secret `tls-HOST`.
fn ingress(name: &str, host: &str, annotations: &[(&str, &str)], tls: bool) -> String {
    ingress_at(name, host, "/", annotations, tls)
}

/// As [`ingress`], for `path` (pathType ImplementationSpecific, as ingress-nginx's e2e
/// fixtures).
fn ingress_at(
    name: &str,
    host: &str,
    path: &str,
    annotations: &[(&str, &str)],
    tls: bool,
) -> String {
    let secret = format!("tls-{host}");
    AnnotatedIngress {
        name,
        host,
        path,
        path_type: "ImplementationSpecific",
        service: "echo",
        annotations,
        tls_secret: tls.then_some(secret.as_str()),
    }
    .yaml()
}

/// What one request got.
struct Reply {
    status: StatusCode,
    /// `Location`, or empty.
    location: String,
    /// The path and query the backend received (`x-request-uri`), or empty.
    uri: String,
    /// The body: the backend's name, then the request headers it saw.
    body: String,
}

/// `GET http://ADDR PATH` with `Host: HOST`, from the local address `from` (another
/// 127.0.0.x, port chosen by the kernel), on a fresh connection: (status, Location).
async fn get_from(from: [u8; 4], addr: SocketAddr, host: &str, path: &str) -> (StatusCode, String) {
    let r = request(from, addr, host, path).await;
    (r.status, r.location)
}

/// `GET http://ADDR PATH` with `Host: HOST` from the local address `from`, on a fresh
/// connection.
async fn request(from: [u8; 4], addr: SocketAddr, host: &str, path: &str) -> Reply {
    let socket = TcpSocket::new_v4().expect("socket");
    socket
        .bind(SocketAddr::from((from, 0)))
        .expect("bind the client to a 127.0.0.x address");
    let stream = socket.connect(addr).await.expect("connect to xdp-ingress");
    let (mut send, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
        .await
        .expect("handshake");
    let conn = tokio::spawn(conn);
    let req = Request::get(path)
        .header(header::HOST, host)
        .body(Empty::<Bytes>::new())
        .expect("request");
    let resp = tokio::time::timeout(Duration::from_secs(10), send.send_request(req))
        .await
        .expect("answer within 10 s")
        .expect("response");
    let status = resp.status();
    let text = |name: &str| {
        resp.headers()
            .get(name)
            .map(|v| v.to_str().unwrap_or("").to_owned())
            .unwrap_or_default()
    };
    let (location, uri) = (text("location"), text("x-request-uri"));
    let body = resp.into_body().collect().await.expect("body").to_bytes();
    conn.abort();
    Reply {
        status,
        location,
        uri,
        body: String::from_utf8_lossy(&body).into_owned(),
    }
}

/// The echo backend and the objects every test uses, plus TLS Secrets for `tls_hosts`.
async fn echo_and_secrets(tls_hosts: &[&str]) -> (TestBackend, String) {
    let echo = TestBackend::start("echo").await;
    let mut yaml = service_yaml("echo", &[echo.addr]);
    let ca = TestCa::new();
    for host in tls_hosts {
        let secret = ca.secret(&format!("tls-{host}"), &[host]);
        yaml.push_str("---\n");
        yaml.push_str(&serde_yaml::to_string(&secret).expect("Secret as YAML"));
    }
    (echo, yaml)
}

/// (rule, annotations, host has a tls entry, expected status, expected Location).
type RedirectRow = (
    &'static str,
    &'static [(&'static str, &'static str)],
    bool,
    StatusCode,
    bool,
);

/// ssl-redirect and force-ssl-redirect. forcesslredirect.go: `force-ssl-redirect: "true"`
/// on an Ingress without TLS answers 308 with `Location: https://HOST/`. ssl-redirect has
/// no e2e test of its own; from the annotation reference: TLS hosts redirect (308) by
/// default, `ssl-redirect: "false"` turns that off per Ingress, and a host without TLS is
/// not redirected.
#[tokio::test]
async fn ssl_redirect_and_force_ssl_redirect() {
    let rows: &[RedirectRow] = &[
        (
            "force-ssl-redirect redirects a host without TLS (forcesslredirect.go)",
            &[("force-ssl-redirect", "true")],
            false,
            StatusCode::PERMANENT_REDIRECT,
            true,
        ),
        (
            "a TLS host redirects by default",
            &[],
            true,
            StatusCode::PERMANENT_REDIRECT,
            true,
        ),
        (
            "ssl-redirect false serves a TLS host over HTTP",
            &[("ssl-redirect", "false")],
            true,
            StatusCode::OK,
            false,
        ),
        (
            "force-ssl-redirect beats ssl-redirect false",
            &[("ssl-redirect", "false"), ("force-ssl-redirect", "true")],
            true,
            StatusCode::PERMANENT_REDIRECT,
            true,
        ),
        (
            "a host without TLS is not redirected",
            &[],
            false,
            StatusCode::OK,
            false,
        ),
        (
            "ssl-redirect true alone needs TLS",
            &[("ssl-redirect", "true")],
            false,
            StatusCode::OK,
            false,
        ),
        (
            "an invalid ssl-redirect keeps the default",
            &[("ssl-redirect", "maybe")],
            true,
            StatusCode::PERMANENT_REDIRECT,
            true,
        ),
        (
            "force-ssl-redirect false is the default",
            &[("force-ssl-redirect", "false")],
            false,
            StatusCode::OK,
            false,
        ),
    ];
    let hosts: Vec<String> = (0..rows.len())
        .map(|i| format!("r{i}.sslredirect.bar.com"))
        .collect();
    let tls_hosts: Vec<&str> = rows
        .iter()
        .zip(&hosts)
        .filter(|(r, _)| r.2)
        .map(|(_, h)| h.as_str())
        .collect();
    let (_echo, mut yaml) = echo_and_secrets(&tls_hosts).await;
    for (i, (row, host)) in rows.iter().zip(&hosts).enumerate() {
        yaml.push_str(&ingress(&format!("i{i}"), host, row.1, row.2));
    }
    let proc = IngressProcess::start(&yaml, &[]).await;
    for ((rule, _, _, status, redirects), host) in rows.iter().zip(&hosts) {
        let (got, location) = get_from([127, 0, 0, 1], proc.http, host, "/x?y=1").await;
        assert_eq!(got, *status, "{rule}\n{}", proc.log());
        let want = if *redirects {
            format!("https://{host}:{}/x?y=1", proc.https.port())
        } else {
            String::new()
        };
        assert_eq!(location, want, "{rule}");
    }
}

/// The global `--no-ssl-redirect` is the default the annotation overrides.
#[tokio::test]
async fn ssl_redirect_annotation_overrides_no_ssl_redirect() {
    let (_echo, mut yaml) = echo_and_secrets(&["on.bar.com", "off.bar.com"]).await;
    yaml.push_str(&ingress(
        "on",
        "on.bar.com",
        &[("ssl-redirect", "true")],
        true,
    ));
    yaml.push_str(&ingress("off", "off.bar.com", &[], true));
    let proc = IngressProcess::start(&yaml, &["--no-ssl-redirect"]).await;
    let (status, _) = get_from([127, 0, 0, 1], proc.http, "on.bar.com", "/").await;
    assert_eq!(status, StatusCode::PERMANENT_REDIRECT);
    let (status, _) = get_from([127, 0, 0, 1], proc.http, "off.bar.com", "/").await;
    assert_eq!(status, StatusCode::OK);
}

/// (rule, annotations, client 127.0.0.x, expected status).
type RangeRow = (
    &'static str,
    &'static [(&'static str, &'static str)],
    u8,
    StatusCode,
);

/// Source ranges. ipwhitelist.go / ipallowlist.go / ipdenylist.go only check that
/// `allow CIDR; deny all;` and `deny CIDR;` lines are generated (entries separated by
/// ", "); the behaviour is nginx's access module: deny lines first, then allow, then
/// `deny all` when an allowlist is set, a refused client gets 403. An annotation without
/// one usable entry makes ingress-nginx deny the location (503), never open it.
#[tokio::test]
async fn source_ranges_allow_and_deny_clients() {
    let rows: &[RangeRow] = &[
        (
            "whitelist-source-range admits a listed client",
            &[("whitelist-source-range", "18.0.0.0/8, 127.0.0.2/32")],
            2,
            StatusCode::OK,
        ),
        (
            "whitelist-source-range refuses others",
            &[("whitelist-source-range", "18.0.0.0/8, 127.0.0.2/32")],
            3,
            StatusCode::FORBIDDEN,
        ),
        (
            "allowlist-source-range admits a listed network",
            &[("allowlist-source-range", "127.0.0.0/30")],
            3,
            StatusCode::OK,
        ),
        (
            "allowlist-source-range refuses outside the network",
            &[("allowlist-source-range", "127.0.0.0/30")],
            4,
            StatusCode::FORBIDDEN,
        ),
        (
            "allowlist-source-range wins over whitelist-source-range",
            &[
                ("whitelist-source-range", "127.0.0.2"),
                ("allowlist-source-range", "127.0.0.3"),
            ],
            2,
            StatusCode::FORBIDDEN,
        ),
        (
            "an IPv6-only allowlist refuses IPv4 clients",
            &[("allowlist-source-range", "::1/128")],
            2,
            StatusCode::FORBIDDEN,
        ),
        (
            "denylist-source-range refuses a listed client",
            &[("denylist-source-range", "18.0.0.0/8, 127.0.0.3")],
            3,
            StatusCode::FORBIDDEN,
        ),
        (
            "denylist-source-range admits others",
            &[("denylist-source-range", "18.0.0.0/8, 127.0.0.3")],
            2,
            StatusCode::OK,
        ),
        (
            "deny is checked before allow (ipdenylist.go with a whitelist)",
            &[
                ("denylist-source-range", "127.0.0.3"),
                ("whitelist-source-range", "127.0.0.0/24"),
            ],
            3,
            StatusCode::FORBIDDEN,
        ),
        (
            "allow still applies beside deny",
            &[
                ("denylist-source-range", "127.0.0.3"),
                ("whitelist-source-range", "127.0.0.0/24"),
            ],
            2,
            StatusCode::OK,
        ),
        (
            "bad entries are dropped, good ones kept",
            &[("allowlist-source-range", "nope, 127.0.0.2")],
            2,
            StatusCode::OK,
        ),
        (
            "no usable entry denies everyone (503)",
            &[("allowlist-source-range", "nope")],
            2,
            StatusCode::SERVICE_UNAVAILABLE,
        ),
        (
            "no usable denylist entry denies everyone (503)",
            &[("denylist-source-range", "10.0.0.0/99")],
            2,
            StatusCode::SERVICE_UNAVAILABLE,
        ),
        ("no annotation admits everyone", &[], 4, StatusCode::OK),
    ];
    let (echo, mut yaml) = echo_and_secrets(&[]).await;
    for (i, row) in rows.iter().enumerate() {
        yaml.push_str(&ingress(
            &format!("i{i}"),
            &format!("r{i}.ip.foo.com"),
            row.1,
            false,
        ));
    }
    let proc = IngressProcess::start(&yaml, &[]).await;
    let mut forwarded = 0;
    for (i, (rule, _, client, status)) in rows.iter().enumerate() {
        let host = format!("r{i}.ip.foo.com");
        let (got, _) = get_from([127, 0, 0, *client], proc.http, &host, "/").await;
        assert_eq!(
            got,
            *status,
            "{rule} (from 127.0.0.{client})\n{}",
            proc.log()
        );
        forwarded += usize::from(*status == StatusCode::OK);
    }
    assert_eq!(
        echo.request_count(),
        forwarded,
        "refused requests never reach the backend"
    );
}

/// `xdp-ingress check` lists every annotation under the prefix per Ingress, and the
/// Problems name the Ingress and the annotation; `--annotations-prefix` changes the prefix.
#[tokio::test]
async fn check_prints_the_migration_report() {
    let (_echo, mut yaml) = echo_and_secrets(&[]).await;
    yaml.push_str(&ingress(
        "legacy",
        "a.com",
        &[
            ("ssl-redirect", "false"),
            ("configuration-snippet", "more_set_headers \"x: y\";"),
            ("backend-protocol", "GRPC"),
            ("whitelist-source-range", "10.0.0.0/8, bogus"),
            ("ssl-redirekt", "true"),
        ],
        false,
    ));
    let dir = std::env::temp_dir().join(format!("xit-annotations-check-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(dir.join("objects.yaml"), &yaml).unwrap();
    let run = |extra: &'static [&'static str]| {
        let dir = dir.clone();
        async move {
            let out = tokio::process::Command::new(xdp_ingress_bin())
                .arg("check")
                .arg("--manifests")
                .arg(&dir)
                .args(extra)
                .env("RUST_LOG", "warn")
                .output()
                .await
                .expect("xdp-ingress runs");
            (out.status.code(), String::from_utf8(out.stdout).unwrap())
        }
    };
    let (code, out) = run(&[]).await;
    assert_eq!(code, Some(1), "an invalid annotation is an error:\n{out}");
    let line = |name: &str| {
        out.lines()
            .find(|l| l.contains("default/legacy") && l.contains(&format!(" {name} ")))
            .unwrap_or_else(|| panic!("no report line for {name}:\n{out}"))
            .to_owned()
    };
    assert!(line("ssl-redirect").contains("applied"), "{out}");
    assert!(line("configuration-snippet").contains("refused"), "{out}");
    assert!(
        line("configuration-snippet").contains("CVE-2025-1974"),
        "{out}"
    );
    assert!(line("backend-protocol").contains("applied"), "{out}");
    assert!(line("whitelist-source-range").contains("invalid"), "{out}");
    assert!(line("ssl-redirekt").contains("typo"), "{out}");
    assert!(
        out.contains("Annotations (2 applied, 1 invalid, 1 ignored, 1 refused):"),
        "{out}"
    );
    let field = format!(
        "Ingress default/legacy metadata.annotations[\"{PREFIX}/configuration-snippet\"]: ignored:"
    );
    assert!(out.contains(&field), "{out}");

    let (code, out) = run(&["--annotations-prefix", "example.com"]).await;
    assert_eq!(code, Some(0), "{out}");
    assert!(
        out.contains("Annotations (0 applied, 0 invalid, 0 ignored, 0 refused):"),
        "{out}"
    );
    let _ = std::fs::remove_dir_all(&dir);
}

/// (host, Ingresses on it as (name, path, annotations)).
type RewriteScenario = (
    &'static str,
    &'static [(
        &'static str,
        &'static str,
        &'static [(&'static str, &'static str)],
    )],
);

/// rewrite-target and use-regex, transcribed from rewrite.go (and, for the capture-group
/// example, the annotation reference): paths become case-insensitive regexes anchored at
/// the start for the whole host as soon as one of its Ingresses has use-regex or a
/// rewrite, tried longest first; the rewritten path replaces the whole path, with `$N`
/// from the path's captures, and the query is kept.
#[tokio::test]
async fn rewrite_target_and_use_regex() {
    const RW: &[(&str, &str)] = &[("use-regex", "true"), ("rewrite-target", "/new/backend")];
    let scenarios: &[RewriteScenario] = &[
        (
            "a.rewrite.bar.com",
            &[("a", "/something", &[("rewrite-target", "/")])],
        ),
        (
            "b.rewrite.bar.com",
            &[
                ("b-lego", "/.well-known/acme/challenge", &[]),
                ("b-index", "/", &[("rewrite-target", "/new/backend")]),
            ],
        ),
        (
            "c.rewrite.bar.com",
            &[("c-foo", "/foo", &[]), ("c-regex", "/foo.+", RW)],
        ),
        (
            "d.rewrite.bar.com",
            &[
                ("d-foo", "/foo/bar/bar", &[]),
                ("d-regex", "/foo/bar/[a-z]{3}", RW),
            ],
        ),
        (
            "e.rewrite.bar.com",
            &[(
                "e",
                "/foo/bar/(.+)",
                &[("use-regex", "true"), ("rewrite-target", "/new/backend/$1")],
            )],
        ),
        (
            "f.rewrite.bar.com",
            &[(
                "f",
                "/something(/|$)(.*)",
                &[("use-regex", "true"), ("rewrite-target", "/$2")],
            )],
        ),
        (
            "g.rewrite.bar.com",
            &[
                ("g-plain", "/plain", &[]),
                ("g-regex", "/r/[0-9]+", &[("use-regex", "true")]),
            ],
        ),
    ];
    // (rule, host, request path, path the backend gets; "" = not routed, 404)
    let rows: &[(&str, &str, &str, &str)] = &[
        (
            "rewrite-target / replaces the path (rewrite.go)",
            "a.rewrite.bar.com",
            "/something",
            "/",
        ),
        (
            "paths match case-insensitively (rewrite.go, mixed case)",
            "a.rewrite.bar.com",
            "/SomeThing",
            "/",
        ),
        (
            "the whole path is replaced, not the matched part",
            "a.rewrite.bar.com",
            "/something/else",
            "/",
        ),
        (
            "a regex path is a string prefix",
            "a.rewrite.bar.com",
            "/somethingelse",
            "/",
        ),
        (
            "the longer path wins on a regex host (rewrite.go: longest path match)",
            "b.rewrite.bar.com",
            "/.well-known/acme/challenge",
            "/.well-known/acme/challenge",
        ),
        (
            "the rewritten / catches the rest",
            "b.rewrite.bar.com",
            "/other",
            "/new/backend",
        ),
        (
            "'/foo' matches '~* ^/foo' (rewrite.go)",
            "c.rewrite.bar.com",
            "/foo",
            "/foo",
        ),
        (
            "'/foo/bar' matches '~* ^/foo.+' (rewrite.go)",
            "c.rewrite.bar.com",
            "/foo/bar",
            "/new/backend",
        ),
        (
            "the longer regex beats the exact-looking path (rewrite.go: documented warning)",
            "d.rewrite.bar.com",
            "/foo/bar/bar",
            "/new/backend",
        ),
        (
            "custom rewrite parameters (rewrite.go)",
            "e.rewrite.bar.com",
            "/foo/bar/bar",
            "/new/backend/bar",
        ),
        (
            "capture groups: /something",
            "f.rewrite.bar.com",
            "/something",
            "/",
        ),
        (
            "capture groups: /something/",
            "f.rewrite.bar.com",
            "/something/",
            "/",
        ),
        (
            "capture groups: /something/new",
            "f.rewrite.bar.com",
            "/something/new",
            "/new",
        ),
        (
            "capture groups keep the query",
            "f.rewrite.bar.com",
            "/something/new?x=1&y=2",
            "/new?x=1&y=2",
        ),
        (
            "use-regex alone matches without rewriting",
            "g.rewrite.bar.com",
            "/r/42/x",
            "/r/42/x",
        ),
        (
            "use-regex alone: no match is 404",
            "g.rewrite.bar.com",
            "/r/x",
            "",
        ),
        (
            "use-regex makes other Ingresses' paths of the host regexes too",
            "g.rewrite.bar.com",
            "/PLAINer",
            "/PLAINer",
        ),
    ];
    let (_echo, mut yaml) = echo_and_secrets(&[]).await;
    for (host, ingresses) in scenarios {
        for (name, path, annotations) in *ingresses {
            yaml.push_str(&ingress_at(name, host, path, annotations, false));
        }
    }
    let proc = IngressProcess::start(&yaml, &[]).await;
    for (rule, host, path, want) in rows {
        let r = request([127, 0, 0, 1], proc.http, host, path).await;
        if want.is_empty() {
            assert_eq!(r.status, StatusCode::NOT_FOUND, "{rule}");
        } else {
            assert_eq!(r.status, StatusCode::OK, "{rule}\n{}", proc.log());
            assert_eq!(r.uri, *want, "{rule}");
        }
    }
}

/// app-root (approot.go): `/` is redirected with 302 to `http://HOST/foo`; other paths are
/// served. x-forwarded-prefix (xforwardedprefix.go): the backend gets the value as
/// `X-Forwarded-Prefix`; an empty value sends no header.
#[tokio::test]
async fn app_root_and_x_forwarded_prefix() {
    let (_echo, mut yaml) = echo_and_secrets(&[]).await;
    yaml.push_str(&ingress(
        "approot",
        "approot.bar.com",
        &[("app-root", "/foo")],
        false,
    ));
    yaml.push_str(&ingress(
        "prefix",
        "forwarded.bar.com",
        &[("x-forwarded-prefix", "/test/value")],
        false,
    ));
    yaml.push_str(&ingress(
        "empty",
        "forwarded-empty.bar.com",
        &[("x-forwarded-prefix", "")],
        false,
    ));
    let proc = IngressProcess::start(&yaml, &[]).await;

    let r = request([127, 0, 0, 1], proc.http, "approot.bar.com", "/").await;
    assert_eq!(r.status, StatusCode::FOUND);
    assert_eq!(r.location, "http://approot.bar.com/foo");
    let r = request([127, 0, 0, 1], proc.http, "approot.bar.com", "/foo").await;
    assert_eq!((r.status, r.uri.as_str()), (StatusCode::OK, "/foo"));

    let r = request([127, 0, 0, 1], proc.http, "forwarded.bar.com", "/").await;
    assert_eq!(r.status, StatusCode::OK);
    assert!(
        r.body.contains("\nx-forwarded-prefix: /test/value\n"),
        "{}",
        r.body
    );
    let r = request([127, 0, 0, 1], proc.http, "forwarded-empty.bar.com", "/").await;
    assert_eq!(r.status, StatusCode::OK);
    assert!(!r.body.contains("x-forwarded-prefix"), "{}", r.body);
}

/// `POST` of `len` bytes (with Content-Length) to `http://ADDR/` with `Host: HOST`.
async fn post(addr: SocketAddr, host: &str, len: usize) -> StatusCode {
    let stream = tokio::net::TcpStream::connect(addr).await.expect("connect");
    let (mut send, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
        .await
        .expect("handshake");
    let conn = tokio::spawn(conn);
    let req = Request::post("/")
        .header(header::HOST, host)
        .body(http_body_util::Full::new(Bytes::from(vec![b'x'; len])))
        .expect("request");
    let status = match send.send_request(req).await {
        Ok(resp) => resp.status(),
        Err(e) => panic!("POST {len} bytes to {host}: {e}"),
    };
    conn.abort();
    status
}

/// proxy-body-size. proxy.go only checks the generated `client_max_body_size`; from the
/// annotation reference: a body larger than the size gets 413, nginx's size syntax
/// (`8m`, `1k`), and `0` lifts the limit, here also the global `--max-body-bytes`.
#[tokio::test]
async fn proxy_body_size() {
    let (_echo, mut yaml) = echo_and_secrets(&[]).await;
    yaml.push_str(&ingress(
        "small",
        "small.bar.com",
        &[("proxy-body-size", "1k")],
        false,
    ));
    yaml.push_str(&ingress(
        "large",
        "large.bar.com",
        &[("proxy-body-size", "8m")],
        false,
    ));
    yaml.push_str(&ingress(
        "unlimited",
        "unlimited.bar.com",
        &[("proxy-body-size", "0")],
        false,
    ));
    yaml.push_str(&ingress(
        "bad",
        "bad.bar.com",
        &[("proxy-body-size", "1.5m")],
        false,
    ));
    yaml.push_str(&ingress("global", "global.bar.com", &[], false));
    let proc = IngressProcess::start(&yaml, &["--max-body-bytes", "2048"]).await;
    // (host, body bytes, status)
    for (host, len, want) in [
        ("small.bar.com", 1024, StatusCode::OK),
        ("small.bar.com", 1025, StatusCode::PAYLOAD_TOO_LARGE),
        ("large.bar.com", 100_000, StatusCode::OK),
        ("unlimited.bar.com", 100_000, StatusCode::OK),
        ("bad.bar.com", 2048, StatusCode::OK),
        ("bad.bar.com", 2049, StatusCode::PAYLOAD_TOO_LARGE),
        ("global.bar.com", 2049, StatusCode::PAYLOAD_TOO_LARGE),
    ] {
        assert_eq!(post(proc.http, host, len).await, want, "{host} {len} bytes");
    }
}

/// A backend on 127.0.0.1 that reads a request head, waits `delay`, then answers 200
/// (one request per connection).
async fn slow_backend(delay: Duration) -> (SocketAddr, tokio::task::JoinHandle<()>) {
    use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let addr = listener.local_addr().expect("addr");
    let task = tokio::spawn(async move {
        while let Ok((mut stream, _)) = listener.accept().await {
            tokio::spawn(async move {
                let mut buf = Vec::new();
                let mut chunk = [0u8; 4096];
                while !buf.windows(4).any(|w| w == b"\r\n\r\n") {
                    match stream.read(&mut chunk).await {
                        Ok(0) | Err(_) => return,
                        Ok(n) => buf.extend_from_slice(&chunk[..n]),
                    }
                }
                tokio::time::sleep(delay).await;
                let _ = stream
                    .write_all(
                        b"HTTP/1.1 200 OK\r\ncontent-length: 5\r\nconnection: close\r\n\r\nslow\n",
                    )
                    .await;
            });
        }
    });
    (addr, task)
}

/// proxy-read-timeout. proxy.go only checks the generated `proxy_read_timeout`; from the
/// annotation reference (unitless seconds): an upstream slower than the route's read
/// timeout gets 504, while a route without it keeps `--upstream-response-timeout`.
#[tokio::test]
async fn proxy_read_timeout() {
    let (slow, task) = slow_backend(Duration::from_millis(2500)).await;
    let mut yaml = service_yaml("slow", &[slow]);
    let route = |name: &str, host: &str, annotations: &[(&str, &str)]| {
        ingress(name, host, annotations, false).replace("name: echo", "name: slow")
    };
    yaml.push_str(&route(
        "short",
        "short.bar.com",
        &[("proxy-read-timeout", "1")],
    ));
    yaml.push_str(&route("long", "long.bar.com", &[]));
    yaml.push_str(&route(
        "bad",
        "bad.bar.com",
        &[("proxy-read-timeout", "1s")],
    ));
    let proc = IngressProcess::start(&yaml, &["--upstream-response-timeout", "10"]).await;
    let (short, long, bad) = tokio::join!(
        request([127, 0, 0, 1], proc.http, "short.bar.com", "/"),
        request([127, 0, 0, 1], proc.http, "long.bar.com", "/"),
        request([127, 0, 0, 1], proc.http, "bad.bar.com", "/"),
    );
    assert_eq!(short.status, StatusCode::GATEWAY_TIMEOUT, "{}", short.body);
    assert_eq!(long.status, StatusCode::OK, "{}", long.body);
    assert_eq!(
        bad.status,
        StatusCode::OK,
        "an invalid value keeps the flag's timeout"
    );
    task.abort();
}

/// permanent-redirect and temporal-redirect (redirect.go): every request of the Ingress is
/// answered with the URL as `Location`, 301 by default or `permanent-redirect-code` (308
/// here); temporal-redirect answers 302 and wins when both are set (ingress-nginx's parser
/// checks it first). A URL with `$` is refused (nginx variables are not expanded), so that
/// Ingress is served normally. upstream-vhost (upstreamvhost.go): the backend receives the
/// value as `Host`.
#[tokio::test]
async fn redirects_and_upstream_vhost() {
    let (_echo, mut yaml) = echo_and_secrets(&[]).await;
    for (name, annotations) in [
        (
            "permanent",
            &[("permanent-redirect", "http://redirect-url.com")][..],
        ),
        (
            "coded",
            &[
                ("permanent-redirect", "https://redirect-url.com/x?y=1"),
                ("permanent-redirect-code", "308"),
            ][..],
        ),
        (
            "both",
            &[
                ("permanent-redirect", "https://permanent.example.com"),
                ("temporal-redirect", "https://temporal.example.com/t"),
            ][..],
        ),
        (
            "variable",
            &[("permanent-redirect", "https://example.com$request_uri")][..],
        ),
        ("vhost", &[("upstream-vhost", "upstreamvhost.bar.com")][..]),
    ] {
        yaml.push_str(&ingress(
            name,
            &format!("{name}.bar.com"),
            annotations,
            false,
        ));
    }
    let proc = IngressProcess::start(&yaml, &[]).await;
    for (host, path, status, location) in [
        (
            "permanent.bar.com",
            "/",
            StatusCode::MOVED_PERMANENTLY,
            "http://redirect-url.com",
        ),
        (
            "permanent.bar.com",
            "/any/path",
            StatusCode::MOVED_PERMANENTLY,
            "http://redirect-url.com",
        ),
        (
            "coded.bar.com",
            "/",
            StatusCode::PERMANENT_REDIRECT,
            "https://redirect-url.com/x?y=1",
        ),
        (
            "both.bar.com",
            "/",
            StatusCode::FOUND,
            "https://temporal.example.com/t",
        ),
        ("variable.bar.com", "/", StatusCode::OK, ""),
    ] {
        let r = request([127, 0, 0, 1], proc.http, host, path).await;
        assert_eq!(
            (r.status, r.location.as_str()),
            (status, location),
            "{host}{path}"
        );
    }
    let r = request([127, 0, 0, 1], proc.http, "vhost.bar.com", "/").await;
    assert_eq!(r.status, StatusCode::OK);
    assert!(
        r.body.contains("\nhost: upstreamvhost.bar.com\n"),
        "{}",
        r.body
    );
}

/// What a request with credentials got: status, `WWW-Authenticate` (or empty), body.
async fn get_with_auth(
    from: [u8; 4],
    addr: SocketAddr,
    host: &str,
    authorization: Option<&str>,
) -> (StatusCode, String, String) {
    let socket = TcpSocket::new_v4().expect("socket");
    socket
        .bind(SocketAddr::from((from, 0)))
        .expect("bind the client to a 127.0.0.x address");
    let stream = socket.connect(addr).await.expect("connect to xdp-ingress");
    let (mut send, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
        .await
        .expect("handshake");
    let conn = tokio::spawn(conn);
    let mut req = Request::get("/").header(header::HOST, host);
    if let Some(a) = authorization {
        req = req.header(header::AUTHORIZATION, a);
    }
    let req = req.body(Empty::<Bytes>::new()).expect("request");
    let resp = tokio::time::timeout(Duration::from_secs(20), send.send_request(req))
        .await
        .expect("answer within 20 s")
        .expect("response");
    let status = resp.status();
    let challenge = resp
        .headers()
        .get(header::WWW_AUTHENTICATE)
        .map(|v| v.to_str().unwrap_or("").to_owned())
        .unwrap_or_default();
    let body = resp.into_body().collect().await.expect("body").to_bytes();
    conn.abort();
    (
        status,
        challenge,
        String::from_utf8_lossy(&body).into_owned(),
    )
}

/// `Authorization: Basic base64(user:password)`.
fn basic(user: &str, password: &str) -> String {
    use base64::Engine as _;
    let encoded = base64::engine::general_purpose::STANDARD.encode(format!("{user}:{password}"));
    format!("Basic {encoded}")
}

/// One htpasswd line made by the real `htpasswd` (apache2-utils, `cargo xtask setup`):
/// `flag` is `-B` (bcrypt), `-m` (APR1-MD5) or `-s` (`{SHA}`).
fn htpasswd(flag: &str, user: &str, password: &str) -> String {
    let out = std::process::Command::new("htpasswd")
        .args([
            &format!("-nb{}", flag.trim_start_matches('-')),
            user,
            password,
        ])
        .output()
        .expect("run htpasswd (apt-get install apache2-utils, or cargo xtask setup)");
    assert!(out.status.success(), "htpasswd {flag}: {out:?}");
    String::from_utf8(out.stdout)
        .expect("htpasswd output")
        .trim_end()
        .to_owned()
}

/// An Opaque Secret `namespace/name` with `data`, as YAML.
fn opaque_secret(namespace: &str, name: &str, data: &[(&str, &str)]) -> String {
    use k8s_openapi::{ByteString, api::core::v1::Secret};
    let secret = Secret {
        metadata: k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta {
            name: Some(name.to_owned()),
            namespace: Some(namespace.to_owned()),
            ..Default::default()
        },
        type_: Some("Opaque".to_owned()),
        data: Some(
            data.iter()
                .map(|(k, v)| ((*k).to_owned(), ByteString(v.as_bytes().to_vec())))
                .collect(),
        ),
        ..Default::default()
    };
    format!(
        "---\n{}",
        serde_yaml::to_string(&secret).expect("Secret as YAML")
    )
}

/// (rule, annotations, Authorization, expected status).
type AuthRow = (
    &'static str,
    &'static [(&'static str, &'static str)],
    Option<(&'static str, &'static str)>,
    StatusCode,
);

/// auth-type basic, auth-secret, auth-secret-type, auth-realm. The rows transcribe
/// ingress-nginx's `test/e2e/annotations/auth.go` (no auth 200; an unknown Secret 503; no
/// credentials 401 with "401 Authorization Required"; wrong ones 401; right ones 200; an
/// entry `foo:` 500) and add what `internal/ingress/annotations/auth/main.go` decides (auth-map, a
/// bad auth-secret-type or a Secret in another namespace is "location denied": 503; digest
/// is not supported here and fails closed). The hashes are made by the real `htpasswd`.
#[tokio::test]
async fn basic_auth() {
    const BASIC: (&str, &str) = ("auth-type", "basic");
    const REALM: (&str, &str) = ("auth-realm", "test auth");
    let rows: &[AuthRow] = &[
        ("no authentication configured", &[], None, StatusCode::OK),
        (
            "an unknown Secret denies the location",
            &[BASIC, ("auth-secret", "something"), REALM],
            Some(("foo", "bar")),
            StatusCode::SERVICE_UNAVAILABLE,
        ),
        (
            "no Authorization header",
            &[BASIC, ("auth-secret", "basic-auth"), REALM],
            None,
            StatusCode::UNAUTHORIZED,
        ),
        (
            "invalid credentials",
            &[BASIC, ("auth-secret", "basic-auth"), REALM],
            Some(("user", "pass")),
            StatusCode::UNAUTHORIZED,
        ),
        (
            "a known user with a wrong password",
            &[BASIC, ("auth-secret", "basic-auth"), REALM],
            Some(("foo", "baz")),
            StatusCode::UNAUTHORIZED,
        ),
        (
            "valid credentials (bcrypt)",
            &[BASIC, ("auth-secret", "basic-auth"), REALM],
            Some(("foo", "bar")),
            StatusCode::OK,
        ),
        (
            "valid credentials (APR1-MD5), the Secret as namespace/name",
            &[BASIC, ("auth-secret", "default/basic-auth")],
            Some(("apr", "one two")),
            StatusCode::OK,
        ),
        (
            "valid credentials ({SHA})",
            &[BASIC, ("auth-secret", "basic-auth")],
            Some(("sha", "s:3")),
            StatusCode::OK,
        ),
        (
            "an unusable entry answers 500 (auth.go: the Secret holds \"foo:\")",
            &[BASIC, ("auth-secret", "invalid-content"), REALM],
            Some(("foo", "bar")),
            StatusCode::INTERNAL_SERVER_ERROR,
        ),
        (
            "auth-map: keys are users, values hashes",
            &[
                BASIC,
                ("auth-secret", "map-auth"),
                ("auth-secret-type", "auth-map"),
            ],
            Some(("foo", "bar")),
            StatusCode::OK,
        ),
        (
            "auth-map refuses a wrong password",
            &[
                BASIC,
                ("auth-secret", "map-auth"),
                ("auth-secret-type", "auth-map"),
            ],
            Some(("foo", "bar2")),
            StatusCode::UNAUTHORIZED,
        ),
        (
            "auth-file without the key auth denies the location",
            &[BASIC, ("auth-secret", "map-auth")],
            Some(("foo", "bar")),
            StatusCode::SERVICE_UNAVAILABLE,
        ),
        (
            "a bad auth-secret-type denies the location",
            &[
                BASIC,
                ("auth-secret", "basic-auth"),
                ("auth-secret-type", "auth-list"),
            ],
            Some(("foo", "bar")),
            StatusCode::SERVICE_UNAVAILABLE,
        ),
        (
            "a Secret in another namespace denies the location",
            &[BASIC, ("auth-secret", "other/basic-auth")],
            Some(("foo", "bar")),
            StatusCode::SERVICE_UNAVAILABLE,
        ),
        (
            "auth-type without auth-secret denies the location",
            &[BASIC],
            Some(("foo", "bar")),
            StatusCode::SERVICE_UNAVAILABLE,
        ),
        (
            "digest is not supported and fails closed",
            &[("auth-type", "digest"), ("auth-secret", "basic-auth")],
            Some(("foo", "bar")),
            StatusCode::SERVICE_UNAVAILABLE,
        ),
        (
            "auth-secret without auth-type asks for nothing (as ingress-nginx)",
            &[("auth-secret", "basic-auth")],
            None,
            StatusCode::OK,
        ),
    ];
    let (echo, mut yaml) = echo_and_secrets(&[]).await;
    let users = [
        htpasswd("-B", "foo", "bar"),
        htpasswd("-m", "apr", "one two"),
        htpasswd("-s", "sha", "s:3"),
    ]
    .join("\n");
    yaml.push_str(&opaque_secret("default", "basic-auth", &[("auth", &users)]));
    yaml.push_str(&opaque_secret("other", "basic-auth", &[("auth", &users)]));
    yaml.push_str(&opaque_secret(
        "default",
        "invalid-content",
        &[("auth", "foo:")],
    ));
    let foo = htpasswd("-m", "foo", "bar");
    let (_, foo_hash) = foo.split_once(':').expect("user:hash");
    yaml.push_str(&opaque_secret("default", "map-auth", &[("foo", foo_hash)]));
    for (i, row) in rows.iter().enumerate() {
        yaml.push_str(&ingress(
            &format!("a{i}"),
            &format!("r{i}.auth"),
            row.1,
            false,
        ));
    }
    let proc = IngressProcess::start(&yaml, &[]).await;
    let mut forwarded = 0;
    for (i, (rule, _, credentials, status)) in rows.iter().enumerate() {
        let authorization = credentials.map(|(u, p)| basic(u, p));
        let (got, challenge, body) = get_with_auth(
            [127, 0, 0, 1],
            proc.http,
            &format!("r{i}.auth"),
            authorization.as_deref(),
        )
        .await;
        assert_eq!(got, *status, "{rule}: {body}\n{}", proc.log());
        if got == StatusCode::UNAUTHORIZED {
            assert!(
                body.contains("401 Authorization Required"),
                "{rule}: {body}"
            );
            assert!(
                challenge.starts_with("Basic realm=\""),
                "{rule}: {challenge}"
            );
        }
        if got == StatusCode::OK {
            forwarded += 1;
            if let Some(a) = &authorization {
                assert!(
                    body.to_ascii_lowercase()
                        .contains(&format!("authorization: {}", a.to_ascii_lowercase())),
                    "{rule}: the Authorization header goes upstream, as nginx passes it: {body}"
                );
            }
        }
    }
    assert_eq!(
        echo.request_count(),
        forwarded,
        "refused requests never reach the backend"
    );
    // The realm is sent as written, nginx's `Basic realm="..."`.
    let (_, challenge, _) = get_with_auth([127, 0, 0, 1], proc.http, "r2.auth", None).await;
    assert_eq!(challenge, "Basic realm=\"test auth\"");
    let (_, challenge, _) = get_with_auth([127, 0, 0, 1], proc.http, "r7.auth", None).await;
    assert_eq!(challenge, "Basic realm=\"\"", "no auth-realm: empty");
    // Each broken configuration is a Problem, counted by kind.
    let metrics = proc.metrics().await;
    for kind in [
        "auth_secret_not_found",
        "auth_secret_invalid_entry",
        "auth_secret_invalid",
        "auth_secret_cross_namespace",
        "auth_secret_missing",
        "annotation_unsupported",
        "invalid_annotation",
    ] {
        assert_eq!(
            metrics.sum("xdp_ingress_problems", &[("kind", kind)]),
            1.0,
            "{kind}"
        );
    }
}

/// `n` requests sent one after another, as fast as possible, from `from`: how many got
/// 200 and how many 503 (or `limited`, when given).
async fn burst(from: [u8; 4], addr: SocketAddr, host: &str, n: usize) -> (usize, usize) {
    burst_limited(from, addr, host, n, StatusCode::SERVICE_UNAVAILABLE).await
}

async fn burst_limited(
    from: [u8; 4],
    addr: SocketAddr,
    host: &str,
    n: usize,
    limited: StatusCode,
) -> (usize, usize) {
    let (mut ok, mut refused) = (0, 0);
    for _ in 0..n {
        match get_from(from, addr, host, "/").await.0 {
            StatusCode::OK => ok += 1,
            s if s == limited => refused += 1,
            other => panic!("{host}: unexpected {other}"),
        }
    }
    (ok, refused)
}

/// limit-rpm, limit-rps, limit-burst-multiplier and limit-whitelist (ingress-nginx's
/// `internal/ingress/annotations/ratelimit/main.go`: nginx `limit_req` per client address
/// with `burst` = rate × multiplier and `nodelay`; rejected requests get 503, the default
/// `limit-req-status-code`). A new client passes burst + 1 requests at once; limit-rpm 1
/// drains one request per minute, so within this test exactly burst + 1 pass.
#[tokio::test]
async fn rate_limits() {
    let (echo, mut yaml) = echo_and_secrets(&[]).await;
    yaml.push_str(&ingress(
        "rpm",
        "rpm.limit",
        &[
            ("limit-rpm", "1"),
            ("limit-burst-multiplier", "2"),
            ("limit-whitelist", "10.0.0.0/8, 127.0.0.3"),
        ],
        false,
    ));
    yaml.push_str(&ingress("rps", "rps.limit", &[("limit-rps", "1")], false));
    yaml.push_str(&ingress(
        "bad",
        "bad.limit",
        &[("limit-rps", "fast")],
        false,
    ));
    let proc = IngressProcess::start(&yaml, &[]).await;
    // burst 1 × 2: three pass, the rest get 503, each client on its own.
    assert_eq!(
        burst([127, 0, 0, 2], proc.http, "rpm.limit", 10).await,
        (3, 7)
    );
    assert_eq!(
        burst([127, 0, 0, 4], proc.http, "rpm.limit", 5).await,
        (3, 2)
    );
    // Whitelisted: never limited.
    assert_eq!(
        burst([127, 0, 0, 3], proc.http, "rpm.limit", 20).await,
        (20, 0)
    );
    // limit-rps 1, default multiplier 5: six pass at once, then one a second; 40
    // requests take far less than 34 s, so some are refused.
    let (ok, limited) = burst([127, 0, 0, 2], proc.http, "rps.limit", 40).await;
    assert!(
        ok >= 6 && limited > 0,
        "rps: {ok} passed, {limited} limited"
    );
    // An invalid value applies no limit (and a Problem says so).
    assert_eq!(
        burst([127, 0, 0, 2], proc.http, "bad.limit", 20).await,
        (20, 0)
    );
    assert_eq!(
        echo.request_count(),
        3 + 3 + 20 + ok + 20,
        "limited requests never reach the backend"
    );
    // ingress-nginx's `limit-req-status-code` is a flag here.
    drop(proc);
    let proc = IngressProcess::start(&yaml, &["--limit-req-status-code", "429"]).await;
    assert_eq!(
        burst_limited(
            [127, 0, 0, 2],
            proc.http,
            "rpm.limit",
            10,
            StatusCode::TOO_MANY_REQUESTS
        )
        .await,
        (3, 7)
    );
}

/// A backend that holds every request until released: (address, arrivals, release).
async fn gated_backend() -> (
    SocketAddr,
    tokio::sync::mpsc::UnboundedReceiver<()>,
    tokio::sync::watch::Sender<bool>,
    tokio::task::JoinHandle<()>,
) {
    use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let addr = listener.local_addr().expect("addr");
    let (arrived, arrivals) = tokio::sync::mpsc::unbounded_channel();
    let (release, released) = tokio::sync::watch::channel(false);
    let task = tokio::spawn(async move {
        while let Ok((mut stream, _)) = listener.accept().await {
            let (arrived, mut released) = (arrived.clone(), released.clone());
            tokio::spawn(async move {
                let mut buf = Vec::new();
                let mut chunk = [0u8; 4096];
                while !buf.windows(4).any(|w| w == b"\r\n\r\n") {
                    match stream.read(&mut chunk).await {
                        Ok(0) | Err(_) => return,
                        Ok(n) => buf.extend_from_slice(&chunk[..n]),
                    }
                }
                let _ = arrived.send(());
                let _ = released.wait_for(|r| *r).await;
                let _ = stream
                    .write_all(
                        b"HTTP/1.1 200 OK\r\ncontent-length: 5\r\nconnection: close\r\n\r\nheld\n",
                    )
                    .await;
            });
        }
    });
    (addr, arrivals, release, task)
}

/// limit-connections, transcribing ingress-nginx's `test/e2e/annotations/limitconnections.go`
/// (20 concurrent slow requests with `limit-connections: 8`: 8 get 200, 12 get 503; nginx's
/// `limit_conn` counts requests in progress per client address). The backend holds the
/// requests until released, so the counts do not depend on timing. Another client has its
/// own count, and `limit-whitelist` exempts a client.
#[tokio::test]
async fn limit_connections() {
    let (held, mut arrivals, release, task) = gated_backend().await;
    let mut yaml = service_yaml("held", &[held]);
    yaml.push_str(
        &ingress(
            "conn",
            "conn.limit",
            &[("limit-connections", "8"), ("limit-whitelist", "127.0.0.4")],
            false,
        )
        .replace("name: echo", "name: held"),
    );
    let proc = IngressProcess::start(&yaml, &[]).await;
    let send = |from: [u8; 4]| tokio::spawn(get_from(from, proc.http, "conn.limit", "/"));
    let limited: Vec<_> = (0..20).map(|_| send([127, 0, 0, 2])).collect();
    let others: Vec<_> = [[127, 0, 0, 3], [127, 0, 0, 4], [127, 0, 0, 4]]
        .into_iter()
        .map(send)
        .collect();
    // 8 + 1 + 2 requests reach the backend and are held there.
    for _ in 0..11 {
        tokio::time::timeout(Duration::from_secs(10), arrivals.recv())
            .await
            .expect("the held requests reach the backend");
    }
    // The 12 others of 127.0.0.2 are answered at once; release only then, so none of them
    // can take a slot freed by the release.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    while limited.iter().filter(|t| t.is_finished()).count() < 12 {
        assert!(
            tokio::time::Instant::now() < deadline,
            "the refused requests were not answered"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    release.send(true).expect("release");
    let (mut ok, mut refused) = (0, 0);
    for t in limited {
        match t.await.expect("join").0 {
            StatusCode::OK => ok += 1,
            StatusCode::SERVICE_UNAVAILABLE => refused += 1,
            other => panic!("unexpected {other}"),
        }
    }
    assert_eq!(
        (ok, refused),
        (8, 12),
        "limitconnections.go: 8 pass, 12 get 503"
    );
    for (who, t) in ["other client", "whitelisted", "whitelisted again"]
        .into_iter()
        .zip(others)
    {
        assert_eq!(t.await.expect("join").0, StatusCode::OK, "{who}");
    }
    // Its request done, the client may send another (the slot is freed once the response
    // is sent; wait for that within a deadline).
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    loop {
        let (status, _) = get_from([127, 0, 0, 2], proc.http, "conn.limit", "/").await;
        if status == StatusCode::OK {
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "the slot was never freed: {status}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    task.abort();
}
