//! L4: redis PING rates (keep-alive and one connection per request) and iperf3 throughput
//! (1 and 4 streams) through direct routing, xdp-ingress in xdp/tc/userspace mode, kernel
//! NAT (nftables DNAT + masquerade, as kube-proxy does), nginx stream and HAProxy tcp mode,
//! on one topology in one run. IPVS is measured when the kernel has it (`/proc/net/ip_vs`).

use std::net::SocketAddr;

use crate::{
    bench::{
        Results, peers,
        rig::{IPERF_PORT, L4_IPERF, L4_REDIS, REDIS_PORT, Rig},
        tools,
    },
    topology::{NODE, backend_addr},
};

/// Sizes of one L4 run.
#[derive(Clone, Copy, Debug)]
pub struct Params {
    /// Samples per configuration and quantity (≥ 5 for the report).
    pub samples: usize,
    /// Keep-alive PING requests per sample.
    pub keepalive_requests: u32,
    /// New-connection PING requests per sample.
    pub newconn_requests: u32,
    /// iperf3 seconds per sample.
    pub iperf_secs: u32,
}

const KA: &str = "redis PING, keep-alive";
const NEW: &str = "redis PING, new connection per request";
const IPERF1: &str = "iperf3, 1 stream";
const IPERF4: &str = "iperf3, 4 streams";
const DIRECT: &str = "direct routing (limit)";
const NGINX: &str = "nginx stream";
const NFT: &str = "nftables DNAT + masquerade (kube-proxy)";

