//! L4 NAT map layouts: services, backends, Maglev tables and conntrack.
//!
//! Addresses are 16 bytes for both families (IPv4 in the first four bytes, the rest zero), so
//! one key type serves v4 and v6. Addresses and ports are in network byte order, exactly as
//! they sit in the packet, so the kernel compares and copies without swapping.

/// `family` value for IPv4.
pub const FAMILY_V4: u8 = 4;
/// `family` value for IPv6.
pub const FAMILY_V6: u8 = 6;
/// IP protocol number of TCP.
pub const PROTO_TCP: u8 = 6;
/// IP protocol number of UDP.
pub const PROTO_UDP: u8 = 17;

/// Lookup key of an L4 service: the destination a client uses.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct ServiceKey {
    /// Destination address; all zero means "any local address".
    pub addr: [u8; 16],
    /// Destination port, network byte order.
    pub port: u16,
    /// `PROTO_TCP` or `PROTO_UDP`.
    pub proto: u8,
    /// `FAMILY_V4` or `FAMILY_V6`.
    pub family: u8,
}

/// Service flag: translate the destination only (keep the client address); the node must be
/// the backends' gateway for replies to come back.
pub const SVC_F_DNAT_ONLY: u32 = 1;

/// What the kernel needs to know about a service.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct ServiceValue {
    /// Index of the service's Maglev table and stats slot.
    pub id: u32,
    /// `SVC_F_*` flags.
    pub flags: u32,
    /// Number of endpoints; 0 means reject (the packet goes to the stack, which answers a
    /// TCP RST or an ICMP port unreachable because nothing listens there).
    pub endpoints: u32,
    /// Explicit padding.
    pub _pad: u32,
}

/// An endpoint address, referenced from Maglev tables by index.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub struct Backend {
    /// Endpoint address.
    pub addr: [u8; 16],
    /// Endpoint port, network byte order.
    pub port: u16,
    /// `FAMILY_V4` or `FAMILY_V6`; 0 marks an unused slot.
    pub family: u8,
    /// Explicit padding.
    pub _pad: u8,
}

/// A directional 5-tuple (plus family), the conntrack key.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub struct FlowKey {
    /// Source address.
    pub src: [u8; 16],
    /// Destination address.
    pub dst: [u8; 16],
    /// Source port, network byte order.
    pub sport: u16,
    /// Destination port, network byte order.
    pub dport: u16,
    /// IP protocol.
    pub proto: u8,
    /// Address family.
    pub family: u8,
    /// Explicit padding.
    pub _pad: [u8; 2],
}

/// Conntrack state bits.
///
/// A TCP flow is *embryonic* from its first packet until the handshake is complete: the
/// backend answered with a SYN-ACK (the reply entry records its sequence number) and the
/// client then acknowledged exactly that SYN-ACK. Only then is it established. Entries written
/// before these bits existed carry neither and count as established, so adding bits never
/// needs a new map layout.
pub mod ct {
    /// A FIN was seen from the client side.
    pub const FIN_FWD: u8 = 1;
    /// A FIN was seen from the backend side.
    pub const FIN_REV: u8 = 2;
    /// A RST was seen.
    pub const RST: u8 = 4;
    /// This entry is the reply direction (backend → node).
    pub const REPLY: u8 = 8;
    /// TCP handshake not complete yet (set on both entries of a new TCP flow).
    pub const EMBRYONIC: u8 = 16;
    /// Reply entry of an embryonic flow: the backend's SYN-ACK was seen, and
    /// [`super::CtEntry::ack`] holds the acknowledgment number that completes the
    /// handshake.
    pub const SYNACK_SEEN: u8 = 32;
    /// An established flow saw a RST whose sequence number was not within [`RST_WINDOW`] of
    /// what the other side last acknowledged: possibly blind (spoofed). Set on both entries.
    /// The flow is kept as closing (`--tcp-close-timeout`), so a blind RST cannot release a
    /// live flow's state and SNAT port; any later packet other than a RST clears it.
    pub const RST_UNVERIFIED: u8 = 64;

