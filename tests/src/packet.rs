//! Packet builders for BPF_PROG_TEST_RUN tables (katran fixture style).
//!
//! Checksums here are computed from scratch, independently of `ingress_common::csum`, so a
//! table can check the eBPF program's incremental updates against a full recomputation.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

/// MAC addresses used by fixtures.
pub const MAC_CLIENT: [u8; 6] = [0x02, 0, 0, 0, 0, 0x01];
/// MAC of the node under test.
pub const MAC_NODE: [u8; 6] = [0x02, 0, 0, 0, 0, 0x02];

/// L4 protocol of a fixture.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum L4 {
    /// TCP with the given flags byte (e.g. [`SYN`]).
    Tcp(u8),
    /// UDP.
    Udp,
    /// Any other protocol number, with an 8-byte opaque header.
    Other(u8),
}

/// TCP SYN flag.
pub const SYN: u8 = 0x02;
/// TCP ACK flag.
pub const ACK: u8 = 0x10;
/// TCP FIN flag.
pub const FIN: u8 = 0x01;
/// TCP RST flag.
pub const RST: u8 = 0x04;

/// A packet description; [`Packet::build`] renders it to a frame.
#[derive(Clone, Debug)]
pub struct Packet {
    /// Source address (v4 or v6; both ends must match).
    pub src: IpAddr,
    /// Destination address.
    pub dst: IpAddr,
    /// Source port.
    pub sport: u16,
    /// Destination port.
    pub dport: u16,
    /// Protocol.
    pub l4: L4,
    /// TCP sequence number.
    pub seq: u32,
    /// TCP acknowledgment number.
    pub ack: u32,
    /// Payload bytes.
    pub payload: Vec<u8>,
    /// IPv4 TTL / IPv6 hop limit.
    pub ttl: u8,
    /// IPv4 options (a multiple of 4 bytes).
    pub ip_options: Vec<u8>,
    /// IPv4 fragment offset in 8-byte units (non-zero makes a non-first fragment).
    pub frag_offset: u16,
    /// IPv6 extension headers to insert (each a (next-header-number, body) pair is generated
    /// as an 8-byte destination-options header when true).
    pub v6_dest_opts: bool,
    /// Source MAC.
    pub src_mac: [u8; 6],
    /// Destination MAC.
    pub dst_mac: [u8; 6],
}

impl Packet {
    /// A TCP packet with `flags` from `src:sport` to `dst:dport`.
    pub fn tcp(src: &str, sport: u16, dst: &str, dport: u16, flags: u8) -> Self {
        Self::new(src, sport, dst, dport, L4::Tcp(flags))
    }

    /// A UDP datagram.
    pub fn udp(src: &str, sport: u16, dst: &str, dport: u16) -> Self {
        Self::new(src, sport, dst, dport, L4::Udp)
    }

    fn new(src: &str, sport: u16, dst: &str, dport: u16, l4: L4) -> Self {
        Self {
            src: src.parse().expect("src address"),
            dst: dst.parse().expect("dst address"),
            sport,
            dport,
            l4,
            seq: 1000,
            ack: 0,
            payload: b"xdp-ingress".to_vec(),
            ttl: 64,
            ip_options: Vec::new(),
            frag_offset: 0,
            v6_dest_opts: false,
            src_mac: MAC_CLIENT,
            dst_mac: MAC_NODE,
        }
    }

    /// Renders the IP packet without the Ethernet header (what a raw IP socket sends).
    pub fn build_ip(&self) -> Vec<u8> {
        self.build()[14..].to_vec()
    }

    /// Renders the Ethernet frame.
    pub fn build(&self) -> Vec<u8> {
        let l4 = self.l4_bytes();
        let mut f = Vec::with_capacity(128);
        f.extend_from_slice(&self.dst_mac);
        f.extend_from_slice(&self.src_mac);
        match (self.src, self.dst) {
            (IpAddr::V4(s), IpAddr::V4(d)) => {
                f.extend_from_slice(&0x0800u16.to_be_bytes());
                f.extend_from_slice(&self.ipv4_header(s, d, l4.len()));
            }
            (IpAddr::V6(s), IpAddr::V6(d)) => {
                f.extend_from_slice(&0x86ddu16.to_be_bytes());
                f.extend_from_slice(&self.ipv6_header(s, d, l4.len()));
            }
            _ => panic!("mixed address families"),
        }
        f.extend_from_slice(&l4);
        f
    }

