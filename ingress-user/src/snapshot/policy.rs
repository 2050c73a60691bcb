//! What an Ingress's annotations ask of the requests its paths match: a typed value read by
//! the router, never text passed anywhere. Parsed by `config::annotations`. Pure.

pub mod cors;
pub mod mirror;

use std::{fmt, net::IpAddr, str::FromStr, sync::Arc, time::Duration};

use hyper::header::{HeaderName, HeaderValue};

use super::{affinity::Affinity, canary::CanaryRules};
use super::{
    client_auth::{AuthTls, ClientAuth},
    htpasswd::Htpasswd,
    rate_limit::{LimitSettings, RateLimit},
    upstream_tls::{BackendProtocol, ProxySsl, UpstreamTls},
};

/// An IPv4 or IPv6 network, host bits cleared (`10.1.2.3/8` is `10.0.0.0/8`); a bare
/// address is a `/32` or `/128`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Cidr {
    addr: IpAddr,
    len: u8,
}

/// Why a CIDR did not parse.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("{0:?} is not an IP address or network (expected e.g. 10.0.0.0/8 or 2001:db8::/32)")]
pub struct CidrError(pub String);

impl FromStr for Cidr {
    type Err = CidrError;

    fn from_str(s: &str) -> Result<Self, CidrError> {
        let err = || CidrError(s.to_owned());
        let (addr, len) = match s.split_once('/') {
            Some((a, l)) => {
                let addr: IpAddr = a.parse().map_err(|_| err())?;
                // Digits only: `u8::from_str` would take `+8`.
                if l.is_empty() || l.len() > 3 || !l.bytes().all(|b| b.is_ascii_digit()) {
                    return Err(err());
                }
                (addr, l.parse::<u8>().map_err(|_| err())?)
            }
            None => {
                let addr: IpAddr = s.parse().map_err(|_| err())?;
                (addr, if addr.is_ipv4() { 32 } else { 128 })
            }
        };
        let max = if addr.is_ipv4() { 32 } else { 128 };
        if len > max {
            return Err(err());
        }
        let addr = match addr {
            IpAddr::V4(a) => IpAddr::V4((u32::from(a) & mask(len, 32) as u32).into()),
            IpAddr::V6(a) => IpAddr::V6((u128::from(a) & mask(len, 128)).into()),
        };
        Ok(Self { addr, len })
    }
}

/// The top `len` of `width` bits set.
fn mask(len: u8, width: u32) -> u128 {
    if len == 0 {
        0
    } else {
        (u128::MAX << (width - u32::from(len))) & (u128::MAX >> (128 - width))
    }
}

impl Cidr {
    /// Whether `ip` is in this network. IPv4-mapped IPv6 addresses (`::ffff:10.0.0.1`)
    /// count as their IPv4 address, as a dual-stack listener reports IPv4 clients so.
    pub fn contains(&self, ip: IpAddr) -> bool {
        match (self.addr, ip.to_canonical()) {
            (IpAddr::V4(net), IpAddr::V4(ip)) => {
                u32::from(ip) & mask(self.len, 32) as u32 == u32::from(net)
            }
            (IpAddr::V6(net), IpAddr::V6(ip)) => {
                u128::from(ip) & mask(self.len, 128) == u128::from(net)
            }
            _ => false,
        }
    }
}

impl fmt::Display for Cidr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.addr, self.len)
    }
}

