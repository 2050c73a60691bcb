//! The PROXY protocol (HAProxy, versions 1 and 2), as a pure codec: no IO, no tokio.
//!
//! [`decode`] looks at the first bytes a client sent and says whether they hold a complete
//! header, need more bytes, or are not a valid header. [`encode`] writes the header sent to a
//! backend. Only what a TCP proxy needs is kept: the source and destination addresses; TLVs
//! of version 2 are validated for length and skipped.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr, SocketAddrV6};

/// The 12-byte signature that opens every version 2 header.
pub const V2_SIGNATURE: [u8; 12] = *b"\r\n\r\n\0\r\nQUIT\n";

/// The longest version 1 line, CRLF included (spec section 2.1).
pub const V1_MAX_LEN: usize = 107;

/// The largest version 2 payload (after the 16 fixed bytes) we accept. The format allows
/// 65535; real senders stay far below (addresses plus a few TLVs), and a cap keeps a hostile
/// client from making us buffer 64 KiB per connection.
pub const V2_MAX_PAYLOAD: usize = 4096;

const V1_PREFIX: &[u8] = b"PROXY ";

/// Which header format.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub enum Version {
    /// The human-readable line (`PROXY TCP4 ...\r\n`), what ingress-nginx sends by default.
    #[default]
    V1,
    /// The binary format.
    V2,
}

/// The connection's original endpoints, as the first proxy saw them.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Addresses {
    /// The client.
    pub source: SocketAddr,
    /// The address the client connected to.
    pub destination: SocketAddr,
}

/// A decoded header.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Header {
    /// The format it came in.
    pub version: Version,
    /// `None` for v1 `UNKNOWN`, v2 `LOCAL`, and v2 families we do not forward (UNSPEC, UNIX):
    /// the connection's own addresses then apply.
    pub addresses: Option<Addresses>,
}

/// What [`decode`] found in the bytes so far.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Decoded {
    /// A complete header of `len` bytes; the client's stream starts right after it.
    Header {
        /// The header.
        header: Header,
        /// How many bytes of the input it took.
        len: usize,
    },
    /// Valid so far; read more bytes.
    Incomplete,
}

/// Why the bytes are not a PROXY protocol header. The connection must be closed.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum Error {
    /// Neither the v1 prefix nor the v2 signature.
    #[error("no PROXY protocol header (neither \"PROXY \" nor the v2 signature)")]
    NotProxy,
    /// A v1 line longer than 107 bytes.
    #[error("v1 header longer than {V1_MAX_LEN} bytes")]
    V1TooLong,
    /// A v1 line that is not `PROXY <proto> <src> <dst> <sport> <dport>\r\n`.
    #[error("malformed v1 header: {0}")]
    V1Malformed(&'static str),
    /// The v2 version nibble is not 2.
    #[error("v2 header with version {0} (expected 2)")]
    V2Version(u8),
    /// The v2 command nibble is neither LOCAL (0) nor PROXY (1).
    #[error("v2 header with unknown command {0}")]
    V2Command(u8),
    /// The v2 address family or transport is not one the spec defines.
    #[error("v2 header with unknown family/transport byte {0:#04x}")]
    V2Family(u8),
    /// The v2 length is too small for the addresses of its family.
    #[error("v2 header length {len} is too short for its address family (needs {needed})")]
    V2Length {
        /// The length field.
        len: usize,
        /// What the family needs.
        needed: usize,
    },
    /// The v2 length is over [`V2_MAX_PAYLOAD`].
    #[error("v2 header length {0} is over the limit of {V2_MAX_PAYLOAD}")]
    V2TooLong(usize),
}

