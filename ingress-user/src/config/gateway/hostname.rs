//! Gateway API hostnames: validation and the intersection of a listener's hostname with a
//! route's. A `*.` wildcard here matches one or more labels (`*.example.com` matches
//! `a.b.example.com` but not `example.com`), unlike an Ingress wildcard.

/// Why a hostname is refused.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum HostnameError {
    /// Empty.
    #[error("hostname is empty")]
    Empty,
    /// An IP address (the spec forbids them).
    #[error("{0:?} is an IP address; hostnames must be DNS names")]
    IpAddress(String),
    /// Not an RFC 1123 name (optionally with a leading `*.` label).
    #[error(
        "{0:?} is not a valid hostname (lowercase RFC 1123 labels, optionally a leading \"*.\")"
    )]
    Invalid(String),
}

/// Validates a listener or route hostname, returning it lowercased.
pub fn validate(host: &str) -> Result<String, HostnameError> {
    if host.is_empty() {
        return Err(HostnameError::Empty);
    }
    if host.parse::<std::net::IpAddr>().is_ok() {
        return Err(HostnameError::IpAddress(host.to_owned()));
    }
    let lower = host.to_ascii_lowercase();
    let rest = lower.strip_prefix("*.").unwrap_or(&lower);
    let label_ok = |l: &str| {
        !l.is_empty()
            && l.len() <= 63
            && l.bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
            && !l.starts_with('-')
            && !l.ends_with('-')
    };
    if rest.is_empty() || lower.len() > 253 || !rest.split('.').all(label_ok) {
        return Err(HostnameError::Invalid(host.to_owned()));
    }
    Ok(lower)
}

/// Whether the wildcard `pattern` (`*.suffix`) or exact name matches `host` (no wildcard).
pub fn matches(pattern: &str, host: &str) -> bool {
    match pattern.strip_prefix('*') {
        // ".example.com": one or more labels before it.
        Some(suffix) => host.len() > suffix.len() && host.ends_with(suffix),
        None => pattern == host,
    }
}

/// The hostnames a route serves on a listener: the intersection of the listener's hostname
/// (`None`: any) with the route's (`[]`: any). `Some(vec![])` never occurs: `None` means no
/// intersection, and a result of `[None]` means "every host".
///
/// Per the spec: a route hostname and a listener hostname intersect when one matches the
/// other, and the more specific of the two is the one served (`*.example.com` on the
/// listener and `foo.example.com` on the route serve `foo.example.com`).
pub fn intersect(listener: Option<&str>, route: &[String]) -> Option<Vec<Option<String>>> {
    match (listener, route.is_empty()) {
        (None, true) => Some(vec![None]),
        (None, false) => Some(route.iter().map(|h| Some(h.clone())).collect()),
        (Some(l), true) => Some(vec![Some(l.to_owned())]),
        (Some(l), false) => {
            let mut out: Vec<Option<String>> = Vec::new();
            for r in route {
                let served = if l == r || (!r.starts_with('*') && matches(l, r)) {
                    Some(r.clone())
                } else if !l.starts_with('*') && matches(r, l) {
                    Some(l.to_owned())
                } else if l.starts_with('*') && r.starts_with('*') {
                    // Both wildcards: the longer suffix, if it is within the other.
                    let (ls, rs) = (&l[1..], &r[1..]);
                    if rs.ends_with(ls) {
                        Some(r.clone())
                    } else if ls.ends_with(rs) {
                        Some(l.to_owned())
                    } else {
                        None
                    }
                } else {
                    None
                };
                if let Some(h) = served.map(Some)
                    && !out.contains(&h)
                {
                    out.push(h);
                }
            }
            (!out.is_empty()).then_some(out)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn validation_table() {
        for (host, ok) in [
            ("example.com", true),
            ("Example.COM", true),
            ("*.example.com", true),
            ("a-b.c1.example", true),
            ("", false),
            ("*", false),
            ("foo.*.com", false),
            ("10.0.0.1", false),
            ("-a.com", false),
            ("a_b.com", false),
            ("a..com", false),
        ] {
            assert_eq!(validate(host).is_ok(), ok, "{host:?}: {:?}", validate(host));
        }
        assert_eq!(validate("Example.COM").unwrap(), "example.com");
    }

    #[test]
    fn wildcards_match_one_or_more_labels() {
        for (pattern, host, want) in [
            ("*.example.com", "foo.example.com", true),
            ("*.example.com", "foo.bar.example.com", true),
            ("*.example.com", "example.com", false),
            ("*.example.com", "fooexample.com", false),
            ("example.com", "example.com", true),
            ("example.com", "foo.example.com", false),
        ] {
            assert_eq!(matches(pattern, host), want, "{pattern} vs {host}");
        }
    }

    /// From the spec's Listener.hostname and HTTPRoute.hostnames docs and the conformance
    /// test HTTPRouteHostnameIntersection.
    #[test]
    fn intersection_table() {
        let s = |v: &[&str]| v.iter().map(|h| (*h).to_owned()).collect::<Vec<_>>();
        let some = |v: &[&str]| Some(v.iter().map(|h| Some((*h).to_owned())).collect::<Vec<_>>());
        for (listener, route, want) in [
            (None, s(&[]), Some(vec![None])),
            (None, s(&["a.com"]), some(&["a.com"])),
            (Some("a.com"), s(&[]), some(&["a.com"])),
            (Some("a.com"), s(&["a.com", "b.com"]), some(&["a.com"])),
            (Some("a.com"), s(&["b.com"]), None),
            (
                Some("*.example.com"),
                s(&["foo.example.com", "example.com"]),
                some(&["foo.example.com"]),
            ),
            (
                Some("foo.example.com"),
                s(&["*.example.com"]),
                some(&["foo.example.com"]),
            ),
            (
                Some("*.example.com"),
                s(&["*.foo.example.com"]),
                some(&["*.foo.example.com"]),
            ),
            (
                Some("*.foo.example.com"),
                s(&["*.example.com"]),
                some(&["*.foo.example.com"]),
            ),
            (Some("*.example.com"), s(&["*.example.net"]), None),
            (
                Some("very.specific.com"),
                s(&["*.specific.com"]),
                some(&["very.specific.com"]),
            ),
        ] {
            assert_eq!(
                intersect(listener, &route),
                want,
                "listener {listener:?} route {route:?}"
            );
        }
    }
}
