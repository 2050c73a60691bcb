//! ICMP error translation and fragments through BPF_PROG_TEST_RUN (katran fixture style):
//! each crafted frame goes into the XDP or TC program, and the test checks the action and
//! every byte of the output against a frame built independently, every checksum computed from
//! scratch (and checked again on its own, so a wrong one is named).
//!
//! - ICMP errors quoting a NATed flow, both directions: a backend's port unreachable, a
//!   router's fragmentation needed / packet too big between node and client, time exceeded
//!   on either side, over IPv4 and IPv6, with whole and cut quotes;
//! - errors quoting no known flow pass byte-identical, and are counted;
//! - fragments: the first and a non-first fragment of a NATed datagram, both directions,
//!   over IPv4 and IPv6; a non-first fragment seen before its first passes and is counted.

#[path = "support/nat_fixture.rs"]
#[allow(dead_code)] // the fixture serves the other packet suites too
mod nat_fixture;

use std::{net::SocketAddr, str::FromStr};

use ingress_common::{
    l4::{FAMILY_V4, FAMILY_V6, FlowKey, PROTO_TCP, PROTO_UDP},
    maps,
    stats::Counter,
};
use ingress_tests::packet::{ACK, IcmpError, Packet, SYN, fragments, verify_checksums};
use nat_fixture::*;
use xdp_ingress::{config::L4Protocol, l4::DatapathOptions};

const UDP_PORT: u16 = 5300;
const ECHO_PORT: u16 = 5353;
/// A router between client and node, and one between node and backend.
const ROUTER: &str = "10.50.0.254";
const ROUTER6: &str = "fd50::fe";
const BACKEND_ROUTER: &str = "10.60.0.254";
const BACKEND_ROUTER6: &str = "fd60::fe";

/// The fixture serving the dual-stack TCP service NODE:9000 → BACKEND:6379 and the
/// dual-stack UDP service NODE:5300 → BACKEND:5353.
fn with_fixture(body: impl FnOnce(&mut Fixture) + Send + 'static) {
    let udp_endpoints = [
        SocketAddr::from_str(&format!("{BACKEND}:{ECHO_PORT}")).expect("addr"),
        SocketAddr::from_str(&format!("[{BACKEND6}]:{ECHO_PORT}")).expect("addr"),
    ];
    with_setup(
        Setup {
            ct_entries: 1024,
            snat_ports: DatapathOptions::default().snat_ports,
            services: vec![
                redis_service(),
                service("echo", UDP_PORT, L4Protocol::Udp, 53, &udp_endpoints),
            ],
        },
        body,
    );
}

fn addr16(a: &str) -> ([u8; 16], u8) {
    let mut out = [0u8; 16];
    match std::net::IpAddr::from_str(a).expect("ip") {
        std::net::IpAddr::V4(v4) => {
            out[..4].copy_from_slice(&v4.octets());
            (out, FAMILY_V4)
        }
        std::net::IpAddr::V6(v6) => (v6.octets(), FAMILY_V6),
    }
}

impl Fixture {
    fn run(&mut self, entry: Entry, frame: &[u8], ifindex: u32) -> (u32, Vec<u8>) {
        self.try_run(entry, frame, ifindex)
            .expect("BPF_PROG_TEST_RUN")
    }

    fn counter(&self, c: Counter) -> u64 {
        self.kernel.totals().expect("totals").get(c).packets
    }

    /// Opens the flow `client:port → node:svc` with `first` and returns its SNAT port.
    fn open(&mut self, entry: Entry, first: &Packet, client: &str, node: &str) -> u16 {
        let (action, _) = self.run(entry, &first.build(), self.in_if);
        assert_eq!(action, redirect(entry), "{entry:?}: the flow opens");
        let ((src, family), (dst, _)) = (addr16(client), addr16(node));
        let key = FlowKey {
            src,
            dst,
            sport: first.sport.to_be(),
            dport: first.dport.to_be(),
            proto: if first.l4 == ingress_tests::packet::L4::Udp {
                PROTO_UDP
            } else {
                PROTO_TCP
            },
            family,
            _pad: [0; 2],
        };
        u16::from_be(self.ct(maps::CT_FWD, &key).expect("conntrack entry").sport)
    }
}