    fn proto(&self) -> u8 {
        match self.l4 {
            L4::Tcp(_) => 6,
            L4::Udp => 17,
            L4::Other(p) => p,
        }
    }

    fn ipv4_header(&self, s: Ipv4Addr, d: Ipv4Addr, l4_len: usize) -> Vec<u8> {
        assert!(
            self.ip_options.len().is_multiple_of(4),
            "IPv4 options must be 4-byte aligned"
        );
        let hlen = 20 + self.ip_options.len();
        let total = u16::try_from(hlen + l4_len).expect("packet too long");
        let mut h = vec![0u8; 20];
        h[0] = 0x40 | u8::try_from(hlen / 4).expect("header too long");
        h[2..4].copy_from_slice(&total.to_be_bytes());
        h[4..6].copy_from_slice(&0x1234u16.to_be_bytes());
        h[6..8].copy_from_slice(&(0x4000 | self.frag_offset).to_be_bytes());
        if self.frag_offset != 0 {
            h[6..8].copy_from_slice(&self.frag_offset.to_be_bytes());
        }
        h[8] = self.ttl;
        h[9] = self.proto();
        h[12..16].copy_from_slice(&s.octets());
        h[16..20].copy_from_slice(&d.octets());
        h.extend_from_slice(&self.ip_options);
        let c = checksum(&h);
        h[10..12].copy_from_slice(&c.to_be_bytes());
        h
    }

    fn ipv6_header(&self, s: Ipv6Addr, d: Ipv6Addr, l4_len: usize) -> Vec<u8> {
        let ext = if self.v6_dest_opts { 8 } else { 0 };
        let mut h = vec![0u8; 40];
        h[0] = 0x60;
        h[4..6].copy_from_slice(&u16::try_from(l4_len + ext).expect("too long").to_be_bytes());
        h[6] = if self.v6_dest_opts { 60 } else { self.proto() };
        h[7] = self.ttl;
        h[8..24].copy_from_slice(&s.octets());
        h[24..40].copy_from_slice(&d.octets());
        if self.v6_dest_opts {
            // next header, hdr ext len 0 (8 bytes), PadN option filling the rest.
            h.extend_from_slice(&[self.proto(), 0, 1, 4, 0, 0, 0, 0]);
        }
        h
    }

    fn l4_bytes(&self) -> Vec<u8> {
        let mut b = match self.l4 {
            L4::Tcp(flags) => {
                let mut t = vec![0u8; 20];
                t[0..2].copy_from_slice(&self.sport.to_be_bytes());
                t[2..4].copy_from_slice(&self.dport.to_be_bytes());
                t[4..8].copy_from_slice(&self.seq.to_be_bytes());
                t[8..12].copy_from_slice(&self.ack.to_be_bytes());
                t[12] = 5 << 4;
                t[13] = flags;
                t[14..16].copy_from_slice(&65535u16.to_be_bytes());
                t
            }
            L4::Udp => {
                let mut u = vec![0u8; 8];
                u[0..2].copy_from_slice(&self.sport.to_be_bytes());
                u[2..4].copy_from_slice(&self.dport.to_be_bytes());
                let len = u16::try_from(8 + self.payload.len()).expect("too long");
                u[4..6].copy_from_slice(&len.to_be_bytes());
                u
            }
            L4::Other(_) => vec![0u8; 8],
        };
        b.extend_from_slice(&self.payload);
        let csum_off = match self.l4 {
            L4::Tcp(_) => Some(16),
            L4::Udp => Some(6),
            L4::Other(_) => None,
        };
        if let Some(off) = csum_off {
            let c = l4_checksum(self.src, self.dst, self.proto(), &b);
            b[off..off + 2].copy_from_slice(&c.to_be_bytes());
        }
        b
    }
}

