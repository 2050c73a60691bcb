//! Packet fuzzing through BPF_PROG_TEST_RUN: random frames and frames mutated from valid ones
//! (truncation at every length, bit flips, random header bytes, random IPv4 options and IPv6
//! extension headers, wrong lengths) go through the XDP and the TC entry points of the real
//! program, and every frame is checked against properties that hold whatever the input:
//!
//! 1. a frame that is not for a service and not of a tracked flow leaves byte-identical with
//!    the pass verdict;
//! 2. no frame creates more than one conntrack pair, and every pair is counted as a new flow;
//! 3. the verdict is one the entry point documents, and the counters add up (one `seen` per
//!    frame, one class per frame, NAT counters only for TCP/UDP, redirects counted).
//!
//! The generator is a seeded xorshift: the seed is printed, `NAT_FUZZ_SEED=<n>` replays a run
//! (the kernel picks SNAT ports at random, so replies to tracked flows may differ), and
//! `NAT_FUZZ_SEED=random` explores a new one; without it, a fixed seed.
//! `NAT_FUZZ_ROUNDS=<n>` changes how many generated frames are sent (each through both
//! entry points).

#[path = "support/nat_fixture.rs"]
#[allow(dead_code)] // the fixture serves nat_packets.rs too; this file does not use all of it
mod nat_fixture;

use std::{
    collections::HashSet,
    fmt::Write as _,
    net::{IpAddr, Ipv4Addr, Ipv6Addr},
    time::Instant,
};

use ingress_common::{
    l4::{FAMILY_V4, FAMILY_V6, FlowKey, FragKey, ServiceKey, ServiceStats, ServiceValue},
    maps,
    stats::{Counter, PacketCount},
};
use ingress_tests::packet::{ACK, FIN, IcmpError, L4, Packet, RST, SYN, fragments};
use nat_fixture::*;
use xdp_ingress::{config::L4Protocol, l4::DatapathOptions};

const XDP_TX: u32 = 3;

/// TCP service with endpoints, UDP service with endpoints, TCP service without endpoints.
const TCP_PORT: u16 = 9000;
const UDP_PORT: u16 = 5300;
const EMPTY_PORT: u16 = 9100;

/// Conntrack maps are emptied when they hold more pairs than this (keeps the per-frame
/// entry count cheap and the SNAT range far from full).
const CT_FLUSH_AT: usize = 48;

/// Generated frames (each goes through both entry points) unless `NAT_FUZZ_ROUNDS` says.
const DEFAULT_ROUNDS: u64 = 55_000;

fn hex(f: &[u8]) -> String {
    f.iter().fold(String::new(), |mut s, b| {
        let _ = write!(s, "{b:02x}");
        s
    })
}

/// xorshift64* (Vigna): tiny, deterministic, good enough for picking bytes.
struct Rng(u64);

impl Rng {
    fn new(seed: u64) -> Self {
        Self(seed | 1)
    }

    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }

    /// Uniform-ish in `0..n` (`n > 0`).
    fn below(&mut self, n: usize) -> usize {
        usize::try_from(self.next() % n as u64).expect("fits")
    }

    fn byte(&mut self) -> u8 {
        self.next().to_le_bytes()[7]
    }

    fn u16(&mut self) -> u16 {
        u16::from_le_bytes([self.byte(), self.byte()])
    }

    /// True with probability `num / den`.
    fn chance(&mut self, num: usize, den: usize) -> bool {
        self.below(den) < num
    }

    fn pick<T: Copy>(&mut self, items: &[T]) -> T {
        items[self.below(items.len())]
    }

    fn bytes(&mut self, n: usize) -> Vec<u8> {
        (0..n).map(|_| self.byte()).collect()
    }
}

fn seed() -> u64 {
    match std::env::var("NAT_FUZZ_SEED").as_deref().map(str::trim) {
        // A fixed seed by default: CI replays, it does not explore (as with the fuzz corpora).
        Err(_) => DEFAULT_SEED,
        Ok("random") => {
            let t = std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .expect("clock");
            t.as_secs() ^ u64::from(t.subsec_nanos()) << 20
        }
        Ok(s) => s
            .strip_prefix("0x")
            .map_or_else(|| s.parse(), |h| u64::from_str_radix(h, 16))
            .expect("NAT_FUZZ_SEED: `random`, or a decimal or 0x-hex u64"),
    }
}

/// The seed CI runs with.
const DEFAULT_SEED: u64 = 0x5eed_f00d;

fn rounds() -> u64 {
    std::env::var("NAT_FUZZ_ROUNDS").map_or(DEFAULT_ROUNDS, |s| {
        s.trim().parse().expect("NAT_FUZZ_ROUNDS: a number")
    })
}
impl Entry {
    /// Every verdict the entry point can return (see `ingress-ebpf/src/main.rs`).
    fn actions(self) -> &'static [u32] {
        match self {
            Entry::Xdp => &[XDP_PASS, XDP_DROP, XDP_TX, XDP_REDIRECT],
            Entry::Tc => &[TCX_NEXT, TC_ACT_SHOT, TC_ACT_REDIRECT],
        }
    }
}

/// The fixture of `nat_packets.rs`, serving a TCP service with endpoints, a UDP service with
/// endpoints and a TCP service without endpoints, each on both node addresses.
fn with_fixture(body: impl FnOnce(&mut Fixture) + Send + 'static) {
    let both = redis_service().endpoints;
    let setup = Setup {
        ct_entries: 1024,
        snat_ports: DatapathOptions::default().snat_ports,
        services: vec![
            service("redis", TCP_PORT, L4Protocol::Tcp, 6379, &both),
            service("dns", UDP_PORT, L4Protocol::Udp, 6379, &both),
            service("empty", EMPTY_PORT, L4Protocol::Tcp, 6379, &[]),
        ],
    };
    with_setup(setup, body);
}

