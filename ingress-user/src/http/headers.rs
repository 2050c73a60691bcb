//! Header rewriting between client and upstream: hop-by-hop removal, the `X-Forwarded-*`
//! family, `X-Real-IP` and `X-Request-ID`.

use std::{
    hash::{BuildHasher as _, RandomState},
    io::Write as _,
    net::IpAddr,
    sync::atomic::{AtomicU64, Ordering},
};

use hyper::{
    HeaderMap,
    header::{self, HeaderName, HeaderValue},
};

/// `X-Forwarded-For`.
pub static X_FORWARDED_FOR: HeaderName = HeaderName::from_static("x-forwarded-for");
/// `X-Forwarded-Proto`.
pub static X_FORWARDED_PROTO: HeaderName = HeaderName::from_static("x-forwarded-proto");
/// `X-Forwarded-Host`.
pub static X_FORWARDED_HOST: HeaderName = HeaderName::from_static("x-forwarded-host");
/// `X-Forwarded-Port`.
pub static X_FORWARDED_PORT: HeaderName = HeaderName::from_static("x-forwarded-port");
/// `X-Real-IP`.
pub static X_REAL_IP: HeaderName = HeaderName::from_static("x-real-ip");
/// `X-Request-ID`.
pub static X_REQUEST_ID: HeaderName = HeaderName::from_static("x-request-id");

/// Whether these (HTTP/1) headers ask for a protocol upgrade: `Connection` lists `upgrade`
/// and an `Upgrade` header is present.
pub fn wants_upgrade(headers: &HeaderMap) -> bool {
    headers.contains_key(header::UPGRADE) && connection_lists(headers, "upgrade")
}

/// Whether a `Connection` header lists `token` (case-insensitive).
fn connection_lists(headers: &HeaderMap, token: &str) -> bool {
    headers.get_all(header::CONNECTION).iter().any(|v| {
        v.as_bytes()
            .split(|&b| b == b',')
            .any(|t| t.trim_ascii().eq_ignore_ascii_case(token.as_bytes()))
    })
}

/// Header names the rewrite cares about, told apart by one comparison of each name in
/// the message: most carry none of them, so nothing else is looked up.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[repr(u8)]
enum Special {
    Connection,
    KeepAlive,
    ProxyConnection,
    ProxyAuthenticate,
    ProxyAuthorization,
    Te,
    Trailer,
    TransferEncoding,
    Upgrade,
    XForwardedFor,
    XForwardedProto,
    XForwardedHost,
    XForwardedPort,
    XRealIp,
    XRequestId,
}

impl Special {
    /// Hop-by-hop headers that are always removed (RFC 9110 §7.6.1, plus the legacy ones);
    /// `Upgrade` is removed unless the message is a tunnel handshake.
    const HOP_BY_HOP: [Self; 8] = [
        Self::Connection,
        Self::KeepAlive,
        Self::ProxyConnection,
        Self::ProxyAuthenticate,
        Self::ProxyAuthorization,
        Self::Te,
        Self::Trailer,
        Self::TransferEncoding,
    ];
    /// Headers the proxy sets itself; a client's lines of these names are replaced.
    const PROXY_SET: [Self; 5] = [
        Self::XForwardedFor,
        Self::XForwardedProto,
        Self::XForwardedHost,
        Self::XForwardedPort,
        Self::XRealIp,
    ];

    fn of(name: &HeaderName) -> Option<Self> {
        // A string match compares lengths first, so a name of another length costs one
        // comparison per arm.
        Some(match name.as_str() {
            "connection" => Self::Connection,
            "keep-alive" => Self::KeepAlive,
            "proxy-connection" => Self::ProxyConnection,
            "proxy-authenticate" => Self::ProxyAuthenticate,
            "proxy-authorization" => Self::ProxyAuthorization,
            "te" => Self::Te,
            "trailer" => Self::Trailer,
            "transfer-encoding" => Self::TransferEncoding,
            "upgrade" => Self::Upgrade,
            "x-forwarded-for" => Self::XForwardedFor,
            "x-forwarded-proto" => Self::XForwardedProto,
            "x-forwarded-host" => Self::XForwardedHost,
            "x-forwarded-port" => Self::XForwardedPort,
            "x-real-ip" => Self::XRealIp,
            "x-request-id" => Self::XRequestId,
            _ => return None,
        })
    }

