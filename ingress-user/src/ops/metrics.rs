//! The `/metrics` exposition (Prometheus text, names prefixed `xdp_ingress_`).
//!
//! Two kinds of metrics end up in one scrape:
//! - live ones updated where things happen (the router's [`HttpMetrics`], the Snapshot build
//!   histogram fed by a task watching the Snapshot channel) sit in a long-lived registry;
//! - values owned by someone else (controller counters, the userspace L4 proxy's atomics, the
//!   eBPF per-CPU maps) are read at scrape time into a per-scrape registry, so nothing is
//!   copied between scrapes and the kernel maps are read only when someone asks.

mod kernel;

use std::{
    fmt,
    path::PathBuf,
    sync::{Arc, Mutex, atomic::Ordering},
    time::{Duration, Instant, SystemTime},
};

use prometheus_client::{
    encoding::{
        EncodeLabelSet,
        text::{encode_eof, encode_registry},
    },
    metrics::{
        counter::Counter,
        family::Family,
        gauge::Gauge,
        histogram::{Histogram, exponential_buckets},
    },
    registry::Registry,
};
use tokio::sync::watch;
use tracing::debug;

pub use self::kernel::{KernelError, KernelStats};
use crate::{
    config::{L4Protocol, Snapshot, problem::Severity},
    controller::{ControllerHandle, ControllerStats},
    http::metrics::Metrics as HttpMetrics,
    l4::proxy::L4Proxy,
};

/// Prefix of every metric name.
pub const PREFIX: &str = "xdp_ingress";

/// How long a conntrack count is reused across scrapes (counting walks the whole table).
const CONNTRACK_CACHE: Duration = Duration::from_secs(10);

/// Where the exported values come from.
#[derive(Default)]
pub struct Sources {
    /// The L7 router's counters.
    pub http: Arc<HttpMetrics>,
    /// The userspace L4 proxy, if it runs.
    pub l4_proxy: Option<Arc<L4Proxy>>,
    /// The pin directory of the eBPF maps, if the kernel path is attached.
    pub kernel_maps: Option<PathBuf>,
    /// Whether this instance leads (kube mode's election); `None`: no election (0).
    pub leading: Option<watch::Receiver<bool>>,
    /// How the L4 services are served, for the build-info metric: `xdp`, `tc`, `auto`
    /// (the kernel path, as asked) or `userspace`.
    pub l4_mode: &'static str,
}

/// Labels of the build-info metric.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct BuildLabels {
    version: &'static str,
    git_commit: &'static str,
    l4_mode: &'static str,
}

/// The commit the binary was built from (`unknown` outside a git checkout).
pub const GIT_COMMIT: &str = env!("XDP_INGRESS_GIT_COMMIT");

/// Labels of a Problem gauge.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ProblemLabels {
    kind: &'static str,
    severity: &'static str,
}

/// Labels naming one L4 service (one ConfigMap entry).
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub(crate) struct L4Labels {
    protocol: &'static str,
    port: u16,
    service: String,
}

/// Labels naming one L4 service in one address family, for the kernel path's per-service
/// metrics: each family has its own counters, so both must be in the key.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct L4FamilyLabels {
    protocol: &'static str,
    family: &'static str,
    port: u16,
    service: String,
}

/// Labels of a per-service kernel drop counter.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct L4DropLabels {
    protocol: &'static str,
    family: &'static str,
    port: u16,
    service: String,
    reason: &'static str,
}

/// Labels of a global kernel packet counter.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct CounterLabels {
    counter: &'static str,
}

/// Labels of a kernel drop counter.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct DropLabels {
    reason: &'static str,
}

/// Labels of a userspace proxy byte counter.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct DirectionLabels {
    protocol: &'static str,
    port: u16,
    service: String,
    direction: &'static str,
}

/// Renders `/metrics`.
pub struct Exporter {
    registry: Registry,
    controller: Arc<ControllerStats>,
    snapshots: watch::Receiver<Arc<Snapshot>>,
    l4_proxy: Option<Arc<L4Proxy>>,
    kernel_maps: Option<PathBuf>,
    conntrack: Arc<Mutex<Option<(Instant, kernel::Conntrack)>>>,
    kernel_errors: Counter,
    map_update_seconds: Histogram,
    leading: Option<watch::Receiver<bool>>,
}

impl fmt::Debug for Exporter {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Exporter")
            .field("l4_proxy", &self.l4_proxy.is_some())
            .field("kernel_maps", &self.kernel_maps)
            .finish_non_exhaustive()
    }
}

