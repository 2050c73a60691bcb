//! The fixture `nat_packets.rs` and `nat_fuzz.rs` share: the real programs, loaded inside a
//! namespace with real interfaces, routes and static neighbours (so `bpf_fib_lookup` gives a
//! deterministic answer and the MACs are known), and what reads and runs them.
//!
//! Included by both with `#[path = "support/nat_fixture.rs"] mod nat_fixture;`; it is no test
//! target of its own (cargo only builds the files directly in `tests/`).

use std::{
    net::{IpAddr, SocketAddr},
    str::FromStr,
};

use aya::{
    maps::{HashMap as BpfHashMap, MapData, PerCpuArray},
    programs::{ProgramError, SchedClassifier, TestRun, TestRunOptions, Xdp},
};
use ingress_common::{
    l4::{CtEntry, FlowKey, FragEntry, FragKey, ServiceKey, ServiceStats, ServiceValue},
    maps,
};
use ingress_tests::netns::{Netns, PinDir, sh};
use xdp_ingress::{
    EBPF_OBJECT,
    config::{L4Protocol, L4Service, ServiceRef, Snapshot},
    l4::{Datapath, DatapathOptions, conntrack::Timeouts, plane::Kernel},
};

pub const XDP_DROP: u32 = 1;
pub const XDP_PASS: u32 = 2;
pub const XDP_REDIRECT: u32 = 4;
pub const TC_ACT_SHOT: u32 = 2;
pub const TC_ACT_REDIRECT: u32 = 7;
pub const TCX_NEXT: u32 = u32::MAX;

pub const CLIENT: &str = "10.50.0.1";
pub const NODE: &str = "10.50.0.2";
pub const BACKEND: &str = "10.60.0.10";
pub const CLIENT6: &str = "fd50::1";
pub const NODE6: &str = "fd50::2";
pub const BACKEND6: &str = "fd60::10";
pub const BACKEND2: &str = "10.60.0.11";
pub const BACKEND2_MAC: [u8; 6] = [0x02, 0xbe, 0, 0, 0, 0x11];
pub const CLIENT_MAC: [u8; 6] = [0x02, 0xc1, 0, 0, 0, 0x01];
pub const BACKEND_MAC: [u8; 6] = [0x02, 0xbe, 0, 0, 0, 0x10];
pub const IN_MAC: [u8; 6] = [0x02, 0x1d, 0, 0, 0, 0x02];
pub const OUT_MAC: [u8; 6] = [0x02, 0x1d, 0, 0, 0, 0x03];

pub fn mac(m: [u8; 6]) -> String {
    m.iter()
        .map(|b| format!("{b:02x}"))
        .collect::<Vec<_>>()
        .join(":")
}

/// The programs, loaded inside a namespace with a client-facing `in0` and a backend-facing
/// `out0`, static neighbours and forwarding on, serving what a [`Setup`] says.
/// It lives on a thread inside that namespace: BPF_PROG_TEST_RUN resolves ifindexes and
/// routes in the caller's namespace.
pub struct Fixture {
    pub kernel: Kernel,
    pub in_if: u32,
    pub out_if: u32,
}

/// What a fixture serves and with which limits.
pub struct Setup {
    pub ct_entries: u32,
    pub snat_ports: (u16, u16),
    pub services: Vec<L4Service>,
}

/// An L4 service on the node's `port`, for Kubernetes service `default/name:service_port`.
pub fn service(
    name: &str,
    port: u16,
    protocol: L4Protocol,
    service_port: u16,
    endpoints: &[SocketAddr],
) -> L4Service {
    L4Service {
        port,
        protocol,
        service: ServiceRef {
            namespace: "default".into(),
            name: name.into(),
            port: service_port,
        },
        endpoints: endpoints.to_vec(),
        proxy_protocol_in: false,
        proxy_protocol_out: false,
        addrs: Vec::new(),
        split: Vec::new(),
    }
}

