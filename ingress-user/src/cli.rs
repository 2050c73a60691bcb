//! Command-line interface. Flag names follow ingress-nginx where the concept is the same.

use std::{net::IpAddr, path::PathBuf, time::Duration};

use clap::{Args, Parser, Subcommand};

use crate::{
    config::{NamespacedName, Options},
    l4::{L4Mode, conntrack::Timeouts},
    logging::LogFormat,
};

/// xdp-ingress: Kubernetes ingress with an eBPF (XDP/TC) L4 fast path and a hyper L7 router.
#[derive(Debug, Parser)]
#[command(name = "xdp-ingress", version, about, long_about = None, args_conflicts_with_subcommands = true)]
pub struct Cli {
    /// What to do; without a subcommand, run the controller.
    #[command(subcommand)]
    pub command: Option<Command>,

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

    /// Where Kubernetes objects come from and which are ours.
    #[command(flatten)]
    pub source: SourceArgs,

    /// The ports the controller serves on (reserved for it in the tcp/udp-services ConfigMaps).
    #[command(flatten)]
    pub ports: PortArgs,

    /// Ingress status, leader election, Events and the instance's identity.
    #[command(flatten)]
    pub ops: OpsArgs,
}

/// Operations in kube mode: Ingress status, leader election and Events. Identity flags
/// default to the downward-API environment (`POD_NAME`, `POD_NAMESPACE`, `NODE_NAME`,
/// `HOST_IP`) the DaemonSet sets.
#[derive(Debug, Clone, Args)]
pub struct OpsArgs {
    /// Write `status.loadBalancer.ingress` on served Ingresses (done by the elected leader)
    /// and clear it on Ingresses no longer served.
    #[arg(long)]
    pub update_status: bool,

    /// Address to write into Ingress status (repeatable or comma-separated; IPs or host
    /// names). Takes precedence over --publish-service. Without either, the node addresses
    /// of all running instances are written.
    #[arg(long, value_name = "ADDR", value_delimiter = ',')]
    pub publish_status_address: Vec<String>,

    /// Service whose `status.loadBalancer.ingress` (else `spec.externalIPs`) goes into
    /// Ingress status.
    #[arg(long, value_name = "NAMESPACE/NAME")]
    pub publish_service: Option<NamespacedName>,

    /// Name of the leader-election Lease (coordination.k8s.io/v1) in the pod namespace.
    #[arg(long, value_name = "NAME", default_value = "xdp-ingress-leader")]
    pub election_id: String,

    /// Seconds a leader's Lease stays valid without renewal; the leader renews every third
    /// of it, and a successor takes over within it after the leader dies.
    #[arg(long, value_name = "SECONDS", default_value = "15", value_parser = parse_secs)]
    pub election_lease_duration: Duration,

    /// This instance's identity in leader election (default: the host name).
    #[arg(long, value_name = "NAME", env = "POD_NAME")]
    pub pod_name: Option<String>,