/// The per-Ingress policy of its routes. The default asks for nothing.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct RoutePolicy {
    /// `ssl-redirect`: redirect plain HTTP to HTTPS when the host is listed in a `tls`
    /// entry; `None` follows the global `--no-ssl-redirect`.
    pub ssl_redirect: Option<bool>,
    /// `force-ssl-redirect`: redirect plain HTTP to HTTPS even when the host has no `tls`
    /// entry.
    pub force_ssl_redirect: bool,
    /// `allowlist-source-range` (alias `whitelist-source-range`): when set, only these
    /// client networks are served; others get 403.
    pub allow: Option<Vec<Cidr>>,
    /// `denylist-source-range`: these client networks get 403 (checked before `allow`,
    /// as nginx's `deny` lines come first).
    pub deny: Vec<Cidr>,
    /// An access annotation was present but had no usable value: rather than serve without
    /// the restriction, every request gets 503 (ingress-nginx's "location denied").
    pub denied: bool,
    /// `use-regex`: this Ingress's paths are regular expressions. Makes every path of its
    /// hosts a case-insensitive regex anchored at the start (decided per host by the merge).
    pub use_regex: bool,
    /// `rewrite-target`: the path sent upstream, with `$1`..`$9` replaced by the captures
    /// of the matched path's regex (also makes the host's paths regexes, unless it equals
    /// the path).
    pub rewrite_target: Option<String>,
    /// `app-root`: a request for `/` is redirected (302) here.
    pub app_root: Option<String>,
    /// `x-forwarded-prefix`: sent upstream as `X-Forwarded-Prefix`.
    pub x_forwarded_prefix: Option<String>,
    /// `proxy-body-size` in bytes, instead of `--max-body-bytes`; `Some(0)`: unlimited.
    pub proxy_body_size: Option<u64>,
    /// `proxy-connect-timeout`, instead of `--upstream-connect-timeout`.
    pub proxy_connect_timeout: Option<Duration>,
    /// `proxy-read-timeout`: waiting for the response head and within its body, instead
    /// of `--upstream-response-timeout`.
    pub proxy_read_timeout: Option<Duration>,
    /// `proxy-send-timeout`: each blocked write of the request body, instead of
    /// `--upstream-response-timeout`.
    pub proxy_send_timeout: Option<Duration>,
    /// `temporal-redirect`: every request of the route is answered 302 to this URL.
    pub temporal_redirect: Option<String>,
    /// `permanent-redirect`: every request of the route is answered with a redirect to
    /// this URL (unless `temporal-redirect` is set too, which wins as in ingress-nginx).
    pub permanent_redirect: Option<String>,
    /// `permanent-redirect-code` (300 to 308; otherwise 301).
    pub permanent_redirect_code: Option<u16>,
    /// `upstream-vhost`: the `Host` sent upstream instead of the client's.
    pub upstream_vhost: Option<String>,
    /// `ssl-passthrough`: TLS connections whose SNI is a host of this Ingress are passed,
    /// not terminated, to the backend of the host's `/` path (`snapshot::passthrough`).
    pub ssl_passthrough: bool,
    /// `enable-cors` and `cors-*` (present only when enabled).
    pub cors: Option<Arc<cors::Cors>>,
    /// `custom-headers`: the ConfigMap named, as (namespace if given, name); its data
    /// become [`Self::response_headers`] when the Ingress is translated.
    pub custom_headers: Option<(Option<String>, String)>,
    /// The `custom-headers` ConfigMap's data: set on every response of the route.
    pub response_headers: Vec<(HeaderName, HeaderValue)>,
    /// `server-alias`: more host names for the Ingress's first host. Moved out of the
    /// policy when the Ingress is translated (routing, not per-request policy).
    pub server_alias: Vec<String>,
    /// `default-backend`: the Service named (in the Ingress's namespace), resolved into
    /// [`Self::default_backend`] when the Ingress is translated.
    pub default_backend_service: Option<String>,
    /// Its first port: answers instead of a route's Service that has no endpoints, and
    /// the `custom-http-errors` pages (instead of the global default backend).
    pub default_backend: Option<Arc<super::routes::Backend>>,
    /// `custom-http-errors`: upstream statuses replaced by the default backend's answer
    /// to a request describing the error (`X-Code`, ...); sorted.
    pub custom_http_errors: Vec<u16>,
    /// `service-upstream`: forward to the Service's ClusterIP and port (kube-proxy
    /// balances) instead of its endpoints.
    pub service_upstream: bool,
    /// `client-body-buffer-size`: request bodies up to this many bytes are read whole
    /// before an upstream connection is taken (longer ones stream), instead of
    /// `--client-body-buffer-size`. nginx writes longer bodies to a temporary file;
    /// nothing is written to disk here.
    pub client_body_buffer_size: Option<usize>,
    /// `mirror-target`: copies of the route's requests go here, fire and forget; resolved
    /// into [`Self::mirror_backend`] when the Ingress is translated.
    pub mirror_target: Option<mirror::MirrorTarget>,
    /// `mirror-host`: the copies' `Host` (default: the target URL's).
    pub mirror_host: Option<HeaderValue>,
    /// `mirror-request-body: off`: copies go without the request body.
    pub mirror_skip_body: bool,
    /// Where the copies go: the target's address, or its Service's endpoints.
    pub mirror_backend: Option<Arc<super::routes::Backend>>,
    /// `backend-protocol`: HTTP (the Service port's `appProtocol` decides), HTTPS, GRPC
    /// (h2c) or GRPCS (HTTP/2 over TLS).
    pub backend_protocol: BackendProtocol,
    /// The `proxy-ssl-*` annotations, when `proxy-ssl-secret` is set.
    pub proxy_ssl: Option<ProxySsl>,
    /// The TLS client of HTTPS and GRPCS upstreams, resolved from `proxy_ssl` and its
    /// Secret by the translation (`None` until then, and for cleartext protocols).
    pub upstream_tls: Option<Arc<UpstreamTls>>,
    /// The `auth-tls-*` annotations, when `auth-tls-secret` is set.
    pub auth_tls: Option<AuthTls>,
    /// The client certificate requirement of this Ingress's hosts, resolved from
    /// `auth_tls` and its Secret by the translation.
    pub client_auth: Option<Arc<ClientAuth>>,
    /// `affinity: cookie` and its `session-cookie-*` settings.
    pub affinity: Option<Box<Affinity>>,
    /// `canary: "true"` and its `canary-*` rules: this Ingress's paths are alternatives
    /// of a main Ingress's same paths (see `config::ingress::merge_host`).
    pub canary: Option<Arc<CanaryRules>>,
    /// `auth-type: basic` with a usable `auth-secret`: requests need one of its users.
    /// (Unusable auth configuration sets `denied` instead: fail closed.)
    pub basic_auth: Option<Arc<BasicAuth>>,
    /// `limit-rps`, `limit-rpm`, `limit-connections`, `limit-burst-multiplier`,
    /// `limit-whitelist` as read; the translation turns them into `rate_limit`.
    pub limit_settings: LimitSettings,
    /// The Ingress's limits and their per-client state (see [`super::rate_limit`]).
    pub rate_limit: Option<Arc<RateLimit>>,
}

