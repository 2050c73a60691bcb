//! xdp-ingress: a Kubernetes ingress controller with an eBPF L4 fast path and a hyper L7
//! router, fed by one control plane. The binary in `main.rs` wires these modules together.

pub mod check;
pub mod cli;
pub mod config;
pub mod controller;
#[doc(hidden)]
pub mod fuzz;
pub mod http;
pub mod inspect;
pub mod l4;
pub mod logging;
pub mod ops;
pub mod snapshot;
pub mod source;

/// The eBPF object built by `build.rs` (empty when built with `AYA_BUILD_SKIP=1`).
pub static EBPF_OBJECT: &[u8] = aya::include_bytes_aligned!(concat!(env!("OUT_DIR"), "/ingress"));