    fn name(self) -> HeaderName {
        match self {
            Self::Connection => header::CONNECTION,
            Self::KeepAlive => HeaderName::from_static("keep-alive"),
            Self::ProxyConnection => HeaderName::from_static("proxy-connection"),
            Self::ProxyAuthenticate => header::PROXY_AUTHENTICATE,
            Self::ProxyAuthorization => header::PROXY_AUTHORIZATION,
            Self::Te => header::TE,
            Self::Trailer => header::TRAILER,
            Self::TransferEncoding => header::TRANSFER_ENCODING,
            Self::Upgrade => header::UPGRADE,
            Self::XForwardedFor => X_FORWARDED_FOR.clone(),
            Self::XForwardedProto => X_FORWARDED_PROTO.clone(),
            Self::XForwardedHost => X_FORWARDED_HOST.clone(),
            Self::XForwardedPort => X_FORWARDED_PORT.clone(),
            Self::XRealIp => X_REAL_IP.clone(),
            Self::XRequestId => X_REQUEST_ID.clone(),
        }
    }

    const fn bit(self) -> u16 {
        1 << self as u8
    }

    /// The bits of `list`.
    const fn mask(list: &[Self]) -> u16 {
        let mut bits = 0;
        let mut i = 0;
        while i < list.len() {
            bits |= list[i].bit();
            i += 1;
        }
        bits
    }
}

/// What one scan of the header names found.
#[derive(Clone, Copy, Debug, Default)]
struct Present {
    /// The [`Special`] headers, as a bit set.
    bits: u16,
    /// Whether a header is named `close` (a `Connection` option that would name it).
    close_named: bool,
    /// Whether a name holds `_`.
    underscored: bool,
}

/// Scans the names of `headers` once.
fn present(headers: &HeaderMap) -> Present {
    let mut found = Present::default();
    for name in headers.keys() {
        match Special::of(name) {
            Some(special) => found.bits |= special.bit(),
            None => {
                let name = name.as_str();
                found.close_named |= name == "close";
                found.underscored |= name.contains('_');
            }
        }
    }
    found
}

/// Removes every header whose name holds `_`; returns how many lines went.
fn drop_underscored(headers: &mut HeaderMap) -> u64 {
    let names: Vec<HeaderName> = headers
        .keys()
        .filter(|n| n.as_str().contains('_'))
        .cloned()
        .collect();
    names
        .into_iter()
        .map(|name| match headers.entry(name) {
            header::Entry::Occupied(e) => e.remove_entry_mult().1.count() as u64,
            header::Entry::Vacant(_) => 0,
        })
        .sum()
}

/// Removes hop-by-hop headers: `Connection` and every header it lists, `Keep-Alive`, `TE`,
/// `Trailer`, `Transfer-Encoding`, `Proxy-*`, and `Upgrade`. With `tunnel`, the upgrade
/// handshake (`Upgrade` and `Connection: upgrade`) is kept so it reaches the other side.
pub fn strip_hop_by_hop(headers: &mut HeaderMap, tunnel: bool) {
    let found = present(headers);
    strip(headers, found.bits, found.close_named, tunnel);
}

/// [`strip_hop_by_hop`] given what [`present`] found.
fn strip(headers: &mut HeaderMap, present: u16, close_named: bool, tunnel: bool) {
    const STRIPPED: u16 = Special::mask(&Special::HOP_BY_HOP) | Special::Upgrade.bit();
    if present & STRIPPED == 0 {
        return;
    }
    if present & Special::Connection.bit() != 0 {
        // `Connection` names further headers to drop. The usual options need no lookup:
        // `keep-alive` and `upgrade` are handled below, and a header named `close` was
        // noted above.
        let mut listed = Vec::new();
        for value in headers.get_all(header::CONNECTION) {
            for token in value.as_bytes().split(|&b| b == b',') {
                let token = token.trim_ascii();
                if token.is_empty()
                    || (token.eq_ignore_ascii_case(b"close") && !close_named)
                    || token.eq_ignore_ascii_case(b"keep-alive")
                    || token.eq_ignore_ascii_case(b"upgrade")
                {
                    continue;
                }
                if let Ok(name) = HeaderName::from_bytes(token) {
                    listed.push(name);
                }
            }
        }
        for name in listed {
            headers.remove(name);
        }
    }
    for special in Special::HOP_BY_HOP {
        if present & special.bit() != 0 {
            headers.remove(special.name());
        }
    }
    if tunnel {
        headers.insert(header::CONNECTION, HeaderValue::from_static("upgrade"));
    } else if present & Special::Upgrade.bit() != 0 {
        headers.remove(header::UPGRADE);
    }
}

