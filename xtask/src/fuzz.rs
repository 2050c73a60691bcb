//! `cargo xtask fuzz`: libFuzzer runs of the targets in `fuzz/` (cargo-fuzz, nightly).
//!
//! The bodies are `xdp_ingress::fuzz::*`; `cargo test` replays the committed corpora
//! (`fuzz/corpus/<target>/`) without any of this. A run here reads the committed corpus
//! but writes what it finds to `fuzz/scratch/<target>/` (git-ignored), so fuzzing never
//! churns git; `--merge` then adds to the committed corpus only the scratch inputs that
//! reach code it does not (libFuzzer's `-merge=1`, by edges), for review and commit.

use std::{
    fs,
    io::{BufRead as _, BufReader},
    path::{Path, PathBuf},
    process::{Command, Stdio},
};

use anyhow::{Context as _, Result, bail};

use crate::{
    build::{cargo, exec, root},
    setup,
};

/// Plain `cargo` from PATH: the rustup proxy, which understands `+nightly` (the `$CARGO`
/// that runs xtask is one toolchain's own binary, which does not).
const CARGO: &str = "cargo";

/// The seconds per target when `--seconds` is not given.
pub const DEFAULT_SECONDS: u64 = 60;

/// What to do with each target.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Mode {
    /// Fuzz for this many seconds.
    Run { seconds: u64 },
    /// Merge the scratch corpus into the committed one.
    Merge,
}

/// Fuzzes `target` (every target, one after the other, when `None`), or merges.
pub fn run(target: Option<&str>, mode: Mode) -> Result<()> {
    let targets = targets()?;
    let chosen: Vec<String> = match target {
        Some(t) if targets.iter().any(|known| known == t) => vec![t.to_owned()],
        Some(t) => bail!(
            "no fuzz target {t:?}; the targets are {}",
            targets.join(", ")
        ),
        None => targets,
    };
    tools()?;
    // One build for all of them; `cargo fuzz run` then finds it up to date.
    exec(fuzz_cmd().arg("build"))?;
    let mut crashed = Vec::new();
    for target in &chosen {
        match mode {
            Mode::Run { seconds } => {
                if let Err(e) = fuzz(target, seconds) {
                    eprintln!("xtask fuzz: {target}: {e:#}");
                    crashed.push(target.as_str());
                }
            }
            Mode::Merge => merge(target)?,
        }
    }
    if !crashed.is_empty() {
        bail!(
            "fuzzing found failures in {} (inputs in fuzz/artifacts/<target>/; reproduce with \
             `cargo +nightly fuzz run <target> <file>`, and add the input to \
             fuzz/corpus/<target>/ with the fix)",
            crashed.join(", ")
        );
    }
    println!("xtask fuzz: done");
    Ok(())
}

/// The targets: one file per target in `fuzz/fuzz_targets/`.
fn targets() -> Result<Vec<String>> {
    let dir = root().join("fuzz/fuzz_targets");
    let mut names = Vec::new();
    for entry in fs::read_dir(&dir).with_context(|| format!("reading {}", dir.display()))? {
        let path = entry?.path();
        if path.extension().is_some_and(|e| e == "rs")
            && let Some(stem) = path.file_stem().and_then(|s| s.to_str())
        {
            names.push(stem.to_owned());
        }
    }
    names.sort();
    Ok(names)
}

/// cargo-fuzz and the nightly toolchain it needs, installed when missing.
fn tools() -> Result<()> {
    setup::nightly_rust_src()?;
    let present = Command::new(CARGO)
        .args(["fuzz", "--version"])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success());
    if present {
        println!("xtask fuzz: cargo-fuzz: present");
    } else {
        println!("xtask fuzz: cargo-fuzz: installing");
        exec(cargo().args(["install", "cargo-fuzz", "--locked"]))
            .context("installing cargo-fuzz")?;
    }
    Ok(())
}

