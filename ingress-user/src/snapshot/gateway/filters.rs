//! What the filters of an HTTPRoute rule compute, without IO: header edits, the rewritten
//! path, the redirect `Location`, and the weighted choice of a backendRef. The router
//! (`http::gateway`) applies them to requests. Tested with the spec's tables.

use hyper::{
    HeaderMap,
    header::{HeaderValue, InvalidHeaderValue},
};

use super::{HeaderEdits, PathMatch, PathRewrite, Redirect, WeightedBackend, matching::prefix_key};

impl HeaderEdits {
    /// Applies the edits as the spec's HTTPHeaderFilter describes them: `set` replaces,
    /// `add` appends to existing values (`my-header: foo` plus `bar,baz` gives
    /// `my-header: foo,bar,baz`: one line, values joined with commas), `remove` drops.
    pub fn apply(&self, headers: &mut HeaderMap) {
        for (name, value) in &self.set {
            headers.insert(name.clone(), value.clone());
        }
        for (name, value) in &self.add {
            let joined = {
                let mut existing = headers.get_all(name).iter().peekable();
                if existing.peek().is_none() {
                    None
                } else {
                    let mut v = Vec::new();
                    for e in existing {
                        v.extend_from_slice(e.as_bytes());
                        v.push(b',');
                    }
                    v.extend_from_slice(value.as_bytes());
                    Some(HeaderValue::from_bytes(&v))
                }
            };
            match joined {
                None => {
                    headers.insert(name.clone(), value.clone());
                }
                Some(Ok(v)) => {
                    headers.insert(name.clone(), v);
                }
                // Both parts were valid header values, so their join is one too; keep
                // both lines should that ever not hold.
                Some(Err(InvalidHeaderValue { .. })) => {
                    headers.append(name.clone(), value.clone());
                }
            }
        }
        for name in &self.remove {
            headers.remove(name);
        }
    }
}

impl PathRewrite {
    /// The new path of a request to `path` that matched `matched` (an HTTPPathModifier for
    /// URLRewrite and RequestRedirect).
    ///
    /// `ReplacePrefixMatch` replaces the matched prefix element-wise, ignoring trailing
    /// slashes on both the prefix and the replacement, per the spec's table
    /// (`HTTPPathModifier.ReplacePrefixMatch`): `/foo/bar` under `/foo` → `/xyz` gives
    /// `/xyz/bar`; `/foo/` → `/xyz/`; `/foo` under `/foo` → `` gives `/`. With a match
    /// other than PathPrefix (which the spec rejects), an Exact match is replaced whole and
    /// a regex match keeps the path.
    pub fn apply(&self, path: &str, matched: &PathMatch) -> String {
        let out = match (self, matched) {
            (Self::Full(full), _) => full.clone(),
            (Self::Prefix(with), PathMatch::Prefix(prefix)) => {
                let rest = path.strip_prefix(prefix_key(prefix)).unwrap_or(path);
                let mut out = prefix_key(with).to_owned();
                out.push_str(rest);
                out
            }
            (Self::Prefix(with), PathMatch::Exact(_)) => with.clone(),
            (Self::Prefix(_), PathMatch::Regex(_)) => path.to_owned(),
        };
        if out.is_empty() { "/".to_owned() } else { out }
    }
}

/// What a redirect keeps from the request it answers.
#[derive(Clone, Copy, Debug)]
pub struct RedirectFrom<'a> {
    /// `http` or `https`: the listener's protocol.
    pub scheme: &'a str,
    /// The request's host, without port.
    pub host: &'a str,
    /// The Gateway listener's port (the local port the client connected to).
    pub port: u16,
    /// The request path.
    pub path: &'a str,
    /// The request query, without `?`.
    pub query: Option<&'a str>,
    /// The path condition the request matched.
    pub matched: &'a PathMatch,
}

