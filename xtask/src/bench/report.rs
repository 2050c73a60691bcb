//! Turns the JSON samples under `bench/results/` into `<group>.md`, SVG charts and
//! BENCHMARKS.md. Every figure comes from the samples; nothing here is typed by hand
//! except the targets the issues set, which are checked against the samples.

use std::{fmt::Write as _, path::Path, process::Command};

use anyhow::Result;
use serde_json::Value;

use super::{GROUPS, svg};
use crate::build;

/// Median, min and max of `v` (NaN-free input assumed; NaNs sort last).
pub fn summary(v: &[f64]) -> (f64, f64, f64) {
    if v.is_empty() {
        return (f64::NAN, f64::NAN, f64::NAN);
    }
    let mut s = v.to_vec();
    s.sort_by(f64::total_cmp);
    let n = s.len();
    let median = if n % 2 == 1 {
        s[n / 2]
    } else {
        (s[n / 2 - 1] + s[n / 2]) / 2.0
    };
    (median, s[0], s[n - 1])
}

/// A number with a sensible precision for a table.
pub fn num(x: f64) -> String {
    if !x.is_finite() {
        return "–".into();
    }
    let a = x.abs();
    if a >= 1000.0 {
        let int = format!("{:.0}", x.abs());
        let mut out = String::new();
        for (i, c) in int.chars().enumerate() {
            if i > 0 && (int.len() - i) % 3 == 0 {
                out.push(',');
            }
            out.push(c);
        }
        if x < 0.0 { format!("-{out}") } else { out }
    } else if a >= 100.0 || x == x.trunc() {
        format!("{x:.0}")
    } else if a >= 10.0 {
        format!("{x:.1}")
    } else {
        format!("{x:.2}")
    }
}

fn samples(v: &Value) -> Vec<f64> {
    v.as_array()
        .map(|a| a.iter().map(|x| x.as_f64().unwrap_or(f64::NAN)).collect())
        .unwrap_or_default()
}

fn cell(v: &Value) -> String {
    let s = samples(v);
    match s.len() {
        0 => "–".into(),
        1 => num(s[0]),
        _ => {
            let (m, lo, hi) = summary(&s);
            format!("**{}** ({}–{})", num(m), num(lo), num(hi))
        }
    }
}

/// Median of `column` of `row` in `table` of a group.
fn median(group: &Value, table: &str, row: &str, column: &str) -> Option<f64> {
    let t = group["tables"]
        .as_array()?
        .iter()
        .find(|t| t["name"] == table)?;
    let r = t["rows"].as_array()?.iter().find(|r| r["name"] == row)?;
    let s = samples(&r["cells"][column]);
    (!s.is_empty()).then(|| summary(&s).0)
}

fn slug(s: &str) -> String {
    let mut out = String::new();
    for c in s.chars() {
        if c.is_ascii_alphanumeric() {
            out.push(c.to_ascii_lowercase());
        } else if !out.ends_with('-') {
            out.push('-');
        }
    }
    out.trim_matches('-').to_owned()
}

