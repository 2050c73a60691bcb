//! `cargo xtask bench [l4|l4-limits|http|tls|churn|scale|all]`: builds in release, runs each group through
//! the `bench-net` binary of the tests crate (network namespaces, real peers), keeps the raw
//! samples as JSON under `bench/results/`, and regenerates the Markdown tables, SVG charts
//! and BENCHMARKS.md from them. Never part of `cargo xtask test`; nothing is asserted.

mod report;
mod svg;

use std::{path::PathBuf, process::Command, time::Instant};

use anyhow::{Context as _, Result, bail};

use crate::{build, dist, setup};

/// Every group, in report order.
pub const GROUPS: [&str; 6] = ["l4", "l4-limits", "http", "tls", "churn", "scale"];

/// Where the samples, tables and charts go.
pub fn results_dir() -> PathBuf {
    build::root().join("bench/results")
}

/// Runs `group` (or all) and regenerates the report.
pub fn run(group: &str, quick: bool) -> Result<()> {
    let groups: Vec<&str> = match group {
        "report" => {
            report::write_all(&results_dir())?;
            println!("regenerated BENCHMARKS.md from {}", results_dir().display());
            return Ok(());
        }
        "all" => GROUPS.to_vec(),
        g if GROUPS.contains(&g) => vec![g],
        other => {
            bail!("unknown bench group {other:?}: l4, l4-limits, http, tls, churn, scale or all")
        }
    };
    setup::run()?;
    build::exec(build::cargo().args([
        "build",
        "--release",
        "-p",
        "ingress-user",
        "-p",
        "ingress-tests",
        "--bins",
    ]))?;
    build::exec(build::cargo().args([
        "build",
        "--release",
        "-p",
        "ingress-user",
        "--example",
        "scale",
    ]))?;
    // The shipped binary: fat LTO and PGO (`cargo xtask dist`).
    let shipped = dist::run(true)?;
    let command = std::iter::once("cargo xtask".to_owned())
        .chain(std::env::args().skip(1))
        .collect::<Vec<_>>()
        .join(" ");
    let dir = results_dir();
    std::fs::create_dir_all(&dir)?;
    let bin = build::target_dir().join("release/bench-net");
    for g in groups {
        println!("== bench {g}");
        let out = dir.join(format!("{g}.json"));
        let load_before = loadavg();
        let date = date();
        let t0 = Instant::now();
        let mut c = Command::new(&bin);
        c.args([g, "--out"]).arg(&out);
        c.env("XDP_INGRESS_BIN", &shipped);
        if quick {
            c.arg("--quick");
        }
        build::exec(&mut c)?;
        let mut v: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(&out)?)
            .with_context(|| format!("read {}", out.display()))?;
        v["meta"] = serde_json::json!({
            "command": command,
            "date": date,
            "seconds": t0.elapsed().as_secs(),
            "loadavg_before": load_before,
            "loadavg_after": loadavg(),
            "quick": quick,
        });
        std::fs::write(&out, serde_json::to_string_pretty(&v)?)?;
        report::write_all(&dir)?;
    }
    report::write_all(&dir)?;
    println!("wrote {} and BENCHMARKS.md", dir.display());
    Ok(())
}

/// `/proc/loadavg`'s first three fields.
pub fn loadavg() -> String {
    std::fs::read_to_string("/proc/loadavg")
        .unwrap_or_default()
        .split_whitespace()
        .take(3)
        .collect::<Vec<_>>()
        .join(" ")
}

fn date() -> String {
    Command::new("date")
        .args(["-u", "+%Y-%m-%d %H:%M UTC"])
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_owned())
        .unwrap_or_default()
}