fn from_client(p: Packet) -> Packet {
    Packet {
        src_mac: CLIENT_MAC,
        dst_mac: IN_MAC,
        ..p
    }
}

/// An ICMP error as it arrives from the client side or the backend side.
fn error_in(e: IcmpError, backend_side: bool) -> Vec<u8> {
    let (src_mac, dst_mac) = if backend_side {
        (BACKEND_MAC, OUT_MAC)
    } else {
        (CLIENT_MAC, IN_MAC)
    };
    IcmpError {
        src_mac,
        dst_mac,
        ..e
    }
    .build()
}

/// The translated error as it must leave: towards the client or the backend, TTL minus one.
fn error_out(e: IcmpError, to_backend: bool) -> Vec<u8> {
    let (src_mac, dst_mac) = if to_backend {
        (OUT_MAC, BACKEND_MAC)
    } else {
        (IN_MAC, CLIENT_MAC)
    };
    IcmpError {
        src_mac,
        dst_mac,
        ttl: 63,
        ..e
    }
    .build()
}

/// One row: an error arriving, and what must leave (`None`: passes byte-identical).
struct Row {
    name: &'static str,
    input: Vec<u8>,
    from_backend_side: bool,
    expected: Option<Vec<u8>>,
}

fn cut(mut ip: Vec<u8>, len: usize) -> Vec<u8> {
    ip.truncate(len);
    ip
}