/// One group's tables (and chart links, relative to `link_prefix`) as Markdown.
fn group_markdown(g: &Value, dir: &Path, link_prefix: &str) -> Result<String> {
    let mut md = String::new();
    let group = g["group"].as_str().unwrap_or("?");
    for t in g["tables"].as_array().into_iter().flatten() {
        let name = t["name"].as_str().unwrap_or("");
        let cols: Vec<&str> = t["columns"]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(|c| c["name"].as_str())
            .collect();
        let ratio_to: Vec<&str> = t["ratio_to"]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(|r| r.as_str())
            .collect();
        let rows = t["rows"].as_array().cloned().unwrap_or_default();
        let with_targets = rows.iter().any(|r| r["target"].is_string());
        writeln!(md, "### {name}\n\n{}\n", t["about"].as_str().unwrap_or(""))?;
        let mut header = vec!["configuration".to_owned()];
        header.extend(cols.iter().map(|c| (*c).to_owned()));
        header.extend(
            ratio_to
                .iter()
                .map(|r| format!("{} ÷ {r}", cols.first().unwrap_or(&""))),
        );
        if with_targets {
            header.push("target".to_owned());
        }
        writeln!(md, "| {} |", header.join(" | "))?;
        writeln!(
            md,
            "|{}|",
            header
                .iter()
                .enumerate()
                .map(|(i, _)| if i == 0 { "---" } else { "---:" })
                .collect::<Vec<_>>()
                .join("|")
        )?;
        for r in &rows {
            let rname = r["name"].as_str().unwrap_or("");
            let mut line = vec![rname.to_owned()];
            line.extend(cols.iter().map(|c| cell(&r["cells"][*c])));
            for base in &ratio_to {
                let ratio = cols
                    .first()
                    .and_then(|c| Some(median(g, name, rname, c)? / median(g, name, base, c)?));
                line.push(ratio.map_or("–".into(), |x| format!("{x:.2}×")));
            }
            if with_targets {
                line.push(r["target"].as_str().unwrap_or("").to_owned());
            }
            writeln!(md, "| {} |", line.join(" | "))?;
        }
        md.push('\n');
        if !ratio_to.is_empty() && !rows.is_empty() {
            let file = format!("{group}-{}.svg", slug(name));
            let bars: Vec<svg::Bar> = rows
                .iter()
                .map(|r| {
                    let s = samples(&r["cells"][cols[0]]);
                    let (m, lo, hi) = summary(&s);
                    svg::Bar {
                        label: r["name"].as_str().unwrap_or("").to_owned(),
                        median: m,
                        min: lo,
                        max: hi,
                    }
                })
                .collect();
            std::fs::write(
                dir.join(&file),
                svg::bars(&format!("{name} ({}, median with min–max)", cols[0]), &bars),
            )?;
            writeln!(md, "![{name}]({link_prefix}{file})\n")?;
        }
    }
    let notes: Vec<&str> = g["notes"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|n| n.as_str())
        .collect();
    if !notes.is_empty() {
        md.push_str("Notes:\n\n");
        for n in notes {
            writeln!(md, "- {n}")?;
        }
        md.push('\n');
    }
    let m = &g["meta"];
    writeln!(
        md,
        "_Run: `{}` on {}, {} s; load average {} before, {} after{}._\n",
        m["command"].as_str().unwrap_or("?"),
        m["date"].as_str().unwrap_or("?"),
        m["seconds"],
        m["loadavg_before"].as_str().unwrap_or("?"),
        m["loadavg_after"].as_str().unwrap_or("?"),
        if m["quick"].as_bool() == Some(true) {
            "; --quick (smaller samples)"
        } else {
            ""
        }
    )?;
    Ok(md)
}

struct Target {
    issue: &'static str,
    what: String,
    value: Option<f64>,
    shown: String,
    met: Option<bool>,
}

fn ratio_target(
    l4: Option<&Value>,
    table: &str,
    row: &str,
    base: &str,
    min: f64,
    issue: &'static str,
) -> Target {
    let v =
        l4.and_then(|g| Some(median(g, table, row, "req/s")? / median(g, table, base, "req/s")?));
    Target {
        issue,
        what: format!("{table}: {row} ≥ {min}× {base}"),
        value: v,
        shown: v.map_or("not measured".into(), |x| format!("{x:.2}×")),
        met: v.map(|x| x >= min),
    }
}