    /// Namespace of the election Leases (the controller's own namespace).
    #[arg(
        long,
        value_name = "NAMESPACE",
        env = "POD_NAMESPACE",
        default_value = "default"
    )]
    pub pod_namespace: String,

    /// Node name, reported as the source host of Events.
    #[arg(long, value_name = "NAME", env = "NODE_NAME")]
    pub node_name: Option<String>,

    /// This node's address for Ingress status when no --node-address is given
    /// (the downward API's `status.hostIP`).
    #[arg(long, value_name = "IP", env = "HOST_IP")]
    pub host_ip: Option<IpAddr>,

    /// Seconds between two Events about the same Problem (later ones bump the count).
    #[arg(long, value_name = "SECONDS", default_value = "600", value_parser = parse_secs)]
    pub event_interval: Duration,
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
    /// keep-alive idle limit, the TLS handshake limit, and the limit for the ClientHello
    /// read for TLS passthrough).
    #[arg(long, value_name = "SECONDS", default_value = "20", value_parser = parse_secs)]
    pub client_header_timeout: Duration,

    /// Largest request head in bytes (request line and headers); larger gets 431.
    #[arg(long, value_name = "BYTES", default_value = "32768")]
    pub max_header_bytes: usize,

    /// Largest request body in bytes; larger gets 413. Unlimited when not given.
    #[arg(long, value_name = "BYTES")]
    pub max_body_bytes: Option<u64>,

    /// Seconds a client may send nothing while sending a request body (between two reads,
    /// like nginx's client_body_timeout); then the request gets 408.
    #[arg(long, value_name = "SECONDS", default_value = "60", value_parser = parse_secs)]
    pub client_body_timeout: Duration,

    /// Request bodies up to this many bytes are read whole before an upstream connection is
    /// taken, so a stalled small upload holds no upstream connection; larger bodies stream.
    #[arg(long, value_name = "BYTES", default_value = "65536")]
    pub client_body_buffer_size: usize,

    /// Forward request headers whose names contain `_`. By default they are dropped (and
    /// counted), as nginx does: backends that treat `_` and `-` alike (CGI, WSGI, PHP) could
    /// otherwise be fed a spoofed `X_Forwarded_For` beside the one the router sets.
    #[arg(long)]
    pub allow_underscores_in_headers: bool,

    /// Seconds connecting to an upstream endpoint may take (then the next endpoint is tried).
    #[arg(long, value_name = "SECONDS", default_value = "5", value_parser = parse_secs)]
    pub upstream_connect_timeout: Duration,

    /// Seconds an upstream may take to send response headers once the request is fully sent
    /// (longer gets 504), and may stay silent while sending a response body (then the
    /// response is cut, like nginx's proxy_read_timeout) or block a request write.
    #[arg(long, value_name = "SECONDS", default_value = "60", value_parser = parse_secs)]
    pub upstream_response_timeout: Duration,

    /// Seconds idle upstream connections stay pooled, and HTTP/2 client connections with no
    /// open stream stay open (then they get GOAWAY); also the silence after which TCP
    /// keepalive probes a client (dead after 3 unanswered, 10 s apart), and the ping
    /// interval of h2c upstream connections.
    #[arg(long, value_name = "SECONDS", default_value = "60", value_parser = parse_secs)]
    pub idle_timeout: Duration,

    /// Status of requests over an Ingress's `limit-rps` / `limit-rpm` (ingress-nginx's
    /// ConfigMap `limit-req-status-code`; 429 is a common choice).
    #[arg(long, value_name = "STATUS", default_value = "503", value_parser = clap::value_parser!(u16).range(400..=599))]
    pub limit_req_status_code: u16,

    /// Status of requests over an Ingress's `limit-connections` (ingress-nginx's ConfigMap
    /// `limit-conn-status-code`).
    #[arg(long, value_name = "STATUS", default_value = "503", value_parser = clap::value_parser!(u16).range(400..=599))]
    pub limit_conn_status_code: u16,

    /// Seconds in-flight HTTP requests get to finish on SIGTERM.
    #[arg(long, value_name = "SECONDS", default_value = "30", value_parser = parse_secs)]
    pub shutdown_grace_period: Duration,

    /// Threads serving HTTP(S). Each has its own listening sockets (`SO_REUSEPORT`: the
    /// kernel spreads new connections) and its own upstream connection pool, and serves a
    /// request start to finish. 0: one per CPU the process may use (its affinity mask, and
    /// its cgroup CPU quota when it has one).
    #[arg(long, value_name = "N", default_value = "0")]
    pub http_workers: usize,

    /// Access log: `off`, `stdout` (the default, as ingress-nginx) or a file path (appended
    /// to). One line per request, written by a separate thread in batches every 20 ms; when
    /// it falls behind, lines are dropped and counted
    /// (`xdp_ingress_access_log_dropped_lines_total`), never waited for.
    #[arg(long, value_name = "off|stdout|PATH", default_value = "stdout")]
    pub access_log: crate::http::access_log::Target,

    /// Access log line format: `json` (one object per line) or `text` (`key=value` pairs).
    #[arg(long, value_enum, value_name = "FORMAT", default_value_t = crate::http::access_log::Format::Json)]
    pub access_log_format: crate::http::access_log::Format,
}

impl HttpArgs {
    /// The limits these flags describe.
    pub fn limits(&self) -> crate::http::Limits {
        crate::http::Limits {
            header_read_timeout: self.client_header_timeout,
            max_header_bytes: self.max_header_bytes,
            max_body_bytes: self.max_body_bytes,
            client_body_timeout: self.client_body_timeout,
            client_body_buffer_size: self.client_body_buffer_size,
            upstream_connect_timeout: self.upstream_connect_timeout,
            upstream_response_timeout: self.upstream_response_timeout,
            idle_timeout: self.idle_timeout,
            shutdown_grace_period: self.shutdown_grace_period,
            limit_req_status: status(self.limit_req_status_code),
            limit_conn_status: status(self.limit_conn_status_code),
        }
    }
}

