//! Which HTTPRoute rule a request gets: hostname lookup with Gateway API wildcards, the
//! conditions of an HTTPRouteMatch, and the spec's precedence order for sorting rules.
//! Pure: no IO, tested with tables.
//!
//! Spec facts (kubernetes-sigs/gateway-api, `apis/v1/httproute_types.go`):
//! - `*.example.com` "would match both `test.example.com`, and `foo.test.example.com`, but
//!   not `example.com`" (HTTPRouteSpec.Hostnames), and rules of the route with the most
//!   specific matching hostname take precedence.
//! - PathPrefix matches "on a path element by element basis ... a trailing `/` is ignored"
//!   (`/abc` matches `/abc`, `/abc/`, `/abc/def`, not `/abcd`); Exact is case-sensitive.
//! - Header names compare case-insensitively; a repeated header follows RFC 7230 §3.2.2
//!   (its values combined with commas). A repeated query parameter: "it is *recommended*
//!   that implementations should match against the first value".

use std::{borrow::Cow, cmp::Ordering, cmp::Reverse};

use hyper::{HeaderMap, Method};
use regex::{Regex, RegexBuilder};

use super::{
    GatewayHosts, GatewayRule, HostRules, PathMatch, PortRoutes, RequestMatch, SniListener,
    ValueMatch,
};
use crate::snapshot::routes::normalize_host;

/// The most memory one route regex may compile to (patterns are user input).
const REGEX_SIZE_LIMIT: usize = 256 * 1024;

/// Compiles a RegularExpression match value as the matchers expect it: anchored at both
/// ends (the spec's path, header and query regexes match the whole value), RE2-like
/// syntax (the `regex` crate), bounded in size.
pub fn full_regex(pattern: &str) -> Result<Regex, regex::Error> {
    RegexBuilder::new(&format!("^(?:{pattern})$"))
        .size_limit(REGEX_SIZE_LIMIT)
        .build()
}

impl GatewayHosts {
    /// The rules of the most specific hostname entry for `host` (any case; a `:port` is
    /// ignored): the exact name, else the longest wildcard suffix (one or more labels in
    /// front of it), else the rules for every host.
    pub fn lookup(&self, host: &str) -> Option<&HostRules> {
        self.first(host, Some)
    }

    /// Every entry that applies to `host`, most specific first: exact, wildcards from the
    /// longest suffix to the shortest, then "every host". The spec orders rules by
    /// hostname specificity before anything else, so a request that matches no rule of a
    /// more specific entry is tried against the next one.
    pub fn candidates(&self, host: &str) -> Vec<&HostRules> {
        let mut out = Vec::new();
        self.first(host, |rules| {
            out.push(rules);
            None::<()>
        });
        out
    }

    /// The rule that answers a request: the first matching rule of the most specific
    /// hostname entry that has one. `None` (no entry, or no rule matches) is a 404.
    pub fn route<'a>(
        &'a self,
        host: &str,
        method: &Method,
        path: &str,
        query: Option<&str>,
        headers: &HeaderMap,
    ) -> Option<&'a GatewayRule> {
        self.first(host, |rules| {
            rules
                .iter()
                .find(|r| r.matches.matches(method, path, query, headers))
                .map(AsRef::as_ref)
        })
    }

    /// The first `Some` that `f` gives for the entries of [`candidates`](Self::candidates)
    /// in order; without allocating (this runs per request).
    fn first<'a, R>(
        &'a self,
        host: &str,
        mut f: impl FnMut(&'a HostRules) -> Option<R>,
    ) -> Option<R> {
        let host = normalize_host(host);
        if let Some(found) = self.exact.get(host.as_ref()).and_then(&mut f) {
            return Some(found);
        }
        if !self.wildcard.is_empty() {
            // Every `.suffix` of the host with at least one non-empty label in front.
            for (i, _) in host.match_indices('.').filter(|&(i, _)| i > 0) {
                if let Some(found) = self.wildcard.get(&host[i..]).and_then(&mut f) {
                    return Some(found);
                }
            }
        }
        self.any.as_ref().and_then(f)
    }

    /// Whether no hostname has rules.
    pub fn is_empty(&self) -> bool {
        self.exact.is_empty() && self.wildcard.is_empty() && self.any.is_none()
    }
}