/// What the proxy knows about the client side of a request.
#[derive(Clone, Copy, Debug)]
pub struct Forwarded<'a> {
    /// The client's address (the TCP peer).
    pub client: IpAddr,
    /// `http` or `https`.
    pub proto: &'static str,
    /// The host the client asked for (Host header or `:authority`), if any.
    pub host: Option<&'a HeaderValue>,
    /// The port the client connected to.
    pub port: u16,
}

/// Header lines the proxy adds to the upstream request, encoded (`name: value` and CRLF
/// each). The upstream client writes them after the client's own lines
/// ([`encode_request`](super::client::codec::encode_request)): building them into the
/// header map instead cost six inserts of custom names and five allocations per request.
pub type ProxyHeaders = Vec<u8>;

/// Rewrites a client's request headers for the upstream, with one scan of their names:
/// hop-by-hop headers go (as [`strip_hop_by_hop`]; `tunnel` keeps an upgrade handshake),
/// and the `X-Forwarded-For/Proto/Host/Port`, `X-Real-IP` and (unless the client sent
/// one) `X-Request-ID` lines are returned. The client's own lines of the names the proxy
/// sets are removed; its first `X-Forwarded-For` is extended with the client address
/// (like nginx's `$proxy_add_x_forwarded_for`), and its `X-Request-ID` is kept. Values come
/// from header values or are generated, so none holds a CR or LF.
///
/// With `drop_underscores`, header names holding `_` are removed too (nginx's
/// `underscores_in_headers off`), and the second value says how many lines went.
pub fn rewrite_request(
    headers: &mut HeaderMap,
    tunnel: bool,
    drop_underscores: bool,
    fwd: &Forwarded<'_>,
    ids: &RequestIds,
) -> (ProxyHeaders, u64) {
    let found = present(headers);
    strip(headers, found.bits, found.close_named, tunnel);
    let dropped = if drop_underscores && found.underscored {
        drop_underscored(headers)
    } else {
        0
    };
    // A forwarding header that `Connection` listed is gone now though its bit is still
    // set; that only costs the lookup or removal finding nothing.
    (forwarding(headers, found.bits, fwd, ids), dropped)
}

/// The forwarding lines of [`rewrite_request`], given what [`present`] found.
fn forwarding(
    headers: &mut HeaderMap,
    present: u16,
    fwd: &Forwarded<'_>,
    ids: &RequestIds,
) -> ProxyHeaders {
    let mut out = Vec::with_capacity(256);
    let mut line = |name: &HeaderName, value: &[&[u8]]| {
        out.extend_from_slice(name.as_str().as_bytes());
        out.extend_from_slice(b": ");
        for part in value {
            out.extend_from_slice(part);
        }
        out.extend_from_slice(b"\r\n");
    };
    let mut ip = [0u8; 64];
    let client = write_ip(fwd.client, &mut ip);
    let prev = (present & Special::XForwardedFor.bit() != 0)
        .then(|| headers.get(&X_FORWARDED_FOR))
        .flatten()
        .map(HeaderValue::as_bytes)
        .filter(|v| !v.trim_ascii().is_empty());
    match prev {
        Some(prev) => line(&X_FORWARDED_FOR, &[prev, b", ", client]),
        None => line(&X_FORWARDED_FOR, &[client]),
    }
    line(&X_REAL_IP, &[client]);
    line(&X_FORWARDED_PROTO, &[fwd.proto.as_bytes()]);
    if let Some(host) = fwd.host {
        line(&X_FORWARDED_HOST, &[host.as_bytes()]);
    }
    let mut port = [0u8; 20];
    line(
        &X_FORWARDED_PORT,
        &[write_decimal(u64::from(fwd.port), &mut port)],
    );
    let keep_id = present & Special::XRequestId.bit() != 0
        && headers.get(&X_REQUEST_ID).is_some_and(|v| !v.is_empty());
    if !keep_id {
        line(&X_REQUEST_ID, &[&ids.next_id()]);
    }
    for special in Special::PROXY_SET {
        if present & special.bit() != 0 {
            headers.remove(special.name());
        }
    }
    if !keep_id && present & Special::XRequestId.bit() != 0 {
        headers.remove(&X_REQUEST_ID);
    }
    out
}

