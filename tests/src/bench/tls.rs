//! TLS: full and resumed handshakes per second (RSA-2048 and ECDSA P-256 certificates),
//! HTTPS keep-alive and HTTP/2 over TLS, through the xdp-ingress router, nginx and HAProxy
//! terminating TLS with the same certificates in front of the same static nginx backend;
//! and the CPU each spends per handshake when both share one CPU.

use std::{
    fs,
    net::{IpAddr, SocketAddr},
    path::{Path, PathBuf},
};

use anyhow::Context as _;

use crate::{
    bench::{
        Results,
        handshakes::{self, Run},
        http::{cpu_secs, nginx_worker},
        peers,
        rig::{LOAD_CPU, Rig, SERVER_CPU, SNAT_PORTS, WEB_PORT, pin, write_atomic},
        tools,
    },
    http_support::TestCa,
    topology::{NODE, backend_addr},
};

/// Sizes of one TLS run.
#[derive(Clone, Copy, Debug)]
pub struct Params {
    /// Samples per configuration.
    pub samples: usize,
    /// Seconds per sample.
    pub secs: u32,
}

const RSA_HOST: &str = "rsa.bench.test";
const ECDSA_HOST: &str = "ecdsa.bench.test";
const NGINX: &str = "nginx";
const HANDSHAKE_CONNS: u32 = 16;
/// wrk's connections (the keep-alive tables in [`STREAMS`] name the number).
const KEEPALIVE_CONNS: u32 = 64;

/// One proxy under test: the process doing its work (for CPU time) and where it serves
/// each certificate.
struct Target {
    name: &'static str,
    pid: u32,
    rsa: SocketAddr,
    ecdsa: SocketAddr,
}

/// `f`'s result and the CPU seconds process `pid` spent while it ran.
fn with_cpu<T>(pid: u32, f: impl FnOnce() -> anyhow::Result<T>) -> anyhow::Result<(T, f64)> {
    let before = cpu_secs(pid)?;
    let out = f()?;
    Ok((out, cpu_secs(pid)? - before))
}

/// A handshake workload: which certificate, whether clients resume.
#[derive(Clone, Copy)]
struct Workload {
    table: &'static str,
    shared: &'static str,
    ecdsa: bool,
    resume: bool,
}

const WORKLOADS: [Workload; 3] = [
    Workload {
        table: "Full handshakes, RSA-2048",
        shared: "One CPU shared: full handshakes, RSA-2048",
        ecdsa: false,
        resume: false,
    },
    Workload {
        table: "Full handshakes, ECDSA P-256",
        shared: "One CPU shared: full handshakes, ECDSA P-256",
        ecdsa: true,
        resume: false,
    },
    Workload {
        table: "Resumed handshakes (TLS 1.3 tickets), RSA-2048",
        shared: "One CPU shared: resumed handshakes",
        ecdsa: false,
        resume: true,
    },
];

impl Workload {
    fn host(self) -> &'static str {
        if self.ecdsa { ECDSA_HOST } else { RSA_HOST }
    }

    fn addr(self, t: &Target) -> SocketAddr {
        if self.ecdsa { t.ecdsa } else { t.rsa }
    }

    fn params(self, addr: SocketAddr, conns: u32, secs: f64) -> handshakes::Params {
        handshakes::Params {
            addr,
            host: self.host().to_owned(),
            conns,
            secs,
            resume: self.resume,
        }
    }
}

