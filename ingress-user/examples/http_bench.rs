//! L7 benchmark: the xdp-ingress router against nginx `proxy_pass`, to the same backend,
//! side by side in one run. Report only; never a test.
//!
//! ```text
//! cargo run --release -p ingress-user --example http_bench -- [SECONDS] [CONNS...]
//! ```
//! (default: 10 s at 16 and 256 connections). Needs `nginx` and `wrk` on PATH.
//!
//! Topology, all on 127.0.0.1: one nginx (2 workers) serves the backend (`return 200`, a
//! 13-byte body) and, on a second port, the `proxy_pass` peer with upstream keep-alive. The
//! router runs in this process on a 2-worker tokio runtime, routing an Ingress for
//! `bench.test` to the same backend. wrk (2 threads) sends `GET /` with `Host: bench.test`.

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
    std::fs::create_dir_all(&dir)?;
    let mut nginx = start_nginx(&dir, backend_port, nginx_proxy_port)?;

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
            for (name, port) in [
                ("direct backend", backend_port),
                ("nginx proxy_pass", nginx_proxy_port),
                ("xdp-ingress", router_port),
            ] {
                let r = tokio::task::spawn_blocking(move || wrk(port, c, secs)).await??;
                rows.push((c, name, r));
            }
        }
        anyhow::Ok(rows)
    });
    let _ = nginx.kill();
    let _ = nginx.wait();
    let rows = result?;
    println!(
        "\n{:>6}  {:<18} {:>12} {:>10} {:>10}",
        "conns", "target", "req/s", "p50", "p99"
    );
    for (c, name, r) in rows {
        println!(
            "{c:>6}  {name:<18} {:>12.0} {:>10} {:>10}",
            r.rps, r.p50, r.p99
        );
    }
    Ok(())
}

fn free_port() -> anyhow::Result<u16> {
    Ok(StdListener::bind("127.0.0.1:0")?.local_addr()?.port())
}

fn start_nginx(dir: &std::path::Path, backend: u16, proxy: u16) -> anyhow::Result<Child> {
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
    upstream backend {{ server 127.0.0.1:{backend}; keepalive 512; }}
    server {{
        listen 127.0.0.1:{backend};
        location / {{ return 200 "hello, world\n"; }}
    }}
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
    }}
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