fn targets(find: &dyn Fn(&str) -> Option<Value>) -> Vec<Target> {
    let mut out = Vec::new();
    let l4 = find("l4");
    const KA: &str = "redis PING, keep-alive";
    const NEW: &str = "redis PING, new connection per request";
    const DIRECT: &str = "direct routing (limit)";
    for mode in ["xdp-ingress xdp", "xdp-ingress tc"] {
        out.push(ratio_target(l4.as_ref(), KA, mode, DIRECT, 0.9, "#5"));
        out.push(ratio_target(l4.as_ref(), NEW, mode, DIRECT, 0.7, "#5"));
        out.push(ratio_target(
            l4.as_ref(),
            NEW,
            mode,
            "nginx stream",
            5.0,
            "#5",
        ));
    }
    let http = find("http");
    for c in [16, 256] {
        let t = format!("HTTP/1.1, {c} connections");
        let get = |row: &str, col: &str| http.as_ref().and_then(|g| median(g, &t, row, col));
        let rps = get("xdp-ingress", "req/s")
            .zip(get("nginx proxy_pass", "req/s"))
            .map(|(a, b)| a / b);
        out.push(Target {
            issue: "#4",
            what: format!("{t}: xdp-ingress req/s ≥ nginx proxy_pass"),
            value: rps,
            shown: rps.map_or("not measured".into(), |x| format!("{x:.2}×")),
            met: rps.map(|x| x >= 1.0),
        });
        let p99 = get("xdp-ingress", "p99 ms").zip(get("nginx proxy_pass", "p99 ms"));
        out.push(Target {
            issue: "#4",
            what: format!("{t}: xdp-ingress p99 ≤ nginx proxy_pass p99"),
            value: p99.map(|(a, _)| a),
            shown: p99.map_or("not measured".into(), |(a, b)| {
                format!("{} ms vs {} ms", num(a), num(b))
            }),
            met: p99.map(|(a, b)| a <= b),
        });
    }
    let tls = find("tls");
    for (table, col, cpu, min) in [
        (
            "Full handshakes, RSA-2048",
            "handshakes/s",
            "CPU µs per handshake",
            1.2,
        ),
        (
            "Full handshakes, ECDSA P-256",
            "handshakes/s",
            "CPU µs per handshake",
            1.2,
        ),
        (
            "Resumed handshakes (TLS 1.3 tickets), RSA-2048",
            "handshakes/s",
            "CPU µs per handshake",
            1.2,
        ),
        (
            "HTTPS keep-alive, 64 connections",
            "req/s",
            "CPU µs per request",
            1.2,
        ),
        (
            "HTTP/2 over TLS, 16 connections x 10 streams",
            "req/s",
            "CPU µs per request",
            1.5,
        ),
        (
            "HTTPS keep-alive, 64 connections, backend on CPU 0",
            "req/s",
            "CPU µs per request",
            1.2,
        ),
        (
            "HTTP/2 over TLS, 16 connections x 10 streams, backend on CPU 0",
            "req/s",
            "CPU µs per request",
            1.5,
        ),
    ] {
        let get = |row: &str, col: &str| tls.as_ref().and_then(|g| median(g, table, row, col));
        // The rate, and the work done per CPU second (nginx's CPU per unit over ours): the
        // second does not depend on how much CPU a loaded machine leaves each proxy.
        for (what, v) in [
            (
                format!("{table}: xdp-ingress {col} ≥ {min}× nginx"),
                get("xdp-ingress", col)
                    .zip(get("nginx", col))
                    .map(|(a, b)| a / b),
            ),
            (
                format!("{table}: xdp-ingress work per CPU second ≥ {min}× nginx ({cpu})"),
                get("nginx", cpu)
                    .zip(get("xdp-ingress", cpu))
                    .map(|(a, b)| a / b),
            ),
        ] {
            out.push(Target {
                issue: "#20",
                what,
                value: v,
                shown: v.map_or("not measured".into(), |x| format!("{x:.2}×")),
                met: v.map(|x| x >= min),
            });
        }
    }
    let churn = find("churn");
    let traffic = "Traffic during the changes";
    let failed: Option<f64> = churn.as_ref().and_then(|g| {
        let t = g["tables"]
            .as_array()?
            .iter()
            .find(|t| t["name"] == traffic)?;
        Some(
            t["rows"]
                .as_array()?
                .iter()
                .map(|r| samples(&r["cells"]["failed"]).iter().sum::<f64>())
                .sum(),
        )
    });
    let changes = churn
        .as_ref()
        .and_then(|g| median(g, "Propagation latency", "all changes", "changes"));
    out.push(Target {
        issue: "#8",
        what: format!(
            "churn: failed requests and connections during {} changes = 0",
            changes.map_or("the".into(), num)
        ),
        value: failed,
        shown: failed.map_or("not measured".into(), num),
        met: failed.map(|f| f == 0.0),
    });
    let p99 = churn
        .as_ref()
        .and_then(|g| median(g, "Propagation latency", "all changes", "p99 ms"));
    for issue in ["#3", "#8"] {
        out.push(Target {
            issue,
            what: "change → seen in the data plane, p99 < 100 ms (file mode)".into(),
            value: p99,
            shown: p99.map_or("not measured".into(), |x| format!("{} ms", num(x))),
            met: p99.map(|x| x < 100.0),
        });
    }
    let scale = find("scale");
    let st = "Control plane at 10,000 Ingresses × 5 paths, 50,000 endpoints";
    let build = scale
        .as_ref()
        .and_then(|g| median(g, st, "full build, config::build (ms)", "value"));
    let rss = scale.as_ref().and_then(|g| {
        median(
            g,
            st,
            "peak RSS of the process, objects + engine + Snapshot (MiB)",
            "value",
        )
    });
    for issue in ["#3", "#8"] {
        out.push(Target {
            issue,
            what: "Snapshot build at 10k Ingresses × 5 paths, 50k endpoints < 1 s".into(),
            value: build,
            shown: build.map_or("not measured".into(), |x| format!("{} ms", num(x))),
            met: build.map(|x| x < 1000.0),
        });
        out.push(Target {
            issue,
            what: "peak RSS at that scale < 150 MB (in process: objects, engine, Snapshot)".into(),
            value: rss,
            shown: rss.map_or("not measured".into(), |x| {
                format!("{} MB ({} MiB)", num(x * 1.048_576), num(x))
            }),
            met: rss.map(|x| x * 1.048_576 < 150.0),
        });
    }
    out.extend(propagation_targets(scale.as_ref()));
    out
}