/// The dual-stack TCP service NODE:9000 → BACKEND:6379 / [BACKEND6]:6379: one endpoint per
/// family, one Maglev table per family.
pub fn redis_service() -> L4Service {
    let endpoints = [
        SocketAddr::from_str(&format!("{BACKEND}:6379")).expect("addr"),
        SocketAddr::from_str(&format!("[{BACKEND6}]:6379")).expect("addr"),
    ];
    service("redis", 9000, L4Protocol::Tcp, 6379, &endpoints)
}

/// Builds the namespace, then runs `body` with a [`Fixture`] on a thread inside it.
pub fn with_setup(setup: Setup, body: impl FnOnce(&mut Fixture) + Send + 'static) {
    let Setup {
        ct_entries,
        snat_ports,
        services,
    } = setup;
    let ns = Netns::new("pkt");
    for (dev, peer, addr, m) in [
        ("in0", "in0p", "10.50.0.2/24", IN_MAC),
        ("out0", "out0p", "10.60.0.1/24", OUT_MAC),
    ] {
        ns.ip(&[
            "link",
            "add",
            dev,
            "address",
            &mac(m),
            "type",
            "veth",
            "peer",
            "name",
            peer,
        ]);
        ns.ip(&["addr", "add", addr, "dev", dev]);
        ns.ip(&["link", "set", dev, "up"]);
        ns.ip(&["link", "set", peer, "up"]);
    }
    ns.ip(&["addr", "add", "fd50::2/64", "dev", "in0", "nodad"]);
    ns.ip(&["addr", "add", "fd60::1/64", "dev", "out0", "nodad"]);
    for (family, addr, m, dev) in [
        ("-4", CLIENT, CLIENT_MAC, "in0"),
        ("-4", BACKEND, BACKEND_MAC, "out0"),
        ("-4", BACKEND2, BACKEND2_MAC, "out0"),
        ("-6", CLIENT6, CLIENT_MAC, "in0"),
        ("-6", BACKEND6, BACKEND_MAC, "out0"),
    ] {
        ns.ip(&[
            family,
            "neigh",
            "replace",
            addr,
            "lladdr",
            &mac(m),
            "dev",
            dev,
            "nud",
            "permanent",
        ]);
    }
    ns.exec(&["sysctl", "-qw", "net.ipv4.ip_forward=1"]);
    ns.exec(&["sysctl", "-qw", "net.ipv6.conf.all.forwarding=1"]);
    let index = |dev: &str| {
        sh(&["ip", "-n", ns.name(), "-o", "link", "show", dev])
            .split(':')
            .next()
            .and_then(|i| i.trim().parse::<u32>().ok())
            .expect("ifindex")
    };
    let (in_if, out_if) = (index("in0"), index("out0"));
    let pin = PinDir::new();
    let pin_path = pin.path().to_owned();
    ns.run(move || {
        let opts = DatapathOptions {
            maglev_size: 251,
            max_services: 8,
            ct_entries,
            snat_ports,
            ..DatapathOptions::default()
        };
        let dp = Datapath::load(EBPF_OBJECT, &pin_path, opts).expect("load");
        let node_addrs = vec![
            IpAddr::from_str(NODE).expect("ip"),
            IpAddr::from_str(NODE6).expect("ip"),
        ];
        let mut kernel = Kernel::new(dp, node_addrs, Timeouts::default()).expect("kernel");
        let snapshot = Snapshot {
            l4: services,
            ..Snapshot::default()
        };
        kernel.apply(&snapshot).expect("program maps");
        body(&mut Fixture {
            kernel,
            in_if,
            out_if,
        });
    });
    drop(pin);
}

/// Which entry point a frame runs through.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Entry {
    Xdp,
    Tc,
}

pub fn redirect(entry: Entry) -> u32 {
    match entry {
        Entry::Xdp => XDP_REDIRECT,
        Entry::Tc => TC_ACT_REDIRECT,
    }
}

pub fn pass(entry: Entry) -> u32 {
    match entry {
        Entry::Xdp => XDP_PASS,
        Entry::Tc => TCX_NEXT,
    }
}

pub fn drop_action(entry: Entry) -> u32 {
    match entry {
        Entry::Xdp => XDP_DROP,
        Entry::Tc => TC_ACT_SHOT,
    }
}