/// Runs the group on `rig`.
pub fn run(rig: &mut Rig, p: Params) -> anyhow::Result<Results> {
    let mut r = Results::new("tls");
    let hs_cols = [
        ("handshakes/s", true),
        ("CPU µs per handshake", false),
        ("resumed %", true),
        ("errors", false),
    ];
    for w in WORKLOADS {
        r.table(
            w.table,
            &format!(
                "{HANDSHAKE_CONNS} clients on one thread (bench-net's handshake driver, rustls with aws-lc-rs, TLS 1.3, X25519), each looping connect, handshake, GET / with Connection: close, read to the end, for {}s; {} A handshake counts when its 200 answer has arrived.",
                p.secs,
                if w.resume {
                    "the clients share a session store and offer a ticket on every connection after their first."
                } else {
                    "no session is ever offered."
                }
            ),
            &hs_cols,
            &[NGINX],
        );
    }
    for st in STREAMS {
        r.table(
            st.keepalive,
            &format!(
                "wrk -t1 -c{KEEPALIVE_CONNS} -d{}s --latency https://NODE:PORT/ (RSA-2048 certificate), GET / through the proxy to the backend.{}",
                p.secs, st.backend
            ),
            &[
                ("req/s", true),
                ("CPU µs per request", false),
                ("p50 ms", false),
                ("p99 ms", false),
                ("errors", false),
                ("CPU 0 busy %", false),
                ("CPU 1 busy %", false),
            ],
            &[NGINX],
        );
        r.table(
            st.h2,
            &format!(
                "h2load -t1 -c16 -m10 -D{} https://{RSA_HOST}/ (ALPN h2, RSA-2048 certificate).{}",
                p.secs, st.backend
            ),
            &[
                ("req/s", true),
                ("CPU µs per request", false),
                ("errors", false),
                ("CPU 0 busy %", false),
                ("CPU 1 busy %", false),
            ],
            &[NGINX],
        );
    }
    for w in WORKLOADS {
        r.table(
            w.shared,
            &format!(
                "Both proxies on CPU 1 at the same time, each driven by its own {HANDSHAKE_CONNS}-client handshake driver on CPU 0 for {}s, so both meet the same machine at every moment. CPU is each proxy's user+system time from /proc/PID/stat (nginx: its worker), divided by the handshakes it completed (each with its one proxied request).",
                p.secs
            ),
            &[
                ("handshakes per CPU ms", true),
                ("CPU µs per handshake", false),
                ("handshakes/s", true),
            ],
            &[NGINX],
        );
    }

    let certs = Certs::write(&rig.dir.join("tls-certs"))?;
    write_atomic(&rig.manifests().join("tls.yaml"), &certs.manifests)?;
    // No access log, as the peers have none (`bench http` measures its cost on its own).
    rig.start_controller_with("userspace", Some(SNAT_PORTS), &["--access-log", "off"])?;
    let upstream = format!("{}:{WEB_PORT}", backend_addr(1));
    let nginx_conf = peers::nginx_tls_proxy(
        &rig.dir.join("nginx-tls"),
        NODE,
        &[
            (8443, certs.rsa.crt.clone(), certs.rsa.key.clone()),
            (8444, certs.ecdsa.crt.clone(), certs.ecdsa.key.clone()),
        ],
        &upstream,
    )?;
    let nginx = peers::start_nginx(&rig.topo.node, &nginx_conf)?;
    let haproxy_conf = peers::haproxy_tls(
        &rig.dir.join("haproxy-tls"),
        NODE,
        &[
            (8445, certs.rsa.pem.clone()),
            (8446, certs.ecdsa.pem.clone()),
        ],
        &upstream,
    )?;
    let haproxy = peers::start_haproxy(&rig.topo.node, &haproxy_conf)?;
    let at = |port| SocketAddr::new(IpAddr::V4(NODE), port);
    rig.wait("nginx forks its worker", || {
        nginx_worker(nginx.0.id()).is_ok()
    })?;
    let targets = [
        Target {
            name: "xdp-ingress",
            pid: rig.controller_pid().context("the controller is running")?,
            rsa: at(443),
            ecdsa: at(443),
        },
        Target {
            name: NGINX,
            pid: nginx_worker(nginx.0.id())?,
            rsa: at(8443),
            ecdsa: at(8444),
        },
        Target {
            name: "HAProxy",
            pid: haproxy.0.id(),
            rsa: at(8445),
            ecdsa: at(8446),
        },
    ];
    for t in &targets {
        for w in [WORKLOADS[0], WORKLOADS[1]] {
            rig.wait(
                &format!("{} answers over TLS ({})", t.name, w.host()),
                || {
                    handshakes::run(&rig.topo.client, w.params(w.addr(t), 1, 0.2))
                        .is_ok_and(|r| r.done > 0 && r.errors == 0)
                },
            )?;
        }
    }

    for w in WORKLOADS {
        let mut runs: Vec<Vec<(Run, f64)>> = targets.iter().map(|_| Vec::new()).collect();
        for t in &targets {
            println!("tls: warm-up {} {}", t.name, w.table);
            handshakes::run(&rig.topo.client, w.params(w.addr(t), HANDSHAKE_CONNS, 1.0))?;
        }
        // Rounds over the targets, so drifting background load is shared alike.
        for round in 0..p.samples {
            for (i, t) in targets.iter().enumerate() {
                println!("tls: round {} {} {}", round + 1, t.name, w.table);
                let params = w.params(w.addr(t), HANDSHAKE_CONNS, f64::from(p.secs));
                runs[i].push(with_cpu(t.pid, || {
                    handshakes::run(&rig.topo.client, params)
                })?);
            }
        }
        for (t, runs) in targets.iter().zip(runs) {
            r.add(
                w.table,
                t.name,
                "CPU µs per handshake",
                runs.iter()
                    .map(|(h, cpu)| cpu * 1e6 / h.done.max(1) as f64)
                    .collect(),
            );
            let runs: Vec<Run> = runs.into_iter().map(|(h, _)| h).collect();
            r.add(
                w.table,
                t.name,
                "handshakes/s",
                runs.iter().map(|h| h.per_sec).collect(),
            );
            r.add(
                w.table,
                t.name,
                "resumed %",
                runs.iter()
                    .map(|h| 100.0 * h.resumed as f64 / h.done.max(1) as f64)
                    .collect(),
            );
            r.add(
                w.table,
                t.name,
                "errors",
                runs.iter().map(|h| h.errors as f64).collect(),
            );
        }
    }

    streams(rig, &mut r, &targets, p, STREAMS[0])?;
    // The same with the backend's worker beside the load generators, so each proxy has
    // its CPU to itself; put back afterwards for the rows that follow.
    let backend = nginx_worker(rig.web_server(1))?;
    pin(backend, LOAD_CPU)?;
    let apart = streams(rig, &mut r, &targets, p, STREAMS[1]);
    pin(backend, SERVER_CPU)?;
    apart?;

    let shared = [(&targets[0], targets[0].pid), (&targets[1], targets[1].pid)];
    for w in WORKLOADS {
        let mut samples: Vec<Vec<Shared>> = vec![Vec::new(); shared.len()];
        for round in 0..p.samples {
            println!(
                "tls: round {} of both proxies at once, {}",
                round + 1,
                w.table
            );
            for (i, s) in at_once(rig, w, &shared, p.secs)?.into_iter().enumerate() {
                samples[i].push(s);
            }
        }
        for ((t, _), runs) in shared.iter().zip(samples) {
            let per_ms = runs.iter().map(|s| s.done / (s.cpu_secs * 1e3)).collect();
            r.add(w.shared, t.name, "handshakes per CPU ms", per_ms);
            let us = runs.iter().map(|s| s.cpu_secs * 1e6 / s.done).collect();
            r.add(w.shared, t.name, "CPU µs per handshake", us);
            r.add(
                w.shared,
                t.name,
                "handshakes/s",
                runs.iter().map(|s| s.per_sec).collect(),
            );
        }
    }
    rig.stop_controller()?;
    r.note("Same backend for every row: nginx on backend 1 answering `return 200` (one worker, CPU 1; CPU 0 in the tables that say so). The proxies terminate TLS in the node namespace pinned to CPU 1 with the same certificates (RSA-2048 and ECDSA P-256 leaves from one CA): nginx 1 worker (OpenSSL; `ssl_session_cache shared:SSL:10m`, tickets on, `http2`), HAProxy nbthread 1 (OpenSSL; its default 20000-entry session cache, tickets on, `alpn h2,http/1.1`), xdp-ingress the controller's router (rustls with aws-lc-rs; stateless tickets shared by all workers, a 20000-entry session cache; `--access-log off`, as neither peer logs requests). Load generators run on CPU 0.");
    r.note("CPU µs per handshake or request: the proxy's user+system CPU time over the sample (from /proc/PID/stat; nginx: its worker) divided by what it completed. It does not depend on how much CPU the loaded machine left the proxy, so it is the steadier comparison when the load generator or other work limits the rate.");
    r.note("Keep-alive and HTTP/2 come twice, because on this 2-CPU machine no place for the backend leaves a proxy alone. On the proxy's CPU (CPU 1, as in every other table) each request also pays the backend's CPU, which dilutes the req/s ratios, and the backend preempts the proxy every few requests, which in keep-alive costs the peers more than the router (their CPU per request is lower with the backend away, the router's about the same). On CPU 0 the backend shares the load generator's CPU instead: where CPU 0 busy % is near 100, the load side limited the rate and the proxy ran below saturation, where every proxy spends more CPU per request (fewer requests per wake-up). A req/s ratio measures the proxies where CPU 1 is near 100% and CPU 0 is not.");
    r.note("About half of a proxy's CPU per proxied request is the kernel's (for the PGO-built router, three fifths), a third the upstream send alone: on loopback the send also runs the backend's receive path and wakes it. The rest is userspace, about a quarter of it the h2 crate's work per stream and a sixth memory moves, mostly inside h2 (perf on the router, HTTP/2).");
    r.note("Resumed rows: 10-20% of the connections find no ticket and do a full handshake: rustls's client keeps at most 8 TLS 1.3 tickets per server, fewer than the 16 clients that take one at once. The resumed % column shows each server's mix (a full RSA handshake in it costs the server about twice a resumed one).");
    r.note("`wrk -H 'Connection: close'` (the first measure in issue #20) does not measure full handshakes: wrk keeps its OpenSSL session across reconnects, so its connections resume. The handshake driver here offers sessions only in the resumed rows.");
    r.note("xdp-ingress picks the certificate by SNI (rsa.bench.test, ecdsa.bench.test; wrk sends the IP address as SNI, so keep-alive rows get the Ingress's host-less default, the RSA one); nginx and HAProxy serve one certificate per port.");
    Ok(r)
}

