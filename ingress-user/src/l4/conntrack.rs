//! Conntrack housekeeping: the kernel creates and refreshes entries, userspace expires them
//! (the maps are plain hashes, so nothing is ever evicted behind a live flow's back) and
//! reports how full the table is.

use std::time::Duration;

use aya::{
    Ebpf,
    maps::{HashMap as BpfHashMap, MapData},
};
use ingress_common::{
    l4::{CtEntry, FlowKey, PROTO_TCP, ct},
    maps,
};

use super::L4Error;

/// Idle timeouts by flow state.
#[derive(Clone, Copy, Debug)]
pub struct Timeouts {
    /// TCP flows that are open.
    pub tcp_established: Duration,
    /// TCP flows after RST, or FIN from both sides.
    pub tcp_closed: Duration,
    /// UDP flows.
    pub udp: Duration,
}

impl Default for Timeouts {
    fn default() -> Self {
        Self {
            tcp_established: Duration::from_secs(3600),
            tcp_closed: Duration::from_secs(10),
            udp: Duration::from_secs(30),
        }
    }
}

/// The result of one collection pass.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct GcReport {
    /// Flows (forward entries) alive after the pass.
    pub flows: usize,
    /// Flows expired.
    pub expired: usize,
    /// Reply entries without a forward entry, removed.
    pub orphans: usize,
    /// Capacity of each direction's table.
    pub capacity: u32,
}

impl GcReport {
    /// Fraction of the forward table in use, for the fullness gauge.
    pub fn fullness(&self) -> f64 {
        if self.capacity == 0 {
            return 0.0;
        }
        self.flows as f64 / f64::from(self.capacity)
    }
}

/// CLOCK_MONOTONIC in nanoseconds: the clock `bpf_ktime_get_ns` reads.
pub fn monotonic_ns() -> u64 {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: `ts` is a valid out-pointer.
    unsafe { libc::clock_gettime(libc::CLOCK_MONOTONIC, &raw mut ts) };
    (ts.tv_sec as u64) * 1_000_000_000 + ts.tv_nsec as u64
}

/// Whether a flow with these merged states and last activity has expired at `now`.
pub fn expired(proto: u8, state: u8, last_seen_ns: u64, now_ns: u64, t: &Timeouts) -> bool {
    let idle = Duration::from_nanos(now_ns.saturating_sub(last_seen_ns));
    let limit = if proto != PROTO_TCP {
        t.udp
    } else if state & ct::RST != 0
        || state & (ct::FIN_FWD | ct::FIN_REV) == ct::FIN_FWD | ct::FIN_REV
    {
        t.tcp_closed
    } else {
        t.tcp_established
    };
    idle > limit
}

/// Expires idle flows (both directions together) and orphaned reply entries.
pub fn collect(ebpf: &mut Ebpf, t: &Timeouts) -> Result<GcReport, L4Error> {
    let now = monotonic_ns();
    let (fwd_entries, capacity) = {
        let map = ebpf
            .map(maps::CT_FWD)
            .ok_or(L4Error::MissingMap(maps::CT_FWD))?;
        let fwd: BpfHashMap<&MapData, FlowKey, CtEntry> =
            BpfHashMap::try_from(map).map_err(L4Error::map("open conntrack"))?;
        let entries: Vec<(FlowKey, CtEntry)> = fwd.iter().filter_map(Result::ok).collect();
        let capacity = match map {
            aya::maps::Map::HashMap(d) => d.info().map(|i| i.max_entries()).unwrap_or(0),
            _ => 0,
        };
        (entries, capacity)
    };
    let mut report = GcReport {
        capacity,
        ..GcReport::default()
    };
    let mut dead_fwd = Vec::new();
    let mut dead_rev = Vec::new();
    {
        let rev: BpfHashMap<&MapData, FlowKey, CtEntry> = BpfHashMap::try_from(
            ebpf.map(maps::CT_REV)
                .ok_or(L4Error::MissingMap(maps::CT_REV))?,
        )
        .map_err(L4Error::map("open conntrack"))?;
        for (k, e) in &fwd_entries {
            let peer = rev.get(&e.peer, 0).ok();
            let last = peer.map_or(e.last_seen_ns, |p| p.last_seen_ns.max(e.last_seen_ns));
            let state = peer.map_or(e.state, |p| p.state | e.state);
            if expired(k.proto, state, last, now, t) {
                dead_fwd.push(*k);
                dead_rev.push(e.peer);
            }
        }
        // Reply entries whose forward entry is gone (a race between two CPUs creating the
        // same flow, or an interrupted cleanup) expire on the closed-flow timeout.
        let fwd_keys: std::collections::HashSet<FlowKey> =
            fwd_entries.iter().map(|(k, _)| *k).collect();
        for (k, e) in rev.iter().filter_map(Result::ok) {
            if !fwd_keys.contains(&e.peer) && expired(k.proto, ct::RST, e.last_seen_ns, now, t) {
                dead_rev.push(k);
                report.orphans += 1;
            }
        }
    }
    {
        let mut fwd: BpfHashMap<&mut MapData, FlowKey, CtEntry> = BpfHashMap::try_from(
            ebpf.map_mut(maps::CT_FWD)
                .ok_or(L4Error::MissingMap(maps::CT_FWD))?,
        )
        .map_err(L4Error::map("open conntrack"))?;
        for k in &dead_fwd {
            let _ = fwd.remove(k);
        }
    }
    let mut rev: BpfHashMap<&mut MapData, FlowKey, CtEntry> = BpfHashMap::try_from(
        ebpf.map_mut(maps::CT_REV)
            .ok_or(L4Error::MissingMap(maps::CT_REV))?,
    )
    .map_err(L4Error::map("open conntrack"))?;
    for k in &dead_rev {
        let _ = rev.remove(k);
    }
    report.expired = dead_fwd.len();
    report.flows = fwd_entries.len() - dead_fwd.len();
    Ok(report)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn expiry_follows_protocol_and_tcp_state() {
        let t = Timeouts::default();
        let s = 1_000_000_000u64;
        let now = 10_000 * s;
        let cases = [
            ("udp idle past timeout", 17, 0, now - 31 * s, true),
            ("udp active", 17, 0, now - 5 * s, false),
            (
                "tcp open, long idle but under an hour",
                6,
                0,
                now - 600 * s,
                false,
            ),
            ("tcp open past an hour", 6, 0, now - 3601 * s, true),
            ("tcp reset, short idle", 6, ct::RST, now - 11 * s, true),
            (
                "tcp half closed stays",
                6,
                ct::FIN_FWD,
                now - 600 * s,
                false,
            ),
            (
                "tcp both FINs",
                6,
                ct::FIN_FWD | ct::FIN_REV,
                now - 11 * s,
                true,
            ),
            (
                "tcp both FINs, just now",
                6,
                ct::FIN_FWD | ct::FIN_REV,
                now - s,
                false,
            ),
        ];
        for (name, proto, state, last, want) in cases {
            assert_eq!(expired(proto, state, last, now, &t), want, "{name}");
        }
    }
}
