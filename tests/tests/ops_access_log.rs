//! The access log through the real binary: `--access-log FILE` in both formats, one line
//! per request with the fields an operator greps for (a forwarded 200 with its upstream and
//! request id, a 404 from the default backend, a 503 for a Service without endpoints, a
//! streamed body's full byte count), and the dropped-lines counter at zero.

use std::{
    path::{Path, PathBuf},
    time::{Duration, Instant},
};

use ingress_tests::{
    http_support::{TestBackend, get, http_client, ingress_yaml, service_yaml},
    process::IngressProcess,
};

/// A fresh file path under the temp dir, removed on drop.
struct TempFile(PathBuf);

impl TempFile {
    fn new(tag: &str) -> Self {
        let p = std::env::temp_dir().join(format!(
            "xit-access-{tag}-{}-{}.log",
            std::process::id(),
            Instant::now().elapsed().as_nanos()
        ));
        let _ = std::fs::remove_file(&p);
        Self(p)
    }
}

impl Drop for TempFile {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.0);
    }
}

/// Waits until `path` holds at least `n` lines, and returns them.
async fn lines(path: &Path, n: usize) -> Vec<String> {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let text = std::fs::read_to_string(path).unwrap_or_default();
        let lines: Vec<String> = text.lines().map(str::to_owned).collect();
        if lines.len() >= n {
            return lines;
        }
        assert!(
            Instant::now() < deadline,
            "{} has {} of {n} lines:\n{text}",
            path.display(),
            lines.len()
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

fn manifests(backend: &TestBackend) -> String {
    [
        service_yaml("web", &[backend.addr]),
        service_yaml("idle", &[]),
        ingress_yaml(
            "web",
            Some("web.test"),
            &[("/", "Prefix", "web"), ("/idle", "Prefix", "idle")],
        ),
    ]
    .concat()
}

/// Sends the four requests both formats are checked with; returns the request id the
/// backend saw for the first.
async fn traffic(ingress: &IngressProcess) -> String {
    let client = http_client();
    let ok = get(&client, ingress.http, "web.test", "/hello?x=1").await;
    assert_eq!(ok.status, 200, "{}", ok.body);
    let id = ok
        .seen_header("x-request-id")
        .expect("the backend saw a request id")
        .to_owned();
    let streamed = get(&client, ingress.http, "web.test", "/stream/3/0").await;
    assert_eq!(streamed.status, 200);
    assert_eq!(streamed.body.len(), 24, "{}", streamed.body);
    let missing = get(&client, ingress.http, "other.test", "/nothing").await;
    assert_eq!(missing.status, 404);
    let idle = get(&client, ingress.http, "web.test", "/idle").await;
    assert_eq!(idle.status, 503);
    id
}

#[tokio::test]
async fn json_lines_name_route_service_upstream_and_request_id() {
    let backend = TestBackend::start("web").await;
    let log = TempFile::new("json");
    let path = log.0.to_str().expect("utf-8 temp path");
    let ingress = IngressProcess::start(
        &manifests(&backend),
        &["--access-log", path, "--access-log-format", "json"],
    )
    .await;
    let id = traffic(&ingress).await;
    let lines = lines(&log.0, 4).await;
    let parsed: Vec<serde_json::Value> = lines
        .iter()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("{e}: {l}")))
        .collect();
    let find = |target: &str| {
        parsed
            .iter()
            .find(|v| v["target"] == target)
            .unwrap_or_else(|| panic!("no line for {target}: {lines:#?}"))
    };

    let ok = find("/hello?x=1");
    assert_eq!(ok["method"], "GET");
    assert_eq!(ok["version"], "HTTP/1.1");
    assert_eq!(ok["host"], "web.test");
    assert_eq!(ok["status"], 200);
    assert_eq!(ok["upstream_status"], 200);
    assert_eq!(ok["upstream_addr"], backend.addr.to_string());
    assert_eq!(ok["request_id"], id.as_str());
    assert_eq!(ok["route_kind"], "Ingress");
    assert_eq!(ok["route"], "default/web");
    assert_eq!(ok["service"], "default/web:80");
    assert!(
        ok["client"].as_str().unwrap().starts_with("127.0.0.1:"),
        "{ok}"
    );
    assert!(ok["bytes_sent"].as_u64().unwrap() > 0, "{ok}");
    let (duration, upstream) = (
        ok["duration"].as_f64().unwrap(),
        ok["upstream_time"].as_f64().unwrap(),
    );
    assert!(upstream <= duration, "{ok}");
    assert!(ok["time"].as_str().unwrap().ends_with('Z'), "{ok}");

    // A streamed (chunked) body: the bytes are counted as they go out.
    assert_eq!(find("/stream/3/0")["bytes_sent"], 24);

    let missing = find("/nothing");
    assert_eq!(missing["status"], 404);
    assert_eq!(missing["host"], "other.test");
    for absent in [
        "upstream_addr",
        "upstream_status",
        "upstream_time",
        "route",
        "service",
    ] {
        assert!(missing[absent].is_null(), "{absent}: {missing}");
    }

    let idle = find("/idle");
    assert_eq!(idle["status"], 503);
    assert_eq!(idle["service"], "default/idle:80");
    for absent in ["upstream_addr", "upstream_status", "upstream_time"] {
        assert!(idle[absent].is_null(), "{absent}: {idle}");
    }

    let metrics = ingress.metrics().await;
    assert_eq!(
        metrics.sum("xdp_ingress_access_log_dropped_lines_total", &[]),
        0.0,
        "{}",
        metrics.family("xdp_ingress_access_log_dropped_lines")
    );
}

#[tokio::test]
async fn text_lines_are_space_separated_with_a_quoted_request_line() {
    let backend = TestBackend::start("web").await;
    let log = TempFile::new("text");
    let path = log.0.to_str().expect("utf-8 temp path");
    let ingress = IngressProcess::start(
        &manifests(&backend),
        &["--access-log", path, "--access-log-format", "text"],
    )
    .await;
    let id = traffic(&ingress).await;
    let lines = lines(&log.0, 4).await;
    let find = |request: &str| {
        lines
            .iter()
            .find(|l| l.contains(request))
            .unwrap_or_else(|| panic!("no line with {request}: {lines:#?}"))
    };
    let ok = find("\"GET /hello?x=1 HTTP/1.1\"");
    for field in [
        "host=web.test".to_owned(),
        "status=200".to_owned(),
        format!("upstream={}", backend.addr),
        "upstream_status=200".to_owned(),
        format!("request_id={id}"),
        "route=Ingress/default/web".to_owned(),
        "service=default/web:80".to_owned(),
    ] {
        assert!(ok.split(' ').any(|w| w == field), "{field} in {ok}");
    }
    let missing = find("\"GET /nothing HTTP/1.1\"");
    for field in ["status=404", "upstream=-", "route=-", "service=-"] {
        assert!(
            missing.split(' ').any(|w| w == field),
            "{field} in {missing}"
        );
    }
}