/// A status code clap has checked to be 400..=599.
fn status(code: u16) -> hyper::StatusCode {
    hyper::StatusCode::from_u16(code).unwrap_or(hyper::StatusCode::SERVICE_UNAVAILABLE)
}

/// Where and how L4 (tcp/udp-services) traffic is forwarded.
#[derive(Debug, Clone, Args)]
pub struct L4Args {
    /// Interface the eBPF programs attach to (repeatable). Name every interface L4 traffic
    /// crosses: the one clients reach and, if different, the one facing the endpoints (their
    /// replies are translated back there). `auto`: the interfaces holding the
    /// `--node-address`es, else the one of the IPv4 default route (logged at start).
    #[arg(long = "interface", value_name = "IFACE")]
    pub interfaces: Vec<String>,

    /// How L4 services are forwarded: `auto` (native XDP where the driver supports it, else
    /// TC), `xdp` (native XDP, else generic XDP), `tc` (TCX ingress), or `userspace` (a tokio
    /// proxy; no eBPF). XDP modes attach TC beside XDP to resolve unknown neighbours.
    /// PROXY-protocol entries are always served by the userspace proxy.
    #[arg(long, value_enum, default_value_t = L4Mode::Auto)]
    pub l4_mode: L4Mode,

    /// Node address L4 services answer on (repeatable). Default: every address of the
    /// `--interface`s. The first IPv4 one is also the SNAT source; without it, SNAT uses the
    /// address the client connected to.
    #[arg(long = "node-address", value_name = "IP")]
    pub node_addresses: Vec<IpAddr>,

    /// Source ports for SNAT, `LOW-HIGH` inclusive. Keep it clear of the node's ephemeral
    /// range (`net.ipv4.ip_local_port_range`) and of ports services listen on.
    #[arg(long, value_name = "LOW-HIGH", default_value = "20000-32767", value_parser = parse_port_range)]
    pub snat_port_range: (u16, u16),

    /// Maglev table size per L4 service; must be prime, ideally ≥ 100 × its endpoints.
    /// Fixed when the pinned maps are first created.
    #[arg(long, value_name = "PRIME", default_value_t = ingress_common::limits::MAGLEV_SIZE)]
    pub maglev_table_size: u32,

    /// Conntrack capacity per direction. When full, new L4 flows are dropped and counted
    /// (`drop_ct_full`); established ones are never evicted.
    #[arg(long, value_name = "N", default_value_t = ingress_common::limits::CT_ENTRIES)]
    pub conntrack_entries: u32,

    /// Idle timeout of established TCP flows in conntrack (the handshake completed).
    #[arg(long, value_name = "SECONDS", default_value = "3600", value_parser = parse_secs)]
    pub tcp_timeout: Duration,

    /// Timeout of embryonic TCP flows in conntrack: opened by a client, handshake not
    /// complete (no SYN-ACK from the endpoint yet, or no ACK of it from the client). Each one
    /// holds a SNAT port, so this bounds how long SYNs that are never answered (a flood with
    /// spoofed sources or bad checksums, a dead endpoint) hold the SNAT range: this plus one
    /// conntrack pass (at most 5 s). Only the client's packets refresh it. Default 10 s: a
    /// Linux client retransmits an unanswered SYN after 1, 2, 4 and 8 s, so a slow handshake
    /// keeps its entry, and a later retransmit simply opens a new one. nf_conntrack (under
    /// kube-proxy) keeps SYN_SENT flows 120 s and Cilium 60 s: 6 to 12 times longer.
    #[arg(long, value_name = "SECONDS", default_value = "10", value_parser = parse_secs)]
    pub tcp_syn_timeout: Duration,

    /// How long conntrack keeps a TCP flow after FIN from both sides, so the last ACK and
    /// late retransmits still find it. A RST releases the flow at the next conntrack pass.
    #[arg(long, value_name = "SECONDS", default_value = "10", value_parser = parse_secs)]
    pub tcp_close_timeout: Duration,