/// The rows for one address family, given the flows' SNAT ports.
#[expect(clippy::too_many_lines, reason = "a table")]
fn rows(v6: bool, tcp_snat: u16, udp_snat: u16) -> Vec<Row> {
    let (client, node, backend, router, backend_router) = if v6 {
        (CLIENT6, NODE6, BACKEND6, ROUTER6, BACKEND_ROUTER6)
    } else {
        (CLIENT, NODE, BACKEND, ROUTER, BACKEND_ROUTER)
    };
    // What the node sent each way (TTL already decremented), and the same packets as the
    // other side of the NAT saw them.
    let to_backend_udp = Packet {
        ttl: 63,
        ..Packet::udp(node, udp_snat, backend, ECHO_PORT)
    };
    let from_client_udp = Packet {
        ttl: 63,
        ..Packet::udp(client, 40000, node, UDP_PORT)
    };
    let to_backend_tcp = Packet {
        ttl: 63,
        ..Packet::tcp(node, tcp_snat, backend, 6379, SYN)
    };
    let from_client_tcp = Packet {
        ttl: 63,
        ..Packet::tcp(client, 40000, node, 9000, SYN)
    };
    let to_client_tcp = Packet {
        ttl: 63,
        payload: vec![0x5a; 1400],
        ..Packet::tcp(node, 9000, client, 40000, ACK)
    };
    let from_backend_tcp = Packet {
        ttl: 63,
        payload: vec![0x5a; 1400],
        ..Packet::tcp(backend, 6379, node, tcp_snat, ACK)
    };
    let (unreach, port_unreach, frag_needed, too_big, exceeded) = if v6 {
        (1, 4, 0, 2, 3)
    } else {
        (3, 3, 4, 3, 11)
    };
    let mtu = if v6 { 1280 } else { 1400 };
    // Quotes the way Linux cuts them: as much as fits in 576 bytes (IPv4) / 1280 (IPv6).
    let limit = if v6 { 1280 - 48 } else { 576 - 28 };
    let mut out = vec![
        Row {
            name: "backend's port unreachable (UDP)",
            input: error_in(
                IcmpError::new(
                    backend,
                    node,
                    unreach,
                    port_unreach,
                    to_backend_udp.build_ip(),
                ),
                true,
            ),
            from_backend_side: true,
            expected: Some(error_out(
                IcmpError::new(
                    node,
                    client,
                    unreach,
                    port_unreach,
                    from_client_udp.build_ip(),
                ),
                false,
            )),
        },
        Row {
            name: "client-side router's fragmentation needed / packet too big (TCP, cut quote)",
            input: error_in(
                IcmpError {
                    rest: mtu,
                    ..IcmpError::new(
                        router,
                        node,
                        too_big,
                        frag_needed,
                        cut(to_client_tcp.build_ip(), limit),
                    )
                },
                false,
            ),
            from_backend_side: false,
            expected: Some(error_out(
                IcmpError {
                    rest: mtu,
                    ..IcmpError::new(
                        node,
                        backend,
                        too_big,
                        frag_needed,
                        cut(from_backend_tcp.build_ip(), limit),
                    )
                },
                true,
            )),
        },
        Row {
            name: "backend-side router's time exceeded (TCP SYN, whole quote)",
            input: error_in(
                IcmpError::new(backend_router, node, exceeded, 0, to_backend_tcp.build_ip()),
                true,
            ),
            from_backend_side: true,
            expected: Some(error_out(
                IcmpError::new(node, client, exceeded, 0, from_client_tcp.build_ip()),
                false,
            )),
        },
        Row {
            name: "backend's error quoting only 8 bytes of TCP header",
            input: error_in(
                IcmpError::new(
                    backend,
                    node,
                    unreach,
                    port_unreach,
                    cut(to_backend_tcp.build_ip(), if v6 { 48 } else { 28 }),
                ),
                true,
            ),
            from_backend_side: true,
            expected: Some(error_out(
                IcmpError::new(
                    node,
                    client,
                    unreach,
                    port_unreach,
                    cut(from_client_tcp.build_ip(), if v6 { 48 } else { 28 }),
                ),
                false,
            )),
        },
    ];
    // Errors that quote no known flow: left to the stack byte-identical.
    let unknown = [
        (
            "quoting another SNAT port",
            Packet {
                ttl: 63,
                ..Packet::udp(node, udp_snat.wrapping_add(1), backend, ECHO_PORT)
            },
            true,
        ),
        (
            "quoting another backend port",
            Packet {
                ttl: 63,
                ..Packet::udp(node, udp_snat, backend, ECHO_PORT + 1)
            },
            true,
        ),
        (
            "quoting the node's own connection to the client",
            Packet {
                ttl: 63,
                ..Packet::tcp(node, 22, client, 40000, ACK)
            },
            false,
        ),
        (
            "quoting the client-side tuple (not a packet the node sent)",
            Packet {
                ttl: 63,
                ..Packet::udp(client, 40000, node, UDP_PORT)
            },
            false,
        ),
    ];
    for (name, quoted, backend_side) in unknown {
        let src = if backend_side { backend } else { router };
        out.push(Row {
            name,
            input: error_in(
                IcmpError::new(src, node, unreach, port_unreach, quoted.build_ip()),
                backend_side,
            ),
            from_backend_side: backend_side,
            expected: None,
        });
    }
    out
}