/// `cargo +nightly fuzz`, at the repository root, without the eBPF build (the targets
/// never load it; it needs bpf-linker and doubles the build).
fn fuzz_cmd() -> Command {
    let mut c = Command::new(CARGO);
    c.current_dir(root())
        .env("AYA_BUILD_SKIP", "1")
        .args(["+nightly", "fuzz"]);
    c
}

/// Inputs longer than this are not generated: a request head or a manifest file's worth
/// (seeds longer than it are cut to it).
fn max_len(target: &str) -> usize {
    if target == "manifests" {
        16 * 1024
    } else {
        8 * 1024
    }
}

fn scratch(target: &str) -> PathBuf {
    root().join("fuzz/scratch").join(target)
}

fn committed(target: &str) -> PathBuf {
    root().join("fuzz/corpus").join(target)
}

/// One target for `seconds`. libFuzzer writes new inputs to the first corpus directory
/// only: the scratch one; the committed one is read.
fn fuzz(target: &str, seconds: u64) -> Result<()> {
    let scratch = scratch(target);
    fs::create_dir_all(&scratch).with_context(|| format!("creating {}", scratch.display()))?;
    // Where cargo-fuzz tells libFuzzer to write failing inputs.
    let artifacts = root().join("fuzz/artifacts").join(target);
    fs::create_dir_all(&artifacts)?;
    let before = newest(&artifacts);
    let mut cmd = fuzz_cmd();
    cmd.args(["run", target])
        .arg(&scratch)
        .arg(committed(target))
        .arg("--")
        .arg(format!("-max_total_time={seconds}"))
        .arg(format!("-max_len={}", max_len(target)))
        // A single input taking this long is a hang worth reporting.
        .arg("-timeout=10");
    println!("+ {cmd:?}");
    let mut child = cmd
        .stderr(Stdio::piped())
        .spawn()
        .with_context(|| format!("spawning {cmd:?}"))?;
    // libFuzzer reports on stderr; pass it through and keep the last status line.
    let mut last = None;
    for line in BufReader::new(child.stderr.take().expect("piped stderr")).lines() {
        let line = line?;
        eprintln!("{line}");
        if line.contains("exec/s:") {
            last = Some(line);
        }
    }
    let status = child.wait()?;
    let summary = last.unwrap_or_default();
    if status.success() {
        println!("xtask fuzz: {target}: {seconds} s, no failure; {summary}");
        return Ok(());
    }
    match newest(&artifacts).filter(|new| Some(new) != before.as_ref()) {
        Some(input) => bail!("{status}; the failing input is {}", input.display()),
        None => bail!("{status} (no new artifact; see the output above)"),
    }
}

/// Adds to the committed corpus the scratch inputs that reach code it does not.
fn merge(target: &str) -> Result<()> {
    let scratch = scratch(target);
    if !scratch.is_dir() {
        println!("xtask fuzz: {target}: no scratch corpus to merge");
        return Ok(());
    }
    let committed = committed(target);
    let count = |dir: &Path| fs::read_dir(dir).map_or(0, Iterator::count);
    let before = count(&committed);
    exec(
        fuzz_cmd()
            .args(["run", target])
            .arg(&committed)
            .arg(&scratch)
            .arg("--")
            .arg("-merge=1")
            // New edges only, not new hit counts of known ones: tens of files, not hundreds.
            .arg("-use_counters=0")
            .arg(format!("-max_len={}", max_len(target))),
    )?;
    println!(
        "xtask fuzz: {target}: {} new inputs in {}; review and commit them",
        count(&committed).saturating_sub(before),
        committed.display()
    );
    Ok(())
}

/// The most recently modified file in `dir`.
fn newest(dir: &Path) -> Option<PathBuf> {
    fs::read_dir(dir)
        .ok()?
        .filter_map(|e| {
            let e = e.ok()?;
            Some((e.metadata().ok()?.modified().ok()?, e.path()))
        })
        .max()
        .map(|(_, path)| path)
}
