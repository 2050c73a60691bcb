//! Conntrack housekeeping: the kernel creates and refreshes entries, userspace expires them
//! (the maps are plain hashes, so nothing is ever evicted behind a live flow's back) and
//! reports how full the table is. A pass reads, then deletes; whatever a packet refreshed in
//! between is kept ([`sweep`]).

use std::{
    collections::{HashMap, HashSet},
    os::fd::{AsFd as _, AsRawFd as _, RawFd},
    time::Duration,
};

use aya::{
    Ebpf,
    maps::{HashMap as BpfHashMap, MapData},
};
use ingress_common::{
    l4::{Backend, CtEntry, FlowKey, PROTO_TCP, PROTO_UDP, ct},
    maps,
};

use super::{L4Error, bpf_take};

/// Idle timeouts by flow state (see [`timeout`] for which applies when).
#[derive(Clone, Copy, Debug)]
pub struct Timeouts {
    /// Embryonic TCP flows: opened, handshake not complete (`--tcp-syn-timeout`).
    pub tcp_syn: Duration,
    /// TCP flows that are open (`--tcp-timeout`).
    pub tcp_established: Duration,
    /// TCP flows after FIN from both sides (`--tcp-close-timeout`).
    pub tcp_closed: Duration,
    /// UDP flows (`--udp-timeout`).
    pub udp: Duration,
}

impl Default for Timeouts {
    fn default() -> Self {
        Self {
            tcp_syn: Duration::from_secs(10),
            tcp_established: Duration::from_secs(3600),
            tcp_closed: Duration::from_secs(10),
            udp: Duration::from_secs(30),
        }
    }
}

/// How often conntrack is collected at most (a pass walks the whole table).
const GC_INTERVAL_MAX: Duration = Duration::from_secs(5);
/// How often conntrack is collected at least.
const GC_INTERVAL_MIN: Duration = Duration::from_secs(1);