impl Exporter {
    /// Registers the live metrics and starts the task that records Snapshot builds.
    pub fn new(controller: &ControllerHandle, sources: Sources) -> Self {
        let mut registry = Registry::with_prefix(PREFIX);
        sources.http.register(&mut registry);
        let build_seconds = Histogram::new(exponential_buckets(0.000_1, 2.0, 18));
        registry.register(
            "snapshot_build_duration_seconds",
            "Time config::build took to translate the Store into a Snapshot",
            build_seconds.clone(),
        );
        let last_success = Gauge::<f64, std::sync::atomic::AtomicU64>::default();
        registry.register(
            "snapshot_last_success_timestamp_seconds",
            "Unix time the last Snapshot was published",
            last_success.clone(),
        );
        let info = Family::<BuildLabels, Gauge>::default();
        info.get_or_create(&BuildLabels {
            version: env!("CARGO_PKG_VERSION"),
            git_commit: GIT_COMMIT,
            l4_mode: if sources.l4_mode.is_empty() {
                "userspace"
            } else {
                sources.l4_mode
            },
        })
        .set(1);
        registry.register(
            "build_info",
            "Always 1; the labels say which build runs and how it serves L4",
            info,
        );
        let kernel_errors = Counter::default();
        registry.register(
            "l4_map_read_errors",
            "Scrapes that could not read the pinned eBPF maps",
            kernel_errors.clone(),
        );
        let map_update_seconds = Histogram::new(exponential_buckets(0.000_05, 2.0, 18));
        registry.register(
            "l4_map_update_duration_seconds",
            "Time to program the eBPF maps for one Snapshot",
            map_update_seconds.clone(),
        );
        tokio::spawn(observe_builds(
            controller.snapshots.clone(),
            controller.stats.clone(),
            build_seconds,
            last_success,
        ));
        Self {
            registry,
            controller: controller.stats.clone(),
            snapshots: controller.snapshots.clone(),
            l4_proxy: sources.l4_proxy,
            kernel_maps: sources.kernel_maps,
            conntrack: Arc::default(),
            kernel_errors,
            map_update_seconds,
            leading: sources.leading,
        }
    }

    /// The histogram of eBPF map programming times: whoever applies a Snapshot to the maps
    /// (`l4::plane::run`) observes `Kernel::apply`'s duration in seconds here.
    pub fn l4_map_update(&self) -> Histogram {
        self.map_update_seconds.clone()
    }

    /// The exposition text of one scrape.
    pub async fn render(&self) -> String {
        let mut scrape = Registry::with_prefix(PREFIX);
        self.controller_metrics(&mut scrape);
        let snapshot = self.snapshots.borrow().clone();
        if let Some(proxy) = &self.l4_proxy {
            proxy_metrics(&mut scrape, proxy).await;
        }
        if let Some(dir) = &self.kernel_maps {
            let dir = dir.clone();
            let cache = self.conntrack.clone();
            let read = tokio::task::spawn_blocking(move || {
                let ct = {
                    let cached = *cache
                        .lock()
                        .unwrap_or_else(std::sync::PoisonError::into_inner);
                    match cached {
                        Some((at, ct)) if at.elapsed() < CONNTRACK_CACHE => Ok(ct),
                        _ => kernel::conntrack(&dir).inspect(|ct| {
                            *cache
                                .lock()
                                .unwrap_or_else(std::sync::PoisonError::into_inner) =
                                Some((Instant::now(), *ct));
                        }),
                    }
                };
                kernel::read(&dir).and_then(|stats| ct.map(|ct| (stats, ct)))
            })
            .await;
            match read {
                Ok(Ok((stats, ct))) => kernel_metrics(&mut scrape, &stats, ct, &snapshot),
                Ok(Err(e)) => {
                    debug!(error = %e, "reading eBPF maps for /metrics");
                    self.kernel_errors.inc();
                }
                Err(e) => {
                    debug!(error = %e, "eBPF map reader task");
                    self.kernel_errors.inc();
                }
            }
        }
        let mut out = String::with_capacity(8192);
        // Writing into a String cannot fail.
        let _ = encode_registry(&mut out, &self.registry);
        let _ = encode_registry(&mut out, &scrape);
        let _ = encode_eof(&mut out);
        out
    }