impl Fixture {
    /// Runs `entry` on `frame` as if received on `ifindex` (as `nat_packets.rs` does).
    /// `None` when the kernel refuses the frame before the program runs (EINVAL: it does so
    /// for skbs too short for the headers their EtherType announces).
    fn run(&mut self, entry: Entry, frame: &[u8], ifindex: u32) -> Option<(u32, Vec<u8>)> {
        match self.try_run(entry, frame, ifindex) {
            Err(aya::programs::ProgramError::SyscallError(e))
                if entry == Entry::Tc && e.io_error.raw_os_error() == Some(libc::EINVAL) =>
            {
                None
            }
            r => Some(r.unwrap_or_else(|e| {
                panic!(
                    "BPF_PROG_TEST_RUN {entry:?} on {} bytes: {e:?}: {}",
                    frame.len(),
                    hex(frame)
                )
            })),
        }
    }

    fn totals(&self) -> [PacketCount; Counter::COUNT as usize] {
        let t = self.kernel.totals().expect("totals");
        Counter::ALL.map(|c| t.get(c))
    }

    fn ct_keys(&mut self, name: &'static str) -> Vec<FlowKey> {
        self.ct_map(name).keys().map(|k| k.expect("key")).collect()
    }

    fn ct_flush(&mut self) {
        for name in [maps::CT_FWD, maps::CT_REV] {
            for k in self.ct_keys(name) {
                self.ct_map(name)
                    .remove(&k)
                    .expect("remove conntrack entry");
            }
        }
    }

    fn services(&mut self) -> Vec<(ServiceKey, ServiceValue)> {
        let map = self.services_map();
        map.iter().map(|kv| kv.expect("service")).collect()
    }
}

/// What the program's parser should make of a frame, computed independently from the
/// protocol layouts and the rules `ingress-ebpf/src/parse.rs` documents (at most four IPv6
/// extension headers: hop-by-hop, routing, destination options, fragment; the IP length
/// must cover the headers and fit in the frame).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Class {
    NonIp,
    Malformed,
    /// A non-first fragment: its family, the key its first fragment records, the TTL.
    Fragment {
        key: FragKey,
        ttl: u8,
    },
    OtherL4(u8),
    /// An ICMP(v6) error of a type the NAT translates: the conntrack key its quote names,
    /// if the quote is one it can read, and the outer TTL.
    IcmpError {
        family: u8,
        quoted: Option<FlowKey>,
        ttl: u8,
    },
    /// TCP/UDP: the conntrack key the program looks up and the TTL / hop limit.
    L4 {
        key: FlowKey,
        ttl: u8,
    },
}

impl Class {
    fn family(&self) -> Option<u8> {
        match *self {
            Class::NonIp | Class::Malformed => None,
            Class::Fragment { key, .. } => Some(key.family),
            Class::OtherL4(f) | Class::IcmpError { family: f, .. } => Some(f),
            Class::L4 { key, .. } => Some(key.family),
        }
    }
}

fn be16(f: &[u8], off: usize) -> u16 {
    u16::from_be_bytes([f[off], f[off + 1]])
}

fn classify(f: &[u8]) -> Class {
    if f.len() < 14 {
        return Class::Malformed;
    }
    match be16(f, 12) {
        0x0800 => classify_v4(f),
        0x86dd => classify_v6(f),
        _ => Class::NonIp,
    }
}

fn addrs_v4(f: &[u8], l3: usize) -> ([u8; 16], [u8; 16]) {
    let mut src = [0u8; 16];
    let mut dst = [0u8; 16];
    src[..4].copy_from_slice(&f[l3 + 12..l3 + 16]);
    dst[..4].copy_from_slice(&f[l3 + 16..l3 + 20]);
    (src, dst)
}

fn classify_v4(f: &[u8]) -> Class {
    if f.len() < 14 + 20 {
        return Class::Malformed;
    }
    let ihl = usize::from(f[14] & 0x0f) * 4;
    if f[14] >> 4 != 4 || ihl < 20 {
        return Class::Malformed;
    }
    let tot = usize::from(be16(f, 16));
    let end = 14 + tot;
    if tot < ihl || end > f.len() {
        return Class::Malformed;
    }
    let (src, dst) = addrs_v4(f, 14);
    let frags = be16(f, 20);
    let id = u32::from(u16::from_ne_bytes([f[18], f[19]]));
    if frags & 0x1fff != 0 {
        let key = FragKey {
            src,
            dst,
            id,
            proto: f[23],
            family: FAMILY_V4,
            _pad: [0; 2],
        };
        return Class::Fragment { key, ttl: f[22] };
    }
    if f[23] == 1 {
        if frags & 0x2000 != 0 {
            return Class::OtherL4(FAMILY_V4);
        }
        return classify_icmp(f, FAMILY_V4, 14 + ihl, end, f[22]);
    }
    classify_l4(f, FAMILY_V4, f[23], 14 + ihl, end, (src, dst), f[22])
}

