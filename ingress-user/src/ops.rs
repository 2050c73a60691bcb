//! Operations: what an operator relies on every day, beside the data planes.
//!
//! - [`health`]: the `--health-port` server (`/healthz`, `/readyz`, `/metrics`);
//! - [`metrics`]: the Prometheus exposition (router, controller, L4 kernel maps, L4 proxy);
//! - [`election`]: leader election on a `coordination.k8s.io/v1` Lease;
//! - [`status`]: the leader writes `status.loadBalancer.ingress` on served Ingresses;
//! - [`gateway_status`]: the leader writes Gateway API conditions on our objects;
//! - [`events`]: Kubernetes Events for Problems, rate-limited and aggregated.
//!
//! [`Ops`] is the handle `main.rs` holds: it knows readiness and the metrics sources.
//! [`kube::run`] runs the cluster-facing duties (election, status, events) in kube mode.

pub mod election;
pub mod events;
pub mod gateway_status;
pub mod health;
pub mod kube;
pub mod metrics;
pub mod status;

use std::sync::{
    Arc, Mutex, PoisonError,
    atomic::{AtomicBool, Ordering},
};

use arc_swap::ArcSwap;
use tokio::sync::watch;

use crate::{controller::ControllerHandle, snapshot::Snapshot};

/// Whether the controller should receive traffic: the source has synced (first Snapshot
/// published), the data planes are attached and have applied that Snapshot, and shutdown
/// has not started.
#[derive(Clone, Debug)]
pub struct Readiness {
    synced: watch::Receiver<bool>,
    /// The controller's latest Snapshot.
    published: Option<watch::Receiver<Arc<Snapshot>>>,
    /// Data planes that apply Snapshots on their own task, and whether each has caught up.
    planes: Arc<Mutex<Vec<Plane>>>,
    attached: Arc<AtomicBool>,
    draining: Arc<AtomicBool>,
}

/// A data plane's Snapshot in force. The controller turns ready when it publishes; the
/// plane applies the Snapshot a moment later on its own task. Until it has, a request
/// would meet the empty start-up configuration (404s), so `/readyz` waits for it once.
#[derive(Debug)]
struct Plane {
    /// What `/readyz` says while it lags.
    lagging: &'static str,
    current: Arc<ArcSwap<Snapshot>>,
    caught_up: bool,
}

impl Readiness {
    /// Readiness following the controller's `ready` channel; not attached, not draining.
    pub fn new(synced: watch::Receiver<bool>) -> Self {
        Self {
            synced,
            published: None,
            planes: Arc::default(),
            attached: Arc::new(AtomicBool::new(false)),
            draining: Arc::new(AtomicBool::new(false)),
        }
    }

    /// Readiness that also waits, once, for each plane given to [`Self::track_plane`] to
    /// apply the Snapshot published when the controller turned ready (or a later one).
    pub fn with_snapshots(
        synced: watch::Receiver<bool>,
        published: watch::Receiver<Arc<Snapshot>>,
    ) -> Self {
        Self {
            published: Some(published),
            ..Self::new(synced)
        }
    }

    /// Tracks a data plane's Snapshot cell (see [`Plane`]); `lagging` is what `/readyz`
    /// answers until it has caught up.
    pub fn track_plane(&self, lagging: &'static str, current: Arc<ArcSwap<Snapshot>>) {
        self.planes
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .push(Plane {
                lagging,
                current,
                caught_up: false,
            });
    }

    /// The first tracked plane that has not applied the latest Snapshot since the
    /// controller turned ready; a plane that has once stays caught up (later changes are
    /// applied within microseconds and must not flap readiness).
    fn lagging_plane(&self) -> Option<&'static str> {
        let published = self.published.as_ref()?;
        let latest = Arc::clone(&published.borrow());
        let mut planes = self.planes.lock().unwrap_or_else(PoisonError::into_inner);
        for p in planes.iter_mut().filter(|p| !p.caught_up) {
            if Arc::ptr_eq(&p.current.load(), &latest) {
                p.caught_up = true;
            } else {
                return Some(p.lagging);
            }
        }
        None
    }

    /// Marks the data planes as attached (listeners bound, eBPF programs attached).
    pub fn set_attached(&self) {
        self.attached.store(true, Ordering::Release);
    }

    /// Marks the start of shutdown: `/readyz` answers 503 from now on, for good.
    pub fn start_draining(&self) {
        self.draining.store(true, Ordering::Release);
    }

    /// Whether shutdown has started.
    pub fn draining(&self) -> bool {
        self.draining.load(Ordering::Acquire)
    }

    /// Why the controller is not ready, or `None` when it is.
    pub fn not_ready_reason(&self) -> Option<&'static str> {
        if self.draining() {
            Some("shutting down")
        } else if !*self.synced.borrow() {
            Some("sources not synced")
        } else if !self.attached.load(Ordering::Acquire) {
            Some("data planes not attached")
        } else if let Some(lagging) = self.lagging_plane() {
            Some(lagging)
        } else {
            None
        }
    }
}

/// The operations handle: readiness and metrics, shared by the health server and `main`.
#[derive(Clone, Debug)]
pub struct Ops {
    /// Readiness for `/readyz`.
    pub readiness: Readiness,
    /// The `/metrics` exporter.
    pub metrics: Arc<metrics::Exporter>,
}

impl Ops {
    /// Builds the handle from the controller and the metrics sources. Spawns a task that
    /// records Snapshot builds, so call it inside the tokio runtime.
    pub fn new(controller: &ControllerHandle, sources: metrics::Sources) -> Self {
        Self {
            readiness: Readiness::with_snapshots(
                controller.ready.clone(),
                controller.snapshots.clone(),
            ),
            metrics: Arc::new(metrics::Exporter::new(controller, sources)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// `/readyz` waits, once, for a tracked plane to apply the Snapshot the controller
    /// published when it turned ready; a later Snapshot it has not applied yet does not
    /// make it unready again.
    #[test]
    fn readiness_waits_once_for_a_plane_to_apply_the_snapshot() {
        let (ready_tx, ready) = watch::channel(false);
        let (snap_tx, snaps) = watch::channel(Arc::new(Snapshot::default()));
        let r = Readiness::with_snapshots(ready, snaps);
        let plane = Arc::new(ArcSwap::from(Arc::clone(&snap_tx.borrow())));
        r.track_plane("router lags", Arc::clone(&plane));
        r.set_attached();
        assert_eq!(r.not_ready_reason(), Some("sources not synced"));

        let first = Arc::new(Snapshot::default());
        snap_tx.send_replace(Arc::clone(&first));
        ready_tx.send_replace(true);
        assert_eq!(
            r.not_ready_reason(),
            Some("router lags"),
            "published, not applied"
        );
        plane.store(Arc::clone(&first));
        assert_eq!(r.not_ready_reason(), None, "applied");

        snap_tx.send_replace(Arc::new(Snapshot::default()));
        assert_eq!(
            r.not_ready_reason(),
            None,
            "caught up once: later changes do not flap"
        );
        r.start_draining();
        assert_eq!(r.not_ready_reason(), Some("shutting down"));
    }
}