impl Fixture {
    /// Runs `entry` on `frame` as if received on `ifindex`: the verdict and the frame that
    /// leaves, or the error of BPF_PROG_TEST_RUN.
    pub fn try_run(
        &mut self,
        entry: Entry,
        frame: &[u8],
        ifindex: u32,
    ) -> Result<(u32, Vec<u8>), ProgramError> {
        let ebpf = self.kernel.datapath.ebpf_mut();
        let mut out = vec![0u8; frame.len() + 64];
        let r = match entry {
            Entry::Xdp => {
                let prog: &Xdp = ebpf
                    .program(ingress_common::programs::XDP)
                    .expect("xdp")
                    .try_into()
                    .expect("xdp type");
                // struct xdp_md: data, data_end, data_meta, ingress_ifindex, rx_queue, egress
                let ctx: Vec<u8> = [
                    0u32,
                    u32::try_from(frame.len()).expect("len"),
                    0,
                    ifindex,
                    0,
                    0,
                ]
                .iter()
                .flat_map(|v| v.to_ne_bytes())
                .collect();
                prog.test_run(TestRunOptions {
                    data_in: Some(frame),
                    data_out: Some(&mut out),
                    ctx_in: Some(&ctx),
                    ..Default::default()
                })
            }
            Entry::Tc => {
                let prog: &SchedClassifier = ebpf
                    .program(ingress_common::programs::TC)
                    .expect("tc")
                    .try_into()
                    .expect("tc type");
                // struct __sk_buff is 192 bytes; `ifindex` sits at offset 40.
                let mut ctx = vec![0u8; 192];
                ctx[40..44].copy_from_slice(&ifindex.to_ne_bytes());
                prog.test_run(TestRunOptions {
                    data_in: Some(frame),
                    data_out: Some(&mut out),
                    ctx_in: Some(&ctx),
                    ..Default::default()
                })
            }
        }?;
        out.truncate(r.data_size_out as usize);
        Ok((r.return_value, out))
    }

    pub fn ct_map(&mut self, name: &'static str) -> BpfHashMap<&mut MapData, FlowKey, CtEntry> {
        BpfHashMap::try_from(
            self.kernel
                .datapath
                .ebpf_mut()
                .map_mut(name)
                .expect("conntrack map"),
        )
        .expect("conntrack map type")
    }

    /// The entry under `key` in conntrack map `name`.
    pub fn ct(&mut self, name: &'static str, key: &FlowKey) -> Option<CtEntry> {
        self.ct_map(name).get(key, 0).ok()
    }

    /// The fragment entry under `key`.
    pub fn frag(&mut self, key: &FragKey) -> Option<FragEntry> {
        let map: BpfHashMap<&MapData, FragKey, FragEntry> = BpfHashMap::try_from(
            self.kernel
                .datapath
                .ebpf_mut()
                .map(maps::FRAGS)
                .expect("fragment map"),
        )
        .expect("fragment map type");
        map.get(key, 0).ok()
    }

    /// The services map (service key → id and endpoints).
    pub fn services_map(&mut self) -> BpfHashMap<&MapData, ServiceKey, ServiceValue> {
        BpfHashMap::try_from(
            self.kernel
                .datapath
                .ebpf_mut()
                .map(maps::SERVICES)
                .expect("services"),
        )
        .expect("services type")
    }

    /// A service's counters, summed over CPUs.
    pub fn service_stats(&mut self, id: u32) -> ServiceStats {
        let map: PerCpuArray<&MapData, ServiceStats> = PerCpuArray::try_from(
            self.kernel
                .datapath
                .ebpf_mut()
                .map(maps::SERVICE_STATS)
                .expect("service stats"),
        )
        .expect("service stats type");
        let mut sum = ServiceStats::default();
        for v in map.get(&id, 0).expect("service stats").iter() {
            sum.packets += v.packets;
            sum.new_flows += v.new_flows;
            sum.drop_snat_exhausted += v.drop_snat_exhausted;
            sum.drop_ct_full += v.drop_ct_full;
        }
        sum
    }
}
