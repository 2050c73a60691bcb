//! `deploy/monitoring/` checked by a real Prometheus (Debian's `prometheus` package): the
//! rules pass `promtool check rules`; Prometheus runs in the node namespace of the seed
//! scenario, scraping the real binary over that namespace's loopback while HTTP (200s and
//! 503s) and L4 (redis through the kernel path) traffic flows, with a Problem present; then
//! every PromQL expression of the Grafana dashboard and of the alert rules must parse and
//! return data, and the alerts this scenario calls for must be pending or firing.

use std::{
    fs,
    path::{Path, PathBuf},
    process::{Command, Stdio},
    sync::{
        Arc,
        atomic::{AtomicBool, Ordering},
    },
    time::{Duration, Instant},
};

use ingress_tests::{
    netns::KillOnDrop,
    seed::{DASHBOARD_HOST, Seed, Source},
    topology::Offloads,
};
use serde_json::Value;

/// Prometheus's port inside the node namespace (a namespace of this test's own).
const PROMETHEUS: &str = "127.0.0.1:9090";

fn monitoring_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../deploy/monitoring")
}

/// A directory under the temp dir, removed on drop.
struct TempDir(PathBuf);

impl TempDir {
    fn new(tag: &str) -> Self {
        let p = std::env::temp_dir().join(format!("xit-{tag}-{}", std::process::id()));
        let _ = fs::remove_dir_all(&p);
        fs::create_dir_all(&p).expect("create temp dir");
        Self(p)
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = fs::remove_dir_all(&self.0);
    }
}

/// The PrometheusRule's `spec` as a plain rules file (what the operator hands Prometheus).
fn rules_file(dir: &Path) -> PathBuf {
    let text = fs::read_to_string(monitoring_dir().join("prometheusrule.yaml")).expect("read rule");
    let rule: serde_yaml::Value = serde_yaml::from_str(&text).expect("PrometheusRule is YAML");
    assert_eq!(rule["kind"], "PrometheusRule");
    let path = dir.join("rules.yaml");
    fs::write(&path, serde_yaml::to_string(&rule["spec"]).unwrap()).expect("write rules");
    path
}

/// Every alert rule's (name, expression).
fn alert_exprs(rules: &Path) -> Vec<(String, String)> {
    let v: serde_yaml::Value = serde_yaml::from_str(&fs::read_to_string(rules).unwrap()).unwrap();
    v["groups"]
        .as_sequence()
        .expect("groups")
        .iter()
        .flat_map(|g| g["rules"].as_sequence().expect("rules").clone())
        .map(|r| {
            (
                r["alert"].as_str().expect("alert name").to_owned(),
                r["expr"].as_str().expect("expr").trim().to_owned(),
            )
        })
        .collect()
}

/// Every panel query of the dashboard, with Grafana's variables as Grafana would fill
/// them (`$instance` = all, `$__rate_interval` = a window several scrapes wide).
fn dashboard_exprs() -> Vec<(String, String)> {
    let text = fs::read_to_string(monitoring_dir().join("dashboard.json")).expect("read dashboard");
    let d: Value = serde_json::from_str(&text).expect("dashboard.json is JSON");
    let mut out = Vec::new();
    for p in d["panels"].as_array().expect("panels") {
        for t in p["targets"].as_array().into_iter().flatten() {
            let expr = t["expr"]
                .as_str()
                .expect("expr")
                .replace("$__rate_interval", "30s")
                .replace("$instance", ".*");
            assert!(!expr.contains('$'), "unknown variable in {expr}");
            out.push((p["title"].as_str().unwrap_or("?").to_owned(), expr));
        }
    }
    out
}

/// An alert expression without its final threshold (`> 0.8`, `== 0`): the signal, which
/// must have data even when the alert does not fire.
fn signal(expr: &str) -> String {
    let e = expr.trim_end();
    for op in ["==", ">=", "<=", "!=", ">", "<"] {
        if let Some((left, right)) = e.rsplit_once(op)
            && right.trim().parse::<f64>().is_ok()
        {
            return left.trim().to_owned();
        }
    }
    e.to_owned()
}

#[test]
fn signal_drops_the_threshold_only() {
    for (expr, want) in [
        ("a > 0", "a"),
        ("max by (i) (x) == 0", "max by (i) (x)"),
        (
            "sum(rate(x[5m])) / sum(rate(y[5m]))\n  > 0.05",
            "sum(rate(x[5m])) / sum(rate(y[5m]))",
        ),
        ("x{a=\"b\"}", "x{a=\"b\"}"),
    ] {
        assert_eq!(signal(expr), want, "{expr}");
    }
}