impl RequestMatch {
    /// Whether a request satisfies every condition. `path` is the request path as
    /// received (no query); `query` the raw query string without `?`.
    pub fn matches(
        &self,
        method: &Method,
        path: &str,
        query: Option<&str>,
        headers: &HeaderMap,
    ) -> bool {
        self.path.matches(path)
            && self.method.as_ref().is_none_or(|m| m == method)
            && self.headers.iter().all(|h| header_matches(headers, h))
            && self
                .query
                .iter()
                .all(|q| first_query_value(query, &q.name).is_some_and(|v| q.value.matches(&v)))
    }

    /// This match's place in the spec's precedence order (smaller comes first).
    pub fn precedence(&self) -> MatchPrecedence {
        let (class, len) = match &self.path {
            PathMatch::Exact(p) => (0, p.chars().count()),
            PathMatch::Regex(re) => (1, re.as_str().chars().count()),
            PathMatch::Prefix(p) => (2, prefix_key(p).chars().count()),
        };
        MatchPrecedence {
            class,
            len: Reverse(len),
            method: Reverse(self.method.is_some()),
            headers: Reverse(self.headers.len()),
            query: Reverse(self.query.len()),
        }
    }
}

impl PathMatch {
    /// Whether the request path matches.
    pub fn matches(&self, path: &str) -> bool {
        match self {
            Self::Exact(p) => path == p,
            Self::Prefix(p) => prefix_matches(prefix_key(p), path),
            Self::Regex(re) => re.is_match(path),
        }
    }
}

impl ValueMatch {
    /// Whether a header or query value matches.
    pub fn matches(&self, value: &str) -> bool {
        match self {
            Self::Exact(v) => v == value,
            Self::Regex(re) => re.is_match(value),
        }
    }
}

/// A PathPrefix value without its trailing slashes (`/` becomes empty: it matches all).
pub(super) fn prefix_key(prefix: &str) -> &str {
    prefix.trim_end_matches('/')
}

/// Element-wise prefix match of a trimmed prefix (see [`prefix_key`]).
fn prefix_matches(prefix: &str, path: &str) -> bool {
    if prefix.is_empty() {
        return true;
    }
    path.strip_prefix(prefix)
        .is_some_and(|rest| rest.is_empty() || rest.starts_with('/'))
}

/// Header condition: case-insensitive name (a `HeaderName` is lowercase already); a
/// repeated header is its values joined with `,` (RFC 7230 §3.2.2). A value that is not
/// UTF-8 matches nothing.
fn header_matches(headers: &HeaderMap, m: &super::HeaderMatch) -> bool {
    let mut values = headers.get_all(&m.name).iter();
    let Some(first) = values.next() else {
        return false;
    };
    let Some(rest) = values.next() else {
        return std::str::from_utf8(first.as_bytes()).is_ok_and(|v| m.value.matches(v));
    };
    let mut joined = Vec::with_capacity(first.len() + rest.len() + 1);
    for v in std::iter::once(first)
        .chain(std::iter::once(rest))
        .chain(values)
    {
        if !joined.is_empty() {
            joined.push(b',');
        }
        joined.extend_from_slice(v.as_bytes());
    }
    std::str::from_utf8(&joined).is_ok_and(|v| m.value.matches(v))
}

/// The first value of query parameter `name`, percent-decoded (`+` is left as is: it is a
/// space only in HTML forms). A parameter without `=` has the empty value.
fn first_query_value<'a>(query: Option<&'a str>, name: &str) -> Option<Cow<'a, str>> {
    query?
        .split('&')
        .map(|pair| pair.split_once('=').unwrap_or((pair, "")))
        .find(|(n, _)| percent_decode(n) == name)
        .map(|(_, v)| percent_decode(v))
}

/// `%XX` escapes decoded; invalid escapes kept as written; invalid UTF-8 replaced.
fn percent_decode(s: &str) -> Cow<'_, str> {
    if !s.contains('%') {
        return Cow::Borrowed(s);
    }
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        let hex = |b: u8| (b as char).to_digit(16);
        match (bytes[i], bytes.get(i + 1), bytes.get(i + 2)) {
            (b'%', Some(&h), Some(&l)) if hex(h).is_some() && hex(l).is_some() => {
                let v = hex(h).unwrap_or(0) * 16 + hex(l).unwrap_or(0);
                out.push(u8::try_from(v).unwrap_or(b'?'));
                i += 3;
            }
            (b, _, _) => {
                out.push(b);
                i += 1;
            }
        }
    }
    Cow::Owned(String::from_utf8_lossy(&out).into_owned())
}

