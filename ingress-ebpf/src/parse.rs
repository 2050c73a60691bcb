//! Header parsing: Ethernet → IPv4/IPv6 (with extension headers) → TCP/UDP, fragments, and
//! the ICMP/ICMPv6 errors the NAT translates.
//!
//! The IP length (IPv4 total length, IPv6 payload length) must cover the headers parsed and
//! fit in the frame: a truncated packet is malformed, never NATed. (Bytes after the IP
//! length, Ethernet padding, are allowed.)

use network_types::{
    eth::{EthHdr, EtherType},
    ip::{IpProto, Ipv4Hdr, Ipv6Hdr},
    tcp::TcpHdr,
    udp::UdpHdr,
};

use crate::ctx::PacketCtx;

/// IP version of a parsed packet.
#[derive(Clone, Copy, PartialEq, Eq)]
pub enum Family {
    /// IPv4.
    V4,
    /// IPv6.
    V6,
}

/// What kind of packet the parser found.
#[derive(Clone, Copy, PartialEq, Eq)]
#[repr(u8)]
pub enum Kind {
    /// Not IP (ARP, LLDP, ...): never ours.
    NonIp,
    /// Truncated or inconsistent headers.
    Malformed,
    /// A non-first fragment: there is no L4 header to look at.
    Fragment,
    /// IP with a protocol we do not translate (ICMP other than the errors below, SCTP, ...).
    OtherL4,
    /// An ICMP destination unreachable / time exceeded, or an ICMPv6 destination
    /// unreachable / packet too big / time exceeded: it may quote a NATed flow.
    IcmpError,
    /// A TCP or UDP packet whose headers are all inside the linear data.
    L4,
}

/// What the parser found, enough for the caller to decide and to count.
///
/// A struct whose fields are always all written, not an enum with payloads: LLVM may carry
/// an enum's payload in registers and read the (undefined) payload of a variant that has
/// none after a helper call, which the verifier refuses (`R8 !read_ok`).
#[derive(Clone, Copy)]
pub struct Class {
    /// The kind of packet.
    pub kind: Kind,
    /// Its headers (`family` is meaningful from [`Kind::Fragment`] on; the rest as each
    /// field says).
    pub h: Headers,
}

impl Class {
    #[inline(always)]
    const fn only(kind: Kind, family: Family) -> Self {
        Self {
            kind,
            h: Headers {
                family,
                proto: IpProto::Reserved,
                l3_off: 0,
                l4_off: 0,
                end: 0,
                first_frag: 0,
                frag_proto: 0,
                frag_id: 0,
            },
        }
    }

    const NON_IP: Self = Self::only(Kind::NonIp, Family::V4);
    const MALFORMED: Self = Self::only(Kind::Malformed, Family::V4);
}

/// A non-first fragment's headers: `l3_off`, `end`, `frag_id`, `frag_proto`.
pub type Fragment = Headers;

/// An ICMP error's headers: `l3_off`, `l4_off` (the ICMP header; the quoted packet starts 8
/// bytes later), `end`.
pub type Icmp = Headers;

/// Offsets of the parsed headers in the frame.
#[derive(Clone, Copy)]
pub struct Headers {
    /// IP version.
    pub family: Family,
    /// `IpProto::Tcp` or `IpProto::Udp` ([`Kind::L4`]).
    pub proto: IpProto,
    /// Offset of the IP header.
    pub l3_off: usize,
    /// Offset of the TCP/UDP header ([`Kind::L4`]) or the ICMP header ([`Kind::IcmpError`]).
    pub l4_off: usize,
    /// Offset of the end of the IP packet (from its length field).
    pub end: usize,
    /// Non-zero when this is the first fragment of a fragmented datagram: its later
    /// fragments follow the translation recorded for it.
    pub first_frag: u8,
    /// IPv4 protocol, or the IPv6 fragment header's next header (first and non-first
    /// fragments).
    pub frag_proto: u8,
    /// What the datagram's fragments share ([`ingress_common::l4::FragKey::id`]).
    pub frag_id: u32,
}

/// What a parsed IP header says about fragmentation.
#[derive(Clone, Copy)]
struct Frag {
    first: u8,
    proto: u8,
    id: u32,
}

const NO_FRAG: Frag = Frag {
    first: 0,
    proto: 0,
    id: 0,
};

/// ICMP types that quote a packet and that the NAT translates.
const ICMP_DEST_UNREACH: u8 = 3;
const ICMP_TIME_EXCEEDED: u8 = 11;
const ICMP6_DEST_UNREACH: u8 = 1;
const ICMP6_PACKET_TOO_BIG: u8 = 2;
const ICMP6_TIME_EXCEEDED: u8 = 3;

