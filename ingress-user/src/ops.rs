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
    Arc,
    atomic::{AtomicBool, Ordering},
};

use tokio::sync::watch;

use crate::controller::ControllerHandle;

/// Whether the controller should receive traffic: the source has synced (first Snapshot
/// published), the data planes are attached, and shutdown has not started.
#[derive(Clone, Debug)]
pub struct Readiness {
    synced: watch::Receiver<bool>,
    attached: Arc<AtomicBool>,
    draining: Arc<AtomicBool>,
}

impl Readiness {
    /// Readiness following the controller's `ready` channel; not attached, not draining.
    pub fn new(synced: watch::Receiver<bool>) -> Self {
        Self {
            synced,
            attached: Arc::new(AtomicBool::new(false)),
            draining: Arc::new(AtomicBool::new(false)),
        }
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
            readiness: Readiness::new(controller.ready.clone()),
            metrics: Arc::new(metrics::Exporter::new(controller, sources)),
        }
    }
}
