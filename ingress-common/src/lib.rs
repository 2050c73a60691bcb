//! Types shared by the eBPF programs (`ingress-ebpf`) and userspace (`ingress-user`).
//!
//! Everything here is `#[repr(C)]`, `Copy` and free of implicit padding, because the kernel
//! and userspace exchange these values as raw bytes through BPF maps. A layout change must
//! come with a new map name (`_v2`), never an in-place change: pinned maps outlive upgrades.
#![no_std]

pub mod csum;
pub mod stats;

/// Map names. They double as pin file names under `--bpf-pin-path`.
pub mod maps {
    /// Per-CPU packet counters indexed by [`crate::stats::Counter`].
    pub const STATS: &str = "XI_STATS_V1";
}

/// Program names, as the `#[xdp]` / `#[classifier]` functions are called in `ingress-ebpf`.
pub mod programs {
    /// The XDP entry point (NIC ingress).
    pub const XDP: &str = "xdp_ingress";
    /// The TC (TCX ingress) entry point.
    pub const TC: &str = "tc_ingress";
}
