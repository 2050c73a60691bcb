//! NAT packet tables through BPF_PROG_TEST_RUN (katran fixture style): a crafted frame goes
//! into the XDP or TC program, and the test checks the action and every byte of the output
//! against a frame built independently (checksums recomputed from scratch).
//!
//! The programs run inside a namespace with real interfaces, routes and static neighbours,
//! so `bpf_fib_lookup` gives a deterministic answer and the MACs are known.

#[path = "support/nat_fixture.rs"]
#[allow(dead_code)] // the fixture serves nat_fuzz.rs too; this file does not use all of it
mod nat_fixture;

use std::{
    collections::BTreeSet,
    net::{IpAddr, SocketAddr},
    str::FromStr,
};

use ingress_common::{
    l4::{CtEntry, FAMILY_V4, FAMILY_V6, FlowKey, PROTO_TCP, ServiceKey, ct},
    maps,
    stats::Counter,
};
use ingress_tests::packet::{ACK, L4, Packet, RST, SYN};
use nat_fixture::*;
use xdp_ingress::{
    config::{L4Protocol, L4Service, Snapshot},
    l4::{
        DatapathOptions,
        conntrack::{self, Timeouts},
    },
};

/// Builds the namespace, then runs `body` with a [`Fixture`] on a thread inside it, serving
/// the dual-stack TCP service NODE:9000 → BACKEND:6379 / [BACKEND6]:6379.
fn with_fixture(ct_entries: u32, body: impl FnOnce(&mut Fixture) + Send + 'static) {
    with_setup(
        Setup {
            ct_entries,
            snat_ports: DatapathOptions::default().snat_ports,
            services: vec![redis_service()],
        },
        body,
    );
}

impl Fixture {
    /// Runs `entry` on `frame` as if received on `ifindex`.
    fn run(&mut self, entry: Entry, frame: &[u8], ifindex: u32) -> (u32, Vec<u8>) {
        self.try_run(entry, frame, ifindex)
            .expect("BPF_PROG_TEST_RUN")
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
        let key = flow(client, client_port, node, 9000, PROTO_TCP);
        let fwd = self.ct(maps::CT_FWD, &key);
        u16::from_be(fwd.expect("conntrack entry for the flow").sport)
    }
}

/// An address as conntrack stores it, with its family.
fn addr16(a: &str) -> ([u8; 16], u8) {
    let mut out = [0u8; 16];
    match IpAddr::from_str(a).expect("ip") {
        IpAddr::V4(v4) => {
            out[..4].copy_from_slice(&v4.octets());
            (out, FAMILY_V4)
        }
        IpAddr::V6(v6) => (v6.octets(), FAMILY_V6),
    }
}

/// The conntrack key of the client flow `client:client_port → node:port`.
fn flow(client: &str, client_port: u16, node: &str, port: u16, proto: u8) -> FlowKey {
    let ((src, family), (dst, _)) = (addr16(client), addr16(node));
    FlowKey {
        src,
        dst,
        sport: client_port.to_be(),
        dport: port.to_be(),
        proto,
        family,
        _pad: [0; 2],
    }
}

impl Fixture {
    /// Entries in conntrack map `name`.
    fn ct_len(&mut self, name: &'static str) -> usize {
        self.ct_map(name).keys().filter(Result::is_ok).count()
    }

    /// A flow's two entries, forward and reply.
    fn ct_pair(&mut self, key: &FlowKey) -> (CtEntry, CtEntry) {
        let fwd = self.ct(maps::CT_FWD, key).expect("forward entry");
        let rev = self.ct(maps::CT_REV, &fwd.peer).expect("reply entry");
        (fwd, rev)
    }

    /// Deletes a flow's two entries (what the GC does when it expires).
    fn forget(&mut self, key: &FlowKey) {
        let (fwd, _) = self.ct_pair(key);
        self.ct_map(maps::CT_FWD)
            .remove(key)
            .expect("remove forward");
        self.ct_map(maps::CT_REV)
            .remove(&fwd.peer)
            .expect("remove reply");
    }