fn icmp_errors(entry: Entry, v6: bool) {
    with_fixture(move |f| {
        let (client, node) = if v6 { (CLIENT6, NODE6) } else { (CLIENT, NODE) };
        let udp_snat = f.open(
            entry,
            &from_client(Packet::udp(client, 40000, node, UDP_PORT)),
            client,
            node,
        );
        let tcp_snat = f.open(
            entry,
            &from_client(Packet::tcp(client, 40000, node, 9000, SYN)),
            client,
            node,
        );
        let flows = (f.counter(Counter::NewFlow), f.counter(Counter::CtForward));
        let mut translated = 0;
        let mut untranslated = 0;
        for row in rows(v6, tcp_snat, udp_snat) {
            let what = format!("{entry:?} v6={v6}: {}", row.name);
            verify_checksums(&row.input).unwrap_or_else(|e| panic!("{what}: input: {e}"));
            let ifindex = if row.from_backend_side {
                f.out_if
            } else {
                f.in_if
            };
            let (action, out) = f.run(entry, &row.input, ifindex);
            match row.expected {
                Some(expected) => {
                    translated += 1;
                    assert_eq!(action, redirect(entry), "{what}: action");
                    verify_checksums(&out).unwrap_or_else(|e| panic!("{what}: output: {e}"));
                    assert_eq!(out, expected, "{what}: translated, byte for byte");
                }
                None => {
                    untranslated += 1;
                    assert_eq!(action, pass(entry), "{what}: action");
                    assert_eq!(out, row.input, "{what}: byte-identical");
                }
            }
        }
        assert_eq!(
            f.counter(Counter::IcmpTranslated),
            translated,
            "{entry:?}: icmp_translated"
        );
        assert_eq!(
            f.counter(Counter::IcmpUntranslated),
            untranslated,
            "{entry:?}: icmp_untranslated"
        );
        assert_eq!(
            (f.counter(Counter::NewFlow), f.counter(Counter::CtForward)),
            flows,
            "{entry:?}: ICMP creates and touches no flow"
        );
    });
}

#[test]
fn xdp_icmp_errors_v4() {
    icmp_errors(Entry::Xdp, false);
}

#[test]
fn tc_icmp_errors_v4() {
    icmp_errors(Entry::Tc, false);
}

#[test]
fn xdp_icmpv6_errors() {
    icmp_errors(Entry::Xdp, true);
}

#[test]
fn tc_icmpv6_errors() {
    icmp_errors(Entry::Tc, true);
}