/// The keep-alive and HTTP/2 tables of one backend placement.
#[derive(Clone, Copy)]
struct Streams {
    keepalive: &'static str,
    h2: &'static str,
    /// Where the backend runs, for the tables' descriptions.
    backend: &'static str,
}

const STREAMS: [Streams; 2] = [
    Streams {
        keepalive: "HTTPS keep-alive, 64 connections",
        h2: "HTTP/2 over TLS, 16 connections x 10 streams",
        backend: "",
    },
    Streams {
        keepalive: "HTTPS keep-alive, 64 connections, backend on CPU 0",
        h2: "HTTP/2 over TLS, 16 connections x 10 streams, backend on CPU 0",
        backend: " The backend's nginx worker runs on CPU 0 beside the load generator, so the proxy has CPU 1 to itself.",
    },
];

/// One sample of a load tool's run: its result, the proxy's CPU seconds, and how busy
/// CPUs 0 and 1 were (%).
struct Sample<T> {
    run: T,
    cpu: f64,
    busy: [f64; 2],
}

/// Runs `f`, measuring process `pid`'s CPU time and the machine's CPUs meanwhile.
fn sample<T>(pid: u32, f: impl FnOnce() -> anyhow::Result<T>) -> anyhow::Result<Sample<T>> {
    let before = cpu_ticks()?;
    let (run, cpu) = with_cpu(pid, f)?;
    let after = cpu_ticks()?;
    let busy = std::array::from_fn(|i| {
        let total = (after[i].0 - before[i].0).max(1) as f64;
        100.0 * (after[i].1 - before[i].1) as f64 / total
    });
    Ok(Sample { run, cpu, busy })
}

