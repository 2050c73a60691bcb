//! Builds. There is one eBPF build path: ingress-user/build.rs (aya-build); these drive it.

use std::{
    env,
    io::{BufRead as _, BufReader},
    path::{Path, PathBuf},
    process::{Command, Stdio},
};

use anyhow::{Context as _, Result, anyhow, bail};

/// The workspace root (xtask lives one level below it).
pub fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("xtask has a parent directory")
        .to_owned()
}

/// Cargo's target directory: `CARGO_TARGET_DIR` if set, else `target/` at the root.
pub fn target_dir() -> PathBuf {
    env::var_os("CARGO_TARGET_DIR").map_or_else(|| root().join("target"), PathBuf::from)
}

/// `cargo` as invoked us, run at the workspace root.
pub fn cargo() -> Command {
    let mut c = Command::new(env::var_os("CARGO").unwrap_or_else(|| "cargo".into()));
    c.current_dir(root());
    c
}

/// Runs a command, echoing it, failing on a non-zero exit.
pub fn exec(cmd: &mut Command) -> Result<()> {
    println!("+ {cmd:?}");
    let status = cmd.status().with_context(|| format!("spawning {cmd:?}"))?;
    if !status.success() {
        bail!("{cmd:?} failed: {status}");
    }
    Ok(())
}

fn profile_args(release: bool) -> &'static [&'static str] {
    if release { &["--release"] } else { &[] }
}

/// Builds ingress-user (whose build script builds the eBPF crate) and copies the object to
/// `target/bpf/ingress.o`; returns that path.
pub fn ebpf(release: bool) -> Result<PathBuf> {
    let mut child = cargo()
        .args([
            "build",
            "--package",
            "ingress-user",
            "--message-format=json-render-diagnostics",
        ])
        .args(profile_args(release))
        .stdout(Stdio::piped())
        .spawn()
        .context("spawning cargo build")?;
    let stdout = child.stdout.take().expect("piped stdout");
    let mut out_dir = None;
    for line in BufReader::new(stdout).lines() {
        let line = line?;
        if !line.contains("\"build-script-executed\"") || !line.contains("ingress-user") {
            continue;
        }
        let v: serde_json::Value = serde_json::from_str(&line)?;
        if let Some(dir) = v.get("out_dir").and_then(|d| d.as_str()) {
            out_dir = Some(PathBuf::from(dir));
        }
    }
    if !child.wait()?.success() {
        bail!("cargo build --package ingress-user failed");
    }
    let object = out_dir
        .ok_or_else(|| anyhow!("cargo did not report ingress-user's build script output"))?
        .join("ingress");
    let meta = std::fs::metadata(&object).with_context(|| format!("{}", object.display()))?;
    if meta.len() == 0 {
        bail!("the eBPF build was skipped (AYA_BUILD_SKIP is set); unset it and retry");
    }
    let dest_dir = root().join("target/bpf");
    std::fs::create_dir_all(&dest_dir)?;
    let dest = dest_dir.join("ingress.o");
    std::fs::copy(&object, &dest)
        .with_context(|| format!("copying {} to {}", object.display(), dest.display()))?;
    Ok(dest)
}

/// Builds every default member, all targets.
pub fn workspace(release: bool) -> Result<()> {
    exec(
        cargo()
            .args(["build", "--all-targets"])
            .args(profile_args(release)),
    )
}