    /// Idle timeout of UDP flows in conntrack (and of userspace UDP sessions).
    #[arg(long, value_name = "SECONDS", default_value = "30", value_parser = parse_secs)]
    pub udp_timeout: Duration,

    /// Directory on a bpffs where maps and links are pinned, so a restarted or upgraded
    /// controller reuses them and established L4 flows survive. bpffs is mounted at
    /// /sys/fs/bpf if it is not already.
    #[arg(long, value_name = "DIR", default_value = "/sys/fs/bpf/xdp-ingress")]
    pub bpf_pin_path: PathBuf,

    /// Turn on IPv4 forwarding (`net.ipv4.conf.<iface>.forwarding=1`) on the `--interface`s.
    /// The kernel path needs it to route translated packets; without this flag xdp-ingress
    /// only warns when it is off (Kubernetes nodes normally have it on).
    #[arg(long)]
    pub enable_forwarding: bool,

    /// Detach the eBPF programs on exit instead of leaving them pinned. By default they stay
    /// attached, so L4 flows keep flowing while the pod is replaced.
    #[arg(long)]
    pub l4_detach_on_exit: bool,

    /// Node-local access: processes on the node (and hostNetwork pods) that connect or send
    /// to a node address and an L4 service port reach the service, as with kube-proxy.
    /// cgroup `connect`/`sendmsg`/`recvmsg`/`getpeername` eBPF hooks point their sockets at
    /// an endpoint (socket-level load balancing, as Cilium does); no packet is NATed. Only
    /// with the kernel path (not `--l4-mode userspace`). If the hooks cannot attach, a
    /// warning is logged and everything else works. `--node-local-access=false` detaches them.
    #[arg(
        long,
        value_name = "BOOL",
        default_value_t = true,
        num_args = 0..=1,
        default_missing_value = "true",
        action = clap::ArgAction::Set
    )]
    pub node_local_access: bool,

    /// The cgroup v2 directory whose processes (and descendants) get node-local access.
    /// Default: the root of the cgroup v2 mount (every process on the node). In a pod with
    /// its own cgroup namespace, mount the host's /sys/fs/cgroup and name it here.
    #[arg(long, value_name = "DIR")]
    pub node_local_cgroup: Option<PathBuf>,

    /// How often the packet counters are logged (0 disables the log line).
    #[arg(long, value_name = "SECONDS", default_value = "30", value_parser = parse_secs)]
    pub stats_interval: Duration,
}

impl L4Args {
    /// The conntrack timeouts these flags describe.
    pub fn timeouts(&self) -> Timeouts {
        Timeouts {
            tcp_syn: self.tcp_syn_timeout,
            tcp_established: self.tcp_timeout,
            tcp_closed: self.tcp_close_timeout,
            udp: self.udp_timeout,
        }
    }
}

fn parse_port_range(s: &str) -> Result<(u16, u16), String> {
    let (lo, hi) = s
        .split_once('-')
        .ok_or_else(|| format!("expected LOW-HIGH, got {s:?}"))?;
    let lo: u16 = lo
        .trim()
        .parse()
        .map_err(|e| format!("low port {lo:?}: {e}"))?;
    let hi: u16 = hi
        .trim()
        .parse()
        .map_err(|e| format!("high port {hi:?}: {e}"))?;
    if lo == 0 || lo > hi {
        return Err(format!("need 1 <= LOW <= HIGH, got {lo}-{hi}"));
    }
    Ok((lo, hi))
}

/// Subcommands.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Check the configuration like `nginx -t`: print the resolved HTTP routes, the L4 table
    /// and every Problem, then exit 1 if any Problem is an error (warnings do not fail).
    Check(CheckArgs),
    /// Show what the kernel path holds, read from the pinned maps (--bpf-pin-path; works
    /// whether or not the controller runs): `services` (addresses, endpoints and their
    /// Maglev share, counters), `flows` (conntrack), `counters` (global, drops by reason,
    /// per service). Aligned text, or `--json`.
    Inspect(InspectArgs),
}

/// Options of `xdp-ingress inspect`.
#[derive(Debug, Clone, Args)]
pub struct InspectArgs {
    /// Where the controller pinned its maps.
    #[arg(
        long,
        value_name = "DIR",
        default_value = "/sys/fs/bpf/xdp-ingress",
        global = true
    )]
    pub bpf_pin_path: PathBuf,

    /// Print JSON instead of aligned text.
    #[arg(long, global = true)]
    pub json: bool,

    /// What to show.
    #[command(subcommand)]
    pub what: InspectWhat,
}