enum Config {
    Direct,
    Controller(&'static str),
    Nftables,
    Nginx,
    Haproxy,
}

/// Runs the group on `rig`.
pub fn run(rig: &mut Rig, p: Params) -> anyhow::Result<Results> {
    let mut r = Results::new("l4");
    let ratio = [DIRECT, NFT, NGINX];
    r.table(
        KA,
        &format!(
            "redis-benchmark -t ping_mbulk -P 1 -c 50 -n {} (req/s)",
            p.keepalive_requests
        ),
        &[("req/s", true)],
        &ratio,
    );
    r.table(NEW, &format!("redis-benchmark -t ping_mbulk -P 1 -c 50 -k 0 -n {} (req/s; each request opens and closes a TCP connection)", p.newconn_requests), &[("req/s", true)], &ratio);
    r.table(
        IPERF1,
        &format!(
            "iperf3 -P 1 -t {} to a server on backend 0 (Gbit/s received)",
            p.iperf_secs
        ),
        &[("Gbit/s", true)],
        &ratio,
    );
    r.table(
        IPERF4,
        &format!("iperf3 -P 4 -t {} (Gbit/s received)", p.iperf_secs),
        &[("Gbit/s", true)],
        &ratio,
    );

    let configs = [
        (DIRECT, Config::Direct),
        ("xdp-ingress xdp", Config::Controller("xdp")),
        ("xdp-ingress tc", Config::Controller("tc")),
        ("xdp-ingress userspace", Config::Controller("userspace")),
        (NFT, Config::Nftables),
        (NGINX, Config::Nginx),
        ("HAProxy tcp", Config::Haproxy),
    ];
    let upstreams = vec![
        (L4_REDIS, format!("{}:{REDIS_PORT}", backend_addr(0))),
        (L4_IPERF, format!("{}:{IPERF_PORT}", backend_addr(0))),
    ];
    // Rounds: each round brings every configuration up in turn and takes one sample of
    // each quantity, so drifting background load spreads over all configurations alike.
    // Kernel NAT goes last, in rounds of its own, which keeps the xdp-ingress rounds as
    // they were. (The resets once blamed on the kernel conntrack state it leaves behind were
    // xdp-ingress's own conntrack pass deleting reopened flows; see `conntrack::sweep`.)
    let mut samples: Vec<[Vec<f64>; 4]> = configs.iter().map(|_| Default::default()).collect();
    let is_nat = |c: &Config| matches!(c, Config::Nftables);
    let order = (0..p.samples)
        .flat_map(|round| {
            configs
                .iter()
                .enumerate()
                .filter(|(_, (_, c))| !is_nat(c))
                .map(move |(ci, _)| (round, ci))
        })
        .chain((0..p.samples).flat_map(|round| {
            configs
                .iter()
                .enumerate()
                .filter(|(_, (_, c))| is_nat(c))
                .map(move |(ci, _)| (round, ci))
        }))
        .collect::<Vec<_>>();
    for (round, ci) in order {
        let (name, config) = &configs[ci];
        println!("l4: round {} {name}", round + 1);
        let mut _peer: Option<crate::bench::rig::Daemon> = None;
        let mut _nat: Option<peers::NftNat> = None;
        let node = (
            SocketAddr::new(NODE.into(), L4_REDIS),
            SocketAddr::new(NODE.into(), L4_IPERF),
        );
        let (redis, iperf) = match config {
            Config::Direct => (
                SocketAddr::new(backend_addr(0).into(), REDIS_PORT),
                SocketAddr::new(backend_addr(0).into(), IPERF_PORT),
            ),
            Config::Controller(mode) => {
                rig.start_controller(mode)?;
                node
            }
            Config::Nftables => {
                _nat = Some(peers::start_nft_nat(
                    &rig.topo.node,
                    &rig.dir.join("nftables"),
                    NODE,
                    &upstreams,
                )?);
                node
            }
            Config::Nginx => {
                let conf = peers::nginx_stream(&rig.dir.join("nginx-stream"), NODE, &upstreams)?;
                _peer = Some(peers::start_nginx(&rig.topo.node, &conf)?);
                node
            }
            Config::Haproxy => {
                let conf = peers::haproxy_tcp(&rig.dir.join("haproxy-tcp"), NODE, &upstreams)?;
                _peer = Some(peers::start_haproxy(&rig.topo.node, &conf)?);
                node
            }
        };
        rig.wait(&format!("{name}: redis PING"), || rig.redis_ping(redis))?;
        rig.wait(&format!("{name}: iperf3 port"), || {
            rig.tcp_open(&rig.topo.client, iperf)
        })?;
        let client = &rig.topo.client;
        // Warm-up (neighbour entries, conntrack, the proxies' first connections).
        tools::redis_ping(client, redis, p.keepalive_requests / 10, true)?;
        let s = &mut samples[ci];
        s[0].push(tools::redis_ping(
            client,
            redis,
            p.keepalive_requests,
            true,
        )?);
        s[1].push(tools::redis_ping(client, redis, p.newconn_requests, false)?);
        s[2].push(tools::iperf(client, iperf, p.iperf_secs, 1)?);
        s[3].push(tools::iperf(client, iperf, p.iperf_secs, 4)?);
        drop(_peer);
        drop(_nat);
        rig.stop_controller()?;
    }
    for ((name, _), [ka, new, i1, i4]) in configs.iter().zip(samples) {
        r.add(KA, name, "req/s", ka);
        r.add(NEW, name, "req/s", new);
        r.add(IPERF1, name, "Gbit/s", i1);
        r.add(IPERF4, name, "Gbit/s", i4);
    }
    r.note("One topology for every configuration: client ⇄ node ⇄ backends over veth pairs in network namespaces, with NIC-like offloads (TX checksum offload off on the client and backends, GRO on), which native XDP on veth needs. TX checksum offload off also disables TSO on the senders, for every configuration alike.");
    r.note("Samples are taken in rounds: each round starts every configuration in turn (controller, nginx or HAProxy) and takes one sample of each quantity, so background load that drifts during the run is shared by all configurations. Kernel NAT is measured last, in rounds of its own.");
    r.note("Pinning: load generators on CPU 0; redis-server, iperf3 -s, the proxies and xdp-ingress on CPU 1 (nginx and HAProxy with one worker/thread). Kernel forwarding (direct routing, XDP, TC) runs in softirq on the CPU that sends the packet, so the in-kernel paths also borrow the load generator's CPU: the machine has 2 cores shared by everything.");
    r.note("Native XDP on veth turns TSO off on the peer and generic redirect drops GSO packets above the MTU, so bulk throughput (iperf3) is pessimistic for XDP on veth; packet and connection rates are the fair comparison. On a real NIC the XDP path does not lose TSO on the egress device.");
    r.note(format!("xdp-ingress runs with --snat-port-range {} (default 20000-32767): a new-connection sample opens thousands of flows whose closed conntrack entries live about 10 s, and no local process on the node connects to the L4 backends, so the wider range is safe here.", crate::bench::rig::SNAT_PORTS));
    r.note(format!("Kernel NAT is configured as kube-proxy's nftables mode does it: DNAT to the backend in a prerouting nat chain and masquerade of DNATed flows in postrouting, with kernel conntrack; it runs in softirq like XDP and TC. IPVS: {}.", if std::path::Path::new("/proc/net/ip_vs").exists() { "available but not configured by this bench yet" } else { "not in this kernel (no /proc/net/ip_vs), so not measured" }));
    r.note("redis-benchmark runs `-t ping_mbulk` (the RESP form of `-t ping`, which would also run PING_INLINE and double the time).");
    Ok(r)
}