fn classify_v6(f: &[u8]) -> Class {
    if f.len() < 14 + 40 {
        return Class::Malformed;
    }
    let end = 14 + 40 + usize::from(be16(f, 18));
    if end > f.len() {
        return Class::Malformed;
    }
    let src: [u8; 16] = f[22..38].try_into().expect("16");
    let dst: [u8; 16] = f[38..54].try_into().expect("16");
    let mut next = f[20];
    let mut off = 14 + 40;
    let mut first_frag = false;
    for _ in 0..4 {
        match next {
            0 | 43 | 60 => {
                if f.len() < off + 2 {
                    return Class::Malformed;
                }
                next = f[off];
                off += (usize::from(f[off + 1]) + 1) * 8;
            }
            44 => {
                if f.len() < off + 8 {
                    return Class::Malformed;
                }
                let off_flags = be16(f, off + 2);
                if off_flags & 0xfff8 != 0 {
                    if off + 8 > end {
                        return Class::Malformed;
                    }
                    let key = FragKey {
                        src,
                        dst,
                        id: u32::from_ne_bytes(f[off + 4..off + 8].try_into().expect("4")),
                        proto: f[off],
                        family: FAMILY_V6,
                        _pad: [0; 2],
                    };
                    return Class::Fragment { key, ttl: f[21] };
                }
                first_frag |= off_flags & 1 != 0;
                next = f[off];
                off += 8;
            }
            _ => break,
        }
    }
    if off > end {
        return Class::Malformed;
    }
    if next == 58 {
        if first_frag {
            return Class::OtherL4(FAMILY_V6);
        }
        return classify_icmp(f, FAMILY_V6, off, end, f[21]);
    }
    classify_l4(f, FAMILY_V6, next, off, end, (src, dst), f[21])
}

/// An ICMP(v6) message at `icmp`: an error of a type the NAT translates, with the conntrack
/// key its quote names (the quoted tuple reversed), as `nat.rs` reads it.
fn classify_icmp(f: &[u8], family: u8, icmp: usize, end: usize, ttl: u8) -> Class {
    if f.len() < icmp + 8 || icmp + 8 > end {
        return Class::Malformed;
    }
    let kind = f[icmp];
    let error = if family == FAMILY_V6 {
        matches!(kind, 1..=3)
    } else {
        matches!(kind, 3 | 11)
    };
    if !error {
        return Class::OtherL4(family);
    }
    let q = icmp + 8;
    let quoted = (|| {
        let (proto, src, dst, ql4) = if family == FAMILY_V4 {
            if f.len() < q + 20 {
                return None;
            }
            let ihl = usize::from(f[q] & 0x0f) * 4;
            if f[q] >> 4 != 4 || ihl < 20 || be16(f, q + 6) & 0x1fff != 0 {
                return None;
            }
            let (s, d) = addrs_v4(f, q);
            (f[q + 9], s, d, q + ihl)
        } else {
            if f.len() < q + 40 || f[q] >> 4 != 6 {
                return None;
            }
            let s: [u8; 16] = f[q + 8..q + 24].try_into().expect("16");
            let d: [u8; 16] = f[q + 24..q + 40].try_into().expect("16");
            (f[q + 6], s, d, q + 40)
        };
        if !matches!(proto, 6 | 17) || ql4 + 8 > end || f.len() < ql4 + 4 {
            return None;
        }
        Some(FlowKey {
            src: dst,
            dst: src,
            sport: u16::from_ne_bytes([f[ql4 + 2], f[ql4 + 3]]),
            dport: u16::from_ne_bytes([f[ql4], f[ql4 + 1]]),
            proto,
            family,
            _pad: [0; 2],
        })
    })();
    Class::IcmpError {
        family,
        quoted,
        ttl,
    }
}

fn classify_l4(
    f: &[u8],
    family: u8,
    proto: u8,
    l4: usize,
    end: usize,
    (src, dst): ([u8; 16], [u8; 16]),
    ttl: u8,
) -> Class {
    let complete = match proto {
        6 => f.len() >= l4 + 20 && usize::from(f[l4 + 12] >> 4) * 4 >= 20 && l4 + 20 <= end,
        17 => f.len() >= l4 + 8 && l4 + 8 <= end,
        _ => return Class::OtherL4(family),
    };
    if !complete {
        return Class::Malformed;
    }
    Class::L4 {
        key: FlowKey {
            src,
            dst,
            sport: u16::from_ne_bytes([f[l4], f[l4 + 1]]),
            dport: u16::from_ne_bytes([f[l4 + 2], f[l4 + 3]]),
            proto,
            family,
            _pad: [0; 2],
        },
        ttl,
    }
}

fn ip_of(a: &[u8; 16], family: u8) -> IpAddr {
    if family == FAMILY_V6 {
        IpAddr::V6(Ipv6Addr::from(*a))
    } else {
        IpAddr::V4(Ipv4Addr::new(a[0], a[1], a[2], a[3]))
    }
}

/// Inserts a chain of `n` IPv6 extension headers (random types among hop-by-hop, routing,
/// destination options, fragment and, rarely, anything) after the fixed header of a valid
/// IPv6 frame, fixing the payload length and the next-header chain.
fn insert_v6_ext(rng: &mut Rng, f: &mut Vec<u8>, n: usize) {
    let upper = f[20];
    let mut chain = Vec::new();
    let mut types = Vec::new();
    for _ in 0..n {
        types.push(rng.pick(&[0u8, 43, 60, 60, 44, 0, 43, 51, 135, 59]));
    }
    for (i, t) in types.iter().enumerate() {
        let next = types.get(i + 1).copied().unwrap_or(upper);
        if *t == 44 {
            // Fragment header: offset 0 most of the time (an atomic or first fragment).
            let off_flags: u16 = if rng.chance(1, 4) {
                rng.u16()
            } else {
                u16::from(rng.chance(1, 2))
            };
            chain.extend_from_slice(&[next, 0]);
            chain.extend_from_slice(&off_flags.to_be_bytes());
            chain.extend_from_slice(&rng.bytes(4));
        } else {
            let len = rng.pick(&[0u8, 0, 1, 2, 5]);
            chain.extend_from_slice(&[next, len]);
            let body = (usize::from(len) + 1) * 8 - 2;
            if rng.chance(1, 2) {
                // PadN filling the body.
                let mut pad = vec![0u8; body];
                pad[0] = 1;
                pad[1] = u8::try_from(body - 2).expect("small");
                chain.extend_from_slice(&pad);
            } else {
                chain.extend_from_slice(&rng.bytes(body));
            }
        }
    }
    if let Some(first) = types.first() {
        f[20] = *first;
    }
    let plen = be16(f, 18).wrapping_add(u16::try_from(chain.len()).expect("small"));
    f[18..20].copy_from_slice(&plen.to_be_bytes());
    f.splice(54..54, chain);
}

