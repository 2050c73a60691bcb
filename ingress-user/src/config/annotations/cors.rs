//! `enable-cors` and `cors-*` parsers, with ingress-nginx's validation (its `cors`
//! annotation parser): a value that fails it keeps the default, and says so.

use std::sync::Arc;

use hyper::header::HeaderValue;

use super::boolean;
use crate::snapshot::policy::{
    RoutePolicy,
    cors::{Cors, DEFAULT_MAX_AGE, OriginPattern, Origins},
};

/// The policy's CORS settings, created with ingress-nginx's defaults on first use.
fn cors(p: &mut RoutePolicy) -> &mut Cors {
    Arc::make_mut(p.cors.get_or_insert_with(Arc::default))
}

/// Drops the CORS settings unless `enable-cors` turned them on (called once all
/// annotations are parsed, so the others need not come after it).
pub(super) fn finish(p: &mut RoutePolicy) {
    if p.cors.as_ref().is_some_and(|c| !c.enabled) {
        p.cors = None;
    }
}

pub(super) fn enable(value: &str, p: &mut RoutePolicy) -> Result<(), String> {
    let on = boolean(value).map_err(|e| e.replace("the default applies", "CORS stays off"))?;
    cors(p).enabled = on;
    Ok(())
}

/// `cors-allow-origin`: a comma-separated list of origins; `*` anywhere (or no entry at
/// all) admits every origin. Invalid entries are skipped; if none is left, no origin is
/// admitted (ingress-nginx then writes no match either).
pub(super) fn allow_origin(value: &str, p: &mut RoutePolicy) -> Result<(), String> {
    let entries: Vec<&str> = value
        .split(',')
        .map(str::trim)
        .filter(|e| !e.is_empty())
        .collect();
    if entries.is_empty() || entries.contains(&"*") {
        cors(p).origins = Origins::Any;
        return Ok(());
    }
    let mut good = Vec::new();
    let mut bad = Vec::new();
    for e in entries {
        match e.parse::<OriginPattern>() {
            Ok(o) => good.push(o),
            Err(e) => bad.push(e.to_string()),
        }
    }
    let none_left = good.is_empty();
    cors(p).origins = Origins::List(good);
    match (bad.is_empty(), none_left) {
        (true, _) => Ok(()),
        (false, false) => Err(format!("{}; skipped", bad.join("; "))),
        (false, true) => Err(format!(
            "{}; no origin is left, so no request gets CORS headers",
            bad.join("; ")
        )),
    }
}

/// A comma-separated list of tokens (`ok` bytes, or `*` where `star`), as ingress-nginx's
/// `^(TOKEN,?\s?)+$` checks; the value is answered as written.
fn token_list(value: &str, ok: fn(u8) -> bool, star: bool) -> Option<HeaderValue> {
    let valid = !value.is_empty()
        && value
            .split(',')
            .map(str::trim)
            .all(|t| (!t.is_empty() && t.bytes().all(ok)) || (star && t == "*"));
    valid.then(|| HeaderValue::from_str(value).ok()).flatten()
}

fn header_name_byte(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b == b'-' || b == b'_'
}

pub(super) fn allow_methods(value: &str, p: &mut RoutePolicy) -> Result<(), String> {
    let v = token_list(value, |b| b.is_ascii_alphabetic(), false).ok_or_else(|| {
        format!(
            "{value:?} is not a comma-separated list of methods (letters only); the default applies"
        )
    })?;
    cors(p).methods = v;
    Ok(())
}

pub(super) fn allow_headers(value: &str, p: &mut RoutePolicy) -> Result<(), String> {
    let v = token_list(value, header_name_byte, false).ok_or_else(|| {
        format!("{value:?} is not a comma-separated list of header names (letters, digits, - and _); the default applies")
    })?;
    cors(p).headers = v;
    Ok(())
}

pub(super) fn expose_headers(value: &str, p: &mut RoutePolicy) -> Result<(), String> {
    let v = token_list(value, header_name_byte, true).ok_or_else(|| {
        format!("{value:?} is not a comma-separated list of header names (letters, digits, -, _ or *); none are exposed")
    })?;
    cors(p).expose = Some(v);
    Ok(())
}

pub(super) fn allow_credentials(value: &str, p: &mut RoutePolicy) -> Result<(), String> {
    let on = boolean(value).map_err(|e| e.replace("the default applies", "true is used"))?;
    cors(p).credentials = on;
    Ok(())
}