    /// How far past the last acknowledgment number seen from the other side a RST's sequence
    /// number may be and still be believed. The endpoint itself accepts only an exact match
    /// (RFC 5961 §3.2); a genuine RST sent with unacknowledged data in flight is a little
    /// ahead. A blind attacker who knows the 4-tuple hits this window once in 65,536 tries.
    pub const RST_WINDOW: u32 = 1 << 16;

    /// Whether a RST with sequence number `seq` is believable, given the last acknowledgment
    /// number `last_ack` seen in the other direction (0: none recorded, e.g. an entry from
    /// before acknowledgments were recorded: believed, as before).
    #[inline(always)]
    pub const fn rst_in_window(seq: u32, last_ack: u32) -> bool {
        last_ack == 0 || seq.wrapping_sub(last_ack) < RST_WINDOW
    }

    /// Whether a flow with these merged (forward | reply) bits is closed or closing: a RST
    /// (believed or not), or a FIN from both sides.
    #[inline(always)]
    pub const fn closed(state: u8) -> bool {
        state & (RST | RST_UNVERIFIED) != 0 || state & (FIN_FWD | FIN_REV) == FIN_FWD | FIN_REV
    }
}

/// SNAT port choice. The kernel draws a fresh random number per probe
/// (`bpf_get_prandom_u32`), so the probes of one attempt are independent and a retransmitted
/// SYN tries other ports than the attempt before it.
pub mod snat {
    /// Probes per new flow. With independent uniform probes, a new flow is dropped only if all
    /// of them hit used ports: at occupancy `p` that happens with probability `p^PROBES`,
    /// 2e-12 at 90%, 2e-6 at 95%, 6e-3 at 98%. A full range costs this many failed lookups
    /// per new flow, which bounds the work a flood can cause.
    pub const PROBES: u32 = 256;

    /// Maps a 32-bit random number onto `lo..=hi` (host byte order), by multiply-shift
    /// (Lemire): uniform up to `range / 2^32`, and no division in the kernel.
    #[inline(always)]
    pub const fn port(lo: u16, hi: u16, random: u32) -> u16 {
        if hi <= lo {
            return lo;
        }
        let range = (hi - lo) as u64 + 1;
        lo + ((random as u64 * range) >> 32) as u16
    }
}

/// A conntrack entry: how to rewrite packets matching the key.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct CtEntry {
    /// Last packet, `bpf_ktime_get_ns` (CLOCK_MONOTONIC).
    pub last_seen_ns: u64,
    /// Service id, for stats.
    pub service_id: u32,
    /// `ct::*` bits.
    pub state: u8,
    /// Explicit padding.
    pub _pad: [u8; 3],
    /// New source address.
    pub src: [u8; 16],
    /// New destination address.
    pub dst: [u8; 16],
    /// New source port (network byte order).
    pub sport: u16,
    /// New destination port (network byte order).
    pub dport: u16,
    /// Key of the other direction's entry (to expire both together).
    pub peer: FlowKey,
    /// TCP acknowledgment bookkeeping, host byte order; zero when none is recorded. (This
    /// was tail padding: entries written before it existed hold zero.)
    /// - Reply entry of an embryonic flow: the backend's SYN-ACK sequence number plus one,
    ///   i.e. what the client's handshake ACK must acknowledge.
    /// - Entries of an established flow: the last acknowledgment number sent in this
    ///   entry's direction, against which a RST from the other side is judged
    ///   ([`ct::rst_in_window`]).
    pub ack: u32,
}

/// Key of a fragmented datagram as it arrives (before NAT): what its non-first fragments
/// share with the first (RFC 791 / RFC 8200 reassembly key).
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub struct FragKey {
    /// Source address.
    pub src: [u8; 16],
    /// Destination address.
    pub dst: [u8; 16],
    /// IPv4 identification (network byte order, in the low 16 bits as read) or IPv6
    /// fragment identification (network byte order).
    pub id: u32,
    /// IPv4 protocol, or the IPv6 fragment header's next header.
    pub proto: u8,
    /// `FAMILY_V4` or `FAMILY_V6`.
    pub family: u8,
    /// Explicit padding.
    pub _pad: [u8; 2],
}

