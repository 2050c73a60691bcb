//! ingress-nginx annotations that change where a request goes, end to end (the real binary
//! in file mode, echo backends), from `test/e2e/annotations/*.go`: server-alias
//! (`alias.go`), default-backend and custom-http-errors (`default_backend.go`,
//! `customhttperrors.go`), service-upstream (`serviceupstream.go`),
//! client-body-buffer-size (`clientbodybuffersize.go`) and mirror-* (`mirror.go`).

use std::{net::SocketAddr, time::Duration};

use bytes::Bytes;
use futures::StreamExt as _;
use http_body_util::{BodyExt as _, Empty};
use hyper::{Request, StatusCode, header};
use hyper_util::rt::TokioIo;
use ingress_tests::{
    http_support::{AnnotatedIngress, TestBackend, service_yaml},
    process::IngressProcess,
};
use tokio::net::TcpStream;

/// An Ingress `default/NAME`: `host` `path` (Prefix) → Service `service` port 80, with
/// `annotations` (names without the prefix).
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
        path_type: "Prefix",
        service,
        annotations,
        tls_secret: None,
    }
    .yaml()
}

/// `GET PATH` with `Host: HOST`: (status, body; the echo backend's body starts with its
/// name).
async fn get(addr: SocketAddr, host: &str, path: &str) -> (StatusCode, String) {
    let stream = TcpStream::connect(addr).await.expect("connect");
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
    let body = resp.into_body().collect().await.expect("body").to_bytes();
    conn.abort();
    (status, String::from_utf8_lossy(&body).into_owned())
}

/// alias.go: without the annotation `bar` is 404; with `server-alias: bar` both hosts are
/// served (the backend sees the client's `Host`); an alias on one of two Ingresses of a
/// host serves the other's path too. Beyond it, ingress-nginx's rule: an alias naming a
/// host another Ingress defines is ignored, whichever is older.
#[tokio::test]
async fn server_alias_serves_the_hosts_paths() {
    let echo = TestBackend::start("echo").await;
    let other = TestBackend::start("other").await;
    let mut yaml = service_yaml("echo", &[echo.addr]);
    yaml.push_str(&service_yaml("other", &[other.addr]));
    yaml.push_str(&ingress("plain", "foo", "/", "echo", &[]));
    yaml.push_str(&ingress(
        "aliased",
        "foo2",
        "/",
        "echo",
        &[("server-alias", "bar2")],
    ));
    yaml.push_str(&ingress("app-a", "foo3", "/app-a", "echo", &[]));
    yaml.push_str(&ingress(
        "app-b",
        "foo3",
        "/app-b",
        "echo",
        &[("server-alias", "bar3")],
    ));
    yaml.push_str(&ingress(
        "greedy",
        "foo4",
        "/",
        "echo",
        &[("server-alias", "taken4")],
    ));
    yaml.push_str(&ingress("owner", "taken4", "/", "other", &[]));
    let proc = IngressProcess::start(&yaml, &[]).await;

    for (host, path, status, backend) in [
        // "should return status code 200 for host 'foo' and 404 for 'bar'"
        ("foo", "/", StatusCode::OK, "echo"),
        ("bar", "/", StatusCode::NOT_FOUND, ""),
        // "should return status code 200 for host 'foo' and 'bar'"
        ("foo2", "/", StatusCode::OK, "echo"),
        ("bar2", "/", StatusCode::OK, "echo"),
        // "... two ingresses, different path with one alias"
        ("foo3", "/app-a", StatusCode::OK, "echo"),
        ("bar3", "/app-a", StatusCode::OK, "echo"),
        // An alias never takes over a host an Ingress defines.
        ("taken4", "/", StatusCode::OK, "other"),
    ] {
        let (got, body) = get(proc.http, host, path).await;
        assert_eq!(got, status, "{host}{path}\n{}", proc.log());
        assert!(body.starts_with(backend), "{host}{path}: {body}");
        if status == StatusCode::OK {
            // The body lists the request headers the backend saw (`host=` in alias.go).
            assert!(
                body.to_ascii_lowercase().contains(&format!("host: {host}")),
                "{host}: {body}"
            );
        }
    }
}