impl Redirect {
    /// The `Location` of the redirect, per HTTPRequestRedirectFilter: unset fields keep
    /// the request's scheme, host and path; the query is kept. The port, when unset, is
    /// the well-known port of the filter's scheme if it sets one, else the listener's
    /// port; `:80` on `http` and `:443` on `https` are left out.
    pub fn location(&self, from: &RedirectFrom<'_>) -> String {
        let scheme = self.scheme.as_deref().unwrap_or(from.scheme);
        let host = self.hostname.as_deref().unwrap_or(from.host);
        let port = match (self.port, &self.scheme) {
            (Some(p), _) => p,
            (None, Some(s)) if s.eq_ignore_ascii_case("https") => 443,
            (None, Some(s)) if s.eq_ignore_ascii_case("http") => 80,
            (None, _) => from.port,
        };
        let default_port = (scheme.eq_ignore_ascii_case("http") && port == 80)
            || (scheme.eq_ignore_ascii_case("https") && port == 443);
        let path = match &self.path {
            Some(p) => p.apply(from.path, from.matched),
            None => from.path.to_owned(),
        };
        let mut out = format!("{scheme}://{host}");
        if !default_port {
            out.push(':');
            out.push_str(&port.to_string());
        }
        out.push_str(&path);
        if let Some(q) = from.query {
            out.push('?');
            out.push_str(q);
        }
        out
    }
}

/// The backendRef that request number `turn` of a rule goes to, by weight: a share of
/// `weight / sum of weights`, weight 0 never. `None` when there are no backends or every
/// weight is 0 (the spec's 500).
///
/// Deterministic and allocation-free: the turn modulo the weight sum, spread by a stride
/// coprime with the sum (a permutation of each period), then the cumulative weights. So
/// any run of `sum` consecutive turns gives each backend exactly its weight, interleaved
/// rather than in blocks.
pub fn pick_weighted(backends: &[WeightedBackend], turn: u64) -> Option<usize> {
    let total: u64 = backends.iter().map(|b| u64::from(b.weight)).sum();
    if total == 0 {
        return None;
    }
    let slot = u128::from(turn % total) * u128::from(stride(total)) % u128::from(total);
    let mut slot = u64::try_from(slot).unwrap_or(0);
    for (i, b) in backends.iter().enumerate() {
        let w = u64::from(b.weight);
        if slot < w {
            return Some(i);
        }
        slot -= w;
    }
    None
}

/// A step near the golden section of `total` that is coprime with it.
fn stride(total: u64) -> u64 {
    let mut s = (total.saturating_mul(618) / 1000).max(1);
    while gcd(s, total) != 1 {
        s += 1;
    }
    s
}

fn gcd(mut a: u64, mut b: u64) -> u64 {
    while b != 0 {
        (a, b) = (b, a % b);
    }
    a
}

#[cfg(test)]
mod tests {
    use hyper::header::HeaderName;

    use super::*;
    use crate::snapshot::gateway::{InvalidBackend, matching::full_regex};

    fn prefix(p: &str) -> PathMatch {
        PathMatch::Prefix(p.into())
    }

    #[test]
    fn replace_prefix_match_follows_the_spec_table() {
        // HTTPPathModifier.ReplacePrefixMatch: (request path, prefix match, replacement,
        // modified path), then the conformance test HTTPRouteRewritePath's cases.
        for (path, matched, with, want) in [
            ("/foo/bar", "/foo", "/xyz", "/xyz/bar"),
            ("/foo/bar", "/foo", "/xyz/", "/xyz/bar"),
            ("/foo/bar", "/foo/", "/xyz", "/xyz/bar"),
            ("/foo/bar", "/foo/", "/xyz/", "/xyz/bar"),
            ("/foo", "/foo", "/xyz", "/xyz"),
            ("/foo/", "/foo", "/xyz", "/xyz/"),
            ("/foo/bar", "/foo", "", "/bar"),
            ("/foo/", "/foo", "", "/"),
            ("/foo", "/foo", "", "/"),
            ("/foo/", "/foo", "/", "/"),
            ("/foo", "/foo", "/", "/"),
            ("/prefix/one/two", "/prefix/one", "/one", "/one/two"),
            ("/strip-prefix/three", "/strip-prefix", "/", "/three"),
            ("/strip-prefix", "/strip-prefix", "/", "/"),
            (
                "/prefix/rewrite-path-and-modify-headers/one",
                "/prefix/rewrite-path-and-modify-headers",
                "/prefix",
                "/prefix/one",
            ),
            ("/anything", "/", "/new", "/new/anything"),
            ("/", "/", "/new", "/new/"),
        ] {
            let got = PathRewrite::Prefix(with.into()).apply(path, &prefix(matched));
            assert_eq!(got, want, "{path} under {matched} to {with:?}");
        }
    }

