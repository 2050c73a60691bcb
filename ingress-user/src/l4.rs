//! The L4 data path: loading the eBPF object, attaching it to interfaces, programming its
//! maps from the Snapshot, conntrack housekeeping and reading its counters.

pub mod addrs;
pub mod bpf_batch;
pub mod bpf_link;
pub mod bpf_take;
pub mod bpffs;
pub mod conntrack;
pub mod datapath;
pub mod interfaces;
pub mod maglev;
pub mod plane;
pub mod proxy;
pub mod stats;
pub mod sync;
pub mod sysctl;

pub use datapath::{Attachment, Datapath, DatapathOptions, L4Error, NodeLocal};

/// How L4 services are forwarded (`--l4-mode`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, clap::ValueEnum)]
pub enum L4Mode {
    /// Native XDP where the driver supports it (with TC beside it to resolve neighbours),
    /// else TC alone.
    #[default]
    Auto,
    /// XDP (native, else generic), with TC beside it to resolve neighbours.
    Xdp,
    /// TC alone, attached with TCX on ingress.
    Tc,
    /// No eBPF: the userspace proxy forwards every L4 service.
    Userspace,
}

impl L4Mode {
    /// Stable lowercase name, for logs and pin file names.
    pub const fn name(self) -> &'static str {
        match self {
            L4Mode::Auto => "auto",
            L4Mode::Xdp => "xdp",
            L4Mode::Tc => "tc",
            L4Mode::Userspace => "userspace",
        }
    }
}
