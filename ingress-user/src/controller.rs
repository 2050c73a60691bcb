//! The control loop: [`Update`]s from a source → [`Engine`] → `Arc<Snapshot>` on a watch
//! channel that both data planes read.
//!
//! - It runs on its own thread, so translating 10,000 Ingresses at start-up never stalls
//!   the tokio workers that serve traffic.
//! - Coalescing: it takes every update already queued before building, so a burst of
//!   changes becomes one Snapshot, and a change that arrives during a build waits for at
//!   most that build. There is no timer: a lone change is published at once.
//! - Nothing is published before the source's first [`Update::Synced`].
//! - A source that stops sending (e.g. lost its cluster) clears nothing: the last
//!   Snapshot keeps serving.
//! - Each Problem is logged once, when it first appears, and once when it is resolved.

use std::{
    collections::{BTreeMap, HashSet},
    sync::{
        Arc, Mutex,
        atomic::{AtomicU64, Ordering},
    },
    time::Instant,
};

use k8s_openapi::api::networking::v1::Ingress;
use tokio::sync::watch;
use tracing::{error, info, warn};

use crate::{
    config::{
        self, Change, Options, Problem, Snapshot, class::ClassFilter, incremental::Engine,
        problem::Severity,
    },
    ops::gateway_status::GatewayReport,
    source::{Update, UpdateRx},
};

/// Problems of the current Snapshot, counted by (kind, severity): the metrics label set.
pub type ProblemCounts = BTreeMap<(&'static str, Severity), u64>;

/// Counts a Snapshot's Problems by (kind, severity).
pub fn problem_counts(snapshot: &Snapshot) -> ProblemCounts {
    let mut counts = ProblemCounts::new();
    for p in &snapshot.problems {
        *counts.entry((p.kind, p.severity)).or_default() += 1;
    }
    counts
}

/// What the loop has done, for metrics and the health endpoint.
#[derive(Debug, Default)]
pub struct ControllerStats {
    /// Snapshots built and published.
    pub builds: AtomicU64,
    /// Duration of the last `config::build`, in microseconds.
    pub last_build_micros: AtomicU64,
    /// Problems of the current Snapshot by (kind, severity).
    pub problems: Mutex<ProblemCounts>,
}

/// Every Ingress the controller knows, and whether it is served (for the status writer).
pub type IngressList = Vec<(Arc<Ingress>, bool)>;

/// The receiving side of the controller, handed to the data planes.
#[derive(Clone, Debug)]
pub struct ControllerHandle {
    /// The Snapshot in force; starts as an empty Snapshot (everything 404, no L4 ports).
    pub snapshots: watch::Receiver<Arc<Snapshot>>,
    /// Becomes `true` once the first Snapshot from a synced source is published (readiness).
    pub ready: watch::Receiver<bool>,
    /// Every Ingress and whether it is served; republished when Ingresses or classes change.
    pub ingresses: watch::Receiver<Arc<IngressList>>,
    /// Gateway API status and the objects it is about; republished when it changes.
    pub gateways: watch::Receiver<Arc<GatewayReport>>,
    /// Counters.
    pub stats: Arc<ControllerStats>,
}

/// Starts the loop on its own thread. It ends when every sender of `updates` is dropped.
pub fn spawn(updates: UpdateRx, opts: Options) -> ControllerHandle {
    let (snap_tx, snapshots) = watch::channel(Arc::new(Snapshot::default()));
    let (ready_tx, ready) = watch::channel(false);
    let (ingresses_tx, ingresses) = watch::channel(Arc::new(IngressList::new()));
    let (gateways_tx, gateways) = watch::channel(Arc::new(GatewayReport::default()));
    let stats = Arc::new(ControllerStats::default());
    let out = Outputs {
        snapshots: snap_tx,
        ready: ready_tx,
        ingresses: ingresses_tx,
        gateways: gateways_tx,
        stats: stats.clone(),
    };
    std::thread::Builder::new()
        .name("xdp-ingress-controller".into())
        .spawn(move || run(updates, &opts, &out))
        .expect("spawning the controller thread");
    ControllerHandle {
        snapshots,
        ready,
        ingresses,
        gateways,
        stats,
    }
}

/// Where the loop publishes.
struct Outputs {
    snapshots: watch::Sender<Arc<Snapshot>>,
    ready: watch::Sender<bool>,
    ingresses: watch::Sender<Arc<IngressList>>,
    gateways: watch::Sender<Arc<GatewayReport>>,
    stats: Arc<ControllerStats>,
}

/// The loop itself (see the module docs); blocks the calling thread.
fn run(mut updates: UpdateRx, opts: &Options, out: &Outputs) {
    let mut engine = Engine::new(opts.clone());
    let mut logged = ProblemLog::default();
    let mut synced = false;
    while let Some(first) = updates.blocking_recv() {
        let started = Instant::now();
        let mut changes = 0usize;
        let mut take = |u: Update, engine: &mut Engine| match u {
            Update::Changes(batch) => {
                for change in batch {
                    let change = match change {
                        Change::Apply(o) => Change::Apply(o.reallocated()),
                        other => other,
                    };
                    changes += usize::from(engine.apply(change));
                }
            }
            Update::Synced => synced = true,
        };
        take(first, &mut engine);
        while let Ok(u) = updates.try_recv() {
            take(u, &mut engine);
        }
        if !synced || !engine.changed() {
            continue;
        }
        let (snapshot, work) = engine.snapshot();
        let took = started.elapsed();
        logged.log_new(&snapshot.problems);
        out.stats.builds.fetch_add(1, Ordering::Relaxed);
        out.stats.last_build_micros.store(
            u64::try_from(took.as_micros()).unwrap_or(u64::MAX),
            Ordering::Relaxed,
        );
        *out.stats
            .problems
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner) = problem_counts(&snapshot);
        info!(
            changes,
            ingresses_translated = work.ingresses,
            hosts_merged = work.hosts,
            routes = snapshot.http.len(),
            l4_services = snapshot.l4.len(),
            certificates = snapshot.tls.len(),
            problems = snapshot.problems.len(),
            build_ms = took.as_secs_f64() * 1e3,
            "snapshot published"
        );
        out.snapshots.send_replace(Arc::new(snapshot));
        out.ready.send_replace(true);
        if !Arc::ptr_eq(&out.gateways.borrow().statuses, engine.statuses()) {
            out.gateways.send_replace(Arc::new(gateway_report(&engine)));
        }
        if work.ingresses > 0 || out.ingresses.borrow().is_empty() {
            out.ingresses
                .send_replace(Arc::new(served_list(&engine, opts)));
        }
    }
}