/// RFC 1071 checksum of `data`.
pub fn checksum(data: &[u8]) -> u16 {
    let mut sum: u64 = 0;
    for chunk in data.chunks(2) {
        let word = if chunk.len() == 2 {
            u16::from_be_bytes([chunk[0], chunk[1]])
        } else {
            u16::from_be_bytes([chunk[0], 0])
        };
        sum += u64::from(word);
    }
    while sum > 0xffff {
        sum = (sum & 0xffff) + (sum >> 16);
    }
    !(sum as u16)
}

/// TCP/UDP checksum over the pseudo-header and `segment` (whose checksum field is zero or
/// the value to verify: a correct segment yields 0).
pub fn l4_checksum(src: IpAddr, dst: IpAddr, proto: u8, segment: &[u8]) -> u16 {
    let mut pseudo = Vec::with_capacity(40 + segment.len());
    match (src, dst) {
        (IpAddr::V4(s), IpAddr::V4(d)) => {
            pseudo.extend_from_slice(&s.octets());
            pseudo.extend_from_slice(&d.octets());
            pseudo.extend_from_slice(&[0, proto]);
            pseudo.extend_from_slice(&u16::try_from(segment.len()).expect("len").to_be_bytes());
        }
        (IpAddr::V6(s), IpAddr::V6(d)) => {
            pseudo.extend_from_slice(&s.octets());
            pseudo.extend_from_slice(&d.octets());
            pseudo.extend_from_slice(&u32::try_from(segment.len()).expect("len").to_be_bytes());
            pseudo.extend_from_slice(&[0, 0, 0, proto]);
        }
        _ => panic!("mixed address families"),
    }
    pseudo.extend_from_slice(segment);
    let c = checksum(&pseudo);
    // UDP transmits a computed zero as all ones.
    if proto == 17 && c == 0 { 0xffff } else { c }
}

/// Sends IPv4 packets, headers included (as [`Packet::build_ip`] renders them), through a raw
/// socket in the calling thread's network namespace. The kernel fills in only the IP header
/// checksum (and the ID if it is zero): a TCP checksum goes out exactly as built, so a test
/// can send segments with a bad one.
pub fn send_raw_ipv4(packets: &[Vec<u8>]) -> std::io::Result<()> {
    use std::os::fd::{AsRawFd as _, FromRawFd as _, OwnedFd};
    // SAFETY: a plain socket(2) call; the descriptor is owned right away.
    let fd = unsafe { libc::socket(libc::AF_INET, libc::SOCK_RAW, libc::IPPROTO_RAW) };
    if fd < 0 {
        return Err(std::io::Error::last_os_error());
    }
    // SAFETY: `fd` is a fresh descriptor nothing else owns.
    let fd = unsafe { OwnedFd::from_raw_fd(fd) };
    for p in packets {
        assert!(p.len() >= 20 && p[0] >> 4 == 4, "an IPv4 packet");
        let addr = libc::sockaddr_in {
            sin_family: libc::AF_INET as libc::sa_family_t,
            sin_port: 0,
            sin_addr: libc::in_addr {
                s_addr: u32::from_ne_bytes([p[16], p[17], p[18], p[19]]),
            },
            sin_zero: [0; 8],
        };
        // SAFETY: the buffer and the address are valid for the lengths given.
        let n = unsafe {
            libc::sendto(
                fd.as_raw_fd(),
                p.as_ptr().cast(),
                p.len(),
                0,
                (&raw const addr).cast(),
                u32::try_from(std::mem::size_of::<libc::sockaddr_in>()).expect("small"),
            )
        };
        if n < 0 {
            return Err(std::io::Error::last_os_error());
        }
    }
    Ok(())
}

