//! Loading the eBPF object, attaching its programs (with pinned links, so they outlive the
//! process), and the node-wide NAT settings.
//!
//! Restart and upgrade: maps are pinned by name and reused; links are pinned per interface
//! and hook, and a new controller swaps its programs into them with `bpf_link_update`, which
//! is atomic. Established flows keep their conntrack entries throughout.

use std::{
    net::Ipv4Addr,
    path::{Path, PathBuf},
};

use aya::{
    Ebpf, EbpfLoader,
    maps::{Array, MapData, PerCpuArray},
    programs::{
        LinkOrder, ProgramError, SchedClassifier, TcAttachType, Xdp, XdpMode,
        links::{FdLink, PinnedLink},
        tc::{SchedClassifierLink, TcAttachOptions},
        xdp::XdpLink,
    },
};
use ingress_common::{l4::NatConfig, limits, maps, programs, stats::PacketCount};
use tracing::{debug, info, warn};

use super::{L4Mode, bpffs, maglev, stats};

mod node_local;

pub use node_local::{NodeLocal, cgroup2_root};

/// Errors of the L4 data path, each naming what was being done.
#[derive(Debug, thiserror::Error)]
pub enum L4Error {
    /// The binary was built with `AYA_BUILD_SKIP=1`.
    #[error(
        "this binary was built without its eBPF object (AYA_BUILD_SKIP); rebuild with `cargo xtask build`"
    )]
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
    #[error("attaching {hook} program to {iface}: {source}")]
    Attach {
        /// The interface.
        iface: String,
        /// The hook tried.
        hook: &'static str,
        /// Why.
        source: ProgramError,
    },
    /// Pinning or reusing a link failed.
    #[error("{what} link {path}: {message}")]
    Link {
        /// What was being done.
        what: &'static str,
        /// The pin path.
        path: PathBuf,
        /// Why.
        message: String,
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
    /// A table ran out of ids.
    #[error("no free slot for {0}; raise the limit")]
    Full(&'static str),
    /// A raw syscall failed.
    #[error("{0}: {1}")]
    Io(&'static str, std::io::Error),
    /// A Maglev table could not be built.
    #[error(transparent)]
    Maglev(#[from] maglev::MaglevError),
    /// A pinned map was created with other limits.
    #[error(
        "pinned map {map} holds {found} entries but {wanted} are needed; remove {pin_dir} (this drops established L4 flows) or use the old limits"
    )]
    Capacity {
        /// Map name.
        map: &'static str,
        /// Its size.
        found: u32,
        /// The size the flags ask for.
        wanted: u32,
        /// The pin directory.
        pin_dir: PathBuf,
    },
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
    /// Stable name, used in logs and link pin names.
    pub const fn name(self) -> &'static str {
        match self {
            Hook::XdpDriver => "xdp-driver",
            Hook::XdpGeneric => "xdp-generic",
            Hook::TcIngress => "tc-ingress",
        }
    }

    fn from_name(s: &str) -> Option<Self> {
        [Hook::XdpDriver, Hook::XdpGeneric, Hook::TcIngress]
            .into_iter()
            .find(|h| h.name() == s)
    }
}

/// One program attached to one interface.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Attachment {
    /// Interface name.
    pub iface: String,
    /// Where the program runs.
    pub hook: Hook,
    /// Whether an existing pinned link (from a previous controller) was reused.
    pub reused: bool,
}

/// Load-time settings.
#[derive(Clone, Debug)]
pub struct DatapathOptions {
    /// Maglev table size (prime).
    pub maglev_size: u32,
    /// L4 services the maps can hold.
    pub max_services: u32,
    /// Conntrack entries per direction.
    pub ct_entries: u32,
    /// SNAT source address; `None` uses the address the client connected to.
    pub snat_v4: Option<Ipv4Addr>,
    /// SNAT port range (inclusive).
    pub snat_ports: (u16, u16),
}

impl Default for DatapathOptions {
    fn default() -> Self {
        Self {
            maglev_size: limits::MAGLEV_SIZE,
            max_services: limits::MAX_SERVICES,
            ct_entries: limits::CT_ENTRIES,
            snat_v4: None,
            snat_ports: (20_000, 32_767),
        }
    }
}

