//! The one host a request is for (RFC 9112 §3.2, RFC 9113 §8.3.1). A proxy that routes on
//! one `Host` line and lets the upstream read another can be steered past its own rules, so
//! every ambiguity is refused here, and the router routes and forwards on the value this
//! returns. Pure: no IO, tested with tables.

use hyper::{
    HeaderMap, Uri, Version,
    header::{self, HeaderValue},
};

/// Why a request has no usable host. Each is a 400: the client's fault.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
pub enum HostError {
    /// More than one `Host` line (RFC 9112 §3.2: 400).
    #[error("more than one Host header")]
    Duplicate,
    /// HTTP/1.1 without `Host`, or HTTP/2 without `:authority` and `Host`.
    #[error("no Host header")]
    Missing,
    /// A host that is empty or not `host[:port]`.
    #[error("invalid host")]
    Invalid,
    /// HTTP/2 `:authority` and `host` differ (RFC 9113 §8.3.1).
    #[error("Host header differs from :authority")]
    Mismatch,
}

/// The validated `host[:port]` of a request, or `None` for an HTTP/1.0 request without one
/// (it routes as host-less).
///
/// - Any request with two `Host` lines is refused.
/// - HTTP/2 and later: `:authority` (hyper's URI authority) is the host; a `host` header
///   must equal it. Without `:authority`, `host` is used.
/// - HTTP/1: an absolute-form target's authority replaces `Host`; else `Host` is
///   required from HTTP/1.1 on.
pub fn request_host(
    version: Version,
    uri: &Uri,
    headers: &HeaderMap,
) -> Result<Option<HeaderValue>, HostError> {
    let mut lines = headers.get_all(header::HOST).iter();
    let host = lines.next();
    if lines.next().is_some() {
        return Err(HostError::Duplicate);
    }
    let authority = uri.authority().map(hyper::http::uri::Authority::as_str);
    if let Some(authority) = authority {
        if version >= Version::HTTP_2
            && host.is_some_and(|h| !h.as_bytes().eq_ignore_ascii_case(authority.as_bytes()))
        {
            return Err(HostError::Mismatch);
        }
        return validated(authority.as_bytes()).map(Some);
    }
    match host {
        Some(value) => validated(value.as_bytes()).map(Some),
        None if version <= Version::HTTP_10 => Ok(None),
        None => Err(HostError::Missing),
    }
}

/// `raw` as a header value if it is `uri-host [":" port]`: a reg-name, an IPv4 address or
/// a bracketed IPv6 literal, with an optional decimal port. No userinfo, no path.
fn validated(raw: &[u8]) -> Result<HeaderValue, HostError> {
    let (host, port) = split_port(raw).ok_or(HostError::Invalid)?;
    let host_ok = match host {
        [b'[', literal @ .., b']'] => std::str::from_utf8(literal)
            .ok()
            .is_some_and(|s| s.parse::<std::net::Ipv6Addr>().is_ok()),
        _ => !host.is_empty() && host.iter().all(|&b| is_reg_name_byte(b)),
    };
    let port_ok = port.is_none_or(|p| {
        !p.is_empty()
            && p.len() <= 5
            && p.iter().all(u8::is_ascii_digit)
            && std::str::from_utf8(p)
                .ok()
                .and_then(|p| p.parse::<u16>().ok())
                .is_some()
    });
    if !(host_ok && port_ok) {
        return Err(HostError::Invalid);
    }
    HeaderValue::from_bytes(raw).map_err(|_| HostError::Invalid)
}

/// `host` and the port after its last `:` (outside an IPv6 literal's brackets).
fn split_port(raw: &[u8]) -> Option<(&[u8], Option<&[u8]>)> {
    if raw.first() == Some(&b'[') {
        let close = raw.iter().position(|&b| b == b']')?;
        let (host, rest) = raw.split_at(close + 1);
        return match rest {
            [] => Some((host, None)),
            [b':', port @ ..] => Some((host, Some(port))),
            _ => None,
        };
    }
    match raw.iter().rposition(|&b| b == b':') {
        Some(i) => Some((&raw[..i], Some(&raw[i + 1..]))),
        None => Some((raw, None)),
    }
}

