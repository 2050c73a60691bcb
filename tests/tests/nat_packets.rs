//! NAT packet tables through BPF_PROG_TEST_RUN (katran fixture style): a crafted frame goes
//! into the XDP or TC program, and the test checks the action and every byte of the output
//! against a frame built independently (checksums recomputed from scratch).
//!
//! The programs run inside a namespace with real interfaces, routes and static neighbours,
//! so `bpf_fib_lookup` gives a deterministic answer and the MACs are known.

use std::{
    net::{IpAddr, SocketAddr},
    str::FromStr,
};

use aya::{
    maps::{HashMap as BpfHashMap, MapData},
    programs::{SchedClassifier, TestRun, TestRunOptions, Xdp},
};
use ingress_common::{
    l4::{CtEntry, FAMILY_V4, FAMILY_V6, FlowKey, PROTO_TCP},
    maps,
    stats::Counter,
};
use ingress_tests::{
    netns::{Netns, PinDir, sh},
    packet::{ACK, L4, Packet, SYN},
};
use xdp_ingress::{
    EBPF_OBJECT,
    config::{L4Protocol, L4Service, ServiceRef, Snapshot},
    l4::{Datapath, DatapathOptions, conntrack::Timeouts, plane::Kernel},
};

const XDP_DROP: u32 = 1;
const XDP_PASS: u32 = 2;
const XDP_REDIRECT: u32 = 4;
const TC_ACT_SHOT: u32 = 2;
const TC_ACT_REDIRECT: u32 = 7;
const TCX_NEXT: u32 = u32::MAX;

const CLIENT: &str = "10.50.0.1";
const NODE: &str = "10.50.0.2";
const BACKEND: &str = "10.60.0.10";
const CLIENT6: &str = "fd50::1";
const NODE6: &str = "fd50::2";
const BACKEND6: &str = "fd60::10";
const CLIENT_MAC: [u8; 6] = [0x02, 0xc1, 0, 0, 0, 0x01];
const BACKEND_MAC: [u8; 6] = [0x02, 0xbe, 0, 0, 0, 0x10];
const IN_MAC: [u8; 6] = [0x02, 0x1d, 0, 0, 0, 0x02];
const OUT_MAC: [u8; 6] = [0x02, 0x1d, 0, 0, 0, 0x03];

fn mac(m: [u8; 6]) -> String {
    m.iter()
        .map(|b| format!("{b:02x}"))
        .collect::<Vec<_>>()
        .join(":")
}

/// The programs, loaded inside a namespace with a client-facing `in0` and a backend-facing
/// `out0`, static neighbours and forwarding on, serving one service: NODE:9000 → BACKEND:6379.
/// It lives on a thread inside that namespace: BPF_PROG_TEST_RUN resolves ifindexes and
/// routes in the caller's namespace.
struct Fixture {
    kernel: Kernel,
    in_if: u32,
    out_if: u32,
}

/// Builds the namespace, then runs `body` with a [`Fixture`] on a thread inside it.
fn with_fixture(ct_entries: u32, body: impl FnOnce(&mut Fixture) + Send + 'static) {
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
    ns.ip(&[
        "neigh",
        "replace",
        CLIENT,
        "lladdr",
        &mac(CLIENT_MAC),
        "dev",
        "in0",
        "nud",
        "permanent",
    ]);
    ns.ip(&[
        "neigh",
        "replace",
        BACKEND,
        "lladdr",
        &mac(BACKEND_MAC),
        "dev",
        "out0",
        "nud",
        "permanent",
    ]);
    ns.ip(&["addr", "add", "fd50::2/64", "dev", "in0", "nodad"]);
    ns.ip(&["addr", "add", "fd60::1/64", "dev", "out0", "nodad"]);
    ns.ip(&[
        "-6",
        "neigh",
        "replace",
        CLIENT6,
        "lladdr",
        &mac(CLIENT_MAC),
        "dev",
        "in0",
        "nud",
        "permanent",
    ]);
    ns.ip(&[
        "-6",
        "neigh",
        "replace",
        BACKEND6,
        "lladdr",
        &mac(BACKEND_MAC),
        "dev",
        "out0",
        "nud",
        "permanent",
    ]);
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
            ..DatapathOptions::default()
        };
        let dp = Datapath::load(EBPF_OBJECT, &pin_path, opts).expect("load");
        let node_addrs = vec![
            IpAddr::from_str(NODE).expect("ip"),
            IpAddr::from_str(NODE6).expect("ip"),
        ];
        let mut kernel = Kernel::new(dp, node_addrs, Timeouts::default()).expect("kernel");
        let snapshot = Snapshot {
            l4: vec![L4Service {
                port: 9000,
                protocol: L4Protocol::Tcp,
                service: ServiceRef {
                    namespace: "default".into(),
                    name: "redis".into(),
                    port: 6379,
                },
                // Dual stack: one endpoint per family, one Maglev table per family.
                endpoints: vec![
                    SocketAddr::from_str(&format!("{BACKEND}:6379")).expect("addr"),
                    SocketAddr::from_str(&format!("[{BACKEND6}]:6379")).expect("addr"),
                ],
                proxy_protocol_in: false,
                proxy_protocol_out: false,
            }],
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

/// Which entry point a table runs through.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Entry {
    Xdp,
    Tc,
}