/// What `inspect` shows.
#[derive(Debug, Clone, Subcommand)]
pub enum InspectWhat {
    /// L4 services: protocol/port, addresses, endpoints with their Maglev share, counters.
    Services,
    /// Conntrack flows: client, service, endpoint, SNAT address, state, idle time.
    Flows(FlowArgs),
    /// Global packet counters, drops by reason, and per-service counters.
    Counters,
}

/// Filters of `inspect flows` (all given must match).
#[derive(Debug, Clone, Args)]
pub struct FlowArgs {
    /// Only flows of this service: `PORT`, `tcp/PORT` or `udp/PORT`.
    #[arg(long, value_name = "[tcp/|udp/]PORT")]
    pub service: Option<crate::inspect::render::ServiceMatch>,
    /// Only flows from this client: `IP` or `IP:PORT`.
    #[arg(long, value_name = "IP[:PORT]")]
    pub client: Option<crate::inspect::render::AddrMatch>,
    /// Only flows to this endpoint: `IP` or `IP:PORT`.
    #[arg(long, value_name = "IP[:PORT]")]
    pub endpoint: Option<crate::inspect::render::AddrMatch>,
}

impl FlowArgs {
    /// The filter these flags describe.
    pub fn filter(&self) -> crate::inspect::render::FlowFilter {
        crate::inspect::render::FlowFilter {
            service: self.service,
            client: self.client,
            endpoint: self.endpoint,
        }
    }
}

/// Options of `xdp-ingress check`: the same source, class and ConfigMap flags as the controller.
#[derive(Debug, Clone, Args)]
pub struct CheckArgs {
    /// Where Kubernetes objects come from and which are ours.
    #[command(flatten)]
    pub source: SourceArgs,

    /// The ports reserved for the controller.
    #[command(flatten)]
    pub ports: PortArgs,
}

/// Where Kubernetes objects come from, and which of them this controller serves.
#[derive(Debug, Clone, Args)]
pub struct SourceArgs {
    /// Read Kubernetes manifests (`*.yaml`, `*.yml`, `*.json`; multi-document and `kind: List`
    /// allowed; not recursive) from this directory instead of a cluster, and follow changes.
    /// Besides Ingress, Service, Secret and ConfigMap, give EndpointSlices or v1 Endpoints to
    /// point Services at real backends. Without this flag, the cluster from the kubeconfig
    /// (or the in-cluster config) is watched.
    #[arg(long, value_name = "DIR")]
    pub manifests: Option<PathBuf>,

    /// ConfigMap of TCP services (ingress-nginx format): key = external port, value =
    /// `namespace/service:port[:PROXY[:PROXY]]` (port = Service port number or name; 3rd field
    /// PROXY = clients send PROXY protocol, 4th = send it to backends).
    #[arg(long, value_name = "NAMESPACE/NAME")]
    pub tcp_services_configmap: Option<NamespacedName>,

    /// ConfigMap of UDP services, same format as --tcp-services-configmap (no PROXY fields).
    #[arg(long, value_name = "NAMESPACE/NAME")]
    pub udp_services_configmap: Option<NamespacedName>,

    /// Service that gets requests no Ingress rule matches, when no Ingress sets a
    /// `defaultBackend` (its first port is used). Without it, unmatched requests get 404.
    #[arg(long, value_name = "NAMESPACE/NAME")]
    pub default_backend_service: Option<NamespacedName>,

    /// Serve Ingresses whose `ingressClassName` or `kubernetes.io/ingress.class` annotation
    /// is this (works without IngressClass objects).
    #[arg(long, value_name = "NAME", default_value = "xdp")]
    pub ingress_class: String,

