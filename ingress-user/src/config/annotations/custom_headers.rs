//! `custom-headers`: a ConfigMap whose data are response headers set on every response of
//! the Ingress's paths (ingress-nginx's `more_set_headers`, values literal: nothing is
//! expanded). As in ingress-nginx, the ConfigMap is read when the Ingress is translated,
//! each name must be allowed by `--global-allowed-response-headers`, and a missing
//! ConfigMap or a refused header denies the location (503) rather than serve without them.
//!
//! Stricter than ingress-nginx: the ConfigMap must be in the Ingress's namespace (another
//! namespace's ConfigMap would leak its data to whoever writes Ingresses), and headers
//! that frame or route the response (`Content-Length`, `Connection`, ...) are refused.

use std::collections::BTreeMap;

use hyper::header::{HeaderName, HeaderValue};

use crate::snapshot::policy::RoutePolicy;

/// The annotation: `namespace/name` or `name` (the Ingress's namespace).
pub(super) fn parse_ref(value: &str, p: &mut RoutePolicy) -> Result<(), String> {
    let dns = |s: &str| {
        !s.is_empty()
            && s.len() <= 253
            && s.bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-' || b == b'.')
    };
    let (ns, name) = match value.split_once('/') {
        Some((ns, name)) => (Some(ns), name),
        None => (None, value),
    };
    if !dns(name) || ns.is_some_and(|ns| !dns(ns)) {
        p.denied = true;
        return Err(format!(
            "{value:?} is not a ConfigMap reference (namespace/name or name); every request to this Ingress's paths gets 503"
        ));
    }
    p.custom_headers = Some((ns.map(str::to_owned), name.to_owned()));
    Ok(())
}

/// Headers a ConfigMap may not set: they frame the message or belong to one connection.
const REFUSED: &[&str] = &[
    "connection",
    "content-length",
    "keep-alive",
    "proxy-connection",
    "te",
    "trailer",
    "transfer-encoding",
    "upgrade",
];

/// The response headers of a `custom-headers` ConfigMap's data, or why it is refused: a
/// name that is not a header name (letters, digits, `-` and `_`, as ingress-nginx), not in
/// `allowed` (compared case-insensitively), or one that frames the message; a value with control
/// characters. Pure.
pub fn headers_from_data(
    data: &BTreeMap<String, String>,
    allowed: &[HeaderName],
) -> Result<Vec<(HeaderName, HeaderValue)>, String> {
    let mut out = Vec::with_capacity(data.len());
    for (name, value) in data {
        let valid = !name.is_empty()
            && name
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_');
        let header = valid
            .then(|| HeaderName::from_bytes(name.as_bytes()).ok())
            .flatten()
            .ok_or_else(|| format!("{name:?} is not a header name"))?;
        if REFUSED.contains(&header.as_str()) {
            return Err(format!("{name} may not be set: it frames the response"));
        }
        if !allowed.contains(&header) {
            return Err(format!(
                "{name} is not allowed by --global-allowed-response-headers"
            ));
        }
        let bad = value.chars().find(|c| !(c.is_ascii_graphic() || *c == ' '));
        let value = match bad {
            None => HeaderValue::from_str(value).ok(),
            Some(_) => None,
        }
        .ok_or_else(|| {
            format!("the value of {name} is not a header value (visible ASCII and spaces only)")
        })?;
        out.push((header, value));
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn data(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect()
    }

    /// customheaders.go: names allowed by global-allowed-response-headers are set with
    /// their values as written (`$remote_addr` is not expanded).
    #[test]
    fn data_becomes_headers_when_allowed() {
        let allowed: Vec<HeaderName> = ["my-custom-header", "my-custom-header-dollar"]
            .iter()
            .map(|n| n.parse().unwrap())
            .collect();
        for (pairs, want) in [
            (
                &[
                    ("My-Custom-Header", "42"),
                    ("My-Custom-Header-Dollar", "$remote_addr"),
                ][..],
                Ok(vec![
                    ("my-custom-header", "42"),
                    ("my-custom-header-dollar", "$remote_addr"),
                ]),
            ),
            (&[], Ok(vec![])),
            (&[("X-Other", "1")], Err("not allowed")),
            (&[("My Custom", "1")], Err("not a header name")),
            (&[("My:Custom", "1")], Err("not a header name")),
            (&[("My-Custom-Header", "a\nb")], Err("not a header value")),
            (&[("My-Custom-Header", "é")], Err("not a header value")),
        ] {
            let got = headers_from_data(&data(pairs), &allowed);
            match (got, want) {
                (Ok(got), Ok(want)) => {
                    let got: Vec<(&str, &str)> = got
                        .iter()
                        .map(|(n, v)| (n.as_str(), v.to_str().unwrap()))
                        .collect();
                    assert_eq!(got, want, "{pairs:?}");
                }
                (Err(e), Err(word)) => assert!(e.contains(word), "{pairs:?}: {e}"),
                (got, want) => panic!("{pairs:?}: {got:?}, want {want:?}"),
            }
        }
        let everything: Vec<HeaderName> = vec!["content-length".parse().unwrap()];
        let e = headers_from_data(&data(&[("Content-Length", "0")]), &everything).unwrap_err();
        assert!(e.contains("frames"), "{e}");
    }

    #[test]
    fn references_are_namespace_slash_name_or_name() {
        for (value, want) in [
            (
                "default/custom-headers",
                Some((Some("default"), "custom-headers")),
            ),
            ("custom-headers", Some((None, "custom-headers"))),
            ("a/b/c", None),
            ("", None),
            ("Default/x", None),
            ("/x", None),
        ] {
            let mut p = RoutePolicy::default();
            let ok = parse_ref(value, &mut p).is_ok();
            let got = p
                .custom_headers
                .as_ref()
                .map(|(ns, n)| (ns.as_deref(), n.as_str()));
            assert_eq!(got, want, "{value:?}");
            assert_eq!(ok, want.is_some());
            assert_eq!(p.denied, want.is_none(), "a bad reference fails closed");
        }
    }
}
