//! The control loop: newest [`Store`] from a source → debounce → [`config::build`] →
//! `Arc<Snapshot>` on a watch channel that both data planes read.
//!
//! Sources replace the whole Store on every change, so a burst of changes collapses into one
//! build: a change after a quiet period is built at once, and changes within [`DEBOUNCE`] of
//! the last build wait out the rest of that window and are built together from whatever
//! Store is newest (at most one build per window, no added latency for a lone change). The build runs on the blocking pool (10,000 Ingresses take a while).
//! A source that goes back to `None` (e.g. lost its cluster) does not clear anything: the
//! last Snapshot keeps serving. Each Problem is logged once, when it first appears.

use std::{
    collections::{BTreeMap, HashSet},
    sync::{
        Arc, Mutex,
        atomic::{AtomicU64, Ordering},
    },
    time::{Duration, Instant},
};

use tokio::sync::watch;
use tracing::{error, info, warn};

use crate::{
    config::{self, Options, Problem, Snapshot, problem::Severity},
    source::StoreRx,
};

/// The shortest time between two builds; changes inside it are coalesced.
pub const DEBOUNCE: Duration = Duration::from_millis(20);

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

/// The receiving side of the controller, handed to the data planes.
#[derive(Clone, Debug)]
pub struct ControllerHandle {
    /// The Snapshot in force; starts as an empty Snapshot (everything 404, no L4 ports).
    pub snapshots: watch::Receiver<Arc<Snapshot>>,
    /// Becomes `true` once the first Snapshot from a synced source is published (readiness).
    pub ready: watch::Receiver<bool>,
    /// Counters.
    pub stats: Arc<ControllerStats>,
}

/// Starts the loop on the current tokio runtime. It ends when `stores`' sender is dropped.
pub fn spawn(stores: StoreRx, opts: Options) -> ControllerHandle {
    let (snap_tx, snapshots) = watch::channel(Arc::new(Snapshot::default()));
    let (ready_tx, ready) = watch::channel(false);
    let stats = Arc::new(ControllerStats::default());
    tokio::spawn(run(stores, opts, snap_tx, ready_tx, stats.clone()));
    ControllerHandle {
        snapshots,
        ready,
        stats,
    }
}

/// The loop itself (see the module docs). Public so tests and `check` can drive it.
pub async fn run(
    mut stores: StoreRx,
    opts: Options,
    snapshots: watch::Sender<Arc<Snapshot>>,
    ready: watch::Sender<bool>,
    stats: Arc<ControllerStats>,
) {
    let opts = Arc::new(opts);
    let mut logged = ProblemLog::default();
    // Build at once if the source already published before we started.
    let mut pending = stores.borrow_and_update().is_some();
    let mut last_build: Option<Instant> = None;
    loop {
        if !pending {
            if stores.changed().await.is_err() {
                return;
            }
            if let Some(at) = last_build {
                tokio::time::sleep_until((at + DEBOUNCE).into()).await;
            }
        }
        pending = false;
        let Some(store) = stores.borrow_and_update().clone() else {
            continue; // source lost sync: keep serving the last Snapshot
        };
        let o = opts.clone();
        let started = Instant::now();
        let Ok(snapshot) = tokio::task::spawn_blocking(move || config::build(&store, &o)).await
        else {
            error!("config::build panicked; keeping the last Snapshot");
            continue;
        };
        let took = started.elapsed();
        last_build = Some(Instant::now());
        logged.log_new(&snapshot.problems);
        stats.builds.fetch_add(1, Ordering::Relaxed);
        stats.last_build_micros.store(
            u64::try_from(took.as_micros()).unwrap_or(u64::MAX),
            Ordering::Relaxed,
        );
        *stats
            .problems
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner) = problem_counts(&snapshot);
        info!(
            routes = snapshot.http.len(),
            l4_services = snapshot.l4.len(),
            certificates = snapshot.tls.len(),
            problems = snapshot.problems.len(),
            build_ms = took.as_secs_f64() * 1e3,
            "snapshot published"
        );
        snapshots.send_replace(Arc::new(snapshot));
        ready.send_replace(true);
    }
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
    use super::*;
    use crate::config::{
        Store,
        fixtures::{IngressBuilder, service},
    };

    fn store(paths: &[&str]) -> Arc<Store> {
        let mut s = Store::default();
        s.services
            .push(service("ns", "web", &[("http", 80, "8080")]));
        let mut b = IngressBuilder::new("ns", "i");
        for p in paths {
            b = b.path(p, "Prefix", "web", "80");
        }
        s.ingresses.push(b.build());
        Arc::new(s)
    }

    async fn next(rx: &mut watch::Receiver<Arc<Snapshot>>) -> Arc<Snapshot> {
        tokio::time::timeout(Duration::from_secs(10), rx.changed())
            .await
            .expect("no Snapshot within 10 s")
            .unwrap();
        rx.borrow_and_update().clone()
    }

    #[tokio::test]
    async fn publishes_after_sync_and_keeps_the_last_snapshot_when_the_source_loses_it() {
        let (tx, rx) = watch::channel(None);
        let mut h = spawn(rx, Options::default());
        assert!(!*h.ready.borrow());
        assert!(h.snapshots.borrow().http.is_empty());

        tx.send_replace(Some(store(&["/a"])));
        let s = next(&mut h.snapshots).await;
        assert!(s.http.route("h", "/a").is_some());
        assert!(*h.ready.borrow());

        tx.send_replace(None);
        tx.send_replace(Some(store(&["/a", "/b"])));
        let s = next(&mut h.snapshots).await;
        assert!(s.http.route("h", "/b").is_some());

        tx.send_replace(None);
        tokio::time::sleep(DEBOUNCE * 5).await;
        assert!(
            h.snapshots.borrow().http.route("h", "/b").is_some(),
            "None keeps the last Snapshot"
        );
        assert!(h.stats.builds.load(Ordering::Relaxed) >= 2);
    }

    #[tokio::test]
    async fn a_burst_of_stores_ends_in_the_newest() {
        let (tx, rx) = watch::channel(None);
        let mut h = spawn(rx, Options::default());
        for i in 0..50 {
            tx.send_replace(Some(store(&[&format!("/p{i}")])));
        }
        let mut s = next(&mut h.snapshots).await;
        while s.http.route("h", "/p49").is_none() {
            s = next(&mut h.snapshots).await;
        }
        assert!(s.http.route("h", "/p48").is_none());
        assert!(
            h.stats.builds.load(Ordering::Relaxed) < 50,
            "debounced into fewer builds"
        );
    }

    #[tokio::test]
    async fn problem_counts_follow_the_current_snapshot() {
        let (tx, rx) = watch::channel(None);
        let mut h = spawn(rx, Options::default());
        let mut s = (*store(&["/a"])).clone();
        s.ingresses.push(
            IngressBuilder::new("ns", "bad")
                .path("/x", "Prefix", "nope", "80")
                .build(),
        );
        tx.send_replace(Some(Arc::new(s)));
        next(&mut h.snapshots).await;
        let counts = h.stats.problems.lock().unwrap().clone();
        assert_eq!(
            counts,
            ProblemCounts::from([(("unknown_service", Severity::Error), 1)])
        );

        tx.send_replace(Some(store(&["/a"])));
        next(&mut h.snapshots).await;
        assert!(h.stats.problems.lock().unwrap().is_empty());
    }
}
