//! Propagation at scale: the real `xdp-ingress` binary holding 10,000 Ingresses × 5 paths and
//! 50,000 endpoints, in file mode (200 manifest files) and in kube mode (the fake API server
//! in a process of its own, so the controller's RSS is its own). For each mode:
//!
//! 1. added Ingress → routed: create an Ingress with a new host, then poll the router on a
//!    keep-alive connection every millisecond until that host answers 200 (not the default
//!    backend's 404);
//! 2. endpoint change → routed: move a probe Service's only endpoint to another real backend
//!    on loopback and poll until that backend answers;
//! 3. the controller's peak RSS (VmHWM) after the initial sync and at the end;
//! 4. sustained churn: probe endpoint moves at a fixed rate, each checked by a sampler until
//!    the router shows it; controller CPU from `/proc/PID/stat` over the window.
//!
//! Latencies run from just before the write (file rename or API request) to the first
//! response that shows the change.

mod change;
mod http1;
mod objects;

use std::{
    io::{BufRead as _, BufReader},
    net::{Ipv4Addr, SocketAddr},
    path::{Path, PathBuf},
    process::{Child, Command, Stdio},
    sync::mpsc::{self, Receiver, TryRecvError},
    time::{Duration, Instant},
};

use anyhow::{Context as _, bail};

use self::{change::Changer, http1::Client, objects::ISSUE_16};
use crate::{
    bench::{Results, results::quantile},
    http_support::TestBackend,
    process::{IngressProcess, Source},
    target_bin,
};

/// Probe Services (each with an Ingress and a one-endpoint EndpointSlice). During churn each
/// moves every `PROBES / CHURN_RATE` seconds, so a change is overtaken by the next one to the
/// same probe only if the controller lags that much.
const PROBES: usize = 200;
/// How long the sampler's request cost is calibrated, back to back with nothing changing.
const CALIBRATE: Duration = Duration::from_secs(2);
/// Real backends the probes' endpoints move between (127.0.0.2 and up).
const BACKENDS: usize = 4;
/// Endpoint changes per second during churn.
const CHURN_RATE: u32 = 100;
/// How often the pollers ask the router.
const POLL: Duration = Duration::from_millis(1);
/// The churn sampler's pause between sweeps per pending change (at least [`POLL`]): when
/// the controller lags and many changes are pending, it polls less often rather than load
/// the router (and the CPU figure) with thousands of requests a second.
const PAUSE_PER_PENDING: Duration = Duration::from_micros(250);
/// A change not shown by then counts as not seen.
const SEEN_WITHIN: Duration = Duration::from_secs(10);
/// How long the initial sync may take.
const READY_WITHIN: Duration = Duration::from_secs(300);

/// The table the rows go to.
pub const TABLE: &str =
    "Change → routed, the real binary at 10,000 Ingresses × 5 paths, 50,000 endpoints";

/// Sizes of one run.
#[derive(Clone, Copy, Debug)]
pub struct Params {
    /// Samples of each single-change latency, per mode.
    pub samples: usize,
    /// Length of the churn window.
    pub churn_secs: u64,
}

#[derive(Clone, Copy, Debug)]
enum Mode {
    Files,
    Kube,
}

impl Mode {
    fn column(self) -> &'static str {
        match self {
            Self::Files => "files",
            Self::Kube => "kube",
        }
    }
}

/// What one mode measured.
struct Measured {
    mode: Mode,
    sync_secs: f64,
    rss_synced: f64,
    rss_peak: f64,
    added: Vec<Option<f64>>,
    moved: Vec<Option<f64>>,
    churn: Churn,
}

/// The churn window's tally.
#[derive(Default)]
struct Churn {
    made: usize,
    latencies: Vec<f64>,
    superseded: usize,
    unseen: usize,
    cpu_percent: f64,
    /// `cpu_percent` less the calibrated cost of the sampler's requests.
    net_cpu_percent: f64,
    probe_rps: f64,
}