/// Decodes a header at the start of `buf`: v1 or v2, chosen by the first bytes.
///
/// # Errors
/// [`Error`] when the bytes can no longer become a valid header; as soon as the first bytes
/// rule both formats out, so a client that speaks no PROXY protocol fails at once.
pub fn decode(buf: &[u8]) -> Result<Decoded, Error> {
    let n = buf.len();
    if n == 0 {
        return Ok(Decoded::Incomplete);
    }
    if buf[..n.min(V2_SIGNATURE.len())] == V2_SIGNATURE[..n.min(V2_SIGNATURE.len())] {
        return decode_v2(buf);
    }
    if buf[..n.min(V1_PREFIX.len())] == V1_PREFIX[..n.min(V1_PREFIX.len())] {
        return decode_v1(buf);
    }
    Err(Error::NotProxy)
}

fn decode_v1(buf: &[u8]) -> Result<Decoded, Error> {
    let window = &buf[..buf.len().min(V1_MAX_LEN)];
    let Some(lf) = window.iter().position(|&b| b == b'\n') else {
        return if buf.len() >= V1_MAX_LEN {
            Err(Error::V1TooLong)
        } else {
            Ok(Decoded::Incomplete)
        };
    };
    if lf == 0 || window[lf - 1] != b'\r' {
        return Err(Error::V1Malformed("line does not end with CRLF"));
    }
    let line = std::str::from_utf8(&window[V1_PREFIX.len()..lf - 1])
        .map_err(|_| Error::V1Malformed("not ASCII"))?;
    if !line.is_ascii() {
        return Err(Error::V1Malformed("not ASCII"));
    }
    let mut fields = line.split(' ');
    let proto = fields.next().unwrap_or_default();
    let addresses = match proto {
        // "the receiver must ignore anything presented before the CRLF is found"
        "UNKNOWN" => None,
        "TCP4" | "TCP6" => {
            let v6 = proto == "TCP6";
            let src = v1_ip(fields.next(), v6)?;
            let dst = v1_ip(fields.next(), v6)?;
            let sport = v1_port(fields.next())?;
            let dport = v1_port(fields.next())?;
            if fields.next().is_some() {
                return Err(Error::V1Malformed("extra fields after the ports"));
            }
            Some(Addresses {
                source: SocketAddr::new(src, sport),
                destination: SocketAddr::new(dst, dport),
            })
        }
        "" => return Err(Error::V1Malformed("empty protocol (two spaces?)")),
        _ => return Err(Error::V1Malformed("protocol is not TCP4, TCP6 or UNKNOWN")),
    };
    Ok(Decoded::Header {
        header: Header {
            version: Version::V1,
            addresses,
        },
        len: lf + 1,
    })
}

fn v1_ip(field: Option<&str>, v6: bool) -> Result<IpAddr, Error> {
    let field = field.ok_or(Error::V1Malformed("missing address"))?;
    if v6 {
        field
            .parse::<Ipv6Addr>()
            .map(IpAddr::V6)
            .map_err(|_| Error::V1Malformed("bad IPv6 address for TCP6"))
    } else {
        // std's parser refuses leading zeros ("010.0.0.1"), as the spec asks.
        field
            .parse::<Ipv4Addr>()
            .map(IpAddr::V4)
            .map_err(|_| Error::V1Malformed("bad IPv4 address for TCP4"))
    }
}

fn v1_port(field: Option<&str>) -> Result<u16, Error> {
    let field = field.ok_or(Error::V1Malformed("missing port"))?;
    let digits_only = !field.is_empty() && field.bytes().all(|b| b.is_ascii_digit());
    if !digits_only || (field.len() > 1 && field.starts_with('0')) {
        return Err(Error::V1Malformed(
            "port is not a decimal number without leading zeros",
        ));
    }
    field
        .parse()
        .map_err(|_| Error::V1Malformed("port is over 65535"))
}