/// What the non-first fragments of a NATed datagram need: its new addresses (ports and the
/// L4 checksum live in the first fragment only).
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct FragEntry {
    /// New source address.
    pub src: [u8; 16],
    /// New destination address.
    pub dst: [u8; 16],
    /// Service id, for stats.
    pub service_id: u32,
    /// Explicit padding.
    pub _pad: u32,
}

/// Node-wide NAT settings, written by userspace into a one-entry array.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct NatConfig {
    /// SNAT source for IPv4; all zero means "the address the client connected to".
    pub snat_v4: [u8; 4],
    /// SNAT source for IPv6; all zero means "the address the client connected to".
    pub snat_v6: [u8; 16],
    /// First SNAT port (host byte order).
    pub snat_port_lo: u16,
    /// Last SNAT port (host byte order, inclusive).
    pub snat_port_hi: u16,
    /// Maglev table size (prime), i.e. the stride between services' tables.
    pub maglev_size: u32,
    /// Non-zero once userspace has written the configuration.
    pub ready: u32,
}

/// Per-service per-CPU counters (map `XI_SVC_STATS_V2`; V1 lacked the drop counters).
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct ServiceStats {
    /// Packets in both directions.
    pub packets: u64,
    /// Bytes in both directions.
    pub bytes: u64,
    /// New flows.
    pub new_flows: u64,
    /// New flows dropped because no free SNAT port was found (`drop_snat_exhausted`).
    pub drop_snat_exhausted: u64,
    /// New flows dropped because the conntrack table is full (`drop_ct_full`).
    pub drop_ct_full: u64,
}

/// Key of the socket-level reverse translation (map `XI_SOCK_REV_V1`): a UDP socket on the
/// node (by socket cookie) that the cgroup connect/sendmsg hooks pointed at an endpoint.
/// Its replies come from the endpoint, and the recvmsg/getpeername hooks report them as
/// coming from the service address instead.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub struct SockRevKey {
    /// `bpf_get_socket_cookie` of the socket.
    pub cookie: u64,
    /// Endpoint address (IPv4 in the first four bytes).
    pub addr: [u8; 16],
    /// Endpoint port, network byte order.
    pub port: u16,
    /// `FAMILY_V4` or `FAMILY_V6` (of the endpoint address, also for IPv4-mapped sockets).
    pub family: u8,
    /// Explicit padding.
    pub _pad: [u8; 5],
}

/// The service address a [`SockRevKey`] stands for.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct SockRevValue {
    /// Service (node) address.
    pub addr: [u8; 16],
    /// Service port, network byte order.
    pub port: u16,
    /// `FAMILY_V4` or `FAMILY_V6`.
    pub family: u8,
    /// Explicit padding.
    pub _pad: u8,
}

/// Hash of a socket for Maglev selection by the cgroup hooks: the socket cookie (unique per
/// socket on the node) and the service port, mixed like [`flow_hash`]. A socket keeps its
/// endpoint for every connect/sendmsg to the same service.
#[inline(always)]
pub fn sock_hash(cookie: u64, port: u16, proto: u8) -> u32 {
    let mut h: u32 = 0x9e37_79b9;
    h = mix(h, cookie as u32);
    h = mix(h, (cookie >> 32) as u32);
    h = mix(h, (u32::from(port) << 8) | u32::from(proto));
    h ^= h >> 16;
    h = h.wrapping_mul(0x85eb_ca6b);
    h ^= h >> 13;
    h = h.wrapping_mul(0xc2b2_ae35);
    h ^ (h >> 16)
}