/// Runs both modes and adds their rows to [`TABLE`] of `r`.
pub fn run(r: &mut Results, p: Params) -> anyhow::Result<()> {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()?;
    let backends: Vec<TestBackend> = rt.block_on(async {
        let mut v = Vec::new();
        for b in 0..BACKENDS {
            let ip = Ipv4Addr::new(127, 0, 0, 2 + u8::try_from(b).expect("few backends"));
            v.push(TestBackend::start_on(&format!("b{b}"), SocketAddr::from((ip, 0))).await);
        }
        v
    });
    let mut measured = Vec::new();
    // `BENCH_PROPAGATION_MODE=files|kube` measures one mode (e.g. while profiling).
    let only = std::env::var("BENCH_PROPAGATION_MODE").ok();
    for mode in [Mode::Files, Mode::Kube] {
        if only.as_deref().is_some_and(|m| m != mode.column()) {
            continue;
        }
        println!("propagation: {} mode", mode.column());
        measured.push(measure(&rt, mode, &backends, p)?);
    }
    report(r, &measured, p);
    Ok(())
}

/// A scratch directory, removed on drop.
struct Scratch(PathBuf);

impl Drop for Scratch {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// Each probe's version, and the backend that version points at.
struct Probes {
    versions: Vec<usize>,
    backends: Vec<(SocketAddr, String)>,
}

impl Probes {
    fn backend(&self, k: usize) -> &(SocketAddr, String) {
        &self.backends[(k + self.versions[k]) % self.backends.len()]
    }