    #[test]
    fn full_path_replacement_and_other_match_kinds() {
        let full = PathRewrite::Full("/one".into());
        assert_eq!(full.apply("/full/one/two", &prefix("/full/one")), "/one");
        assert_eq!(
            PathRewrite::Full(String::new()).apply("/a", &prefix("/")),
            "/"
        );
        let p = PathRewrite::Prefix("/x".into());
        assert_eq!(p.apply("/a", &PathMatch::Exact("/a".into())), "/x");
        let re = PathMatch::Regex(full_regex("/a.*").unwrap());
        assert_eq!(p.apply("/abc", &re), "/abc");
    }

    fn redirect(scheme: Option<&str>, port: Option<u16>) -> Redirect {
        Redirect {
            scheme: scheme.map(Into::into),
            hostname: None,
            path: None,
            port,
            status: 302,
        }
    }

    #[test]
    fn redirect_port_follows_the_scheme_and_listener_rules() {
        // HTTPRouteRedirectPortAndScheme: (listener scheme, listener port, filter scheme,
        // filter port, Location).
        type Row = (
            &'static str,
            u16,
            Option<&'static str>,
            Option<u16>,
            &'static str,
        );
        let rows: &[Row] = &[
            ("http", 80, None, None, "http://example.org/p"),
            ("http", 80, None, Some(80), "http://example.org/p"),
            ("http", 80, None, Some(8080), "http://example.org:8080/p"),
            ("http", 80, Some("https"), None, "https://example.org/p"),
            (
                "http",
                80,
                Some("https"),
                Some(443),
                "https://example.org/p",
            ),
            (
                "http",
                80,
                Some("https"),
                Some(8443),
                "https://example.org:8443/p",
            ),
            ("http", 8080, None, None, "http://example.org:8080/p"),
            ("http", 8080, None, Some(80), "http://example.org/p"),
            ("http", 8080, Some("https"), None, "https://example.org/p"),
            ("https", 443, None, None, "https://example.org/p"),
            ("https", 443, None, Some(443), "https://example.org/p"),
            ("https", 443, None, Some(8443), "https://example.org:8443/p"),
            ("https", 443, Some("http"), None, "http://example.org/p"),
            ("https", 443, Some("http"), Some(80), "http://example.org/p"),
            (
                "https",
                443,
                Some("http"),
                Some(8080),
                "http://example.org:8080/p",
            ),
            ("https", 8443, None, None, "https://example.org:8443/p"),
        ];
        for &(listener, port, scheme, filter_port, want) in rows {
            let from = RedirectFrom {
                scheme: listener,
                host: "example.org",
                port,
                path: "/p",
                query: None,
                matched: &prefix("/"),
            };
            assert_eq!(
                redirect(scheme, filter_port).location(&from),
                want,
                "{listener}:{port} scheme {scheme:?} port {filter_port:?}"
            );
        }
    }

    #[test]
    fn redirect_hostname_path_and_query() {
        let r = Redirect {
            hostname: Some("example.com".into()),
            path: Some(PathRewrite::Prefix("/replacement-prefix".into())),
            ..redirect(None, None)
        };
        let from = RedirectFrom {
            scheme: "http",
            host: "a.test",
            port: 80,
            path: "/original-prefix/lemon",
            query: Some("x=1"),
            matched: &prefix("/original-prefix"),
        };
        assert_eq!(
            r.location(&from),
            "http://example.com/replacement-prefix/lemon?x=1"
        );
        let full = Redirect {
            path: Some(PathRewrite::Full("/full-path-replacement".into())),
            ..redirect(None, None)
        };
        let from = RedirectFrom {
            path: "/full/path/original",
            query: None,
            matched: &prefix("/full"),
            ..from
        };
        assert_eq!(full.location(&from), "http://a.test/full-path-replacement");
    }

