//! Churn: 1,000 configuration changes in file mode (Ingresses, endpoints and tcp-services
//! entries added and removed, each by rewriting a manifest) while wrk runs through the
//! router and redis PING load runs through the L4 path (xdp mode). Counts failed requests
//! and connections, and times each change until the data plane shows it.

use std::{
    collections::VecDeque,
    io::{Read as _, Write as _},
    net::{SocketAddr, TcpStream},
    process::{Child, Stdio},
    sync::{
        Arc,
        atomic::{AtomicBool, AtomicU64, Ordering},
    },
    time::{Duration, Instant},
};

use anyhow::Context as _;

use crate::{
    bench::{
        Results,
        results::quantile,
        rig::{
            BENCH_HOST, L4_REDIS, LOAD_CPU, Rig, pinned, spawn_in, tcp_services_yaml,
            web_endpoints_yaml, write_atomic,
        },
        tools,
    },
    topology::{NODE, backend_addr},
};

const IO_TIMEOUT: Duration = Duration::from_secs(2);

/// `GET /` with `Host: host` on a fresh connection: status and body.
pub fn http_once(addr: SocketAddr, host: &str) -> std::io::Result<(u16, String)> {
    let mut s = TcpStream::connect_timeout(&addr, IO_TIMEOUT)?;
    s.set_read_timeout(Some(IO_TIMEOUT))?;
    s.write_all(format!("GET / HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n\r\n").as_bytes())?;
    let mut buf = Vec::new();
    s.read_to_end(&mut buf)?;
    let text = String::from_utf8_lossy(&buf);
    let status = text
        .split_whitespace()
        .nth(1)
        .and_then(|c| c.parse().ok())
        .ok_or_else(|| std::io::Error::other(format!("no status line in {text:?}")))?;
    let body = text
        .split_once("\r\n\r\n")
        .map_or("", |(_, b)| b)
        .trim()
        .to_owned();
    Ok((status, body))
}

fn ping(s: &mut TcpStream) -> std::io::Result<()> {
    s.write_all(b"*1\r\n$4\r\nPING\r\n")?;
    let mut buf = [0u8; 7];
    s.read_exact(&mut buf)?;
    if &buf != b"+PONG\r\n" {
        return Err(std::io::Error::other(format!("unexpected reply {buf:?}")));
    }
    Ok(())
}

/// One PING on a fresh connection.
pub fn ping_once(addr: SocketAddr) -> std::io::Result<()> {
    let mut s = TcpStream::connect_timeout(&addr, IO_TIMEOUT)?;
    s.set_read_timeout(Some(IO_TIMEOUT))?;
    ping(&mut s)
}

/// Sizes of one churn run.
#[derive(Clone, Copy, Debug)]
pub struct Params {
    /// Configuration changes to apply.
    pub changes: usize,
}

#[derive(Default)]
struct Counts {
    ok: AtomicU64,
    failed: AtomicU64,
}

