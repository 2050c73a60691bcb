//! `default-backend` and `custom-http-errors` parsers. The Service is resolved when the
//! Ingress is translated (`config::ingress`); the router sends the error requests
//! (`http::router::errors`).

use crate::snapshot::policy::RoutePolicy;

/// `default-backend`: a Service name in the Ingress's namespace (a DNS label).
pub(super) fn default_backend(value: &str, p: &mut RoutePolicy) -> Result<(), String> {
    let valid = !value.is_empty()
        && value.len() <= 63
        && !value.starts_with('-')
        && !value.ends_with('-')
        && value
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-');
    if !valid {
        return Err(format!(
            "{value:?} is not a Service name (of the Ingress's namespace); ignored"
        ));
    }
    p.default_backend_service = Some(value.to_owned());
    Ok(())
}

/// `custom-http-errors`: comma-separated status codes, 300 to 599 (those nginx's
/// `error_page` takes); invalid entries are skipped.
pub(super) fn custom_http_errors(value: &str, p: &mut RoutePolicy) -> Result<(), String> {
    let mut bad = Vec::new();
    for entry in value.split(',').map(str::trim).filter(|e| !e.is_empty()) {
        match entry.parse::<u16>() {
            Ok(code @ 300..=599) if entry.bytes().all(|b| b.is_ascii_digit()) => {
                p.custom_http_errors.push(code);
            }
            _ => bad.push(format!("{entry:?}")),
        }
    }
    p.custom_http_errors.sort_unstable();
    p.custom_http_errors.dedup();
    match (bad.is_empty(), p.custom_http_errors.is_empty()) {
        (true, false) => Ok(()),
        (true, true) => Err("no status code given; ignored".to_owned()),
        (false, _) => Err(format!(
            "{} not a status code from 300 to 599; skipped",
            bad.join(", ")
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn status_codes_are_parsed_sorted_and_deduplicated() {
        // customhttperrors.go: "404,500", "503", "404, 503".
        for (value, want, ok) in [
            ("404,500", &[404, 500][..], true),
            ("503", &[503], true),
            ("404, 503, 404", &[404, 503], true),
            ("503,abc,200, 600", &[503], false),
            ("+404", &[], false),
            ("", &[], false),
        ] {
            let mut p = RoutePolicy::default();
            let got = custom_http_errors(value, &mut p);
            assert_eq!(p.custom_http_errors, want, "{value:?}");
            assert_eq!(got.is_ok(), ok, "{value:?}: {got:?}");
        }
    }

    #[test]
    fn default_backend_is_a_service_name() {
        for (value, ok) in [
            ("echo", true),
            ("from-annotation", true),
            ("ns/echo", false),
            ("Echo", false),
            ("-x", false),
            ("", false),
        ] {
            let mut p = RoutePolicy::default();
            assert_eq!(default_backend(value, &mut p).is_ok(), ok, "{value:?}");
            assert_eq!(p.default_backend_service.is_some(), ok);
        }
    }
}
