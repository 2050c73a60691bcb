//! `BPF_OBJ_GET` and `BPF_LINK_UPDATE` for pinned links whose aya 0.14 type has no
//! `attach_to_link` (cgroup `sock_addr` links): a restarted controller swaps its program into
//! the pinned link atomically, as it does for XDP and TC.

use std::{
    ffi::CString,
    io,
    os::{
        fd::{AsRawFd as _, BorrowedFd, FromRawFd as _, OwnedFd},
        unix::ffi::OsStrExt as _,
    },
    path::Path,
};

/// `BPF_OBJ_GET` command number (`include/uapi/linux/bpf.h`).
const BPF_OBJ_GET: libc::c_long = 7;
/// `BPF_LINK_UPDATE` command number.
const BPF_LINK_UPDATE: libc::c_long = 29;

/// The `obj` member of `union bpf_attr`.
#[repr(C)]
#[derive(Default)]
struct ObjAttr {
    pathname: u64,
    bpf_fd: u32,
    file_flags: u32,
    path_fd: i32,
    _pad: u32,
}

/// The `link_update` member of `union bpf_attr`.
#[repr(C)]
#[derive(Default)]
struct LinkUpdateAttr {
    link_fd: u32,
    new_prog_fd: u32,
    flags: u32,
    old_prog_fd: u32,
}

fn bpf<T>(cmd: libc::c_long, attr: &mut T) -> io::Result<libc::c_long> {
    // SAFETY: `attr` is a valid, initialised `bpf_attr` member of the size passed, alive for
    // the duration of the call.
    let rc = unsafe {
        libc::syscall(
            libc::SYS_bpf,
            cmd,
            std::ptr::from_mut(attr),
            std::mem::size_of::<T>(),
        )
    };
    if rc < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(rc)
}

/// Replaces the program of the link pinned at `path` with `prog`.
pub fn update_pinned(path: &Path, prog: BorrowedFd<'_>) -> io::Result<()> {
    let c = CString::new(path.as_os_str().as_bytes()).map_err(io::Error::other)?;
    let mut get = ObjAttr {
        pathname: c.as_ptr() as u64,
        ..ObjAttr::default()
    };
    let fd = bpf(BPF_OBJ_GET, &mut get)?;
    let fd = i32::try_from(fd).map_err(io::Error::other)?;
    // SAFETY: BPF_OBJ_GET returned a new file descriptor that nothing else owns.
    let link = unsafe { OwnedFd::from_raw_fd(fd) };
    let mut update = LinkUpdateAttr {
        link_fd: u32::try_from(link.as_raw_fd()).map_err(io::Error::other)?,
        new_prog_fd: u32::try_from(prog.as_raw_fd()).map_err(io::Error::other)?,
        ..LinkUpdateAttr::default()
    };
    bpf(BPF_LINK_UPDATE, &mut update).map(drop)
}