/// The address as text in `buf`. IPv4, the usual case, is written by hand: it runs on
/// every request, and `Display` costs several times more.
fn write_ip(ip: IpAddr, buf: &mut [u8; 64]) -> &[u8] {
    let IpAddr::V4(v4) = ip else {
        let mut cursor = std::io::Cursor::new(&mut buf[..]);
        let _ = write!(cursor, "{ip}");
        let len = usize::try_from(cursor.position()).unwrap_or(0);
        return &buf[..len];
    };
    let mut len = 0;
    for (i, octet) in v4.octets().into_iter().enumerate() {
        if i > 0 {
            buf[len] = b'.';
            len += 1;
        }
        let mut digits = [0u8; 20];
        let text = write_decimal(u64::from(octet), &mut digits);
        buf[len..len + text.len()].copy_from_slice(text);
        len += text.len();
    }
    &buf[..len]
}

/// `n` in decimal, in `buf` (no allocation, unlike `Display`).
pub(crate) fn write_decimal(mut n: u64, buf: &mut [u8; 20]) -> &[u8] {
    let mut start = buf.len();
    loop {
        start -= 1;
        buf[start] = b'0' + (n % 10) as u8;
        n /= 10;
        if n == 0 {
            return &buf[start..];
        }
    }
}

/// Generates request ids: a random per-process prefix and a counter, 32 hex digits, unique
/// for the life of the process without a syscall per request.
#[derive(Debug)]
pub struct RequestIds {
    prefix: u64,
    next: AtomicU64,
}

impl Default for RequestIds {
    fn default() -> Self {
        let state = RandomState::new();
        Self {
            prefix: state.hash_one(std::process::id()),
            next: AtomicU64::new(state.hash_one(0xfeed_u32)),
        }
    }
}

impl RequestIds {
    /// A new id.
    pub fn next_id(&self) -> [u8; 32] {
        let n = self.next.fetch_add(1, Ordering::Relaxed);
        let mut hex = [0u8; 32];
        let (high, low) = hex.split_at_mut(16);
        hex_digits(self.prefix, high);
        hex_digits(n, low);
        hex
    }
}

