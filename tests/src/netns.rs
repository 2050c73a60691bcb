//! Throw-away network namespaces and veth links for end-to-end tests.
//!
//! Every name starts with [`PREFIX`] and carries the test process id, so parallel tests and
//! leftovers from a crashed run never collide; [`sweep_stale`] removes namespaces whose
//! process is gone. Everything is removed on drop, which also runs when a test panics.

use std::{
    fs::File,
    os::fd::AsRawFd,
    path::{Path, PathBuf},
    process::{Command, Stdio},
    sync::atomic::{AtomicU32, Ordering},
};

/// Prefix of every namespace, interface and pin directory a test creates.
pub const PREFIX: &str = "xit";

static SEQ: AtomicU32 = AtomicU32::new(0);

/// Runs a command, panicking with its output when it fails (tests want loud failures).
pub fn sh(args: &[&str]) -> String {
    let out = Command::new(args[0])
        .args(&args[1..])
        .stdin(Stdio::null())
        .output()
        .unwrap_or_else(|e| panic!("spawning {args:?}: {e}"));
    assert!(
        out.status.success(),
        "{args:?} failed: {}\n{}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// Removes `xit-<pid>-*` namespaces left by processes that no longer exist.
pub fn sweep_stale() {
    let Ok(list) = std::fs::read_dir("/run/netns") else {
        return;
    };
    for entry in list.flatten() {
        let name = entry.file_name().to_string_lossy().into_owned();
        let Some(rest) = name.strip_prefix(&format!("{PREFIX}-")) else {
            continue;
        };
        let Some(pid) = rest.split('-').next().and_then(|p| p.parse::<u32>().ok()) else {
            continue;
        };
        if !Path::new(&format!("/proc/{pid}")).exists() {
            let _ = Command::new("ip").args(["netns", "del", &name]).status();
        }
    }
}

/// A network namespace, deleted on drop.
pub struct Netns {
    name: String,
}

impl Netns {
    /// Creates `xit-<pid>-<seq>-<role>` with loopback up.
    pub fn new(role: &str) -> Self {
        sweep_stale();
        let seq = SEQ.fetch_add(1, Ordering::Relaxed);
        let name = format!("{PREFIX}-{}-{seq}-{role}", std::process::id());
        let _ = Command::new("ip")
            .args(["netns", "del", &name])
            .stderr(Stdio::null())
            .status();
        sh(&["ip", "netns", "add", &name]);
        let ns = Self { name };
        ns.ip(&["link", "set", "lo", "up"]);
        ns
    }

    /// The namespace name (as `ip netns` knows it).
    pub fn name(&self) -> &str {
        &self.name
    }

    /// Path of the namespace handle.
    pub fn path(&self) -> PathBuf {
        PathBuf::from("/run/netns").join(&self.name)
    }

    /// `ip -n <ns> <args>`.
    pub fn ip(&self, args: &[&str]) -> String {
        let mut v = vec!["ip", "-n", &self.name];
        v.extend_from_slice(args);
        sh(&v)
    }

    /// Runs a command inside the namespace (network namespace only: the mount namespace,
    /// and so `/sys/fs/bpf`, stays the host's).
    pub fn command(&self, program: impl AsRef<std::ffi::OsStr>) -> Command {
        let mut c = Command::new("nsenter");
        c.arg(format!("--net={}", self.path().display()))
            .arg("--")
            .arg(program);
        c
    }

    /// Runs a command inside the namespace, panicking on failure, returning stdout.
    pub fn exec(&self, args: &[&str]) -> String {
        let mut v = vec![
            "nsenter".to_owned(),
            format!("--net={}", self.path().display()),
            "--".to_owned(),
        ];
        v.extend(args.iter().map(|s| (*s).to_owned()));
        let refs: Vec<&str> = v.iter().map(String::as_str).collect();
        sh(&refs)
    }

    /// Runs `f` on a thread that has entered this namespace; sockets created there belong to
    /// it for their whole life.
    pub fn run<R: Send + 'static>(&self, f: impl FnOnce() -> R + Send + 'static) -> R {
        let file = File::open(self.path()).expect("open netns handle");
        std::thread::spawn(move || {
            // SAFETY: setns on a valid namespace fd, affecting only this thread.
            let rc = unsafe { libc::setns(file.as_raw_fd(), libc::CLONE_NEWNET) };
            assert_eq!(rc, 0, "setns: {}", std::io::Error::last_os_error());
            f()
        })
        .join()
        .unwrap_or_else(|p| std::panic::resume_unwind(p))
    }
}

impl Drop for Netns {
    fn drop(&mut self) {
        let _ = Command::new("ip")
            .args(["netns", "del", &self.name])
            .stderr(Stdio::null())
            .status();
    }
}

/// Connects `a` and `b` with a veth pair named `<a_if>`/`<b_if>` and assigns addresses
/// (CIDR notation). Interfaces vanish with their namespaces.
pub fn veth(a: &Netns, a_if: &str, a_addr: &str, b: &Netns, b_if: &str, b_addr: &str) {
    assert!(
        a_if.len() <= 15 && b_if.len() <= 15,
        "interface names are limited to 15 bytes"
    );
    sh(&[
        "ip",
        "link",
        "add",
        a_if,
        "netns",
        a.name(),
        "type",
        "veth",
        "peer",
        "name",
        b_if,
        "netns",
        b.name(),
    ]);
    for (ns, ifname, addr) in [(a, a_if, a_addr), (b, b_if, b_addr)] {
        ns.ip(&["addr", "add", addr, "dev", ifname]);
        if addr.contains(':') {
            ns.ip(&["addr", "change", addr, "dev", ifname, "nodad"]);
        }
        ns.ip(&["link", "set", ifname, "up"]);
    }
}

/// A directory on bpffs for one test's pinned maps, removed (recursively) on drop.
pub struct PinDir(PathBuf);

impl PinDir {
    /// Creates `/sys/fs/bpf/xit-<pid>-<seq>`, mounting bpffs at /sys/fs/bpf if needed.
    pub fn new() -> Self {
        let root = Path::new("/sys/fs/bpf");
        let mounted = sh(&["stat", "-f", "-c", "%T", "/sys/fs/bpf"]);
        if mounted.trim() != "bpf_fs" {
            sh(&["mount", "-t", "bpf", "bpf", "/sys/fs/bpf"]);
        }
        let seq = SEQ.fetch_add(1, Ordering::Relaxed);
        let dir = root.join(format!("{PREFIX}-{}-{seq}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).expect("create pin dir");
        Self(dir)
    }

    /// The directory.
    pub fn path(&self) -> &Path {
        &self.0
    }
}

impl Default for PinDir {
    fn default() -> Self {
        Self::new()
    }
}

impl Drop for PinDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// Kills a child process on drop (so a failing test does not leave the controller running).
pub struct KillOnDrop(pub std::process::Child);

impl Drop for KillOnDrop {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}