/// Generates valid frames (the packet tables' kind, with random fields) and mutates them.
struct Gen {
    rng: Rng,
}

const TCP_FLAGS: [u8; 8] = [SYN, SYN, ACK, SYN | ACK, RST, RST | ACK, FIN | ACK, 0xff];

impl Gen {
    /// A valid frame: v4 or v6, TCP/UDP/other, to a service or not, from the known client or
    /// not, with random IPv4 options or IPv6 extension headers now and then.
    fn valid(&mut self) -> Vec<u8> {
        let r = &mut self.rng;
        let v6 = r.chance(2, 5);
        let src = match r.below(8) {
            0 => {
                if v6 {
                    format!("fd50::{:x}", r.u16())
                } else {
                    format!("10.50.0.{}", r.byte())
                }
            }
            1 => {
                if v6 {
                    Ipv6Addr::from(u128::from(r.next()) << 64 | u128::from(r.next())).to_string()
                } else {
                    Ipv4Addr::from(u32::try_from(r.next() >> 32).expect("32")).to_string()
                }
            }
            _ => (if v6 { CLIENT6 } else { CLIENT }).to_owned(),
        };
        let dst = match r.below(6) {
            0 => (if v6 { CLIENT6 } else { BACKEND }).to_owned(),
            1 => (if v6 { "fd50::99" } else { "10.50.0.99" }).to_owned(),
            _ => (if v6 { NODE6 } else { NODE }).to_owned(),
        };
        let dport = match r.below(10) {
            0..=3 => TCP_PORT,
            4..=6 => UDP_PORT,
            7 => EMPTY_PORT,
            _ => r.u16(),
        };
        // A small set of client ports, so later frames hit the flows earlier ones opened.
        let sport = if r.chance(3, 4) {
            40_000 + u16::try_from(r.below(6)).expect("small")
        } else {
            r.u16()
        };
        let l4 = match r.below(10) {
            0..=4 => L4::Tcp(r.pick(&TCP_FLAGS)),
            5..=7 => L4::Udp,
            _ => L4::Other(r.pick(&[1u8, 58, 132, 0, 43, 44, 60, 47, 255])),
        };
        let mut p = Packet::tcp(&src, sport, &dst, dport, SYN);
        p.l4 = l4;
        p.src_mac = CLIENT_MAC;
        p.dst_mac = IN_MAC;
        p.seq = u32::try_from(r.next() >> 32).expect("32");
        p.ack = u32::try_from(r.next() >> 32).expect("32");
        p.ttl = r.pick(&[64, 64, 64, 2, 1, 0, 255]);
        let plen = r.pick(&[0usize, 0, 1, 11, 64, 300]);
        p.payload = r.bytes(plen);
        if !v6 && r.chance(1, 4) {
            let n = 4 * r.below(11);
            p.ip_options = r.bytes(n);
        }
        if !v6 && r.chance(1, 12) {
            p.frag_offset = u16::try_from(r.below(0x1fff)).expect("13 bits");
        }
        if v6 && r.chance(1, 6) {
            p.v6_dest_opts = true;
        }
        let mut f = p.build();
        if v6 && r.chance(1, 4) {
            let n = 1 + r.below(5);
            insert_v6_ext(r, &mut f, n);
        }
        f
    }

    /// A valid reply from a backend to one of the tracked flows (by its reply key).
    fn reply(&mut self, rev: &FlowKey) -> Vec<u8> {
        let r = &mut self.rng;
        let src = ip_of(&rev.src, rev.family).to_string();
        let dst = ip_of(&rev.dst, rev.family).to_string();
        let (sport, dport) = (u16::from_be(rev.sport), u16::from_be(rev.dport));
        let mut p = if rev.proto == 17 {
            Packet::udp(&src, sport, &dst, dport)
        } else {
            Packet::tcp(&src, sport, &dst, dport, r.pick(&TCP_FLAGS))
        };
        p.src_mac = BACKEND_MAC;
        p.dst_mac = OUT_MAC;
        p.seq = u32::try_from(r.next() >> 32).expect("32");
        p.ack = u32::try_from(r.next() >> 32).expect("32");
        p.build()
    }

    /// An ICMP error quoting the packet the node sent for the flow whose conntrack key (either
    /// direction) is `k`, i.e. `k` reversed, from the backend side (the backend or a router
    /// before it) or the client side (a router), of a random error type, the quote cut at a
    /// random length now and then.
    fn icmp_error(&mut self, k: &FlowKey, backend_side: bool) -> Vec<u8> {
        let r = &mut self.rng;
        let v6 = k.family == FAMILY_V6;
        let (sender, node) = (ip_of(&k.src, k.family), ip_of(&k.dst, k.family));
        let sender = if backend_side && r.chance(1, 2) {
            sender.to_string()
        } else if v6 {
            "fd50::fe".to_owned()
        } else {
            "10.50.0.254".to_owned()
        };
        let (sport, dport) = (u16::from_be(k.dport), u16::from_be(k.sport));
        let mut quoted = if k.proto == 17 {
            Packet::udp(
                &node.to_string(),
                sport,
                &ip_of(&k.src, k.family).to_string(),
                dport,
            )
        } else {
            Packet::tcp(
                &node.to_string(),
                sport,
                &ip_of(&k.src, k.family).to_string(),
                dport,
                r.pick(&TCP_FLAGS),
            )
        };
        quoted.ttl = 63;
        let n = r.pick(&[0usize, 8, 100]);
        quoted.payload = r.bytes(n);
        let mut quote = quoted.build_ip();
        if r.chance(1, 3) {
            let keep = 1 + r.below(quote.len());
            quote.truncate(keep);
        }
        let (kind, code) = if v6 {
            r.pick(&[(1u8, 4u8), (2, 0), (3, 0), (1, 0)])
        } else {
            r.pick(&[(3u8, 3u8), (3, 4), (11, 0), (3, 1)])
        };
        let mut e = IcmpError::new(&sender, &node.to_string(), kind, code, quote);
        e.rest = r.pick(&[0u32, 1400, 1280]);
        e.ttl = r.pick(&[64, 64, 64, 1, 2]);
        if backend_side {
            e.src_mac = BACKEND_MAC;
            e.dst_mac = OUT_MAC;
        } else {
            e.src_mac = CLIENT_MAC;
            e.dst_mac = IN_MAC;
        }
        e.build()
    }

