//! `bench-net GROUP --out FILE [--quick]`: one benchmark group of `cargo xtask bench`
//! (l4, http, tls, churn, scale), written as JSON samples for xtask to report. Needs root
//! (network namespaces, eBPF) and the release build of xdp-ingress beside it.

use anyhow::{Context as _, bail};
use ingress_tests::bench::{churn, http, l4, l4_limits, propagation, rig::Rig, scale, tls};

fn main() -> anyhow::Result<()> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let group = args
        .first()
        .context("usage: bench-net l4|l4-limits|http|tls|churn|scale --out FILE [--quick]")?;
    let out = args
        .iter()
        .skip_while(|a| *a != "--out")
        .nth(1)
        .context("--out FILE")?;
    let quick = args.iter().any(|a| a == "--quick");
    let samples = 5;
    let results = match group.as_str() {
        "l4" => {
            let mut rig = Rig::new()?;
            l4::run(
                &mut rig,
                l4::Params {
                    samples,
                    keepalive_requests: if quick { 20_000 } else { 50_000 },
                    newconn_requests: if quick { 2_000 } else { 5_000 },
                    iperf_secs: if quick { 1 } else { 3 },
                },
            )?
        }
        "http" => {
            let mut rig = Rig::new()?;
            http::run(
                &mut rig,
                http::Params {
                    samples,
                    secs: if quick { 1 } else { 3 },
                },
            )?
        }
        "tls" => {
            let mut rig = Rig::new()?;
            tls::run(
                &mut rig,
                tls::Params {
                    samples,
                    secs: if quick { 1 } else { 3 },
                },
            )?
        }
        "churn" => {
            let mut rig = Rig::new()?;
            churn::run(
                &mut rig,
                churn::Params {
                    changes: if quick { 100 } else { 1000 },
                },
            )?
        }
        "l4-limits" => l4_limits::run(l4_limits::Params {
            samples,
            runs: if quick { 500 } else { 2000 },
            repeat: if quick { 100_000 } else { 1_000_000 },
            e2e_samples: if quick { 2 } else { 5 },
        })?,
        "scale" => scale::run(scale::Params {
            samples,
            propagation: propagation::Params {
                samples: if quick { 10 } else { 30 },
                churn_secs: if quick { 10 } else { 60 },
            },
        })?,
        other => bail!("unknown group {other:?} (l4, l4-limits, http, tls, churn, scale)"),
    };
    results.write(std::path::Path::new(out))?;
    println!("bench-net {group}: wrote {out}");
    Ok(())
}