/// RFC 3986 reg-name: unreserved, pct-encoded (its `%` and hex digits) and sub-delims.
fn is_reg_name_byte(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b"-._~%!$&'()*+,;=".contains(&b)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A table row: target, `Host` lines, the host expected.
    type Row = (
        &'static str,
        &'static [&'static [u8]],
        Result<Option<String>, HostError>,
    );

    fn check(version: Version, target: &str, hosts: &[&[u8]]) -> Result<Option<String>, HostError> {
        let uri: Uri = target.parse().unwrap();
        let mut headers = HeaderMap::new();
        for h in hosts {
            headers.append(header::HOST, HeaderValue::from_bytes(h).unwrap());
        }
        request_host(version, &uri, &headers).map(|h| h.map(|v| v.to_str().unwrap().to_owned()))
    }

    #[test]
    fn http1_requests_need_exactly_one_valid_host_rfc_9112_section_3_2() {
        use HostError::*;
        let v11 = Version::HTTP_11;
        let ok = |s: &str| Ok(Some(s.to_owned()));
        let table: &[Row] = &[
            ("/", &[b"a.test"], ok("a.test")),
            ("/", &[b"A.Test:8080"], ok("A.Test:8080")),
            ("/", &[b"10.0.0.1"], ok("10.0.0.1")),
            ("/", &[b"[::1]:80"], ok("[::1]:80")),
            ("/", &[b"[::1]"], ok("[::1]")),
            ("/", &[b"xn--bcher-kva.test"], ok("xn--bcher-kva.test")),
            ("/", &[], Err(Missing)),
            ("/", &[b"a.test", b"a.test"], Err(Duplicate)),
            ("/", &[b"a.test", b"b.test"], Err(Duplicate)),
            ("/", &[b""], Err(Invalid)),
            ("/", &[b"a b"], Err(Invalid)),
            ("/", &[b"user@a.test"], Err(Invalid)),
            ("/", &[b"a.test/x"], Err(Invalid)),
            ("/", &[b"a.test:port"], Err(Invalid)),
            ("/", &[b"a.test:"], Err(Invalid)),
            ("/", &[b"a.test:65536"], Err(Invalid)),
            ("/", &[b":80"], Err(Invalid)),
            ("/", &[b"[::1"], Err(Invalid)),
            ("/", &[b"[nope]"], Err(Invalid)),
            ("/", &[b"[::1]x"], Err(Invalid)),
            ("/", &[b"a\"b"], Err(Invalid)),
            // The absolute-form target's authority replaces Host, whatever Host says.
            ("http://web.test/x", &[b"other.test"], ok("web.test")),
            ("http://web.test:81/x", &[], ok("web.test:81")),
            ("http://web.test/x", &[b"a", b"b"], Err(Duplicate)),
            ("http://u@web.test/x", &[], Err(Invalid)),
        ];
        for (target, hosts, want) in table {
            assert_eq!(&check(v11, target, hosts), want, "{target} {hosts:?}");
        }
    }

    #[test]
    fn http10_may_omit_host_but_not_send_a_bad_one() {
        assert_eq!(check(Version::HTTP_10, "/", &[]), Ok(None));
        assert_eq!(
            check(Version::HTTP_10, "/", &[b"a b"]),
            Err(HostError::Invalid)
        );
        assert_eq!(
            check(Version::HTTP_10, "/", &[b"a.test"]),
            Ok(Some("a.test".into()))
        );
    }

    #[test]
    fn http2_authority_is_the_host_and_host_must_agree_rfc_9113_section_8_3_1() {
        use HostError::*;
        let v2 = Version::HTTP_2;
        let ok = |s: &str| Ok(Some(s.to_owned()));
        let table: &[Row] = &[
            ("http://web.test/", &[], ok("web.test")),
            ("http://web.test/", &[b"web.test"], ok("web.test")),
            ("http://web.test/", &[b"WEB.test"], ok("web.test")),
            ("http://web.test/", &[b"other.test"], Err(Mismatch)),
            ("http://web.test/", &[b"web.test:80"], Err(Mismatch)),
            ("/", &[b"web.test"], ok("web.test")),
            ("/", &[], Err(Missing)),
            ("/", &[b"a", b"a"], Err(Duplicate)),
        ];
        for (target, hosts, want) in table {
            assert_eq!(&check(v2, target, hosts), want, "{target} {hosts:?}");
        }
    }
}