    /// The service id of `node:port` over `proto`.
    fn service_id(&mut self, node: &str, port: u16, proto: u8) -> u32 {
        let (addr, family) = addr16(node);
        let map = self.services_map();
        let key = ServiceKey {
            addr,
            port: port.to_be(),
            proto,
            family,
        };
        map.get(&key, 0).expect("service entry").id
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
            (
                "RST of no known flow (never opens one)",
                from_client(40001, 9000, RST | ACK).build(),
            ),
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

/// TTL 1 (IPv4) and hop limit 1 (IPv6), and 0: the packet goes to the stack untouched, and
/// no conntrack entry is created. TTL 2 is forwarded (leaving with TTL 1).
fn ttl_one_passes_without_state(entry: Entry) {
    with_fixture(1024, move |f| {
        for (name, client, node) in [("IPv4", CLIENT, NODE), ("IPv6", CLIENT6, NODE6)] {
            for ttl in [1u8, 0] {
                let frame = Packet {
                    src_mac: CLIENT_MAC,
                    dst_mac: IN_MAC,
                    ttl,
                    ..Packet::tcp(client, 40000, node, 9000, SYN)
                }
                .build();
                let (action, out) = f.run(entry, &frame, f.in_if);
                assert_eq!(action, pass(entry), "{entry:?}: {name} TTL {ttl}: action");
                assert_eq!(out, frame, "{entry:?}: {name} TTL {ttl}: bytes unchanged");
            }
        }
        assert_eq!(f.ct_len(maps::CT_FWD), 0, "{entry:?}: no forward entry");
        assert_eq!(f.ct_len(maps::CT_REV), 0, "{entry:?}: no reply entry");
        assert_eq!(f.counter(Counter::NewFlow), 0, "{entry:?}: no flow");
        let (action, _) = f.run(
            entry,
            &Packet {
                ttl: 2,
                ..from_client(40000, 9000, SYN)
            }
            .build(),
            f.in_if,
        );
        assert_eq!(action, redirect(entry), "{entry:?}: TTL 2 is forwarded");
        assert_eq!(f.ct_len(maps::CT_FWD), 1, "{entry:?}: and opens the flow");
    });
}

#[test]
fn xdp_ttl_one_passes_without_state() {
    ttl_one_passes_without_state(Entry::Xdp);
}

#[test]
fn tc_ttl_one_passes_without_state() {
    ttl_one_passes_without_state(Entry::Tc);
}

/// The TCP state machine, step by step: a SYN opens an embryonic flow; the backend's SYN-ACK
/// is recorded (and does not keep the flow alive); a client ACK with the wrong number changes
/// nothing; the ACK of the SYN-ACK establishes it; a RST marks it; a new SYN on the closed
/// tuple reopens it as embryonic.
fn handshake_states(entry: Entry) {
    with_fixture(1024, move |f| {
        let key = flow(CLIENT, 40000, NODE, 9000, PROTO_TCP);
        let (action, _) = f.run(entry, &from_client(40000, 9000, SYN).build(), f.in_if);
        assert_eq!(action, redirect(entry), "{entry:?}: SYN");
        let (fwd, rev) = f.ct_pair(&key);
        assert_eq!(
            fwd.state,
            ct::EMBRYONIC,
            "{entry:?}: SYN: forward embryonic"
        );
        assert_eq!(
            rev.state,
            ct::REPLY | ct::EMBRYONIC,
            "{entry:?}: SYN: reply embryonic"
        );
        let snat = u16::from_be(fwd.sport);

        std::thread::sleep(std::time::Duration::from_millis(2));
        let synack = Packet {
            src_mac: BACKEND_MAC,
            dst_mac: OUT_MAC,
            seq: 5000,
            ack: 1001,
            ..Packet::tcp(BACKEND, 6379, NODE, snat, SYN | ACK)
        };
        let (action, _) = f.run(entry, &synack.build(), f.out_if);
        assert_eq!(action, redirect(entry), "{entry:?}: SYN-ACK");
        let (fwd2, rev2) = f.ct_pair(&key);
        assert_eq!(
            rev2.state,
            ct::REPLY | ct::EMBRYONIC | ct::SYNACK_SEEN,
            "{entry:?}: SYN-ACK recorded"
        );
        assert_eq!(rev2.ack, 5001, "{entry:?}: the ACK that completes it");
        assert_eq!(fwd2.state, ct::EMBRYONIC, "{entry:?}: still embryonic");
        assert_eq!(
            rev2.last_seen_ns, rev.last_seen_ns,
            "{entry:?}: the backend does not keep an embryonic flow alive"
        );

        let wrong = Packet {
            seq: 1001,
            ack: 4242,
            ..from_client(40000, 9000, ACK)
        };
        let (action, _) = f.run(entry, &wrong.build(), f.in_if);
        assert_eq!(
            action,
            redirect(entry),
            "{entry:?}: a wrong ACK is forwarded"
        );
        assert_eq!(
            f.ct_pair(&key).0.state,
            ct::EMBRYONIC,
            "{entry:?}: but does not establish the flow"
        );

        let right = Packet {
            seq: 1001,
            ack: 5001,
            ..from_client(40000, 9000, ACK)
        };
        let (action, _) = f.run(entry, &right.build(), f.in_if);
        assert_eq!(action, redirect(entry), "{entry:?}: handshake ACK");
        let (fwd3, rev3) = f.ct_pair(&key);
        assert_eq!(fwd3.state, 0, "{entry:?}: established (forward)");
        assert_eq!(rev3.state, ct::REPLY, "{entry:?}: established (reply)");
        assert_eq!(rev3.ack, 0);

        let (action, _) = f.run(entry, &from_client(40000, 9000, RST | ACK).build(), f.in_if);
        assert_eq!(action, redirect(entry), "{entry:?}: RST is forwarded");
        assert_eq!(f.ct_pair(&key).0.state, ct::RST, "{entry:?}: RST recorded");

        let (action, _) = f.run(entry, &from_client(40000, 9000, SYN).build(), f.in_if);
        assert_eq!(
            action,
            redirect(entry),
            "{entry:?}: SYN on the closed tuple"
        );
        let (fwd4, rev4) = f.ct_pair(&key);
        assert_eq!(fwd4.state, ct::EMBRYONIC, "{entry:?}: reopened (forward)");
        assert_eq!(
            rev4.state,
            ct::REPLY | ct::EMBRYONIC,
            "{entry:?}: reopened (reply)"
        );
        assert_eq!(u16::from_be(fwd4.sport), snat, "{entry:?}: same SNAT port");
        assert_eq!(
            f.counter(Counter::NewFlow),
            1,
            "{entry:?}: one flow throughout"
        );
    });
}

/// A conntrack pass reads, then deletes. A client SYN that reuses the tuple of a closed flow
/// in between (a client port coming round again, common with `tcp_tw_reuse`) reopens the entry
/// on the same SNAT port; the pass must keep it. Before `conntrack::sweep` took each entry and
/// judged it again, the pass deleted it: the client's ACK then opened a new flow on another
/// SNAT port, which the backend had never seen and answered with a RST ("Connection reset by
/// peer" in `cargo xtask bench l4`).
fn collection_keeps_a_flow_reopened_during_the_pass(entry: Entry) {
    with_fixture(1024, move |f| {
        let key = flow(CLIENT, 40000, NODE, 9000, PROTO_TCP);
        let (action, _) = f.run(entry, &from_client(40000, 9000, SYN).build(), f.in_if);
        assert_eq!(action, redirect(entry), "{entry:?}: SYN");
        let snat = f.snat_port(40000);
        let (action, _) = f.run(entry, &from_client(40000, 9000, RST | ACK).build(), f.in_if);
        assert_eq!(action, redirect(entry), "{entry:?}: RST");
        std::thread::sleep(std::time::Duration::from_millis(2));

        let t = Timeouts::default();
        let plan = conntrack::plan(f.kernel.datapath.ebpf_mut(), &t).expect("read conntrack");
        assert_eq!(
            plan.expired.len(),
            1,
            "{entry:?}: the closed flow is expired when the pass reads it"
        );

        let (action, _) = f.run(entry, &from_client(40000, 9000, SYN).build(), f.in_if);
        assert_eq!(action, redirect(entry), "{entry:?}: SYN reusing the tuple");

        let report = conntrack::sweep(f.kernel.datapath.ebpf_mut(), &plan, &t)
            .expect("delete expired flows");
        assert_eq!(
            (report.expired, report.revived),
            (0, 1),
            "{entry:?}: the reopened flow is kept"
        );
        let (fwd, rev) = f.ct_pair(&key);
        assert_eq!(
            fwd.state,
            ct::EMBRYONIC,
            "{entry:?}: forward entry reopened"
        );
        assert_eq!(
            rev.state,
            ct::REPLY | ct::EMBRYONIC,
            "{entry:?}: reply entry reopened"
        );
        assert_eq!(u16::from_be(fwd.sport), snat, "{entry:?}: same SNAT port");

        // The backend answers the SYN it saw; the client's ACK follows the same SNAT port.
        let synack = Packet {
            src_mac: BACKEND_MAC,
            dst_mac: OUT_MAC,
            seq: 7000,
            ack: 1001,
            ..Packet::tcp(BACKEND, 6379, NODE, snat, SYN | ACK)
        };
        let (action, _) = f.run(entry, &synack.build(), f.out_if);
        assert_eq!(action, redirect(entry), "{entry:?}: SYN-ACK");
        let ack = Packet {
            seq: 1001,
            ack: 7001,
            ..from_client(40000, 9000, ACK)
        };
        let (action, out) = f.run(entry, &ack.build(), f.in_if);
        assert_eq!(action, redirect(entry), "{entry:?}: handshake ACK");
        let sport = u16::from_be_bytes([out[34], out[35]]);
        assert_eq!(
            sport, snat,
            "{entry:?}: the ACK leaves from the SNAT port of the SYN"
        );
        assert_eq!(
            f.counter(Counter::NewFlow),
            1,
            "{entry:?}: one flow throughout"
        );
        let (fwd, _) = f.ct_pair(&key);
        assert_eq!(fwd.state, 0, "{entry:?}: established");
    });
}

#[test]
fn xdp_collection_keeps_a_flow_reopened_during_the_pass() {
    collection_keeps_a_flow_reopened_during_the_pass(Entry::Xdp);
}

#[test]
fn tc_collection_keeps_a_flow_reopened_during_the_pass() {
    collection_keeps_a_flow_reopened_during_the_pass(Entry::Tc);
}

/// A pass still deletes what stayed expired, and the orphans it read.
fn collection_deletes_what_stayed_expired(entry: Entry) {
    with_fixture(1024, move |f| {
        for port in [40000, 40001] {
            let (action, _) = f.run(entry, &from_client(port, 9000, SYN).build(), f.in_if);
            assert_eq!(action, redirect(entry), "{entry:?}: SYN {port}");
            f.run(entry, &from_client(port, 9000, RST | ACK).build(), f.in_if);
        }
        std::thread::sleep(std::time::Duration::from_millis(2));
        let t = Timeouts::default();
        let report =
            conntrack::collect(f.kernel.datapath.ebpf_mut(), &t).expect("collect conntrack");
        assert_eq!(
            (report.expired, report.revived, report.flows),
            (2, 0, 0),
            "{entry:?}"
        );
        assert_eq!(f.ct_len(maps::CT_FWD), 0, "{entry:?}: forward entries gone");
        assert_eq!(f.ct_len(maps::CT_REV), 0, "{entry:?}: reply entries gone");
    });
}

#[test]
fn xdp_collection_deletes_what_stayed_expired() {
    collection_deletes_what_stayed_expired(Entry::Xdp);
}

#[test]
fn tc_collection_deletes_what_stayed_expired() {
    collection_deletes_what_stayed_expired(Entry::Tc);
}

/// A SYN (as clients send it: no data) for a service with a wrong TCP checksum: XDP drops
/// it before it opens a flow and counts it; TC cannot judge checksums (a local sender's may
/// be partial) and forwards it. A right checksum and a SYN for no service (passed untouched)
/// are not affected; neither is a non-SYN with a wrong checksum (the backend's TCP drops it)
/// nor a SYN that carries data (TCP Fast Open; not judged, see `syn_checksum_ok`).
fn bad_checksum_syn(entry: Entry) {
    let syn = |sport: u16| Packet {
        payload: Vec::new(),
        ..from_client(sport, 9000, SYN)
    };
    with_fixture(1024, move |f| {
        let mut bad = syn(40000).build();
        // Ethernet 14 + IPv4 20; the TCP checksum sits at offset 16.
        bad[14 + 20 + 16] ^= 0x5a;
        let (action, _) = f.run(entry, &bad, f.in_if);
        let key = flow(CLIENT, 40000, NODE, 9000, PROTO_TCP);
        match entry {
            Entry::Xdp => {
                assert_eq!(action, drop_action(entry), "{entry:?}: dropped");
                assert!(f.ct(maps::CT_FWD, &key).is_none(), "{entry:?}: no flow");
                assert_eq!(f.ct_len(maps::CT_REV), 0, "{entry:?}: no SNAT port held");
                assert_eq!(f.counter(Counter::DropBadChecksum), 1, "{entry:?}: counted");
            }
            Entry::Tc => {
                assert_eq!(action, redirect(entry), "{entry:?}: forwarded");
                assert_eq!(
                    f.counter(Counter::DropBadChecksum),
                    0,
                    "{entry:?}: not judged"
                );
                f.forget(&key);
            }
        }
        let mut other = Packet {
            dport: 9999,
            ..syn(40001)
        }
        .build();
        other[14 + 20 + 16] ^= 0x5a;
        let (action, out2) = f.run(entry, &other, f.in_if);
        assert!(
            action == pass(entry) && out2 == other,
            "{entry:?}: a SYN for no service passes untouched, checksum and all"
        );
        let good = syn(40002).build();
        let (action, _) = f.run(entry, &good, f.in_if);
        assert_eq!(
            action,
            redirect(entry),
            "{entry:?}: a right checksum opens the flow"
        );
        let mut ack = Packet {
            seq: 1001,
            ack: 1,
            ..from_client(40003, 9000, ACK)
        }
        .build();
        ack[14 + 20 + 16] ^= 0x5a;
        let (action, _) = f.run(entry, &ack, f.in_if);
        assert_eq!(
            action,
            redirect(entry),
            "{entry:?}: non-SYNs are not judged"
        );
        let mut with_data = from_client(40006, 9000, SYN).build();
        with_data[14 + 20 + 16] ^= 0x5a;
        let (action, _) = f.run(entry, &with_data, f.in_if);
        assert_eq!(
            action,
            redirect(entry),
            "{entry:?}: a SYN with data is not judged"
        );
        let v6 = Packet {
            src_mac: CLIENT_MAC,
            dst_mac: IN_MAC,
            payload: Vec::new(),
            ..Packet::tcp(CLIENT6, 40004, NODE6, 9000, SYN)
        };
        let (action, _) = f.run(entry, &v6.build(), f.in_if);
        assert_eq!(
            action,
            redirect(entry),
            "{entry:?}: a right IPv6 checksum opens the flow"
        );
        let mut bad6 = Packet { sport: 40005, ..v6 }.build();
        // Ethernet 14 + IPv6 40.
        bad6[14 + 40 + 16] ^= 0x5a;
        let (action, _) = f.run(entry, &bad6, f.in_if);
        let want = if entry == Entry::Xdp {
            drop_action(entry)
        } else {
            redirect(entry)
        };
        assert_eq!(action, want, "{entry:?}: a wrong IPv6 checksum");
    });
}

#[test]
fn xdp_drops_a_syn_with_a_bad_checksum() {
    bad_checksum_syn(Entry::Xdp);
}

#[test]
fn tc_forwards_a_syn_with_a_bad_checksum() {
    bad_checksum_syn(Entry::Tc);
}

#[test]
fn xdp_handshake_states() {
    handshake_states(Entry::Xdp);
}

#[test]
fn tc_handshake_states() {
    handshake_states(Entry::Tc);
}

/// RST sequence validation on an established flow (the endpoint judges exactly, RFC 5961;
/// conntrack only refuses to let a blind RST free the flow): a RST far from what the other
/// side last acknowledged marks both entries unverified and keeps them; the next ordinary
/// packet clears the mark; a RST at the acknowledged sequence number is believed.
fn rst_sequence_validation(entry: Entry) {
    with_fixture(1024, move |f| {
        let key = flow(CLIENT, 40000, NODE, 9000, PROTO_TCP);
        f.run(entry, &from_client(40000, 9000, SYN).build(), f.in_if);
        let snat = f.snat_port(40000);
        let from_backend = |flags, seq, ack| {
            Packet {
                src_mac: BACKEND_MAC,
                dst_mac: OUT_MAC,
                seq,
                ack,
                ..Packet::tcp(BACKEND, 6379, NODE, snat, flags)
            }
            .build()
        };
        let client = |flags, seq, ack| {
            Packet {
                seq,
                ack,
                ..from_client(40000, 9000, flags)
            }
            .build()
        };
        f.run(entry, &from_backend(SYN | ACK, 5000, 1001), f.out_if);
        f.run(entry, &client(ACK, 1001, 5001), f.in_if);
        // The backend acknowledges 100 bytes from the client.
        f.run(entry, &from_backend(ACK, 5001, 1101), f.out_if);
        let (fwd, rev) = f.ct_pair(&key);
        assert_eq!(
            (fwd.state, rev.state),
            (0, ct::REPLY),
            "{entry:?}: established"
        );
        assert_eq!(
            (fwd.ack, rev.ack),
            (5001, 1101),
            "{entry:?}: acknowledgments recorded"
        );

        let blind = ct::RST_WINDOW.wrapping_mul(7).wrapping_add(1101);
        let (action, _) = f.run(entry, &client(RST, blind, 0), f.in_if);
        assert_eq!(
            action,
            redirect(entry),
            "{entry:?}: a blind RST is still forwarded"
        );
        let (fwd, rev) = f.ct_pair(&key);
        assert_eq!(
            (fwd.state, rev.state),
            (ct::RST_UNVERIFIED, ct::REPLY | ct::RST_UNVERIFIED),
            "{entry:?}: a blind RST leaves the flow closing, not released"
        );

        f.run(entry, &from_backend(ACK, 5001, 1101), f.out_if);
        let (fwd, rev) = f.ct_pair(&key);
        assert_eq!(
            (fwd.state, rev.state),
            (0, ct::REPLY),
            "{entry:?}: traffic after it clears the mark on both entries"
        );

        let (action, _) = f.run(
            entry,
            &from_backend(RST, 5001 + ct::RST_WINDOW, 0),
            f.out_if,
        );
        assert_eq!(action, redirect(entry), "{entry:?}: backend RST forwarded");
        assert_eq!(
            f.ct_pair(&key).1.state,
            ct::REPLY | ct::RST_UNVERIFIED,
            "{entry:?}: a backend RST past the window of the client's acknowledgment"
        );
        f.run(entry, &client(ACK, 1101, 5001), f.in_if);

        f.run(entry, &client(RST | ACK, 1101 + 1460, 5001), f.in_if);
        let (fwd, rev) = f.ct_pair(&key);
        assert_eq!(
            (fwd.state, rev.state),
            (ct::RST, ct::REPLY),
            "{entry:?}: a RST within the window is believed"
        );
        assert_eq!(
            f.counter(Counter::NewFlow),
            1,
            "{entry:?}: one flow throughout"
        );
    });
}

#[test]
fn xdp_rst_sequence_validation() {
    rst_sequence_validation(Entry::Xdp);
}

#[test]
fn tc_rst_sequence_validation() {
    rst_sequence_validation(Entry::Tc);
}

/// SNAT ports are random: two clients of a one-endpoint service get different ports, both
/// in the range, and the same flow opened again (its entry gone, as when a retransmitted SYN
/// follows a drop) does not get the same port every time.
fn random_snat_ports(entry: Entry) {
    with_fixture(1024, move |f| {
        let mut ports = Vec::new();
        for client in [CLIENT, "10.50.0.3"] {
            let frame = Packet {
                src_mac: CLIENT_MAC,
                dst_mac: IN_MAC,
                ..Packet::tcp(client, 40000, NODE, 9000, SYN)
            };
            let (action, _) = f.run(entry, &frame.build(), f.in_if);
            assert_eq!(action, redirect(entry), "{entry:?}: SYN from {client}");
            ports.push(f.snat_port_of(client, NODE, 40000));
        }
        assert_ne!(ports[0], ports[1], "{entry:?}: two flows, two ports");
        for p in &ports {
            assert!(
                (20_000..=32_767).contains(p),
                "{entry:?}: SNAT port {p} in range"
            );
        }
        let key = flow(CLIENT, 40000, NODE, 9000, PROTO_TCP);
        let mut seen = BTreeSet::from([ports[0]]);
        for _ in 0..3 {
            f.forget(&key);
            let (action, _) = f.run(entry, &from_client(40000, 9000, SYN).build(), f.in_if);
            assert_eq!(action, redirect(entry));
            seen.insert(f.snat_port(40000));
        }
        assert!(
            seen.len() > 1,
            "{entry:?}: the same flow opened 4 times always got port {seen:?}"
        );
    });
}

#[test]
fn xdp_random_snat_ports() {
    random_snat_ports(Entry::Xdp);
}

#[test]
fn tc_random_snat_ports() {
    random_snat_ports(Entry::Tc);
}

/// The default SNAT range (12,768 ports) with one endpoint, i.e. one reply tuple space: new
/// flows open until the range is nearly full (none dropped below 90%); the first drop is
/// counted globally and against the service.
fn snat_range_fills_before_drops(entry: Entry) {
    let (lo, hi) = DatapathOptions::default().snat_ports;
    let range = u32::from(hi - lo) + 1;
    let setup = Setup {
        ct_entries: 16_384,
        snat_ports: (lo, hi),
        services: vec![redis_service()],
    };
    with_setup(setup, move |f| {
        let mut first_drop = None;
        for i in 0..=range {
            let sport = u16::try_from(1024 + i).expect("client port");
            let (action, _) = f.run(entry, &from_client(sport, 9000, SYN).build(), f.in_if);
            if action == drop_action(entry) {
                first_drop = Some(i);
                break;
            }
            assert_eq!(action, redirect(entry), "{entry:?}: flow {i}");
        }
        let used = first_drop.expect("a full range drops");
        eprintln!(
            "{entry:?}: first SNAT drop with {used} of {range} ports in use ({:.2}%)",
            f64::from(used) * 100.0 / f64::from(range)
        );
        assert!(
            used * 10 >= range * 9,
            "{entry:?}: a drop at {used} of {range} ports, below 90%"
        );
        assert_eq!(
            f.counter(Counter::DropSnatExhausted),
            1,
            "{entry:?}: counted"
        );
        let id = f.service_id(NODE, 9000, PROTO_TCP);
        let stats = f.service_stats(id);
        assert_eq!(
            stats.drop_snat_exhausted, 1,
            "{entry:?}: counted against the service"
        );
        assert_eq!(stats.new_flows, u64::from(used), "{entry:?}: new flows");
    });
}

#[test]
fn xdp_snat_range_fills_before_drops() {
    snat_range_fills_before_drops(Entry::Xdp);
}

#[test]
fn tc_snat_range_fills_before_drops() {
    snat_range_fills_before_drops(Entry::Tc);
}

fn udp_service(endpoints: &[&str]) -> L4Service {
    let endpoints: Vec<SocketAddr> = endpoints
        .iter()
        .map(|a| SocketAddr::from_str(&format!("{a}:53")).expect("addr"))
        .collect();
    service("dns", 5300, L4Protocol::Udp, 53, &endpoints)
}

/// An endpoint leaving a UDP service takes its flows with it (both entries), so the next
/// datagram of the same flow reaches a live endpoint; TCP flows are left alone. Removing the
/// service removes the rest.
fn udp_flows_leave_a_removed_endpoint(entry: Entry) {
    let setup = Setup {
        ct_entries: 1024,
        snat_ports: DatapathOptions::default().snat_ports,
        services: vec![redis_service(), udp_service(&[BACKEND, BACKEND2])],
    };
    with_setup(setup, move |f| {
        let dgram = Packet {
            src_mac: CLIENT_MAC,
            dst_mac: IN_MAC,
            ..Packet::udp(CLIENT, 40000, NODE, 5300)
        }
        .build();
        let dst = |out: &[u8]| std::net::Ipv4Addr::new(out[30], out[31], out[32], out[33]);
        let (action, out) = f.run(entry, &dgram, f.in_if);
        assert_eq!(action, redirect(entry), "{entry:?}: datagram");
        let first = dst(&out).to_string();
        let other = if first == BACKEND { BACKEND2 } else { BACKEND };
        let (action, _) = f.run(entry, &from_client(40000, 9000, SYN).build(), f.in_if);
        assert_eq!(action, redirect(entry), "{entry:?}: a TCP flow beside it");

        let report = f
            .kernel
            .apply(&Snapshot {
                l4: vec![redis_service(), udp_service(&[other])],
                ..Snapshot::default()
            })
            .expect("apply");
        assert_eq!(
            report.udp_flows_purged, 1,
            "{entry:?}: the UDP flow is gone"
        );
        assert_eq!(f.ct_len(maps::CT_FWD), 1, "{entry:?}: the TCP flow stays");
        assert_eq!(f.ct_len(maps::CT_REV), 1, "{entry:?}: with its reply entry");

        let (action, out) = f.run(entry, &dgram, f.in_if);
        assert_eq!(action, redirect(entry), "{entry:?}: next datagram");
        assert_eq!(
            dst(&out).to_string(),
            other,
            "{entry:?}: the same flow now reaches the endpoint that stayed"
        );

        let report = f
            .kernel
            .apply(&Snapshot {
                l4: vec![redis_service()],
                ..Snapshot::default()
            })
            .expect("apply");
        assert_eq!(
            report.udp_flows_purged, 1,
            "{entry:?}: removing the service removes its flows"
        );
        assert_eq!(
            f.ct_len(maps::CT_FWD),
            1,
            "{entry:?}: only the TCP flow is left"
        );
    });
}

#[test]
fn xdp_udp_flows_leave_a_removed_endpoint() {
    udp_flows_leave_a_removed_endpoint(Entry::Xdp);
}

#[test]
fn tc_udp_flows_leave_a_removed_endpoint() {
    udp_flows_leave_a_removed_endpoint(Entry::Tc);
}

/// Gateway API routes in the maps: a service keyed on a Gateway's own address answers
/// there only, and a rejected share (an invalid backendRef of weight 1 beside a valid one of
/// weight 1) hands about half the new flows to the stack untouched (which answers TCP with
/// a RST), the other half forwarded.
fn gateway_route_keys_and_rejected_share(entry: Entry) {
    let backend: SocketAddr = format!("{BACKEND}:6379").parse().expect("addr");
    let split = |endpoints: Vec<SocketAddr>, reject: bool| {
        let mut s = service("r", 9000, L4Protocol::Tcp, 6379, &endpoints);
        s.split = vec![xdp_ingress::snapshot::L4Split {
            weight: 1,
            endpoints,
        }];
        if reject {
            s.split.push(xdp_ingress::snapshot::L4Split {
                weight: 1,
                endpoints: Vec::new(),
            });
        }
        s
    };
    let mut elsewhere = split(vec![backend], false);
    elsewhere.port = 9002;
    elsewhere.addrs = vec!["10.50.0.99".parse().expect("ip")];
    let mut here = split(vec![backend], false);
    here.port = 9001;
    here.addrs = vec![NODE.parse().expect("ip")];
    let setup = Setup {
        ct_entries: 4096,
        snat_ports: DatapathOptions::default().snat_ports,
        services: vec![split(vec![backend], true), here, elsewhere],
    };
    with_setup(setup, move |f| {
        let (action, _) = f.run(entry, &from_client(41000, 9001, SYN).build(), f.in_if);
        assert_eq!(
            action,
            redirect(entry),
            "{entry:?}: the Gateway's own address"
        );
        let frame = from_client(41000, 9002, SYN).build();
        let (action, out) = f.run(entry, &frame, f.in_if);
        assert_eq!(
            (action, out),
            (pass(entry), frame),
            "{entry:?}: another Gateway's address is not the node's"
        );
        let (mut forwarded, mut passed) = (0u32, 0u32);
        for sport in 42_000..42_400 {
            let frame = from_client(sport, 9000, SYN).build();
            let (action, out) = f.run(entry, &frame, f.in_if);
            if action == redirect(entry) {
                forwarded += 1;
            } else {
                assert_eq!((action, out), (pass(entry), frame), "{entry:?}: rejected");
                passed += 1;
            }
        }
        // Half and half by weight; 400 flows: 0.5 ± 0.1 is 4 standard deviations.
        let share = f64::from(passed) / 400.0;
        assert!(
            (share - 0.5).abs() <= 0.1,
            "{entry:?}: {passed} rejected, {forwarded} forwarded"
        );
    });
}

#[test]
fn xdp_gateway_route_keys_and_rejected_share() {
    gateway_route_keys_and_rejected_share(Entry::Xdp);
}

#[test]
fn tc_gateway_route_keys_and_rejected_share() {
    gateway_route_keys_and_rejected_share(Entry::Tc);
}
