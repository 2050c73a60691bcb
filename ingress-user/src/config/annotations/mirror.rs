//! `mirror-target`, `mirror-request-body`, `mirror-host` parsers. The target is resolved
//! to its address or Service when the Ingress is translated (`config::ingress`); the
//! router sends the copies (`http::router::mirror`).

use hyper::header::HeaderValue;

use crate::snapshot::policy::{RoutePolicy, mirror::MirrorTarget};

pub(super) fn target(value: &str, p: &mut RoutePolicy) -> Result<(), String> {
    let t: MirrorTarget = value
        .parse()
        .map_err(|e| format!("{e}; requests are not mirrored"))?;
    p.mirror_target = Some(t);
    Ok(())
}

/// `on` (the default) or `off`, as nginx's `mirror_request_body`; booleans too.
pub(super) fn request_body(value: &str, p: &mut RoutePolicy) -> Result<(), String> {
    p.mirror_skip_body = match value {
        "on" | "true" => false,
        "off" | "false" => true,
        _ => return Err(format!("{value:?} is not on or off; on is used")),
    };
    Ok(())
}

/// `mirror-host`: a `host[:port]` (no variables).
pub(super) fn host(value: &str, p: &mut RoutePolicy) -> Result<(), String> {
    let bad = value
        .chars()
        .find(|c| !c.is_ascii_graphic() || matches!(c, '$' | '/' | '?' | '#' | '@'));
    let v = (!value.is_empty() && bad.is_none())
        .then(|| HeaderValue::from_str(value).ok())
        .flatten()
        .ok_or_else(|| {
            format!("{value:?} is not a host name (host or host:port); the target's host is used")
        })?;
    p.mirror_host = Some(v);
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mirror_annotations_parse() {
        let mut p = RoutePolicy::default();
        assert!(request_body("off", &mut p).is_ok());
        assert!(p.mirror_skip_body);
        assert!(request_body("on", &mut p).is_ok());
        assert!(!p.mirror_skip_body);
        assert!(request_body("maybe", &mut p).is_err());
        assert!(host("test.env.com", &mut p).is_ok());
        assert_eq!(
            p.mirror_host,
            Some(HeaderValue::from_static("test.env.com"))
        );
        assert!(host("$host", &mut p).is_err());
        assert!(target("https://test.env.com/$request_uri", &mut p).is_err());
        assert!(target("http://10.0.0.1/mirror", &mut p).is_ok());
    }
}
