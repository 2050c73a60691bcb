//! The L4 maps. All are pinned by name so a restarted controller (and its new programs) keep
//! the same services, backends and, above all, conntrack. Names carry a layout version.

use aya_ebpf::{
    bindings::bpf_fib_lookup as FibParams,
    macros::map,
    maps::{Array, HashMap, LruHashMap, PerCpuArray},
};
use ingress_common::{
    l4::{
        Backend, CtEntry, FlowKey, FragEntry, FragKey, NatConfig, ServiceKey, ServiceStats,
        ServiceValue, SockRevKey, SockRevValue,
    },
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

/// Scratch space for what does not fit the BPF stack (512 bytes, shared by a subprogram and
/// its caller): conntrack entries being built, the FIB parameters, the keys and old
/// addresses of the ICMP and fragment paths.
#[repr(C)]
pub struct Scratch {
    /// The reply-direction key being claimed.
    pub rev_key: FlowKey,
    /// The reply-direction entry.
    pub rev: CtEntry,
    /// The forward-direction entry.
    pub fwd: CtEntry,
    /// `bpf_fib_lookup` parameters and answer of the packet being sent.
    pub fib: FibParams,
    /// The conntrack key an ICMP error's quote names.
    pub flow: FlowKey,
    /// The fragment key of a first or non-first fragment.
    pub frag: FragKey,
    /// What a first fragment records for the later ones.
    pub frag_entry: FragEntry,
    /// Source address of the packet before the rewrite.
    pub old_src: [u8; 16],
    /// Destination address of the packet before the rewrite.
    pub old_dst: [u8; 16],
}

/// One [`Scratch`] per CPU; not pinned (its content never outlives a packet).
#[map(name = "XI_SCRATCH")]
pub static XI_SCRATCH: PerCpuArray<Scratch> = PerCpuArray::with_max_entries(1, 0);

/// Per-service counters (V2: with per-service drop counters).
#[map(name = "XI_SVC_STATS_V2")]
pub static XI_SVC_STATS_V2: PerCpuArray<ServiceStats> =
    PerCpuArray::pinned(limits::MAX_SERVICES, 0);

/// Fragmented datagrams whose first fragment was NATed: the later fragments (which carry no
/// ports) take the same addresses. An LRU: entries are short-lived and nobody expires them.
#[map(name = "XI_FRAG_V1")]
pub static XI_FRAG_V1: LruHashMap<FragKey, FragEntry> = LruHashMap::pinned(limits::FRAG_ENTRIES, 0);

/// Node-local UDP sockets the cgroup hooks pointed at an endpoint: (socket cookie, endpoint)
/// → service address, so replies read as coming from the service. An LRU: nothing tells the
/// map when a socket closes.
#[map(name = "XI_SOCK_REV_V1")]
pub static XI_SOCK_REV_V1: LruHashMap<SockRevKey, SockRevValue> =
    LruHashMap::pinned(limits::SOCK_REV_ENTRIES, 0);

/// The network namespace (cookie) whose sockets the cgroup hooks translate: the node's, where
/// the controller runs; 0 means every namespace. Pods in their own namespaces reach node
/// ports over the packet path, as clients off the node do.
#[map(name = "XI_SOCK_NETNS_V1")]
pub static XI_SOCK_NETNS_V1: Array<u64> = Array::pinned(1, 0);
