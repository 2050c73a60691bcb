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

    /// L7 router options.
    #[command(flatten)]
    pub http: HttpArgs,
}

/// How the L7 router listens, balances and limits clients.
#[derive(Debug, Clone, Args)]
pub struct HttpArgs {
    /// Address the HTTP and HTTPS listeners bind to.
    #[arg(long, value_name = "ADDR", default_value = "0.0.0.0")]
    pub bind_address: std::net::IpAddr,

    /// Do not redirect plain-HTTP requests for hosts with TLS to HTTPS (308 by default).
    #[arg(long = "no-ssl-redirect", action = clap::ArgAction::SetFalse)]
    pub ssl_redirect: bool,

    /// How an endpoint is chosen: `round-robin`, or `least-loaded` (power of two choices on
    /// requests in flight).
    #[arg(long, value_enum, default_value_t = crate::http::Balance::RoundRobin)]
    pub load_balance: crate::http::Balance,

    /// Seconds a client may take to send request headers (slowloris guard; also the HTTP/1
    /// keep-alive idle limit and the TLS handshake limit).
    #[arg(long, value_name = "SECONDS", default_value = "20", value_parser = parse_secs)]
    pub client_header_timeout: Duration,

    /// Largest request head in bytes (request line and headers); larger gets 431.
    #[arg(long, value_name = "BYTES", default_value = "32768")]
    pub max_header_bytes: usize,

    /// Largest request body in bytes; larger gets 413. Unlimited when not given.
    #[arg(long, value_name = "BYTES")]
    pub max_body_bytes: Option<u64>,

    /// Seconds connecting to an upstream endpoint may take (then the next endpoint is tried).
    #[arg(long, value_name = "SECONDS", default_value = "5", value_parser = parse_secs)]
    pub upstream_connect_timeout: Duration,

    /// Seconds an upstream may take to send response headers; longer gets 504.
    #[arg(long, value_name = "SECONDS", default_value = "60", value_parser = parse_secs)]
    pub upstream_response_timeout: Duration,

    /// Seconds idle upstream connections stay pooled (also the HTTP/2 client ping interval).
    #[arg(long, value_name = "SECONDS", default_value = "60", value_parser = parse_secs)]
    pub idle_timeout: Duration,

    /// Seconds in-flight HTTP requests get to finish on SIGTERM.
    #[arg(long, value_name = "SECONDS", default_value = "30", value_parser = parse_secs)]
    pub shutdown_grace_period: Duration,
}

impl HttpArgs {
    /// The limits these flags describe.
    pub fn limits(&self) -> crate::http::Limits {
        crate::http::Limits {
            header_read_timeout: self.client_header_timeout,
            max_header_bytes: self.max_header_bytes,
            max_body_bytes: self.max_body_bytes,
            upstream_connect_timeout: self.upstream_connect_timeout,
            upstream_response_timeout: self.upstream_response_timeout,
            idle_timeout: self.idle_timeout,
            shutdown_grace_period: self.shutdown_grace_period,
        }
    }
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
    fn http_defaults_match_the_limits_defaults() {
        let cli = Cli::parse_from(["xdp-ingress"]);
        assert!(cli.run.http.ssl_redirect);
        assert_eq!(cli.run.http.limits(), crate::http::Limits::default());
        let cli = Cli::parse_from([
            "xdp-ingress",
            "--no-ssl-redirect",
            "--load-balance",
            "least-loaded",
        ]);
        assert!(!cli.run.http.ssl_redirect);
        assert_eq!(cli.run.http.load_balance, crate::http::Balance::LeastLoaded);
    }

    #[test]
    fn bad_mode_is_rejected() {
        let err = Cli::try_parse_from(["xdp-ingress", "--l4-mode", "dpdk"]).unwrap_err();
        assert!(err.to_string().contains("dpdk"), "{err}");
    }
}