/// Issue 16's targets for the real binary at scale, per source mode.
fn propagation_targets(scale: Option<&Value>) -> Vec<Target> {
    const T: &str =
        "Change → routed, the real binary at 10,000 Ingresses × 5 paths, 50,000 endpoints";
    let mut out = Vec::new();
    for mode in ["files", "kube"] {
        let get = |row: &str| scale.and_then(|g| median(g, T, row, mode));
        let below = |what: &str, row: &str, limit: f64, unit: &str| {
            let v = get(row);
            Target {
                issue: "#16",
                what: format!("{mode} mode: {what} < {limit} {unit}"),
                value: v,
                shown: v.map_or("not measured".into(), |x| format!("{} {unit}", num(x))),
                met: v.map(|x| x < limit),
            }
        };
        out.push(below(
            "added Ingress → routed, p99",
            "added Ingress → routed, p99 (ms)",
            20.0,
            "ms",
        ));
        out.push(below(
            "endpoint change → routed, p99",
            "endpoint change → routed, p99 (ms)",
            20.0,
            "ms",
        ));
        out.push(below(
            "controller peak RSS",
            "controller peak RSS at the end (VmHWM, MiB)",
            200.0,
            "MiB",
        ));
        out.push(below(
            "churn of 100 EndpointSlice changes/s: change → routed, p99",
            "churn: change → routed, p99 (ms)",
            50.0,
            "ms",
        ));
        let made = get("churn: EndpointSlice changes made");
        let seen = get("churn: changes seen");
        out.push(Target {
            issue: "#16",
            what: format!("{mode} mode: churn: every change seen"),
            value: seen,
            shown: made.zip(seen).map_or("not measured".into(), |(m, s)| {
                format!("{} of {}", num(s), num(m))
            }),
            met: made.zip(seen).map(|(m, s)| s >= m),
        });
    }
    out
}

fn machine() -> String {
    let cpuinfo = std::fs::read_to_string("/proc/cpuinfo").unwrap_or_default();
    let model = cpuinfo
        .lines()
        .find_map(|l| {
            l.strip_prefix("model name")
                .map(|r| r.trim_start_matches([' ', '\t', ':']).to_owned())
        })
        .unwrap_or_else(|| "unknown".into());
    let cpus = cpuinfo
        .lines()
        .filter(|l| l.starts_with("processor"))
        .count();
    let mem = std::fs::read_to_string("/proc/meminfo")
        .unwrap_or_default()
        .lines()
        .find_map(|l| l.strip_prefix("MemTotal:").map(|r| r.trim().to_owned()))
        .unwrap_or_default();
    let uname = Command::new("uname")
        .arg("-srvm")
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_owned())
        .unwrap_or_default();
    let version = |prog: &str, arg: &str| {
        Command::new(prog)
            .arg(arg)
            .output()
            .map(|o| {
                let text = String::from_utf8_lossy(&o.stdout).into_owned()
                    + &String::from_utf8_lossy(&o.stderr);
                text.lines().next().unwrap_or("").trim().to_owned()
            })
            .unwrap_or_else(|_| "not installed".into())
    };
    format!(
        "- CPU: {model}, {cpus} logical CPUs\n- Memory: {mem}\n- Kernel: `{uname}`\n- Peers and tools: {}; {}; {}; {}; {}; {}\n",
        version("nginx", "-v"),
        version("haproxy", "-v"),
        version("redis-benchmark", "--version"),
        version("iperf3", "--version"),
        version("wrk", "-v"),
        version("h2load", "--version"),
    )
}