/// Runs the group on `rig`.
pub fn run(rig: &mut Rig, p: Params) -> anyhow::Result<Results> {
    let mut r = Results::new("churn");
    rig.write_manifests(&[backend_addr(1)], &[])?;
    write_atomic(
        &rig.manifests().join("churn-ingresses.yaml"),
        &ingresses_yaml(&[]),
    )?;
    rig.start_controller("xdp")?;
    let node80 = SocketAddr::new(NODE.into(), 80);
    let redis = SocketAddr::new(NODE.into(), L4_REDIS);
    rig.wait("the churn base Ingress", || {
        rig.http_get(node80, "churn-base.test")
            .is_some_and(|(s, _)| s == 200)
    })?;

    // Load: wrk through the router, redis-benchmark and our own PING client through :9000.
    let wrk = pinned(&rig.topo.client, LOAD_CPU, "wrk")
        .args([
            "-t1",
            "-c32",
            "-d3600s",
            "--latency",
            "-H",
            &format!("Host: {BENCH_HOST}"),
        ])
        .arg(format!("http://{NODE}/"))
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .context("start wrk")?;
    let bench = pinned(&rig.topo.client, LOAD_CPU, "redis-benchmark")
        .args([
            "-h",
            &NODE.to_string(),
            "-p",
            &L4_REDIS.to_string(),
            "-t",
            "ping_mbulk",
            "-c",
            "20",
        ])
        .args(["-n", "2000000000", "-k", "1", "--csv"])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .context("start redis-benchmark")?;
    let stop = Arc::new(AtomicBool::new(false));
    let keepalive = Arc::new(Counts::default());
    let newconn = Arc::new(Counts::default());
    let mut probers = Vec::new();
    for _ in 0..4 {
        let (stop, c) = (stop.clone(), keepalive.clone());
        probers.push(spawn_in(&rig.topo.client, move || {
            let mut conn: Option<TcpStream> = None;
            while !stop.load(Ordering::Relaxed) {
                let result = match conn.as_mut() {
                    Some(s) => ping(s),
                    None => TcpStream::connect_timeout(&redis, IO_TIMEOUT).and_then(|mut s| {
                        s.set_read_timeout(Some(IO_TIMEOUT))?;
                        ping(&mut s)?;
                        conn = Some(s);
                        Ok(())
                    }),
                };
                match result {
                    Ok(()) => c.ok.fetch_add(1, Ordering::Relaxed),
                    Err(_) => {
                        conn = None;
                        c.failed.fetch_add(1, Ordering::Relaxed)
                    }
                };
                std::thread::sleep(Duration::from_millis(1));
            }
        }));
    }
    {
        let (stop, c) = (stop.clone(), newconn.clone());
        probers.push(spawn_in(&rig.topo.client, move || {
            while !stop.load(Ordering::Relaxed) {
                match ping_once(redis) {
                    Ok(()) => c.ok.fetch_add(1, Ordering::Relaxed),
                    Err(_) => c.failed.fetch_add(1, Ordering::Relaxed),
                };
                std::thread::sleep(Duration::from_millis(2));
            }
        }));
    }
    std::thread::sleep(Duration::from_secs(1));

    let manifests = rig.manifests();
    let started = Instant::now();
    let lat = spawn_in(&rig.topo.client, move || churn(&manifests, p.changes))
        .join()
        .map_err(|_| anyhow::anyhow!("churn thread panicked"))??;
    let churn_secs = started.elapsed().as_secs_f64();
    std::thread::sleep(Duration::from_secs(1));

    stop.store(true, Ordering::Relaxed);
    for t in probers {
        let _ = t.join();
    }
    let wrk = interrupt(wrk)?;
    let wrk = tools::parse_wrk(&wrk.0).unwrap_or_default();
    let (bench_out, bench_early) = interrupt(bench)?;
    let bench_errors = bench_out
        .lines()
        .filter(|l| l.to_ascii_lowercase().contains("error"))
        .count() as u64
        + u64::from(bench_early);
    rig.stop_controller()?;

    let t = "Traffic during the changes";
    r.table(
        t,
        &format!("{} changes in {churn_secs:.0} s, xdp-ingress --l4-mode xdp; every request/connection that failed is counted", p.changes),
        &[("requests", true), ("failed", false)],
        &[],
    );
    r.add(
        t,
        "wrk -c32 through the router (HTTP)",
        "requests",
        vec![wrk.requests as f64],
    );
    r.add(
        t,
        "wrk -c32 through the router (HTTP)",
        "failed",
        vec![wrk.errors as f64],
    );
    let ka = &keepalive;
    r.add(
        t,
        "PING, 4 keep-alive connections (L4 :9000)",
        "requests",
        vec![ka.ok.load(Ordering::Relaxed) as f64],
    );
    r.add(
        t,
        "PING, 4 keep-alive connections (L4 :9000)",
        "failed",
        vec![ka.failed.load(Ordering::Relaxed) as f64],
    );
    r.add(
        t,
        "PING, new connection each (L4 :9000)",
        "requests",
        vec![newconn.ok.load(Ordering::Relaxed) as f64],
    );
    r.add(
        t,
        "PING, new connection each (L4 :9000)",
        "failed",
        vec![newconn.failed.load(Ordering::Relaxed) as f64],
    );
    r.add(
        t,
        "redis-benchmark -c 20 keep-alive (L4 :9000)",
        "failed",
        vec![bench_errors as f64],
    );

    let t = "Propagation latency";
    r.table(
        t,
        "From the manifest rename to the first request that shows the change, polled every millisecond from the client (p50/p99/max over the changes of each kind)",
        &[("p50 ms", false), ("p99 ms", false), ("max ms", false), ("changes", true), ("not seen in 10 s", false)],
        &[],
    );
    let mut all = Vec::new();
    for (kind, samples) in &lat {
        let seen: Vec<f64> = samples.iter().filter_map(|s| *s).collect();
        let missed = samples.len() - seen.len();
        r.add(t, kind, "p50 ms", vec![quantile(&seen, 0.5)]);
        r.add(t, kind, "p99 ms", vec![quantile(&seen, 0.99)]);
        r.add(t, kind, "max ms", vec![quantile(&seen, 1.0)]);
        r.add(t, kind, "changes", vec![samples.len() as f64]);
        r.add(t, kind, "not seen in 10 s", vec![missed as f64]);
        all.extend(samples.iter().copied());
    }
    let seen: Vec<f64> = all.iter().filter_map(|s| *s).collect();
    r.add(t, "all changes", "p50 ms", vec![quantile(&seen, 0.5)]);
    r.add(t, "all changes", "p99 ms", vec![quantile(&seen, 0.99)]);
    r.add(t, "all changes", "max ms", vec![quantile(&seen, 1.0)]);
    r.add(t, "all changes", "changes", vec![all.len() as f64]);
    r.add(
        t,
        "all changes",
        "not seen in 10 s",
        vec![(all.len() - seen.len()) as f64],
    );
    r.note("Changes cycle through five kinds: add an Ingress (seen: its host answers 200), add a tcp-services entry (seen: PONG on the new port), add or remove backend 0 in the web EndpointSlice (seen: a response from b0 / eight responses in a row from b1), remove the oldest churn Ingress (seen: 404), remove the oldest extra port (seen: connection refused). Each change rewrites one manifest with write + rename; the controller runs in file mode (--manifests), whose watcher is woken by inotify on the directory (with a 1 s poll behind it).");
    r.note("The propagation latency is the whole path a user sees: file watcher, Snapshot build, router swap or BPF map update, plus the probe's own connection.");
    Ok(r)
}