    fn controller_metrics(&self, r: &mut Registry) {
        let builds: Counter = Counter::default();
        builds.inc_by(self.controller.builds.load(Ordering::Relaxed));
        r.register("snapshot_builds", "Snapshots built and published", builds);
        let problems = Family::<ProblemLabels, Gauge>::default();
        let counts = self
            .controller
            .problems
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .clone();
        for ((kind, severity), n) in counts {
            let severity = match severity {
                Severity::Error => "error",
                Severity::Warning => "warning",
            };
            problems
                .get_or_create(&ProblemLabels { kind, severity })
                .set(i64::try_from(n).unwrap_or(i64::MAX));
        }
        r.register(
            "problems",
            "Problems in the current Snapshot, by kind and severity",
            problems,
        );
        let leader: Gauge = Gauge::default();
        leader.set(i64::from(
            self.leading.as_ref().is_some_and(|rx| *rx.borrow()),
        ));
        r.register(
            "leader",
            "1 while this instance holds the leader Lease (kube mode), else 0",
            leader,
        );
    }
}

/// Records one histogram sample and the success time per published Snapshot. Changes that
/// arrive faster than this task runs coalesce into one sample (the watch channel keeps only
/// the newest); the build counter is exact.
async fn observe_builds(
    mut snapshots: watch::Receiver<Arc<Snapshot>>,
    stats: Arc<ControllerStats>,
    build_seconds: Histogram,
    last_success: Gauge<f64, std::sync::atomic::AtomicU64>,
) {
    snapshots.mark_unchanged();
    if stats.builds.load(Ordering::Relaxed) > 0 {
        last_success.set(unix_now());
    }
    while snapshots.changed().await.is_ok() {
        let micros = stats.last_build_micros.load(Ordering::Relaxed);
        #[expect(clippy::cast_precision_loss, reason = "microseconds fit f64 exactly")]
        build_seconds.observe(micros as f64 / 1e6);
        last_success.set(unix_now());
    }
}

fn unix_now() -> f64 {
    SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)
        .map_or(0.0, |d| d.as_secs_f64())
}

fn family_label(family: u8) -> &'static str {
    if family == ingress_common::l4::FAMILY_V6 {
        "ipv6"
    } else {
        "ipv4"
    }
}

pub(crate) fn protocol_label(p: L4Protocol) -> &'static str {
    match p {
        L4Protocol::Tcp => "tcp",
        L4Protocol::Udp => "udp",
    }
}

async fn proxy_metrics(r: &mut Registry, proxy: &L4Proxy) {
    use crate::l4::proxy::stats::ServiceStats as S;
    let accepted = Family::<L4Labels, Counter>::default();
    let active = Family::<L4Labels, Gauge>::default();
    let bytes = Family::<DirectionLabels, Counter>::default();
    let connect_errors = Family::<L4Labels, Counter>::default();
    let no_endpoint = Family::<L4Labels, Counter>::default();
    let pp_errors = Family::<L4Labels, Counter>::default();
    let udp_sessions = Family::<L4Labels, Counter>::default();
    let udp_active = Family::<L4Labels, Gauge>::default();
    let udp_full = Family::<L4Labels, Counter>::default();
    for e in proxy.stats().await {
        let l = L4Labels {
            protocol: protocol_label(e.protocol),
            port: e.port,
            service: e.service.to_string(),
        };
        let s = &e.stats;
        let gauge = |v: u64| i64::try_from(v).unwrap_or(i64::MAX);
        accepted.get_or_create(&l).inc_by(S::get(&s.accepted));
        active.get_or_create(&l).set(gauge(S::get(&s.active)));
        for (direction, v) in [("in", &s.bytes_in), ("out", &s.bytes_out)] {
            bytes
                .get_or_create(&DirectionLabels {
                    protocol: l.protocol,
                    port: l.port,
                    service: l.service.clone(),
                    direction,
                })
                .inc_by(S::get(v));
        }
        connect_errors
            .get_or_create(&l)
            .inc_by(S::get(&s.connect_errors));
        no_endpoint.get_or_create(&l).inc_by(S::get(&s.no_endpoint));
        pp_errors
            .get_or_create(&l)
            .inc_by(S::get(&s.proxy_protocol_errors));
        udp_sessions
            .get_or_create(&l)
            .inc_by(S::get(&s.udp_sessions));
        udp_active
            .get_or_create(&l)
            .set(gauge(S::get(&s.udp_sessions_active)));
        udp_full
            .get_or_create(&l)
            .inc_by(S::get(&s.udp_sessions_full));
    }
    r.register(
        "l4_proxy_connections",
        "TCP connections accepted by the userspace L4 proxy",
        accepted,
    );
    r.register(
        "l4_proxy_active_connections",
        "TCP connections open in the userspace L4 proxy",
        active,
    );
    r.register(
        "l4_proxy_bytes",
        "Bytes relayed by the userspace L4 proxy (in = client to backend)",
        bytes,
    );
    r.register(
        "l4_proxy_connect_errors",
        "Failed connects to endpoints by the userspace L4 proxy",
        connect_errors,
    );
    r.register(
        "l4_proxy_no_endpoint",
        "Connections reset or datagrams dropped for lack of a working endpoint",
        no_endpoint,
    );
    r.register(
        "l4_proxy_proxy_protocol_errors",
        "Connections closed for a missing or malformed PROXY protocol header",
        pp_errors,
    );
    r.register(
        "l4_proxy_udp_sessions",
        "UDP sessions created by the userspace L4 proxy",
        udp_sessions,
    );
    r.register(
        "l4_proxy_udp_active_sessions",
        "UDP sessions open in the userspace L4 proxy",
        udp_active,
    );
    r.register(
        "l4_proxy_udp_sessions_full",
        "UDP datagrams dropped because the session table was full",
        udp_full,
    );
    let bind_errors: Counter = Counter::default();
    bind_errors.inc_by(proxy.bind_errors());
    r.register(
        "l4_proxy_bind_errors",
        "Listener binds of the userspace L4 proxy that failed",
        bind_errors,
    );
}

