//! The L4 data path: loading the eBPF object, attaching it to interfaces, reading its counters.

pub mod bpffs;
pub mod datapath;
pub mod proxy;
pub mod stats;

pub use datapath::{Attachment, Datapath, L4Error};

/// How L4 services are forwarded (`--l4-mode`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, clap::ValueEnum)]
pub enum L4Mode {
    /// Native XDP where the driver supports it, else TC.
    #[default]
    Auto,
    /// XDP: native mode, or generic (SKB) mode when the driver has no native support.
    Xdp,
    /// TC, attached with TCX on ingress.
    Tc,
}

impl L4Mode {
    /// Stable lowercase name, for logs and pin file names.
    pub const fn name(self) -> &'static str {
        match self {
            L4Mode::Auto => "auto",
            L4Mode::Xdp => "xdp",
            L4Mode::Tc => "tc",
        }
    }
}