/// The loaded eBPF object and its links.
pub struct Datapath {
    ebpf: Ebpf,
    pin_dir: PathBuf,
    attachments: Vec<Attachment>,
    links: Vec<PathBuf>,
    options: DatapathOptions,
}

impl Datapath {
    /// Loads the embedded object, pinning (or reusing) its maps under `pin_dir`, and writes
    /// the NAT settings.
    pub fn load(object: &[u8], pin_dir: &Path, options: DatapathOptions) -> Result<Self, L4Error> {
        if object.is_empty() {
            return Err(L4Error::NoObject);
        }
        if !maglev::is_prime(options.maglev_size) {
            return Err(maglev::MaglevError::NotPrime(options.maglev_size).into());
        }
        bpffs::ensure_pin_dir(pin_dir).map_err(|source| L4Error::PinDir {
            path: pin_dir.to_owned(),
            source,
        })?;
        let maglev_entries = options.max_services * options.maglev_size;
        let mut ebpf = EbpfLoader::new()
            .default_map_pin_directory(pin_dir)
            .map_max_entries(maps::MAGLEV, maglev_entries)
            .map_max_entries(maps::SERVICES, options.max_services)
            .map_max_entries(maps::SERVICE_STATS, options.max_services)
            .map_max_entries(maps::CT_FWD, options.ct_entries)
            .map_max_entries(maps::CT_REV, options.ct_entries)
            .load(object)?;
        // Pinned maps keep the size they were created with.
        for (name, wanted) in [
            (maps::MAGLEV, maglev_entries),
            (maps::SERVICE_STATS, options.max_services),
        ] {
            let found = match ebpf.map(name) {
                Some(aya::maps::Map::Array(d) | aya::maps::Map::PerCpuArray(d)) => {
                    d.info().map_err(L4Error::map("map info"))?.max_entries()
                }
                _ => return Err(L4Error::MissingMap(name)),
            };
            if found < wanted {
                return Err(L4Error::Capacity {
                    map: name,
                    found,
                    wanted,
                    pin_dir: pin_dir.to_owned(),
                });
            }
        }
        // Maps an earlier version pinned in a layout this one replaced: nothing reads them
        // any more (programs still attached keep theirs alive until they are swapped out).
        for name in maps::RETIRED {
            let path = pin_dir.join(name);
            if path.exists() {
                match std::fs::remove_file(&path) {
                    Ok(()) => info!(map = name, "removed the pin of a retired map"),
                    Err(e) => warn!(map = name, error = %e, "removing the pin of a retired map"),
                }
            }
        }
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
        let mut dp = Self {
            ebpf,
            pin_dir: pin_dir.to_owned(),
            attachments: Vec::new(),
            links: Vec::new(),
            options,
        };
        dp.write_nat_config()?;
        Ok(dp)
    }

    fn write_nat_config(&mut self) -> Result<(), L4Error> {
        let o = &self.options;
        let cfg = NatConfig {
            snat_v4: o.snat_v4.map_or([0; 4], |a| a.octets()),
            snat_v6: [0; 16],
            snat_port_lo: o.snat_ports.0,
            snat_port_hi: o.snat_ports.1,
            maglev_size: o.maglev_size,
            ready: 1,
        };
        let mut arr: Array<&mut MapData, NatConfig> = Array::try_from(
            self.ebpf
                .map_mut(maps::NAT_CONFIG)
                .ok_or(L4Error::MissingMap(maps::NAT_CONFIG))?,
        )
        .map_err(L4Error::map("open NAT config"))?;
        arr.set(0, cfg, 0).map_err(L4Error::map("write NAT config"))
    }

    fn links_dir(&self) -> PathBuf {
        self.pin_dir.join("links")
    }

    fn link_path(&self, hook: Hook, iface: &str) -> PathBuf {
        self.links_dir().join(format!("{}@{iface}", hook.name()))
    }

