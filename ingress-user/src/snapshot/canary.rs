//! ingress-nginx canaries: an Ingress annotated `canary: "true"` whose host and path equal
//! a main Ingress's becomes an alternative backend of that route, chosen per request by
//! header, then cookie, then weight. Pure: the router supplies the request's values and a
//! random draw.
//!
//! The decision transcribes `route_to_alternative_balancer` in ingress-nginx's
//! `rootfs/etc/nginx/lua/balancer.lua`; the annotations are documented in
//! `docs/user-guide/nginx-configuration/annotations.md` ("Canary").

use std::{fmt, sync::Arc};

use hyper::header::{HeaderMap, HeaderName};
use regex::{Regex, RegexBuilder};

use super::routes::Backend;

/// The most memory a `canary-by-header-pattern` may compile to (it is user input).
const PATTERN_SIZE_LIMIT: usize = 64 * 1024;

/// A `canary-by-header-pattern` regex, compared by its source.
#[derive(Clone, Debug)]
pub struct Pattern(pub Regex);

impl Pattern {
    /// Compiles `source` (unanchored, as nginx's `ngx.re.match` searches) within a size
    /// limit.
    pub fn new(source: &str) -> Result<Self, regex::Error> {
        RegexBuilder::new(source)
            .size_limit(PATTERN_SIZE_LIMIT)
            .build()
            .map(Self)
    }
}

impl PartialEq for Pattern {
    fn eq(&self, other: &Self) -> bool {
        self.0.as_str() == other.0.as_str()
    }
}

impl Eq for Pattern {}

/// What a canary Ingress's annotations ask: when a request goes to the canary.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CanaryRules {
    /// `canary: "true"`; the other fields mean nothing without it.
    pub enabled: bool,
    /// `canary-by-header`.
    pub header: Option<HeaderName>,
    /// `canary-by-header-value`: the header value that selects the canary (instead of
    /// `always`).
    pub header_value: Option<String>,
    /// `canary-by-header-pattern`: used when `header_value` is not set.
    pub header_pattern: Option<Pattern>,
    /// `canary-by-cookie`.
    pub cookie: Option<String>,
    /// `canary-weight`: out of `weight_total`.
    pub weight: u32,
    /// `canary-weight-total` (default 100; ingress-nginx's balancer uses 100 for anything
    /// lower).
    pub weight_total: u32,
}

impl Default for CanaryRules {
    fn default() -> Self {
        Self {
            enabled: false,
            header: None,
            header_value: None,
            header_pattern: None,
            cookie: None,
            weight: 0,
            weight_total: 100,
        }
    }
}

/// The alternative backend of a route.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Canary {
    /// When a request goes to it.
    pub rules: Arc<CanaryRules>,
    /// The canary Ingress's Service, with the main route's policy (ingress-nginx applies
    /// the main Ingress's annotations to both) except its own session affinity.
    pub backend: Arc<Backend>,
}

impl fmt::Display for Canary {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "canary {}", self.backend.service)
    }
}

impl Canary {
    /// Whether a request to the route of `main` goes to this canary. A session cookie of
    /// either keeps it where it is (`affinity-canary-behavior: sticky`, ingress-nginx's
    /// `get_alternative_or_original_balancer`: main first, then the canary); otherwise the
    /// rules decide.
    pub fn chooses(
        &self,
        main: &Backend,
        headers: &HeaderMap,
        draw: impl FnOnce(u32) -> u32,
    ) -> bool {
        let held = |b: &Backend| {
            b.policy()
                .affinity()
                .is_some_and(|a| request_cookie(headers, &a.name).is_some_and(|v| a.holds(v)))
        };
        if held(main) {
            return false;
        }
        held(&self.backend) || self.rules.decide_for(headers, draw)
    }
}

impl CanaryRules {
    /// Whether a request goes to the canary: `header` is the value of the
    /// `canary-by-header` header, `cookie` that of the `canary-by-cookie` cookie, and
    /// `draw(n)` a uniform random number in `0..n` (only called for the weight).
    pub fn decide(
        &self,
        header: Option<&[u8]>,
        cookie: Option<&str>,
        draw: impl FnOnce(u32) -> u32,
    ) -> bool {
        if let Some(value) = header {
            if let Some(want) = self.header_value.as_deref().filter(|w| !w.is_empty()) {
                if value == want.as_bytes() {
                    return true;
                }
            } else if let Some(pattern) = &self.header_pattern {
                if std::str::from_utf8(value).is_ok_and(|v| pattern.0.is_match(v)) {
                    return true;
                }
            } else if value == b"always" {
                return true;
            } else if value == b"never" {
                return false;
            }
        }
        match cookie {
            Some("always") => return true,
            Some("never") => return false,
            _ => {}
        }
        let total = self.weight_total.max(100);
        // Lua's `math.random(total) <= weight`: a draw in 1..=total.
        self.weight > 0 && draw(total) < self.weight
    }