/// The spec's precedence of one HTTPRouteMatch, as far as the match itself decides it
/// (HTTPRouteRule.Matches: "Exact path match; Prefix path match with largest number of
/// characters; Method match; Largest number of header matches; Largest number of query
/// param matches"). Ordered so that the match that must win sorts first.
///
/// "The precedence of RegularExpression path matches are implementation-specific": ours
/// come after every Exact and before every PathPrefix match, the longer pattern first
/// (as Envoy Gateway orders them), so a regex is not shadowed by a prefix `/`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub struct MatchPrecedence {
    /// 0 Exact, 1 RegularExpression, 2 PathPrefix.
    class: u8,
    /// Characters of the path (a prefix without its trailing `/`; a regex's pattern).
    len: Reverse<usize>,
    method: Reverse<bool>,
    headers: Reverse<usize>,
    query: Reverse<usize>,
}

/// Everything that places one match of one rule in a hostname's rule list, for sorting
/// with [`precedence_order`]. `C` is the route's creation timestamp (any ordered type;
/// smaller is older).
#[derive(Clone, Copy, Debug)]
pub struct RuleKey<'a, C> {
    /// The match.
    pub matches: &'a RequestMatch,
    /// The route's `metadata.creationTimestamp`.
    pub created: C,
    /// The route's namespace.
    pub namespace: &'a str,
    /// The route's name.
    pub name: &'a str,
    /// Index of the rule in `spec.rules`.
    pub rule: usize,
    /// Index of the match in the rule's `matches`.
    pub index: usize,
}

