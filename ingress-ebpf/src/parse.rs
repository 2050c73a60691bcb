//! Header parsing: Ethernet → IPv4/IPv6 (with extension headers) → TCP/UDP.

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

/// What the parser found, enough for the caller to decide and to count.
#[derive(Clone, Copy)]
pub enum Class {
    /// Not IP (ARP, LLDP, ...): never ours.
    NonIp,
    /// Truncated or inconsistent headers.
    Malformed,
    /// A non-first fragment: there is no L4 header to look at.
    Fragment(Family),
    /// IP with a protocol we do not translate (ICMP, SCTP, ...).
    OtherL4(Family),
    /// A TCP or UDP packet whose headers are all inside the linear data.
    L4(Headers),
}

/// Offsets of the parsed headers in the frame.
#[derive(Clone, Copy)]
pub struct Headers {
    /// IP version.
    pub family: Family,
    /// `IpProto::Tcp` or `IpProto::Udp`.
    pub proto: IpProto,
    /// Offset of the IP header.
    pub l3_off: usize,
    /// Offset of the TCP/UDP header.
    pub l4_off: usize,
}

const IPV6_EXT_MAX: usize = 4;

/// Classifies the frame. Pure over the context: no maps, no side effects.
#[inline(always)]
pub fn classify<C: PacketCtx>(ctx: &C) -> Class {
    let Some(eth) = ctx.ptr_at::<EthHdr>(0) else {
        return Class::Malformed;
    };
    // SAFETY: `ptr_at` checked that the whole header lies inside the frame.
    let ether_type = unsafe { (*eth).ether_type };
    // The field holds the wire bytes; the enum's discriminants are in the same byte order.
    if ether_type == EtherType::Ipv4 as u16 {
        classify_v4(ctx, EthHdr::LEN)
    } else if ether_type == EtherType::Ipv6 as u16 {
        classify_v6(ctx, EthHdr::LEN)
    } else {
        Class::NonIp
    }
}

#[inline(always)]
fn classify_v4<C: PacketCtx>(ctx: &C, l3_off: usize) -> Class {
    let Some(ip) = ctx.ptr_at::<Ipv4Hdr>(l3_off) else {
        return Class::Malformed;
    };
    // SAFETY: bounds checked by `ptr_at`.
    let (vihl, frags, proto) = unsafe { ((*ip).vihl, (*ip).frags, (*ip).proto) };
    let ihl = usize::from(vihl & 0x0f) * 4;
    if vihl >> 4 != 4 || ihl < Ipv4Hdr::LEN {
        return Class::Malformed;
    }
    // Fragment offset (low 13 bits) non-zero: no L4 header here.
    if u16::from_be_bytes(frags) & 0x1fff != 0 {
        return Class::Fragment(Family::V4);
    }
    classify_l4(ctx, Family::V4, ipproto(proto), l3_off, l3_off + ihl)
}

#[inline(always)]
fn classify_v6<C: PacketCtx>(ctx: &C, l3_off: usize) -> Class {
    let Some(ip) = ctx.ptr_at::<Ipv6Hdr>(l3_off) else {
        return Class::Malformed;
    };
    // SAFETY: bounds checked by `ptr_at`.
    let mut next = ipproto(unsafe { (*ip).next_hdr });
    let mut off = l3_off + Ipv6Hdr::LEN;
    // Walk a bounded number of extension headers (hop-by-hop, routing, destination options,
    // fragment); each starts with {next header, length}.
    for _ in 0..IPV6_EXT_MAX {
        match next {
            IpProto::HopOpt | IpProto::Ipv6Route | IpProto::Ipv6Opts => {
                let Some(ext) = ctx.ptr_at::<[u8; 2]>(off) else {
                    return Class::Malformed;
                };
                // SAFETY: bounds checked by `ptr_at`.
                let [nh, len] = unsafe { *ext };
                next = ipproto(nh);
                off += (usize::from(len) + 1) * 8;
            }
            IpProto::Ipv6Frag => {
                let Some(frag) = ctx.ptr_at::<[u8; 8]>(off) else {
                    return Class::Malformed;
                };
                // SAFETY: bounds checked by `ptr_at`.
                let f = unsafe { *frag };
                if u16::from_be_bytes([f[2], f[3]]) & 0xfff8 != 0 {
                    return Class::Fragment(Family::V6);
                }
                next = ipproto(f[0]);
                off += 8;
            }
            _ => break,
        }
    }
    classify_l4(ctx, Family::V6, next, l3_off, off)
}

#[inline(always)]
fn classify_l4<C: PacketCtx>(
    ctx: &C,
    family: Family,
    proto: IpProto,
    l3_off: usize,
    l4_off: usize,
) -> Class {
    let complete = match proto {
        IpProto::Tcp => match ctx.ptr_at::<TcpHdr>(l4_off) {
            // SAFETY: bounds checked by `ptr_at`.
            Some(tcp) => usize::from(unsafe { (*tcp).doff() }) * 4 >= TcpHdr::LEN,
            None => false,
        },
        IpProto::Udp => ctx.ptr_at::<UdpHdr>(l4_off).is_some(),
        _ => return Class::OtherL4(family),
    };
    if !complete {
        return Class::Malformed;
    }
    Class::L4(Headers {
        family,
        proto,
        l3_off,
        l4_off,
    })
}

/// Maps a raw protocol number onto the enum without transmuting unknown values.
#[inline(always)]
fn ipproto(n: u8) -> IpProto {
    match n {
        0 => IpProto::HopOpt,
        6 => IpProto::Tcp,
        17 => IpProto::Udp,
        43 => IpProto::Ipv6Route,
        44 => IpProto::Ipv6Frag,
        60 => IpProto::Ipv6Opts,
        _ => IpProto::Reserved,
    }
}