/// An ICMP (IPv4) or ICMPv6 error quoting a packet; [`IcmpError::build`] renders the frame
/// with every checksum computed from scratch.
#[derive(Clone, Debug)]
pub struct IcmpError {
    /// Who sends the error (a router or the destination of the quoted packet).
    pub src: IpAddr,
    /// Where the error goes: the source of the quoted packet.
    pub dst: IpAddr,
    /// ICMP type (3 destination unreachable, 11 time exceeded; ICMPv6: 1, 2 packet too
    /// big, 3).
    pub kind: u8,
    /// ICMP code (3 port unreachable, 4 fragmentation needed; ICMPv6 4 port unreachable).
    pub code: u8,
    /// The 4 bytes after the checksum (the next-hop MTU of "fragmentation needed" in the
    /// low 16 bits, the MTU of "packet too big").
    pub rest: u32,
    /// The quoted IP packet (as [`Packet::build_ip`] renders it), already cut to length.
    pub quote: Vec<u8>,
    /// TTL / hop limit of the error.
    pub ttl: u8,
    /// Source MAC.
    pub src_mac: [u8; 6],
    /// Destination MAC.
    pub dst_mac: [u8; 6],
}

impl IcmpError {
    /// An error from `src` to `dst` quoting `quote`.
    pub fn new(src: &str, dst: &str, kind: u8, code: u8, quote: Vec<u8>) -> Self {
        Self {
            src: src.parse().expect("src address"),
            dst: dst.parse().expect("dst address"),
            kind,
            code,
            rest: 0,
            quote,
            ttl: 64,
            src_mac: MAC_CLIENT,
            dst_mac: MAC_NODE,
        }
    }

    /// Renders the Ethernet frame.
    pub fn build(&self) -> Vec<u8> {
        let mut msg = vec![self.kind, self.code, 0, 0];
        msg.extend_from_slice(&self.rest.to_be_bytes());
        msg.extend_from_slice(&self.quote);
        let v6 = self.src.is_ipv6();
        let c = if v6 {
            l4_checksum(self.src, self.dst, 58, &msg)
        } else {
            checksum(&msg)
        };
        msg[2..4].copy_from_slice(&c.to_be_bytes());
        let mut f = Vec::with_capacity(14 + 40 + msg.len());
        f.extend_from_slice(&self.dst_mac);
        f.extend_from_slice(&self.src_mac);
        match (self.src, self.dst) {
            (IpAddr::V4(s), IpAddr::V4(d)) => {
                f.extend_from_slice(&0x0800u16.to_be_bytes());
                let mut h = vec![0u8; 20];
                h[0] = 0x45;
                let total = u16::try_from(20 + msg.len()).expect("short");
                h[2..4].copy_from_slice(&total.to_be_bytes());
                h[4..6].copy_from_slice(&0x4321u16.to_be_bytes());
                h[8] = self.ttl;
                h[9] = 1;
                h[12..16].copy_from_slice(&s.octets());
                h[16..20].copy_from_slice(&d.octets());
                let c = checksum(&h);
                h[10..12].copy_from_slice(&c.to_be_bytes());
                f.extend_from_slice(&h);
            }
            (IpAddr::V6(s), IpAddr::V6(d)) => {
                f.extend_from_slice(&0x86ddu16.to_be_bytes());
                let mut h = vec![0u8; 40];
                h[0] = 0x60;
                let plen = u16::try_from(msg.len()).expect("short");
                h[4..6].copy_from_slice(&plen.to_be_bytes());
                h[6] = 58;
                h[7] = self.ttl;
                h[8..24].copy_from_slice(&s.octets());
                h[24..40].copy_from_slice(&d.octets());
                f.extend_from_slice(&h);
            }
            _ => panic!("mixed address families"),
        }
        f.extend_from_slice(&msg);
        f
    }
}

