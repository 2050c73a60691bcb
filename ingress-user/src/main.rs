//! The `xdp-ingress` binary: parses flags, starts the data planes and waits for a signal.

use anyhow::Context as _;
use clap::Parser as _;
use tokio::signal::unix::{SignalKind, signal};
use tracing::{info, warn};
use xdp_ingress::{
    EBPF_OBJECT,
    cli::{Cli, L4Args},
    l4::Datapath,
};

fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    xdp_ingress::logging::init(cli.log_format);
    if let Some(xdp_ingress::cli::Command::Check(args)) = &cli.command {
        return check(args);
    }
    tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("building the tokio runtime")?
        .block_on(run(cli))
}

/// `xdp-ingress check`: print the resolved configuration; exit 1 on any error Problem.
fn check(args: &xdp_ingress::cli::CheckArgs) -> anyhow::Result<()> {
    use std::io::Write as _;
    let snapshot = xdp_ingress::check::snapshot(args)?;
    let mut stdout = std::io::stdout().lock();
    stdout
        .write_all(xdp_ingress::check::report(&snapshot).as_bytes())
        .and_then(|()| stdout.flush())
        .context("writing the report")?;
    if xdp_ingress::check::failed(&snapshot) {
        std::process::exit(1);
    }
    Ok(())
}

async fn run(cli: Cli) -> anyhow::Result<()> {
    let datapath = attach(&cli.run.l4)?;
    let mut sigterm = signal(SignalKind::terminate()).context("installing SIGTERM handler")?;
    let mut ticker = tokio::time::interval(if cli.run.l4.stats_interval.is_zero() {
        std::time::Duration::MAX / 4
    } else {
        cli.run.l4.stats_interval
    });
    ticker.tick().await;
    loop {
        tokio::select! {
            _ = tokio::signal::ctrl_c() => break,
            _ = sigterm.recv() => break,
            _ = ticker.tick() => log_stats(datapath.as_ref()),
        }
    }
    info!("shutting down");
    log_stats(datapath.as_ref());
    Ok(())
}

/// Loads and attaches the eBPF programs, if any interface was named.
fn attach(args: &L4Args) -> anyhow::Result<Option<Datapath>> {
    if args.interfaces.is_empty() {
        info!("no --interface given; the eBPF data path is not attached");
        return Ok(None);
    }
    let options = xdp_ingress::l4::DatapathOptions {
        maglev_size: args.maglev_table_size,
        ct_entries: args.conntrack_entries,
        snat_v4: args.node_addresses.iter().find_map(|a| match a {
            std::net::IpAddr::V4(v4) => Some(*v4),
            std::net::IpAddr::V6(_) => None,
        }),
        snat_ports: args.snat_port_range,
        ..Default::default()
    };
    let mut dp = Datapath::load(EBPF_OBJECT, &args.bpf_pin_path, options).with_context(|| {
        format!(
            "loading eBPF with maps pinned in {}",
            args.bpf_pin_path.display()
        )
    })?;
    for iface in &args.interfaces {
        dp.attach(iface, args.l4_mode)
            .with_context(|| format!("attaching to --interface {iface}"))?;
    }
    Ok(Some(dp))
}

fn log_stats(datapath: Option<&Datapath>) {
    let Some(dp) = datapath else { return };
    match dp.stats() {
        Ok(t) => {
            use ingress_common::stats::Counter as C;
            info!(
                seen = t.get(C::Seen).packets,
                ipv4 = t.get(C::Ipv4).packets,
                ipv6 = t.get(C::Ipv6).packets,
                tcp = t.get(C::Tcp).packets,
                udp = t.get(C::Udp).packets,
                other_l4 = t.get(C::OtherL4).packets,
                non_ip = t.get(C::NonIp).packets,
                malformed = t.get(C::Malformed).packets,
                fragment = t.get(C::Fragment).packets,
                "packet counters"
            );
        }
        Err(e) => warn!(error = %e, "reading packet counters"),
    }
}