const IPV6_EXT_MAX: usize = 4;

/// Classifies the frame. Pure over the context: no maps, no side effects.
#[inline(always)]
pub fn classify<C: PacketCtx>(ctx: &C) -> Class {
    let Some(eth) = ctx.ptr_at::<EthHdr>(0) else {
        return Class::MALFORMED;
    };
    // SAFETY: `ptr_at` checked that the whole header lies inside the frame.
    let ether_type = unsafe { (*eth).ether_type };
    // The field holds the wire bytes; the enum's discriminants are in the same byte order.
    if ether_type == EtherType::Ipv4 as u16 {
        classify_v4(ctx, EthHdr::LEN)
    } else if ether_type == EtherType::Ipv6 as u16 {
        classify_v6(ctx, EthHdr::LEN)
    } else {
        Class::NON_IP
    }
}

#[inline(always)]
fn classify_v4<C: PacketCtx>(ctx: &C, l3_off: usize) -> Class {
    let Some(ip) = ctx.ptr_at::<Ipv4Hdr>(l3_off) else {
        return Class::MALFORMED;
    };
    // SAFETY: bounds checked by `ptr_at`.
    let (vihl, tot_len, id, frags, proto) = unsafe {
        (
            (*ip).vihl,
            (*ip).tot_len,
            (*ip).id,
            (*ip).frags,
            (*ip).proto,
        )
    };
    let ihl = usize::from(vihl & 0x0f) * 4;
    if vihl >> 4 != 4 || ihl < Ipv4Hdr::LEN {
        return Class::MALFORMED;
    }
    let tot_len = usize::from(u16::from_be_bytes(tot_len));
    let end = l3_off + tot_len;
    if tot_len < ihl || end as u64 > ctx.frame_len() {
        return Class::MALFORMED;
    }
    let frags = u16::from_be_bytes(frags);
    let id = u32::from(u16::from_ne_bytes(id));
    // Fragment offset (low 13 bits) non-zero: no L4 header here.
    if frags & 0x1fff != 0 {
        return fragment(Family::V4, l3_off, end, proto, id);
    }
    // More fragments (MF) with offset 0: the first fragment.
    let frag = if frags & 0x2000 != 0 {
        Frag {
            first: 1,
            proto,
            id,
        }
    } else {
        NO_FRAG
    };
    if proto == IpProto::Icmp as u8 {
        if frag.first != 0 {
            return Class::only(Kind::OtherL4, Family::V4);
        }
        return classify_icmp(ctx, Family::V4, l3_off, l3_off + ihl, end);
    }
    classify_l4(
        ctx,
        Family::V4,
        ipproto(proto),
        l3_off,
        l3_off + ihl,
        end,
        frag,
    )
}

#[inline(always)]
fn classify_v6<C: PacketCtx>(ctx: &C, l3_off: usize) -> Class {
    let Some(ip) = ctx.ptr_at::<Ipv6Hdr>(l3_off) else {
        return Class::MALFORMED;
    };
    // SAFETY: bounds checked by `ptr_at`.
    let (mut next, payload_len) = unsafe { (ipproto((*ip).next_hdr), (*ip).payload_len) };
    let end = l3_off + Ipv6Hdr::LEN + usize::from(u16::from_be_bytes(payload_len));
    if end as u64 > ctx.frame_len() {
        return Class::MALFORMED;
    }
    let mut frag = NO_FRAG;
    let mut off = l3_off + Ipv6Hdr::LEN;
    // Walk a bounded number of extension headers (hop-by-hop, routing, destination options,
    // fragment); each starts with {next header, length}.
    for _ in 0..IPV6_EXT_MAX {
        match next {
            IpProto::HopOpt | IpProto::Ipv6Route | IpProto::Ipv6Opts => {
                let Some(ext) = ctx.ptr_at::<[u8; 2]>(off) else {
                    return Class::MALFORMED;
                };
                // SAFETY: bounds checked by `ptr_at`.
                let [nh, len] = unsafe { *ext };
                next = ipproto(nh);
                off += (usize::from(len) + 1) * 8;
            }
            IpProto::Ipv6Frag => {
                let Some(hdr) = ctx.ptr_at::<[u8; 8]>(off) else {
                    return Class::MALFORMED;
                };
                // SAFETY: bounds checked by `ptr_at`.
                let f = unsafe { *hdr };
                let id = u32::from_ne_bytes([f[4], f[5], f[6], f[7]]);
                let offset_flags = u16::from_be_bytes([f[2], f[3]]);
                if offset_flags & 0xfff8 != 0 {
                    if off + 8 > end {
                        return Class::MALFORMED;
                    }
                    return fragment(Family::V6, l3_off, end, f[0], id);
                }
                // M flag with offset 0: the first fragment (without it, an atomic one).
                if offset_flags & 1 != 0 {
                    frag = Frag {
                        first: 1,
                        proto: f[0],
                        id,
                    };
                }
                next = ipproto(f[0]);
                off += 8;
            }
            _ => break,
        }
    }
    if off > end {
        return Class::MALFORMED;
    }
    if next == IpProto::Ipv6Icmp {
        if frag.first != 0 {
            return Class::only(Kind::OtherL4, Family::V6);
        }
        return classify_icmp(ctx, Family::V6, l3_off, off, end);
    }
    classify_l4(ctx, Family::V6, next, l3_off, off, end, frag)
}

