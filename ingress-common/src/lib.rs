//! Types shared by the eBPF programs (`ingress-ebpf`) and userspace (`ingress-user`).
//!
//! Everything here is `#[repr(C)]`, `Copy` and free of implicit padding, because the kernel
//! and userspace exchange these values as raw bytes through BPF maps. A layout change must
//! come with a new map name (`_v2`), never an in-place change: pinned maps outlive upgrades.
#![no_std]

pub mod csum;
pub mod l4;
pub mod stats;

/// Map names. They double as pin file names under `--bpf-pin-path`.
pub mod maps {
    /// Per-CPU packet counters indexed by [`crate::stats::Counter`].
    /// (V2: [`crate::stats::Counter::CAPACITY`] slots; V1 had exactly the 21 counters then.)
    pub const STATS: &str = "XI_STATS_V2";
    /// [`crate::l4::ServiceKey`] → [`crate::l4::ServiceValue`].
    pub const SERVICES: &str = "XI_SERVICES_V1";
    /// Backend slots ([`crate::l4::Backend`]), indexed by backend id (0 is never used).
    pub const BACKENDS: &str = "XI_BACKENDS_V1";
    /// Maglev tables: `service_id * maglev_size + slot` → backend id.
    pub const MAGLEV: &str = "XI_MAGLEV_V1";
    /// Conntrack, client → backend direction: [`crate::l4::FlowKey`] → [`crate::l4::CtEntry`].
    pub const CT_FWD: &str = "XI_CT_FWD_V1";
    /// Conntrack, backend → client direction.
    pub const CT_REV: &str = "XI_CT_REV_V1";
    /// One [`crate::l4::NatConfig`].
    pub const NAT_CONFIG: &str = "XI_NAT_CONFIG_V1";
    /// Per-service per-CPU [`crate::l4::ServiceStats`], indexed by service id.
    pub const SERVICE_STATS: &str = "XI_SVC_STATS_V2";
    /// Fragment tracking (an LRU): [`crate::l4::FragKey`] → [`crate::l4::FragEntry`], written
    /// when a first fragment is NATed, read by the non-first fragments of the datagram.
    pub const FRAGS: &str = "XI_FRAG_V1";
    /// Socket-level reverse translation for node-local UDP clients (an LRU):
    /// [`crate::l4::SockRevKey`] → [`crate::l4::SockRevValue`].
    pub const SOCK_REV: &str = "XI_SOCK_REV_V1";
    /// One `u64`: the network namespace cookie (`SO_NETNS_COOKIE`) whose sockets the cgroup
    /// hooks translate; 0 means every namespace.
    pub const SOCK_NETNS: &str = "XI_SOCK_NETNS_V1";
    /// Maps of earlier layouts that this version replaced. Their pins are removed at load
    /// (after the new maps exist), so a node does not keep them forever.
    pub const RETIRED: &[&str] = &["XI_SVC_STATS_V1", "XI_STATS_V1"];
}

/// Default map capacities; userspace may override them at load time (which, for pinned
/// maps, only takes effect when the pins are created).
pub mod limits {
    /// L4 services (ConfigMap entries × families).
    pub const MAX_SERVICES: u32 = 1024;
    /// Distinct endpoints across all services.
    pub const MAX_BACKENDS: u32 = 65_536;
    /// Default Maglev table size (prime; ≥ 100 × endpoints per service keeps the spread even).
    pub const MAGLEV_SIZE: u32 = 4093;
    /// Conntrack entries per direction.
    pub const CT_ENTRIES: u32 = 262_144;
    /// Datagrams being fragmented at once (LRU: the oldest are forgotten first).
    pub const FRAG_ENTRIES: u32 = 8192;
    /// UDP sockets on the node translated by the cgroup hooks, remembered for their replies
    /// (LRU: the least recently used are forgotten first).
    pub const SOCK_REV_ENTRIES: u32 = 65_536;
}

/// Program names, as the `#[xdp]` / `#[classifier]` functions are called in `ingress-ebpf`.
pub mod programs {
    /// The XDP entry point (NIC ingress).
    pub const XDP: &str = "xdp_ingress";
    /// The TC (TCX ingress) entry point.
    pub const TC: &str = "tc_ingress";
    /// The cgroup `sock_addr` programs of node-local access, with their attach types, in
    /// the order they are attached.
    pub const SOCK: [&str; 8] = [
        "sock_connect4",
        "sock_connect6",
        "sock_sendmsg4",
        "sock_sendmsg6",
        "sock_recvmsg4",
        "sock_recvmsg6",
        "sock_getpeername4",
        "sock_getpeername6",
    ];
}