    /// Serve Ingresses whose IngressClass has this `spec.controller`.
    #[arg(
        long,
        value_name = "NAME",
        default_value = "xdp-ingress.dev/controller"
    )]
    pub controller_class: String,

    /// Also serve Ingresses that name no class (otherwise only if one of our IngressClasses
    /// is annotated `ingressclass.kubernetes.io/is-default-class: "true"`).
    #[arg(long)]
    pub watch_ingress_without_class: bool,

    /// Only serve Ingresses (and read Services, EndpointSlices, Secrets) of this namespace.
    /// All namespaces when not given.
    #[arg(long, value_name = "NAMESPACE")]
    pub watch_namespace: Option<String>,

    /// Read ingress-nginx annotations under this prefix (`<prefix>/ssl-redirect`, ...), so
    /// Ingresses written for ingress-nginx with a custom prefix migrate too.
    #[arg(long, value_name = "PREFIX", default_value = crate::config::annotations::DEFAULT_PREFIX)]
    pub annotations_prefix: String,

    /// Response header names the `custom-headers` annotation may set, comma-separated
    /// (ingress-nginx's `global-allowed-response-headers`): an Ingress whose ConfigMap
    /// names any other gets 503 on its paths. None by default.
    #[arg(long, value_name = "NAMES", value_delimiter = ',', value_parser = parse_header_name)]
    pub global_allowed_response_headers: Vec<hyper::header::HeaderName>,
}

/// The controller's own ports.
#[derive(Debug, Clone, Copy, Args)]
pub struct PortArgs {
    /// Port of the plain-HTTP listener.
    #[arg(long, value_name = "PORT", default_value_t = 80)]
    pub http_port: u16,

    /// Port of the HTTPS listener.
    #[arg(long, value_name = "PORT", default_value_t = 443)]
    pub https_port: u16,

    /// Port of the health and metrics endpoint (`/healthz`, `/readyz`, `/metrics`).
    #[arg(long, value_name = "PORT", default_value_t = 10254)]
    pub health_port: u16,
}

impl SourceArgs {
    /// The translation options these flags describe.
    pub fn options(&self, ports: PortArgs) -> Options {
        Options {
            ingress_class: self.ingress_class.clone(),
            controller_class: self.controller_class.clone(),
            watch_without_class: self.watch_ingress_without_class,
            watch_namespace: self.watch_namespace.clone(),
            tcp_services: self.tcp_services_configmap.clone(),
            udp_services: self.udp_services_configmap.clone(),
            default_backend_service: self.default_backend_service.clone(),
            http_port: ports.http_port,
            https_port: ports.https_port,
            health_port: ports.health_port,
            annotations_prefix: self.annotations_prefix.clone(),
            allowed_response_headers: self.global_allowed_response_headers.clone(),
        }
    }
}