/// `auth-type: basic`: the users of the `auth-secret` and the realm of the challenge.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct BasicAuth {
    /// `auth-realm`, sent as `WWW-Authenticate: Basic realm="<realm>"`.
    pub realm: String,
    /// The users and their password hashes.
    pub users: Htpasswd,
}

/// What [`RoutePolicy::access`] decides for a client.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Access {
    /// Served.
    Allowed,
    /// 403: in the denylist, or not in the allowlist.
    Forbidden,
    /// 503: the access annotations are unusable (fail closed).
    Denied,
}

impl RoutePolicy {
    /// Whether this policy asks for nothing (the shared default).
    pub fn is_default(&self) -> bool {
        *self == Self::default()
    }

    /// The session affinity in force, if `affinity: cookie`.
    pub fn affinity(&self) -> Option<&Affinity> {
        self.affinity.as_deref().filter(|a| a.enabled)
    }

    /// The canary rules, if this is a canary Ingress's policy.
    pub fn canary_rules(&self) -> Option<&Arc<CanaryRules>> {
        self.canary.as_ref().filter(|c| c.enabled)
    }

    /// Whether `path` (a rule's path as written) needs ingress-nginx's rewrite: a target
    /// is set and differs from it.
    pub fn rewrites(&self, path: &str) -> bool {
        self.rewrite_target.as_deref().is_some_and(|t| t != path)
    }

    /// Whether this policy makes its host's paths regexes (`use-regex`, or a rewrite of
    /// `path`).
    pub fn wants_regex(&self, path: &str) -> bool {
        self.use_regex || self.rewrites(path)
    }

    /// The request body limit: `proxy-body-size` if set (0 is unlimited), else `global`
    /// (`--max-body-bytes`).
    pub fn body_limit(&self, global: Option<u64>) -> Option<u64> {
        match self.proxy_body_size {
            Some(0) => None,
            Some(n) => Some(n),
            None => global,
        }
    }

    /// Whether any `proxy-*-timeout` is set.
    pub fn has_timeouts(&self) -> bool {
        self.proxy_connect_timeout.is_some()
            || self.proxy_read_timeout.is_some()
            || self.proxy_send_timeout.is_some()
    }

    /// Whether a client at `ip` may use the route.
    pub fn access(&self, ip: IpAddr) -> Access {
        if self.denied {
            return Access::Denied;
        }
        if self.deny.iter().any(|c| c.contains(ip)) {
            return Access::Forbidden;
        }
        match &self.allow {
            Some(allow) if !allow.iter().any(|c| c.contains(ip)) => Access::Forbidden,
            _ => Access::Allowed,
        }
    }

