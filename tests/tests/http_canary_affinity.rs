//! ingress-nginx's cookie session affinity and canary Ingresses end to end: the real binary
//! in file mode and echo backends that say which of them answered. Cases transcribed from
//! ingress-nginx's `test/e2e/annotations/affinity.go` and `test/e2e/annotations/canary.go`;
//! the precedence and the weight from `docs/user-guide/nginx-configuration/annotations.md`.

use std::{
    collections::BTreeSet,
    fs,
    net::SocketAddr,
    path::PathBuf,
    time::{Duration, Instant, SystemTime, UNIX_EPOCH},
};

use bytes::Bytes;
use http_body_util::{BodyExt as _, Empty};
use hyper::{Request, StatusCode, header};
use hyper_util::rt::TokioIo;
use ingress_tests::{
    http_support::{
        AnnotatedIngress, TestBackend, TestCa, service_yaml, tls_connect, tls_connector, tls_get,
    },
    process::{IngressProcess, Source},
};
use tokio::net::TcpStream;

const PREFIX: &str = "nginx.ingress.kubernetes.io";

/// An Ingress `default/NAME` for `host` and `path` (ImplementationSpecific, as
/// ingress-nginx's e2e fixtures) → Service `service` port 80, with `annotations` (names
/// without the prefix).
fn ingress(
    name: &str,
    host: &str,
    path: &str,
    service: &str,
    annotations: &[(&str, &str)],
) -> String {
    AnnotatedIngress {
        name,
        host,
        path,
        path_type: "ImplementationSpecific",
        service,
        annotations,
        tls_secret: None,
    }
    .yaml()
}

/// What one request got.
#[derive(Debug)]
struct Reply {
    status: StatusCode,
    /// The backend that answered (the echo body's first line), or empty.
    backend: String,
    /// Every `Set-Cookie` line.
    set_cookie: Vec<String>,
}

/// `GET PATH` with `Host: HOST` and `headers`, on a fresh connection to `addr`.
async fn get(addr: SocketAddr, host: &str, path: &str, headers: &[(&str, &str)]) -> Reply {
    let stream = TcpStream::connect(addr)
        .await
        .expect("connect to xdp-ingress");
    let (mut send, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
        .await
        .expect("handshake");
    let conn = tokio::spawn(conn);
    let mut req = Request::get(path).header(header::HOST, host);
    for (k, v) in headers {
        req = req.header(*k, *v);
    }
    let req = req.body(Empty::<Bytes>::new()).expect("request");
    let resp = tokio::time::timeout(Duration::from_secs(10), send.send_request(req))
        .await
        .expect("answer within 10 s")
        .expect("response");
    let status = resp.status();
    let set_cookie = resp
        .headers()
        .get_all(header::SET_COOKIE)
        .iter()
        .map(|v| v.to_str().unwrap_or("").to_owned())
        .collect();
    let body = resp.into_body().collect().await.expect("body").to_bytes();
    conn.abort();
    let backend = if status == StatusCode::OK {
        String::from_utf8_lossy(&body)
            .lines()
            .next()
            .unwrap_or("")
            .to_owned()
    } else {
        String::new()
    };
    Reply {
        status,
        backend,
        set_cookie,
    }
}

/// The value of cookie `name` in a `Set-Cookie` line.
fn cookie_value<'a>(set_cookie: &'a str, name: &str) -> Option<&'a str> {
    set_cookie
        .split(';')
        .next()?
        .split_once('=')
        .filter(|(k, _)| *k == name)
        .map(|(_, v)| v)
}