/// The Gateway API statuses with the objects they are about.
fn gateway_report(engine: &Engine) -> GatewayReport {
    let objects = engine.objects();
    let statuses = engine.statuses().clone();
    let classes = statuses
        .classes
        .iter()
        .filter_map(|c| {
            objects
                .gateway_classes
                .get(&(String::new(), c.name.clone()))
                .cloned()
        })
        .collect();
    let gateways = statuses
        .gateways
        .iter()
        .filter_map(|g| objects.gateways.get(&g.key).cloned())
        .collect();
    let of_kind = |kind: &'static str| statuses.routes.iter().filter(move |r| r.kind == kind);
    let routes = of_kind("HTTPRoute")
        .filter_map(|r| objects.http_routes.get(&r.key).cloned())
        .collect();
    let tcp_routes = of_kind("TCPRoute")
        .filter_map(|r| objects.tcp_routes.get(&r.key).cloned())
        .collect();
    let udp_routes = of_kind("UDPRoute")
        .filter_map(|r| objects.udp_routes.get(&r.key).cloned())
        .collect();
    let tls_routes = of_kind("TLSRoute")
        .filter_map(|r| objects.tls_routes.get(&r.key).cloned())
        .collect();
    GatewayReport {
        statuses,
        classes,
        gateways,
        routes,
        tcp_routes,
        udp_routes,
        tls_routes,
    }
}

/// Every Ingress with whether it is served.
fn served_list(engine: &Engine, opts: &Options) -> IngressList {
    let objects = engine.objects();
    let classes = ClassFilter::new(objects.ingress_classes.values().map(|c| &**c), opts);
    objects
        .ingresses
        .values()
        .map(|i| (i.clone(), classes.serves(i)))
        .collect()
}