fn decode_v2(buf: &[u8]) -> Result<Decoded, Error> {
    if buf.len() < 16 {
        // Check what we already have, so garbage fails before the client sends 16 bytes.
        if let Some(&ver_cmd) = buf.get(12) {
            v2_ver_cmd(ver_cmd)?;
        }
        if let Some(&fam) = buf.get(13) {
            v2_family(fam)?;
        }
        return Ok(Decoded::Incomplete);
    }
    let command = v2_ver_cmd(buf[12])?;
    let (family, needed) = v2_family(buf[13])?;
    let payload = usize::from(u16::from_be_bytes([buf[14], buf[15]]));
    if payload > V2_MAX_PAYLOAD {
        return Err(Error::V2TooLong(payload));
    }
    let local = command == 0;
    if !local && payload < needed {
        return Err(Error::V2Length {
            len: payload,
            needed,
        });
    }
    let len = 16 + payload;
    if buf.len() < len {
        return Ok(Decoded::Incomplete);
    }
    let a = &buf[16..len];
    let addresses = match family {
        _ if local => None,
        Family::Inet => Some(Addresses {
            source: SocketAddr::new(ip4(&a[0..4]), port(&a[8..10])),
            destination: SocketAddr::new(ip4(&a[4..8]), port(&a[10..12])),
        }),
        Family::Inet6 => Some(Addresses {
            source: SocketAddr::new(ip6(&a[0..16]), port(&a[32..34])),
            destination: SocketAddr::new(ip6(&a[16..32]), port(&a[34..36])),
        }),
        Family::Unspec | Family::Unix => None,
    };
    Ok(Decoded::Header {
        header: Header {
            version: Version::V2,
            addresses,
        },
        len,
    })
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Family {
    Unspec,
    Inet,
    Inet6,
    Unix,
}

/// The command nibble (0 LOCAL, 1 PROXY) after checking the version nibble.
fn v2_ver_cmd(b: u8) -> Result<u8, Error> {
    match (b >> 4, b & 0x0f) {
        (2, c @ (0 | 1)) => Ok(c),
        (2, c) => Err(Error::V2Command(c)),
        (v, _) => Err(Error::V2Version(v)),
    }
}

/// The family and the address bytes it needs.
fn v2_family(b: u8) -> Result<(Family, usize), Error> {
    let family = match b >> 4 {
        0 => (Family::Unspec, 0),
        1 => (Family::Inet, 12),
        2 => (Family::Inet6, 36),
        3 => (Family::Unix, 216),
        _ => return Err(Error::V2Family(b)),
    };
    // Transport: 0 UNSPEC, 1 STREAM, 2 DGRAM.
    if b & 0x0f > 2 {
        return Err(Error::V2Family(b));
    }
    Ok(family)
}

fn ip4(b: &[u8]) -> IpAddr {
    IpAddr::V4(Ipv4Addr::new(b[0], b[1], b[2], b[3]))
}

fn ip6(b: &[u8]) -> IpAddr {
    let mut octets = [0; 16];
    octets.copy_from_slice(b);
    IpAddr::V6(Ipv6Addr::from(octets))
}

fn port(b: &[u8]) -> u16 {
    u16::from_be_bytes([b[0], b[1]])
}

/// Encodes a header for a TCP connection from `addresses.source` to `addresses.destination`.
/// A mixed pair (one IPv4, one IPv6) is sent as IPv6 with the IPv4 side mapped
/// (`::ffff:a.b.c.d`), since both formats need one family.
pub fn encode(version: Version, addresses: &Addresses) -> Vec<u8> {
    let (src, dst) = same_family(addresses);
    match version {
        Version::V1 => {
            let proto = if src.is_ipv4() { "TCP4" } else { "TCP6" };
            format!(
                "PROXY {proto} {} {} {} {}\r\n",
                src.ip(),
                dst.ip(),
                src.port(),
                dst.port()
            )
            .into_bytes()
        }
        Version::V2 => {
            let mut out = Vec::with_capacity(16 + 36);
            out.extend_from_slice(&V2_SIGNATURE);
            out.push(0x21); // version 2, PROXY
            match (src.ip(), dst.ip()) {
                (IpAddr::V4(s), IpAddr::V4(d)) => {
                    out.extend_from_slice(&[0x11, 0, 12]); // INET, STREAM, len 12
                    out.extend_from_slice(&s.octets());
                    out.extend_from_slice(&d.octets());
                }
                (s, d) => {
                    out.extend_from_slice(&[0x21, 0, 36]); // INET6, STREAM, len 36
                    out.extend_from_slice(&v6(s).octets());
                    out.extend_from_slice(&v6(d).octets());
                }
            }
            out.extend_from_slice(&src.port().to_be_bytes());
            out.extend_from_slice(&dst.port().to_be_bytes());
            out
        }
    }
}

fn v6(ip: IpAddr) -> Ipv6Addr {
    match ip {
        IpAddr::V4(v4) => v4.to_ipv6_mapped(),
        IpAddr::V6(v6) => v6,
    }
}

fn same_family(a: &Addresses) -> (SocketAddr, SocketAddr) {
    if a.source.is_ipv4() == a.destination.is_ipv4() {
        return (a.source, a.destination);
    }
    let map = |s: SocketAddr| SocketAddr::V6(SocketAddrV6::new(v6(s.ip()), s.port(), 0, 0));
    (map(a.source), map(a.destination))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn addrs(src: &str, dst: &str) -> Addresses {
        Addresses {
            source: src.parse().unwrap(),
            destination: dst.parse().unwrap(),
        }
    }

    fn header(version: Version, a: Option<Addresses>, len: usize) -> Result<Decoded, Error> {
        Ok(Decoded::Header {
            header: Header {
                version,
                addresses: a,
            },
            len,
        })
    }

    /// A v2 header: signature, ver/cmd, family, then `payload` with its length.
    fn v2(ver_cmd: u8, fam: u8, payload: &[u8]) -> Vec<u8> {
        let mut out = V2_SIGNATURE.to_vec();
        out.push(ver_cmd);
        out.push(fam);
        out.extend_from_slice(&u16::try_from(payload.len()).unwrap().to_be_bytes());
        out.extend_from_slice(payload);
        out
    }

    const V4_PAYLOAD: [u8; 12] = [192, 0, 2, 1, 198, 51, 100, 7, 0x30, 0x39, 0x23, 0x28];

    fn v6_payload() -> Vec<u8> {
        let mut p = Vec::new();
        p.extend_from_slice(&"2001:db8::1".parse::<Ipv6Addr>().unwrap().octets());
        p.extend_from_slice(&"2001:db8::2".parse::<Ipv6Addr>().unwrap().octets());
        p.extend_from_slice(&[0xff, 0xff, 0x00, 0x50]);
        p
    }

    #[test]
    fn v1_lines_decode_every_field() {
        let long_v6 = "PROXY TCP6 ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff 65535 65535\r\n";
        // The spec's worst case: UNKNOWN with the longest TCP6 fields, exactly the limit.
        let worst = long_v6.replace("TCP6", "UNKNOWN");
        assert_eq!(worst.len(), V1_MAX_LEN);
        let table: &[(&str, &[u8], Result<Decoded, Error>)] = &[
            (
                "TCP4 gives both addresses and ports",
                b"PROXY TCP4 192.0.2.1 198.51.100.7 12345 9000\r\n",
                header(
                    Version::V1,
                    Some(addrs("192.0.2.1:12345", "198.51.100.7:9000")),
                    46,
                ),
            ),
            (
                "TCP6 gives both addresses and ports",
                b"PROXY TCP6 2001:db8::1 2001:db8::2 65535 80\r\n",
                header(
                    Version::V1,
                    Some(addrs("[2001:db8::1]:65535", "[2001:db8::2]:80")),
                    45,
                ),
            ),
            (
                "port 0 is a valid port",
                b"PROXY TCP4 10.0.0.1 10.0.0.2 0 1\r\n",
                header(Version::V1, Some(addrs("10.0.0.1:0", "10.0.0.2:1")), 34),
            ),
            (
                "the longest TCP6 line is accepted",
                long_v6.as_bytes(),
                header(
                    Version::V1,
                    Some(addrs(
                        "[ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff]:65535",
                        "[ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff]:65535",
                    )),
                    long_v6.len(),
                ),
            ),
            (
                "the longest legal line (107 bytes) is accepted",
                worst.as_bytes(),
                header(Version::V1, None, V1_MAX_LEN),
            ),
            (
                "UNKNOWN alone carries no addresses",
                b"PROXY UNKNOWN\r\n",
                header(Version::V1, None, 15),
            ),
            (
                "UNKNOWN ignores whatever follows it on the line",
                b"PROXY UNKNOWN ffff::1 ffff::2 1 2\r\n",
                header(Version::V1, None, 35),
            ),
            (
                "bytes after the CRLF belong to the stream, not the header",
                b"PROXY TCP4 1.2.3.4 5.6.7.8 1 2\r\nGET / HTTP/1.1\r\n",
                header(Version::V1, Some(addrs("1.2.3.4:1", "5.6.7.8:2")), 32),
            ),
        ];
        for (rule, input, want) in table {
            assert_eq!(&decode(input), want, "{rule}");
        }
    }

    #[test]
    fn v1_malformed_lines_are_refused() {
        let too_long = format!("PROXY UNKNOWN {}\r\n", "x".repeat(100));
        let table: &[(&str, &[u8])] = &[
            ("TCP4 with an IPv6 address", b"PROXY TCP4 ::1 ::1 1 2\r\n"),
            (
                "TCP6 with an IPv4 address",
                b"PROXY TCP6 1.2.3.4 1.2.3.4 1 2\r\n",
            ),
            (
                "IPv4 octet with a leading zero",
                b"PROXY TCP4 01.2.3.4 1.2.3.4 1 2\r\n",
            ),
            (
                "IPv4 octet over 255",
                b"PROXY TCP4 256.2.3.4 1.2.3.4 1 2\r\n",
            ),
            ("port over 65535", b"PROXY TCP4 1.2.3.4 1.2.3.4 65536 2\r\n"),
            (
                "port with a leading zero",
                b"PROXY TCP4 1.2.3.4 1.2.3.4 01 2\r\n",
            ),
            ("port with a sign", b"PROXY TCP4 1.2.3.4 1.2.3.4 +1 2\r\n"),
            ("port missing", b"PROXY TCP4 1.2.3.4 1.2.3.4 1\r\n"),
            ("destination missing", b"PROXY TCP4 1.2.3.4\r\n"),
            ("extra field", b"PROXY TCP4 1.2.3.4 1.2.3.4 1 2 3\r\n"),
            ("double space", b"PROXY TCP4  1.2.3.4 1.2.3.4 1 2\r\n"),
            ("trailing space", b"PROXY TCP4 1.2.3.4 1.2.3.4 1 2 \r\n"),
            ("unknown protocol", b"PROXY UDP4 1.2.3.4 1.2.3.4 1 2\r\n"),
            ("lowercase protocol", b"PROXY tcp4 1.2.3.4 1.2.3.4 1 2\r\n"),
            ("LF without CR", b"PROXY TCP4 1.2.3.4 1.2.3.4 1 2\n"),
            (
                "CR in the wrong place",
                b"PROXY TCP4 1.2.3.4 1.2.3.4 1 2\r\r\n",
            ),
            ("empty protocol", b"PROXY \r\n"),
            (
                "non-ASCII",
                "PROXY TCP4 1.2.3.4 1.2.3.4 1 \u{e9}\r\n".as_bytes(),
            ),
            ("line over 107 bytes", too_long.as_bytes()),
            ("no CRLF within 107 bytes", &[b'P'; 200][..]),
        ];
        for (rule, input) in table {
            assert!(decode(input).is_err(), "{rule}: {:?}", decode(input));
        }
        assert_eq!(decode(too_long.as_bytes()), Err(Error::V1TooLong));
    }

    #[test]
    fn truncated_headers_ask_for_more_bytes() {
        let v1 = b"PROXY TCP4 192.0.2.1 198.51.100.7 12345 9000\r\n";
        let v2 = v2(0x21, 0x11, &V4_PAYLOAD);
        for (name, full) in [("v1", &v1[..]), ("v2", &v2[..])] {
            for cut in 0..full.len() {
                assert_eq!(
                    decode(&full[..cut]),
                    Ok(Decoded::Incomplete),
                    "{name} cut at {cut} of {}",
                    full.len()
                );
            }
            assert!(
                matches!(decode(full), Ok(Decoded::Header { len, .. }) if len == full.len()),
                "{name} whole"
            );
        }
    }

    #[test]
    fn a_client_without_proxy_protocol_fails_on_its_first_bytes() {
        let table: &[(&str, &[u8])] = &[
            ("an HTTP request", b"GET / HTTP/1.1\r\n"),
            ("a redis command", b"*1\r\n$4\r\nPING\r\n"),
            ("a TLS ClientHello", &[0x16, 0x03, 0x01, 0x02, 0x00]),
            ("lowercase prefix", b"proxy TCP4"),
            ("one wrong byte", b"PROXX"),
            ("v2 signature with a wrong byte", b"\r\n\r\n\0\r\nQUIX"),
        ];
        for (rule, input) in table {
            assert_eq!(decode(input), Err(Error::NotProxy), "{rule}");
        }
    }

    #[test]
    fn v2_headers_decode_every_field() {
        let mut with_tlv = V4_PAYLOAD.to_vec();
        with_tlv.extend_from_slice(&[0x04, 0x00, 0x03, b'a', b'b', b'c']); // PP2_TYPE_NOOP
        let unix = [0u8; 216];
        let table: Vec<(&str, Vec<u8>, Result<Decoded, Error>)> = vec![
            (
                "PROXY INET STREAM gives both IPv4 addresses and ports",
                v2(0x21, 0x11, &V4_PAYLOAD),
                header(
                    Version::V2,
                    Some(addrs("192.0.2.1:12345", "198.51.100.7:9000")),
                    28,
                ),
            ),
            (
                "PROXY INET6 STREAM gives both IPv6 addresses and ports",
                v2(0x21, 0x21, &v6_payload()),
                header(
                    Version::V2,
                    Some(addrs("[2001:db8::1]:65535", "[2001:db8::2]:80")),
                    52,
                ),
            ),
            (
                "TLVs after the addresses are skipped and counted in the length",
                v2(0x21, 0x11, &with_tlv),
                header(
                    Version::V2,
                    Some(addrs("192.0.2.1:12345", "198.51.100.7:9000")),
                    34,
                ),
            ),
            (
                "LOCAL carries no addresses even when the family has some",
                v2(0x20, 0x11, &V4_PAYLOAD),
                header(Version::V2, None, 28),
            ),
            (
                "LOCAL with UNSPEC and no payload",
                v2(0x20, 0x00, &[]),
                header(Version::V2, None, 16),
            ),
            (
                "PROXY with UNSPEC family: no addresses",
                v2(0x21, 0x00, &[]),
                header(Version::V2, None, 16),
            ),
            (
                "PROXY with UNIX family: not forwarded",
                v2(0x21, 0x31, &unix),
                header(Version::V2, None, 232),
            ),
            (
                "DGRAM transport still carries addresses",
                v2(0x21, 0x12, &V4_PAYLOAD),
                header(
                    Version::V2,
                    Some(addrs("192.0.2.1:12345", "198.51.100.7:9000")),
                    28,
                ),
            ),
            (
                "version 1 nibble",
                v2(0x11, 0x11, &V4_PAYLOAD),
                Err(Error::V2Version(1)),
            ),
            (
                "version 3 nibble",
                v2(0x31, 0x11, &V4_PAYLOAD),
                Err(Error::V2Version(3)),
            ),
            (
                "command 2",
                v2(0x22, 0x11, &V4_PAYLOAD),
                Err(Error::V2Command(2)),
            ),
            (
                "family 4",
                v2(0x21, 0x41, &V4_PAYLOAD),
                Err(Error::V2Family(0x41)),
            ),
            (
                "transport 3",
                v2(0x21, 0x13, &V4_PAYLOAD),
                Err(Error::V2Family(0x13)),
            ),
            (
                "INET with a payload shorter than 12",
                v2(0x21, 0x11, &V4_PAYLOAD[..11]),
                Err(Error::V2Length {
                    len: 11,
                    needed: 12,
                }),
            ),
            (
                "INET6 with only an IPv4 payload",
                v2(0x21, 0x21, &V4_PAYLOAD),
                Err(Error::V2Length {
                    len: 12,
                    needed: 36,
                }),
            ),
            (
                "payload over the limit",
                v2(0x21, 0x11, &[0; V2_MAX_PAYLOAD + 1]),
                Err(Error::V2TooLong(V2_MAX_PAYLOAD + 1)),
            ),
        ];
        for (rule, input, want) in table {
            assert_eq!(decode(&input), want, "{rule}");
        }
    }

    #[test]
    fn v2_errors_show_before_the_fixed_part_is_complete() {
        let full = v2(0x31, 0x11, &V4_PAYLOAD);
        assert_eq!(
            decode(&full[..13]),
            Err(Error::V2Version(3)),
            "bad version at byte 13"
        );
        let full = v2(0x21, 0x51, &V4_PAYLOAD);
        assert_eq!(
            decode(&full[..14]),
            Err(Error::V2Family(0x51)),
            "bad family at byte 14"
        );
    }

    #[test]
    fn encode_writes_the_spec_bytes() {
        let table: Vec<(&str, Version, Addresses, Vec<u8>)> = vec![
            (
                "v1 IPv4",
                Version::V1,
                addrs("192.0.2.1:12345", "198.51.100.7:9000"),
                b"PROXY TCP4 192.0.2.1 198.51.100.7 12345 9000\r\n".to_vec(),
            ),
            (
                "v1 IPv6",
                Version::V1,
                addrs("[2001:db8::1]:65535", "[2001:db8::2]:80"),
                b"PROXY TCP6 2001:db8::1 2001:db8::2 65535 80\r\n".to_vec(),
            ),
            (
                "v1 mixed families are sent as mapped IPv6",
                Version::V1,
                addrs("192.0.2.1:1", "[2001:db8::2]:2"),
                b"PROXY TCP6 ::ffff:192.0.2.1 2001:db8::2 1 2\r\n".to_vec(),
            ),
            (
                "v2 IPv4",
                Version::V2,
                addrs("192.0.2.1:12345", "198.51.100.7:9000"),
                v2(0x21, 0x11, &V4_PAYLOAD),
            ),
            (
                "v2 IPv6",
                Version::V2,
                addrs("[2001:db8::1]:65535", "[2001:db8::2]:80"),
                v2(0x21, 0x21, &v6_payload()),
            ),
        ];
        for (rule, version, a, want) in table {
            assert_eq!(encode(version, &a), want, "{rule}");
        }
    }

    #[test]
    fn encode_then_decode_gives_the_addresses_back() {
        for a in [
            addrs("127.0.0.1:40000", "127.0.0.1:9000"),
            addrs("[::1]:40000", "[fe80::1]:443"),
            addrs("0.0.0.0:0", "255.255.255.255:65535"),
        ] {
            for version in [Version::V1, Version::V2] {
                let bytes = encode(version, &a);
                assert_eq!(
                    decode(&bytes),
                    header(version, Some(a), bytes.len()),
                    "{version:?} {a:?}"
                );
            }
        }
    }
}