fn parse_header_name(s: &str) -> Result<hyper::header::HeaderName, String> {
    s.trim()
        .parse()
        .map_err(|_| format!("{s:?} is not a header name"))
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
    fn conntrack_timeout_flags_default_to_the_gc_defaults() {
        let cli = Cli::parse_from(["xdp-ingress"]);
        let (flags, defaults) = (cli.run.l4.timeouts(), Timeouts::default());
        assert_eq!(flags.tcp_syn, defaults.tcp_syn);
        assert_eq!(flags.tcp_established, defaults.tcp_established);
        assert_eq!(flags.tcp_closed, defaults.tcp_closed);
        assert_eq!(flags.udp, defaults.udp);
        let cli = Cli::parse_from([
            "xdp-ingress",
            "--tcp-syn-timeout",
            "2",
            "--tcp-close-timeout",
            "3",
        ]);
        let t = cli.run.l4.timeouts();
        assert_eq!(t.tcp_syn, Duration::from_secs(2));
        assert_eq!(t.tcp_closed, Duration::from_secs(3));
    }

    #[test]
    fn snat_port_ranges_parse_or_explain() {
        assert_eq!(parse_port_range("20000-32767"), Ok((20000, 32767)));
        for bad in ["20000", "0-10", "10-5", "a-10", "10-70000"] {
            assert!(parse_port_range(bad).is_err(), "{bad} accepted");
        }
    }

    #[test]
    fn source_flags_default_to_the_options_defaults() {
        let cli = Cli::parse_from(["xdp-ingress"]);
        assert!(cli.command.is_none());
        assert_eq!(cli.run.source.options(cli.run.ports), Options::default());
    }

    #[test]
    fn source_flags_reach_the_options() {
        let cli = Cli::parse_from([
            "xdp-ingress",
            "--manifests",
            "/m",
            "--tcp-services-configmap",
            "ingress/tcp",
            "--udp-services-configmap",
            "ingress/udp",
            "--default-backend-service",
            "ns/fallback",
            "--ingress-class",
            "c",
            "--controller-class",
            "x/y",
            "--watch-ingress-without-class",
            "--watch-namespace",
            "ns",
            "--http-port",
            "8080",
            "--https-port",
            "8443",
            "--health-port",
            "9000",
        ]);
        let o = cli.run.source.options(cli.run.ports);
        assert_eq!(
            cli.run.source.manifests.as_deref(),
            Some(std::path::Path::new("/m"))
        );
        assert_eq!(o.tcp_services.unwrap().to_string(), "ingress/tcp");
        assert_eq!(o.udp_services.unwrap().to_string(), "ingress/udp");
        assert_eq!(
            o.default_backend_service.unwrap().to_string(),
            "ns/fallback"
        );
        assert_eq!(
            (o.ingress_class.as_str(), o.controller_class.as_str()),
            ("c", "x/y")
        );
        assert!(o.watch_without_class);
        assert_eq!(o.watch_namespace.as_deref(), Some("ns"));
        assert_eq!(
            (o.http_port, o.https_port, o.health_port),
            (8080, 8443, 9000)
        );
    }

    #[test]
    fn namespaced_name_flags_are_validated_at_parse_time() {
        for flag in [
            "--tcp-services-configmap",
            "--udp-services-configmap",
            "--default-backend-service",
        ] {
            let err = Cli::try_parse_from(["xdp-ingress", flag, "tcp-services"]).unwrap_err();
            let msg = err.to_string();
            assert!(
                msg.contains("expected namespace/name (e.g. ingress-nginx/tcp-services), got \"tcp-services\""),
                "{flag}: {msg}"
            );
        }
    }

    #[test]
    fn check_takes_the_same_source_flags() {
        let cli = Cli::parse_from([
            "xdp-ingress",
            "check",
            "--manifests",
            "/m",
            "--tcp-services-configmap",
            "a/b",
        ]);
        let Some(Command::Check(args)) = cli.command else {
            panic!("not check: {:?}", cli.command)
        };
        assert_eq!(
            args.source.manifests.as_deref(),
            Some(std::path::Path::new("/m"))
        );
        assert_eq!(
            args.source
                .options(args.ports)
                .tcp_services
                .unwrap()
                .to_string(),
            "a/b"
        );
    }

    #[test]
    fn inspect_takes_its_flags_before_or_after_the_subcommand() {
        let cli = Cli::parse_from([
            "xdp-ingress",
            "inspect",
            "--bpf-pin-path",
            "/p",
            "flows",
            "--service",
            "tcp/9000",
            "--client",
            "10.0.0.2",
            "--json",
        ]);
        let Some(Command::Inspect(args)) = cli.command else {
            panic!("not inspect: {:?}", cli.command)
        };
        assert_eq!(args.bpf_pin_path, std::path::Path::new("/p"));
        assert!(args.json);
        let InspectWhat::Flows(flows) = args.what else {
            panic!("not flows")
        };
        let f = flows.filter();
        assert_eq!(
            f.service.map(|s| (s.protocol, s.port)),
            Some((Some("tcp"), 9000))
        );
        assert!(f.client.is_some() && f.endpoint.is_none());
        let err =
            Cli::try_parse_from(["xdp-ingress", "inspect", "flows", "--service", "x"]).unwrap_err();
        assert!(err.to_string().contains("expected PORT"), "{err}");
    }

    #[test]
    fn access_log_defaults_to_json_on_stdout() {
        use crate::http::access_log::{Format, Target};
        let cli = Cli::parse_from(["xdp-ingress"]);
        assert_eq!(cli.run.http.access_log, Target::Stdout);
        assert_eq!(cli.run.http.access_log_format, Format::Json);
        let cli = Cli::parse_from([
            "xdp-ingress",
            "--access-log",
            "/var/log/a.log",
            "--access-log-format",
            "text",
        ]);
        assert_eq!(
            cli.run.http.access_log,
            Target::File("/var/log/a.log".into())
        );
        assert_eq!(cli.run.http.access_log_format, Format::Text);
        let cli = Cli::parse_from(["xdp-ingress", "--access-log", "off"]);
        assert_eq!(cli.run.http.access_log, Target::Off);
    }

    #[test]
    fn bad_mode_is_rejected() {
        let err = Cli::try_parse_from(["xdp-ingress", "--l4-mode", "dpdk"]).unwrap_err();
        assert!(err.to_string().contains("dpdk"), "{err}");
    }
}