/// `GET PATH` with `Host: HOST` and `X-Request-ID: ID`: (status, body).
async fn get_with_id(addr: SocketAddr, host: &str, path: &str, id: &str) -> (StatusCode, String) {
    let stream = TcpStream::connect(addr).await.expect("connect");
    let (mut send, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
        .await
        .expect("handshake");
    let conn = tokio::spawn(conn);
    let req = Request::get(path)
        .header(header::HOST, host)
        .header("x-request-id", id)
        .header(header::ACCEPT, "application/json")
        .body(Empty::<Bytes>::new())
        .expect("request");
    let resp = tokio::time::timeout(Duration::from_secs(10), send.send_request(req))
        .await
        .expect("answer within 10 s")
        .expect("response");
    let status = resp.status();
    let body = resp.into_body().collect().await.expect("body").to_bytes();
    conn.abort();
    (status, String::from_utf8_lossy(&body).into_owned())
}

/// default-backend and custom-http-errors. default_backend.go: a route to a Service that
/// does not exist (no endpoints) is answered by the annotation's Service, with the
/// client's request id and `x-code: 503`, `x-ingress-name`, `x-service-name` (the echo
/// backend lists them; its 200 reaches the client unchanged). customhttperrors.go only
/// checks the generated `error_page` lines; from docs/user-guide/custom-errors.md: an
/// upstream answer with a listed status is replaced by the default backend's answer to a
/// request carrying X-Code, X-Format, X-Original-URI, X-Namespace, X-Ingress-Name,
/// X-Service-Name, X-Service-Port, X-Request-ID; without the annotation, the global
/// default backend (`--default-backend-service`) gives it; other statuses pass.
#[tokio::test]
async fn default_backend_and_custom_http_errors() {
    let echo = TestBackend::start("echo").await;
    let pages = TestBackend::start("from-annotation").await;
    let global = TestBackend::start("global").await;
    let mut yaml = service_yaml("echo", &[echo.addr]);
    yaml.push_str(&service_yaml("from-annotation", &[pages.addr]));
    yaml.push_str(&service_yaml("global", &[global.addr]));
    yaml.push_str(&ingress(
        "default-backend",
        "default-backend",
        "/",
        "invalid",
        &[("default-backend", "from-annotation")],
    ));
    yaml.push_str(&ingress(
        "errors-global",
        "customerrors.foo.com",
        "/",
        "echo",
        &[("custom-http-errors", "404,500")],
    ));
    yaml.push_str(&ingress(
        "errors-annotated",
        "annotated.customerrors.foo.com",
        "/",
        "echo",
        &[
            ("custom-http-errors", "503"),
            ("default-backend", "from-annotation"),
        ],
    ));
    let proc = IngressProcess::start(&yaml, &["--default-backend-service", "default/global"]).await;

    let (status, body) = get_with_id(
        proc.http,
        "default-backend",
        "/alma/armud",
        "something-unique",
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{}", proc.log());
    assert!(body.starts_with("from-annotation\n"), "{body}");
    for line in [
        "x-code: 503",
        "x-ingress-name: default-backend",
        "x-service-name: invalid",
        "x-service-port: 80",
        "x-namespace: default",
        "x-request-id: something-unique",
        "x-original-uri: /alma/armud",
        "x-format: application/json",
    ] {
        assert!(body.lines().any(|l| l == line), "{line} in\n{body}");
    }

    // (host, path, status, backend, x-code it saw)
    for (host, path, status, backend, code) in [
        (
            "customerrors.foo.com",
            "/status/404",
            StatusCode::OK,
            "global",
            "404",
        ),
        (
            "customerrors.foo.com",
            "/status/500",
            StatusCode::OK,
            "global",
            "500",
        ),
        (
            "customerrors.foo.com",
            "/status/503",
            StatusCode::SERVICE_UNAVAILABLE,
            "echo",
            "",
        ),
        ("customerrors.foo.com", "/", StatusCode::OK, "echo", ""),
        (
            "annotated.customerrors.foo.com",
            "/status/503",
            StatusCode::OK,
            "from-annotation",
            "503",
        ),
        (
            "annotated.customerrors.foo.com",
            "/status/404",
            StatusCode::NOT_FOUND,
            "echo",
            "",
        ),
    ] {
        let (got, body) = get_with_id(proc.http, host, path, "id-1").await;
        assert_eq!(got, status, "{host}{path}: {body}");
        assert!(
            body.starts_with(&format!("{backend}\n")),
            "{host}{path}: {body}"
        );
        if !code.is_empty() {
            for line in [
                format!("x-code: {code}"),
                format!("x-original-uri: {path}"),
                "x-service-name: echo".to_owned(),
                "x-request-id: id-1".to_owned(),
            ] {
                assert!(body.lines().any(|l| l == line), "{line} in\n{body}");
            }
        }
    }
}

/// service-upstream, from serviceupstream.go (which checks that the backend's address is
/// the Service's ClusterIP): with `true` requests go to ClusterIP:port (here a backend on
/// 127.0.0.1 standing in for kube-proxy), not to the endpoints; `false` keeps the
/// endpoints.
#[tokio::test]
async fn service_upstream_uses_the_cluster_ip() {
    let pod = TestBackend::start_on("pod", SocketAddr::from(([127, 0, 0, 2], 0))).await;
    let cluster = TestBackend::start("cluster-ip").await;
    let port = cluster.addr.port();
    let mut yaml = format!(
        "---\napiVersion: v1\nkind: Service\nmetadata:\n  name: svc\n  namespace: default\nspec:\n  clusterIP: 127.0.0.1\n  ports:\n  - name: http\n    port: {port}\n    targetPort: {pod_port}\n---\napiVersion: discovery.k8s.io/v1\nkind: EndpointSlice\nmetadata:\n  name: svc-1\n  namespace: default\n  labels:\n    kubernetes.io/service-name: svc\naddressType: IPv4\nports:\n  - name: http\n    port: {pod_port}\n    protocol: TCP\nendpoints:\n  - addresses: [\"127.0.0.2\"]\n    conditions: {{ready: true}}\n",
        pod_port = pod.addr.port()
    );
    for (name, value) in [("on", "true"), ("off", "false")] {
        yaml.push_str(
            &ingress(
                name,
                &format!("{name}.serviceupstream"),
                "/",
                "svc",
                &[("service-upstream", value)],
            )
            .replace("number: 80", &format!("number: {port}")),
        );
    }
    let proc = IngressProcess::start(&yaml, &[]).await;
    for (host, backend) in [
        ("on.serviceupstream", "cluster-ip"),
        ("off.serviceupstream", "pod"),
    ] {
        let (status, body) = get(proc.http, host, "/").await;
        assert_eq!(status, StatusCode::OK, "{host}\n{}", proc.log());
        assert!(body.starts_with(&format!("{backend}\n")), "{host}: {body}");
    }
}

/// `POST /` with `Host: HOST` and a chunked body of `n` bytes (two chunks, no length):
/// (status, the echo backend's body).
async fn post_chunked(addr: SocketAddr, host: &str, n: usize) -> (StatusCode, String) {
    let stream = TcpStream::connect(addr).await.expect("connect");
    let (mut send, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
        .await
        .expect("handshake");
    let conn = tokio::spawn(conn);
    let half = Bytes::from(vec![b'x'; n / 2]);
    let chunks = futures::stream::iter([half.clone(), half])
        .map(|b| Ok::<_, std::convert::Infallible>(hyper::body::Frame::data(b)));
    let req = Request::post("/")
        .header(header::HOST, host)
        .body(http_body_util::StreamBody::new(chunks))
        .expect("request");
    let resp = tokio::time::timeout(Duration::from_secs(10), send.send_request(req))
        .await
        .expect("answer within 10 s")
        .expect("response");
    let status = resp.status();
    let body = resp.into_body().collect().await.expect("body").to_bytes();
    conn.abort();
    (status, String::from_utf8_lossy(&body).into_owned())
}

/// client-body-buffer-size. clientbodybuffersize.go only checks the generated
/// `client_body_buffer_size` line; here a body up to the size is read whole before it is
/// forwarded (so it goes upstream with a Content-Length), a longer one streams (chunked),
/// instead of `--client-body-buffer-size` (64k by default).
#[tokio::test]
async fn client_body_buffer_size_decides_which_bodies_are_read_whole() {
    let echo = TestBackend::start("echo").await;
    let mut yaml = service_yaml("echo", &[echo.addr]);
    yaml.push_str(&ingress(
        "small",
        "small.buffer",
        "/",
        "echo",
        &[("client-body-buffer-size", "1k")],
    ));
    yaml.push_str(&ingress(
        "large",
        "large.buffer",
        "/",
        "echo",
        &[("client-body-buffer-size", "16K")],
    ));
    yaml.push_str(&ingress("default", "default.buffer", "/", "echo", &[]));
    let proc = IngressProcess::start(&yaml, &["--client-body-buffer-size", "4096"]).await;
    for (host, whole) in [
        ("small.buffer", false),
        ("large.buffer", true),
        ("default.buffer", false),
    ] {
        let (status, body) = post_chunked(proc.http, host, 10_000).await;
        assert_eq!(status, StatusCode::OK, "{host}\n{}", proc.log());
        let lines: Vec<&str> = body.lines().collect();
        assert_eq!(
            lines.contains(&"content-length: 10000"),
            whole,
            "{host}: {body}"
        );
        assert_eq!(
            lines.contains(&"transfer-encoding: chunked"),
            !whole,
            "{host}: {body}"
        );
    }
}

/// `POST PATH` with `Host: HOST` and `body` (with its length): the status.
async fn post(addr: SocketAddr, host: &str, path: &str, body: &'static str) -> StatusCode {
    let stream = TcpStream::connect(addr).await.expect("connect");
    let (mut send, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
        .await
        .expect("handshake");
    let conn = tokio::spawn(conn);
    let req = Request::post(path)
        .header(header::HOST, host)
        .body(http_body_util::Full::new(Bytes::from_static(
            body.as_bytes(),
        )))
        .expect("request");
    let resp = tokio::time::timeout(Duration::from_secs(10), send.send_request(req))
        .await
        .expect("answer within 10 s")
        .expect("response");
    let status = resp.status();
    let _ = resp.into_body().collect().await;
    conn.abort();
    status
}

/// mirror-target, mirror-request-body, mirror-host. mirror.go only checks the generated
/// `mirror` / `mirror_request_body` / `proxy_pass` lines; from the annotation reference:
/// a copy of each request goes to the target (with the original URI where it ends with
/// `$request_uri`), with the request body unless `mirror-request-body: off` (then with
/// `Content-Length: 0`), with the
/// target's host as `Host` unless `mirror-host` says otherwise; the mirror's answer is
/// ignored. Targets are IP addresses or Services (never an nginx variable other than a
/// final `$request_uri`).
#[tokio::test]
async fn mirror_sends_a_copy_of_each_request() {
    let echo = TestBackend::start("echo").await;
    let mirror = TestBackend::start("mirror").await;
    let mut yaml = service_yaml("echo", &[echo.addr]);
    yaml.push_str(&service_yaml("mirror", &[mirror.addr]));
    let ip_target = format!("http://127.0.0.1:{}/mirror", mirror.addr.port());
    let authority = format!("127.0.0.1:{}", mirror.addr.port());
    yaml.push_str(&ingress(
        "ip",
        "ip.mirror.foo.com",
        "/",
        "echo",
        &[("mirror-target", &ip_target)],
    ));
    yaml.push_str(&ingress(
        "nobody",
        "nobody.mirror.foo.com",
        "/",
        "echo",
        &[
            ("mirror-target", "http://mirror.default$request_uri"),
            ("mirror-request-body", "off"),
            ("mirror-host", "test.env.com"),
        ],
    ));
    yaml.push_str(&ingress(
        "refused",
        "refused.mirror.foo.com",
        "/",
        "echo",
        &[("mirror-target", "https://test.env.com/$request_uri")],
    ));
    let proc = IngressProcess::start(&yaml, &[]).await;

    // (host, path, the copy's URI, its Host, its Content-Length)
    for (host, path, uri, copy_host, length) in [
        (
            "ip.mirror.foo.com",
            "/x?y=1",
            "/mirror",
            authority.as_str(),
            Some("5"),
        ),
        (
            "nobody.mirror.foo.com",
            "/a/b?c=2",
            "/a/b?c=2",
            "test.env.com",
            Some("0"),
        ),
    ] {
        let status = post(proc.http, host, path, "hello").await;
        assert_eq!(status, StatusCode::OK, "{host}\n{}", proc.log());
        let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
        let copy = loop {
            let seen = mirror.seen.lock().expect("seen").clone();
            if let Some(r) = seen.iter().find(|r| r.uri == uri) {
                break r.clone();
            }
            assert!(
                tokio::time::Instant::now() < deadline,
                "no copy of {host}{path} reached the mirror:\n{}",
                proc.log()
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        };
        assert_eq!(copy.method, "POST", "{host}");
        assert_eq!(copy.header("host").as_deref(), Some(copy_host), "{host}");
        assert_eq!(copy.header("content-length").as_deref(), length, "{host}");
    }
    let seen_before = mirror.request_count();
    let status = post(proc.http, "refused.mirror.foo.com", "/", "x").await;
    assert_eq!(
        status,
        StatusCode::OK,
        "an unusable mirror-target leaves the route served"
    );
    assert_eq!(echo.request_count(), 3);
    assert_eq!(
        mirror.request_count(),
        seen_before,
        "an https:// target gets no copies"
    );
}