    /// The first or a later fragment of a datagram to a service or not (one of a few
    /// identifications, so later fragments sometimes follow a first one).
    fn fragment(&mut self) -> Vec<u8> {
        let r = &mut self.rng;
        let v6 = r.chance(2, 5);
        let (client, node) = if v6 { (CLIENT6, NODE6) } else { (CLIENT, NODE) };
        let dport = r.pick(&[UDP_PORT, UDP_PORT, TCP_PORT, 5301]);
        let sport = 40_000 + u16::try_from(r.below(3)).expect("small");
        let mut p = if r.chance(3, 4) {
            Packet::udp(client, sport, node, dport)
        } else {
            Packet::tcp(client, sport, node, dport, SYN)
        };
        p.src_mac = CLIENT_MAC;
        p.dst_mac = IN_MAC;
        let n = 96 + r.below(200);
        p.payload = r.bytes(n);
        p.ttl = r.pick(&[64, 64, 64, 1]);
        let id = u32::try_from(1 + r.below(3)).expect("small");
        let first = 8 * (3 + r.below(8));
        let [a, b] = fragments(&p.build(), id, first);
        if r.chance(1, 2) { a } else { b }
    }

    /// A random frame: random bytes behind an IPv4, IPv6 or random EtherType.
    fn random(&mut self) -> Vec<u8> {
        let r = &mut self.rng;
        let len = 14 + r.below(120);
        let mut f = r.bytes(len);
        let et: u16 = match r.below(5) {
            0..=1 => 0x0800,
            2..=3 => 0x86dd,
            _ => r.u16(),
        };
        f[12..14].copy_from_slice(&et.to_be_bytes());
        if et == 0x0800 && len > 14 && r.chance(3, 4) {
            f[14] = 0x45 + r.pick(&[0u8, 0, 1, 5, 10]);
        }
        if et == 0x86dd && len > 14 && r.chance(3, 4) {
            f[14] = 0x60;
        }
        f
    }

    /// One random mutation, keeping at least the 14 bytes BPF_PROG_TEST_RUN requires.
    fn mutate(&mut self, f: &mut Vec<u8>) {
        let r = &mut self.rng;
        let len = f.len();
        let v6 = len > 14 && f[12..14] == [0x86, 0xdd];
        match r.below(9) {
            0 if len > 14 => f.truncate(14 + r.below(len - 14)),
            1 => {
                let i = r.below(len);
                f[i] ^= 1 << r.below(8);
            }
            2 => {
                // A random byte somewhere in the headers.
                let i = r.below(len.min(14 + 40 + 40 + 20));
                f[i] = r.byte();
            }
            3 if len >= 20 => {
                // A wrong IP length field (IPv4 total length / IPv6 payload length).
                let off = if v6 { 18 } else { 16 };
                let v = r.u16();
                f[off..off + 2].copy_from_slice(&v.to_be_bytes());
            }
            4 if len > 23 => {
                // IHL and version / next header.
                if v6 {
                    let any = r.byte();
                    f[20] = r.pick(&[0u8, 6, 17, 43, 44, 60, 59, any]);
                } else {
                    f[14] = r.byte();
                }
            }
            5 => {
                // TCP data offset or UDP length, where the L4 header would be.
                if let Class::L4 { key, .. } = classify(f) {
                    let l4 = l4_offset(f);
                    if key.proto == 6 {
                        f[l4 + 12] = r.byte();
                    } else {
                        f[l4 + 4] = r.byte();
                    }
                }
            }
            6 => {
                let n = r.below(64);
                f.extend(r.bytes(n));
            }
            7 if len > 22 => {
                let off = if v6 { 21 } else { 22 };
                f[off] = r.pick(&[0u8, 1, 2, 255]);
            }
            _ => {
                // Ports and flags of a known flow's neighbour tuple.
                if let Class::L4 { .. } = classify(f) {
                    let l4 = l4_offset(f);
                    let i = l4 + r.below(14);
                    if i < f.len() {
                        f[i] = r.byte();
                    }
                }
            }
        }
    }
}

/// The L4 offset of a frame [`classify`] found TCP/UDP in.
fn l4_offset(f: &[u8]) -> usize {
    if f[12..14] == [0x08, 0x00] {
        return 14 + usize::from(f[14] & 0x0f) * 4;
    }
    let mut next = f[20];
    let mut off = 54;
    for _ in 0..4 {
        match next {
            0 | 43 | 60 => {
                next = f[off];
                off += (usize::from(f[off + 1]) + 1) * 8;
            }
            44 => {
                next = f[off];
                off += 8;
            }
            _ => break,
        }
    }
    off
}