    /// Bumps probe `k`'s version: its next backend (never the one it has now).
    fn next(&mut self, k: usize) -> (SocketAddr, String) {
        self.versions[k] += 1;
        self.backend(k).clone()
    }
}

fn measure(
    rt: &tokio::runtime::Runtime,
    mode: Mode,
    backends: &[TestBackend],
    p: Params,
) -> anyhow::Result<Measured> {
    let dir = Scratch(std::env::temp_dir().join(format!(
        "xdp-bench-propagation-{}-{}",
        std::process::id(),
        mode.column()
    )));
    let _ = std::fs::remove_dir_all(&dir.0);
    std::fs::create_dir_all(&dir.0)?;
    let mut probes = Probes {
        versions: vec![0; PROBES],
        backends: backends.iter().map(|b| (b.addr, b.name.clone())).collect(),
    };
    let initial: Vec<SocketAddr> = (0..PROBES).map(|k| probes.backend(k).0).collect();
    objects::write_all(&dir.0, ISSUE_16, &initial)?;
    let api = match mode {
        Mode::Files => None,
        Mode::Kube => Some(ApiServer::start(&dir.0)?),
    };
    let source = match &api {
        None => Source::Manifests(&dir.0),
        Some(api) => Source::Kube(&api.kubeconfig),
    };
    let started = Instant::now();
    let controller = rt
        .block_on(IngressProcess::start_with(source, &[], READY_WITHIN))
        .map_err(|log| anyhow::anyhow!("xdp-ingress did not become ready:\n{log}"))?;
    let sync_secs = started.elapsed().as_secs_f64();
    let pid = controller.pid().context("controller pid")?;
    let mut changer = match &api {
        None => Changer::files(&dir.0, initial),
        Some(api) => Changer::api(api.addr, initial),
    };
    let mut client = Client::new(controller.http);
    for k in 0..PROBES {
        let (_, name) = probes.backend(k).clone();
        poll(&mut client, &objects::probe_host(k), Instant::now(), |r| {
            r.first_line() == name
        })
        .with_context(|| format!("probe {k} never answered from {name}"))?;
    }
    let rss_synced = vm_hwm_mib(pid)?;
    println!(
        "  synced in {sync_secs:.1} s, VmHWM {rss_synced:.0} MiB, VmRSS {:.0} MiB",
        proc_status_mib(pid, "VmRSS:")?
    );

    let mut added = Vec::new();
    for j in 0..p.samples {
        settle();
        let t0 = Instant::now();
        changer.add_ingress(j)?;
        added.push(poll(&mut client, &objects::added_host(j), t0, |r| {
            r.status == 200
        }));
    }
    println!("  added Ingress: {added:.1?}");
    let mut moved = Vec::new();
    for j in 0..p.samples {
        settle();
        let k = j % PROBES;
        let (addr, name) = probes.next(k);
        let t0 = Instant::now();
        changer.move_probe(k, addr)?;
        moved.push(poll(&mut client, &objects::probe_host(k), t0, |r| {
            r.first_line() == name
        }));
    }
    println!("  endpoint change: {moved:.1?}");
    settle();
    let request_cpu = request_cpu_secs(&mut client, pid)?;
    let mut churn = churn(changer, probes, controller.http, pid, p.churn_secs)?;
    churn.net_cpu_percent = churn.cpu_percent - churn.probe_rps * request_cpu * 100.0;
    println!(
        "  churn: {:.0}% CPU less the sampler's requests ({:.0} µs of controller CPU each)",
        churn.net_cpu_percent,
        request_cpu * 1e6
    );
    let rss_peak = vm_hwm_mib(pid)?;
    drop(controller);
    drop(api);
    Ok(Measured {
        mode,
        sync_secs,
        rss_synced,
        rss_peak,
        added,
        moved,
        churn,
    })
}

/// Controller CPU seconds per proxied request: [`CALIBRATE`] of back-to-back requests to
/// probe 0 with nothing changing.
fn request_cpu_secs(client: &mut Client, pid: u32) -> anyhow::Result<f64> {
    let host = objects::probe_host(0);
    let (cpu0, sent0, start) = (cpu_secs(pid)?, client.sent, Instant::now());
    while start.elapsed() < CALIBRATE {
        client.get(&host)?;
    }
    Ok((cpu_secs(pid)? - cpu0) / (client.sent - sent0) as f64)
}

/// A pause between samples, so one change does not queue behind the last one's work.
fn settle() {
    std::thread::sleep(Duration::from_millis(200));
}

/// Polls `host` every [`POLL`] until a response satisfies `seen`: ms since `t0`, or None
/// after [`SEEN_WITHIN`].
fn poll(
    client: &mut Client,
    host: &str,
    t0: Instant,
    seen: impl Fn(&http1::Response) -> bool,
) -> Option<f64> {
    while t0.elapsed() < SEEN_WITHIN {
        if client.get(host).is_ok_and(|r| seen(&r)) {
            return Some(ms(t0.elapsed()));
        }
        std::thread::sleep(POLL);
    }
    None
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1e3
}

/// One endpoint move during churn, for the sampler to check.
struct Moved {
    probe: usize,
    expect: String,
    at: Instant,
}

/// `secs` seconds of [`CHURN_RATE`] probe moves per second, round robin over the probes,
/// each checked by [`sample`]; the controller's CPU over the window (until the last change
/// is seen or given up on).
fn churn(
    mut changer: Changer,
    mut probes: Probes,
    router: SocketAddr,
    pid: u32,
    secs: u64,
) -> anyhow::Result<Churn> {
    let total = usize::try_from(secs * u64::from(CHURN_RATE))?;
    let period = Duration::from_secs(1) / CHURN_RATE;
    let (tx, rx) = mpsc::channel();
    let cpu0 = cpu_secs(pid)?;
    let start = Instant::now();
    let writer = std::thread::spawn(move || -> anyhow::Result<()> {
        for i in 0..total {
            let due = start + period * u32::try_from(i)?;
            std::thread::sleep(due.saturating_duration_since(Instant::now()));
            let k = i % PROBES;
            let (addr, name) = probes.next(k);
            let at = Instant::now();
            changer.move_probe(k, addr)?;
            let _ = tx.send(Moved {
                probe: k,
                expect: name,
                at,
            });
        }
        Ok(())
    });
    let (mut tally, requests) = sample(&rx, router);
    let window = start.elapsed().as_secs_f64();
    writer
        .join()
        .map_err(|_| anyhow::anyhow!("churn writer panicked"))??;
    tally.cpu_percent = (cpu_secs(pid)? - cpu0) / window * 100.0;
    tally.probe_rps = requests as f64 / window;
    println!(
        "  churn: {} made, {} seen, {} superseded, {} unseen in {window:.1} s; CPU {:.0}%",
        tally.made,
        tally.latencies.len(),
        tally.superseded,
        tally.unseen,
        tally.cpu_percent
    );
    Ok(tally)
}

/// Checks every change from `rx` until the router shows it: one request per pending change
/// per sweep, sweeps [`PAUSE_PER_PENDING`] apart. A change overtaken by a newer one to the same probe
/// before it was seen counts as superseded. Returns the tally and the requests sent.
fn sample(rx: &Receiver<Moved>, router: SocketAddr) -> (Churn, u64) {
    let mut client = Client::new(router);
    let mut t = Churn::default();
    let mut pending: Vec<Moved> = Vec::new();
    let mut writing = true;
    loop {
        while writing {
            match rx.try_recv() {
                Ok(m) => {
                    t.made += 1;
                    if let Some(i) = pending.iter().position(|p| p.probe == m.probe) {
                        pending.remove(i);
                        t.superseded += 1;
                    }
                    pending.push(m);
                }
                Err(TryRecvError::Empty) => break,
                Err(TryRecvError::Disconnected) => writing = false,
            }
        }
        if !writing && pending.is_empty() {
            return (t, client.sent);
        }
        pending.retain(|m| {
            if m.at.elapsed() > SEEN_WITHIN {
                t.unseen += 1;
                return false;
            }
            let host = objects::probe_host(m.probe);
            let seen = client.get(&host).is_ok_and(|r| r.first_line() == m.expect);
            if seen {
                t.latencies.push(ms(m.at.elapsed()));
            }
            !seen
        });
        let pending = u32::try_from(pending.len()).unwrap_or(u32::MAX);
        std::thread::sleep(POLL.max(PAUSE_PER_PENDING * pending));
    }
}

/// The fake API server in a process of its own, seeded from a manifest directory.
struct ApiServer {
    child: Child,
    kubeconfig: PathBuf,
    addr: SocketAddr,
}

impl ApiServer {
    fn start(dir: &Path) -> anyhow::Result<Self> {
        let bin = target_bin(
            "fake-apiserver",
            "cargo build --release -p ingress-tests --bins",
        );
        let mut child = Command::new(bin)
            .arg("--load")
            .arg(dir)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .spawn()
            .context("start fake-apiserver")?;
        let mut line = String::new();
        let stdout = child.stdout.take().context("fake-apiserver stdout")?;
        BufReader::new(stdout).read_line(&mut line)?;
        let mut api = Self {
            child,
            kubeconfig: PathBuf::from(line.trim()),
            addr: SocketAddr::from(([127, 0, 0, 1], 0)),
        };
        let config = std::fs::read_to_string(&api.kubeconfig)
            .with_context(|| format!("fake-apiserver printed no kubeconfig ({line:?})"))?;
        let Some(server) = config
            .lines()
            .find_map(|l| l.trim().strip_prefix("server: http://"))
        else {
            bail!("no server in {config}");
        };
        api.addr = server.parse()?;
        Ok(api)
    }
}

impl Drop for ApiServer {
    fn drop(&mut self) {
        // SIGTERM, so it removes its kubeconfig directory.
        if let Ok(pid) = i32::try_from(self.child.id()) {
            // SAFETY: signalling our own child by pid.
            unsafe { libc::kill(pid, libc::SIGTERM) };
        }
        let _ = self.child.wait();
    }
}

/// Peak resident set (VmHWM) of process `pid`, in MiB.
fn vm_hwm_mib(pid: u32) -> anyhow::Result<f64> {
    proc_status_mib(pid, "VmHWM:")
}

/// A memory field of `/proc/PID/status`, in MiB.
fn proc_status_mib(pid: u32, field: &str) -> anyhow::Result<f64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status"))?;
    let kib: f64 = status
        .lines()
        .find_map(|l| l.strip_prefix(field))
        .and_then(|v| v.split_whitespace().next())
        .with_context(|| field.to_owned())?
        .parse()?;
    Ok(kib / 1024.0)
}