/// Remembers which Problems were logged, so each is logged once while it lasts.
#[derive(Default)]
struct ProblemLog {
    seen: HashSet<(config::ObjectRef, Option<String>, &'static str, String)>,
}

impl ProblemLog {
    fn log_new(&mut self, problems: &[Problem]) {
        let mut now = HashSet::with_capacity(problems.len());
        for p in problems {
            let key = (p.object.clone(), p.field.clone(), p.kind, p.message.clone());
            if !self.seen.contains(&key) {
                let object = p.object.to_string();
                let field = p.field.as_deref().unwrap_or("");
                match p.severity {
                    Severity::Error => error!(%object, field, kind = p.kind, "{}", p.message),
                    Severity::Warning => warn!(%object, field, kind = p.kind, "{}", p.message),
                }
            }
            now.insert(key);
        }
        for gone in self.seen.difference(&now) {
            info!(object = %gone.0, field = gone.1.as_deref().unwrap_or(""), kind = gone.2, "problem resolved");
        }
        self.seen = now;
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;
    use crate::{
        config::{
            Store,
            fixtures::{IngressBuilder, service},
        },
        source::{self, StoreFeed},
    };

    fn store(paths: &[&str]) -> Store {
        let mut s = Store::default();
        s.services
            .push(service("ns", "web", &[("http", 80, "8080")]));
        let mut b = IngressBuilder::new("ns", "i");
        for p in paths {
            b = b.path(p, "Prefix", "web", "80");
        }
        s.ingresses.push(b.build());
        s
    }

    async fn next(rx: &mut watch::Receiver<Arc<Snapshot>>) -> Arc<Snapshot> {
        tokio::time::timeout(Duration::from_secs(10), rx.changed())
            .await
            .expect("no Snapshot within 10 s")
            .unwrap();
        rx.borrow_and_update().clone()
    }

    #[tokio::test]
    async fn publishes_after_sync_and_keeps_the_last_snapshot_when_the_source_stops() {
        let (tx, rx) = source::channel();
        let mut h = spawn(rx, Options::default());
        tx.send(Update::Changes(store(&["/a"]).into_changes("t")))
            .unwrap();
        tokio::time::sleep(Duration::from_millis(50)).await;
        assert!(!*h.ready.borrow(), "nothing before Synced");
        assert!(h.snapshots.borrow().http.is_empty());

        tx.send(Update::Synced).unwrap();
        let s = next(&mut h.snapshots).await;
        assert!(s.http.route("h", "/a").is_some());
        // Readiness and the Ingress list follow the Snapshot (from another thread).
        let soon = Duration::from_secs(10);
        tokio::time::timeout(soon, h.ready.wait_for(|r| *r))
            .await
            .unwrap()
            .unwrap();
        tokio::time::timeout(soon, h.ingresses.wait_for(|l| l.len() == 1))
            .await
            .unwrap()
            .unwrap();

        drop(tx);
        tokio::time::sleep(Duration::from_millis(50)).await;
        assert!(
            h.snapshots.borrow().http.route("h", "/a").is_some(),
            "a source that stops keeps the last Snapshot"
        );
    }

    #[tokio::test]
    async fn a_burst_of_updates_ends_in_the_newest() {
        let (tx, rx) = source::channel();
        let mut feed = StoreFeed::new(tx);
        let mut h = spawn(rx, Options::default());
        for i in 0..50 {
            feed.publish(&store(&[&format!("/p{i}")]));
        }
        let mut s = next(&mut h.snapshots).await;
        while s.http.route("h", "/p49").is_none() {
            s = next(&mut h.snapshots).await;
        }
        assert!(s.http.route("h", "/p48").is_none());
    }

    #[tokio::test]
    async fn problem_counts_follow_the_current_snapshot() {
        let (tx, rx) = source::channel();
        let mut feed = StoreFeed::new(tx);
        let mut h = spawn(rx, Options::default());
        let mut s = store(&["/a"]);
        s.ingresses.push(
            IngressBuilder::new("ns", "bad")
                .path("/x", "Prefix", "nope", "80")
                .build(),
        );
        feed.publish(&s);
        next(&mut h.snapshots).await;
        let counts = h.stats.problems.lock().unwrap().clone();
        assert_eq!(
            counts,
            ProblemCounts::from([(("unknown_service", Severity::Error), 1)])
        );

        feed.publish(&store(&["/a"]));
        next(&mut h.snapshots).await;
        assert!(h.stats.problems.lock().unwrap().is_empty());
    }
}