    /// Removes pinned links that must not be trusted: interfaces that no longer exist or are
    /// not configured any more, and hooks another `--l4-mode` left behind. Call before
    /// [`Datapath::attach`] with the full interface list.
    pub fn clean_stale_links(&self, ifaces: &[String], mode: L4Mode) -> Result<(), L4Error> {
        let dir = self.links_dir();
        std::fs::create_dir_all(&dir).map_err(|source| L4Error::PinDir {
            path: dir.clone(),
            source,
        })?;
        let entries = std::fs::read_dir(&dir).map_err(|source| L4Error::PinDir {
            path: dir.clone(),
            source,
        })?;
        for entry in entries.flatten() {
            let name = entry.file_name().to_string_lossy().into_owned();
            let (hook, iface) = name.split_once('@').unwrap_or((&name, ""));
            let hook = Hook::from_name(hook);
            let reason = if !ifaces.iter().any(|i| i == iface) {
                Some("interface not configured")
            } else if !interface_exists(iface) {
                Some("interface gone")
            } else {
                match (hook, mode) {
                    (None, _) => Some("unknown hook"),
                    (Some(Hook::TcIngress), L4Mode::Userspace) => Some("mode changed"),
                    (Some(Hook::XdpDriver | Hook::XdpGeneric), L4Mode::Tc | L4Mode::Userspace) => {
                        Some("mode changed")
                    }
                    _ => None,
                }
            };
            if let Some(reason) = reason {
                info!(link = %name, reason, "removing stale pinned link");
                // Unpinning drops the last reference, which detaches the program.
                let _ = std::fs::remove_file(entry.path());
            }
        }
        Ok(())
    }

    /// Attaches to `iface` as `mode` asks. XDP modes also attach TC beside XDP: XDP cannot
    /// resolve a neighbour, so it leaves such packets untouched for TC's `bpf_redirect_neigh`.
    pub fn attach(&mut self, iface: &str, mode: L4Mode) -> Result<Vec<Attachment>, L4Error> {
        let mut hooks = Vec::new();
        match mode {
            L4Mode::Userspace => return Ok(Vec::new()),
            L4Mode::Tc => {}
            L4Mode::Xdp => match self.attach_xdp(iface, Hook::XdpDriver) {
                Ok(a) => hooks.push(a),
                Err(e) => {
                    warn!(%iface, error = %e, "native XDP unavailable; using generic XDP");
                    self.remove_link(Hook::XdpGeneric, iface, Hook::XdpDriver);
                    hooks.push(self.attach_xdp(iface, Hook::XdpGeneric)?);
                }
            },
            L4Mode::Auto => match self.attach_xdp(iface, Hook::XdpDriver) {
                Ok(a) => hooks.push(a),
                Err(e) => warn!(%iface, error = %e, "native XDP unavailable; using TC alone"),
            },
        }
        hooks.push(self.attach_tc(iface)?);
        for a in &hooks {
            info!(%iface, hook = a.hook.name(), reused = a.reused, mode = mode.name(), "attached");
        }
        self.attachments.extend(hooks.iter().cloned());
        Ok(hooks)
    }

    /// Drops a pinned link of `other` hook on `iface` when switching to `wanted`.
    fn remove_link(&self, wanted: Hook, iface: &str, other: Hook) {
        if wanted != other {
            let _ = std::fs::remove_file(self.link_path(other, iface));
        }
    }

