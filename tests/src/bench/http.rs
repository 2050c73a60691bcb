//! HTTP: wrk at 16 and 256 connections through the xdp-ingress router, nginx `proxy_pass`
//! and HAProxy http mode, to the same static nginx backend, plus direct (the limit).

use crate::{
    bench::{
        Results, peers,
        rig::{BENCH_HOST, Rig, WEB_PORT},
        tools,
    },
    topology::{NODE, backend_addr},
};

/// Sizes of one HTTP run.
#[derive(Clone, Copy, Debug)]
pub struct Params {
    /// Samples per configuration and connection count.
    pub samples: usize,
    /// wrk seconds per sample.
    pub secs: u32,
}

const DIRECT: &str = "direct to backend (limit)";
const NGINX: &str = "nginx proxy_pass";

/// Runs the group on `rig`.
pub fn run(rig: &mut Rig, p: Params) -> anyhow::Result<Results> {
    let mut r = Results::new("http");
    let cols = [
        ("req/s", true),
        ("p50 ms", false),
        ("p99 ms", false),
        ("errors", false),
    ];
    for c in [16, 256] {
        r.table(
            &format!("HTTP/1.1, {c} connections"),
            &format!("wrk -t1 -c{c} -d{}s --latency, GET / with Host: {BENCH_HOST}; backend nginx returns a 3-byte body", p.secs),
            &cols,
            &[DIRECT, NGINX],
        );
    }
    // The router is the controller's; its L4 mode does not matter here (userspace: no eBPF
    // program on the interfaces the peers also use).
    rig.start_controller("userspace")?;
    let upstream = format!("{}:{WEB_PORT}", backend_addr(1));
    let nginx_conf = peers::nginx_proxy(&rig.dir.join("nginx-http"), NODE, 8081, &upstream)?;
    let _nginx = peers::start_nginx(&rig.topo.node, &nginx_conf)?;
    let haproxy_conf = peers::haproxy_http(&rig.dir.join("haproxy-http"), NODE, 8082, &upstream)?;
    let _haproxy = peers::start_haproxy(&rig.topo.node, &haproxy_conf)?;
    let targets = [
        (DIRECT, format!("http://{upstream}/")),
        ("xdp-ingress", format!("http://{NODE}/")),
        (NGINX, format!("http://{NODE}:8081/")),
        ("HAProxy http", format!("http://{NODE}:8082/")),
    ];
    for (name, url) in &targets {
        let addr = url
            .trim_start_matches("http://")
            .trim_end_matches('/')
            .to_owned();
        let addr = if addr.contains(':') {
            addr
        } else {
            format!("{addr}:80")
        };
        let addr = addr.parse()?;
        rig.wait(&format!("{name} answers 200"), || {
            spawn_get(rig, addr).is_some_and(|(s, _)| s == 200)
        })?;
    }
    for c in [16u32, 256] {
        let table = format!("HTTP/1.1, {c} connections");
        let mut runs: Vec<Vec<tools::Wrk>> = targets.iter().map(|_| Vec::new()).collect();
        for (name, url) in &targets {
            println!("http: warm-up {name} at {c} connections");
            tools::wrk(&rig.topo.client, url, BENCH_HOST, c, 1)?;
        }
        // Rounds over the targets, so drifting background load is shared alike.
        for round in 0..p.samples {
            for (i, (name, url)) in targets.iter().enumerate() {
                println!("http: round {} {name} at {c} connections", round + 1);
                runs[i].push(tools::wrk(&rig.topo.client, url, BENCH_HOST, c, p.secs)?);
            }
        }
        for ((name, _), runs) in targets.iter().zip(runs) {
            r.add(&table, name, "req/s", runs.iter().map(|w| w.rps).collect());
            r.add(
                &table,
                name,
                "p50 ms",
                runs.iter().map(|w| w.p50_ms).collect(),
            );
            r.add(
                &table,
                name,
                "p99 ms",
                runs.iter().map(|w| w.p99_ms).collect(),
            );
            r.add(
                &table,
                name,
                "errors",
                runs.iter().map(|w| w.errors as f64).collect(),
            );
        }
    }
    rig.stop_controller()?;
    r.note("Same backend for every row: nginx on backend 1 answering `return 200` (one worker, CPU 1). The proxies run in the node namespace pinned to CPU 1 (nginx: 1 worker, upstream keepalive; HAProxy: nbthread 1, http-reuse always; xdp-ingress: the controller's router, --l4-mode userspace); wrk runs with one thread on CPU 0.");
    r.note("Every proxy sends the backend the same request headers: X-Request-ID, X-Real-IP and X-Forwarded-For/Host/Port/Proto (nginx and HAProxy configured like ingress-nginx's template). nginx and HAProxy have no access log; the xdp-ingress router keeps per-request metrics.");
    Ok(r)
}

fn spawn_get(rig: &Rig, addr: std::net::SocketAddr) -> Option<(u16, String)> {
    let ns = if addr.ip() == std::net::IpAddr::V4(NODE) {
        &rig.topo.client
    } else {
        &rig.topo.node
    };
    crate::bench::rig::spawn_in(ns, move || {
        crate::bench::churn::http_once(addr, BENCH_HOST).ok()
    })
    .join()
    .ok()
    .flatten()
}
