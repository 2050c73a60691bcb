//! ingress-nginx's response-header annotations end to end (the real binary in file mode,
//! an echo backend): CORS, transcribed from `test/e2e/annotations/cors.go`, and
//! custom-headers, from `customheaders.go`. Most CORS cases only check the generated
//! `more_set_headers` lines; their behaviour is nginx's: the headers are set on every
//! response to an admitted origin, and an admitted `OPTIONS` is answered 204 (the
//! template's `return 204`).

use std::{net::SocketAddr, time::Duration};

use bytes::Bytes;
use http_body_util::{BodyExt as _, Empty};
use hyper::{HeaderMap, Method, Request, StatusCode, header};
use hyper_util::rt::TokioIo;
use ingress_tests::{
    http_support::{AnnotatedIngress, TestBackend, service_yaml},
    process::{IngressProcess, Source},
};
use tokio::net::TcpStream;

/// An Ingress `default/NAME` for `host`, path `/` → Service `echo`, with `annotations`
/// (names without the prefix).
fn ingress(name: &str, host: &str, annotations: &[(&str, &str)]) -> String {
    AnnotatedIngress {
        name,
        host,
        path: "/",
        path_type: "Prefix",
        service: "echo",
        annotations,
        tls_secret: None,
    }
    .yaml()
}

