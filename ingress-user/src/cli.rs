//! Command-line interface. Flag names follow ingress-nginx where the concept is the same.

use std::{path::PathBuf, time::Duration};

use clap::{Args, Parser};

use crate::{l4::L4Mode, logging::LogFormat};

/// xdp-ingress: Kubernetes ingress with an eBPF (XDP/TC) L4 fast path and a hyper L7 router.
#[derive(Debug, Parser)]
#[command(name = "xdp-ingress", version, about, long_about = None)]
pub struct Cli {
    /// Controller options.
    #[command(flatten)]
    pub run: RunArgs,

    /// Log format. The level comes from RUST_LOG (default `info`), e.g. RUST_LOG=xdp_ingress=debug.
    #[arg(long, value_enum, default_value_t = LogFormat::Text, global = true)]
    pub log_format: LogFormat,
}

/// Options of the controller.
#[derive(Debug, Args)]
pub struct RunArgs {
    /// eBPF data path options.
    #[command(flatten)]
    pub l4: L4Args,
}

/// Where and how the eBPF programs attach.
#[derive(Debug, Clone, Args)]
pub struct L4Args {
    /// Interface the eBPF programs attach to (repeatable). Usually the node's uplink NIC(s).
    #[arg(long = "interface", value_name = "IFACE")]
    pub interfaces: Vec<String>,

    /// How L4 services are forwarded: `xdp` (native XDP, generic XDP if the driver lacks it),
    /// `tc` (TCX ingress), or `auto` (native XDP where the driver supports it, else TC).
    #[arg(long, value_enum, default_value_t = L4Mode::Auto)]
    pub l4_mode: L4Mode,

    /// Directory on a bpffs where maps are pinned, so a restarted controller reuses them.
    /// bpffs is mounted at /sys/fs/bpf if it is not already.
    #[arg(long, value_name = "DIR", default_value = "/sys/fs/bpf/xdp-ingress")]
    pub bpf_pin_path: PathBuf,

    /// How often the packet counters are logged (0 disables the log line).
    #[arg(long, value_name = "SECONDS", default_value = "30", value_parser = parse_secs)]
    pub stats_interval: Duration,
}

fn parse_secs(s: &str) -> Result<Duration, String> {
    s.parse::<u64>()
        .map(Duration::from_secs)
        .map_err(|e| format!("expected whole seconds: {e}"))
}

#[cfg(test)]
mod tests {
    use clap::CommandFactory;

    use super::*;

    #[test]
    fn cli_definition_is_consistent() {
        Cli::command().debug_assert();
    }

    #[test]
    fn interface_is_repeatable() {
        let cli = Cli::parse_from(["xdp-ingress", "--interface", "eth0", "--interface", "eth1"]);
        assert_eq!(cli.run.l4.interfaces, ["eth0", "eth1"]);
        assert_eq!(cli.run.l4.l4_mode, L4Mode::Auto);
    }

    #[test]
    fn bad_mode_is_rejected() {
        let err = Cli::try_parse_from(["xdp-ingress", "--l4-mode", "dpdk"]).unwrap_err();
        assert!(err.to_string().contains("dpdk"), "{err}");
    }
}
