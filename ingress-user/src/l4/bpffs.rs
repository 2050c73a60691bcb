//! Making sure the pin directory lives on a bpffs.

use std::{ffi::CString, io, os::unix::ffi::OsStrExt, path::Path};

/// `BPF_FS_MAGIC` from `linux/magic.h`.
const BPF_FS_MAGIC: i64 = 0xcafe_4a11;

/// Default bpffs mount point.
pub const BPFFS_ROOT: &str = "/sys/fs/bpf";

/// Whether `path` is on a bpffs.
pub fn is_bpffs(path: &Path) -> io::Result<bool> {
    let c = CString::new(path.as_os_str().as_bytes()).map_err(io::Error::other)?;
    let mut st: libc::statfs = unsafe_zeroed();
    // SAFETY: `c` is a valid NUL-terminated path and `st` a writable statfs.
    let rc = unsafe { libc::statfs(c.as_ptr(), &raw mut st) };
    if rc != 0 {
        return Err(io::Error::last_os_error());
    }
    #[expect(
        clippy::unnecessary_cast,
        reason = "f_type is i64 on x86_64 but not everywhere"
    )]
    Ok(st.f_type as i64 == BPF_FS_MAGIC)
}

/// Ensures `pin_dir` exists on a bpffs, mounting bpffs at [`BPFFS_ROOT`] when the pin
/// directory is below it and nothing is mounted there yet (as on a fresh VM).
pub fn ensure_pin_dir(pin_dir: &Path) -> io::Result<()> {
    let root = Path::new(BPFFS_ROOT);
    if pin_dir.starts_with(root) && !is_bpffs(root)? {
        tracing::info!(mount_point = BPFFS_ROOT, "mounting bpffs");
        mount_bpffs(root)?;
    }
    std::fs::create_dir_all(pin_dir)?;
    if !is_bpffs(pin_dir)? {
        return Err(io::Error::other(format!(
            "{} is not on a bpffs; mount one with `mount -t bpf bpf {}`",
            pin_dir.display(),
            pin_dir.display()
        )));
    }
    Ok(())
}

fn mount_bpffs(target: &Path) -> io::Result<()> {
    let target = CString::new(target.as_os_str().as_bytes()).map_err(io::Error::other)?;
    let fstype = c"bpf";
    // SAFETY: all pointers are valid NUL-terminated strings; data may be NULL.
    let rc = unsafe {
        libc::mount(
            fstype.as_ptr(),
            target.as_ptr(),
            fstype.as_ptr(),
            0,
            std::ptr::null(),
        )
    };
    if rc != 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

fn unsafe_zeroed() -> libc::statfs {
    // SAFETY: statfs is a plain C struct for which all-zero bytes are a valid value.
    unsafe { std::mem::zeroed() }
}