/// (all, busy) ticks of CPUs 0 and 1 so far, from /proc/stat (busy: all but idle and
/// iowait).
fn cpu_ticks() -> anyhow::Result<[(u64, u64); 2]> {
    let stat = fs::read_to_string("/proc/stat")?;
    let mut out = [(0, 0); 2];
    for (i, slot) in out.iter_mut().enumerate() {
        let line = stat
            .lines()
            .find(|l| l.starts_with(&format!("cpu{i} ")))
            .with_context(|| format!("no cpu{i} in /proc/stat"))?;
        let ticks: Vec<u64> = line
            .split_whitespace()
            .skip(1)
            .take(8)
            .map(str::parse)
            .collect::<Result<_, _>>()?;
        let all: u64 = ticks.iter().sum();
        *slot = (all, all - ticks[3] - ticks[4]);
    }
    Ok(out)
}

/// The columns of a keep-alive or HTTP/2 table after the tool's own: the proxy's CPU per
/// request, and how busy each CPU was (a CPU near 100% is what limited the rate).
fn add_common<T>(
    r: &mut Results,
    table: &str,
    name: &str,
    runs: &[Sample<T>],
    requests: impl Fn(&T) -> f64,
) {
    let per_request = column(runs, |s| s.cpu * 1e6 / requests(&s.run).max(1.0));
    r.add(table, name, "CPU µs per request", per_request);
    for (i, col) in ["CPU 0 busy %", "CPU 1 busy %"].into_iter().enumerate() {
        r.add(table, name, col, column(runs, |s| s.busy[i]));
    }
}