/// Counter deltas over one frame.
struct Delta([PacketCount; Counter::COUNT as usize]);

impl Delta {
    fn new(before: &[PacketCount], after: &[PacketCount]) -> Self {
        let mut d = [PacketCount::default(); Counter::COUNT as usize];
        for (i, cell) in d.iter_mut().enumerate() {
            cell.packets = after[i].packets - before[i].packets;
            cell.bytes = after[i].bytes - before[i].bytes;
        }
        Self(d)
    }

    fn n(&self, c: Counter) -> u64 {
        self.0[c as usize].packets
    }

    fn nonzero(&self) -> Vec<(&'static str, u64)> {
        Counter::ALL
            .iter()
            .filter(|c| self.n(**c) != 0)
            .map(|c| (c.name(), self.n(*c)))
            .collect()
    }
}

/// Running totals of what was sent.
#[derive(Default)]
struct Tally {
    frames: u64,
    xdp: u64,
    tc: u64,
    /// Frames the kernel refused to hand to the TC program, and the longest of them.
    tc_refused: u64,
    tc_refused_max_len: usize,
    passed_untouched: u64,
    new_flows: u64,
    ct_hits: u64,
    actions: std::collections::BTreeMap<(&'static str, u32), u64>,
}

struct Fuzzer<'a> {
    f: &'a mut Fixture,
    seed: u64,
    services: HashSet<ServiceKey>,
    /// Counters before the next frame.
    counters: [PacketCount; Counter::COUNT as usize],
    ct_fwd: usize,
    ct_rev: usize,
    rev_keys: Vec<FlowKey>,
    fwd_keys: Vec<FlowKey>,
    tally: Tally,
}

