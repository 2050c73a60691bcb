//! `enable-cors` and `cors-*`: which origins an Ingress's paths admit and the
//! `Access-Control-*` values answered to them, parsed once into header values. Pure.
//!
//! ingress-nginx's semantics (its `cors` annotation parser and the `CORS` template block):
//! an allowed origin (or `*`) gets every `Access-Control-*` header on every response of the
//! location, set over the upstream's own, and a preflight (`OPTIONS`) is answered 204 by
//! the proxy; a request from any other origin gets none of them and is proxied as is.

use hyper::header::HeaderValue;

/// ingress-nginx's `cors-allow-methods` default.
pub const DEFAULT_METHODS: &str = "GET, PUT, POST, DELETE, PATCH, OPTIONS";
/// ingress-nginx's `cors-allow-headers` default.
pub const DEFAULT_HEADERS: &str = "DNT,Keep-Alive,User-Agent,X-Requested-With,If-Modified-Since,Cache-Control,Content-Type,Range,Authorization";
/// ingress-nginx's `cors-max-age` default (20 days).
pub const DEFAULT_MAX_AGE: u32 = 1_728_000;

/// One `cors-allow-origin` entry: `scheme://host[:port]`, the host's first label possibly
/// `*` (one DNS label, as ingress-nginx's `[A-Za-z0-9\-]+`). Stored lowercase: nginx
/// compares with `~*` (case-insensitive).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct OriginPattern {
    /// `http://` or `https://`.
    scheme: String,
    /// The host's first label is `*`.
    wildcard: bool,
    /// After the scheme (and after `*.` for a wildcard): `host[:port]`.
    rest: String,
}

/// Why a `cors-allow-origin` entry was refused.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error(
    "{0:?} is not an origin (http:// or https://, a host whose first label may be *, an optional :port)"
)]
pub struct OriginError(pub String);

impl std::str::FromStr for OriginPattern {
    type Err = OriginError;

    /// ingress-nginx's `^(https?://(\*\.)?[A-Za-z0-9\-.]*(:\d+)?|\*)?$`, without the `*`
    /// and empty forms (the caller handles those) and with a non-empty host.
    fn from_str(s: &str) -> Result<Self, OriginError> {
        let err = || OriginError(s.to_owned());
        let lower = s.to_ascii_lowercase();
        let (scheme, after) = ["http://", "https://"]
            .iter()
            .find_map(|p| lower.strip_prefix(p).map(|rest| (*p, rest)))
            .ok_or_else(err)?;
        let (wildcard, rest) = match after.strip_prefix("*.") {
            Some(rest) => (true, rest),
            None => (false, after),
        };
        let (host, port) = match rest.split_once(':') {
            Some((h, p)) => (h, Some(p)),
            None => (rest, None),
        };
        let host_ok = !host.is_empty()
            && host
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'.');
        let port_ok = port.is_none_or(|p| !p.is_empty() && p.bytes().all(|b| b.is_ascii_digit()));
        if !host_ok || !port_ok {
            return Err(err());
        }
        Ok(Self {
            scheme: scheme.to_owned(),
            wildcard,
            rest: rest.to_owned(),
        })
    }
}

impl OriginPattern {
    /// Whether the `Origin` value matches, whole and case-insensitively.
    pub fn matches(&self, origin: &[u8]) -> bool {
        let Some(after) = strip_prefix_ci(origin, self.scheme.as_bytes()) else {
            return false;
        };
        if !self.wildcard {
            return after.eq_ignore_ascii_case(self.rest.as_bytes());
        }
        let label = after
            .iter()
            .take_while(|b| b.is_ascii_alphanumeric() || **b == b'-')
            .count();
        label > 0
            && after.get(label) == Some(&b'.')
            && after[label + 1..].eq_ignore_ascii_case(self.rest.as_bytes())
    }
}

fn strip_prefix_ci<'a>(s: &'a [u8], prefix: &[u8]) -> Option<&'a [u8]> {
    (s.len() >= prefix.len() && s[..prefix.len()].eq_ignore_ascii_case(prefix))
        .then(|| &s[prefix.len()..])
}

/// The origins admitted.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Origins {
    /// `*` (the default): every request, with or without `Origin`, gets
    /// `Access-Control-Allow-Origin: *`.
    Any,
    /// Only these; the matching `Origin` is echoed. Empty when every entry was invalid:
    /// then no origin is admitted (as ingress-nginx, which writes no match at all).
    List(Vec<OriginPattern>),
}

/// The CORS policy of an Ingress's paths.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Cors {
    /// `enable-cors`; the other annotations do nothing without it.
    pub enabled: bool,
    /// `cors-allow-origin`.
    pub origins: Origins,
    /// `cors-allow-methods`.
    pub methods: HeaderValue,
    /// `cors-allow-headers`.
    pub headers: HeaderValue,
    /// `cors-expose-headers` (none by default).
    pub expose: Option<HeaderValue>,
    /// `cors-allow-credentials` (default true: `Access-Control-Allow-Credentials: true`).
    pub credentials: bool,
    /// `cors-max-age`, seconds.
    pub max_age: u32,
}

