//! Builds the eBPF object (nightly, bpfel-unknown-none, via bpf-linker) into OUT_DIR so the
//! binary embeds it. This is the only eBPF build path; `cargo xtask build-ebpf` drives it too.
//! `AYA_BUILD_SKIP=1` skips it (e.g. for clippy on machines without bpf-linker); the binary
//! then reports at runtime that it has no eBPF object.

use std::{env, fs, path::PathBuf};

use anyhow::{Context as _, anyhow};

const EBPF_PACKAGE: &str = "ingress-ebpf";
/// The `[[bin]]` name of the eBPF crate, i.e. the file aya-build writes to OUT_DIR.
const EBPF_BIN: &str = "ingress";

fn main() -> anyhow::Result<()> {
    let manifest_dir = PathBuf::from(env::var("CARGO_MANIFEST_DIR")?);
    let ebpf_dir = manifest_dir
        .parent()
        .ok_or_else(|| anyhow!("{} has no parent", manifest_dir.display()))?
        .join(EBPF_PACKAGE);
    let ebpf_dir = ebpf_dir
        .to_str()
        .ok_or_else(|| anyhow!("non-UTF-8 path {}", ebpf_dir.display()))?;
    // ingress-common is a path dependency of the eBPF crate, not of this build script.
    println!("cargo:rerun-if-changed={ebpf_dir}/../ingress-common/src");

    git_commit();

    let out = PathBuf::from(env::var("OUT_DIR")?).join(EBPF_BIN);
    let skip = env::var("AYA_BUILD_SKIP").is_ok_and(|v| v == "1" || v.eq_ignore_ascii_case("true"));
    if skip {
        // An empty object keeps `include_bytes!` compiling; the loader refuses it clearly.
        if !out.exists() {
            fs::write(&out, []).context("writing placeholder eBPF object")?;
        }
    }
    aya_build::build_ebpf(
        [aya_build::Package {
            name: EBPF_PACKAGE,
            root_dir: ebpf_dir,
            ..Default::default()
        }],
        aya_build::Toolchain::default(),
    )
    .context(
        "building the eBPF programs (run `cargo xtask setup` if bpf-linker or rust-src is missing)",
    )
}

/// `XDP_INGRESS_GIT_COMMIT` for the build-info metric: the checked-out commit (12 hex
/// digits), or `unknown` outside git. Reruns when HEAD or the branch it points to moves
/// (only files that exist are watched: a missing one would rerun every build).
fn git_commit() {
    let git = |args: &[&str]| {
        std::process::Command::new("git")
            .args(args)
            .output()
            .ok()
            .filter(|o| o.status.success())
            .and_then(|o| String::from_utf8(o.stdout).ok())
            .map(|s| s.trim().to_owned())
            .filter(|s| !s.is_empty())
    };
    let commit = git(&["rev-parse", "--short=12", "HEAD"]).unwrap_or_else(|| "unknown".into());
    println!("cargo:rustc-env=XDP_INGRESS_GIT_COMMIT={commit}");
    println!("cargo:rerun-if-env-changed=XDP_INGRESS_GIT_COMMIT");
    let watch = |path: Option<String>| {
        if let Some(path) = path.filter(|p| std::path::Path::new(p).exists()) {
            println!("cargo:rerun-if-changed={path}");
        }
    };
    watch(git(&["rev-parse", "--git-path", "HEAD"]));
    if let Some(branch) = git(&["symbolic-ref", "-q", "HEAD"]) {
        watch(git(&["rev-parse", "--git-path", &branch]));
    }
}