/// CPU time (user + system) process `pid` has used, in seconds.
fn cpu_secs(pid: u32) -> anyhow::Result<f64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat"))?;
    // Fields after the command name: state is the first, utime the 12th, stime the 13th.
    let rest = stat.rsplit_once(')').context("/proc/PID/stat")?.1;
    let fields: Vec<&str> = rest.split_whitespace().collect();
    let ticks: f64 = fields.get(11).context("utime")?.parse::<f64>()?
        + fields.get(12).context("stime")?.parse::<f64>()?;
    // SAFETY: sysconf has no preconditions.
    let hz = unsafe { libc::sysconf(libc::_SC_CLK_TCK) };
    Ok(ticks / hz as f64)
}

/// p50 and p99 of the seen samples, and how many were not seen.
fn percentiles(samples: &[Option<f64>]) -> (f64, f64, usize) {
    let seen: Vec<f64> = samples.iter().flatten().copied().collect();
    (
        quantile(&seen, 0.5),
        quantile(&seen, 0.99),
        samples.len() - seen.len(),
    )
}

fn report(r: &mut Results, measured: &[Measured], p: Params) {
    let columns: Vec<(&str, bool)> = measured.iter().map(|m| (m.mode.column(), false)).collect();
    r.table(
        TABLE,
        &format!(
            "The release binary on loopback (`--l4-mode userspace`): files = `--manifests` over 200 files, kube = kube-rs watchers against the fake API server in its own process. Latency from the write (rename into place, or the API request) to the first response that shows the change, polled every ms on a keep-alive connection; {} samples of each single change, churn of {CHURN_RATE} EndpointSlice changes/s for {} s",
            p.samples, p.churn_secs
        ),
        &columns,
        &[],
    );
    for m in measured {
        let col = m.mode.column();
        let mut add = |row: &str, v: f64| r.add(TABLE, row, col, vec![v]);
        add("initial sync until ready (s)", m.sync_secs);
        let (p50, p99, missed_added) = percentiles(&m.added);
        add("added Ingress → routed, p50 (ms)", p50);
        add("added Ingress → routed, p99 (ms)", p99);
        let (p50, p99, missed_moved) = percentiles(&m.moved);
        add("endpoint change → routed, p50 (ms)", p50);
        add("endpoint change → routed, p99 (ms)", p99);
        add(
            "single changes not seen within 10 s",
            (missed_added + missed_moved) as f64,
        );
        add(
            "controller RSS after initial sync (VmHWM, MiB)",
            m.rss_synced,
        );
        add("controller peak RSS at the end (VmHWM, MiB)", m.rss_peak);
        let c = &m.churn;
        add("churn: EndpointSlice changes made", c.made as f64);
        add("churn: changes seen", c.latencies.len() as f64);
        add(
            "churn: superseded before seen / not seen in 10 s",
            (c.superseded + c.unseen) as f64,
        );
        add(
            "churn: change → routed, p50 (ms)",
            quantile(&c.latencies, 0.5),
        );
        add(
            "churn: change → routed, p99 (ms)",
            quantile(&c.latencies, 0.99),
        );
        add("churn: controller CPU (% of one core)", c.cpu_percent);
        add(
            "churn: controller CPU less the sampler's requests (%)",
            c.net_cpu_percent,
        );
        add(
            "churn: sampler requests through the router (/s)",
            c.probe_rps,
        );
    }
    for (row, target) in [
        ("added Ingress → routed, p99 (ms)", "< 20 (#16)"),
        ("endpoint change → routed, p99 (ms)", "< 20 (#16)"),
        ("controller peak RSS at the end (VmHWM, MiB)", "< 200 (#16)"),
        ("churn: changes seen", "all (#16)"),
        ("churn: change → routed, p99 (ms)", "< 50 (#16)"),
    ] {
        r.target(TABLE, row, target);
    }
    r.note(format!("Propagation: the scale set is the `scale` example's (10,000 Ingresses in 100 namespaces, 5 paths each, one Service and one EndpointSlice of 5 endpoints per Ingress), plus {PROBES} probe Services in namespace `bench`, each with an Ingress and a one-endpoint EndpointSlice ({per_file} slices per manifest file) pointing at one of {BACKENDS} real HTTP backends on 127.0.0.2–{last}, each answering with its name. Added Ingresses route to a probe (seen: 200 instead of the default backend's 404); an endpoint change moves a probe to the next backend (seen: that backend answers).", last = 1 + BACKENDS, per_file = objects::SLICES_PER_FILE));
    r.note(format!("Churn: changes go round robin over the probes on a fixed schedule (each probe moves every {every} s); a sampler thread sends one request per unconfirmed change per sweep, with a pause of max(1 ms, 0.25 ms × pending changes) between sweeps, so a latency reads high by up to a sweep and a pause: about 1 ms with a few changes pending, tens of ms when the controller lags by hundreds of changes. A change overtaken by the next change to the same probe before it was seen counts as superseded, not seen. Controller CPU is utime+stime from /proc/PID/stat over the window (start of churn to the last change seen), divided by its wall time; it includes proxying the sampler's requests (rate shown), so it is also shown less their cost, calibrated before the churn from 2 s of back-to-back requests with nothing changing (clock-tick resolution, 10 ms).", every = PROBES / CHURN_RATE as usize));
}
