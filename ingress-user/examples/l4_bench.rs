//! L4 userspace benchmark: redis PING rates and iperf3 throughput, direct (the limit),
//! through the xdp-ingress userspace proxy, through nginx `stream` and through HAProxy
//! `mode tcp` (the peers), side by side in one run. Report only; never a test.
//!
//! ```text
//! cargo run --release -p ingress-user --example l4_bench -- [REQUESTS] [IPERF_SECONDS]
//! ```
//! (default: 100000 keep-alive requests, a tenth of that with a new connection each, 5 s
//! of iperf3). Needs `redis-server`, `redis-benchmark`, `iperf3`, `nginx` with the stream
//! module and `haproxy` on PATH; a missing peer is skipped.
//!
//! All on 127.0.0.1: one redis-server and one iperf3 server; the proxy runs in this process
//! on a 2-worker tokio runtime; nginx and HAProxy with 2 workers/threads. redis-benchmark
//! uses 50 clients. Client, proxies and servers share the machine's cores, so the ratios are
//! the point, not the absolute numbers.

use std::{
    io::Write as _,
    net::{SocketAddr, TcpListener as StdListener, TcpStream as StdStream},
    path::Path,
    process::{Child, Command, Stdio},
    time::{Duration, Instant},
};

use anyhow::{Context as _, bail};
use xdp_ingress::{
    config::{L4Protocol, L4Service, ServiceRef},
    l4::proxy::{L4Proxy, Options},
};

fn main() -> anyhow::Result<()> {
    let mut args = std::env::args().skip(1);
    let requests: u32 = args
        .next()
        .map_or(Ok(100_000), |s| s.parse())
        .context("REQUESTS")?;
    let iperf_secs: u32 = args
        .next()
        .map_or(Ok(5), |s| s.parse())
        .context("IPERF_SECONDS")?;
    let dir = std::env::temp_dir().join(format!("xdp-ingress-l4-bench-{}", std::process::id()));
    std::fs::create_dir_all(&dir)?;

    let redis_port = free_port()?;
    let iperf_port = free_port()?;
    let _redis = Guard(spawn(Command::new("redis-server").args([
        "--bind",
        "127.0.0.1",
        "--port",
        &redis_port.to_string(),
        "--save",
        "",
        "--appendonly",
        "no",
    ]))?);
    let _iperf = Guard(spawn(Command::new("iperf3").args([
        "-s",
        "-B",
        "127.0.0.1",
        "-p",
        &iperf_port.to_string(),
    ]))?);
    wait_listening(redis_port)?;
    wait_listening(iperf_port)?;

    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()?;
    let (ours_redis, ours_iperf) = (free_port()?, free_port()?);
    let proxy = L4Proxy::new(Options {
        bind_address: [127, 0, 0, 1].into(),
        ..Options::default()
    });
    let report = runtime.block_on(proxy.apply(&[
        service(ours_redis, redis_port),
        service(ours_iperf, iperf_port),
    ]));
    if !report.failed.is_empty() {
        bail!("proxy could not bind: {:?}", report.failed);
    }

    let (nginx_redis, nginx_iperf) = (free_port()?, free_port()?);
    let nginx = start_nginx(&dir, [(nginx_redis, redis_port), (nginx_iperf, iperf_port)])
        .inspect_err(|e| eprintln!("nginx stream skipped: {e:#}"))
        .ok();
    let (haproxy_redis, haproxy_iperf) = (free_port()?, free_port()?);
    let haproxy = start_haproxy(
        &dir,
        [(haproxy_redis, redis_port), (haproxy_iperf, iperf_port)],
    )
    .inspect_err(|e| eprintln!("haproxy skipped: {e:#}"))
    .ok();

    let mut paths = vec![
        ("direct", redis_port, iperf_port),
        ("xdp-ingress userspace", ours_redis, ours_iperf),
    ];
    if nginx.is_some() {
        paths.push(("nginx stream", nginx_redis, nginx_iperf));
    }
    if haproxy.is_some() {
        paths.push(("haproxy tcp", haproxy_redis, haproxy_iperf));
    }

    println!(
        "redis-benchmark PING, 50 clients: {requests} keep-alive requests, {} with a new connection each; iperf3 {iperf_secs} s",
        requests / 10
    );
    println!(
        "{:<24} {:>16} {:>16} {:>14}",
        "path", "keep-alive rps", "new-conn rps", "iperf3 Gbit/s"
    );
    let mut direct = None;
    for (name, redis, iperf) in paths {
        let keep = redis_rps(redis, requests, true)?;
        let fresh = redis_rps(redis, requests / 10, false)?;
        let gbits = iperf_gbits(iperf, iperf_secs)?;
        println!("{name:<24} {keep:>16.0} {fresh:>16.0} {gbits:>14.2}");
        let (dk, df, dg) = *direct.get_or_insert((keep, fresh, gbits));
        if name != "direct" {
            println!(
                "{:<24} {:>15.2}x {:>15.2}x {:>13.2}x",
                "  vs direct",
                keep / dk,
                fresh / df,
                gbits / dg
            );
        }
    }
    let stats = proxy.stats_now();
    for e in stats {
        let s = &e.stats;
        println!(
            "proxy {} {}: accepted {} connect errors {} bytes in {} out {}",
            e.protocol,
            e.port,
            xdp_ingress::l4::proxy::ServiceStats::get(&s.accepted),
            xdp_ingress::l4::proxy::ServiceStats::get(&s.connect_errors),
            xdp_ingress::l4::proxy::ServiceStats::get(&s.bytes_in),
            xdp_ingress::l4::proxy::ServiceStats::get(&s.bytes_out),
        );
    }
    drop(nginx.map(Guard));
    drop(haproxy.map(Guard));
    runtime.block_on(proxy.shutdown(Duration::from_secs(1)));
    let _ = std::fs::remove_dir_all(&dir);
    Ok(())
}