/// A 200-byte UDP datagram in two fragments, each way: the first fragment opens (or
/// follows) the flow, the second takes the same addresses; both leave exactly as the
/// translated datagram fragmented the same way would. A second fragment of a datagram whose
/// first was never seen passes untouched and is counted; so does one for no service.
fn fragmented_datagrams(entry: Entry, v6: bool) {
    with_fixture(move |f| {
        let (client, node, backend) = if v6 {
            (CLIENT6, NODE6, BACKEND6)
        } else {
            (CLIENT, NODE, BACKEND)
        };
        let payload: Vec<u8> = (0..200u8).collect();
        let request = from_client(Packet {
            payload: payload.clone(),
            ..Packet::udp(client, 40000, node, UDP_PORT)
        });
        let [first, second] = fragments(&request.build(), 0x4242, 64);
        let (action, out) = f.run(entry, &first, f.in_if);
        assert_eq!(action, redirect(entry), "{entry:?}: first fragment");
        let snat = {
            let ((src, family), (dst, _)) = (addr16(client), addr16(node));
            let key = FlowKey {
                src,
                dst,
                sport: 40000u16.to_be(),
                dport: UDP_PORT.to_be(),
                proto: PROTO_UDP,
                family,
                _pad: [0; 2],
            };
            u16::from_be(f.ct(maps::CT_FWD, &key).expect("flow").sport)
        };
        let translated = Packet {
            payload: payload.clone(),
            ttl: 63,
            src_mac: OUT_MAC,
            dst_mac: BACKEND_MAC,
            ..Packet::udp(node, snat, backend, ECHO_PORT)
        };
        let [want_first, want_second] = fragments(&translated.build(), 0x4242, 64);
        assert_eq!(out, want_first, "{entry:?}: first fragment, byte for byte");
        let (action, out) = f.run(entry, &second, f.in_if);
        assert_eq!(action, redirect(entry), "{entry:?}: second fragment");
        assert_eq!(
            out, want_second,
            "{entry:?}: second fragment, byte for byte"
        );
        assert_eq!(
            f.counter(Counter::FragmentTranslated),
            1,
            "{entry:?}: counted"
        );

        // The reply, fragmented by the backend.
        let reply = Packet {
            payload: payload.clone(),
            src_mac: BACKEND_MAC,
            dst_mac: OUT_MAC,
            ..Packet::udp(backend, ECHO_PORT, node, snat)
        };
        let [first, second] = fragments(&reply.build(), 0x77, 96);
        let back = Packet {
            payload: payload.clone(),
            ttl: 63,
            src_mac: IN_MAC,
            dst_mac: CLIENT_MAC,
            ..Packet::udp(node, UDP_PORT, client, 40000)
        };
        let [want_first, want_second] = fragments(&back.build(), 0x77, 96);
        for (name, frame, want) in [
            ("reply's first fragment", first, want_first),
            ("reply's second fragment", second, want_second),
        ] {
            let (action, out) = f.run(entry, &frame, f.out_if);
            assert_eq!(action, redirect(entry), "{entry:?}: {name}");
            assert_eq!(out, want, "{entry:?}: {name}, byte for byte");
        }
        assert_eq!(
            f.counter(Counter::FragmentTranslated),
            2,
            "{entry:?}: counted"
        );

        // Non-first fragments whose first fragment was not seen: another datagram of the
        // same flow, and one for no service.
        let [_, early] = fragments(&request.build(), 0x4343, 64);
        let other = from_client(Packet {
            payload: payload.clone(),
            ..Packet::udp(client, 40000, node, 5301)
        });
        let [_, stray] = fragments(&other.build(), 0x4444, 64);
        for (name, frame) in [("early", early), ("for no service", stray)] {
            let (action, out) = f.run(entry, &frame, f.in_if);
            assert_eq!(action, pass(entry), "{entry:?}: {name} non-first fragment");
            assert_eq!(out, frame, "{entry:?}: {name}: byte-identical");
        }
        assert_eq!(
            f.counter(Counter::FragmentUntracked),
            2,
            "{entry:?}: both counted"
        );
        assert_eq!(
            f.counter(Counter::FragmentTranslated),
            2,
            "{entry:?}: none forwarded"
        );
    });
}

#[test]
fn xdp_fragmented_datagrams_v4() {
    fragmented_datagrams(Entry::Xdp, false);
}

#[test]
fn tc_fragmented_datagrams_v4() {
    fragmented_datagrams(Entry::Tc, false);
}

#[test]
fn xdp_fragmented_datagrams_v6() {
    fragmented_datagrams(Entry::Xdp, true);
}

#[test]
fn tc_fragmented_datagrams_v6() {
    fragmented_datagrams(Entry::Tc, true);
}

/// An IP length that claims more than the frame holds: malformed, never NATed, no flow.
fn truncated_packets_are_not_nated(entry: Entry) {
    with_fixture(move |f| {
        for (client, node) in [(CLIENT, NODE), (CLIENT6, NODE6)] {
            let mut syn = from_client(Packet {
                payload: vec![0; 40],
                ..Packet::tcp(client, 40000, node, 9000, SYN)
            })
            .build();
            syn.truncate(syn.len() - 20);
            let (action, out) = f.run(entry, &syn, f.in_if);
            assert_eq!(action, pass(entry), "{entry:?}: {client}: truncated SYN");
            assert_eq!(out, syn, "{entry:?}: {client}: byte-identical");
        }
        assert_eq!(f.counter(Counter::NewFlow), 0, "{entry:?}: no flow");
        assert_eq!(f.counter(Counter::Malformed), 2, "{entry:?}: malformed");
    });
}

#[test]
fn xdp_truncated_packets_are_not_nated() {
    truncated_packets_are_not_nated(Entry::Xdp);
}

#[test]
fn tc_truncated_packets_are_not_nated() {
    truncated_packets_are_not_nated(Entry::Tc);
}