/// Waits (at most 10 s) until `host` is routed. `/readyz` turns ready when the first
/// Snapshot is built, and the router takes it a moment later; a Snapshot is whole, so one
/// routed host means all of them.
async fn serving(proc: &IngressProcess, host: &str) {
    let since = Instant::now();
    while get(proc.http, host, "/", &[]).await.status == StatusCode::NOT_FOUND {
        assert!(
            since.elapsed() < Duration::from_secs(10),
            "{host} is not routed\n{}",
            proc.log()
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// A directory of manifests the test rewrites while the binary watches it.
struct Manifests(PathBuf);

impl Manifests {
    fn new(tag: &str, yaml: &str) -> Self {
        let dir = std::env::temp_dir().join(format!("xit-{tag}-{}", std::process::id()));
        let _ = fs::remove_dir_all(&dir);
        fs::create_dir_all(&dir).expect("create manifest dir");
        let m = Self(dir);
        m.write(yaml);
        m
    }

    fn write(&self, yaml: &str) {
        fs::write(self.0.join("objects.yaml"), yaml).expect("write manifests");
    }
}

/// The binary watching `dir`; started again with other ports if one it picked was taken
/// meanwhile (as [`IngressProcess::start`] does).
async fn start_on(dir: &Manifests) -> IngressProcess {
    let mut attempt = 0;
    loop {
        attempt += 1;
        match IngressProcess::start_with(Source::Manifests(&dir.0), &[], Duration::from_secs(30))
            .await
        {
            Ok(proc) => return proc,
            Err(log) if attempt < 3 && log.contains("Address already in use") => {}
            Err(log) => panic!("xdp-ingress did not start:\n{log}"),
        }
    }
}

impl Drop for Manifests {
    fn drop(&mut self) {
        let _ = fs::remove_dir_all(&self.0);
    }
}

/// Three echo backends `b0`..`b2` behind Service `echo`.
async fn three_backends() -> Vec<TestBackend> {
    let mut v = Vec::new();
    for i in 0..3 {
        v.push(TestBackend::start(&format!("b{i}")).await);
    }
    v
}

fn addrs(backends: &[&TestBackend]) -> Vec<SocketAddr> {
    backends.iter().map(|b| b.addr).collect()
}

/// affinity.go "should set sticky cookie SERVERID": the first answer sets the cookie; a
/// client that sends it back reaches the same backend for 20 requests, and gets no new
/// cookie. New sessions spread over the backends.
#[tokio::test]
async fn a_session_cookie_holds_a_client_to_one_backend() {
    let b = three_backends().await;
    let mut yaml = service_yaml("echo", &addrs(&[&b[0], &b[1], &b[2]]));
    let sticky = [("affinity", "cookie"), ("session-cookie-name", "SERVERID")];
    yaml.push_str(&ingress("sticky", "sticky.foo.com", "/", "echo", &sticky));
    let persistent = [("affinity", "cookie"), ("affinity-mode", "persistent")];
    yaml.push_str(&ingress(
        "pers",
        "persistent.foo.com",
        "/",
        "echo",
        &persistent,
    ));
    let proc = IngressProcess::start(&yaml, &[]).await;
    serving(&proc, "sticky.foo.com").await;
    for (host, name) in [
        ("sticky.foo.com", "SERVERID"),
        ("persistent.foo.com", "INGRESSCOOKIE"),
    ] {
        let mut first_backends = BTreeSet::new();
        for _ in 0..12 {
            let r = get(proc.http, host, "/", &[]).await;
            assert_eq!(r.status, StatusCode::OK, "{host}\n{}", proc.log());
            assert_eq!(r.set_cookie.len(), 1, "{host}: {:?}", r.set_cookie);
            let value = cookie_value(&r.set_cookie[0], name)
                .unwrap_or_else(|| panic!("{host}: {:?}", r.set_cookie))
                .to_owned();
            first_backends.insert(r.backend.clone());
            let cookie = format!("{name}={value}");
            for i in 0..20 {
                let again = get(proc.http, host, "/", &[("cookie", &cookie)]).await;
                assert_eq!(
                    again.backend, r.backend,
                    "{host}: request {i} with {cookie}"
                );
                assert!(
                    again.set_cookie.is_empty(),
                    "{host}: {:?}",
                    again.set_cookie
                );
            }
        }
        // 12 new sessions over 3 backends: all on one has probability 3^-11 (balanced) or
        // never happens (persistent: round-robin picks).
        assert!(first_backends.len() >= 2, "{host}: {first_backends:?}");
    }
}

/// "When the backend server is removed, the requests are then re-routed to another
/// upstream server and NGINX creates a new cookie" (docs/examples/affinity/cookie): with
/// `affinity-mode: persistent`, a client whose backend left is balanced again and gets a
/// new cookie that holds; clients of the backends that remain keep theirs. With the default
/// (balanced) mode the old cookie maps to a remaining backend and stays valid.
#[tokio::test]
async fn a_client_whose_backend_left_is_moved_and_others_stay() {
    let b = three_backends().await;
    let objects = |eps: &[&TestBackend]| {
        let mut yaml = service_yaml("echo", &addrs(eps));
        let p = [("affinity", "cookie"), ("affinity-mode", "persistent")];
        yaml.push_str(&ingress("pers", "persistent.foo.com", "/", "echo", &p));
        yaml.push_str(&ingress(
            "bal",
            "balanced.foo.com",
            "/",
            "echo",
            &[("affinity", "cookie")],
        ));
        yaml
    };
    let dir = Manifests::new("affinity-repick", &objects(&[&b[0], &b[1], &b[2]]));
    let proc = start_on(&dir).await;
    serving(&proc, "persistent.foo.com").await;
    // Sessions until each host has one on every backend: (host, cookie, backend).
    let mut sessions: Vec<(&str, String, String)> = Vec::new();
    for host in ["persistent.foo.com", "balanced.foo.com"] {
        let mut seen = BTreeSet::new();
        for _ in 0..60 {
            let r = get(proc.http, host, "/", &[]).await;
            let v = cookie_value(&r.set_cookie[0], "INGRESSCOOKIE").expect("cookie");
            if seen.insert(r.backend.clone()) {
                sessions.push((host, format!("INGRESSCOOKIE={v}"), r.backend.clone()));
            }
            if seen.len() == 3 {
                break;
            }
        }
        assert_eq!(
            seen.len(),
            3,
            "{host}: 60 new sessions reach all 3 backends"
        );
    }
    // b1 leaves.
    dir.write(&objects(&[&b[0], &b[2]]));
    let changed = Instant::now();
    for (host, cookie, backend) in &sessions {
        let r = loop {
            let r = get(proc.http, host, "/", &[("cookie", cookie)]).await;
            if r.backend != "b1" {
                break r;
            }
            assert!(
                changed.elapsed() < Duration::from_secs(10),
                "b1 still answers after its endpoint left\n{}",
                proc.log()
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        };
        if backend == "b1" {
            assert_ne!(r.backend, "b1");
            if *host == "persistent.foo.com" {
                assert_eq!(
                    r.set_cookie.len(),
                    1,
                    "{host}: a new cookie for the new backend"
                );
                let v = cookie_value(&r.set_cookie[0], "INGRESSCOOKIE").unwrap();
                let new = format!("INGRESSCOOKIE={v}");
                assert_ne!(&new, cookie);
                for _ in 0..5 {
                    let again = get(proc.http, host, "/", &[("cookie", &new)]).await;
                    assert_eq!(again.backend, r.backend, "{host}: the new cookie holds");
                    assert!(again.set_cookie.is_empty());
                }
            } else {
                assert!(
                    r.set_cookie.is_empty(),
                    "{host}: the session key stays valid"
                );
                for _ in 0..5 {
                    let again = get(proc.http, host, "/", &[("cookie", cookie)]).await;
                    assert_eq!(again.backend, r.backend, "{host}: still held");
                }
            }
        } else {
            assert_eq!(
                &r.backend, backend,
                "{host}: a client whose backend remains keeps it"
            );
            assert!(r.set_cookie.is_empty(), "{host}: {:?}", r.set_cookie);
        }
    }
    // A forged cookie reaches a real backend (and is replaced), never anything else.
    for forged in [
        "INGRESSCOOKIE=0000000000000000",
        "INGRESSCOOKIE=127.0.0.1:1",
        "INGRESSCOOKIE=",
    ] {
        let r = get(proc.http, "persistent.foo.com", "/", &[("cookie", forged)]).await;
        assert!(
            ["b0", "b2"].contains(&r.backend.as_str()),
            "{forged}: {r:?}"
        );
        assert_eq!(r.set_cookie.len(), 1, "{forged}: {r:?}");
    }
}

/// `session-cookie-change-on-failure` (sticky.lua: a new upstream is picked, and the cookie
/// set, when the last attempt failed and the annotation is true). The sticky backend stops
/// (connections refused): the request is retried on another backend either way; only with
/// the annotation does the cookie move there. `--idle-timeout 1`: the stopped backend's
/// pooled connection (whose task outlives its listener) is not reused after a second.
#[tokio::test]
async fn change_on_failure_moves_the_cookie_to_the_backend_that_answered() {
    let mut b = three_backends().await;
    let mut yaml = service_yaml("echo", &addrs(&[&b[0], &b[1], &b[2]]));
    let base = [("affinity", "cookie"), ("affinity-mode", "persistent")];
    yaml.push_str(&ingress("keep", "keep.foo.com", "/", "echo", &base));
    let change = [
        ("affinity", "cookie"),
        ("affinity-mode", "persistent"),
        ("session-cookie-change-on-failure", "true"),
    ];
    yaml.push_str(&ingress("change", "change.foo.com", "/", "echo", &change));
    let proc = IngressProcess::start(&yaml, &["--idle-timeout", "1"]).await;
    serving(&proc, "keep.foo.com").await;
    // Per host, a cookie naming b2 (persistent: new sessions go round the backends; each
    // Ingress's cookies are its own).
    let mut on_b2 = Vec::new();
    for host in ["keep.foo.com", "change.foo.com"] {
        for _ in 0..6 {
            let r = get(proc.http, host, "/", &[]).await;
            if r.backend == "b2" {
                let v = cookie_value(&r.set_cookie[0], "INGRESSCOOKIE").unwrap();
                on_b2.push(format!("INGRESSCOOKIE={v}"));
                break;
            }
        }
    }
    let [keep, change] = <[String; 2]>::try_from(on_b2).expect("a session on b2 per host");
    for (host, cookie) in [("keep.foo.com", &keep), ("change.foo.com", &change)] {
        let r = get(proc.http, host, "/", &[("cookie", cookie)]).await;
        assert_eq!(r.backend, "b2", "{host}");
    }
    drop(b.pop()); // b2 stops listening
    let stopped = Instant::now();
    let r = loop {
        // Idle for longer than --idle-timeout, so the pooled connection to b2 is dropped.
        tokio::time::sleep(Duration::from_millis(1500)).await;
        let r = get(proc.http, "keep.foo.com", "/", &[("cookie", &keep)]).await;
        if r.backend != "b2" {
            break r;
        }
        assert!(
            stopped.elapsed() < Duration::from_secs(15),
            "b2's pooled connection is still used\n{}",
            proc.log()
        );
    };
    assert_eq!(
        r.status,
        StatusCode::OK,
        "retried on another backend\n{}",
        proc.log()
    );
    assert!(
        r.set_cookie.is_empty(),
        "without the annotation the cookie stays: {:?}",
        r.set_cookie
    );
    let r = get(proc.http, "change.foo.com", "/", &[("cookie", &change)]).await;
    assert_eq!(r.status, StatusCode::OK);
    assert_ne!(r.backend, "b2");
    assert_eq!(r.set_cookie.len(), 1, "the cookie moves: {r:?}");
    let moved = format!(
        "INGRESSCOOKIE={}",
        cookie_value(&r.set_cookie[0], "INGRESSCOOKIE").unwrap()
    );
    for _ in 0..5 {
        let again = get(proc.http, "change.foo.com", "/", &[("cookie", &moved)]).await;
        assert_eq!(again.backend, r.backend, "the moved cookie holds");
        assert!(again.set_cookie.is_empty());
    }
}

/// affinity.go "should set secure in cookie with provided false annotation on https":
/// over HTTPS the cookie is `Secure` whatever `session-cookie-secure` says.
#[tokio::test]
async fn the_cookie_is_secure_over_https() {
    let b = TestBackend::start("b0").await;
    let mut yaml = service_yaml("echo", &[b.addr]);
    let ca = TestCa::new();
    yaml.push_str("---\n");
    yaml.push_str(&serde_yaml::to_string(&ca.secret("tls-foo", &["foo.com"])).unwrap());
    let mut ing = ingress(
        "tls",
        "foo.com",
        "/",
        "echo",
        &[
            ("affinity", "cookie"),
            ("session-cookie-name", "SERVERID"),
            ("session-cookie-secure", "false"),
        ],
    );
    ing = ing.replace(
        "spec:\n",
        "spec:\n  tls:\n  - hosts: [\"foo.com\"]\n    secretName: tls-foo\n",
    );
    yaml.push_str(&ing);
    let proc = IngressProcess::start(&yaml, &[]).await;
    serving(&proc, "foo.com").await;
    let stream = tls_connect(
        &tls_connector(&ca.cert, &[b"http/1.1"]),
        proc.https,
        "foo.com",
    )
    .await
    .expect("TLS handshake");
    let (_, answer) = tls_get(stream, "foo.com", "/").await;
    assert_eq!(answer.status, StatusCode::OK, "{}", proc.log());
    let line = answer
        .headers
        .get(header::SET_COOKIE)
        .map(|v| v.to_str().unwrap().to_owned())
        .unwrap_or_default();
    assert!(line.starts_with("SERVERID="), "{line:?}");
    assert!(line.contains("; Secure"), "{line:?}");
}

/// `ngx.cookie_time` of `unix`, to the minute (`Mon, 02-Jan-06 15:04`), as affinity.go
/// checks `Expires`.
fn cookie_minute(unix: u64) -> String {
    let out = std::process::Command::new("date")
        .args(["-u", "-d", &format!("@{unix}"), "+%a, %d-%b-%y %H:%M"])
        .output()
        .expect("date runs");
    String::from_utf8(out.stdout).unwrap().trim().to_owned()
}

/// (case, annotations, rule path, request path, request headers, parts the Set-Cookie must
/// have, parts it must not have). `None` as the parts: no Set-Cookie at all.
type CookieRow = (
    &'static str,
    &'static [(&'static str, &'static str)],
    &'static str,
    &'static str,
    &'static [(&'static str, &'static str)],
    Option<&'static [&'static str]>,
    &'static [&'static str],
);

/// The cookie's attributes, as affinity.go checks them and ingress-nginx's sticky.lua sets
/// them (`HttpOnly` always; `Secure` with `session-cookie-secure` or HTTPS; `Path` the
/// rule's path unless `session-cookie-path`).
#[tokio::test]
async fn the_cookie_has_ingress_nginx_attributes() {
    const OLD_CHROME: &str = "Mozilla/5.0 (X11; Linux x86_64) Chrome/51.0.2704.103 Safari/537.36";
    const NEW_CHROME: &str = "Mozilla/5.0 (X11; Linux x86_64) Chrome/120.0.0.0 Safari/537.36";
    let rows: &[CookieRow] = &[
        (
            "should set sticky cookie SERVERID",
            &[("affinity", "cookie"), ("session-cookie-name", "SERVERID")],
            "/",
            "/",
            &[],
            Some(&["SERVERID=", "; Path=/; HttpOnly"]),
            &["Secure", "SameSite", "Expires", "Max-Age", "Domain"],
        ),
        (
            "the default name is INGRESSCOOKIE",
            &[("affinity", "cookie")],
            "/",
            "/",
            &[],
            Some(&["INGRESSCOOKIE="]),
            &[],
        ),
        (
            "should set the path to /something on the generated cookie",
            &[("affinity", "cookie"), ("session-cookie-name", "SERVERID")],
            "/something",
            "/something",
            &[],
            Some(&["; Path=/something;"]),
            &[],
        ),
        (
            "should work with use-regex annotation and session-cookie-path",
            &[
                ("affinity", "cookie"),
                ("session-cookie-name", "SERVERID"),
                ("use-regex", "true"),
                ("session-cookie-path", "/foo/bar"),
            ],
            "/foo/.*",
            "/foo/bar",
            &[],
            Some(&["SERVERID=", "; Path=/foo/bar;"]),
            &[],
        ),
        (
            "should set secure in cookie with provided true annotation on http",
            &[("affinity", "cookie"), ("session-cookie-secure", "true")],
            "/bar",
            "/bar",
            &[],
            Some(&["; Secure"]),
            &[],
        ),
        (
            "should not set secure in cookie with provided false annotation on http",
            &[("affinity", "cookie"), ("session-cookie-secure", "false")],
            "/bar",
            "/bar",
            &[],
            Some(&["; HttpOnly"]),
            &["Secure"],
        ),
        (
            "session-cookie-samesite and a domain",
            &[
                ("affinity", "cookie"),
                ("session-cookie-samesite", "Strict"),
                ("session-cookie-domain", "foo.com"),
            ],
            "/",
            "/",
            &[],
            Some(&["; Domain=foo.com; Path=/; HttpOnly; SameSite=Strict"]),
            &[],
        ),
        (
            "conditional SameSite=None is omitted for a browser that rejects it",
            &[
                ("affinity", "cookie"),
                ("session-cookie-samesite", "None"),
                ("session-cookie-conditional-samesite-none", "true"),
            ],
            "/",
            "/",
            &[("user-agent", OLD_CHROME)],
            Some(&["; HttpOnly"]),
            &["SameSite"],
        ),
        (
            "conditional SameSite=None is kept for a browser that accepts it",
            &[
                ("affinity", "cookie"),
                ("session-cookie-samesite", "None"),
                ("session-cookie-conditional-samesite-none", "true"),
            ],
            "/",
            "/",
            &[("user-agent", NEW_CHROME)],
            Some(&["; HttpOnly; SameSite=None"]),
            &[],
        ),
        (
            "an invalid affinity type is served without affinity",
            &[("affinity", "ip")],
            "/",
            "/",
            &[],
            None,
            &[],
        ),
        (
            "without affinity no cookie",
            &[("session-cookie-name", "SERVERID")],
            "/",
            "/",
            &[],
            None,
            &[],
        ),
    ];
    let b = TestBackend::start("b0").await;
    let mut yaml = service_yaml("echo", &[b.addr]);
    for (i, (_, annotations, rule_path, ..)) in rows.iter().enumerate() {
        let host = format!("c{i}.affinity.foo.com");
        yaml.push_str(&ingress(
            &format!("c{i}"),
            &host,
            rule_path,
            "echo",
            annotations,
        ));
    }
    // "should set cookie with expires".
    let expires = [
        ("affinity", "cookie"),
        ("session-cookie-name", "ExpiresCookie"),
        ("session-cookie-expires", "172800"),
        ("session-cookie-max-age", "259200"),
    ];
    yaml.push_str(&ingress(
        "exp",
        "expires.affinity.foo.com",
        "/",
        "echo",
        &expires,
    ));
    // "should not set affinity across all server locations when using separate ingresses".
    yaml.push_str(&ingress(
        "sep1",
        "separate.foo.com",
        "/foo/bar",
        "echo",
        &[("affinity", "cookie")],
    ));
    yaml.push_str(&ingress("sep2", "separate.foo.com", "/foo", "echo", &[]));
    let proc = IngressProcess::start(&yaml, &[]).await;
    serving(&proc, "c0.affinity.foo.com").await;
    for (i, (case, _, _, path, headers, want, not)) in rows.iter().enumerate() {
        let host = format!("c{i}.affinity.foo.com");
        let r = get(proc.http, &host, path, headers).await;
        assert_eq!(r.status, StatusCode::OK, "{case}\n{}", proc.log());
        match want {
            None => assert!(r.set_cookie.is_empty(), "{case}: {:?}", r.set_cookie),
            Some(parts) => {
                assert_eq!(r.set_cookie.len(), 1, "{case}: {:?}", r.set_cookie);
                let line = &r.set_cookie[0];
                for part in *parts {
                    assert!(line.contains(part), "{case}: {line:?} lacks {part:?}");
                }
                for part in *not {
                    assert!(!line.contains(part), "{case}: {line:?} has {part:?}");
                }
            }
        }
    }
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs();
    let r = get(proc.http, "expires.affinity.foo.com", "/", &[]).await;
    let line = r.set_cookie.first().cloned().unwrap_or_default();
    assert!(line.contains("; Max-Age=259200"), "{line:?}");
    // The minute of now + 48 h, or the next one if the request crossed a minute.
    let ok = [now, now + 60]
        .iter()
        .any(|t| line.contains(&format!("Expires={}", cookie_minute(t + 172_800))));
    assert!(ok, "{line:?} expires in 48 h");
    let r = get(proc.http, "separate.foo.com", "/foo", &[]).await;
    assert!(
        r.set_cookie.is_empty(),
        "/foo has no affinity: {:?}",
        r.set_cookie
    );
    let r = get(proc.http, "separate.foo.com", "/foo/bar", &[]).await;
    assert!(
        r.set_cookie
            .first()
            .is_some_and(|l| l.contains("Path=/foo/bar")),
        "{:?}",
        r.set_cookie
    );
}

/// (case, canary annotations, request headers, the backend that answers).
type CanaryRow = (
    &'static str,
    &'static [(&'static str, &'static str)],
    &'static [(&'static str, &'static str)],
    &'static str,
);

/// canary.go, one host per context: a main Ingress to `main` and a canary Ingress for the
/// same host and path to `canary`, requests with the header and cookie values it sends.
#[tokio::test]
async fn canary_by_header_cookie_and_weight() {
    const BY_HEADER: &[(&str, &str)] =
        &[("canary", "true"), ("canary-by-header", "CanaryByHeader")];
    const BY_VALUE: &[(&str, &str)] = &[
        ("canary", "true"),
        ("canary-by-header", "CanaryByHeader"),
        ("canary-by-header-value", "DoCanary"),
    ];
    const BY_VALUE_AND_COOKIE: &[(&str, &str)] = &[
        ("canary", "true"),
        ("canary-by-header", "CanaryByHeader"),
        ("canary-by-header-value", "DoCanary"),
        ("canary-by-cookie", "CanaryByCookie"),
    ];
    const BY_PATTERN: &[(&str, &str)] = &[
        ("canary", "true"),
        ("canary-by-header", "CanaryByHeader"),
        ("canary-by-header-pattern", "^Do(Canary|It)$"),
    ];
    const BY_COOKIE: &[(&str, &str)] =
        &[("canary", "true"), ("canary-by-cookie", "Canary-By-Cookie")];
    const WEIGHT_0: &[(&str, &str)] = &[("canary", "true"), ("canary-weight", "0")];
    const WEIGHT_100: &[(&str, &str)] = &[("canary", "true"), ("canary-weight", "100")];
    const HEADER_AND_WEIGHT_100: &[(&str, &str)] = &[
        ("canary", "true"),
        ("canary-by-header", "CanaryByHeader"),
        ("canary-weight", "100"),
    ];
    // A canary's own non-canary annotations are ignored (annotations.md).
    const WITH_REDIRECT: &[(&str, &str)] = &[
        ("canary", "true"),
        ("canary-weight", "100"),
        ("permanent-redirect", "https://example.com/"),
    ];
    let rows: &[CanaryRow] = &[
        (
            "header always",
            BY_HEADER,
            &[("CanaryByHeader", "always")],
            "canary",
        ),
        (
            "header never",
            BY_HEADER,
            &[("CanaryByHeader", "never")],
            "main",
        ),
        (
            "header anything else",
            BY_HEADER,
            &[("CanaryByHeader", "badheadervalue")],
            "main",
        ),
        ("no header", BY_HEADER, &[], "main"),
        (
            "header value",
            BY_VALUE,
            &[("CanaryByHeader", "DoCanary")],
            "canary",
        ),
        (
            "header value: always is another value",
            BY_VALUE,
            &[("CanaryByHeader", "always")],
            "main",
        ),
        (
            "header value: never",
            BY_VALUE,
            &[("CanaryByHeader", "never")],
            "main",
        ),
        (
            "header value: other",
            BY_VALUE,
            &[("CanaryByHeader", "otherheadervalue")],
            "main",
        ),
        (
            "header value does not match and cookie always",
            BY_VALUE_AND_COOKIE,
            &[
                ("CanaryByHeader", "otherheadervalue"),
                ("cookie", "CanaryByCookie=always"),
            ],
            "canary",
        ),
        (
            "header pattern matches",
            BY_PATTERN,
            &[("CanaryByHeader", "DoIt")],
            "canary",
        ),
        (
            "header pattern does not match",
            BY_PATTERN,
            &[("CanaryByHeader", "Dont")],
            "main",
        ),
        (
            "cookie always",
            BY_COOKIE,
            &[("cookie", "Canary-By-Cookie=always")],
            "canary",
        ),
        (
            "cookie never",
            BY_COOKIE,
            &[("cookie", "Canary-By-Cookie=never")],
            "main",
        ),
        (
            "cookie anything else",
            BY_COOKIE,
            &[("cookie", "Canary-By-Cookie=badcookievalue")],
            "main",
        ),
        ("weight 0", WEIGHT_0, &[], "main"),
        ("weight 100", WEIGHT_100, &[], "canary"),
        (
            "header never beats weight 100",
            HEADER_AND_WEIGHT_100,
            &[("CanaryByHeader", "never")],
            "main",
        ),
        (
            "a canary's own redirect is ignored",
            WITH_REDIRECT,
            &[],
            "canary",
        ),
    ];
    let main = TestBackend::start("main").await;
    let canary = TestBackend::start("canary").await;
    let mut yaml = service_yaml("main", &[main.addr]);
    yaml.push_str(&service_yaml("canary", &[canary.addr]));
    for (i, (_, annotations, ..)) in rows.iter().enumerate() {
        let host = format!("h{i}.canary.foo");
        yaml.push_str(&ingress(&format!("main{i}"), &host, "/", "main", &[]));
        yaml.push_str(&ingress(
            &format!("main{i}-canary"),
            &host,
            "/",
            "canary",
            annotations,
        ));
    }
    // "should return 404 status for requests to the canary if no matching ingress is
    // found".
    yaml.push_str(&ingress(
        "alone-canary",
        "alone.canary.foo",
        "/",
        "canary",
        BY_HEADER,
    ));
    let proc = IngressProcess::start(&yaml, &[]).await;
    serving(&proc, "h0.canary.foo").await;
    for (i, (case, _, headers, want)) in rows.iter().enumerate() {
        let host = format!("h{i}.canary.foo");
        for _ in 0..3 {
            let r = get(proc.http, &host, "/", headers).await;
            assert_eq!(r.status, StatusCode::OK, "{case}\n{}", proc.log());
            assert_eq!(r.backend, *want, "{case}");
        }
    }
    let r = get(
        proc.http,
        "alone.canary.foo",
        "/",
        &[("CanaryByHeader", "always")],
    )
    .await;
    assert_eq!(
        r.status,
        StatusCode::NOT_FOUND,
        "a canary without a main Ingress is not served"
    );
}

/// `canary-weight: 30` sends about 30 % of requests to the canary. Tolerance: over 400
/// requests the canary count has mean 120 and standard deviation 9.2; 80..=160 is more than
/// 4 standard deviations each side (a false failure about once in 30 000 runs).
#[tokio::test]
async fn canary_weight_splits_requests() {
    let main = TestBackend::start("main").await;
    let canary = TestBackend::start("canary").await;
    let mut yaml = service_yaml("main", &[main.addr]);
    yaml.push_str(&service_yaml("canary", &[canary.addr]));
    yaml.push_str(&ingress("main", "weight.canary.foo", "/", "main", &[]));
    yaml.push_str(&ingress(
        "main-canary",
        "weight.canary.foo",
        "/",
        "canary",
        &[("canary", "true"), ("canary-weight", "30")],
    ));
    // canary-weight-total: 3 of 1000.
    yaml.push_str(&ingress("total", "total.canary.foo", "/", "main", &[]));
    yaml.push_str(&ingress(
        "total-canary",
        "total.canary.foo",
        "/",
        "canary",
        &[
            ("canary", "true"),
            ("canary-weight", "3"),
            ("canary-weight-total", "1000"),
        ],
    ));
    let proc = IngressProcess::start(&yaml, &[]).await;
    serving(&proc, "weight.canary.foo").await;
    let mut to_canary = 0;
    for _ in 0..400 {
        let r = get(proc.http, "weight.canary.foo", "/", &[]).await;
        assert_eq!(r.status, StatusCode::OK);
        to_canary += usize::from(r.backend == "canary");
    }
    assert!(
        (80..=160).contains(&to_canary),
        "{to_canary} of 400 to the canary at weight 30"
    );
    // 0.3 %: mean 1.2 of 400; more than 12 would be ten times the weight.
    let mut few = 0;
    for _ in 0..400 {
        few += usize::from(get(proc.http, "total.canary.foo", "/", &[]).await.backend == "canary");
    }
    assert!(few <= 12, "{few} of 400 at weight 3 of 1000");
}

/// `xdp-ingress check`: the canary rides on the main route, a canary's own non-canary
/// annotations are reported ignored, and a bad `canary-by-header-pattern` is an invalid
/// annotation whose Problem names the Ingress and the annotation (exit code 1); a canary
/// path without a main Ingress is a Warning.
#[tokio::test]
async fn check_reports_canaries_and_their_annotations() {
    let mut yaml = service_yaml("main", &[]);
    yaml.push_str(&service_yaml("canary", &[]));
    yaml.push_str(&ingress("main", "c.foo", "/", "main", &[]));
    yaml.push_str(&ingress(
        "main-canary",
        "c.foo",
        "/",
        "canary",
        &[
            ("canary", "true"),
            ("canary-by-header", "CanaryByHeader"),
            ("canary-by-header-pattern", "(unclosed"),
            ("ssl-redirect", "false"),
        ],
    ));
    yaml.push_str(&ingress(
        "alone-canary",
        "alone.foo",
        "/",
        "canary",
        &[("canary", "true")],
    ));
    let dir = Manifests::new("canary-check", &yaml);
    let out = tokio::process::Command::new(ingress_tests::xdp_ingress_bin())
        .arg("check")
        .arg("--manifests")
        .arg(&dir.0)
        .env("RUST_LOG", "warn")
        .output()
        .await
        .expect("xdp-ingress runs");
    let text = String::from_utf8(out.stdout).unwrap();
    assert_eq!(
        out.status.code(),
        Some(1),
        "an invalid annotation is an error:\n{text}"
    );
    let line = |what: &[&str]| {
        text.lines()
            .find(|l| what.iter().all(|w| l.contains(w)))
            .unwrap_or_else(|| panic!("no line with {what:?}:\n{text}"))
            .to_owned()
    };
    line(&[
        "c.foo",
        "default/main:80 (canary: default/canary:80)",
        "default/main",
    ]);
    assert!(
        line(&["default/main-canary", " ssl-redirect "]).contains("ignored"),
        "{text}"
    );
    assert!(
        line(&["default/main-canary", " canary-by-header "]).contains("applied"),
        "{text}"
    );
    assert!(
        line(&["default/main-canary", " canary-by-header-pattern "]).contains("invalid"),
        "{text}"
    );
    line(&[
        "Ingress default/main-canary",
        &format!("metadata.annotations[\"{PREFIX}/canary-by-header-pattern\"]"),
        "not a usable regex",
    ]);
    line(&["canary_without_main", "Ingress default/alone-canary"]);
    assert!(
        text.contains("HTTP routes (1):"),
        "c.foo / only: a canary alone routes nothing:\n{text}"
    );
}

/// `affinity-canary-behavior` (annotations.md, "Session Affinity"): with `sticky` (the
/// default) a client served by the canary stays on it, one served by the main Ingress stays
/// there, whatever the weight draws; with `legacy` the canary sets no cookie of its own.
#[tokio::test]
async fn sessions_stay_on_the_canary_or_the_main_backend() {
    let main = TestBackend::start("main").await;
    let canary = TestBackend::start("canary").await;
    let mut yaml = service_yaml("main", &[main.addr]);
    yaml.push_str(&service_yaml("canary", &[canary.addr]));
    for (host, behavior) in [
        ("sticky.canary.foo", "sticky"),
        ("legacy.canary.foo", "legacy"),
    ] {
        yaml.push_str(&ingress(
            behavior,
            host,
            "/",
            "main",
            &[("affinity", "cookie")],
        ));
        yaml.push_str(&ingress(
            &format!("{behavior}-canary"),
            host,
            "/",
            "canary",
            &[
                ("canary", "true"),
                ("canary-weight", "50"),
                ("affinity", "cookie"),
                ("affinity-canary-behavior", behavior),
            ],
        ));
    }
    let proc = IngressProcess::start(&yaml, &[]).await;
    serving(&proc, "sticky.canary.foo").await;
    // sticky: 16 new clients (all on one side has probability 2^-15), each held 10 times.
    let mut sides = BTreeSet::new();
    for _ in 0..16 {
        let first = get(proc.http, "sticky.canary.foo", "/", &[]).await;
        assert_eq!(first.status, StatusCode::OK, "{first:?}\n{}", proc.log());
        assert_eq!(first.set_cookie.len(), 1, "{first:?}");
        let v = cookie_value(&first.set_cookie[0], "INGRESSCOOKIE").unwrap();
        let cookie = format!("INGRESSCOOKIE={v}");
        sides.insert(first.backend.clone());
        for _ in 0..10 {
            let r = get(proc.http, "sticky.canary.foo", "/", &[("cookie", &cookie)]).await;
            assert_eq!(
                r.backend, first.backend,
                "{cookie} stays on {}",
                first.backend
            );
        }
    }
    assert_eq!(sides.len(), 2, "weight 50 reaches both: {sides:?}");
    // legacy: the canary never sets a cookie; the main's holds a client on the main.
    let mut main_cookie = None;
    for _ in 0..40 {
        let r = get(proc.http, "legacy.canary.foo", "/", &[]).await;
        if r.backend == "canary" {
            assert!(r.set_cookie.is_empty(), "{r:?}");
        } else if main_cookie.is_none() {
            let v = cookie_value(&r.set_cookie[0], "INGRESSCOOKIE").unwrap();
            main_cookie = Some(format!("INGRESSCOOKIE={v}"));
        }
    }
    let cookie = main_cookie.expect("weight 50: some of 40 requests reach the main backend");
    for _ in 0..10 {
        let r = get(proc.http, "legacy.canary.foo", "/", &[("cookie", &cookie)]).await;
        assert_eq!(r.backend, "main");
    }
}

/// canary.go "should route requests to the correct upstream if mainline ingress is created
/// after the canary ingress" and "... if the canary ingress is modified", on the running
/// binary: a canary alone is not served (404); once its main Ingress arrives the header
/// routes; when the canary's header changes, the new header routes and the old one no
/// longer does; when the main Ingress leaves, the canary is not served again.
#[tokio::test]
async fn canaries_follow_changes_of_their_main_ingress_and_of_themselves() {
    let main = TestBackend::start("main").await;
    let canary = TestBackend::start("canary").await;
    let mut services = service_yaml("main", &[main.addr]);
    services.push_str(&service_yaml("canary", &[canary.addr]));
    let canary_by = |header: &str| {
        ingress(
            "foo-canary",
            "foo",
            "/",
            "canary",
            &[("canary", "true"), ("canary-by-header", header)],
        )
    };
    let main_ing = ingress("foo", "foo", "/", "main", &[]);
    let dir = Manifests::new(
        "canary-changes",
        &format!("{services}{}", canary_by("CanaryByHeader")),
    );
    let proc = start_on(&dir).await;
    /// Polls until `header: value` gets `want` (status, backend), for at most 10 s.
    async fn until(proc: &IngressProcess, header: (&str, &str), want: (StatusCode, &str)) {
        let since = Instant::now();
        loop {
            let r = get(proc.http, "foo", "/", &[header]).await;
            if (r.status, r.backend.as_str()) == want {
                return;
            }
            assert!(
                since.elapsed() < Duration::from_secs(10),
                "{header:?}: {r:?}, want {want:?}\n{}",
                proc.log()
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
    let always = ("CanaryByHeader", "always");
    until(&proc, always, (StatusCode::NOT_FOUND, "")).await;
    dir.write(&format!(
        "{services}{}{main_ing}",
        canary_by("CanaryByHeader")
    ));
    until(&proc, always, (StatusCode::OK, "canary")).await;
    let r = get(proc.http, "foo", "/", &[("CanaryByHeader", "never")]).await;
    assert_eq!(r.backend, "main");
    dir.write(&format!(
        "{services}{}{main_ing}",
        canary_by("CanaryByHeader2")
    ));
    until(
        &proc,
        ("CanaryByHeader2", "always"),
        (StatusCode::OK, "canary"),
    )
    .await;
    let r = get(proc.http, "foo", "/", &[always]).await;
    assert_eq!(r.backend, "main", "the old header no longer routes");
    let r = get(proc.http, "foo", "/", &[("CanaryByHeader2", "never")]).await;
    assert_eq!(r.backend, "main");
    dir.write(&format!("{services}{}", canary_by("CanaryByHeader2")));
    until(
        &proc,
        ("CanaryByHeader2", "always"),
        (StatusCode::NOT_FOUND, ""),
    )
    .await;
}