    /// The redirect every request of the route gets, as (status, URL): `temporal-redirect`
    /// (302) first, then `permanent-redirect` (its code, default 301), the order
    /// ingress-nginx's redirect parser checks them in.
    pub fn fixed_redirect(&self) -> Option<(u16, &str)> {
        if let Some(url) = &self.temporal_redirect {
            return Some((302, url));
        }
        let url = self.permanent_redirect.as_deref()?;
        Some((self.permanent_redirect_code.unwrap_or(301), url))
    }

    /// Whether a plain-HTTP request should be redirected to HTTPS: `tls_host` is whether
    /// the host is listed in a `tls` entry, `global` is `--no-ssl-redirect`'s opposite.
    pub fn redirects(&self, tls_host: bool, global: bool) -> bool {
        self.force_ssl_redirect || (tls_host && self.ssl_redirect.unwrap_or(global))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    #[test]
    fn cidrs_parse_mask_and_match_v4_and_v6() {
        for (cidr, shown, inside, outside) in [
            ("18.0.0.0/8", "18.0.0.0/8", "18.255.0.1", "19.0.0.1"),
            ("10.1.2.3/8", "10.0.0.0/8", "10.9.9.9", "11.0.0.0"),
            ("127.0.0.2", "127.0.0.2/32", "127.0.0.2", "127.0.0.3"),
            ("0.0.0.0/0", "0.0.0.0/0", "1.2.3.4", "::1"),
            (
                "2001:db8::/32",
                "2001:db8::/32",
                "2001:db8:1::1",
                "2001:db9::1",
            ),
            ("::1", "::1/128", "::1", "::2"),
            (
                "10.0.0.0/8",
                "10.0.0.0/8",
                "::ffff:10.0.0.1",
                "::ffff:11.0.0.1",
            ),
        ] {
            let c: Cidr = cidr.parse().unwrap();
            assert_eq!(c.to_string(), shown, "{cidr}");
            assert!(c.contains(ip(inside)), "{cidr} contains {inside}");
            assert!(!c.contains(ip(outside)), "{cidr} excludes {outside}");
        }
    }

    #[test]
    fn bad_cidrs_are_refused() {
        for bad in [
            "",
            "10.0.0.0/",
            "10.0.0.0/33",
            "::/129",
            "10.0.0.0/+8",
            "10.0.0/8",
            "host",
            "1.2.3.4/8/8",
        ] {
            assert!(bad.parse::<Cidr>().is_err(), "{bad:?}");
        }
    }

    #[test]
    fn access_checks_deny_before_allow_and_fails_closed() {
        let c = |s: &str| s.parse::<Cidr>().unwrap();
        let p = RoutePolicy {
            allow: Some(vec![c("17.0.0.0/8"), c("18.0.0.0/8")]),
            deny: vec![c("18.1.0.0/16")],
            ..RoutePolicy::default()
        };
        for (client, want) in [
            ("17.0.0.1", Access::Allowed),
            ("18.2.0.1", Access::Allowed),
            ("18.1.0.1", Access::Forbidden),
            ("19.0.0.1", Access::Forbidden),
            ("::1", Access::Forbidden),
        ] {
            assert_eq!(p.access(ip(client)), want, "{client}");
        }
        assert_eq!(
            RoutePolicy::default().access(ip("1.2.3.4")),
            Access::Allowed
        );
        let denied = RoutePolicy {
            denied: true,
            ..RoutePolicy::default()
        };
        assert_eq!(denied.access(ip("1.2.3.4")), Access::Denied);
    }

    #[test]
    fn redirects_follow_force_then_annotation_then_global() {
        for (ssl, force, tls_host, global, want) in [
            (None, false, true, true, true),
            (None, false, true, false, false),
            (None, false, false, true, false),
            (Some(false), false, true, true, false),
            (Some(true), false, true, false, true),
            (Some(true), false, false, true, false),
            (None, true, false, false, true),
            (Some(false), true, false, true, true),
        ] {
            let p = RoutePolicy {
                ssl_redirect: ssl,
                force_ssl_redirect: force,
                ..RoutePolicy::default()
            };
            assert_eq!(
                p.redirects(tls_host, global),
                want,
                "{ssl:?} {force} {tls_host} {global}"
            );
        }
    }
}