impl Fixture {
    /// Runs `entry` on `frame` as if received on `ifindex`.
    fn run(&mut self, entry: Entry, frame: &[u8], ifindex: u32) -> (u32, Vec<u8>) {
        let ebpf = self.kernel.datapath.ebpf_mut();
        let mut out = vec![0u8; frame.len() + 64];
        let ctx: Vec<u8>;
        let r = match entry {
            Entry::Xdp => {
                let prog: &Xdp = ebpf
                    .program(ingress_common::programs::XDP)
                    .expect("xdp")
                    .try_into()
                    .expect("xdp type");
                // struct xdp_md: data, data_end, data_meta, ingress_ifindex, rx_queue, egress
                ctx = [
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
                let mut c = vec![0u8; 192];
                c[40..44].copy_from_slice(&ifindex.to_ne_bytes());
                ctx = c;
                prog.test_run(TestRunOptions {
                    data_in: Some(frame),
                    data_out: Some(&mut out),
                    ctx_in: Some(&ctx),
                    ..Default::default()
                })
            }
        }
        .expect("BPF_PROG_TEST_RUN");
        out.truncate(r.data_size_out as usize);
        (r.return_value, out)
    }

    fn counter(&self, c: Counter) -> u64 {
        self.kernel.totals().expect("totals").get(c).packets
    }

    /// The SNAT port conntrack chose for a client flow (IPv4).
    fn snat_port(&mut self, client_port: u16) -> u16 {
        self.snat_port_of(CLIENT, NODE, client_port)
    }

    /// The SNAT port conntrack chose for the flow `client:client_port → node:9000`.
    fn snat_port_of(&mut self, client: &str, node: &str, client_port: u16) -> u16 {
        let map = self
            .kernel
            .datapath
            .ebpf_mut()
            .map(maps::CT_FWD)
            .expect("ct map");
        let ct: BpfHashMap<&MapData, FlowKey, CtEntry> = BpfHashMap::try_from(map).expect("ct");
        let bytes = |a: &str| -> ([u8; 16], u8) {
            let mut out = [0u8; 16];
            match IpAddr::from_str(a).expect("ip") {
                IpAddr::V4(v4) => {
                    out[..4].copy_from_slice(&v4.octets());
                    (out, FAMILY_V4)
                }
                IpAddr::V6(v6) => (v6.octets(), FAMILY_V6),
            }
        };
        let ((src, family), (dst, _)) = (bytes(client), bytes(node));
        let key = FlowKey {
            src,
            dst,
            sport: client_port.to_be(),
            dport: 9000u16.to_be(),
            proto: PROTO_TCP,
            family,
            _pad: [0; 2],
        };
        u16::from_be(ct.get(&key, 0).expect("conntrack entry for the flow").sport)
    }
}

fn redirect(entry: Entry) -> u32 {
    match entry {
        Entry::Xdp => XDP_REDIRECT,
        Entry::Tc => TC_ACT_REDIRECT,
    }
}

fn pass(entry: Entry) -> u32 {
    match entry {
        Entry::Xdp => XDP_PASS,
        Entry::Tc => TCX_NEXT,
    }
}

fn drop_action(entry: Entry) -> u32 {
    match entry {
        Entry::Xdp => XDP_DROP,
        Entry::Tc => TC_ACT_SHOT,
    }
}

fn from_client(sport: u16, dport: u16, flags: u8) -> Packet {
    Packet {
        src_mac: CLIENT_MAC,
        dst_mac: IN_MAC,
        ..Packet::tcp(CLIENT, sport, NODE, dport, flags)
    }
}

/// A new flow and its reply, byte for byte: DNAT + SNAT + TTL + MACs one way, the exact
/// reverse the other way.
fn new_flow_and_reply(entry: Entry) {
    with_fixture(1024, move |f| {
        let syn = from_client(40000, 9000, SYN);
        let (action, out) = f.run(entry, &syn.build(), f.in_if);
        assert_eq!(
            action,
            redirect(entry),
            "{entry:?}: SYN to a service is redirected"
        );
        let snat = f.snat_port(40000);
        assert!(
            (20_000..=32_767).contains(&snat),
            "{entry:?}: SNAT port {snat} in range"
        );
        let expected = Packet {
            src_mac: OUT_MAC,
            dst_mac: BACKEND_MAC,
            ttl: 63,
            ..Packet::tcp(NODE, snat, BACKEND, 6379, SYN)
        };
        assert_eq!(
            out,
            expected.build(),
            "{entry:?}: rewritten SYN, byte for byte"
        );

        let reply = Packet {
            src_mac: [0x02, 0xbe, 0, 0, 0, 0x99],
            dst_mac: OUT_MAC,
            ..Packet::tcp(BACKEND, 6379, NODE, snat, SYN | ACK)
        };
        let (action, out) = f.run(entry, &reply.build(), f.out_if);
        assert_eq!(action, redirect(entry), "{entry:?}: reply is redirected");
        let expected = Packet {
            src_mac: IN_MAC,
            dst_mac: CLIENT_MAC,
            ttl: 63,
            ..Packet::tcp(NODE, 9000, CLIENT, 40000, SYN | ACK)
        };
        assert_eq!(
            out,
            expected.build(),
            "{entry:?}: reverse-NATed reply, byte for byte"
        );

        // The flow's next packet reuses the entry (same SNAT port).
        let (action, out) = f.run(entry, &from_client(40000, 9000, ACK).build(), f.in_if);
        assert_eq!(action, redirect(entry));
        let expected = Packet {
            src_mac: OUT_MAC,
            dst_mac: BACKEND_MAC,
            ttl: 63,
            ..Packet::tcp(NODE, snat, BACKEND, 6379, ACK)
        };
        assert_eq!(out, expected.build(), "{entry:?}: established packet");
        assert_eq!(f.counter(Counter::NewFlow), 1, "{entry:?}: one flow");
        assert_eq!(f.counter(Counter::CtReply), 1, "{entry:?}: one reply");
        assert_eq!(
            f.counter(Counter::CtForward),
            1,
            "{entry:?}: one established packet"
        );
    });
}

#[test]
fn xdp_new_flow_and_reply() {
    new_flow_and_reply(Entry::Xdp);
}

#[test]
fn tc_new_flow_and_reply() {
    new_flow_and_reply(Entry::Tc);
}

/// Frames that are not a service flow leave unchanged with a defined action.
fn untouched(entry: Entry) {
    with_fixture(1024, move |f| {
        let mut truncated = from_client(40001, 9000, SYN).build();
        truncated.truncate(14 + 20 + 8);
        let cases: Vec<(&str, Vec<u8>)> = vec![
            ("another port", from_client(40001, 22, SYN).build()),
            (
                "UDP to the TCP service port",
                Packet {
                    src_mac: CLIENT_MAC,
                    dst_mac: IN_MAC,
                    ..Packet::udp(CLIENT, 40001, NODE, 9000)
                }
                .build(),
            ),
            (
                "non-first fragment",
                Packet {
                    frag_offset: 100,
                    ..from_client(40001, 9000, SYN)
                }
                .build(),
            ),
            (
                "ICMP",
                Packet {
                    l4: L4::Other(1),
                    ..from_client(40001, 9000, SYN)
                }
                .build(),
            ),
            (
                "IPv6 to the service port",
                Packet::tcp("fd00::1", 40001, "fd00::2", 9000, SYN).build(),
            ),
            ("truncated TCP header", truncated),
        ];
        for (name, frame) in cases {
            let (action, out) = f.run(entry, &frame, f.in_if);
            assert_eq!(action, pass(entry), "{entry:?}: {name}: action");
            assert_eq!(out, frame, "{entry:?}: {name}: bytes unchanged");
        }
        assert_eq!(f.counter(Counter::NewFlow), 0, "{entry:?}: no flow created");
    });
}

#[test]
fn xdp_leaves_other_traffic_untouched() {
    untouched(Entry::Xdp);
}

#[test]
fn tc_leaves_other_traffic_untouched() {
    untouched(Entry::Tc);
}

/// With the conntrack table full, new flows are dropped and counted; existing ones go on.
fn conntrack_full(entry: Entry) {
    const CAPACITY: u32 = 4;
    with_fixture(CAPACITY, move |f| {
        let ports: Vec<u16> = (0..CAPACITY as u16).map(|i| 41000 + i).collect();
        for p in &ports {
            let (action, _) = f.run(entry, &from_client(*p, 9000, SYN).build(), f.in_if);
            assert_eq!(action, redirect(entry), "{entry:?}: flow {p} fits");
        }
        let (action, _) = f.run(entry, &from_client(42000, 9000, SYN).build(), f.in_if);
        assert_eq!(
            action,
            drop_action(entry),
            "{entry:?}: a new flow beyond capacity is dropped"
        );
        assert_eq!(
            f.counter(Counter::DropCtFull),
            1,
            "{entry:?}: counted as drop_ct_full"
        );
        let (action, _) = f.run(entry, &from_client(ports[0], 9000, ACK).build(), f.in_if);
        assert_eq!(
            action,
            redirect(entry),
            "{entry:?}: an existing flow is unaffected"
        );
    });
}

#[test]
fn xdp_conntrack_full() {
    conntrack_full(Entry::Xdp);
}

#[test]
fn tc_conntrack_full() {
    conntrack_full(Entry::Tc);
}

/// The same flow over IPv6: no header checksum, hop limit instead of TTL, the pseudo-header
/// carries 128-bit addresses.
fn new_flow_and_reply_v6(entry: Entry) {
    with_fixture(1024, move |f| {
        let syn = Packet {
            src_mac: CLIENT_MAC,
            dst_mac: IN_MAC,
            ..Packet::tcp(CLIENT6, 40000, NODE6, 9000, SYN)
        };
        let (action, out) = f.run(entry, &syn.build(), f.in_if);
        assert_eq!(
            action,
            redirect(entry),
            "{entry:?}: v6 SYN to a service is redirected"
        );
        let snat = f.snat_port_of(CLIENT6, NODE6, 40000);
        let expected = Packet {
            src_mac: OUT_MAC,
            dst_mac: BACKEND_MAC,
            ttl: 63,
            ..Packet::tcp(NODE6, snat, BACKEND6, 6379, SYN)
        };
        assert_eq!(
            out,
            expected.build(),
            "{entry:?}: rewritten v6 SYN, byte for byte"
        );
        let reply = Packet {
            src_mac: [0x02, 0xbe, 0, 0, 0, 0x99],
            dst_mac: OUT_MAC,
            ..Packet::tcp(BACKEND6, 6379, NODE6, snat, SYN | ACK)
        };
        let (action, out) = f.run(entry, &reply.build(), f.out_if);
        assert_eq!(action, redirect(entry), "{entry:?}: v6 reply is redirected");
        let expected = Packet {
            src_mac: IN_MAC,
            dst_mac: CLIENT_MAC,
            ttl: 63,
            ..Packet::tcp(NODE6, 9000, CLIENT6, 40000, SYN | ACK)
        };
        assert_eq!(
            out,
            expected.build(),
            "{entry:?}: reverse-NATed v6 reply, byte for byte"
        );
    });
}

#[test]
fn xdp_new_flow_and_reply_v6() {
    new_flow_and_reply_v6(Entry::Xdp);
}

#[test]
fn tc_new_flow_and_reply_v6() {
    new_flow_and_reply_v6(Entry::Tc);
}