/// `word` as 16 lowercase hex digits.
fn hex_digits(word: u64, out: &mut [u8]) {
    for (i, digit) in out.iter_mut().enumerate() {
        let nibble = (word >> (60 - 4 * i)) & 0xf;
        *digit = b"0123456789abcdef"[nibble as usize];
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn map(pairs: &[(&str, &str)]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for (k, v) in pairs {
            h.append(
                HeaderName::from_bytes(k.as_bytes()).unwrap(),
                HeaderValue::from_str(v).unwrap(),
            );
        }
        h
    }

    fn names(h: &HeaderMap) -> Vec<String> {
        let mut v: Vec<_> = h.keys().map(|k| k.as_str().to_owned()).collect();
        v.sort();
        v
    }

    #[test]
    fn hop_by_hop_headers_and_those_connection_lists_are_removed() {
        let mut h = map(&[
            ("host", "a.test"),
            ("connection", "keep-alive, X-Secret"),
            ("x-secret", "1"),
            ("keep-alive", "timeout=5"),
            ("te", "trailers"),
            ("trailer", "x-sum"),
            ("transfer-encoding", "chunked"),
            ("proxy-authorization", "Basic x"),
            ("proxy-connection", "keep-alive"),
            ("upgrade", "websocket"),
            ("accept", "*/*"),
        ]);
        strip_hop_by_hop(&mut h, false);
        assert_eq!(names(&h), ["accept", "host"]);
    }

    #[test]
    fn tunnel_keeps_the_upgrade_handshake_only() {
        let mut h = map(&[
            ("host", "a.test"),
            ("connection", "Upgrade, x-secret"),
            ("x-secret", "1"),
            ("upgrade", "websocket"),
            ("sec-websocket-key", "abc"),
        ]);
        assert!(wants_upgrade(&h));
        strip_hop_by_hop(&mut h, true);
        assert_eq!(
            names(&h),
            ["connection", "host", "sec-websocket-key", "upgrade"]
        );
        assert_eq!(h[header::CONNECTION], "upgrade");
    }

    #[test]
    fn upgrade_needs_both_connection_token_and_upgrade_header() {
        assert!(!wants_upgrade(&map(&[("upgrade", "websocket")])));
        assert!(!wants_upgrade(&map(&[("connection", "upgrade")])));
        assert!(wants_upgrade(&map(&[
            ("connection", "keep-alive, UPGRADE"),
            ("upgrade", "h2c")
        ])));
    }

    /// `headers` as the upstream sees them: the client's remaining lines, then the
    /// proxy's, which must each be `name: value` and CRLF.
    fn sent(mut headers: HeaderMap, fwd: &Forwarded<'_>, ids: &RequestIds) -> HeaderMap {
        let (block, dropped) = rewrite_request(&mut headers, false, true, fwd, ids);
        assert_eq!(dropped, 0, "no underscored names in these tables");
        let block = String::from_utf8(block).unwrap();
        let lines = block.strip_suffix("\r\n").expect("ends with CRLF");
        for line in lines.split("\r\n") {
            let (name, value) = line.split_once(": ").expect("name: value");
            let name = HeaderName::from_bytes(name.as_bytes()).unwrap();
            assert!(!headers.contains_key(&name), "{name} sent twice");
            headers.append(name, HeaderValue::from_str(value).unwrap());
        }
        headers
    }

    #[test]
    fn forwarded_for_appends_and_the_rest_is_overwritten() {
        let ids = RequestIds::default();
        let host = HeaderValue::from_static("shop.test");
        let fwd = Forwarded {
            client: "192.0.2.7".parse().unwrap(),
            proto: "https",
            host: Some(&host),
            port: 8443,
        };
        let h = sent(
            map(&[
                ("x-forwarded-for", "198.51.100.1"),
                ("X-Forwarded-For", "10.0.0.1"),
                ("x-forwarded-proto", "http"),
                ("x-forwarded-host", "evil.test"),
                ("x-forwarded-port", "1"),
                ("x-real-ip", "203.0.113.9"),
                ("accept", "*/*"),
            ]),
            &fwd,
            &ids,
        );
        assert_eq!(h[&X_FORWARDED_FOR], "198.51.100.1, 192.0.2.7");
        assert_eq!(h.get_all(&X_FORWARDED_FOR).iter().count(), 1);
        assert_eq!(h[&X_REAL_IP], "192.0.2.7");
        assert_eq!(h[&X_FORWARDED_PROTO], "https");
        assert_eq!(h[&X_FORWARDED_HOST], "shop.test");
        assert_eq!(h[&X_FORWARDED_PORT], "8443");
        assert_eq!(h[header::ACCEPT], "*/*");
        assert_eq!(h[&X_REQUEST_ID].len(), 32);

        let fresh = sent(HeaderMap::new(), &Forwarded { host: None, ..fwd }, &ids);
        assert_eq!(fresh[&X_FORWARDED_FOR], "192.0.2.7");
        assert!(!fresh.contains_key(&X_FORWARDED_HOST));
        let blank = sent(map(&[("x-forwarded-for", " ")]), &fwd, &ids);
        assert_eq!(blank[&X_FORWARDED_FOR], "192.0.2.7");
    }

    #[test]
    fn names_with_underscores_are_dropped_unless_allowed() {
        let ids = RequestIds::default();
        let fwd = Forwarded {
            client: "192.0.2.7".parse().unwrap(),
            proto: "http",
            host: None,
            port: 80,
        };
        let client = || {
            map(&[
                ("x_forwarded_for", "6.6.6.6"),
                ("X_Real_IP", "6.6.6.6"),
                ("foo_bar", "1"),
                ("foo_bar", "2"),
                ("x-ok", "1"),
            ])
        };
        for (drop, want_dropped, want_names) in [
            (true, 4, &["x-ok"][..]),
            (
                false,
                0,
                &["foo_bar", "x-ok", "x_forwarded_for", "x_real_ip"][..],
            ),
        ] {
            let mut h = client();
            let (extra, dropped) = rewrite_request(&mut h, false, drop, &fwd, &ids);
            assert_eq!(dropped, want_dropped, "drop={drop}");
            assert_eq!(names(&h), want_names, "drop={drop}");
            let extra = String::from_utf8(extra).unwrap();
            assert!(extra.contains("x-forwarded-for: 192.0.2.7\r\n"), "{extra}");
        }
    }

    #[test]
    fn forwarding_headers_listed_in_connection_are_dropped_not_extended() {
        let ids = RequestIds::default();
        let fwd = Forwarded {
            client: "192.0.2.7".parse().unwrap(),
            proto: "http",
            host: None,
            port: 80,
        };
        let h = sent(
            map(&[
                ("connection", "x-forwarded-for, x-request-id"),
                ("x-forwarded-for", "198.51.100.1"),
                ("x-request-id", "abc"),
            ]),
            &fwd,
            &ids,
        );
        assert_eq!(h[&X_FORWARDED_FOR], "192.0.2.7");
        assert_ne!(h[&X_REQUEST_ID], "abc");
        assert!(!h.contains_key(header::CONNECTION));
    }

    #[test]
    fn request_id_is_kept_when_present_and_unique_when_generated() {
        let ids = RequestIds::default();
        let fwd = Forwarded {
            client: "::1".parse().unwrap(),
            proto: "http",
            host: None,
            port: 80,
        };
        let given = sent(map(&[("x-request-id", "abc")]), &fwd, &ids);
        assert_eq!(given[&X_REQUEST_ID], "abc");
        assert_eq!(given[&X_REAL_IP], "::1");
        let empty = sent(map(&[("x-request-id", "")]), &fwd, &ids);
        let (a, b) = (
            sent(HeaderMap::new(), &fwd, &ids),
            sent(HeaderMap::new(), &fwd, &ids),
        );
        for h in [&empty, &a, &b] {
            let id = h[&X_REQUEST_ID].to_str().unwrap();
            assert_eq!(id.len(), 32, "{id}");
            assert!(id.bytes().all(|c| c.is_ascii_hexdigit()), "{id}");
        }
        assert_ne!(a[&X_REQUEST_ID], b[&X_REQUEST_ID]);
        assert_ne!(empty[&X_REQUEST_ID], a[&X_REQUEST_ID]);
    }

    #[test]
    fn special_names_are_recognised_and_others_are_not() {
        for special in Special::HOP_BY_HOP
            .into_iter()
            .chain(Special::PROXY_SET)
            .chain([Special::Upgrade, Special::XRequestId])
        {
            assert_eq!(Special::of(&special.name()), Some(special));
        }
        for other in [
            "host",
            "accept",
            "x-forwarded",
            "x-forwarded-fox",
            "tee",
            "close",
        ] {
            assert_eq!(
                Special::of(&HeaderName::from_static(other)),
                None,
                "{other}"
            );
        }
    }

    #[test]
    fn client_addresses_and_ports_are_written_like_display() {
        for ip in [
            "0.0.0.0",
            "9.10.99.100",
            "192.0.2.7",
            "255.255.255.255",
            "10.0.0.1",
            "::1",
            "2001:db8::17",
            "::ffff:192.0.2.1",
            "ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff",
        ] {
            let ip: IpAddr = ip.parse().unwrap();
            assert_eq!(
                write_ip(ip, &mut [0; 64]),
                ip.to_string().as_bytes(),
                "{ip}"
            );
        }
        for n in [0u64, 7, 80, 443, 8080, 65535, 1_234_567_890, u64::MAX] {
            assert_eq!(write_decimal(n, &mut [0; 20]), n.to_string().as_bytes());
        }
    }

    #[test]
    fn connection_options_are_not_taken_for_header_names() {
        // `close`, `keep-alive` and `upgrade` are skipped without a lookup, but a header
        // of a listed name is removed all the same (RFC 9110 §7.6.1), `close` included.
        let mut h = map(&[
            ("connection", "close, , X-Hop ,keep-alive"),
            ("x-hop", "1"),
            ("close", "named like a connection option"),
            ("server", "nginx"),
        ]);
        strip_hop_by_hop(&mut h, false);
        assert_eq!(names(&h), ["server"]);
        let mut h = map(&[
            ("connection", "keep-alive"),
            ("close", "1"),
            ("server", "x"),
        ]);
        strip_hop_by_hop(&mut h, false);
        assert_eq!(names(&h), ["close", "server"]);
        let mut untouched = map(&[("server", "nginx"), ("content-length", "3")]);
        strip_hop_by_hop(&mut untouched, false);
        assert_eq!(names(&untouched), ["content-length", "server"]);
    }
}