impl Fuzzer<'_> {
    /// Sends one frame and checks every property on it.
    fn send(&mut self, what: &str, entry: Entry, frame: &[u8], ifindex: u32) {
        let class = classify(frame);
        // Property 1 applies to frames the program has no business with: not TCP/UDP, or
        // TTL ≤ 1, or a tuple that is neither a service nor a tracked flow (either direction).
        let ours = match class {
            Class::L4 { key, ttl } if ttl > 1 => {
                let skey = ServiceKey {
                    addr: key.dst,
                    port: key.dport,
                    proto: key.proto,
                    family: key.family,
                };
                self.services.contains(&skey)
                    || self.f.ct(maps::CT_FWD, &key).is_some()
                    || self.f.ct(maps::CT_REV, &key).is_some()
            }
            Class::IcmpError {
                quoted: Some(key),
                ttl,
                ..
            } if ttl > 1 => {
                self.f.ct(maps::CT_FWD, &key).is_some() || self.f.ct(maps::CT_REV, &key).is_some()
            }
            Class::Fragment { key, ttl } if ttl > 1 => self.f.frag(&key).is_some(),
            _ => false,
        };
        let Some((action, out)) = self.f.run(entry, frame, ifindex) else {
            assert_eq!(
                self.f.totals(),
                self.counters,
                "seed {:#x}: the kernel refused a frame, yet counters moved: {}",
                self.seed,
                hex(frame)
            );
            self.tally.tc_refused += 1;
            self.tally.tc_refused_max_len = self.tally.tc_refused_max_len.max(frame.len());
            return;
        };
        let after = self.f.totals();
        let d = Delta::new(&self.counters, &after);
        self.counters = after;
        let fwd = self.f.ct_keys(maps::CT_FWD);
        let rev = self.f.ct_keys(maps::CT_REV);
        let (dfwd, drev) = (
            i64::try_from(fwd.len()).expect("len") - i64::try_from(self.ct_fwd).expect("len"),
            i64::try_from(rev.len()).expect("len") - i64::try_from(self.ct_rev).expect("len"),
        );
        let seed = self.seed;
        let frames = self.tally.frames;
        let ctx = || {
            format!(
                "\n  seed {seed:#x}, frame #{frames} ({what}), {entry:?} on ifindex {ifindex}\
                 \n  parsed as {class:?}\n  action {action}, counters {:?}, conntrack +{dfwd}/+{drev}\
                 \n  in  ({} bytes) {}\n  out ({} bytes) {}",
                d.nonzero(),
                frame.len(),
                hex(frame),
                out.len(),
                hex(&out),
            )
        };

        // Property 3a: a documented verdict.
        assert!(
            entry.actions().contains(&action),
            "undocumented verdict{}",
            ctx()
        );
        // Property 1.
        if !ours {
            assert!(
                action == pass(entry) && out == frame,
                "a frame not for a service did not leave untouched with PASS{}",
                ctx()
            );
            self.tally.passed_untouched += 1;
        }
        // Property 2: at most one pair, each counted as a new flow.
        let new_flow = d.n(Counter::NewFlow);
        assert!(
            new_flow <= 1 && dfwd == drev && dfwd == i64::try_from(new_flow).expect("small"),
            "conntrack changed by more than one counted pair{}",
            ctx()
        );
        // Property 3b: counters. One `seen` per frame with its bytes, one class.
        assert!(
            d.n(Counter::Seen) == 1 && d.0[Counter::Seen as usize].bytes == frame.len() as u64,
            "`seen` is not one frame of its length{}",
            ctx()
        );
        let family = class.family();
        let detail = match class {
            Class::NonIp => Counter::NonIp,
            Class::Malformed => Counter::Malformed,
            Class::Fragment { .. } => Counter::Fragment,
            Class::OtherL4(_) | Class::IcmpError { .. } => Counter::OtherL4,
            Class::L4 { key, .. } => {
                if key.proto == 6 {
                    Counter::Tcp
                } else {
                    Counter::Udp
                }
            }
        };
        for c in [
            Counter::NonIp,
            Counter::Malformed,
            Counter::Fragment,
            Counter::OtherL4,
            Counter::Tcp,
            Counter::Udp,
        ] {
            assert_eq!(
                d.n(c),
                u64::from(c == detail),
                "class counter `{}` disagrees with the frame's class{}",
                c.name(),
                ctx()
            );
        }
        assert!(
            d.n(Counter::Ipv4) == u64::from(family == Some(FAMILY_V4))
                && d.n(Counter::Ipv6) == u64::from(family == Some(FAMILY_V6)),
            "family counters disagree with the frame{}",
            ctx()
        );
        // The NAT counters are the ones from `NewFlow` on, in index order. ICMP errors and
        // non-first fragments move only their own and the sending ones.
        let nat = &Counter::ALL[Counter::NewFlow as usize..];
        let nat_sum: u64 = nat.iter().map(|c| d.n(*c)).sum();
        let icmp = d.n(Counter::IcmpTranslated) + d.n(Counter::IcmpUntranslated);
        let frag = d.n(Counter::FragmentTranslated) + d.n(Counter::FragmentUntracked);
        let sending = d.n(Counter::Redirected)
            + d.n(Counter::Transmitted)
            + d.n(Counter::DeferredToTc)
            + d.n(Counter::DropNoRoute);
        match class {
            Class::L4 { .. } => assert_eq!(icmp + frag, 0, "ICMP/fragment counters{}", ctx()),
            Class::IcmpError { ttl, .. } => {
                assert!(
                    nat_sum == icmp + sending
                        && icmp + d.n(Counter::DeferredToTc) + d.n(Counter::DropNoRoute)
                            == u64::from(ttl > 1),
                    "an ICMP error moved other NAT counters, or was not counted once{}",
                    ctx()
                );
                assert!(
                    ours || d.n(Counter::IcmpUntranslated) == u64::from(ttl > 1),
                    "an ICMP error quoting no flow not counted untranslated{}",
                    ctx()
                );
            }
            Class::Fragment { ttl, .. } => {
                assert!(
                    nat_sum == frag + sending && frag <= 1,
                    "a non-first fragment moved other NAT counters{}",
                    ctx()
                );
                assert!(
                    ours || ttl <= 1 || d.n(Counter::FragmentUntracked) == 1,
                    "an untracked non-first fragment not counted{}",
                    ctx()
                );
            }
            _ => assert_eq!(
                nat_sum,
                0,
                "NAT counters moved for a non-TCP/UDP frame{}",
                ctx()
            ),
        }
        let tracked = d.n(Counter::NewFlow)
            + d.n(Counter::CtForward)
            + d.n(Counter::CtReply)
            + d.n(Counter::IcmpTranslated)
            + d.n(Counter::FragmentTranslated);
        assert!(tracked <= 1, "more than one flow lookup result{}", ctx());
        let sent = d.n(Counter::Redirected) + d.n(Counter::Transmitted);
        let sent_expected = match entry {
            Entry::Xdp => {
                assert_eq!(
                    d.n(Counter::Transmitted),
                    u64::from(action == XDP_TX),
                    "XDP_TX and `transmitted` disagree{}",
                    ctx()
                );
                u64::from(action == XDP_TX || action == XDP_REDIRECT)
            }
            Entry::Tc => u64::from(action == TC_ACT_REDIRECT),
        };
        assert_eq!(
            sent,
            sent_expected,
            "sent frames and counters disagree{}",
            ctx()
        );
        if sent == 1 {
            assert_eq!(tracked, 1, "a frame sent on without a flow{}", ctx());
        }
        let drops = d.n(Counter::DropCtFull)
            + d.n(Counter::DropSnatExhausted)
            + d.n(Counter::DropNoRoute)
            + d.n(Counter::DropNotReady)
            + d.n(Counter::DropBadChecksum);
        assert!(
            drops <= 1 && (drops == 0 || action == drop_action(entry)),
            "drop counters without a drop{}",
            ctx()
        );
        if d.n(Counter::DeferredToTc) != 0 {
            assert!(
                entry == Entry::Xdp && action == XDP_PASS && out == frame,
                "a frame deferred to TC was not passed untouched by XDP{}",
                ctx()
            );
        }

        self.tally.frames += 1;
        match entry {
            Entry::Xdp => self.tally.xdp += 1,
            Entry::Tc => self.tally.tc += 1,
        }
        self.tally.new_flows += new_flow;
        self.tally.ct_hits += d.n(Counter::CtForward) + d.n(Counter::CtReply);
        let name = match entry {
            Entry::Xdp => "xdp",
            Entry::Tc => "tc",
        };
        *self.tally.actions.entry((name, action)).or_default() += 1;

        if fwd.len() > CT_FLUSH_AT {
            self.f.ct_flush();
            self.ct_fwd = 0;
            self.ct_rev = 0;
            self.rev_keys.clear();
            self.fwd_keys.clear();
        } else {
            self.ct_fwd = fwd.len();
            self.ct_rev = rev.len();
            self.rev_keys = rev;
            self.fwd_keys = fwd;
        }
    }

    /// Sends `frame` through both entry points, from the client side or the backend side.
    fn send_both(&mut self, what: &str, frame: &[u8], ifindex: u32) {
        self.send(what, Entry::Xdp, frame, ifindex);
        self.send(what, Entry::Tc, frame, ifindex);
    }
}