/// SIGINT (wrk and redis-benchmark print their summary on it); stdout and whether it had
/// already exited on its own.
fn interrupt(mut child: Child) -> anyhow::Result<(String, bool)> {
    let early = child.try_wait()?.is_some();
    // SAFETY: signalling our own child by pid.
    unsafe { libc::kill(child.id() as i32, libc::SIGINT) };
    let out = child.wait_with_output()?;
    Ok((
        String::from_utf8_lossy(&out.stdout).into_owned() + &String::from_utf8_lossy(&out.stderr),
        early,
    ))
}

fn ingresses_yaml(ids: &[u32]) -> String {
    std::iter::once("base".to_owned())
        .chain(ids.iter().map(u32::to_string))
        .map(|id| {
            format!(
                "apiVersion: networking.k8s.io/v1\nkind: Ingress\nmetadata: {{name: churn-{id}, namespace: default}}\nspec:\n  ingressClassName: xdp\n  rules:\n  - host: churn-{id}.test\n    http:\n      paths:\n      - path: /\n        pathType: Prefix\n        backend: {{service: {{name: web, port: {{number: 80}}}}}}\n"
            )
        })
        .collect::<Vec<_>>()
        .join("---\n")
}

type Latencies = Vec<(&'static str, Vec<Option<f64>>)>;

/// Applies `n` changes; per kind, the propagation latency in ms (None: not seen in 10 s).
fn churn(manifests: &std::path::Path, n: usize) -> anyhow::Result<Latencies> {
    let node80 = SocketAddr::new(NODE.into(), 80);
    let mut lat: Latencies = vec![
        ("add Ingress", Vec::new()),
        ("add tcp-services entry", Vec::new()),
        ("change endpoints", Vec::new()),
        ("remove Ingress", Vec::new()),
        ("remove tcp-services entry", Vec::new()),
    ];
    let mut ingresses: VecDeque<u32> = VecDeque::new();
    let mut ports: VecDeque<u16> = VecDeque::new();
    let mut web_b0 = false;
    let mut next = 0u32;
    for k in 0..n {
        let kind = k % 5;
        let seen: Box<dyn Fn() -> bool> = match kind {
            0 => {
                next += 1;
                ingresses.push_back(next);
                write_atomic(
                    &manifests.join("churn-ingresses.yaml"),
                    &ingresses_yaml(ingresses.make_contiguous()),
                )?;
                let host = format!("churn-{next}.test");
                Box::new(move || http_once(node80, &host).is_ok_and(|(s, _)| s == 200))
            }
            1 => {
                let port = 12_000 + u16::try_from(k / 5).unwrap_or(0) % 20_000;
                ports.push_back(port);
                write_atomic(
                    &manifests.join("tcp-services.yaml"),
                    &tcp_services_yaml(ports.make_contiguous()),
                )?;
                let addr = SocketAddr::new(NODE.into(), port);
                Box::new(move || ping_once(addr).is_ok())
            }
            2 => {
                web_b0 = !web_b0;
                let web = if web_b0 {
                    vec![backend_addr(0), backend_addr(1)]
                } else {
                    vec![backend_addr(1)]
                };
                write_atomic(
                    &manifests.join("web-endpoints.yaml"),
                    &web_endpoints_yaml(&web),
                )?;
                if web_b0 {
                    Box::new(move || http_once(node80, BENCH_HOST).is_ok_and(|(_, b)| b == "b0"))
                } else {
                    Box::new(move || {
                        (0..8).all(|_| http_once(node80, BENCH_HOST).is_ok_and(|(_, b)| b == "b1"))
                    })
                }
            }
            3 => {
                let id = ingresses.pop_front().context("an Ingress to remove")?;
                write_atomic(
                    &manifests.join("churn-ingresses.yaml"),
                    &ingresses_yaml(ingresses.make_contiguous()),
                )?;
                let host = format!("churn-{id}.test");
                Box::new(move || http_once(node80, &host).is_ok_and(|(s, _)| s == 404))
            }
            _ => {
                let port = ports.pop_front().context("a port to remove")?;
                write_atomic(
                    &manifests.join("tcp-services.yaml"),
                    &tcp_services_yaml(ports.make_contiguous()),
                )?;
                let addr = SocketAddr::new(NODE.into(), port);
                Box::new(move || ping_once(addr).is_err())
            }
        };
        let t0 = Instant::now();
        let deadline = t0 + Duration::from_secs(10);
        let mut result = None;
        while Instant::now() < deadline {
            if seen() {
                result = Some(t0.elapsed().as_secs_f64() * 1e3);
                break;
            }
            std::thread::sleep(Duration::from_millis(1));
        }
        lat[kind].1.push(result);
        if k % 100 == 99 {
            println!("  churn: {} changes", k + 1);
        }
    }
    Ok(lat)
}
