//! The L4 maps. All are pinned by name so a restarted controller (and its new programs) keep
//! the same services, backends and, above all, conntrack. Names carry a layout version.

use aya_ebpf::{
    macros::map,
    maps::{Array, HashMap, PerCpuArray},
};
use ingress_common::{
    l4::{Backend, CtEntry, FlowKey, NatConfig, ServiceKey, ServiceStats, ServiceValue},
    limits,
};

/// Services by destination (node address, port, protocol).
#[map(name = "XI_SERVICES_V1")]
pub static XI_SERVICES_V1: HashMap<ServiceKey, ServiceValue> =
    HashMap::pinned(limits::MAX_SERVICES, 0);

/// Backend slots by id.
#[map(name = "XI_BACKENDS_V1")]
pub static XI_BACKENDS_V1: Array<Backend> = Array::pinned(limits::MAX_BACKENDS, 0);

/// Maglev tables, `maglev_size` slots per service id.
#[map(name = "XI_MAGLEV_V1")]
pub static XI_MAGLEV_V1: Array<u32> = Array::pinned(limits::MAX_SERVICES * limits::MAGLEV_SIZE, 0);

/// Conntrack, client → backend. A plain hash (not LRU): when full, new flows are refused and
/// counted instead of silently evicting live ones; userspace expires idle entries.
#[map(name = "XI_CT_FWD_V1")]
pub static XI_CT_FWD_V1: HashMap<FlowKey, CtEntry> = HashMap::pinned(limits::CT_ENTRIES, 0);

/// Conntrack, backend → client.
#[map(name = "XI_CT_REV_V1")]
pub static XI_CT_REV_V1: HashMap<FlowKey, CtEntry> = HashMap::pinned(limits::CT_ENTRIES, 0);

/// Node-wide NAT settings (one entry).
#[map(name = "XI_NAT_CONFIG_V1")]
pub static XI_NAT_CONFIG_V1: Array<NatConfig> = Array::pinned(1, 0);

/// Scratch space for building conntrack entries: the BPF stack (512 bytes) is too small to
/// hold them next to the FIB parameters.
#[repr(C)]
pub struct Scratch {
    /// The reply-direction key being claimed.
    pub rev_key: FlowKey,
    /// The reply-direction entry.
    pub rev: CtEntry,
    /// The forward-direction entry.
    pub fwd: CtEntry,
}

/// One [`Scratch`] per CPU; not pinned (its content never outlives a packet).
#[map(name = "XI_SCRATCH")]
pub static XI_SCRATCH: PerCpuArray<Scratch> = PerCpuArray::with_max_entries(1, 0);

/// Per-service counters (V2: with per-service drop counters).
#[map(name = "XI_SVC_STATS_V2")]
pub static XI_SVC_STATS_V2: PerCpuArray<ServiceStats> =
    PerCpuArray::pinned(limits::MAX_SERVICES, 0);
