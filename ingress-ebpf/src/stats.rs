//! Per-CPU counters. Per-CPU slots need no atomics; userspace sums them.

use aya_ebpf::{macros::map, maps::PerCpuArray};
use ingress_common::stats::{Counter, PacketCount};

use crate::{
    maps::XI_SVC_STATS_V2,
    parse::{Class, Family, Kind},
};

/// Packet counters indexed by [`Counter`], pinned so they survive a controller restart.
#[map(name = "XI_STATS_V2")]
static XI_STATS_V2: PerCpuArray<PacketCount> = PerCpuArray::pinned(Counter::CAPACITY, 0);

/// Adds one packet of `bytes` to `counter`.
#[inline(always)]
pub fn count(counter: Counter, bytes: u64) {
    if let Some(cell) = XI_STATS_V2.get_ptr_mut(counter as u32) {
        // SAFETY: the slot belongs to this CPU; the program is not preempted while it runs.
        unsafe {
            (*cell).packets += 1;
            (*cell).bytes += bytes;
        }
    }
}

/// Counts a classified packet: `Seen`, its family and its protocol class.
#[inline(always)]
pub fn count_class(class: &Class, bytes: u64) {
    count(Counter::Seen, bytes);
    let family = Some(class.h.family);
    let (family, detail) = match class.kind {
        Kind::NonIp => (None, Counter::NonIp),
        Kind::Malformed => (None, Counter::Malformed),
        Kind::Fragment => (family, Counter::Fragment),
        // An ICMP error is another protocol to the class counters; what the NAT makes of it
        // is counted apart (`icmp_translated` / `icmp_untranslated`).
        Kind::OtherL4 | Kind::IcmpError => (family, Counter::OtherL4),
        Kind::L4 => (
            family,
            if class.h.proto == network_types::ip::IpProto::Tcp {
                Counter::Tcp
            } else {
                Counter::Udp
            },
        ),
    };
    match family {
        Some(Family::V4) => count(Counter::Ipv4, bytes),
        Some(Family::V6) => count(Counter::Ipv6, bytes),
        None => {}
    }
    count(detail, bytes);
}

/// Adds a packet (and optionally a new flow) to a service's counters.
#[inline(always)]
pub fn count_service(id: u32, bytes: u64, new_flow: bool) {
    if let Some(cell) = XI_SVC_STATS_V2.get_ptr_mut(id) {
        // SAFETY: the slot belongs to this CPU.
        unsafe {
            if new_flow {
                (*cell).new_flows += 1;
            } else {
                (*cell).packets += 1;
                (*cell).bytes += bytes;
            }
        }
    }
}

/// Per-service drop reasons (fields of [`ingress_common::l4::ServiceStats`]).
#[derive(Clone, Copy)]
pub enum ServiceDrop {
    /// No free SNAT port.
    SnatExhausted,
    /// The conntrack table is full.
    CtFull,
}

/// Counts a dropped new flow against its service.
#[inline(always)]
pub fn count_service_drop(id: u32, reason: ServiceDrop) {
    if let Some(cell) = XI_SVC_STATS_V2.get_ptr_mut(id) {
        // SAFETY: the slot belongs to this CPU.
        unsafe {
            match reason {
                ServiceDrop::SnatExhausted => (*cell).drop_snat_exhausted += 1,
                ServiceDrop::CtFull => (*cell).drop_ct_full += 1,
            }
        }
    }
}
