//! Loading the eBPF object and attaching its programs to interfaces.

use std::path::{Path, PathBuf};

use aya::{
    Ebpf, EbpfLoader,
    maps::{MapData, PerCpuArray},
    programs::{
        LinkOrder, ProgramError, SchedClassifier, TcAttachType, Xdp, XdpMode,
        tc::TcAttachOptions,
    },
};
use ingress_common::{maps, programs, stats::PacketCount};
use tracing::{info, warn};

use super::{L4Mode, bpffs, stats};

/// Errors of the L4 data path, each naming what was being done.
#[derive(Debug, thiserror::Error)]
pub enum L4Error {
    /// The binary was built with `AYA_BUILD_SKIP=1`.
    #[error("this binary was built without its eBPF object (AYA_BUILD_SKIP); rebuild with `cargo xtask build`")]
    NoObject,
    /// The pin directory is unusable.
    #[error("preparing pin directory {path}: {source}")]
    PinDir {
        /// The directory.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// Loading the object or a program failed (verifier, permissions, ...).
    #[error("loading eBPF: {0}")]
    Load(#[from] aya::EbpfError),
    /// A program operation failed.
    #[error("{what} program {program}: {source}")]
    Program {
        /// What was being done.
        what: &'static str,
        /// Program name.
        program: &'static str,
        /// Why.
        source: ProgramError,
    },
    /// Attaching failed.
    #[error("attaching {mode} program to {iface}: {source}")]
    Attach {
        /// The interface.
        iface: String,
        /// The mode tried last.
        mode: &'static str,
        /// Why.
        source: ProgramError,
    },
    /// A map operation failed.
    #[error("{what}: {source}")]
    Map {
        /// What was being done.
        what: &'static str,
        /// Why.
        source: aya::maps::MapError,
    },
    /// The object lacks a map this binary expects.
    #[error("eBPF object has no map {0}")]
    MissingMap(&'static str),
}

impl L4Error {
    /// Builds a `map_err` closure for a map operation.
    pub(crate) fn map(what: &'static str) -> impl FnOnce(aya::maps::MapError) -> Self {
        move |source| Self::Map { what, source }
    }
}

/// Which hook a program ended up on.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Hook {
    /// Native (driver) XDP.
    XdpDriver,
    /// Generic (SKB) XDP.
    XdpGeneric,
    /// TCX ingress.
    TcIngress,
}

impl Hook {
    /// Stable name for logs.
    pub const fn name(self) -> &'static str {
        match self {
            Hook::XdpDriver => "xdp-driver",
            Hook::XdpGeneric => "xdp-generic",
            Hook::TcIngress => "tc-ingress",
        }
    }
}

/// One interface the data path is attached to.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Attachment {
    /// Interface name.
    pub iface: String,
    /// Where the program runs.
    pub hook: Hook,
}

/// The loaded eBPF object. Dropping it detaches the programs it attached.
pub struct Datapath {
    ebpf: Ebpf,
    attachments: Vec<Attachment>,
}

impl Datapath {
    /// Loads the embedded object, pinning (or reusing) its maps under `pin_dir`.
    pub fn load(object: &[u8], pin_dir: &Path) -> Result<Self, L4Error> {
        if object.is_empty() {
            return Err(L4Error::NoObject);
        }
        bpffs::ensure_pin_dir(pin_dir).map_err(|source| L4Error::PinDir {
            path: pin_dir.to_owned(),
            source,
        })?;
        let mut ebpf = EbpfLoader::new()
            .default_map_pin_directory(pin_dir)
            .load(object)?;
        let xdp: &mut Xdp = program(&mut ebpf, programs::XDP)?;
        xdp.load().map_err(|source| L4Error::Program {
            what: "loading",
            program: programs::XDP,
            source,
        })?;
        let tc: &mut SchedClassifier = program(&mut ebpf, programs::TC)?;
        tc.load().map_err(|source| L4Error::Program {
            what: "loading",
            program: programs::TC,
            source,
        })?;
        Ok(Self {
            ebpf,
            attachments: Vec::new(),
        })
    }

    /// Attaches to `iface` as `mode` asks, falling back (with a log line) where the
    /// interface cannot take the preferred hook.
    pub fn attach(&mut self, iface: &str, mode: L4Mode) -> Result<&Attachment, L4Error> {
        let hook = match mode {
            L4Mode::Tc => self.attach_tc(iface)?,
            L4Mode::Xdp => match self.attach_xdp(iface, XdpMode::Driver) {
                Ok(h) => h,
                Err(e) => {
                    warn!(%iface, error = %e, "native XDP unavailable; using generic XDP");
                    self.attach_xdp(iface, XdpMode::Skb)?
                }
            },
            L4Mode::Auto => match self.attach_xdp(iface, XdpMode::Driver) {
                Ok(h) => h,
                Err(e) => {
                    warn!(%iface, error = %e, "native XDP unavailable; using TC");
                    self.attach_tc(iface)?
                }
            },
        };
        info!(%iface, hook = hook.name(), mode = mode.name(), "attached");
        self.attachments.push(Attachment {
            iface: iface.to_owned(),
            hook,
        });
        Ok(self.attachments.last().expect("just pushed"))
    }

    fn attach_xdp(&mut self, iface: &str, xdp_mode: XdpMode) -> Result<Hook, L4Error> {
        let (hook, name) = match xdp_mode {
            XdpMode::Skb => (Hook::XdpGeneric, "xdp-generic"),
            _ => (Hook::XdpDriver, "xdp-driver"),
        };
        let xdp: &mut Xdp = program(&mut self.ebpf, programs::XDP)?;
        xdp.attach(iface, xdp_mode)
            .map_err(|source| L4Error::Attach {
                iface: iface.to_owned(),
                mode: name,
                source,
            })?;
        Ok(hook)
    }

    fn attach_tc(&mut self, iface: &str) -> Result<Hook, L4Error> {
        let tc: &mut SchedClassifier = program(&mut self.ebpf, programs::TC)?;
        tc.attach_with_options(
            iface,
            TcAttachType::Ingress,
            TcAttachOptions::TcxOrder(LinkOrder::default()),
        )
        .map_err(|source| L4Error::Attach {
            iface: iface.to_owned(),
            mode: "tc-ingress",
            source,
        })?;
        Ok(Hook::TcIngress)
    }

    /// Interfaces attached so far.
    pub fn attachments(&self) -> &[Attachment] {
        &self.attachments
    }

    /// Sums the per-CPU packet counters.
    pub fn stats(&self) -> Result<stats::Totals, L4Error> {
        let map = self
            .ebpf
            .map(maps::STATS)
            .ok_or(L4Error::MissingMap(maps::STATS))?;
        let array: PerCpuArray<&MapData, PacketCount> =
            PerCpuArray::try_from(map).map_err(L4Error::map("open counters"))?;
        stats::read(&array)
    }

    /// The underlying object, for the map-sync code and tests.
    pub fn ebpf_mut(&mut self) -> &mut Ebpf {
        &mut self.ebpf
    }
}

fn program<'a, T>(ebpf: &'a mut Ebpf, name: &'static str) -> Result<&'a mut T, L4Error>
where
    &'a mut T: TryFrom<&'a mut aya::programs::Program, Error = ProgramError>,
{
    let p = ebpf.program_mut(name).ok_or(L4Error::Program {
        what: "finding",
        program: name,
        source: ProgramError::NotLoaded,
    })?;
    p.try_into().map_err(|source| L4Error::Program {
        what: "typing",
        program: name,
        source,
    })
}
