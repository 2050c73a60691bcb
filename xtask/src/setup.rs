//! Idempotent installation of everything the project needs on a fresh Debian machine.

use std::{
    path::Path,
    process::{Command, Stdio},
};

use anyhow::{Context as _, Result, bail};

use crate::build::{cargo, exec};

/// Debian packages: LLVM 22 for bpf-linker, and the tools the tests, demo and benchmarks use.
const PACKAGES: &[&str] = &[
    "llvm-22-dev",
    "libpolly-22-dev",
    "zlib1g-dev",
    "libzstd-dev",
    "iproute2",
    "iputils-ping",
    "ethtool",
    "bpftool",
    "util-linux",
    "redis-server",
    "redis-tools",
    "iperf3",
    "nginx",
    "libnginx-mod-stream",
    "haproxy",
    "nftables",
    "wrk",
    "nghttp2-client",
    "socat",
    "tcpdump",
    "curl",
    "python3",
    // `cargo xtask dist` makes its training certificates with it.
    "openssl",
    // Basic-auth tests: htpasswd makes the users files (bcrypt, APR1, SHA).
    "apache2-utils",
    // The monitoring test: a real Prometheus scrapes the binary; promtool checks the rules.
    "prometheus",
];

const LLVM_PREFIX: &str = "/usr/lib/llvm-22";

/// Runs every step, printing what it finds and does.
pub fn run() -> Result<()> {
    debian_packages()?;
    nightly_rust_src()?;
    bpf_linker()?;
    bpffs()?;
    println!("setup: done");
    Ok(())
}

fn is_root() -> bool {
    // SAFETY: geteuid has no preconditions.
    unsafe { libc::geteuid() == 0 }
}

fn debian_packages() -> Result<()> {
    let missing: Vec<&str> = PACKAGES
        .iter()
        .copied()
        .filter(|p| !dpkg_installed(p))
        .collect();
    if missing.is_empty() {
        println!("setup: debian packages: all {} present", PACKAGES.len());
        return Ok(());
    }
    println!("setup: debian packages: installing {}", missing.join(" "));
    if !is_root() {
        bail!(
            "missing Debian packages and not root; run as root or install them: \
             sudo apt-get install -y {}",
            missing.join(" ")
        );
    }
    exec(Command::new("apt-get").args(["update", "-q"])).context("apt-get update")?;
    exec(
        Command::new("apt-get")
            .env("DEBIAN_FRONTEND", "noninteractive")
            .args(["install", "-y", "-q", "--no-install-recommends"])
            .args(&missing),
    )
    .context("apt-get install")?;
    Ok(())
}

fn dpkg_installed(package: &str) -> bool {
    Command::new("dpkg-query")
        .args(["-W", "-f=${Status}", package])
        .stderr(Stdio::null())
        .output()
        .is_ok_and(|o| String::from_utf8_lossy(&o.stdout).contains("install ok installed"))
}

/// The nightly toolchain with rust-src (the eBPF build and the fuzz targets need nightly).
pub fn nightly_rust_src() -> Result<()> {
    let installed = Command::new("rustup")
        .args(["component", "list", "--toolchain", "nightly", "--installed"])
        .stderr(Stdio::null())
        .output()
        .context("running rustup (install it from https://rustup.rs)")?;
    let list = String::from_utf8_lossy(&installed.stdout);
    if !installed.status.success() {
        println!("setup: nightly toolchain: installing");
        exec(Command::new("rustup").args([
            "toolchain",
            "install",
            "nightly",
            "--profile",
            "minimal",
            "--component",
            "rust-src",
        ]))?;
    } else if list.lines().any(|l| l.starts_with("rust-src")) {
        println!("setup: nightly rust-src: present");
    } else {
        println!("setup: nightly rust-src: installing");
        exec(Command::new("rustup").args([
            "component",
            "add",
            "rust-src",
            "--toolchain",
            "nightly",
        ]))?;
    }
    Ok(())
}

fn bpf_linker() -> Result<()> {
    let works = Command::new("bpf-linker")
        .arg("--version")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success());
    if works {
        println!("setup: bpf-linker: present");
        return Ok(());
    }
    if !Path::new(LLVM_PREFIX).join("bin/llvm-config").exists() {
        bail!("bpf-linker needs LLVM 22 at {LLVM_PREFIX} (the llvm-22-dev package)");
    }
    println!("setup: bpf-linker: building against LLVM 22 (about 2 minutes)");
    exec(
        cargo()
            .env("LLVM_PREFIX", LLVM_PREFIX)
            .env("LLVM_SYS_221_PREFIX", LLVM_PREFIX)
            .args([
                "install",
                "bpf-linker",
                "--version",
                "0.13.0",
                "--locked",
                "--no-default-features",
                "--features",
                "llvm-22",
            ]),
    )
    .context("cargo install bpf-linker")
}

fn bpffs() -> Result<()> {
    let fs = Command::new("stat")
        .args(["-f", "-c", "%T", "/sys/fs/bpf"])
        .output()
        .context("stat /sys/fs/bpf")?;
    if String::from_utf8_lossy(&fs.stdout).trim() == "bpf_fs" {
        println!("setup: bpffs: mounted at /sys/fs/bpf");
        return Ok(());
    }
    if !is_root() {
        bail!("bpffs is not mounted at /sys/fs/bpf; run: sudo mount -t bpf bpf /sys/fs/bpf");
    }
    println!("setup: bpffs: mounting at /sys/fs/bpf");
    exec(Command::new("mount").args(["-t", "bpf", "bpf", "/sys/fs/bpf"]))
}