impl Default for Cors {
    fn default() -> Self {
        Self {
            enabled: false,
            origins: Origins::Any,
            methods: HeaderValue::from_static(DEFAULT_METHODS),
            headers: HeaderValue::from_static(DEFAULT_HEADERS),
            expose: None,
            credentials: true,
            max_age: DEFAULT_MAX_AGE,
        }
    }
}

impl Cors {
    /// The `Access-Control-Allow-Origin` value for a request with this `Origin`, or `None`
    /// when the request gets no CORS headers.
    pub fn allow_origin(&self, origin: Option<&HeaderValue>) -> Option<HeaderValue> {
        match &self.origins {
            Origins::Any => Some(HeaderValue::from_static("*")),
            Origins::List(list) => {
                let origin = origin?;
                list.iter()
                    .any(|p| p.matches(origin.as_bytes()))
                    .then(|| origin.clone())
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cors(origins: &[&str]) -> Cors {
        Cors {
            enabled: true,
            origins: Origins::List(origins.iter().map(|o| o.parse().unwrap()).collect()),
            ..Cors::default()
        }
    }

    #[test]
    fn origins_parse_as_ingress_nginx_validates_them() {
        for (given, ok) in [
            ("https://origin.cors.com:8080", true),
            ("http://*.origin.cors.com", true),
            ("HTTP://Foo.COM", true),
            ("http://origin.com:8080", true),
            ("origin.cors.com:8080", false),
            ("foo.bar.com", false),
            ("ftp://foo.com", false),
            ("http://", false),
            ("http://foo.com:", false),
            ("http://foo.com/path", false),
            ("http://*.*.foo.com", false),
            ("http://foo.*.com", false),
            ("http://foo.com:80a", false),
            ("http://$host", false),
        ] {
            assert_eq!(given.parse::<OriginPattern>().is_ok(), ok, "{given}");
        }
    }

    /// cors.go's rows: (allowed origins, request Origin, echoed).
    #[test]
    fn origins_match_as_ingress_nginx_e2e_tests_expect() {
        for (allowed, origin, echoed) in [
            (
                &["https://origin.cors.com:8080"][..],
                "https://origin.cors.com:8080",
                true,
            ),
            (
                &["https://origin.cors.com:8080", "https://origin2.cors.com"],
                "https://origin.cors.com:8080",
                true,
            ),
            (
                &["http://origin2.cors.com", "https://origin.com"],
                "http://no.origin.com",
                false,
            ),
            (
                &["https://origin2.cors.com", "https://origin.com"],
                "https://origin.com",
                true,
            ),
            (&["https://foo.bar.com"], "https://fooxbar.com", false),
            (
                &["http://origin.cors.com:8080", "http://origin.com:8080"],
                "http://origin.com:8080",
                true,
            ),
            (
                &["https://origin2.cors.com", "http://origin.com"],
                "http://origin.com:8080",
                false,
            ),
            (
                &["http://origin.cors.com:8080", "http://origin.com:8080"],
                "http://origin.com",
                false,
            ),
            (
                &["http://*.origin.cors.com", "http://*.origin.com:8080"],
                "http://foo.origin.cors.com",
                true,
            ),
            (
                &["http://*.origin.cors.com", "http://*.origin.com:8080"],
                "http://bar-foo.origin.cors.com",
                true,
            ),
            (
                &["http://*.origin.cors.com", "http://*.origin.com:8080"],
                "http://bar.foo.origin.cors.com",
                false,
            ),
            (
                &["http://origin.cors.com:8080", "http://*.origin.com:8080"],
                "http://abc.origin.com:8080",
                true,
            ),
            (
                &["http://origin.cors.com:8080", "http://*.origin.com:8080"],
                "http://abc.origin.com",
                false,
            ),
            (
                &["http://origin.cors.com:8080", "http://*.origin.com:8080"],
                "http://origin.com:8080",
                false,
            ),
            // nginx's ~* is case-insensitive; the origin is echoed as sent.
            (&["https://Origin.com"], "HTTPS://ORIGIN.com", true),
            // Whole-value match (ingress-nginx's regex is anchored only at the end).
            (
                &["https://origin.com"],
                "https://evil.comhttps://origin.com",
                false,
            ),
            (&["http://*.origin.com"], "http://.origin.com", false),
        ] {
            let c = cors(allowed);
            let origin = HeaderValue::from_str(origin).unwrap();
            let got = c.allow_origin(Some(&origin));
            assert_eq!(got.is_some(), echoed, "{allowed:?} {origin:?}");
            if let Some(v) = got {
                assert_eq!(v, origin);
            }
        }
        assert_eq!(cors(&["https://a.com"]).allow_origin(None), None);
        assert_eq!(
            cors(&[]).allow_origin(Some(&HeaderValue::from_static("https://a.com"))),
            None
        );
    }

    #[test]
    fn any_origin_answers_star_with_or_without_origin() {
        let c = Cors::default();
        assert_eq!(c.allow_origin(None), Some(HeaderValue::from_static("*")));
        let o = HeaderValue::from_static("http://x.com");
        assert_eq!(
            c.allow_origin(Some(&o)),
            Some(HeaderValue::from_static("*"))
        );
    }
}
