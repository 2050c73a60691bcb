//! The kernel half of the L4 plane at run time: follows the Snapshot, programs the eBPF
//! maps, expires conntrack entries and logs the counters. (The userspace proxy follows the
//! same Snapshot channel on its own: `L4Proxy::run`.)

use std::{
    net::IpAddr,
    sync::Arc,
    time::{Duration, Instant},
};

use prometheus_client::metrics::histogram::Histogram;

use tokio::sync::watch;
use tracing::{debug, info, warn};

use super::{
    Datapath, L4Error,
    conntrack::{self, GcReport, Timeouts},
    stats::Totals,
    sync::{ApplyReport, Limits, MapSync},
};
use crate::config::Snapshot;

/// The eBPF half: the loaded object and its map writer.
pub struct Kernel {
    /// The loaded programs and maps.
    pub datapath: Datapath,
    sync: MapSync,
    node_addrs: Vec<IpAddr>,
    timeouts: Timeouts,
}

impl Kernel {
    /// Wraps a loaded datapath, recovering what a previous controller wrote to the maps.
    pub fn new(
        mut datapath: Datapath,
        node_addrs: Vec<IpAddr>,
        timeouts: Timeouts,
    ) -> Result<Self, L4Error> {
        let o = datapath.options().clone();
        let sync = MapSync::recover(
            datapath.ebpf_mut(),
            Limits {
                maglev_size: o.maglev_size,
                max_services: o.max_services,
                max_backends: ingress_common::limits::MAX_BACKENDS,
            },
        )?;
        Ok(Self {
            datapath,
            sync,
            node_addrs,
            timeouts,
        })
    }

    /// Programs the maps for a Snapshot.
    pub fn apply(&mut self, snapshot: &Snapshot) -> Result<ApplyReport, L4Error> {
        self.sync
            .apply(self.datapath.ebpf_mut(), &snapshot.l4, &self.node_addrs)
    }

    /// One conntrack collection pass.
    pub fn collect(&mut self) -> Result<GcReport, L4Error> {
        conntrack::collect(self.datapath.ebpf_mut(), &self.timeouts)
    }

    /// How often conntrack is collected, from the timeouts.
    pub fn gc_interval(&self) -> Duration {
        self.timeouts.gc_interval()
    }

    /// The global packet counters.
    pub fn totals(&self) -> Result<Totals, L4Error> {
        self.datapath.stats()
    }
}

/// Follows `snapshots` until `shutdown` flips to true, then hands the kernel back (to detach
/// it or leave it pinned).
pub async fn run(
    mut kernel: Kernel,
    mut snapshots: watch::Receiver<Arc<Snapshot>>,
    map_update: Option<Histogram>,
    stats_interval: Duration,
    mut shutdown: watch::Receiver<bool>,
) -> Kernel {
    let mut gc = tokio::time::interval(kernel.gc_interval());
    let mut ticker = tokio::time::interval(if stats_interval.is_zero() {
        Duration::from_secs(86_400 * 365)
    } else {
        stats_interval
    });
    ticker.tick().await;
    let mut first = true;
    let mut watching = true;
    loop {
        if !first {
            tokio::select! {
                r = snapshots.changed(), if watching => if r.is_err() {
                    // The controller is gone: keep the maps as they are, keep collecting.
                    watching = false;
                    continue;
                },
                _ = gc.tick() => { collect(&mut kernel); continue; }
                _ = ticker.tick() => { log_totals(&kernel); continue; }
                _ = shutdown.changed() => break,
            }
        }
        first = false;
        let snapshot = snapshots.borrow_and_update().clone();
        let started = Instant::now();
        let applied = kernel.apply(&snapshot);
        if let Some(h) = &map_update {
            h.observe(started.elapsed().as_secs_f64());
        }
        match applied {
            Ok(r) => info!(
                services = snapshot.l4.len(),
                written = r.services_written,
                removed = r.services_removed,
                slots = r.slots_written,
                backends = r.backends_written,
                udp_flows_purged = r.udp_flows_purged,
                "L4 maps programmed"
            ),
            Err(e) => warn!(error = %e, "programming L4 maps; keeping the previous state"),
        }
        if *shutdown.borrow() {
            break;
        }
    }
    log_totals(&kernel);
    kernel
}

fn collect(k: &mut Kernel) {
    match k.collect() {
        Ok(r) => debug!(
            flows = r.flows,
            expired = r.expired,
            orphans = r.orphans,
            revived = r.revived,
            fullness = r.fullness(),
            "conntrack collected"
        ),
        Err(e) => warn!(error = %e, "conntrack collection"),
    }
}

fn log_totals(k: &Kernel) {
    match k.totals() {
        Ok(t) => {
            use ingress_common::stats::Counter as C;
            info!(
                seen = t.get(C::Seen).packets,
                tcp = t.get(C::Tcp).packets,
                udp = t.get(C::Udp).packets,
                new_flows = t.get(C::NewFlow).packets,
                forward = t.get(C::CtForward).packets,
                reply = t.get(C::CtReply).packets,
                redirected = t.get(C::Redirected).packets,
                deferred_to_tc = t.get(C::DeferredToTc).packets,
                no_endpoints = t.get(C::NoEndpoints).packets,
                drop_ct_full = t.get(C::DropCtFull).packets,
                drop_no_route = t.get(C::DropNoRoute).packets,
                malformed = t.get(C::Malformed).packets,
                icmp_translated = t.get(C::IcmpTranslated).packets,
                icmp_untranslated = t.get(C::IcmpUntranslated).packets,
                fragment_translated = t.get(C::FragmentTranslated).packets,
                fragment_untracked = t.get(C::FragmentUntracked).packets,
                "L4 packet counters"
            );
        }
        Err(e) => warn!(error = %e, "reading packet counters"),
    }
}
