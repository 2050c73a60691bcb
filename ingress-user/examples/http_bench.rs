//! L7 benchmark: the xdp-ingress router against nginx `proxy_pass`, to the same backend,
//! side by side in one run. Report only; never a test.
//!
//! ```text
//! cargo run --release -p ingress-user --example http_bench -- [SECONDS] [CONNS...]
//! ```
//! (default: 10 s at 16 and 256 connections). Needs `nginx` and `wrk` on PATH.
//!
//! Topology, all on 127.0.0.1: one nginx (2 workers) serves the backend (`return 200`, a
//! 13-byte body); a second nginx (2 workers) is the `proxy_pass` peer with upstream
//! keep-alive. The router runs in this process on a 2-worker tokio runtime, routing an
//! Ingress for `bench.test` to the same backend. wrk (2 threads) sends `GET /` with
//! `Host: bench.test`. Besides wrk's numbers, the CPU time each proxy used per request is
//! reported (from /proc), which stays meaningful on a busy machine.

use std::{
    io::Write as _,
    net::TcpListener as StdListener,
    process::{Child, Command, Stdio},
    sync::Arc,
    time::Duration,
};

use anyhow::{Context as _, bail};
use serde::Deserialize as _;
use tokio::sync::watch;
use xdp_ingress::{
    config::{self, Store},
    http::{self, Limits, Metrics},
};

fn main() -> anyhow::Result<()> {
    let mut args = std::env::args().skip(1);
    let secs: u64 = args
        .next()
        .map_or(Ok(10), |s| s.parse())
        .context("SECONDS")?;
    let conns: Vec<u32> = args
        .map(|s| s.parse())
        .collect::<Result<_, _>>()
        .context("CONNS")?;
    let conns = if conns.is_empty() {
        vec![16, 256]
    } else {
        conns
    };

    let backend_port = free_port()?;
    let nginx_proxy_port = free_port()?;
    let dir = std::env::temp_dir().join(format!("xdp-ingress-bench-{}", std::process::id()));
    let backend = start_nginx(&dir.join("backend"), &backend_servers(backend_port))?;
    let proxy = start_nginx(
        &dir.join("proxy"),
        &proxy_servers(backend_port, nginx_proxy_port),
    )?;
    let proxy_pid = proxy.id();

    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()?;
    let result = rt.block_on(async {
        let router_port = start_router(backend_port).await?;
        wait_ready(backend_port).await?;
        wait_ready(nginx_proxy_port).await?;
        let mut rows = Vec::new();
        for &c in &conns {
            for (name, port, pid) in [
                ("direct backend", backend_port, None),
                ("nginx proxy_pass", nginx_proxy_port, Some(proxy_pid)),
                ("xdp-ingress", router_port, Some(std::process::id())),
            ] {
                let before = pid.map(cpu_secs);
                let r = tokio::task::spawn_blocking(move || wrk(port, c, secs)).await??;
                let cpu = pid.zip(before).map(|(p, b)| cpu_secs(p) - b);
                rows.push((c, name, r, cpu));
            }
        }
        anyhow::Ok(rows)
    });
    stop_nginx(proxy);
    stop_nginx(backend);
    let rows = result?;
    println!(
        "\n{:>6}  {:<18} {:>10} {:>10} {:>10} {:>14}",
        "conns", "target", "req/s", "p50", "p99", "proxy CPU/req"
    );
    for (c, name, r, cpu) in rows {
        let per_req = cpu.map_or_else(
            || "-".to_owned(),
            |s| format!("{:.1} us", s * 1e6 / (r.rps * secs as f64)),
        );
        println!(
            "{c:>6}  {name:<18} {:>10.0} {:>10} {:>10} {per_req:>14}",
            r.rps, r.p50, r.p99
        );
    }
    Ok(())
}

fn free_port() -> anyhow::Result<u16> {
    Ok(StdListener::bind("127.0.0.1:0")?.local_addr()?.port())
}

/// Starts an nginx in `dir` with `server` blocks (backend or proxy); one master, 2 workers.
fn start_nginx(dir: &std::path::Path, servers: &str) -> anyhow::Result<Child> {
    std::fs::create_dir_all(dir)?;
    let conf = dir.join("nginx.conf");
    let mut f = std::fs::File::create(&conf)?;
    write!(
        f,
        r#"daemon off;
worker_processes 2;
pid {dir}/nginx.pid;
error_log {dir}/error.log warn;
events {{ worker_connections 4096; }}
http {{
    access_log off;
    client_body_temp_path {dir}/body;
    proxy_temp_path {dir}/proxy;
    fastcgi_temp_path {dir}/fastcgi;
    uwsgi_temp_path {dir}/uwsgi;
    scgi_temp_path {dir}/scgi;
    keepalive_requests 1000000;
{servers}
}}
"#,
        dir = dir.display()
    )?;
    Command::new("nginx")
        .args([
            "-c",
            &conf.display().to_string(),
            "-p",
            &dir.display().to_string(),
        ])
        .stdout(Stdio::null())
        .spawn()
        .context("starting nginx (is it installed?)")
}

fn backend_servers(backend: u16) -> String {
    format!(
        r#"    server {{
        listen 127.0.0.1:{backend};
        location / {{ return 200 "hello, world\n"; }}
    }}"#
    )
}

