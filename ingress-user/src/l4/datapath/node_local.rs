//! Node-local access: the cgroup `sock_addr` programs (see `ingress-ebpf/src/sock.rs`),
//! attached to a cgroup v2 (by default the root, i.e. every process on the node) with pinned
//! links, like the interface programs.

use std::{
    fs::File,
    io,
    os::{fd::AsFd as _, unix::fs::MetadataExt as _},
    path::{Path, PathBuf},
};

use aya::{
    maps::{Array, MapData},
    programs::{CgroupAttachMode, CgroupSockAddr, links::FdLink},
};
use ingress_common::{maps, programs};
use tracing::{info, warn};

use super::{Datapath, L4Error, link_err, pin, program};
use crate::l4::bpf_link;

/// Where the cgroup links are pinned, below the pin directory.
const SOCK_LINKS_DIR: &str = "sock-links";

/// The mount point of the cgroup v2 hierarchy (the first `cgroup2` in
/// `/proc/self/mountinfo`), if there is one.
pub fn cgroup2_root() -> io::Result<Option<PathBuf>> {
    let info = std::fs::read_to_string("/proc/self/mountinfo")?;
    Ok(cgroup2_in_mountinfo(&info))
}

fn cgroup2_in_mountinfo(info: &str) -> Option<PathBuf> {
    info.lines().find_map(|line| {
        let (left, right) = line.split_once(" - ")?;
        if right.split_whitespace().next()? != "cgroup2" {
            return None;
        }
        // Fields: id parent major:minor root mount-point ...
        left.split_whitespace().nth(4).map(PathBuf::from)
    })
}

/// What [`Datapath::attach_node_local`] did.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct NodeLocal {
    /// The cgroup the programs run for (with its descendants).
    pub cgroup: PathBuf,
    /// Programs attached.
    pub programs: usize,
    /// Whether the pinned links of a previous controller were reused.
    pub reused: bool,
}

impl Datapath {
    fn sock_links_dir(&self) -> PathBuf {
        self.pin_dir.join(SOCK_LINKS_DIR)
    }

    /// Attaches the node-local access programs to `cgroup` (a cgroup v2 directory): every
    /// process in it or below that connects or sends to a node address and service port
    /// reaches an endpoint. The links are pinned per cgroup and reused (swapped atomically)
    /// by a restarted controller; pins for other cgroups are removed. All or nothing: when a
    /// program fails, the ones attached before it are detached again.
    pub fn attach_node_local(&mut self, cgroup: &Path) -> Result<NodeLocal, L4Error> {
        let cg = File::open(cgroup).map_err(|e| L4Error::Io("opening the cgroup", e))?;
        let ino = cg
            .metadata()
            .map_err(|e| L4Error::Io("reading the cgroup", e))?
            .ino();
        let dir = self.sock_links_dir();
        std::fs::create_dir_all(&dir).map_err(|source| L4Error::PinDir {
            path: dir.clone(),
            source,
        })?;
        self.write_sock_netns()?;
        let suffix = format!("@cg{ino}");
        self.remove_sock_links(|name| !name.ends_with(&suffix));
        let mut attached = Vec::new();
        let mut reused = false;
        for name in programs::SOCK {
            let path = dir.join(format!("{name}{suffix}"));
            match self.attach_sock(name, &cg, &path) {
                Ok(r) => {
                    reused |= r;
                    attached.push(path);
                }
                Err(e) => {
                    for p in attached {
                        let _ = std::fs::remove_file(p);
                    }
                    return Err(e);
                }
            }
        }
        let n = attached.len();
        self.links.extend(attached);
        info!(cgroup = %cgroup.display(), programs = n, reused, "node-local access attached");
        Ok(NodeLocal {
            cgroup: cgroup.to_owned(),
            programs: n,
            reused,
        })
    }

    /// Limits the hooks to the calling thread's network namespace (the node's, for the
    /// controller). Where the kernel cannot tell the namespace (`SO_NETNS_COOKIE`, 5.14),
    /// every namespace is served.
    fn write_sock_netns(&mut self) -> Result<(), L4Error> {
        let cookie = match netns_cookie() {
            Ok(c) => c,
            Err(e) => {
                warn!(error = %e, "cannot read this network namespace's cookie; node-local access serves every namespace");
                0
            }
        };
        let mut arr: Array<&mut MapData, u64> = Array::try_from(
            self.ebpf
                .map_mut(maps::SOCK_NETNS)
                .ok_or(L4Error::MissingMap(maps::SOCK_NETNS))?,
        )
        .map_err(L4Error::map("open node-local namespace"))?;
        arr.set(0, cookie, 0)
            .map_err(L4Error::map("write node-local namespace"))
    }