/// Hash of a flow for Maglev selection: a murmur3-style mix of the client address, both ports
/// and the protocol (the destination is fixed by the service). Pure, so host
/// tests and userspace can predict the kernel's choice.
#[inline(always)]
pub fn flow_hash(k: &FlowKey) -> u32 {
    let mut h: u32 = 0x9e37_79b9;
    let mut i = 0;
    while i < 16 {
        h = mix(
            h,
            u32::from_ne_bytes([k.src[i], k.src[i + 1], k.src[i + 2], k.src[i + 3]]),
        );
        i += 4;
    }
    h = mix(h, (u32::from(k.sport) << 16) | u32::from(k.dport));
    h = mix(h, u32::from(k.proto));
    // fmix32 finalizer.
    h ^= h >> 16;
    h = h.wrapping_mul(0x85eb_ca6b);
    h ^= h >> 13;
    h = h.wrapping_mul(0xc2b2_ae35);
    h ^ (h >> 16)
}

#[inline(always)]
fn mix(h: u32, v: u32) -> u32 {
    let k = v
        .wrapping_mul(0xcc9e_2d51)
        .rotate_left(15)
        .wrapping_mul(0x1b87_3593);
    (h ^ k)
        .rotate_left(13)
        .wrapping_mul(5)
        .wrapping_add(0xe654_6b64)
}

#[cfg(feature = "user")]
mod pod {
    // SAFETY (all): repr(C), only integer/array fields, explicit padding, no implicit holes
    // (checked by the size assertions in the tests below).
    unsafe impl aya::Pod for super::ServiceKey {}
    unsafe impl aya::Pod for super::ServiceValue {}
    unsafe impl aya::Pod for super::Backend {}
    unsafe impl aya::Pod for super::FlowKey {}
    unsafe impl aya::Pod for super::CtEntry {}
    unsafe impl aya::Pod for super::NatConfig {}
    unsafe impl aya::Pod for super::ServiceStats {}
    unsafe impl aya::Pod for super::FragKey {}
    unsafe impl aya::Pod for super::FragEntry {}
    unsafe impl aya::Pod for super::SockRevKey {}
    unsafe impl aya::Pod for super::SockRevValue {}
}

#[cfg(test)]
mod tests {
    use core::mem::size_of;

    use super::*;

    #[test]
    fn layouts_have_no_implicit_padding() {
        // Sums of the field sizes; a mismatch means the compiler inserted a hole that the
        // kernel would hash or compare as garbage.
        assert_eq!(size_of::<ServiceKey>(), 16 + 2 + 1 + 1);
        assert_eq!(size_of::<ServiceValue>(), 16);
        assert_eq!(size_of::<Backend>(), 16 + 2 + 1 + 1);
        assert_eq!(size_of::<FlowKey>(), 16 + 16 + 2 + 2 + 1 + 1 + 2);
        assert_eq!(
            size_of::<CtEntry>(),
            8 + 4 + 1 + 3 + 16 + 16 + 2 + 2 + 40 + 4
        );
        assert_eq!(size_of::<NatConfig>(), 4 + 16 + 2 + 2 + 4 + 4);
        assert_eq!(size_of::<ServiceStats>(), 5 * 8);
        assert_eq!(size_of::<FragKey>(), 16 + 16 + 4 + 1 + 1 + 2);
        assert_eq!(size_of::<FragEntry>(), 16 + 16 + 4 + 4);
        assert_eq!(size_of::<SockRevKey>(), 8 + 16 + 2 + 1 + 5);
        assert_eq!(size_of::<SockRevValue>(), 16 + 2 + 1 + 1);
    }

    #[test]
    fn conntrack_entry_layout_is_unchanged_by_the_handshake_field() {
        // `ack` (first `handshake_ack`) took the place of 4 bytes of tail padding: same size
        // and offsets, so the pinned XI_CT_*_V1 maps stay valid across the upgrade.
        assert_eq!(size_of::<CtEntry>(), 96);
        assert_eq!(core::mem::offset_of!(CtEntry, peer), 52);
        assert_eq!(core::mem::offset_of!(CtEntry, ack), 92);
    }