/// Frames of the kind the packet tables use, each truncated at every length from 14 bytes
/// (the least BPF_PROG_TEST_RUN takes) to its full size.
fn truncation_sources(frames_gen: &mut Gen) -> Vec<Vec<u8>> {
    let mut out = Vec::new();
    for (client, node) in [(CLIENT, NODE), (CLIENT6, NODE6)] {
        for l4 in [L4::Tcp(SYN), L4::Tcp(ACK), L4::Udp, L4::Other(1)] {
            let dport = if l4 == L4::Udp { UDP_PORT } else { TCP_PORT };
            let mut p = Packet::tcp(client, 40_100, node, dport, SYN);
            p.l4 = l4;
            p.src_mac = CLIENT_MAC;
            p.dst_mac = IN_MAC;
            out.push(p.build());
            if client == CLIENT {
                p.ip_options = vec![1, 1, 1, 0, 0x44, 8, 5, 0, 0, 0, 0, 0];
            } else {
                p.v6_dest_opts = true;
            }
            out.push(p.build());
        }
        // Not for a service: another port.
        let mut p = Packet::udp(client, 40_100, node, 5301);
        p.src_mac = CLIENT_MAC;
        p.dst_mac = IN_MAC;
        out.push(p.build());
    }
    let mut v6 = out[10].clone();
    insert_v6_ext(&mut frames_gen.rng, &mut v6, 4);
    out.push(v6);
    out
}

fn fuzz(seed: u64, rounds: u64) {
    with_fixture(move |f| {
        let started = Instant::now();
        let services: Vec<_> = f.services();
        assert!(!services.is_empty(), "services programmed");
        let ids: Vec<u32> = services.iter().map(|(_, v)| v.id).collect();
        let mut fz = Fuzzer {
            services: services.iter().map(|(k, _)| *k).collect(),
            counters: f.totals(),
            f,
            seed,
            ct_fwd: 0,
            ct_rev: 0,
            rev_keys: Vec::new(),
            fwd_keys: Vec::new(),
            tally: Tally::default(),
        };
        let baseline = fz.counters;
        let mut frames_gen = Gen {
            rng: Rng::new(seed),
        };
        let (in_if, out_if) = (fz.f.in_if, fz.f.out_if);

        for src in truncation_sources(&mut frames_gen) {
            for len in 14..=src.len() {
                fz.send_both("truncated table frame", &src[..len], in_if);
            }
        }
        let truncated = fz.tally.frames;

        for _ in 0..rounds {
            let (what, mut frame, ifindex) = match frames_gen.rng.below(10) {
                0 => ("random", frames_gen.random(), in_if),
                1..=2 if !fz.rev_keys.is_empty() => {
                    let k = fz.rev_keys[frames_gen.rng.below(fz.rev_keys.len())];
                    ("backend reply", frames_gen.reply(&k), out_if)
                }
                3 if !fz.rev_keys.is_empty() && frames_gen.rng.chance(1, 2) => {
                    let k = fz.rev_keys[frames_gen.rng.below(fz.rev_keys.len())];
                    (
                        "backend-side ICMP error",
                        frames_gen.icmp_error(&k, true),
                        out_if,
                    )
                }
                3 if !fz.fwd_keys.is_empty() => {
                    let k = fz.fwd_keys[frames_gen.rng.below(fz.fwd_keys.len())];
                    (
                        "client-side ICMP error",
                        frames_gen.icmp_error(&k, false),
                        in_if,
                    )
                }
                4 => ("fragment", frames_gen.fragment(), in_if),
                _ => ("table-like", frames_gen.valid(), in_if),
            };
            let mutations = frames_gen.rng.pick(&[0usize, 0, 1, 1, 2, 3]);
            for _ in 0..mutations {
                frames_gen.mutate(&mut frame);
            }
            let ifindex = if frames_gen.rng.chance(1, 10) {
                if ifindex == in_if { out_if } else { in_if }
            } else {
                ifindex
            };
            let what = if mutations == 0 {
                what.to_owned()
            } else {
                format!("{what}, {mutations} mutations")
            };
            fz.send_both(&what, &frame, ifindex);
        }

        // Whole-run counters: every frame seen once, new flows and tracked packets counted
        // against their services.
        let end = fz.f.totals();
        let total = Delta::new(&baseline, &end);
        assert_eq!(total.n(Counter::Seen), fz.tally.frames, "seed {seed:#x}");
        let mut svc = ServiceStats::default();
        for id in ids {
            let s = fz.f.service_stats(id);
            svc.packets += s.packets;
            svc.new_flows += s.new_flows;
        }
        assert_eq!(
            svc.new_flows,
            total.n(Counter::NewFlow),
            "seed {seed:#x}: per-service new flows add up to `new_flow`"
        );
        assert_eq!(
            svc.packets,
            total.n(Counter::NewFlow)
                + total.n(Counter::CtForward)
                + total.n(Counter::CtReply)
                + total.n(Counter::IcmpTranslated)
                + total.n(Counter::FragmentTranslated),
            "seed {seed:#x}: per-service packets add up to the tracked packets"
        );
        let t = &fz.tally;
        eprintln!(
            "nat_fuzz seed {seed:#x}: {} frames ({} truncations, xdp {}, tc {}; {} refused \
             by BPF_PROG_TEST_RUN for TC, up to {} bytes) in {:.1?}; \
             {} left untouched as not ours, {} new flows, {} conntrack hits; verdicts {:?}; \
             counters {:?}",
            t.frames,
            truncated,
            t.xdp,
            t.tc,
            t.tc_refused,
            t.tc_refused_max_len,
            started.elapsed(),
            t.passed_untouched,
            t.new_flows,
            t.ct_hits,
            t.actions,
            total.nonzero(),
        );
        assert!(
            t.frames >= 100_000 || rounds < DEFAULT_ROUNDS,
            "frames sent"
        );
    });
}

/// At least 100,000 frames through both entry points; see the module comment.
#[test]
fn fuzz_frames_through_both_entry_points() {
    let seed = seed();
    eprintln!("nat_fuzz: seed {seed:#x} (replay with NAT_FUZZ_SEED={seed:#x})");
    fuzz(seed, rounds());
}
