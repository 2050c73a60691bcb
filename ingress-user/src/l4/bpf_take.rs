//! `BPF_MAP_LOOKUP_AND_DELETE_ELEM` for hash maps (Linux 5.14+), which aya 0.14 exposes only
//! for queues and stacks. Conntrack collection needs it: deleting an entry and reading what
//! it held is one step, so an entry a packet refreshed after the collector read it is seen,
//! and put back, instead of being deleted behind a live flow's back.

use std::{io, mem::MaybeUninit, os::fd::RawFd};

use aya::Pod;

/// `BPF_MAP_UPDATE_ELEM` command number (`include/uapi/linux/bpf.h`).
const BPF_MAP_UPDATE_ELEM: libc::c_long = 2;
/// `BPF_MAP_LOOKUP_AND_DELETE_ELEM` command number.
const BPF_MAP_LOOKUP_AND_DELETE_ELEM: libc::c_long = 21;
/// `BPF_NOEXIST`: insert only if the key is absent.
const BPF_NOEXIST: u64 = 1;

/// The element-operation member of `union bpf_attr`.
#[repr(C)]
#[derive(Default)]
struct ElemAttr {
    map_fd: u32,
    _pad: u32,
    key: u64,
    value: u64,
    flags: u64,
}

/// Deletes `key` from the hash map behind `map_fd` and returns the value it held, or `None`
/// when the key was not there.
pub fn take<K: Pod, V: Pod>(map_fd: RawFd, key: &K) -> io::Result<Option<V>> {
    let mut value = MaybeUninit::<V>::uninit();
    let mut attr = ElemAttr {
        map_fd: u32::try_from(map_fd).map_err(io::Error::other)?,
        key: std::ptr::from_ref(key) as u64,
        value: value.as_mut_ptr() as u64,
        ..ElemAttr::default()
    };
    // SAFETY: `attr` points at a key of the map's key size and a buffer of its value size
    // (the caller's types match the map, as aya checks when the map is opened), both alive
    // for the duration of the call.
    let rc = unsafe {
        libc::syscall(
            libc::SYS_bpf,
            BPF_MAP_LOOKUP_AND_DELETE_ELEM,
            &raw mut attr,
            std::mem::size_of::<ElemAttr>(),
        )
    };
    if rc != 0 {
        let e = io::Error::last_os_error();
        return if e.raw_os_error() == Some(libc::ENOENT) {
            Ok(None)
        } else {
            Err(e)
        };
    }
    // SAFETY: the kernel filled the whole value on success; `V: Pod` has no invalid bit
    // patterns.
    Ok(Some(unsafe { value.assume_init() }))
}

/// Puts `value` back under `key` unless the key is there again (`BPF_NOEXIST`): true if it
/// was put back, false if another entry took the key meanwhile.
pub fn put_back<K: Pod, V: Pod>(map_fd: RawFd, key: &K, value: &V) -> io::Result<bool> {
    let mut attr = ElemAttr {
        map_fd: u32::try_from(map_fd).map_err(io::Error::other)?,
        key: std::ptr::from_ref(key) as u64,
        value: std::ptr::from_ref(value) as u64,
        flags: BPF_NOEXIST,
        ..ElemAttr::default()
    };
    // SAFETY: as in `take`; the kernel only reads the key and the value.
    let rc = unsafe {
        libc::syscall(
            libc::SYS_bpf,
            BPF_MAP_UPDATE_ELEM,
            &raw mut attr,
            std::mem::size_of::<ElemAttr>(),
        )
    };
    if rc == 0 {
        return Ok(true);
    }
    let e = io::Error::last_os_error();
    if e.raw_os_error() == Some(libc::EEXIST) {
        Ok(false)
    } else {
        Err(e)
    }
}