    #[test]
    fn closed_states() {
        let cases = [
            ("fresh", 0, false),
            ("embryonic", ct::EMBRYONIC, false),
            ("client FIN only", ct::FIN_FWD, false),
            ("backend FIN only", ct::FIN_REV, false),
            ("FIN both ways", ct::FIN_FWD | ct::FIN_REV, true),
            ("RST", ct::RST, true),
            ("RST while embryonic", ct::RST | ct::EMBRYONIC, true),
            ("unverified RST (closing)", ct::RST_UNVERIFIED, true),
        ];
        for (name, state, want) in cases {
            assert_eq!(ct::closed(state), want, "{name}");
        }
    }

    #[test]
    fn rst_window() {
        let w = ct::RST_WINDOW;
        let cases: [(&str, u32, u32, bool); 8] = [
            ("exact match (RFC 5961)", 5000, 5000, true),
            ("a little ahead: data in flight", 5000 + 1460, 5000, true),
            ("last byte of the window", 5000 + w - 1, 5000, true),
            ("just past the window", 5000 + w, 5000, false),
            ("behind the acknowledgment", 4999, 5000, false),
            ("far away: blind", 0x8000_0000, 5000, false),
            ("window across the wrap", 3, u32::MAX - 10, true),
            ("nothing recorded: believed", 0xdead_beef, 0, true),
        ];
        for (name, seq, last_ack, want) in cases {
            assert_eq!(ct::rst_in_window(seq, last_ack), want, "{name}");
        }
    }

    #[test]
    fn snat_port_from_random() {
        let cases: [(&str, u16, u16, u32, u16); 9] = [
            ("zero maps to the low end", 20_000, 32_767, 0, 20_000),
            ("max maps to the high end", 20_000, 32_767, u32::MAX, 32_767),
            ("middle", 20_000, 32_767, 1 << 31, 20_000 + 12_768 / 2),
            ("one-port range", 30_000, 30_000, 0xdead_beef, 30_000),
            ("inverted range stays at low", 30_000, 29_000, 7, 30_000),
            ("two ports, low half", 100, 101, (1 << 31) - 1, 100),
            ("two ports, high half", 100, 101, 1 << 31, 101),
            ("the whole port space, top", 1, 65_535, u32::MAX, 65_535),
            ("the whole port space, bottom", 1, 65_535, 0, 1),
        ];
        for (name, lo, hi, random, want) in cases {
            assert_eq!(snat::port(lo, hi, random), want, "{name}");
        }
    }

    #[test]
    fn snat_ports_cover_the_range_evenly() {
        // 100 ports; 100 000 evenly spread 32-bit inputs: every port gets 1000 ± 1.
        let (lo, hi) = (30_000u16, 30_099u16);
        let mut hits = [0u32; 100];
        let n = 100_000u64;
        for i in 0..n {
            let random = u32::try_from(i * (u64::from(u32::MAX) + 1) / n).expect("fits");
            let p = snat::port(lo, hi, random);
            assert!((lo..=hi).contains(&p), "{p} outside {lo}-{hi}");
            hits[usize::from(p - lo)] += 1;
        }
        for (i, h) in hits.iter().enumerate() {
            assert!(
                (999..=1001).contains(h),
                "port {} drawn {h} times",
                lo + i as u16
            );
        }
    }

    #[test]
    fn flow_hash_depends_on_every_tuple_field() {
        let base = FlowKey {
            src: [10, 0, 0, 1, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0],
            dst: [10, 0, 0, 2, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0],
            sport: 1234,
            dport: 9000,
            proto: PROTO_TCP,
            family: FAMILY_V4,
            _pad: [0; 2],
        };
        let h = flow_hash(&base);
        let variants = [
            (
                "src",
                FlowKey {
                    src: [10, 0, 0, 3, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0],
                    ..base
                },
            ),
            (
                "sport",
                FlowKey {
                    sport: 1235,
                    ..base
                },
            ),
            (
                "dport",
                FlowKey {
                    dport: 9001,
                    ..base
                },
            ),
            (
                "proto",
                FlowKey {
                    proto: PROTO_UDP,
                    ..base
                },
            ),
        ];
        for (field, k) in variants {
            assert_ne!(flow_hash(&k), h, "changing {field} must change the hash");
        }
        assert_eq!(flow_hash(&base), h, "deterministic");
    }
}