/// The spec's total order of matches within one hostname: [`MatchPrecedence`], then "the
/// oldest Route based on creation timestamp", then "the Route appearing first in
/// alphabetical order by `{namespace}/{name}`", then the first rule in list order, then
/// the first match of that rule. Sort a hostname's rules with it; the router takes the
/// first rule that matches.
pub fn precedence_order<C: Ord>(a: &RuleKey<'_, C>, b: &RuleKey<'_, C>) -> Ordering {
    a.matches
        .precedence()
        .cmp(&b.matches.precedence())
        .then_with(|| a.created.cmp(&b.created))
        .then_with(|| {
            // `{namespace}/{name}` as one string: "a/x" sorts after "a-b/y".
            let ka = a.namespace.bytes().chain(*b"/").chain(a.name.bytes());
            let kb = b.namespace.bytes().chain(*b"/").chain(b.name.bytes());
            ka.cmp(kb)
        })
        .then_with(|| a.rule.cmp(&b.rule))
        .then_with(|| a.index.cmp(&b.index))
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use hyper::header::{HeaderName, HeaderValue};

    use super::*;
    use crate::snapshot::{
        ObjectRef,
        gateway::{HeaderMatch, QueryMatch, RuleAction},
    };

    fn any_path() -> RequestMatch {
        RequestMatch {
            path: PathMatch::Prefix("/".into()),
            method: None,
            headers: Vec::new(),
            query: Vec::new(),
        }
    }

    fn rule(name: &str, matches: RequestMatch) -> Arc<GatewayRule> {
        Arc::new(GatewayRule {
            route: ObjectRef {
                kind: "HTTPRoute".into(),
                namespace: Some("default".into()),
                name: name.into(),
            },
            rule: 0,
            matches,
            action: Arc::new(RuleAction::default()),
        })
    }

    fn rules(name: &str) -> HostRules {
        vec![rule(name, any_path())].into()
    }

    fn hosts() -> GatewayHosts {
        let mut h = GatewayHosts::default();
        h.exact.insert("foo.example.com".into(), rules("exact"));
        h.wildcard.insert(".example.com".into(), rules("wild"));
        h.wildcard.insert(".b.example.com".into(), rules("wild-b"));
        h
    }

    fn names<'a>(h: &'a GatewayHosts, host: &str) -> Vec<&'a str> {
        h.candidates(host)
            .into_iter()
            .map(|r| r[0].route.name.as_str())
            .collect()
    }

    #[test]
    fn hostnames_exact_then_longest_wildcard_of_one_or_more_labels_then_any() {
        let mut h = hosts();
        // (request host, most specific entry) with no "any" entry.
        for (host, want) in [
            ("foo.example.com", Some("exact")),
            ("FOO.Example.com:8080", Some("exact")),
            ("foo.example.com.", Some("exact")),
            ("bar.example.com", Some("wild")),
            ("a.bar.example.com", Some("wild")),
            ("a.b.example.com", Some("wild-b")),
            ("x.y.b.example.com", Some("wild-b")),
            ("b.example.com", Some("wild")),
            ("example.com", None),
            (".example.com", None),
            ("example.org", None),
            ("", None),
        ] {
            let got = h.lookup(host).map(|r| r[0].route.name.as_str());
            assert_eq!(got, want, "{host}");
        }
        h.any = Some(rules("any"));
        assert_eq!(h.lookup("example.com").unwrap()[0].route.name, "any");
        assert_eq!(
            names(&h, "foo.b.example.com"),
            ["wild-b", "wild", "any"],
            "every applicable entry, most specific first"
        );
        assert_eq!(names(&h, "foo.example.com"), ["exact", "wild", "any"]);
    }

    #[test]
    fn a_request_no_rule_of_the_specific_host_matches_falls_to_the_next_entry() {
        let mut h = GatewayHosts::default();
        let only_a = RequestMatch {
            path: PathMatch::Exact("/a".into()),
            ..any_path()
        };
        h.exact
            .insert("foo.example.com".into(), vec![rule("exact", only_a)].into());
        h.wildcard.insert(".example.com".into(), rules("wild"));
        let route = |path| {
            h.route(
                "foo.example.com",
                &Method::GET,
                path,
                None,
                &HeaderMap::new(),
            )
            .map(|r| r.route.name.as_str())
        };
        assert_eq!(route("/a"), Some("exact"));
        assert_eq!(route("/b"), Some("wild"));
        assert_eq!(
            h.route("other.org", &Method::GET, "/", None, &HeaderMap::new())
                .map(|r| r.route.name.as_str()),
            None
        );
    }

    #[test]
    fn path_matches_exact_prefix_element_wise_and_full_regex() {
        let re = |p: &str| PathMatch::Regex(full_regex(p).unwrap());
        let rows: Vec<(PathMatch, &str, bool)> = vec![
            (PathMatch::Exact("/foo".into()), "/foo", true),
            (PathMatch::Exact("/foo".into()), "/foo/", false),
            (PathMatch::Exact("/foo".into()), "/Foo", false),
            (PathMatch::Exact("/foo".into()), "/foobar", false),
            (PathMatch::Prefix("/foo".into()), "/foo", true),
            (PathMatch::Prefix("/foo".into()), "/foo/", true),
            (PathMatch::Prefix("/foo".into()), "/foo/bar", true),
            (PathMatch::Prefix("/foo".into()), "/foobar", false),
            (PathMatch::Prefix("/foo".into()), "/FOO", false),
            (PathMatch::Prefix("/foo/".into()), "/foo", true),
            (PathMatch::Prefix("/foo/".into()), "/foo/bar", true),
            (PathMatch::Prefix("/foo/".into()), "/foobar", false),
            (PathMatch::Prefix("/".into()), "/", true),
            (PathMatch::Prefix("/".into()), "/anything/at/all", true),
            (PathMatch::Prefix("/v2".into()), "/v2example", false),
            (re("/foo/[0-9]+"), "/foo/123", true),
            (re("/foo/[0-9]+"), "/foo/123/x", false),
            (re("/foo/[0-9]+"), "/x/foo/123", false),
            (re(".*/info"), "/some/info", true),
            (re("/a|/b"), "/b", true),
            (re("/a|/b"), "/ab", false),
        ];
        for (m, path, want) in rows {
            assert_eq!(m.matches(path), want, "{m:?} {path}");
        }
    }

    fn headers(pairs: &[(&str, &str)]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for (n, v) in pairs {
            h.append(
                HeaderName::from_bytes(n.as_bytes()).unwrap(),
                HeaderValue::from_str(v).unwrap(),
            );
        }
        h
    }

    fn header(name: &str, value: ValueMatch) -> HeaderMatch {
        HeaderMatch {
            name: HeaderName::from_bytes(name.as_bytes()).unwrap(),
            value,
        }
    }

    #[test]
    fn headers_query_and_method_must_all_hold() {
        let exact = |v: &str| ValueMatch::Exact(v.into());
        let m = RequestMatch {
            path: PathMatch::Prefix("/".into()),
            method: Some(Method::POST),
            headers: vec![header("Version", exact("two"))],
            query: vec![QueryMatch {
                name: "animal".into(),
                value: exact("whale"),
            }],
        };
        // (method, query, headers, matches)
        type Headers = &'static [(&'static str, &'static str)];
        let rows: &[(Method, Option<&str>, Headers, bool)] = &[
            (
                Method::POST,
                Some("animal=whale"),
                &[("version", "two")],
                true,
            ),
            (
                Method::POST,
                Some("animal=whale"),
                &[("VERSION", "two")],
                true,
            ),
            (
                Method::GET,
                Some("animal=whale"),
                &[("version", "two")],
                false,
            ),
            (
                Method::POST,
                Some("animal=whale"),
                &[("version", "Two")],
                false,
            ),
            (Method::POST, Some("animal=whale"), &[], false),
            (Method::POST, None, &[("version", "two")], false),
            (
                Method::POST,
                Some("ANIMAL=whale"),
                &[("version", "two")],
                false,
            ),
            (
                Method::POST,
                Some("animal=Whale"),
                &[("version", "two")],
                false,
            ),
            (
                Method::POST,
                Some("x=1&animal=whale&animal=dolphin"),
                &[("version", "two")],
                true,
            ),
            (
                Method::POST,
                Some("animal=dolphin&animal=whale"),
                &[("version", "two")],
                false,
            ),
            (
                Method::POST,
                Some("animal=whaledolphin"),
                &[("version", "two")],
                false,
            ),
            (
                Method::POST,
                Some("an%69mal=wh%61le"),
                &[("version", "two")],
                true,
            ),
        ];
        for (method, query, hdrs, want) in rows {
            let got = m.matches(method, "/x", *query, &headers(hdrs));
            assert_eq!(got, *want, "{method} {query:?} {hdrs:?}");
        }
    }

    #[test]
    fn repeated_headers_are_joined_with_commas_and_regex_values_match_whole() {
        let re = |p: &str| ValueMatch::Regex(full_regex(p).unwrap());
        type Headers = &'static [(&'static str, &'static str)];
        let rows: Vec<(HeaderMatch, Headers, bool)> = vec![
            (
                header("x", ValueMatch::Exact("a,b".into())),
                &[("x", "a"), ("x", "b")],
                true,
            ),
            (
                header("x", ValueMatch::Exact("a".into())),
                &[("x", "a"), ("x", "b")],
                false,
            ),
            (header("x", re("v[0-9]+")), &[("x", "v12")], true),
            (header("x", re("v[0-9]+")), &[("x", "v12x")], false),
            (header("x", re("v[0-9]+")), &[("y", "v12")], false),
        ];
        for (m, hdrs, want) in rows {
            assert_eq!(header_matches(&headers(hdrs), &m), want, "{m:?} {hdrs:?}");
        }
    }

    #[test]
    fn percent_decoding_keeps_invalid_escapes() {
        for (raw, want) in [
            ("plain", "plain"),
            ("a%20b", "a b"),
            ("%7e", "~"),
            ("100%", "100%"),
            ("%zz", "%zz"),
            ("a+b", "a+b"),
            ("%ff", "\u{fffd}"),
        ] {
            assert_eq!(percent_decode(raw), want, "{raw}");
        }
    }

    fn key<'a>(
        m: &'a RequestMatch,
        created: u32,
        (namespace, name): (&'a str, &'a str),
        rule: usize,
    ) -> RuleKey<'a, u32> {
        RuleKey {
            matches: m,
            created,
            namespace,
            name,
            rule,
            index: 0,
        }
    }

    #[test]
    fn precedence_follows_the_spec_order() {
        let path = |p: PathMatch| RequestMatch {
            path: p,
            ..any_path()
        };
        let exact = path(PathMatch::Exact("/a".into()));
        let regex = path(PathMatch::Regex(full_regex("/a.*").unwrap()));
        let long_prefix = path(PathMatch::Prefix("/abc/def".into()));
        let short_prefix = path(PathMatch::Prefix("/abc".into()));
        let trailing = path(PathMatch::Prefix("/abc/".into()));
        let method = RequestMatch {
            method: Some(Method::GET),
            ..path(PathMatch::Prefix("/abc".into()))
        };
        let two_headers = RequestMatch {
            headers: vec![
                header("a", ValueMatch::Exact("1".into())),
                header("b", ValueMatch::Exact("1".into())),
            ],
            ..path(PathMatch::Prefix("/abc".into()))
        };
        let one_header = RequestMatch {
            headers: vec![header("a", ValueMatch::Exact("1".into()))],
            ..path(PathMatch::Prefix("/abc".into()))
        };
        let one_header_query = RequestMatch {
            query: vec![QueryMatch {
                name: "q".into(),
                value: ValueMatch::Exact("1".into()),
            }],
            ..one_header.clone()
        };
        // Each row must sort strictly before the next.
        let ordered = [
            key(&exact, 9, ("z", "z"), 9),
            key(&regex, 0, ("a", "a"), 0),
            key(&long_prefix, 0, ("a", "a"), 0),
            key(&method, 9, ("a", "a"), 0),
            key(&two_headers, 0, ("a", "a"), 0),
            key(&one_header_query, 0, ("a", "a"), 0),
            key(&one_header, 0, ("a", "a"), 0),
            key(&short_prefix, 1, ("a", "a"), 0),
            // "a-b/y" < "a/a" as strings ('-' < '/'), though "a" < "a-b".
            key(&short_prefix, 2, ("a-b", "y"), 0),
            key(&short_prefix, 2, ("a", "a"), 0),
            key(&short_prefix, 2, ("a", "x"), 0),
            key(&trailing, 2, ("a", "x"), 1),
        ];
        for pair in ordered.windows(2) {
            assert_eq!(
                precedence_order(&pair[0], &pair[1]),
                Ordering::Less,
                "{:?} before {:?}",
                pair[0].matches,
                pair[1].matches
            );
        }
        assert_eq!(precedence_order(&ordered[3], &ordered[3]), Ordering::Equal);
    }
}