    /// [`decide`](Self::decide) for a request with these headers.
    pub fn decide_for(&self, headers: &HeaderMap, draw: impl FnOnce(u32) -> u32) -> bool {
        let header = self
            .header
            .as_ref()
            .and_then(|h| headers.get(h))
            .map(hyper::header::HeaderValue::as_bytes);
        let cookie = self
            .cookie
            .as_deref()
            .and_then(|name| request_cookie(headers, name));
        self.decide(header, cookie, draw)
    }
}

/// The value of the first cookie named `name` in the request's `Cookie` headers.
pub fn request_cookie<'a>(headers: &'a HeaderMap, name: &str) -> Option<&'a str> {
    headers
        .get_all(hyper::header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .find_map(|pair| {
            let (k, v) = pair.split_once('=')?;
            (k.trim() == name).then(|| v.trim().trim_matches('"'))
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rules(
        header: Option<&str>,
        value: Option<&str>,
        pattern: Option<&str>,
        cookie: Option<&str>,
        weight: u32,
    ) -> CanaryRules {
        CanaryRules {
            enabled: true,
            header: header.map(|h| HeaderName::from_bytes(h.as_bytes()).unwrap()),
            header_value: value.map(str::to_owned),
            header_pattern: pattern.map(|p| Pattern::new(p).unwrap()),
            cookie: cookie.map(str::to_owned),
            weight,
            weight_total: 100,
        }
    }

    /// The cases of ingress-nginx's test/e2e/annotations/canary.go and the precedence
    /// `canary-by-header -> canary-by-cookie -> canary-weight` of annotations.md.
    #[test]
    fn header_then_cookie_then_weight() {
        let h = Some("CanaryByHeader");
        let c = Some("CanaryByCookie");
        // (rules, header value sent, cookie value sent, draw, canary?)
        for (r, header, cookie, draw, want) in [
            // by header, no value
            (rules(h, None, None, None, 0), Some("always"), None, 0, true),
            (rules(h, None, None, None, 0), Some("never"), None, 0, false),
            (
                rules(h, None, None, None, 0),
                Some("badheadervalue"),
                None,
                0,
                false,
            ),
            (rules(h, None, None, None, 0), None, None, 0, false),
            // by header with value: always/never are just other values
            (
                rules(h, Some("DoCanary"), None, None, 0),
                Some("DoCanary"),
                None,
                0,
                true,
            ),
            (
                rules(h, Some("DoCanary"), None, None, 0),
                Some("always"),
                None,
                0,
                false,
            ),
            (
                rules(h, Some("DoCanary"), None, None, 0),
                Some("never"),
                None,
                0,
                false,
            ),
            (
                rules(h, Some("DoCanary"), None, None, 0),
                Some("other"),
                None,
                0,
                false,
            ),
            // by header with value and cookie
            (
                rules(h, Some("DoCanary"), None, c, 0),
                Some("other"),
                Some("always"),
                0,
                true,
            ),
            // header never beats cookie always
            (
                rules(h, None, None, c, 0),
                Some("never"),
                Some("always"),
                0,
                false,
            ),
            // header always beats cookie never
            (
                rules(h, None, None, c, 0),
                Some("always"),
                Some("never"),
                0,
                true,
            ),
            // by pattern (unanchored); ignored when a value is set
            (
                rules(h, None, Some("^Do(Canary|It)$"), None, 0),
                Some("DoIt"),
                None,
                0,
                true,
            ),
            (
                rules(h, None, Some("^Do(Canary|It)$"), None, 0),
                Some("Dont"),
                None,
                0,
                false,
            ),
            (
                rules(h, None, Some("anary"), None, 0),
                Some("DoCanary"),
                None,
                0,
                true,
            ),
            (
                rules(h, None, Some("^x"), None, 0),
                Some("always"),
                None,
                0,
                false,
            ),
            (
                rules(h, Some("v"), Some(".*"), None, 0),
                Some("w"),
                None,
                0,
                false,
            ),
            // by cookie
            (rules(None, None, None, c, 0), None, Some("always"), 0, true),
            (rules(None, None, None, c, 0), None, Some("never"), 0, false),
            (
                rules(None, None, None, c, 0),
                None,
                Some("badcookievalue"),
                0,
                false,
            ),
            // cookie never beats weight 100
            (
                rules(None, None, None, c, 100),
                None,
                Some("never"),
                0,
                false,
            ),
            // by weight: draw in 0..100 below the weight
            (rules(None, None, None, None, 0), None, None, 0, false),
            (rules(None, None, None, None, 100), None, None, 99, true),
            (rules(None, None, None, None, 30), None, None, 29, true),
            (rules(None, None, None, None, 30), None, None, 30, false),
            // an unmatched header or cookie falls through to the weight
            (rules(h, None, None, c, 100), Some("x"), Some("y"), 50, true),
        ] {
            let got = r.decide(header.map(str::as_bytes), cookie, |_| draw);
            assert_eq!(
                got, want,
                "{r:?} header {header:?} cookie {cookie:?} draw {draw}"
            );
        }
    }

    /// `affinity-canary-behavior: sticky`: a session cookie of the main route keeps a
    /// request there, one of the canary keeps it on the canary, before any rule.
    #[test]
    fn a_session_stays_on_the_backend_that_set_its_cookie() {
        use crate::{
            config::ServiceRef,
            snapshot::{
                affinity::{Affinity, tag_of},
                policy::RoutePolicy,
            },
        };
        let backend = |name: &str, affinity: Option<u32>| {
            let policy = RoutePolicy {
                affinity: affinity.map(|tag| {
                    Box::new(Affinity {
                        enabled: true,
                        tag,
                        ..Affinity::default()
                    })
                }),
                ..RoutePolicy::default()
            };
            let service = ServiceRef {
                namespace: "ns".into(),
                name: name.into(),
                port: 80,
            };
            Backend::new(service, Vec::new().into(), None).with_policy(Some(Arc::new(policy)))
        };
        let (main_tag, canary_tag) = (tag_of("ns/main"), tag_of("ns/canary"));
        let cookie = |tag: u32| format!("INGRESSCOOKIE=00000000000000ff{tag:08x}");
        let never = rules(Some("X"), None, None, None, 0);
        let always = rules(None, None, None, None, 100);
        // (case, main tag, canary tag, rules, cookie sent, header sent, canary?)
        for (case, m, c, r, sent, header, want) in [
            (
                "no cookie: the rules",
                Some(main_tag),
                Some(canary_tag),
                &always,
                None,
                None,
                true,
            ),
            (
                "main's session",
                Some(main_tag),
                Some(canary_tag),
                &always,
                Some(main_tag),
                None,
                false,
            ),
            (
                "main's session beats the header",
                Some(main_tag),
                Some(canary_tag),
                &always,
                Some(main_tag),
                Some("always"),
                false,
            ),
            (
                "canary's session",
                Some(main_tag),
                Some(canary_tag),
                &never,
                Some(canary_tag),
                None,
                true,
            ),
            (
                "canary's session beats header never",
                Some(main_tag),
                Some(canary_tag),
                &never,
                Some(canary_tag),
                Some("never"),
                true,
            ),
            (
                "another Ingress's session: the rules",
                Some(main_tag),
                Some(canary_tag),
                &never,
                Some(tag_of("x")),
                None,
                false,
            ),
            (
                "legacy canary (no affinity): the rules",
                Some(main_tag),
                None,
                &never,
                Some(canary_tag),
                None,
                false,
            ),
            (
                "main without affinity",
                None,
                Some(canary_tag),
                &always,
                Some(main_tag),
                None,
                true,
            ),
        ] {
            let canary = Canary {
                rules: Arc::new(r.clone()),
                backend: Arc::new(backend("canary", c)),
            };
            let mut headers = HeaderMap::new();
            if let Some(tag) = sent {
                headers.insert("cookie", cookie(tag).parse().unwrap());
            }
            if let Some(h) = header {
                headers.insert("x", h.parse().unwrap());
            }
            assert_eq!(
                canary.chooses(&backend("main", m), &headers, |_| 0),
                want,
                "{case}"
            );
        }
    }

    #[test]
    fn weight_total_below_100_counts_as_100_and_above_scales() {
        let mut r = rules(None, None, None, None, 50);
        r.weight_total = 10;
        let mut seen = 0;
        assert!(!r.decide(None, None, |n| {
            seen = n;
            60
        }));
        assert_eq!(seen, 100);
        r.weight_total = 1000;
        assert!(r.decide(None, None, |n| {
            seen = n;
            49
        }));
        assert_eq!(seen, 1000);
    }

    #[test]
    fn cookies_are_found_by_exact_name_across_headers() {
        let mut headers = HeaderMap::new();
        headers.append("cookie", "a=1; CanaryByCookie=always".parse().unwrap());
        headers.append("cookie", "b=2".parse().unwrap());
        for (name, want) in [
            ("CanaryByCookie", Some("always")),
            ("a", Some("1")),
            ("b", Some("2")),
            ("canarybycookie", None),
            ("Canary", None),
        ] {
            assert_eq!(request_cookie(&headers, name), want, "{name}");
        }
    }
}
