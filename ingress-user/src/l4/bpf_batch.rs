//! `BPF_MAP_UPDATE_BATCH` for array maps, which aya 0.14 does not expose: writing a Maglev
//! table slot by slot costs one syscall per slot, a batch costs one per table.

use std::{io, os::fd::RawFd};

/// `BPF_MAP_UPDATE_BATCH` command number (`include/uapi/linux/bpf.h`).
const BPF_MAP_UPDATE_BATCH: libc::c_long = 26;

/// The `batch` member of `union bpf_attr`.
#[repr(C)]
#[derive(Default)]
struct BatchAttr {
    in_batch: u64,
    out_batch: u64,
    keys: u64,
    values: u64,
    count: u32,
    map_fd: u32,
    elem_flags: u64,
    flags: u64,
}

/// Writes `values[i]` at index `keys[i]` of the `u32` array map behind `map_fd`.
pub fn update_u32_array(map_fd: RawFd, keys: &[u32], values: &[u32]) -> io::Result<()> {
    assert_eq!(keys.len(), values.len(), "one value per key");
    if keys.is_empty() {
        return Ok(());
    }
    let mut attr = BatchAttr {
        keys: keys.as_ptr() as u64,
        values: values.as_ptr() as u64,
        count: u32::try_from(keys.len()).map_err(io::Error::other)?,
        map_fd: u32::try_from(map_fd).map_err(io::Error::other)?,
        ..BatchAttr::default()
    };
    // SAFETY: `attr` points at valid key/value buffers of `count` elements each, alive for
    // the duration of the call; the kernel reads them and writes back only `count`.
    let rc = unsafe {
        libc::syscall(
            libc::SYS_bpf,
            BPF_MAP_UPDATE_BATCH,
            &raw mut attr,
            std::mem::size_of::<BatchAttr>(),
        )
    };
    if rc != 0 {
        return Err(io::Error::last_os_error());
    }
    if attr.count as usize != keys.len() {
        return Err(io::Error::other(format!(
            "batch update wrote {} of {} elements",
            attr.count,
            keys.len()
        )));
    }
    Ok(())
}