/// GETs a Prometheus API path inside the node namespace (curl; loopback only).
fn api(seed: &Seed, path: &str, query: Option<&str>) -> Value {
    let mut c = seed.topo.node.command("curl");
    c.args([
        "-s",
        "-m",
        "10",
        "-G",
        &format!("http://{PROMETHEUS}{path}"),
    ]);
    if let Some(q) = query {
        c.args(["--data-urlencode", &format!("query={q}")]);
    }
    let out = c.output().expect("run curl");
    serde_json::from_slice(&out.stdout).unwrap_or(Value::Null)
}

/// Polls `query` until it succeeds with a non-empty result (or the deadline passes);
/// returns the last answer.
fn until_data(seed: &Seed, query: &str, deadline: Instant) -> Value {
    loop {
        let v = api(seed, "/api/v1/query", Some(query));
        let has_data = v["status"] == "success"
            && v["data"]["result"]
                .as_array()
                .is_some_and(|r| !r.is_empty());
        if has_data || Instant::now() > deadline {
            return v;
        }
        std::thread::sleep(Duration::from_millis(500));
    }
}

/// Keeps traffic flowing from the client namespace until dropped: the dashboard (200), a
/// Service without endpoints (503), a refusing endpoint (502), an unknown host (404) and
/// redis through the kernel path.
struct Traffic {
    stop: Arc<AtomicBool>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Traffic {
    fn start(seed: &Seed) -> Self {
        let stop = Arc::new(AtomicBool::new(false));
        let client = seed.topo.client.name().to_owned();
        let flag = Arc::clone(&stop);
        let node = ingress_tests::topology::NODE.to_string();
        let thread = std::thread::spawn(move || {
            while !flag.load(Ordering::Relaxed) {
                for host in [DASHBOARD_HOST, "idle.test", "refused.test", "unknown.test"] {
                    let _ = Command::new("ip")
                        .args(["netns", "exec", &client, "curl", "-s", "-o", "/dev/null"])
                        .args(["-m", "5", "-H", &format!("Host: {host}")])
                        .arg(format!("http://{node}/"))
                        .status();
                }
                let _ = Command::new("ip")
                    .args(["netns", "exec", &client, "timeout", "5", "redis-cli"])
                    .args(["-h", &node, "-p", "9000", "ping"])
                    .stdout(Stdio::null())
                    .status();
                std::thread::sleep(Duration::from_millis(200));
            }
        });
        Self {
            stop,
            thread: Some(thread),
        }
    }
}

impl Drop for Traffic {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// A Service without endpoints behind `idle.test` (503s), one whose endpoint refuses
/// connections behind `refused.test` (connect errors, 502s), and an Ingress naming a
/// Service that does not exist (a Problem).
fn extra() -> String {
    let refused = ingress_tests::topology::backend_addr(1);
    format!(
        r#"apiVersion: v1
kind: Service
metadata: {{name: idle, namespace: default}}
spec:
  ports: [{{name: http, port: 80, targetPort: 8080}}]
---
apiVersion: networking.k8s.io/v1
kind: Ingress
metadata: {{name: idle, namespace: default}}
spec:
  ingressClassName: xdp
  rules:
    - host: idle.test
      http:
        paths:
          - {{path: /, pathType: Prefix, backend: {{service: {{name: idle, port: {{number: 80}}}}}}}}
---
apiVersion: networking.k8s.io/v1
kind: Ingress
metadata: {{name: broken, namespace: default}}
spec:
  ingressClassName: xdp
  rules:
    - host: broken.test
      http:
        paths:
          - {{path: /, pathType: Prefix, backend: {{service: {{name: missing, port: {{number: 80}}}}}}}}
---
apiVersion: v1
kind: Service
metadata: {{name: refused, namespace: default}}
spec:
  ports: [{{name: http, port: 80, targetPort: 9999}}]
---
apiVersion: discovery.k8s.io/v1
kind: EndpointSlice
metadata:
  name: refused
  namespace: default
  labels: {{kubernetes.io/service-name: refused}}
addressType: IPv4
endpoints:
  - addresses: ["{refused}"]
    conditions: {{ready: true}}
ports:
  - {{name: http, port: 9999, protocol: TCP}}
---
apiVersion: networking.k8s.io/v1
kind: Ingress
metadata: {{name: refused, namespace: default}}
spec:
  ingressClassName: xdp
  rules:
    - host: refused.test
      http:
        paths:
          - {{path: /, pathType: Prefix, backend: {{service: {{name: refused, port: {{number: 80}}}}}}}}
"#
    )
}

#[test]
fn promtool_accepts_the_rules() {
    let dir = TempDir::new("promtool");
    let rules = rules_file(&dir.0);
    let out = Command::new("promtool")
        .arg("check")
        .arg("rules")
        .arg(&rules)
        .output()
        .expect("run promtool (apt-get install prometheus; cargo xtask setup does)");
    assert!(
        out.status.success(),
        "promtool check rules:\n{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    let n = alert_exprs(&rules).len();
    assert!(
        String::from_utf8_lossy(&out.stdout).contains(&format!("{n} rules found")),
        "{}",
        String::from_utf8_lossy(&out.stdout)
    );
}

#[test]
fn every_dashboard_and_alert_query_returns_data_from_a_real_prometheus() {
    let mut seed = Seed::new(Offloads::Default, Source::Files);
    fs::write(seed.manifest("extra.yaml"), extra()).expect("write extra manifests");
    seed.start_controller("tc");

    let dir = TempDir::new("prometheus");
    let rules = rules_file(&dir.0);
    let config = dir.0.join("prometheus.yml");
    fs::write(
        &config,
        format!(
            "global: {{scrape_interval: 1s, evaluation_interval: 1s}}\n\
             rule_files: [{}]\n\
             scrape_configs:\n  - job_name: xdp-ingress\n    static_configs:\n      - targets: ['127.0.0.1:10254']\n",
            rules.display()
        ),
    )
    .expect("write prometheus.yml");
    let log = fs::File::create(dir.0.join("prometheus.log")).expect("log");
    let prometheus = seed
        .topo
        .node
        .command("prometheus")
        .arg(format!("--config.file={}", config.display()))
        .arg(format!(
            "--storage.tsdb.path={}",
            dir.0.join("data").display()
        ))
        .arg(format!("--web.listen-address={PROMETHEUS}"))
        .stdout(Stdio::null())
        .stderr(log)
        .spawn()
        .expect("start prometheus (apt-get install prometheus; cargo xtask setup does)");
    let _prometheus = KillOnDrop(prometheus);
    let traffic = Traffic::start(&seed);

    let deadline = Instant::now() + Duration::from_secs(90);
    let prom_log = || fs::read_to_string(dir.0.join("prometheus.log")).unwrap_or_default();
    let up = until_data(&seed, "up{job=\"xdp-ingress\"} == 1", deadline);
    assert_eq!(
        up["status"],
        "success",
        "Prometheus API: {up}\n{}",
        prom_log()
    );
    assert!(
        up["data"]["result"]
            .as_array()
            .is_some_and(|r| !r.is_empty()),
        "the binary was never scraped up: {up}\n{}",
        prom_log()
    );

    let mut failures = Vec::new();
    let mut queries: Vec<(String, String)> = dashboard_exprs()
        .into_iter()
        .map(|(panel, e)| (format!("dashboard panel {panel:?}"), e))
        .collect();
    for (alert, expr) in alert_exprs(&rules) {
        // The whole rule must parse; its signal (without the threshold) must have data.
        let v = api(&seed, "/api/v1/query", Some(&expr));
        if v["status"] != "success" {
            failures.push(format!("alert {alert}: {expr}\n  -> {v}"));
        }
        queries.push((format!("alert {alert} (signal)"), signal(&expr)));
    }
    for (what, expr) in &queries {
        let v = until_data(&seed, expr, deadline);
        let empty = v["data"]["result"].as_array().is_none_or(Vec::is_empty);
        if v["status"] != "success" || empty {
            failures.push(format!("{what}: {expr}\n  -> {v}"));
        }
    }

    // The rules are loaded and healthy, and those this scenario calls for are active.
    let loaded = api(&seed, "/api/v1/rules", None);
    for group in loaded["data"]["groups"].as_array().into_iter().flatten() {
        for r in group["rules"].as_array().into_iter().flatten() {
            if r["health"] != "ok" && r["health"] != "unknown" {
                failures.push(format!(
                    "rule {} is {}: {}",
                    r["name"], r["health"], r["lastError"]
                ));
            }
        }
    }
    for alert in ["XdpIngressProblems", "XdpIngressUpstreamErrors"] {
        let v = until_data(&seed, &format!("ALERTS{{alertname=\"{alert}\"}}"), deadline);
        if v["data"]["result"].as_array().is_none_or(Vec::is_empty) {
            failures.push(format!("alert {alert} is neither pending nor firing: {v}"));
        }
    }
    drop(traffic);
    assert!(
        failures.is_empty(),
        "{} failing:\n{}\ncontroller log:\n{}",
        failures.len(),
        failures.join("\n"),
        seed.log()
    );
}
