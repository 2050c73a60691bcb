//! BPF_PROG_TEST_RUN by file descriptor, returning the kernel's own timing, and the floor
//! program the XDP costs are compared to: `r0 = XDP_PASS; exit`, loaded from two raw
//! instructions (nothing cheaper can run at that hook).

use std::{
    io,
    os::fd::{FromRawFd as _, OwnedFd, RawFd},
};

const BPF_PROG_LOAD: libc::c_long = 5;
const BPF_PROG_TEST_RUN: libc::c_long = 10;
const BPF_PROG_TYPE_XDP: u32 = 6;
/// `XDP_PASS`.
pub const XDP_PASS: u32 = 2;

/// The `BPF_PROG_LOAD` member of `union bpf_attr`, up to `prog_name`.
#[repr(C)]
#[derive(Default)]
struct LoadAttr {
    prog_type: u32,
    insn_cnt: u32,
    insns: u64,
    license: u64,
    log_level: u32,
    log_size: u32,
    log_buf: u64,
    kern_version: u32,
    prog_flags: u32,
    prog_name: [u8; 16],
    prog_ifindex: u32,
    expected_attach_type: u32,
}

/// The `test` member of `union bpf_attr`.
#[repr(C)]
#[derive(Default)]
struct TestAttr {
    prog_fd: u32,
    retval: u32,
    data_size_in: u32,
    data_size_out: u32,
    data_in: u64,
    data_out: u64,
    repeat: u32,
    duration: u32,
    ctx_size_in: u32,
    ctx_size_out: u32,
    ctx_in: u64,
    ctx_out: u64,
    flags: u32,
    cpu: u32,
    batch_size: u32,
    _pad: u32,
}

fn bpf<T>(cmd: libc::c_long, attr: &mut T) -> io::Result<libc::c_long> {
    // SAFETY: `attr` is a valid, initialised bpf_attr member of the right size for `cmd`;
    // the pointers inside it point at live buffers of the sizes it states.
    let rc = unsafe {
        libc::syscall(
            libc::SYS_bpf,
            cmd,
            std::ptr::from_mut(attr),
            std::mem::size_of::<T>(),
        )
    };
    if rc < 0 {
        Err(io::Error::last_os_error())
    } else {
        Ok(rc)
    }
}

/// Loads the floor: an XDP program that returns `XDP_PASS` and does nothing else.
pub fn load_xdp_pass() -> io::Result<OwnedFd> {
    // BPF_ALU64 | BPF_MOV | BPF_K, dst r0, imm XDP_PASS; then BPF_JMP | BPF_EXIT.
    let insns: [u64; 2] = [0xb7 | (u64::from(XDP_PASS) << 32), 0x95];
    let license = b"GPL\0";
    let mut name = [0u8; 16];
    name[..9].copy_from_slice(b"xdp_floor");
    let mut attr = LoadAttr {
        prog_type: BPF_PROG_TYPE_XDP,
        insn_cnt: 2,
        insns: insns.as_ptr() as u64,
        license: license.as_ptr() as u64,
        prog_name: name,
        ..LoadAttr::default()
    };
    let fd = bpf(BPF_PROG_LOAD, &mut attr)?;
    // SAFETY: the kernel just returned this new descriptor; nothing else owns it.
    Ok(unsafe { OwnedFd::from_raw_fd(fd as RawFd) })
}

/// One BPF_PROG_TEST_RUN of the program behind `fd` on `frame`, `repeat` times over the same
/// buffer (a program that rewrites the frame sees its own output from the second round on):
/// the return value and the kernel's mean nanoseconds per round.
pub fn run(fd: RawFd, frame: &[u8], ctx: &[u8], repeat: u32) -> io::Result<(u32, u32)> {
    let mut out = vec![0u8; frame.len() + 256];
    let mut attr = TestAttr {
        prog_fd: u32::try_from(fd).map_err(io::Error::other)?,
        data_size_in: u32::try_from(frame.len()).map_err(io::Error::other)?,
        data_size_out: u32::try_from(out.len()).map_err(io::Error::other)?,
        data_in: frame.as_ptr() as u64,
        data_out: out.as_mut_ptr() as u64,
        repeat,
        ctx_size_in: u32::try_from(ctx.len()).map_err(io::Error::other)?,
        ctx_in: ctx.as_ptr() as u64,
        ..TestAttr::default()
    };
    bpf(BPF_PROG_TEST_RUN, &mut attr)?;
    Ok((attr.retval, attr.duration))
}

/// `struct xdp_md` for a frame of `len` bytes received on `ifindex`.
pub fn xdp_ctx(len: usize, ifindex: u32) -> Vec<u8> {
    [
        0u32,
        u32::try_from(len).unwrap_or(u32::MAX),
        0,
        ifindex,
        0,
        0,
    ]
    .iter()
    .flat_map(|v| v.to_ne_bytes())
    .collect()
}