    /// Attaches one program, or swaps it into the link pinned at `path`; `Ok(true)` when an
    /// existing link was reused.
    fn attach_sock(&mut self, name: &'static str, cg: &File, path: &Path) -> Result<bool, L4Error> {
        let prog: &mut CgroupSockAddr = program(&mut self.ebpf, name)?;
        if prog.fd().is_err() {
            prog.load().map_err(|source| L4Error::Program {
                what: "loading",
                program: name,
                source,
            })?;
        }
        let prog_err = |source| L4Error::Program {
            what: "attaching",
            program: name,
            source,
        };
        if path.exists() {
            let fd = prog.fd().map_err(prog_err)?;
            match bpf_link::update_pinned(path, fd.as_fd()) {
                Ok(()) => return Ok(true),
                Err(e) => {
                    warn!(path = %path.display(), error = %e, "pinned link unusable; replacing it");
                    let _ = std::fs::remove_file(path);
                }
            }
        }
        // A BPF link (kernel ≥ 5.7) takes no attach flags (`Single` passes none) and always
        // runs beside other programs on the cgroup (systemd's, a CNI's), like ALLOW_MULTI.
        let id = prog
            .attach(cg.as_fd(), CgroupAttachMode::Single)
            .map_err(prog_err)?;
        let link = prog.take_link(id).map_err(prog_err)?;
        let fd = FdLink::try_from(link).map_err(|e| link_err("converting", path, &e))?;
        pin(fd, path)?;
        Ok(false)
    }

    /// Detaches the node-local access programs (`--node-local-access=false`): removes every
    /// pinned cgroup link, whichever controller attached it.
    pub fn detach_node_local(&mut self) {
        if self.remove_sock_links(|_| true) > 0 {
            info!("node-local access detached");
        }
        let dir = self.sock_links_dir();
        self.links.retain(|p| !p.starts_with(&dir));
    }

    /// Unpins the cgroup links whose file name `matches`; returns how many.
    fn remove_sock_links(&self, matches: impl Fn(&str) -> bool) -> usize {
        let Ok(entries) = std::fs::read_dir(self.sock_links_dir()) else {
            return 0;
        };
        let mut n = 0;
        for entry in entries.flatten() {
            let name = entry.file_name().to_string_lossy().into_owned();
            if matches(&name) {
                // Unpinning drops the last reference, which detaches the program.
                match std::fs::remove_file(entry.path()) {
                    Ok(()) => n += 1,
                    Err(e) => warn!(link = %name, error = %e, "unpinning cgroup link"),
                }
            }
        }
        n
    }
}

/// The cookie of the calling thread's network namespace.
fn netns_cookie() -> io::Result<u64> {
    use std::os::fd::{AsRawFd as _, FromRawFd as _, OwnedFd};
    // SAFETY: plain socket(2); the result is checked and owned below.
    let fd = unsafe { libc::socket(libc::AF_UNIX, libc::SOCK_DGRAM | libc::SOCK_CLOEXEC, 0) };
    if fd < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: a new descriptor nothing else owns.
    let fd = unsafe { OwnedFd::from_raw_fd(fd) };
    let mut cookie = 0u64;
    let mut len =
        libc::socklen_t::try_from(std::mem::size_of::<u64>()).map_err(io::Error::other)?;
    // SAFETY: `cookie` and `len` are valid for writes of the sizes given.
    let rc = unsafe {
        libc::getsockopt(
            fd.as_raw_fd(),
            libc::SOL_SOCKET,
            libc::SO_NETNS_COOKIE,
            (&raw mut cookie).cast(),
            &raw mut len,
        )
    };
    if rc != 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(cookie)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finds_the_cgroup2_mount() {
        let cases = [
            (
                "systemd unified",
                "24 30 0:22 / /sys/fs/cgroup rw,nosuid,nodev,noexec,relatime shared:9 - cgroup2 cgroup2 rw,nsdelegate\n",
                Some("/sys/fs/cgroup"),
            ),
            (
                "hybrid: v1 controllers first, v2 under unified",
                "25 24 0:23 / /sys/fs/cgroup/cpu rw shared:10 - cgroup cgroup rw,cpu\n\
                 26 24 0:24 / /sys/fs/cgroup/unified rw shared:11 - cgroup2 cgroup2 rw\n",
                Some("/sys/fs/cgroup/unified"),
            ),
            (
                "optional fields absent",
                "26 24 0:24 / /cg - cgroup2 none rw\n",
                Some("/cg"),
            ),
            ("no cgroup2", "22 1 0:5 / /proc rw - proc proc rw\n", None),
        ];
        for (name, info, want) in cases {
            assert_eq!(
                cgroup2_in_mountinfo(info),
                want.map(PathBuf::from),
                "{name}"
            );
        }
    }
}