    fn attach_xdp(&mut self, iface: &str, hook: Hook) -> Result<Attachment, L4Error> {
        let path = self.link_path(hook, iface);
        let other = if hook == Hook::XdpDriver {
            Hook::XdpGeneric
        } else {
            Hook::XdpDriver
        };
        self.remove_link(hook, iface, other);
        let xdp: &mut Xdp = program(&mut self.ebpf, programs::XDP)?;
        let attach_err = |source| L4Error::Attach {
            iface: iface.to_owned(),
            hook: hook.name(),
            source,
        };
        if let Some(fd) = reuse_link(&path)? {
            let link = XdpLink::try_from(fd).map_err(|e| link_err("typing", &path, &e))?;
            xdp.attach_to_link(link).map_err(attach_err)?;
            self.links.push(path);
            return Ok(Attachment {
                iface: iface.to_owned(),
                hook,
                reused: true,
            });
        }
        let mode = if hook == Hook::XdpDriver {
            XdpMode::Driver
        } else {
            XdpMode::Skb
        };
        let id = xdp.attach(iface, mode).map_err(attach_err)?;
        let link = xdp.take_link(id).map_err(attach_err)?;
        let fd = FdLink::try_from(link).map_err(|e| link_err("converting", &path, &e))?;
        pin(fd, &path)?;
        self.links.push(path);
        Ok(Attachment {
            iface: iface.to_owned(),
            hook,
            reused: false,
        })
    }

    fn attach_tc(&mut self, iface: &str) -> Result<Attachment, L4Error> {
        let hook = Hook::TcIngress;
        let path = self.link_path(hook, iface);
        let tc: &mut SchedClassifier = program(&mut self.ebpf, programs::TC)?;
        let attach_err = |source| L4Error::Attach {
            iface: iface.to_owned(),
            hook: hook.name(),
            source,
        };
        if let Some(fd) = reuse_link(&path)? {
            let link =
                SchedClassifierLink::try_from(fd).map_err(|e| link_err("typing", &path, &e))?;
            tc.attach_to_link(link).map_err(attach_err)?;
            self.links.push(path);
            return Ok(Attachment {
                iface: iface.to_owned(),
                hook,
                reused: true,
            });
        }
        let id = tc
            .attach_with_options(
                iface,
                TcAttachType::Ingress,
                TcAttachOptions::TcxOrder(LinkOrder::default()),
            )
            .map_err(attach_err)?;
        let link = tc.take_link(id).map_err(attach_err)?;
        let fd = FdLink::try_from(link).map_err(|e| link_err("converting", &path, &e))?;
        pin(fd, &path)?;
        self.links.push(path);
        Ok(Attachment {
            iface: iface.to_owned(),
            hook,
            reused: false,
        })
    }

    /// Unpins every link this controller attached, so the programs detach when the object
    /// is dropped (`--l4-detach-on-exit`).
    pub fn detach_all(&mut self) {
        for path in self.links.drain(..) {
            if let Err(e) = std::fs::remove_file(&path) {
                warn!(path = %path.display(), error = %e, "unpinning link");
            }
        }
        info!("eBPF programs detached");
    }

    /// What is attached.
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

    /// The settings the object was loaded with.
    pub fn options(&self) -> &DatapathOptions {
        &self.options
    }

    /// The underlying object, for the map-sync code and tests.
    pub fn ebpf_mut(&mut self) -> &mut Ebpf {
        &mut self.ebpf
    }
}

fn interface_exists(iface: &str) -> bool {
    let Ok(c) = std::ffi::CString::new(iface) else {
        return false;
    };
    // SAFETY: `c` is a valid NUL-terminated string.
    unsafe { libc::if_nametoindex(c.as_ptr()) != 0 }
}

fn link_err(what: &'static str, path: &Path, e: &dyn std::fmt::Display) -> L4Error {
    L4Error::Link {
        what,
        path: path.to_owned(),
        message: e.to_string(),
    }
}

/// Opens a pinned link, if there is one and it is still usable.
fn reuse_link(path: &Path) -> Result<Option<FdLink>, L4Error> {
    if !path.exists() {
        return Ok(None);
    }
    match PinnedLink::from_pin(path) {
        Ok(p) => {
            debug!(path = %path.display(), "reusing pinned link");
            Ok(Some(FdLink::from(p)))
        }
        Err(e) => {
            warn!(path = %path.display(), error = %e, "pinned link unusable; replacing it");
            let _ = std::fs::remove_file(path);
            Ok(None)
        }
    }
}

fn pin(fd: FdLink, path: &Path) -> Result<(), L4Error> {
    let _ = std::fs::remove_file(path);
    fd.pin(path)
        .map(drop)
        .map_err(|e| link_err("pinning", path, &e))
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