impl Timeouts {
    /// How often to collect: half the shortest TCP state timeout, between 1 s and 5 s, so an
    /// embryonic or closed flow is gone at most that long after its timeout (5 s with the
    /// defaults; 1 s with `--tcp-syn-timeout 2`).
    pub fn gc_interval(&self) -> Duration {
        (self.tcp_syn.min(self.tcp_closed) / 2).clamp(GC_INTERVAL_MIN, GC_INTERVAL_MAX)
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
    /// Flows read as expired but refreshed by a packet before they were deleted, kept.
    pub revived: usize,
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

/// The idle timeout of a flow whose two entries' `ct::*` bits, merged, are `state`:
///
/// | flow | timeout |
/// |---|---|
/// | UDP | `udp` |
/// | TCP with a believed RST (either side, any state) | zero: gone at the next pass |
/// | TCP with FIN seen from both sides, or an unverified RST | `tcp_closed` |
/// | TCP embryonic (handshake not complete) | `tcp_syn` |
/// | TCP established | `tcp_established` |
pub fn timeout(proto: u8, state: u8, t: &Timeouts) -> Duration {
    if proto != PROTO_TCP {
        t.udp
    } else if state & ct::RST != 0 {
        Duration::ZERO
    } else if ct::closed(state) {
        t.tcp_closed
    } else if state & ct::EMBRYONIC != 0 {
        t.tcp_syn
    } else {
        t.tcp_established
    }
}

/// Whether a flow with these merged states and last activity has expired at `now`.
pub fn expired(proto: u8, state: u8, last_seen_ns: u64, now_ns: u64, t: &Timeouts) -> bool {
    let idle = Duration::from_nanos(now_ns.saturating_sub(last_seen_ns));
    idle > timeout(proto, state, t)
}

/// A flow a collection pass read as expired: its key and both entries as they were.
#[derive(Clone, Copy, Debug)]
pub struct Expired {
    /// The forward (client-side) key.
    pub key: FlowKey,
    /// The forward entry as read.
    pub fwd: CtEntry,
    /// The reply entry as read, if it was there.
    pub rev: Option<CtEntry>,
}

/// What the reading half of a pass found ([`plan`]); [`sweep`] acts on it.
#[derive(Clone, Debug, Default)]
pub struct Plan {
    /// Flows expired when read.
    pub expired: Vec<Expired>,
    /// Reply entries without a forward entry, idle past the closed-flow timeout.
    pub orphans: Vec<FlowKey>,
    /// Forward entries read.
    pub flows: usize,
    /// Capacity of each direction's table.
    pub capacity: u32,
}

/// Whether a flow is expired at `now`, from its forward entry and its reply entry (if any):
/// the two entries' state bits merged, the later of their last activity.
pub fn flow_expired(
    proto: u8,
    fwd: &CtEntry,
    rev: Option<&CtEntry>,
    now_ns: u64,
    t: &Timeouts,
) -> bool {
    let last = rev.map_or(fwd.last_seen_ns, |r| r.last_seen_ns.max(fwd.last_seen_ns));
    let state = rev.map_or(fwd.state, |r| r.state | fwd.state);
    expired(proto, state, last, now_ns, t)
}

/// Expires idle flows (both directions together) and orphaned reply entries: [`plan`], then
/// [`sweep`].
pub fn collect(ebpf: &mut Ebpf, t: &Timeouts) -> Result<GcReport, L4Error> {
    let plan = plan(ebpf, t)?;
    sweep(ebpf, &plan, t)
}

/// The reading half of a pass: walks both tables and lists the expired flows and orphans.
/// Nothing is deleted; the datapath keeps running meanwhile (a walk of a large table takes
/// a while), so [`sweep`] checks each flow again.
pub fn plan(ebpf: &Ebpf, t: &Timeouts) -> Result<Plan, L4Error> {
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
    let mut plan = Plan {
        flows: fwd_entries.len(),
        capacity,
        ..Plan::default()
    };
    let rev: BpfHashMap<&MapData, FlowKey, CtEntry> = BpfHashMap::try_from(
        ebpf.map(maps::CT_REV)
            .ok_or(L4Error::MissingMap(maps::CT_REV))?,
    )
    .map_err(L4Error::map("open conntrack"))?;
    for (k, e) in &fwd_entries {
        let peer = rev.get(&e.peer, 0).ok();
        if flow_expired(k.proto, e, peer.as_ref(), now, t) {
            plan.expired.push(Expired {
                key: *k,
                fwd: *e,
                rev: peer,
            });
        }
    }
    // Reply entries whose forward entry is gone (a race between two CPUs creating the same
    // flow, or an interrupted cleanup) expire on the closed-flow timeout. Not sooner: a flow
    // being created right now has its reply entry before its forward one.
    let fwd_keys: HashSet<FlowKey> = fwd_entries.iter().map(|(k, _)| *k).collect();
    for (k, e) in rev.iter().filter_map(Result::ok) {
        let idle = Duration::from_nanos(now.saturating_sub(e.last_seen_ns));
        if !fwd_keys.contains(&e.peer) && idle > t.tcp_closed {
            plan.orphans.push(k);
        }
    }
    Ok(plan)
}

/// The deleting half of a pass. Each expired flow is judged again, entry by entry, on what
/// the maps hold now: a packet may have refreshed it since [`plan`] read it -- typically a
/// client SYN reusing the tuple of a closed flow, which reopens the entry on the same SNAT
/// port. Deleting such a flow would send the client's next packet down a new SNAT port the
/// backend never saw, and the backend answers that with a RST. So a flow that looks alive is
/// left alone; one that still looks expired is taken out (read and deleted in one step),
/// judged on what it held at that moment, and put back at once if a packet came in between.
/// Otherwise its reply entry goes too.
pub fn sweep(ebpf: &mut Ebpf, plan: &Plan, t: &Timeouts) -> Result<GcReport, L4Error> {
    let fwd_fd = hash_fd(ebpf, maps::CT_FWD)?;
    let now = monotonic_ns();
    let mut report = GcReport {
        capacity: plan.capacity,
        ..GcReport::default()
    };
    let mut dead_rev: Vec<FlowKey> = Vec::with_capacity(plan.expired.len());
    {
        let open = |name: &'static str| -> Result<BpfHashMap<&MapData, FlowKey, CtEntry>, L4Error> {
            BpfHashMap::try_from(ebpf.map(name).ok_or(L4Error::MissingMap(name))?)
                .map_err(L4Error::map("open conntrack"))
        };
        let (fwd_map, rev_map) = (open(maps::CT_FWD)?, open(maps::CT_REV)?);
        for x in &plan.expired {
            let Ok(now_fwd) = fwd_map.get(&x.key, 0) else {
                continue;
            };
            let now_rev = rev_map.get(&now_fwd.peer, 0).ok();
            if !flow_expired(x.key.proto, &now_fwd, now_rev.as_ref(), now, t) {
                report.revived += 1;
                continue;
            }
            let Some(fwd) = bpf_take::take::<FlowKey, CtEntry>(fwd_fd, &x.key)
                .map_err(|e| L4Error::Io("take a conntrack entry", e))?
            else {
                continue;
            };
            let rev = rev_map.get(&fwd.peer, 0).ok();
            if flow_expired(x.key.proto, &fwd, rev.as_ref(), now, t) {
                report.expired += 1;
                dead_rev.push(fwd.peer);
                if fwd.peer != x.fwd.peer {
                    dead_rev.push(x.fwd.peer);
                }
            } else if bpf_take::put_back(fwd_fd, &x.key, &fwd)
                .map_err(|e| L4Error::Io("put back a conntrack entry", e))?
            {
                // (If a packet that found no entry in that moment opened a new flow, that one
                // stands, and the old reply entry is an orphan for a later pass.)
                report.revived += 1;
            }
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
    for k in &plan.orphans {
        if rev.remove(k).is_ok() {
            report.orphans += 1;
        }
    }
    report.flows = plan.flows - report.expired;
    Ok(report)
}

/// The file descriptor of hash map `name`, for the raw syscalls aya lacks.
fn hash_fd(ebpf: &Ebpf, name: &'static str) -> Result<RawFd, L4Error> {
    match ebpf.map(name).ok_or(L4Error::MissingMap(name))? {
        aya::maps::Map::HashMap(d) => Ok(d.fd().as_fd().as_raw_fd()),
        _ => Err(L4Error::MissingMap(name)),
    }
}

/// Deletes the UDP flows (both directions) of the services in `live` whose endpoint is not
/// among that service's live endpoints: an endpoint left the service, and the next datagram
/// of such a flow must pick a live one (kube-proxy does the same with conntrack -D). TCP
/// flows are left alone: an established connection keeps its endpoint. Returns the flows
/// deleted.
pub fn purge_udp(ebpf: &mut Ebpf, live: &HashMap<u32, HashSet<Backend>>) -> Result<usize, L4Error> {
    if live.is_empty() {
        return Ok(0);
    }
    let dead: Vec<(FlowKey, FlowKey)> = {
        let fwd: BpfHashMap<&MapData, FlowKey, CtEntry> = BpfHashMap::try_from(
            ebpf.map(maps::CT_FWD)
                .ok_or(L4Error::MissingMap(maps::CT_FWD))?,
        )
        .map_err(L4Error::map("open conntrack"))?;
        fwd.iter()
            .filter_map(Result::ok)
            .filter(|(k, e)| {
                k.proto == PROTO_UDP
                    && live.get(&e.service_id).is_some_and(|eps| {
                        !eps.contains(&Backend {
                            addr: e.dst,
                            port: e.dport,
                            family: k.family,
                            _pad: 0,
                        })
                    })
            })
            .map(|(k, e)| (k, e.peer))
            .collect()
    };
    if dead.is_empty() {
        return Ok(0);
    }
    {
        let mut fwd: BpfHashMap<&mut MapData, FlowKey, CtEntry> = BpfHashMap::try_from(
            ebpf.map_mut(maps::CT_FWD)
                .ok_or(L4Error::MissingMap(maps::CT_FWD))?,
        )
        .map_err(L4Error::map("open conntrack"))?;
        for (k, _) in &dead {
            let _ = fwd.remove(k);
        }
    }
    let mut rev: BpfHashMap<&mut MapData, FlowKey, CtEntry> = BpfHashMap::try_from(
        ebpf.map_mut(maps::CT_REV)
            .ok_or(L4Error::MissingMap(maps::CT_REV))?,
    )
    .map_err(L4Error::map("open conntrack"))?;
    for (_, peer) in &dead {
        let _ = rev.remove(peer);
    }
    Ok(dead.len())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The timeout chosen per protocol and merged state bits, one row per state.
    #[test]
    fn timeout_per_state() {
        use ct::{EMBRYONIC as EMB, FIN_FWD, FIN_REV, REPLY, RST, RST_UNVERIFIED, SYNACK_SEEN};
        let t = Timeouts {
            tcp_syn: Duration::from_secs(7),
            tcp_established: Duration::from_secs(3600),
            tcp_closed: Duration::from_secs(11),
            udp: Duration::from_secs(30),
        };
        let s = Duration::from_secs;
        let cases: [(&str, u8, u8, Duration); 16] = [
            ("udp", PROTO_UDP, 0, s(30)),
            ("udp ignores TCP bits", PROTO_UDP, RST | EMB, s(30)),
            ("tcp established", PROTO_TCP, 0, s(3600)),
            ("tcp established, reply bit", PROTO_TCP, REPLY, s(3600)),
            ("tcp embryonic: SYN sent", PROTO_TCP, EMB, s(7)),
            (
                "tcp embryonic: SYN-ACK seen",
                PROTO_TCP,
                EMB | SYNACK_SEEN | REPLY,
                s(7),
            ),
            ("tcp client FIN only", PROTO_TCP, FIN_FWD, s(3600)),
            ("tcp backend FIN only", PROTO_TCP, FIN_REV, s(3600)),
            ("tcp FIN both ways", PROTO_TCP, FIN_FWD | FIN_REV, s(11)),
            ("tcp RST", PROTO_TCP, RST, Duration::ZERO),
            (
                "tcp RST while embryonic",
                PROTO_TCP,
                RST | EMB,
                Duration::ZERO,
            ),
            (
                "tcp RST after FINs",
                PROTO_TCP,
                RST | FIN_FWD | FIN_REV,
                Duration::ZERO,
            ),
            (
                "tcp embryonic, FIN both ways",
                PROTO_TCP,
                EMB | FIN_FWD | FIN_REV,
                s(11),
            ),
            ("tcp embryonic, one FIN", PROTO_TCP, EMB | FIN_FWD, s(7)),
            ("tcp unverified RST", PROTO_TCP, RST_UNVERIFIED, s(11)),
            (
                "tcp unverified then believed RST",
                PROTO_TCP,
                RST_UNVERIFIED | RST,
                Duration::ZERO,
            ),
        ];
        for (name, proto, state, want) in cases {
            assert_eq!(timeout(proto, state, &t), want, "{name}");
        }
    }

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
            ("tcp reset, a moment ago", 6, ct::RST, now - 1, true),
            ("tcp reset, this very instant", 6, ct::RST, now, false),
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
            ("embryonic past 10 s", 6, ct::EMBRYONIC, now - 11 * s, true),
            ("embryonic, 9 s", 6, ct::EMBRYONIC, now - 9 * s, false),
            (
                "unverified RST is held as closing",
                6,
                ct::RST_UNVERIFIED,
                now - 5 * s,
                false,
            ),
            (
                "unverified RST past the close timeout",
                6,
                ct::RST_UNVERIFIED,
                now - 11 * s,
                true,
            ),
        ];
        for (name, proto, state, last, want) in cases {
            assert_eq!(expired(proto, state, last, now, &t), want, "{name}");
        }
    }

    /// A flow is judged on both entries: merged state bits, the later activity. Rows name
    /// what the sweep sees when it takes an entry a packet touched after the read.
    #[test]
    fn flow_expiry_merges_both_entries() {
        let t = Timeouts::default();
        let s = 1_000_000_000u64;
        let now = 10_000 * s;
        let entry = |state: u8, last: u64| CtEntry {
            state,
            last_seen_ns: last,
            ..CtEntry::default()
        };
        let closed = ct::FIN_FWD | ct::FIN_REV;
        let cases = [
            (
                "closed, both idle 11 s",
                entry(closed, now - 11 * s),
                Some(entry(ct::REPLY | closed, now - 11 * s)),
                true,
            ),
            (
                "closed, reopened by a SYN just now",
                entry(ct::EMBRYONIC, now),
                Some(entry(ct::REPLY | ct::EMBRYONIC, now)),
                false,
            ),
            (
                "RST on the reply side only",
                entry(0, now - s),
                Some(entry(ct::REPLY | ct::RST, now - s)),
                true,
            ),
            (
                "FIN each side, one per entry",
                entry(ct::FIN_FWD, now - 11 * s),
                Some(entry(ct::REPLY | ct::FIN_REV, now - 11 * s)),
                true,
            ),
            (
                "reply active, forward idle",
                entry(closed, now - 11 * s),
                Some(entry(ct::REPLY | closed, now - s)),
                false,
            ),
            (
                "reply entry gone: forward alone",
                entry(ct::EMBRYONIC, now - 11 * s),
                None,
                true,
            ),
        ];
        for (name, fwd, rev, want) in cases {
            assert_eq!(flow_expired(6, &fwd, rev.as_ref(), now, &t), want, "{name}");
        }
    }

    #[test]
    fn gc_runs_at_half_the_shortest_tcp_state_timeout() {
        let s = Duration::from_secs;
        let with = |syn, closed| Timeouts {
            tcp_syn: s(syn),
            tcp_closed: s(closed),
            ..Timeouts::default()
        };
        let cases = [
            ("defaults", Timeouts::default(), s(5)),
            ("syn 2 s", with(2, 10), s(1)),
            ("syn 4 s", with(4, 10), s(2)),
            ("close 6 s", with(30, 6), s(3)),
            ("never below 1 s", with(0, 0), s(1)),
            ("never above 5 s", with(60, 60), s(5)),
        ];
        for (name, t, want) in cases {
            assert_eq!(t.gc_interval(), want, "{name}");
        }
    }
}
