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
pub mod ct {
    /// A FIN was seen from the client side.
    pub const FIN_FWD: u8 = 1;
    /// A FIN was seen from the backend side.
    pub const FIN_REV: u8 = 2;
    /// A RST was seen.
    pub const RST: u8 = 4;
    /// This entry is the reply direction (backend → node).
    pub const REPLY: u8 = 8;
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
    /// Explicit tail padding (the struct is 8-byte aligned).
    pub _pad_tail: [u8; 4],
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

/// Per-service per-CPU counters.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct ServiceStats {
    /// Packets in both directions.
    pub packets: u64,
    /// Bytes in both directions.
    pub bytes: u64,
    /// New flows.
    pub new_flows: u64,
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