impl PortRoutes {
    /// The listener of this address that serves `name` (an SNI or a request host): the
    /// exact hostname, else the longest wildcard matching it, else a listener without
    /// hostname.
    pub fn listener_for(&self, name: &str) -> SniListener {
        let name = name.trim_end_matches('.').to_ascii_lowercase();
        let mut best: Option<(u8, usize, &Option<String>)> = None;
        for l in &self.listener_hosts {
            let rank = match l.as_deref() {
                Some(h) if h == name => Some((3, h.len())),
                Some(h) => h
                    .strip_prefix('*')
                    .filter(|suffix| name.len() > suffix.len() && name.ends_with(suffix))
                    .map(|suffix| (2, suffix.len())),
                None => Some((1, 0)),
            };
            if let Some((kind, len)) = rank
                && best.is_none_or(|(k, n, _)| (kind, len) > (k, n))
            {
                best = Some((kind, len, l));
            }
        }
        match best {
            Some((_, _, l)) => SniListener::Listener(fingerprint(l.as_deref().unwrap_or(""))),
            None => SniListener::None,
        }
    }

    /// Whether a request for `host` may be served on a connection whose SNI selected
    /// `sni`: the spec wants requests routed within the listener the handshake chose, so a
    /// client cannot reach another listener's routes with a certificate for this one.
    pub fn sni_allows(&self, sni: SniListener, host: &str) -> bool {
        match sni {
            SniListener::Unchecked => true,
            selected => self.tls && self.listener_for(host) == selected,
        }
    }
}