/// Splits an IPv4 or IPv6 frame (no IPv4 options, no IPv6 extension headers) into two
/// fragments with identification `id`: the first carries the first `first` bytes of the IP
/// payload (a multiple of 8), the second the rest. Headers are rebuilt the way a sending
/// stack does (IPv4: DF cleared, MF on the first, offsets, lengths, header checksum from
/// scratch; IPv6: a fragment header).
pub fn fragments(frame: &[u8], id: u32, first: usize) -> [Vec<u8>; 2] {
    assert!(
        first.is_multiple_of(8),
        "fragment payloads are multiples of 8 bytes"
    );
    let v6 = frame[12..14] == [0x86, 0xdd];
    let hlen = if v6 { 40 } else { 20 };
    let (eth, rest) = frame.split_at(14);
    let (hdr, payload) = rest.split_at(hlen);
    assert!(first < payload.len(), "two fragments");
    let parts = [&payload[..first], &payload[first..]];
    let mut out = [Vec::new(), Vec::new()];
    for (i, part) in parts.iter().enumerate() {
        let offset = if i == 0 { 0 } else { first / 8 };
        let more = i == 0;
        let f = &mut out[i];
        f.extend_from_slice(eth);
        let mut h = hdr.to_vec();
        if v6 {
            let next = h[6];
            h[6] = 44;
            let plen = u16::try_from(8 + part.len()).expect("short");
            h[4..6].copy_from_slice(&plen.to_be_bytes());
            f.extend_from_slice(&h);
            let off_flags = (u16::try_from(offset).expect("short") << 3) | u16::from(more);
            f.extend_from_slice(&[next, 0]);
            f.extend_from_slice(&off_flags.to_be_bytes());
            f.extend_from_slice(&id.to_be_bytes());
        } else {
            let total = u16::try_from(20 + part.len()).expect("short");
            h[2..4].copy_from_slice(&total.to_be_bytes());
            h[4..6].copy_from_slice(&u16::try_from(id).expect("16-bit id").to_be_bytes());
            let flags = u16::try_from(offset).expect("short") | if more { 0x2000 } else { 0 };
            h[6..8].copy_from_slice(&flags.to_be_bytes());
            h[10..12].copy_from_slice(&[0, 0]);
            let c = checksum(&h);
            h[10..12].copy_from_slice(&c.to_be_bytes());
            f.extend_from_slice(&h);
        }
        f.extend_from_slice(part);
    }
    out
}

/// Whether every checksum of an IPv4 or IPv6 frame holding TCP, UDP, ICMP or ICMPv6 is
/// right, computed from scratch, including the IP header and L4 header of a quoted packet
/// when the quote is whole. `Err` names the first wrong one.
pub fn verify_checksums(frame: &[u8]) -> Result<(), String> {
    fn ip_packet(p: &[u8], what: &str, quoted: bool) -> Result<(), String> {
        let v6 = p[0] >> 4 == 6;
        let (hlen, proto, src, dst, total) = if v6 {
            let s: [u8; 16] = p[8..24].try_into().expect("16");
            let d: [u8; 16] = p[24..40].try_into().expect("16");
            let plen = usize::from(u16::from_be_bytes([p[4], p[5]]));
            (40, p[6], IpAddr::from(s), IpAddr::from(d), 40 + plen)
        } else {
            let hlen = usize::from(p[0] & 0x0f) * 4;
            if checksum(&p[..hlen]) != 0 {
                return Err(format!("{what}: IPv4 header checksum"));
            }
            let s: [u8; 4] = p[12..16].try_into().expect("4");
            let d: [u8; 4] = p[16..20].try_into().expect("4");
            let total = usize::from(u16::from_be_bytes([p[2], p[3]]));
            (hlen, p[9], IpAddr::from(s), IpAddr::from(d), total)
        };
        if total > p.len() {
            // A quote cut short: the L4 checksum cannot be checked.
            return if quoted {
                Ok(())
            } else {
                Err(format!("{what}: truncated"))
            };
        }
        let l4 = &p[hlen..total];
        match proto {
            6 | 17 => {
                if proto == 17 && l4[6..8] == [0, 0] && !v6 {
                    return Ok(());
                }
                // Summing over a segment with its checksum gives 0 (all ones, complemented).
                let c = l4_checksum(src, dst, proto, l4);
                if c != 0 && !(proto == 17 && c == 0xffff) {
                    return Err(format!("{what}: L4 checksum ({c:#06x})"));
                }
                Ok(())
            }
            1 | 58 => {
                let c = if proto == 58 {
                    l4_checksum(src, dst, 58, l4)
                } else {
                    checksum(l4)
                };
                if c != 0 {
                    return Err(format!("{what}: ICMP checksum ({c:#06x})"));
                }
                ip_packet(&l4[8..], "quoted packet", true)
            }
            _ => Ok(()),
        }
    }
    ip_packet(&frame[14..], "packet", false)
}
