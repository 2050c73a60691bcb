//! The one sysctl the kernel path depends on: IPv4 forwarding on the attached interfaces.
//! `bpf_fib_lookup` refuses to route (BPF_FIB_LKUP_RET_FWD_DISABLED) for packets that arrive
//! on an interface with forwarding off, and those packets are then dropped and counted as
//! `drop_no_route`. Kubernetes nodes normally have it on (kube-proxy and CNIs need it).

use std::{fs, io, path::PathBuf};

fn path(iface: &str) -> PathBuf {
    PathBuf::from(format!("/proc/sys/net/ipv4/conf/{iface}/forwarding"))
}

/// Whether IPv4 forwarding is on for `iface`.
pub fn forwarding(iface: &str) -> io::Result<bool> {
    Ok(fs::read_to_string(path(iface))?.trim() == "1")
}

/// Turns IPv4 forwarding on for `iface` (`--enable-forwarding`).
pub fn enable_forwarding(iface: &str) -> io::Result<()> {
    fs::write(path(iface), "1\n")
}
