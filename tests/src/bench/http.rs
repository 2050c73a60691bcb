//! HTTP: wrk at 16 and 256 connections through the xdp-ingress router, nginx `proxy_pass`
//! and HAProxy http mode, to the same static nginx backend, plus direct (the limit).

use anyhow::Context as _;

use crate::{
    bench::{
        Results, peers,
        rig::{BENCH_HOST, Rig, SNAT_PORTS, WEB_PORT},
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
const SHARED: &str = "One CPU shared: xdp-ingress and nginx loaded at once, 256 connections each";
const SHARED_CONNS: u32 = 256;
const ACCESS_LOG: &str = "Access log off vs on (JSON lines to a file), 256 connections";
const LOG_OFF: &str = "xdp-ingress, --access-log off";
const LOG_ON: &str = "xdp-ingress, --access-log FILE (json)";

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
    r.table(
        SHARED,
        &format!(
            "Both proxies on CPU 1 at the same time, each driven by its own wrk -t1 -c{SHARED_CONNS} -d{}s on CPU 0, so both meet the same machine at every moment and drifting VM speed cancels out. CPU is each proxy's user+system time from /proc/PID/stat (nginx: its worker), divided by the requests it served.",
            p.secs
        ),
        &[
            ("requests per CPU ms", true),
            ("CPU µs per request", false),
            ("req/s", true),
        ],
        &[NGINX],
    );
    r.table(
        ACCESS_LOG,
        &format!(
            "wrk -t1 -c256 -d{}s --latency through the router, restarted between runs with `--access-log off` and with `--access-log FILE --access-log-format json` (a file in the bench directory), alternating round by round",
            p.secs
        ),
        &cols,
        &[LOG_OFF],
    );
    // The router is the controller's; its L4 mode does not matter here (userspace: no eBPF
    // program on the interfaces the peers also use). No access log, as the peers have none;
    // its cost is measured on its own below.
    rig.start_controller_with("userspace", Some(SNAT_PORTS), &["--access-log", "off"])?;
    let upstream = format!("{}:{WEB_PORT}", backend_addr(1));
    let nginx_conf = peers::nginx_proxy(&rig.dir.join("nginx-http"), NODE, 8081, &upstream)?;
    let nginx = peers::start_nginx(&rig.topo.node, &nginx_conf)?;
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
    let ours = rig.controller_pid().context("the controller is running")?;
    let worker = nginx_worker(nginx.0.id())?;
    let shared = [
        ("xdp-ingress", targets[1].1.as_str(), ours),
        (NGINX, targets[2].1.as_str(), worker),
    ];
    let mut samples: Vec<Vec<Shared>> = vec![Vec::new(); shared.len()];
    for round in 0..p.samples {
        println!("http: round {} of both proxies at once", round + 1);
        for (i, s) in at_once(rig, &shared, p.secs)?.into_iter().enumerate() {
            samples[i].push(s);
        }
    }
    for ((name, _, _), runs) in shared.iter().zip(samples) {
        let per_ms = runs
            .iter()
            .map(|s| s.requests / (s.cpu_secs * 1e3))
            .collect();
        r.add(SHARED, name, "requests per CPU ms", per_ms);
        let us = runs.iter().map(|s| s.cpu_secs * 1e6 / s.requests).collect();
        r.add(SHARED, name, "CPU µs per request", us);
        r.add(SHARED, name, "req/s", runs.iter().map(|s| s.rps).collect());
    }
    access_log(rig, &mut r, p, &targets[1].1)?;
    rig.stop_controller()?;
    r.note("Same backend for every row: nginx on backend 1 answering `return 200` (one worker, CPU 1). The proxies run in the node namespace pinned to CPU 1 (nginx: 1 worker, upstream keepalive; HAProxy: nbthread 1, http-reuse always; xdp-ingress: the controller's router, --l4-mode userspace); wrk runs with one thread on CPU 0.");
    r.note("Every proxy sends the backend the same request headers: X-Request-ID, X-Real-IP and X-Forwarded-For/Host/Port/Proto (nginx and HAProxy configured like ingress-nginx's template). nginx and HAProxy have no access log, and the xdp-ingress router runs with --access-log off except in the access log table; it keeps per-request metrics.");
    Ok(r)
}

/// The access log table: the router restarted for each run, log off and on in turns.
fn access_log(rig: &mut Rig, r: &mut Results, p: Params, url: &str) -> anyhow::Result<()> {
    let file = rig.dir.join("access.log");
    let file = file
        .to_str()
        .context("bench directory is UTF-8")?
        .to_owned();
    let configs: [(&str, Vec<&str>); 2] = [
        (LOG_OFF, vec!["--access-log", "off"]),
        (
            LOG_ON,
            vec!["--access-log", &file, "--access-log-format", "json"],
        ),
    ];
    let mut runs: Vec<Vec<tools::Wrk>> = vec![Vec::new(); configs.len()];
    for round in 0..p.samples {
        for (i, (name, flags)) in configs.iter().enumerate() {
            println!("http: round {} {name}", round + 1);
            rig.start_controller_with("userspace", Some(SNAT_PORTS), flags)?;
            tools::wrk(&rig.topo.client, url, BENCH_HOST, 256, 1)?;
            runs[i].push(tools::wrk(&rig.topo.client, url, BENCH_HOST, 256, p.secs)?);
        }
    }
    let lines = std::fs::read_to_string(&file).map_or(0, |t| t.lines().count());
    for ((name, _), runs) in configs.iter().zip(runs) {
        r.add(
            ACCESS_LOG,
            name,
            "req/s",
            runs.iter().map(|w| w.rps).collect(),
        );
        r.add(
            ACCESS_LOG,
            name,
            "p50 ms",
            runs.iter().map(|w| w.p50_ms).collect(),
        );
        r.add(
            ACCESS_LOG,
            name,
            "p99 ms",
            runs.iter().map(|w| w.p99_ms).collect(),
        );
        r.add(
            ACCESS_LOG,
            name,
            "errors",
            runs.iter().map(|w| w.errors as f64).collect(),
        );
    }
    r.note(format!(
        "Access log table: {lines} lines were written to the file over its runs with the log on (warm-ups included)."
    ));
    let _ = std::fs::remove_file(&file);
    Ok(())
}

/// One proxy's share of a run with both loaded at once.
#[derive(Clone, Copy, Debug)]
struct Shared {
    requests: f64,
    rps: f64,
    cpu_secs: f64,
}

/// Drives every `(name, url, pid)` with its own wrk at the same time; each proxy's CPU
/// time over the run comes from its process's `/proc/PID/stat`.
fn at_once(rig: &Rig, proxies: &[(&str, &str, u32)], secs: u32) -> anyhow::Result<Vec<Shared>> {
    let before = proxies
        .iter()
        .map(|(_, _, pid)| cpu_secs(*pid))
        .collect::<anyhow::Result<Vec<_>>>()?;
    let runs = std::thread::scope(|scope| {
        let loads: Vec<_> = proxies
            .iter()
            .map(|(_, url, _)| {
                scope.spawn(|| tools::wrk(&rig.topo.client, url, BENCH_HOST, SHARED_CONNS, secs))
            })
            .collect();
        loads
            .into_iter()
            .map(|l| {
                l.join()
                    .map_err(|_| anyhow::anyhow!("wrk thread panicked"))?
            })
            .collect::<anyhow::Result<Vec<_>>>()
    })?;
    proxies
        .iter()
        .zip(before)
        .zip(runs)
        .map(|(((name, _, pid), before), w)| {
            let cpu = cpu_secs(*pid)? - before;
            anyhow::ensure!(
                w.requests > 0 && cpu > 0.0,
                "{name}: no requests or no CPU time in the shared run"
            );
            Ok(Shared {
                requests: w.requests as f64,
                rps: w.rps,
                cpu_secs: cpu,
            })
        })
        .collect()
}

/// User plus system CPU seconds of process `pid` so far (all its threads).
pub(crate) fn cpu_secs(pid: u32) -> anyhow::Result<f64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat"))
        .with_context(|| format!("reading /proc/{pid}/stat"))?;
    // Fields after the parenthesised command name, which may itself contain spaces.
    let rest = stat
        .rsplit_once(')')
        .map(|(_, r)| r)
        .context("malformed /proc stat")?;
    let f: Vec<&str> = rest.split_whitespace().collect();
    // utime and stime are fields 14 and 15 of the whole line, 12 and 13 after the name.
    let ticks: f64 = f
        .get(11..13)
        .context("short /proc stat")?
        .iter()
        .map(|v| v.parse::<f64>())
        .sum::<Result<f64, _>>()?;
    // SAFETY: sysconf reads a constant.
    let hz = unsafe { libc::sysconf(libc::_SC_CLK_TCK) } as f64;
    Ok(ticks / hz)
}

/// The worker of the one-worker nginx whose master is `master`.
pub(crate) fn nginx_worker(master: u32) -> anyhow::Result<u32> {
    let children = std::fs::read_to_string(format!("/proc/{master}/task/{master}/children"))?;
    children
        .split_whitespace()
        .next()
        .context("nginx has no worker")?
        .parse()
        .context("nginx worker pid")
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