fn kernel_metrics(
    r: &mut Registry,
    stats: &KernelStats,
    ct: kernel::Conntrack,
    snapshot: &Snapshot,
) {
    use ingress_common::stats::Counter as C;
    let packets = Family::<L4FamilyLabels, Counter>::default();
    let bytes = Family::<L4FamilyLabels, Counter>::default();
    let flows = Family::<L4FamilyLabels, Counter>::default();
    let service_drops = Family::<L4DropLabels, Counter>::default();
    for s in &stats.services {
        let protocol = match s.proto {
            ingress_common::l4::PROTO_TCP => L4Protocol::Tcp,
            _ => L4Protocol::Udp,
        };
        let service = snapshot
            .l4
            .iter()
            .find(|l| l.protocol == protocol && l.port == s.port)
            .map(|l| l.service.to_string())
            .unwrap_or_default();
        let l = L4FamilyLabels {
            protocol: protocol_label(protocol),
            family: family_label(s.family),
            port: s.port,
            service,
        };
        packets.get_or_create(&l).inc_by(s.stats.packets);
        bytes.get_or_create(&l).inc_by(s.stats.bytes);
        flows.get_or_create(&l).inc_by(s.stats.new_flows);
        for (reason, v) in [
            ("snat_exhausted", s.stats.drop_snat_exhausted),
            ("ct_full", s.stats.drop_ct_full),
        ] {
            service_drops
                .get_or_create(&L4DropLabels {
                    protocol: l.protocol,
                    family: l.family,
                    port: l.port,
                    service: l.service.clone(),
                    reason,
                })
                .inc_by(v);
        }
    }
    r.register(
        "l4_service_packets",
        "Packets of L4 services forwarded in the kernel (both directions)",
        packets,
    );
    r.register(
        "l4_service_bytes",
        "Bytes of L4 services forwarded in the kernel (both directions)",
        bytes,
    );
    r.register(
        "l4_service_new_flows",
        "New flows of L4 services (conntrack entries created)",
        flows,
    );
    r.register(
        "l4_service_drops",
        "New flows of L4 services dropped in the kernel, by reason (no free SNAT port, conntrack full)",
        service_drops,
    );
    let counters = Family::<CounterLabels, Counter>::default();
    let drops = Family::<DropLabels, Counter>::default();
    for c in C::ALL {
        let v = stats.totals.get(c).packets;
        match c.name().strip_prefix("drop_") {
            Some(reason) => {
                drops.get_or_create(&DropLabels { reason }).inc_by(v);
            }
            None => {
                counters
                    .get_or_create(&CounterLabels { counter: c.name() })
                    .inc_by(v);
            }
        }
    }
    r.register(
        "l4_packets",
        "Packets seen by the eBPF programs, by counter (all services)",
        counters,
    );
    r.register(
        "l4_drops",
        "Packets dropped by the eBPF programs, by reason (all services)",
        drops,
    );
    let fullness = Gauge::<f64, std::sync::atomic::AtomicU64>::default();
    fullness.set(ct.fullness());
    r.register(
        "conntrack_fullness_ratio",
        "Share of the conntrack table (client to backend direction) in use",
        fullness,
    );
    let entries: Gauge = Gauge::default();
    entries.set(i64::try_from(ct.flows).unwrap_or(i64::MAX));
    r.register("conntrack_flows", "Flows in the conntrack table", entries);
}