/// One value per sample.
fn column<T>(runs: &[Sample<T>], f: impl Fn(&Sample<T>) -> f64) -> Vec<f64> {
    runs.iter().map(f).collect()
}

/// Keep-alive and HTTP/2 rounds over `targets`, into `s`'s tables.
fn streams(
    rig: &Rig,
    r: &mut Results,
    targets: &[Target],
    p: Params,
    s: Streams,
) -> anyhow::Result<()> {
    let mut ka: Vec<Vec<Sample<tools::Wrk>>> = targets.iter().map(|_| Vec::new()).collect();
    let mut h2: Vec<Vec<Sample<tools::H2load>>> = targets.iter().map(|_| Vec::new()).collect();
    let url = |t: &Target| format!("https://{}/", t.rsa);
    let h2_url = format!("https://{RSA_HOST}/");
    for t in targets {
        println!("tls: warm-up {} {} / {}", t.name, s.keepalive, s.h2);
        tools::wrk(&rig.topo.client, &url(t), RSA_HOST, KEEPALIVE_CONNS, 1)?;
        tools::h2load(&rig.topo.client, &h2_url, t.rsa, 16, 10, 1)?;
    }
    for round in 0..p.samples {
        for (i, t) in targets.iter().enumerate() {
            println!(
                "tls: round {} {} {} / {}",
                round + 1,
                t.name,
                s.keepalive,
                s.h2
            );
            ka[i].push(sample(t.pid, || {
                tools::wrk(&rig.topo.client, &url(t), RSA_HOST, KEEPALIVE_CONNS, p.secs)
            })?);
            h2[i].push(sample(t.pid, || {
                tools::h2load(&rig.topo.client, &h2_url, t.rsa, 16, 10, p.secs)
            })?);
        }
    }
    for ((t, ka), h2) in targets.iter().zip(ka).zip(h2) {
        r.add(s.keepalive, t.name, "req/s", column(&ka, |w| w.run.rps));
        r.add(s.keepalive, t.name, "p50 ms", column(&ka, |w| w.run.p50_ms));
        r.add(s.keepalive, t.name, "p99 ms", column(&ka, |w| w.run.p99_ms));
        r.add(
            s.keepalive,
            t.name,
            "errors",
            column(&ka, |w| w.run.errors as f64),
        );
        add_common(r, s.keepalive, t.name, &ka, |w| w.requests as f64);
        r.add(s.h2, t.name, "req/s", column(&h2, |h| h.run.rps));
        r.add(s.h2, t.name, "errors", column(&h2, |h| h.run.errors as f64));
        add_common(r, s.h2, t.name, &h2, |h| h.rps * f64::from(p.secs));
    }
    Ok(())
}

/// One proxy's share of a run with both loaded at once.
#[derive(Clone, Copy, Debug)]
struct Shared {
    done: f64,
    per_sec: f64,
    cpu_secs: f64,
}

