//! Header rewriting between client and upstream: hop-by-hop removal, the `X-Forwarded-*`
//! family, `X-Real-IP` and `X-Request-ID`.

use std::{
    hash::{BuildHasher as _, RandomState},
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

/// Hop-by-hop headers that are always removed (RFC 9110 §7.6.1, plus the legacy ones).
static HOP_BY_HOP: [HeaderName; 8] = [
    header::CONNECTION,
    HeaderName::from_static("keep-alive"),
    HeaderName::from_static("proxy-connection"),
    header::PROXY_AUTHENTICATE,
    header::PROXY_AUTHORIZATION,
    header::TE,
    header::TRAILER,
    header::TRANSFER_ENCODING,
];

/// Whether these (HTTP/1) headers ask for a protocol upgrade: `Connection` lists `upgrade`
/// and an `Upgrade` header is present.
pub fn wants_upgrade(headers: &HeaderMap) -> bool {
    headers.contains_key(header::UPGRADE) && connection_lists(headers, "upgrade")
}

/// Whether a `Connection` header lists `token` (case-insensitive).
pub fn connection_lists(headers: &HeaderMap, token: &str) -> bool {
    headers
        .get_all(header::CONNECTION)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .any(|t| t.trim().eq_ignore_ascii_case(token))
}

/// Removes hop-by-hop headers: `Connection` and every header it lists, `Keep-Alive`, `TE`,
/// `Trailer`, `Transfer-Encoding`, `Proxy-*`, and `Upgrade`. With `tunnel`, the upgrade
/// handshake (`Upgrade` and `Connection: upgrade`) is kept so it reaches the other side.
pub fn strip_hop_by_hop(headers: &mut HeaderMap, tunnel: bool) {
    // Most messages carry none: one pass of cheap comparisons instead of a lookup each.
    if !headers
        .keys()
        .any(|k| *k == header::UPGRADE || HOP_BY_HOP.contains(k))
    {
        return;
    }
    let listed: Vec<HeaderName> = headers
        .get_all(header::CONNECTION)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .filter_map(|t| HeaderName::from_bytes(t.trim().as_bytes()).ok())
        .collect();
    for name in listed {
        if !(tunnel && name == header::UPGRADE) {
            headers.remove(name);
        }
    }
    for name in &HOP_BY_HOP {
        headers.remove(name);
    }
    if tunnel {
        headers.insert(header::CONNECTION, HeaderValue::from_static("upgrade"));
    } else {
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

/// Sets `X-Forwarded-Proto/Host/Port` and `X-Real-IP`, and appends the client to
/// `X-Forwarded-For` (keeping what earlier proxies wrote).
pub fn add_forwarded(headers: &mut HeaderMap, fwd: &Forwarded<'_>) {
    let client = fwd.client.to_string();
    let xff = match headers.get(&X_FORWARDED_FOR).and_then(|v| v.to_str().ok()) {
        Some(prev) if !prev.trim().is_empty() => {
            HeaderValue::try_from(format!("{prev}, {client}")).ok()
        }
        _ => None,
    };
    // Several X-Forwarded-For lines are one list; the first was extended above (like
    // nginx's $proxy_add_x_forwarded_for), and the others go.
    headers.remove(&X_FORWARDED_FOR);
    if let Ok(client) = HeaderValue::try_from(client) {
        headers.insert(
            X_FORWARDED_FOR.clone(),
            xff.unwrap_or_else(|| client.clone()),
        );
        headers.insert(X_REAL_IP.clone(), client);
    }
    headers.insert(
        X_FORWARDED_PROTO.clone(),
        HeaderValue::from_static(fwd.proto),
    );
    match fwd.host {
        Some(h) => {
            headers.insert(X_FORWARDED_HOST.clone(), h.clone());
        }
        None => {
            headers.remove(&X_FORWARDED_HOST);
        }
    }
    headers.insert(X_FORWARDED_PORT.clone(), HeaderValue::from(fwd.port));
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
    /// Keeps a client's `X-Request-ID`, or sets a new one. Returns the id in force.
    pub fn ensure(&self, headers: &mut HeaderMap) -> HeaderValue {
        if let Some(v) = headers.get(&X_REQUEST_ID).filter(|v| !v.is_empty()) {
            return v.clone();
        }
        let n = self.next.fetch_add(1, Ordering::Relaxed);
        let mut hex = [0u8; 32];
        for (i, digit) in hex.iter_mut().enumerate() {
            let word = if i < 16 { self.prefix } else { n };
            let nibble = (word >> (60 - 4 * (i % 16))) & 0xf;
            *digit = b"0123456789abcdef"[nibble as usize];
        }
        let id = HeaderValue::from_bytes(&hex).unwrap_or(HeaderValue::from_static("0"));
        headers.insert(X_REQUEST_ID.clone(), id.clone());
        id
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

    #[test]
    fn forwarded_for_appends_and_the_rest_is_overwritten() {
        let host = HeaderValue::from_static("shop.test");
        let fwd = Forwarded {
            client: "192.0.2.7".parse().unwrap(),
            proto: "https",
            host: Some(&host),
            port: 8443,
        };
        let mut h = map(&[
            ("x-forwarded-for", "198.51.100.1"),
            ("x-forwarded-proto", "http"),
            ("x-real-ip", "203.0.113.9"),
        ]);
        add_forwarded(&mut h, &fwd);
        assert_eq!(h[&X_FORWARDED_FOR], "198.51.100.1, 192.0.2.7");
        assert_eq!(h[&X_REAL_IP], "192.0.2.7");
        assert_eq!(h[&X_FORWARDED_PROTO], "https");
        assert_eq!(h[&X_FORWARDED_HOST], "shop.test");
        assert_eq!(h[&X_FORWARDED_PORT], "8443");

        let mut fresh = HeaderMap::new();
        add_forwarded(&mut fresh, &Forwarded { host: None, ..fwd });
        assert_eq!(fresh[&X_FORWARDED_FOR], "192.0.2.7");
        assert!(!fresh.contains_key(&X_FORWARDED_HOST));
    }

    #[test]
    fn request_id_is_kept_when_present_and_unique_when_generated() {
        let ids = RequestIds::default();
        let mut given = map(&[("x-request-id", "abc")]);
        assert_eq!(ids.ensure(&mut given), "abc");
        let (mut a, mut b) = (HeaderMap::new(), HeaderMap::new());
        let (ia, ib) = (ids.ensure(&mut a), ids.ensure(&mut b));
        assert_ne!(ia, ib);
        assert_eq!(ia.len(), 32);
        assert_eq!(a[&X_REQUEST_ID], ia);
    }
}