fn service(port: u16, to: u16) -> L4Service {
    L4Service {
        port,
        protocol: L4Protocol::Tcp,
        service: ServiceRef {
            namespace: "bench".to_owned(),
            name: format!("to-{to}"),
            port: to,
        },
        endpoints: vec![SocketAddr::from(([127, 0, 0, 1], to))],
        proxy_protocol_in: false,
        proxy_protocol_out: false,
        addrs: Vec::new(),
        split: Vec::new(),
    }
}

/// `redis-benchmark -t ping` requests per second (the PING_MBULK line).
fn redis_rps(port: u16, n: u32, keep_alive: bool) -> anyhow::Result<f64> {
    let out = Command::new("redis-benchmark")
        .args([
            "-h",
            "127.0.0.1",
            "-p",
            &port.to_string(),
            "-c",
            "50",
            "-t",
            "ping",
            "--csv",
        ])
        .args([
            "-n",
            &n.to_string(),
            "-k",
            if keep_alive { "1" } else { "0" },
        ])
        .stderr(Stdio::null())
        .output()
        .context("running redis-benchmark")?;
    let text = String::from_utf8_lossy(&out.stdout);
    for line in text.lines() {
        let mut fields = line.split(',').map(|f| f.trim_matches('"'));
        if fields.next() == Some("PING_MBULK") {
            return fields
                .next()
                .context("rps field")?
                .parse()
                .context("rps number");
        }
    }
    bail!("no PING_MBULK line in redis-benchmark output: {text}")
}

fn iperf_gbits(port: u16, secs: u32) -> anyhow::Result<f64> {
    let out = Command::new("iperf3")
        .args([
            "-c",
            "127.0.0.1",
            "-p",
            &port.to_string(),
            "-t",
            &secs.to_string(),
            "-J",
        ])
        .output()
        .context("running iperf3")?;
    let json: serde_json::Value = serde_json::from_slice(&out.stdout).context("iperf3 JSON")?;
    json["end"]["sum_received"]["bits_per_second"]
        .as_f64()
        .map(|b| b / 1e9)
        .with_context(|| format!("no end.sum_received in iperf3 output: {json}"))
}

fn start_nginx(dir: &Path, routes: [(u16, u16); 2]) -> anyhow::Result<Child> {
    let conf = dir.join("nginx.conf");
    let mut f = std::fs::File::create(&conf)?;
    writeln!(
        f,
        "load_module /usr/lib/nginx/modules/ngx_stream_module.so;\ndaemon off;\nworker_processes 2;\npid {d}/nginx.pid;\nerror_log {d}/nginx.log warn;\nevents {{ worker_connections 8192; }}\nstream {{",
        d = dir.display()
    )?;
    for (listen, to) in routes {
        writeln!(
            f,
            "    server {{ listen 127.0.0.1:{listen}; proxy_pass 127.0.0.1:{to}; }}"
        )?;
    }
    writeln!(f, "}}")?;
    drop(f);
    let mut child = spawn(
        Command::new("nginx")
            .arg("-c")
            .arg(&conf)
            .args(["-p", &dir.display().to_string()]),
    )?;
    for (listen, _) in routes {
        if let Err(e) = wait_listening(listen) {
            let _ = child.kill();
            return Err(e);
        }
    }
    Ok(child)
}

fn start_haproxy(dir: &Path, routes: [(u16, u16); 2]) -> anyhow::Result<Child> {
    let conf = dir.join("haproxy.cfg");
    let mut f = std::fs::File::create(&conf)?;
    writeln!(
        f,
        "global\n    nbthread 2\n    maxconn 4000\ndefaults\n    mode tcp\n    timeout connect 5s\n    timeout client 60s\n    timeout server 60s"
    )?;
    for (listen, to) in routes {
        writeln!(
            f,
            "listen l{listen}\n    bind 127.0.0.1:{listen}\n    server s1 127.0.0.1:{to}"
        )?;
    }
    drop(f);
    let mut child = spawn(Command::new("haproxy").arg("-db").arg("-f").arg(&conf))?;
    for (listen, _) in routes {
        if let Err(e) = wait_listening(listen) {
            let _ = child.kill();
            return Err(e);
        }
    }
    Ok(child)
}

fn spawn(cmd: &mut Command) -> anyhow::Result<Child> {
    cmd.stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .with_context(|| format!("spawning {cmd:?}"))
}

fn free_port() -> anyhow::Result<u16> {
    Ok(StdListener::bind("127.0.0.1:0")?.local_addr()?.port())
}

fn wait_listening(port: u16) -> anyhow::Result<()> {
    let deadline = Instant::now() + Duration::from_secs(10);
    while StdStream::connect(("127.0.0.1", port)).is_err() {
        if Instant::now() > deadline {
            bail!("nothing listens on 127.0.0.1:{port} after 10 s");
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    Ok(())
}

/// Kills the child when dropped.
struct Guard(Child);

impl Drop for Guard {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}