fn proxy_servers(backend: u16, proxy: u16) -> String {
    format!(
        r#"    upstream backend {{ server 127.0.0.1:{backend}; keepalive 512; }}
    server {{
        listen 127.0.0.1:{proxy};
        location / {{
            proxy_pass http://backend;
            proxy_http_version 1.1;
            proxy_set_header Connection "";
            proxy_set_header Host $host;
            proxy_set_header X-Forwarded-For $proxy_add_x_forwarded_for;
            proxy_set_header X-Real-IP $remote_addr;
        }}
    }}"#
    )
}

/// Stops nginx gracefully (SIGQUIT), so its workers exit with the master.
fn stop_nginx(mut child: Child) {
    let pid = i32::try_from(child.id()).unwrap_or(0);
    if pid > 0 {
        // SAFETY: kill(2) on our own child's pid.
        unsafe { libc::kill(pid, libc::SIGQUIT) };
    }
    let _ = child.wait();
}

/// CPU seconds (user + system) used so far by `pid` and its direct children.
fn cpu_secs(pid: u32) -> f64 {
    let ticks = |p: &str| -> u64 {
        std::fs::read_to_string(format!("/proc/{p}/stat"))
            .ok()
            .and_then(|s| {
                let rest = s.rsplit_once(')')?.1.split_whitespace().collect::<Vec<_>>();
                Some(rest.get(11)?.parse::<u64>().ok()? + rest.get(12)?.parse::<u64>().ok()?)
            })
            .unwrap_or(0)
    };
    let mut total = ticks(&pid.to_string());
    let children =
        std::fs::read_to_string(format!("/proc/{pid}/task/{pid}/children")).unwrap_or_default();
    for c in children.split_whitespace() {
        total += ticks(c);
    }
    // SAFETY: sysconf has no preconditions.
    let hz = unsafe { libc::sysconf(libc::_SC_CLK_TCK) }.max(1);
    total as f64 / hz as f64
}

async fn start_router(backend: u16) -> anyhow::Result<u16> {
    let yaml = format!(
        r#"
apiVersion: v1
kind: Service
metadata: {{name: backend, namespace: default}}
spec:
  ports: [{{name: http, port: 80, targetPort: {backend}}}]
---
apiVersion: discovery.k8s.io/v1
kind: EndpointSlice
metadata:
  name: backend-1
  namespace: default
  labels: {{kubernetes.io/service-name: backend}}
addressType: IPv4
ports: [{{name: http, port: {backend}, protocol: TCP}}]
endpoints: [{{addresses: ["127.0.0.1"], conditions: {{ready: true}}}}]
---
apiVersion: networking.k8s.io/v1
kind: Ingress
metadata: {{name: bench, namespace: default}}
spec:
  ingressClassName: xdp
  rules:
  - host: bench.test
    http:
      paths:
      - path: /
        pathType: Prefix
        backend: {{service: {{name: backend, port: {{number: 80}}}}}}
"#
    );
    let mut store = Store::default();
    for doc in serde_yaml::Deserializer::from_str(&yaml) {
        let v = serde_yaml::Value::deserialize(doc)?;
        match v["kind"].as_str() {
            Some("Service") => store.services.push(serde_yaml::from_value(v)?),
            Some("EndpointSlice") => store.endpoint_slices.push(serde_yaml::from_value(v)?),
            Some("Ingress") => store.ingresses.push(serde_yaml::from_value(v)?),
            other => bail!("unexpected kind {other:?}"),
        }
    }
    let snapshot = config::build(&store, &config::Options::default());
    if !snapshot.problems.is_empty() {
        bail!("bench fixture has problems: {:?}", snapshot.problems);
    }
    let (_tx, rx) = watch::channel(Arc::new(snapshot));
    let opts = http::Options {
        http: "127.0.0.1:0".parse()?,
        https: None,
        ssl_redirect: false,
        balance: http::Balance::RoundRobin,
        limits: Limits::default(),
    };
    let server = http::Server::bind(opts, rx, Arc::new(Metrics::default())).await?;
    let port = server.http_addr()?.port();
    tokio::spawn(async move {
        let _keep = _tx;
        server.run(std::future::pending()).await;
    });
    Ok(port)
}

async fn wait_ready(port: u16) -> anyhow::Result<()> {
    for _ in 0..100 {
        if tokio::net::TcpStream::connect(("127.0.0.1", port))
            .await
            .is_ok()
        {
            return Ok(());
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    bail!("nothing listens on 127.0.0.1:{port}")
}

struct WrkResult {
    rps: f64,
    p50: String,
    p99: String,
}

fn wrk(port: u16, conns: u32, secs: u64) -> anyhow::Result<WrkResult> {
    let out = Command::new("wrk")
        .args([
            "-t2",
            &format!("-c{conns}"),
            &format!("-d{secs}s"),
            "--latency",
            "-H",
            "Host: bench.test",
            &format!("http://127.0.0.1:{port}/"),
        ])
        .output()
        .context("running wrk (is it installed?)")?;
    let text = String::from_utf8_lossy(&out.stdout);
    let field = |prefix: &str| {
        text.lines()
            .find_map(|l| l.trim().strip_prefix(prefix).map(|r| r.trim().to_owned()))
    };
    let rps = field("Requests/sec:")
        .and_then(|s| s.parse().ok())
        .with_context(|| format!("no Requests/sec in wrk output:\n{text}"))?;
    if let Some(errors) = field("Non-2xx or 3xx responses:") {
        bail!("wrk saw {errors} non-2xx responses against port {port}:\n{text}");
    }
    Ok(WrkResult {
        rps,
        p50: field("50%").unwrap_or_default(),
        p99: field("99%").unwrap_or_default(),
    })
}