/// `METHOD /` with `Host: HOST` and `Origin` if given: (status, response headers).
async fn send(
    addr: SocketAddr,
    method: Method,
    host: &str,
    origin: Option<&str>,
) -> (StatusCode, HeaderMap) {
    let stream = TcpStream::connect(addr).await.expect("connect");
    let (mut send, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
        .await
        .expect("handshake");
    let conn = tokio::spawn(conn);
    let mut req = Request::builder()
        .method(method)
        .uri("/")
        .header(header::HOST, host);
    if let Some(o) = origin {
        req = req.header(header::ORIGIN, o);
    }
    let req = req.body(Empty::<Bytes>::new()).expect("request");
    let resp = tokio::time::timeout(Duration::from_secs(10), send.send_request(req))
        .await
        .expect("answer within 10 s")
        .expect("response");
    let (status, headers) = (resp.status(), resp.headers().clone());
    let _ = resp.into_body().collect().await;
    conn.abort();
    (status, headers)
}

/// (case of cors.go, annotations, request Origin, expected Access-Control-Allow-Origin).
type OriginRow = (
    &'static str,
    &'static [(&'static str, &'static str)],
    Option<&'static str>,
    Option<&'static str>,
);

#[tokio::test]
async fn cors_allow_origin_echoes_admitted_origins() {
    const ON: (&str, &str) = ("enable-cors", "true");
    let rows: &[OriginRow] = &[
        (
            "should allow origin for cors",
            &[ON, ("cors-allow-origin", "https://origin.cors.com:8080")],
            Some("https://origin.cors.com:8080"),
            Some("https://origin.cors.com:8080"),
        ),
        (
            "should allow - single origin for multiple cors values",
            &[
                ON,
                (
                    "cors-allow-origin",
                    "https://origin.cors.com:8080, https://origin2.cors.com",
                ),
            ],
            Some("https://origin.cors.com:8080"),
            Some("https://origin.cors.com:8080"),
        ),
        (
            "should not allow - single origin for multiple cors values",
            &[
                ON,
                (
                    "cors-allow-origin",
                    "http://origin2.cors.com, https://origin.com",
                ),
            ],
            Some("http://no.origin.com"),
            None,
        ),
        (
            "should allow correct origins (bad origin)",
            &[
                ON,
                (
                    "cors-allow-origin",
                    "origin.cors.com:8080, https://origin2.cors.com, https://origin.com",
                ),
            ],
            Some("origin.cors.com:8080"),
            None,
        ),
        (
            "should allow correct origins (origin1)",
            &[
                ON,
                (
                    "cors-allow-origin",
                    "origin.cors.com:8080, https://origin2.cors.com, https://origin.com",
                ),
            ],
            Some("https://origin2.cors.com"),
            Some("https://origin2.cors.com"),
        ),
        (
            "should allow correct origins (origin2)",
            &[
                ON,
                (
                    "cors-allow-origin",
                    "origin.cors.com:8080, https://origin2.cors.com, https://origin.com",
                ),
            ],
            Some("https://origin.com"),
            Some("https://origin.com"),
        ),
        (
            "should not break functionality",
            &[ON, ("cors-allow-origin", "*")],
            None,
            Some("*"),
        ),
        (
            "should not break functionality - without `*`",
            &[ON],
            None,
            Some("*"),
        ),
        (
            "should not break functionality with extra domain",
            &[ON, ("cors-allow-origin", "*, foo.bar.com")],
            None,
            Some("*"),
        ),
        (
            "should not match",
            &[ON, ("cors-allow-origin", "https://foo.bar.com")],
            Some("https://fooxbar.com"),
            None,
        ),
        (
            "should allow - single origin with required port",
            &[
                ON,
                (
                    "cors-allow-origin",
                    "http://origin.cors.com:8080, http://origin.com:8080",
                ),
            ],
            Some("http://origin.com:8080"),
            Some("http://origin.com:8080"),
        ),
        (
            "should not allow - single origin with port and origin without port",
            &[
                ON,
                (
                    "cors-allow-origin",
                    "https://origin2.cors.com, http://origin.com",
                ),
            ],
            Some("http://origin.com:8080"),
            None,
        ),
        (
            "should not allow - single origin without port and origin with required port",
            &[
                ON,
                (
                    "cors-allow-origin",
                    "http://origin.cors.com:8080, http://origin.com:8080",
                ),
            ],
            Some("http://origin.com"),
            None,
        ),
        (
            "should allow - matching origin with wildcard origin (2 subdomains)",
            &[
                ON,
                (
                    "cors-allow-origin",
                    "http://*.origin.cors.com, http://*.origin.com:8080",
                ),
            ],
            Some("http://bar-foo.origin.cors.com"),
            Some("http://bar-foo.origin.cors.com"),
        ),
        (
            "should not allow - unmatching origin with wildcard origin (2 subdomains)",
            &[
                ON,
                (
                    "cors-allow-origin",
                    "http://*.origin.cors.com, http://*.origin.com:8080",
                ),
            ],
            Some("http://bar.foo.origin.cors.com"),
            None,
        ),
        (
            "should allow - matching origin+port with wildcard origin",
            &[
                ON,
                (
                    "cors-allow-origin",
                    "http://origin.cors.com:8080, http://*.origin.com:8080",
                ),
            ],
            Some("http://abc.origin.com:8080"),
            Some("http://abc.origin.com:8080"),
        ),
        (
            "should not allow - portless origin with wildcard origin",
            &[
                ON,
                (
                    "cors-allow-origin",
                    "http://origin.cors.com:8080, http://*.origin.com:8080",
                ),
            ],
            Some("http://abc.origin.com"),
            None,
        ),
        (
            "should allow correct origins - missing subdomain",
            &[
                ON,
                (
                    "cors-allow-origin",
                    "http://origin.cors.com:8080, http://*.origin.com:8080",
                ),
            ],
            Some("http://origin.com:8080"),
            None,
        ),
        (
            "should allow - missing origins (should allow all origins)",
            &[ON, ("cors-allow-origin", "      ")],
            Some("test.origin.com"),
            Some("*"),
        ),
        (
            "cors-* without enable-cors does nothing",
            &[("cors-allow-origin", "*")],
            None,
            None,
        ),
    ];
    let echo = TestBackend::start("echo").await;
    let mut yaml = service_yaml("echo", &[echo.addr]);
    for (i, row) in rows.iter().enumerate() {
        yaml.push_str(&ingress(
            &format!("i{i}"),
            &format!("r{i}.cors.foo.com"),
            row.1,
        ));
    }
    let proc = IngressProcess::start(&yaml, &[]).await;
    for (i, (case, _, origin, want)) in rows.iter().enumerate() {
        let host = format!("r{i}.cors.foo.com");
        let (status, headers) = send(proc.http, Method::GET, &host, *origin).await;
        // The client still gets its response; a browser would block it.
        assert_eq!(status, StatusCode::OK, "{case}\n{}", proc.log());
        let got = headers
            .get(header::ACCESS_CONTROL_ALLOW_ORIGIN)
            .map(|v| v.to_str().unwrap());
        assert_eq!(got, *want, "{case}");
        // The other headers come with the origin, or not at all.
        assert_eq!(
            headers.contains_key(header::ACCESS_CONTROL_ALLOW_METHODS),
            want.is_some(),
            "{case}"
        );
    }
    assert_eq!(echo.request_count(), rows.len(), "every GET is proxied");
}

/// cors.go "should enable cors" (the default values, and `OPTIONS` answered 204 without
/// reaching the backend), and the per-annotation cases that check the generated values.
#[tokio::test]
async fn cors_preflight_and_values() {
    let echo = TestBackend::start("echo").await;
    let mut yaml = service_yaml("echo", &[echo.addr]);
    yaml.push_str(&ingress(
        "default",
        "cors.foo.com",
        &[("enable-cors", "true")],
    ));
    yaml.push_str(&ingress(
        "custom",
        "custom.cors.foo.com",
        &[
            ("enable-cors", "true"),
            ("cors-allow-methods", "POST, GET"),
            ("cors-max-age", "200"),
            ("cors-allow-credentials", "false"),
            ("cors-allow-headers", "DNT, User-Agent"),
            (
                "cors-expose-headers",
                "X-CustomResponseHeader, X-CustomSecondHeader",
            ),
            ("cors-allow-origin", "https://origin.cors.com"),
        ],
    ));
    let proc = IngressProcess::start(&yaml, &[]).await;

    let (status, h) = send(proc.http, Method::OPTIONS, "cors.foo.com", None).await;
    assert_eq!(status, StatusCode::NO_CONTENT, "{}", proc.log());
    for (name, value) in [
        (
            "access-control-allow-methods",
            "GET, PUT, POST, DELETE, PATCH, OPTIONS",
        ),
        ("access-control-allow-origin", "*"),
        (
            "access-control-allow-headers",
            "DNT,Keep-Alive,User-Agent,X-Requested-With,If-Modified-Since,Cache-Control,Content-Type,Range,Authorization",
        ),
        ("access-control-max-age", "1728000"),
        ("access-control-allow-credentials", "true"),
    ] {
        assert_eq!(
            h.get(name).map(|v| v.to_str().unwrap()),
            Some(value),
            "{name}"
        );
    }
    assert_eq!(
        echo.request_count(),
        0,
        "a preflight is answered by the proxy"
    );
    let (status, h) = send(proc.http, Method::GET, "cors.foo.com", None).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(h["access-control-allow-origin"], "*");
    assert_eq!(echo.request_count(), 1);

    let origin = Some("https://origin.cors.com");
    let (status, h) = send(proc.http, Method::OPTIONS, "custom.cors.foo.com", origin).await;
    assert_eq!(status, StatusCode::NO_CONTENT);
    assert_eq!(h["access-control-allow-methods"], "POST, GET");
    assert_eq!(h["access-control-max-age"], "200");
    assert_eq!(h["access-control-allow-headers"], "DNT, User-Agent");
    assert_eq!(
        h["access-control-expose-headers"],
        "X-CustomResponseHeader, X-CustomSecondHeader"
    );
    assert_eq!(h["access-control-allow-origin"], "https://origin.cors.com");
    assert!(!h.contains_key("access-control-allow-credentials"));
    // An OPTIONS from an origin not admitted is no preflight here: it is proxied.
    let (status, h) = send(
        proc.http,
        Method::OPTIONS,
        "custom.cors.foo.com",
        Some("https://other.com"),
    )
    .await;
    assert_eq!(status, StatusCode::OK);
    assert!(!h.contains_key("access-control-allow-origin"));
    assert_eq!(echo.request_count(), 2);
}

/// A ConfigMap `default/NAME` with `data`.
fn config_map(name: &str, data: &[(&str, &str)]) -> String {
    let mut y = format!(
        "---\napiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: {name}\n  namespace: default\ndata:\n"
    );
    for (k, v) in data {
        y.push_str(&format!("  {k}: {v:?}\n"));
    }
    if data.is_empty() {
        y.push_str("  {}\n");
    }
    y
}

/// `GET /` with `Host: HOST` until `done(status, headers)`, for at most 10 s; the last
/// answer.
async fn get_until(
    addr: SocketAddr,
    host: &str,
    done: impl Fn(StatusCode, &HeaderMap) -> bool,
) -> (StatusCode, HeaderMap) {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    loop {
        let (status, headers) = send(addr, Method::GET, host, None).await;
        if done(status, &headers) || tokio::time::Instant::now() > deadline {
            return (status, headers);
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// custom-headers, transcribed from customheaders.go: no annotation is a plain 200; a
/// ConfigMap that does not exist is 503; with the names allowed by
/// `--global-allowed-response-headers`, the ConfigMap's data are set on the responses,
/// values as written (`$remote_addr` is not expanded); adding the annotation to a served
/// Ingress takes effect. Beyond it: a name not allowed is 503, and a change to the
/// ConfigMap is applied to the Ingress that reads it.
#[tokio::test]
async fn custom_headers_set_the_config_maps_headers() {
    let echo = TestBackend::start("echo").await;
    let dir = std::env::temp_dir().join(format!("xit-custom-headers-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).expect("manifest dir");
    let hdr = [
        ("My-Custom-Header", "42"),
        ("My-Custom-Header-Dollar", "$remote_addr"),
    ];
    let objects = |custom: &str, data: &[(&str, &str)]| {
        let mut y = service_yaml("echo", &[echo.addr]);
        y.push_str(&config_map("custom-headers", data));
        y.push_str(&config_map("not-allowed", &[("X-Powered-By", "me")]));
        y.push_str(&ingress("plain", "plain.custom-headers", &[]));
        y.push_str(&ingress(
            "missing",
            "missing.custom-headers",
            &[("custom-headers", "default/nope")],
        ));
        y.push_str(&ingress(
            "refused",
            "refused.custom-headers",
            &[("custom-headers", "default/not-allowed")],
        ));
        let annotations: &[(&str, &str)] = if custom.is_empty() {
            &[]
        } else {
            &[("custom-headers", custom)]
        };
        y.push_str(&ingress("custom", "custom-headers", annotations));
        y
    };
    let write = |yaml: String| std::fs::write(dir.join("objects.yaml"), yaml).expect("write");
    write(objects("", &hdr));
    let proc = IngressProcess::start_with(
        Source::Manifests(&dir),
        &[
            "--global-allowed-response-headers",
            "My-Custom-Header,My-Custom-Header-Dollar",
        ],
        Duration::from_secs(20),
    )
    .await
    .expect("xdp-ingress starts");

    let (status, h) = send(proc.http, Method::GET, "plain.custom-headers", None).await;
    assert_eq!(status, StatusCode::OK, "{}", proc.log());
    assert!(!h.contains_key("my-custom-header"));
    let (status, _) = send(proc.http, Method::GET, "missing.custom-headers", None).await;
    assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE);
    let (status, _) = send(proc.http, Method::GET, "refused.custom-headers", None).await;
    assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE);
    let (status, h) = send(proc.http, Method::GET, "custom-headers", None).await;
    assert_eq!(status, StatusCode::OK);
    assert!(!h.contains_key("my-custom-header"));

    // The annotation is added to the served Ingress.
    write(objects("default/custom-headers", &hdr));
    let (status, h) = get_until(proc.http, "custom-headers", |_, h| {
        h.contains_key("my-custom-header")
    })
    .await;
    assert_eq!(status, StatusCode::OK, "{}", proc.log());
    assert_eq!(h["my-custom-header"], "42");
    assert_eq!(h["my-custom-header-dollar"], "$remote_addr");

    // The ConfigMap changes: the Ingress reading it follows.
    write(objects("custom-headers", &[("My-Custom-Header", "43")]));
    let (status, h) = get_until(proc.http, "custom-headers", |_, h| {
        h.get("my-custom-header").is_some_and(|v| v == "43")
    })
    .await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(h["my-custom-header"], "43", "{}", proc.log());
    assert!(!h.contains_key("my-custom-header-dollar"));
    let _ = std::fs::remove_dir_all(&dir);
}