/// A stable fingerprint of a listener hostname (FNV-1a).
fn fingerprint(host: &str) -> u64 {
    host.bytes().fold(0xcbf2_9ce4_8422_2325, |h, b| {
        (h ^ u64::from(b)).wrapping_mul(0x0000_0100_0000_01b3)
    })
}

#[cfg(test)]
mod sni_tests {
    use super::*;

    /// HTTPRouteHTTPSListener: listeners without hostname and for second-example.org.
    #[test]
    fn requests_stay_within_the_listener_their_sni_selected() {
        let port = PortRoutes {
            tls: true,
            listener_hosts: vec![
                None,
                Some("second-example.org".into()),
                Some("*.example.com".into()),
            ],
            ..PortRoutes::default()
        };
        for (sni, host, allowed) in [
            ("example.org", "example.org", true),
            ("unknown-example.org", "second-example.org", false),
            ("second-example.org", "second-example.org", true),
            ("unknown-example.org", "unknown-example.org", true),
            ("a.example.com", "b.example.com", true),
            ("a.example.com", "second-example.org", false),
            ("SECOND-example.org", "second-example.org", true),
        ] {
            let selected = port.listener_for(sni);
            assert_eq!(
                port.sni_allows(selected, host),
                allowed,
                "SNI {sni} Host {host}"
            );
        }
        assert!(port.sni_allows(SniListener::Unchecked, "anything"));
        let only = PortRoutes {
            tls: true,
            listener_hosts: vec![Some("a.com".into())],
            ..PortRoutes::default()
        };
        assert_eq!(only.listener_for("b.com"), SniListener::None);
        assert!(
            !only.sni_allows(SniListener::None, "a.com"),
            "an SNI no listener takes reaches none"
        );
    }
}