/// Regenerates `<group>.md`, the charts and BENCHMARKS.md from the JSON in `dir`.
pub fn write_all(dir: &Path) -> Result<()> {
    let load = |g: &str| -> Option<Value> {
        let text = std::fs::read_to_string(dir.join(format!("{g}.json"))).ok()?;
        let v: Value = serde_json::from_str(&text).ok()?;
        v.get("meta").is_some().then_some(v)
    };
    let mut md = String::from(
        "# Benchmarks\n\nGenerated by `cargo xtask bench` from the samples in `bench/results/*.json`; \
         do not edit by hand, re-run the command. Each configuration is measured at least 5 times: \
         cells show the **median** (min–max); a single figure is computed over the whole run. \
         Ratios compare medians of the first column.\n\n",
    );
    let metas: Vec<(String, String)> = GROUPS
        .iter()
        .filter_map(|g| {
            load(g).map(|v| {
                (
                    g.to_string(),
                    v["meta"]["command"].as_str().unwrap_or("").to_owned(),
                )
            })
        })
        .collect();
    if metas.is_empty() {
        md.push_str("No results yet: run `cargo xtask bench all`.\n");
    } else {
        md.push_str("Produced by: ");
        let mut cmds: Vec<String> = metas.iter().map(|(_, c)| format!("`{c}`")).collect();
        cmds.dedup();
        md.push_str(&cmds.join(", "));
        md.push_str(" (as root: network namespaces and eBPF).\n\n");
    }
    writeln!(md, "## Machine\n\n{}", machine())?;
    md.push_str(
        "Everything runs on this one machine: load generators, proxies, servers and the kernel's \
         forwarding share its cores, and the links are veth pairs between network namespaces, not NICs. \
         The ratios measured side by side in one run are the point; the absolute numbers are this VM's. \
         xdp-ingress is the binary `deploy/Dockerfile` ships, built by `cargo xtask dist`: release with \
         fat LTO and one codegen unit, optimised with a profile of a training load (PGO; since \
         2026-12-07, groups measured before that ran the same build without PGO).\n\n",
    );
    md.push_str("## Targets\n\n| issue | target | measured | |\n|---|---|---:|---|\n");
    for t in targets(&load) {
        let _ = t.value;
        let verdict = match t.met {
            Some(true) => "met",
            Some(false) => "**missed**",
            None => "not measured",
        };
        writeln!(md, "| {} | {} | {} | {verdict} |", t.issue, t.what, t.shown)?;
    }
    md.push('\n');
    let titles = [
        (
            "l4",
            "L4: redis and iperf3 through the kernel path and the peers",
        ),
        (
            "l4-limits",
            "L4 limits: SNAT exhaustion and the XDP program's cost per packet",
        ),
        ("http", "HTTP: the router against nginx and HAProxy"),
        (
            "tls",
            "TLS: handshakes, resumption, keep-alive and HTTP/2 against nginx and HAProxy",
        ),
        ("churn", "Churn: 1,000 configuration changes under load"),
        ("scale", "Scale"),
    ];
    for (g, title) in titles {
        let Some(v) = load(g) else {
            writeln!(
                md,
                "## {title}\n\nNot measured yet: `cargo xtask bench {g}`.\n"
            )?;
            continue;
        };
        let body = group_markdown(&v, dir, "")?;
        std::fs::write(dir.join(format!("{g}.md")), format!("# {title}\n\n{body}"))?;
        writeln!(
            md,
            "## {title}\n\n{}",
            group_markdown(&v, dir, "bench/results/")?
        )?;
    }
    std::fs::write(build::root().join("BENCHMARKS.md"), md)?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn summary_of_odd_and_even_counts_is_median_min_max() {
        assert_eq!(summary(&[3.0, 1.0, 2.0]), (2.0, 1.0, 3.0));
        assert_eq!(summary(&[4.0, 1.0, 2.0, 3.0]), (2.5, 1.0, 4.0));
    }

    #[test]
    fn numbers_get_thousands_separators_and_precision_by_size() {
        for (x, s) in [
            (98_039.2, "98,039"),
            (123.4, "123"),
            (12.34, "12.3"),
            (1.234, "1.23"),
            (0.0, "0"),
            (f64::NAN, "–"),
        ] {
            assert_eq!(num(x), s, "{x}");
        }
    }
}