/// An ICMP(v6) message at `icmp_off`: an error we translate, or another protocol to us.
#[inline(always)]
fn classify_icmp<C: PacketCtx>(
    ctx: &C,
    family: Family,
    l3_off: usize,
    icmp_off: usize,
    end: usize,
) -> Class {
    // Type, code, checksum and 4 more bytes; the quoted packet follows.
    let Some(hdr) = ctx.ptr_at::<[u8; 8]>(icmp_off) else {
        return Class::MALFORMED;
    };
    if icmp_off + 8 > end {
        return Class::MALFORMED;
    }
    // SAFETY: bounds checked by `ptr_at`.
    let kind = unsafe { (*hdr)[0] };
    let error = match family {
        Family::V4 => kind == ICMP_DEST_UNREACH || kind == ICMP_TIME_EXCEEDED,
        Family::V6 => {
            kind == ICMP6_DEST_UNREACH
                || kind == ICMP6_PACKET_TOO_BIG
                || kind == ICMP6_TIME_EXCEEDED
        }
    };
    if !error {
        return Class::only(Kind::OtherL4, family);
    }
    Class {
        kind: Kind::IcmpError,
        h: Headers {
            family,
            proto: IpProto::Reserved,
            l3_off,
            l4_off: icmp_off,
            end,
            first_frag: 0,
            frag_proto: 0,
            frag_id: 0,
        },
    }
}

#[inline(always)]
fn fragment(family: Family, l3_off: usize, end: usize, proto: u8, id: u32) -> Class {
    Class {
        kind: Kind::Fragment,
        h: Headers {
            family,
            proto: IpProto::Reserved,
            l3_off,
            l4_off: 0,
            end,
            first_frag: 0,
            frag_proto: proto,
            frag_id: id,
        },
    }
}

#[inline(always)]
fn classify_l4<C: PacketCtx>(
    ctx: &C,
    family: Family,
    proto: IpProto,
    l3_off: usize,
    l4_off: usize,
    end: usize,
    frag: Frag,
) -> Class {
    let complete = match proto {
        IpProto::Tcp => match ctx.ptr_at::<TcpHdr>(l4_off) {
            // SAFETY: bounds checked by `ptr_at`.
            Some(tcp) => {
                usize::from(unsafe { (*tcp).doff() }) * 4 >= TcpHdr::LEN
                    && l4_off + TcpHdr::LEN <= end
            }
            None => false,
        },
        IpProto::Udp => ctx.ptr_at::<UdpHdr>(l4_off).is_some() && l4_off + UdpHdr::LEN <= end,
        _ => return Class::only(Kind::OtherL4, family),
    };
    if !complete {
        return Class::MALFORMED;
    }
    Class {
        kind: Kind::L4,
        h: Headers {
            family,
            proto,
            l3_off,
            l4_off,
            end,
            first_frag: frag.first,
            frag_proto: frag.proto,
            frag_id: frag.id,
        },
    }
}

/// Maps a raw protocol number onto the enum without transmuting unknown values.
#[inline(always)]
fn ipproto(n: u8) -> IpProto {
    match n {
        0 => IpProto::HopOpt,
        1 => IpProto::Icmp,
        6 => IpProto::Tcp,
        17 => IpProto::Udp,
        43 => IpProto::Ipv6Route,
        44 => IpProto::Ipv6Frag,
        58 => IpProto::Ipv6Icmp,
        60 => IpProto::Ipv6Opts,
        _ => IpProto::Reserved,
    }
}