    fn name(n: &str) -> HeaderName {
        HeaderName::from_bytes(n.as_bytes()).unwrap()
    }

    fn value(v: &str) -> HeaderValue {
        HeaderValue::from_str(v).unwrap()
    }

    #[test]
    fn header_edits_set_add_remove_as_the_conformance_test_expects() {
        // HTTPRouteRequestHeaderModifier / HTTPRouteRewritePath.
        let edits = HeaderEdits {
            set: vec![(name("x-header-set"), value("set-overwrites-values"))],
            add: vec![
                (name("x-header-add"), value("header-val-1")),
                (name("x-header-add-append"), value("header-val-2")),
            ],
            remove: vec![name("x-header-remove")],
        };
        let mut h = HeaderMap::new();
        h.insert(name("x-header-remove"), value("remove-val"));
        h.insert(name("x-header-add-append"), value("append-val-1"));
        h.insert(name("x-header-set"), value("set-val"));
        h.append(name("x-header-set"), value("set-val-2"));
        h.insert(name("other"), value("kept"));
        edits.apply(&mut h);
        let all = |n: &str| {
            h.get_all(n)
                .iter()
                .map(|v| v.to_str().unwrap().to_owned())
                .collect::<Vec<_>>()
        };
        assert_eq!(all("x-header-set"), ["set-overwrites-values"]);
        assert_eq!(all("x-header-add"), ["header-val-1"]);
        assert_eq!(all("x-header-add-append"), ["append-val-1,header-val-2"]);
        assert!(all("x-header-remove").is_empty());
        assert_eq!(all("other"), ["kept"]);
    }

    fn backends(weights: &[u32]) -> Vec<WeightedBackend> {
        weights
            .iter()
            .map(|&weight| WeightedBackend {
                weight,
                target: Err(InvalidBackend::NotFound),
                filters: Vec::new(),
            })
            .collect()
    }

    fn counts(weights: &[u32], turns: u64) -> Vec<u64> {
        let b = backends(weights);
        let mut c = vec![0; weights.len()];
        for t in 0..turns {
            c[pick_weighted(&b, t).unwrap()] += 1;
        }
        c
    }

    #[test]
    fn weights_give_exact_shares_over_each_period() {
        assert_eq!(counts(&[1], 10), [10]);
        assert_eq!(counts(&[1, 1], 1000), [500, 500]);
        assert_eq!(counts(&[1, 3], 1000), [250, 750]);
        assert_eq!(counts(&[70, 30], 1000), [700, 300]);
        assert_eq!(counts(&[0, 1, 0, 2], 999), [0, 333, 0, 666]);
        assert_eq!(counts(&[u32::MAX, 1], 10).iter().sum::<u64>(), 10);
    }

    #[test]
    fn every_window_of_one_period_has_each_backend_its_weight() {
        let b = backends(&[2, 3, 5]);
        for start in 0..50u64 {
            let mut c = [0; 3];
            for t in start..start + 10 {
                c[pick_weighted(&b, t).unwrap()] += 1;
            }
            assert_eq!(c, [2, 3, 5], "turns {start}..{}", start + 10);
        }
        // Interleaved: the weight-5 backend never gets more than two turns in a row.
        let seq: Vec<usize> = (0..10).map(|t| pick_weighted(&b, t).unwrap()).collect();
        assert!(
            !seq.windows(3).any(|w| w.iter().all(|&i| i == 2)),
            "{seq:?}"
        );
    }

    #[test]
    fn no_backend_or_only_zero_weights_pick_none() {
        assert_eq!(pick_weighted(&backends(&[]), 0), None);
        assert_eq!(pick_weighted(&backends(&[0, 0]), 7), None);
    }
}