/// Drives every `(target, pid)` with its own handshake driver at the same time.
fn at_once(
    rig: &Rig,
    w: Workload,
    proxies: &[(&Target, u32)],
    secs: u32,
) -> anyhow::Result<Vec<Shared>> {
    let before = proxies
        .iter()
        .map(|(_, pid)| cpu_secs(*pid))
        .collect::<anyhow::Result<Vec<_>>>()?;
    let runs = std::thread::scope(|scope| {
        let loads: Vec<_> = proxies
            .iter()
            .map(|(t, _)| {
                let params = w.params(w.addr(t), HANDSHAKE_CONNS, f64::from(secs));
                scope.spawn(move || handshakes::run(&rig.topo.client, params))
            })
            .collect();
        loads
            .into_iter()
            .map(|l| {
                l.join()
                    .map_err(|_| anyhow::anyhow!("handshake driver panicked"))?
            })
            .collect::<anyhow::Result<Vec<_>>>()
    })?;
    proxies
        .iter()
        .zip(before)
        .zip(runs)
        .map(|(((t, pid), before), h)| {
            let cpu = cpu_secs(*pid)? - before;
            anyhow::ensure!(
                h.done > 0 && cpu > 0.0,
                "{}: no handshakes or no CPU time in the shared run",
                t.name
            );
            Ok(Shared {
                done: h.done as f64,
                per_sec: h.per_sec,
                cpu_secs: cpu,
            })
        })
        .collect()
}

/// One certificate's files: PEM chain, PEM key, and both in one file (HAProxy's form).
struct CertFiles {
    crt: PathBuf,
    key: PathBuf,
    pem: PathBuf,
}

/// The bench certificates on disk and the controller's objects that use them.
struct Certs {
    rsa: CertFiles,
    ecdsa: CertFiles,
    manifests: String,
}

impl Certs {
    /// Signs an RSA-2048 leaf for `rsa.bench.test` and an ECDSA P-256 leaf for
    /// `ecdsa.bench.test`, writes them under `dir`, and makes the Secrets plus an Ingress
    /// `bench-tls` routing both hosts to the web Service (the RSA Secret also serves
    /// clients without a usable SNI).
    fn write(dir: &Path) -> anyhow::Result<Self> {
        fs::create_dir_all(dir)?;
        let ca = TestCa::new();
        let mut manifests = String::new();
        let mut files = Vec::new();
        for (name, host, alg) in [
            ("bench-rsa", RSA_HOST, &rcgen::PKCS_RSA_SHA256),
            ("bench-ecdsa", ECDSA_HOST, &rcgen::PKCS_ECDSA_P256_SHA256),
        ] {
            let secret = ca.secret_with(name, &[host], alg);
            let data = secret.data.as_ref().context("Secret data")?;
            let (crt, key) = (&data["tls.crt"].0, &data["tls.key"].0);
            let f = CertFiles {
                crt: dir.join(format!("{name}.crt")),
                key: dir.join(format!("{name}.key")),
                pem: dir.join(format!("{name}.pem")),
            };
            fs::write(&f.crt, crt)?;
            fs::write(&f.key, key)?;
            fs::write(&f.pem, [crt.as_slice(), key.as_slice()].concat())?;
            files.push(f);
            manifests.push_str(&serde_yaml::to_string(&secret)?);
            manifests.push_str("---\n");
        }
        let rule = |host: &str| {
            format!(
                "  - host: {host}\n    http:\n      paths:\n      - path: /\n        pathType: Prefix\n        backend: {{service: {{name: web, port: {{number: 80}}}}}}\n"
            )
        };
        manifests.push_str(&format!(
            "apiVersion: networking.k8s.io/v1\nkind: Ingress\nmetadata: {{name: bench-tls, namespace: default}}\nspec:\n  ingressClassName: xdp\n  tls:\n  - hosts: [{RSA_HOST}]\n    secretName: bench-rsa\n  - hosts: [{ECDSA_HOST}]\n    secretName: bench-ecdsa\n  - secretName: bench-rsa\n  rules:\n{}{}",
            rule(RSA_HOST),
            rule(ECDSA_HOST)
        ));
        let ecdsa = files.pop().context("ECDSA files")?;
        let rsa = files.pop().context("RSA files")?;
        Ok(Self {
            rsa,
            ecdsa,
            manifests,
        })
    }
}