pub(super) fn max_age(value: &str, p: &mut RoutePolicy) -> Result<(), String> {
    let n = value
        .bytes()
        .all(|b| b.is_ascii_digit())
        .then(|| value.parse::<u32>().ok())
        .flatten()
        .ok_or_else(|| {
            format!("{value:?} is not a number of seconds; {DEFAULT_MAX_AGE} is used")
        })?;
    cors(p).max_age = n;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::super::{DEFAULT_PREFIX, Status, parse};
    use super::*;

    fn parsed(pairs: &[(&str, &str)]) -> (Option<Cors>, Vec<(String, Status, String)>) {
        let map = pairs
            .iter()
            .map(|(k, v)| (format!("{DEFAULT_PREFIX}/{k}"), (*v).to_owned()))
            .collect();
        let out = parse(Some(&map), DEFAULT_PREFIX);
        let cors = out.policy.and_then(|p| p.cors.as_deref().cloned());
        let verdicts = out
            .verdicts
            .into_iter()
            .map(|v| (v.name, v.status, v.note))
            .collect();
        (cors, verdicts)
    }

    fn list(origins: &[&str]) -> Origins {
        Origins::List(origins.iter().map(|o| o.parse().unwrap()).collect())
    }

    /// ingress-nginx's defaults (cors.go "should enable cors"): every origin, the default
    /// methods, headers and max age, credentials true.
    #[test]
    fn enable_cors_alone_gives_ingress_nginx_defaults() {
        let (cors, _) = parsed(&[("enable-cors", "true")]);
        let c = cors.unwrap();
        assert_eq!(c.origins, Origins::Any);
        assert_eq!(c.methods, "GET, PUT, POST, DELETE, PATCH, OPTIONS");
        assert_eq!(
            c.headers,
            "DNT,Keep-Alive,User-Agent,X-Requested-With,If-Modified-Since,Cache-Control,Content-Type,Range,Authorization"
        );
        assert_eq!(
            (c.max_age, c.credentials, c.expose),
            (1_728_000, true, None)
        );
    }

    #[test]
    fn cors_annotations_do_nothing_without_enable_cors() {
        for pairs in [
            &[("cors-allow-origin", "https://a.com")][..],
            &[("enable-cors", "false"), ("cors-max-age", "5")],
            &[("enable-cors", "yes")],
        ] {
            assert_eq!(parsed(pairs).0, None, "{pairs:?}");
        }
    }

    /// (annotation, value, the field it sets as Debug text or "" when the default stays,
    /// status). Rows from cors.go and ingress-nginx's cors parser.
    #[test]
    fn each_cors_annotation_is_validated() {
        for (name, value, status, word) in [
            ("cors-allow-methods", "POST, GET", Status::Applied, ""),
            (
                "cors-allow-methods",
                "GET;DROP",
                Status::Invalid,
                "default applies",
            ),
            ("cors-allow-methods", "GET,,PUT", Status::Invalid, "methods"),
            ("cors-allow-headers", "DNT, User-Agent", Status::Applied, ""),
            (
                "cors-allow-headers",
                "X-A: b",
                Status::Invalid,
                "header names",
            ),
            (
                "cors-expose-headers",
                "X-CustomResponseHeader, X-CustomSecondHeader",
                Status::Applied,
                "",
            ),
            ("cors-expose-headers", "*", Status::Applied, ""),
            (
                "cors-expose-headers",
                "$upstream_addr",
                Status::Invalid,
                "none are exposed",
            ),
            ("cors-max-age", "200", Status::Applied, ""),
            ("cors-max-age", "-1", Status::Invalid, "1728000 is used"),
            ("cors-allow-credentials", "false", Status::Applied, ""),
            (
                "cors-allow-credentials",
                "nope",
                Status::Invalid,
                "true is used",
            ),
            (
                "cors-allow-origin",
                "https://origin.cors.com:8080",
                Status::Applied,
                "",
            ),
            (
                "cors-allow-origin",
                "origin.cors.com:8080, https://origin.com",
                Status::Invalid,
                "skipped",
            ),
            (
                "cors-allow-origin",
                "ftp://x",
                Status::Invalid,
                "no origin is left",
            ),
            ("cors-allow-origin", "      ", Status::Applied, ""),
            ("cors-allow-origin", "*, foo.bar.com", Status::Applied, ""),
        ] {
            let (_, verdicts) = parsed(&[("enable-cors", "true"), (name, value)]);
            let v = verdicts.iter().find(|v| v.0 == name).unwrap();
            assert_eq!(v.1, status, "{name}: {value:?}: {}", v.2);
            assert!(v.2.contains(word), "{name}: {value:?}: {}", v.2);
        }
    }

    #[test]
    fn values_become_the_cors_policy() {
        let (c, _) = parsed(&[
            ("enable-cors", "true"),
            (
                "cors-allow-origin",
                "origin.cors.com:8080, https://origin2.cors.com, https://*.origin.com",
            ),
            ("cors-allow-methods", "POST, GET"),
            ("cors-allow-credentials", "false"),
            ("cors-max-age", "200"),
            ("cors-expose-headers", "X-A"),
        ]);
        let c = c.unwrap();
        assert_eq!(
            c.origins,
            list(&["https://origin2.cors.com", "https://*.origin.com"])
        );
        assert_eq!(c.methods, "POST, GET");
        assert_eq!((c.credentials, c.max_age), (false, 200));
        assert_eq!(c.expose, Some(HeaderValue::from_static("X-A")));
        // An invalid value keeps the default.
        let (c, _) = parsed(&[("enable-cors", "true"), ("cors-allow-methods", "G:T")]);
        assert_eq!(c.unwrap().methods, "GET, PUT, POST, DELETE, PATCH, OPTIONS");
        // `*` anywhere, or nothing, admits every origin (cors.go "with extra domain",
        // "missing origins").
        for v in ["*, foo.bar.com", "  ", "https://a.com,*"] {
            let (c, _) = parsed(&[("enable-cors", "true"), ("cors-allow-origin", v)]);
            assert_eq!(c.unwrap().origins, Origins::Any, "{v:?}");
        }
        let (c, _) = parsed(&[("enable-cors", "true"), ("cors-allow-origin", "nope")]);
        assert_eq!(c.unwrap().origins, Origins::List(vec![]));
    }
}
