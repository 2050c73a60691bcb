//! ingress-nginx annotations (`<prefix>/<name>`, prefix from `--annotations-prefix`), parsed
//! once per Ingress, when it is translated, into a typed [`RoutePolicy`].
//!
//! Every annotation under the prefix gets a [`Verdict`], which `xdp-ingress check` prints
//! as a migration report:
//! - **applied**: parsed and in force;
//! - **invalid**: applied, but its value is wrong (a Problem says what; the rest of the
//!   Ingress is served);
//! - **ignored**: not supported (yet), with the nearest equivalent when there is one;
//! - **refused**: free-form configuration (`*-snippet`), never applied (a warning Problem
//!   says why).
//!
//! Nothing read here is ever templated into any configuration language.

use std::{collections::BTreeMap, fmt, sync::Arc};

use super::problem::Severity;
use crate::snapshot::policy::{Cidr, RoutePolicy};

/// ingress-nginx's default `--annotations-prefix`.
pub const DEFAULT_PREFIX: &str = "nginx.ingress.kubernetes.io";

/// Why snippets are refused, for Problems and the report.
pub const SNIPPET_REASON: &str = "free-form nginx configuration is never applied: snippets let Ingress authors inject configuration and read the controller's secrets (CVE-2021-25742, CVE-2023-5043, CVE-2025-1974)";

/// What became of one annotation.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Status {
    /// Parsed and in force.
    Applied,
    /// In force as far as its value allows; a Problem says what is wrong.
    Invalid,
    /// Not supported; the Ingress is served without it.
    Ignored,
    /// Unsafe; never applied.
    Refused,
}

impl Status {
    /// The report's word for it.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Applied => "applied",
            Self::Invalid => "invalid",
            Self::Ignored => "ignored",
            Self::Refused => "refused",
        }
    }
}

impl fmt::Display for Status {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// One annotation of one Ingress in the migration report.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Verdict {
    /// The name without the prefix, e.g. `ssl-redirect`.
    pub name: String,
    /// What became of it.
    pub status: Status,
    /// Why, or the nearest equivalent (may be empty).
    pub note: String,
}

/// A Problem found in the annotations, without its object (the caller names the Ingress).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Finding {
    /// The field, `metadata.annotations["<prefix>/<name>"]`.
    pub field: String,
    /// A stable snake_case label.
    pub kind: &'static str,
    /// What is wrong and what is done instead.
    pub message: String,
    /// Warning or error.
    pub severity: Severity,
}

/// An Ingress's annotations, parsed.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Parsed {
    /// The policy of its routes; `None` when it asks for nothing.
    pub policy: Option<Arc<RoutePolicy>>,
    /// One verdict per annotation under the prefix, by name.
    pub verdicts: Vec<Verdict>,
    /// What is wrong with them.
    pub findings: Vec<Finding>,
}

/// How one annotation is handled.
#[derive(Clone, Copy)]
enum Support {
    /// Parsed into the policy; an `Err` is the Problem message (the policy keeps whatever
    /// the parser set, so a parser decides how it fails: open for harmless ones, closed
    /// for access rules).
    Applied(fn(&str, &mut RoutePolicy) -> Result<(), String>),
    /// A known ingress-nginx annotation we do not implement; the nearest equivalent.
    Ignored(&'static str),
}

/// The ingress-nginx annotations we know, sorted by name. Names ending in `-snippet` are
/// refused whatever this table says; names not in it are ignored as unknown.
const TABLE: &[(&str, Support)] = &[
    ("affinity", Support::Ignored("")),
    ("affinity-mode", Support::Ignored("")),
    ("allowlist-source-range", Support::Applied(allowlist)),
    ("app-root", Support::Applied(app_root)),
    ("auth-realm", Support::Ignored("")),
    ("auth-secret", Support::Ignored("")),
    ("auth-secret-type", Support::Ignored("")),
    ("auth-tls-secret", Support::Ignored("")),
    ("auth-tls-verify-client", Support::Ignored("")),
    ("auth-tls-verify-depth", Support::Ignored("")),
    ("auth-type", Support::Ignored("")),
    ("auth-url", Support::Ignored("")),
    (
        "backend-protocol",
        Support::Ignored(
            "the Service port's appProtocol: h2c, http2 or grpc selects cleartext HTTP/2",
        ),
    ),
    (
        "canary",
        Support::Ignored("Gateway API HTTPRoute backendRefs with weights"),
    ),
    ("canary-by-cookie", Support::Ignored("")),
    (
        "canary-by-header",
        Support::Ignored("Gateway API HTTPRoute header matches"),
    ),
    ("canary-by-header-pattern", Support::Ignored("")),
    (
        "canary-by-header-value",
        Support::Ignored("Gateway API HTTPRoute header matches"),
    ),
    (
        "canary-weight",
        Support::Ignored("Gateway API HTTPRoute backendRefs with weights"),
    ),
    (
        "client-body-buffer-size",
        Support::Ignored("the global --client-body-buffer-size"),
    ),
    ("cors-allow-credentials", Support::Ignored("")),
    ("cors-allow-headers", Support::Ignored("")),
    ("cors-allow-methods", Support::Ignored("")),
    ("cors-allow-origin", Support::Ignored("")),
    ("cors-expose-headers", Support::Ignored("")),
    ("cors-max-age", Support::Ignored("")),
    ("custom-headers", Support::Ignored("")),
    ("custom-http-errors", Support::Ignored("")),
    (
        "default-backend",
        Support::Ignored("the Ingress spec.defaultBackend"),
    ),
    ("denylist-source-range", Support::Applied(denylist)),
    ("enable-cors", Support::Ignored("")),
    ("force-ssl-redirect", Support::Applied(force_ssl_redirect)),
    ("from-to-www-redirect", Support::Ignored("")),
    ("limit-burst-multiplier", Support::Ignored("")),
    ("limit-connections", Support::Ignored("")),
    ("limit-rpm", Support::Ignored("")),
    ("limit-rps", Support::Ignored("")),
    ("limit-whitelist", Support::Ignored("")),
    (
        "load-balance",
        Support::Ignored("the global --load-balance"),
    ),
    ("mirror-host", Support::Ignored("")),
    ("mirror-request-body", Support::Ignored("")),
    ("mirror-target", Support::Ignored("")),
    ("permanent-redirect", Support::Applied(permanent_redirect)),
    (
        "permanent-redirect-code",
        Support::Applied(permanent_redirect_code),
    ),
    ("proxy-body-size", Support::Applied(proxy_body_size)),
    ("proxy-buffer-size", Support::Ignored("")),
    ("proxy-buffering", Support::Ignored("")),
    (
        "proxy-connect-timeout",
        Support::Applied(proxy_connect_timeout),
    ),
    ("proxy-read-timeout", Support::Applied(proxy_read_timeout)),
    ("proxy-send-timeout", Support::Applied(proxy_send_timeout)),
    ("proxy-ssl-name", Support::Ignored("")),
    ("proxy-ssl-secret", Support::Ignored("")),
    ("proxy-ssl-server-name", Support::Ignored("")),
    ("proxy-ssl-verify", Support::Ignored("")),
    ("rewrite-target", Support::Applied(rewrite_target)),
    (
        "server-alias",
        Support::Ignored("one more rule per host in spec.rules"),
    ),
    ("service-upstream", Support::Ignored("")),
    ("session-cookie-expires", Support::Ignored("")),
    ("session-cookie-max-age", Support::Ignored("")),
    ("session-cookie-name", Support::Ignored("")),
    ("session-cookie-path", Support::Ignored("")),
    ("session-cookie-samesite", Support::Ignored("")),
    ("ssl-passthrough", Support::Applied(ssl_passthrough)),
    ("ssl-redirect", Support::Applied(ssl_redirect)),
    ("temporal-redirect", Support::Applied(temporal_redirect)),
    ("upstream-hash-by", Support::Ignored("")),
    ("upstream-vhost", Support::Applied(upstream_vhost)),
    ("use-regex", Support::Applied(use_regex)),
    ("whitelist-source-range", Support::Applied(allowlist)),
    ("x-forwarded-prefix", Support::Applied(x_forwarded_prefix)),
];

/// Parses the annotations under `prefix` (`<prefix>/<name>`; others are not ours).
pub fn parse(annotations: Option<&BTreeMap<String, String>>, prefix: &str) -> Parsed {
    let mut out = Parsed::default();
    let Some(annotations) = annotations else {
        return out;
    };
    let mut policy = RoutePolicy::default();
    let ours = |key: &'_ String| -> Option<String> {
        key.strip_prefix(prefix)
            .and_then(|k| k.strip_prefix('/'))
            .map(str::to_owned)
    };
    let has = |name: &str| annotations.contains_key(&format!("{prefix}/{name}"));
    for (key, value) in annotations {
        let Some(name) = ours(key) else { continue };
        let field = format!("metadata.annotations[{key:?}]");
        let (status, note) = if name.ends_with("-snippet") {
            out.findings.push(Finding {
                field,
                kind: "annotation_refused",
                message: format!("ignored: {SNIPPET_REASON}"),
                severity: Severity::Warning,
            });
            (Status::Refused, SNIPPET_REASON.to_owned())
        } else if name == "whitelist-source-range" && has("allowlist-source-range") {
            let note = "overridden by allowlist-source-range".to_owned();
            (Status::Ignored, note)
        } else {
            match TABLE.binary_search_by(|(n, _)| (*n).cmp(name.as_str())) {
                Ok(i) => match TABLE[i].1 {
                    Support::Applied(parse) => match parse(value.trim(), &mut policy) {
                        Ok(()) => (Status::Applied, String::new()),
                        Err(message) => {
                            out.findings.push(Finding {
                                field,
                                kind: "invalid_annotation",
                                message: message.clone(),
                                severity: Severity::Error,
                            });
                            (Status::Invalid, message)
                        }
                    },
                    Support::Ignored(equivalent) => {
                        let note = if equivalent.is_empty() {
                            "not supported".to_owned()
                        } else {
                            format!("not supported; nearest equivalent: {equivalent}")
                        };
                        (Status::Ignored, note)
                    }
                },
                Err(_) => (
                    Status::Ignored,
                    "not supported: not an annotation xdp-ingress knows (unsupported, or a typo)"
                        .to_owned(),
                ),
            }
        };
        out.verdicts.push(Verdict { name, status, note });
    }
    out.policy = (!policy.is_default()).then(|| Arc::new(policy));
    out
}

/// An ingress-nginx boolean (Go's `strconv.ParseBool`).
fn boolean(value: &str) -> Result<bool, String> {
    match value {
        "1" | "t" | "T" | "true" | "TRUE" | "True" => Ok(true),
        "0" | "f" | "F" | "false" | "FALSE" | "False" => Ok(false),
        _ => Err(format!(
            "{value:?} is not a boolean (true or false); the default applies"
        )),
    }
}

fn ssl_redirect(value: &str, p: &mut RoutePolicy) -> Result<(), String> {
    p.ssl_redirect = Some(boolean(value)?);
    Ok(())
}

/// `ssl-passthrough`: no `--enable-ssl-passthrough` needed (see `http::passthrough`).
fn ssl_passthrough(value: &str, p: &mut RoutePolicy) -> Result<(), String> {
    p.ssl_passthrough = boolean(value)?;
    Ok(())
}

fn force_ssl_redirect(value: &str, p: &mut RoutePolicy) -> Result<(), String> {
    p.force_ssl_redirect = boolean(value)?;
    Ok(())
}

fn use_regex(value: &str, p: &mut RoutePolicy) -> Result<(), String> {
    p.use_regex = boolean(value)?;
    Ok(())
}

/// A path as a URI path: starts with `/`, visible ASCII only (no spaces, no controls).
fn uri_path(value: &str) -> Result<(), String> {
    if !value.starts_with('/') {
        return Err(format!("{value:?} is not a path starting with /; ignored"));
    }
    if let Some(c) = value.chars().find(|c| !c.is_ascii_graphic()) {
        return Err(format!(
            "{value:?} contains {c:?}: only visible ASCII is allowed in a path; ignored"
        ));
    }
    Ok(())
}

/// `rewrite-target`: a path (the query after `?` is allowed) where `$` only introduces a
/// capture group `$1`..`$9`: nginx variables are never expanded here.
fn rewrite_target(value: &str, p: &mut RoutePolicy) -> Result<(), String> {
    uri_path(value)?;
    let bytes = value.as_bytes();
    for (i, b) in bytes.iter().enumerate() {
        if *b == b'$' && !bytes.get(i + 1).is_some_and(u8::is_ascii_digit) {
            return Err(format!(
                "{value:?}: only $1..$9 (capture groups of the path) may follow $; nginx variables are not supported; ignored"
            ));
        }
    }
    p.rewrite_target = Some(value.to_owned());
    Ok(())
}

/// A redirect target: an absolute `http`/`https` URL with a host, visible ASCII only. A
/// `$` is refused: nginx would expand it as a variable (and CVE-2023-5044 injected
/// configuration through this annotation); here it would be sent literally.
fn redirect_url(value: &str) -> Result<String, String> {
    if let Some(c) = value.chars().find(|c| !c.is_ascii_graphic()) {
        return Err(format!(
            "{value:?} contains {c:?}: only visible ASCII is allowed in a URL; ignored"
        ));
    }
    if value.contains('$') {
        return Err(format!(
            "{value:?}: nginx variables ($...) are not expanded; write the URL literally; ignored"
        ));
    }
    let uri: hyper::Uri = value
        .parse()
        .map_err(|e| format!("{value:?} is not a URL ({e}); ignored"))?;
    match (uri.scheme_str(), uri.host()) {
        (Some("http" | "https"), Some(h)) if !h.is_empty() => Ok(value.to_owned()),
        _ => Err(format!(
            "{value:?}: only absolute http:// and https:// URLs are valid redirect targets; ignored"
        )),
    }
}

fn permanent_redirect(value: &str, p: &mut RoutePolicy) -> Result<(), String> {
    p.permanent_redirect = Some(redirect_url(value)?);
    Ok(())
}

fn temporal_redirect(value: &str, p: &mut RoutePolicy) -> Result<(), String> {
    p.temporal_redirect = Some(redirect_url(value)?);
    Ok(())
}

/// `permanent-redirect-code`: 300 to 308, else ingress-nginx uses 301 (so do we, and say
/// so).
fn permanent_redirect_code(value: &str, p: &mut RoutePolicy) -> Result<(), String> {
    match value.parse::<u16>() {
        Ok(code @ 300..=308) => {
            p.permanent_redirect_code = Some(code);
            Ok(())
        }
        _ => Err(format!(
            "{value:?} is not a redirect status (300 to 308); 301 is used"
        )),
    }
}

/// `upstream-vhost`: a `host[:port]` (visible ASCII, no `$` variables, no `/`).
fn upstream_vhost(value: &str, p: &mut RoutePolicy) -> Result<(), String> {
    let bad = value
        .chars()
        .find(|c| !c.is_ascii_graphic() || matches!(c, '$' | '/' | '?' | '#' | '@'));
    if value.is_empty() || bad.is_some() {
        return Err(format!(
            "{value:?} is not a host name (host or host:port; nginx variables are not expanded); ignored"
        ));
    }
    hyper::header::HeaderValue::from_str(value)
        .map_err(|_| format!("{value:?} is not a valid Host value; ignored"))?;
    p.upstream_vhost = Some(value.to_owned());
    Ok(())
}

fn app_root(value: &str, p: &mut RoutePolicy) -> Result<(), String> {
    uri_path(value)?;
    p.app_root = Some(value.to_owned());
    Ok(())
}

/// `x-forwarded-prefix`: a header value (visible ASCII and spaces); empty sends none.
fn x_forwarded_prefix(value: &str, p: &mut RoutePolicy) -> Result<(), String> {
    if let Some(c) = value.chars().find(|c| !(c.is_ascii_graphic() || *c == ' ')) {
        return Err(format!(
            "{value:?} contains {c:?}: not usable as a header value; ignored"
        ));
    }
    p.x_forwarded_prefix = (!value.is_empty()).then(|| value.to_owned());
    Ok(())
}

/// `proxy-body-size`: nginx's size syntax, bytes with an optional `k`, `m` or `g` (any
/// case); `0` lifts the limit.
fn proxy_body_size(value: &str, p: &mut RoutePolicy) -> Result<(), String> {
    let bad = || format!("{value:?} is not a size like 8m, 512k or 1048576; ignored");
    let (digits, unit) = match value.as_bytes().last() {
        Some(b'k' | b'K') => (&value[..value.len() - 1], 1u64 << 10),
        Some(b'm' | b'M') => (&value[..value.len() - 1], 1 << 20),
        Some(b'g' | b'G') => (&value[..value.len() - 1], 1 << 30),
        _ => (value, 1),
    };
    if digits.is_empty() || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return Err(bad());
    }
    let n: u64 = digits.parse().map_err(|_| bad())?;
    p.proxy_body_size = Some(n.checked_mul(unit).ok_or_else(bad)?);
    Ok(())
}

/// A `proxy-*-timeout`: whole seconds, unitless as ingress-nginx documents them.
fn seconds(value: &str) -> Result<std::time::Duration, String> {
    match value.parse::<u32>() {
        Ok(n) if n > 0 && value.bytes().all(|b| b.is_ascii_digit()) => {
            Ok(std::time::Duration::from_secs(u64::from(n)))
        }
        _ => Err(format!(
            "{value:?} is not a whole number of seconds above 0 (unitless, e.g. \"120\"); the flag's timeout applies"
        )),
    }
}

fn proxy_connect_timeout(value: &str, p: &mut RoutePolicy) -> Result<(), String> {
    p.proxy_connect_timeout = Some(seconds(value)?);
    Ok(())
}

fn proxy_read_timeout(value: &str, p: &mut RoutePolicy) -> Result<(), String> {
    p.proxy_read_timeout = Some(seconds(value)?);
    Ok(())
}

fn proxy_send_timeout(value: &str, p: &mut RoutePolicy) -> Result<(), String> {
    p.proxy_send_timeout = Some(seconds(value)?);
    Ok(())
}

/// A comma-separated CIDR list, as ingress-nginx reads it: entries trimmed, empty ones
/// skipped, bad ones dropped with an error, the good ones still applied by `set`. No good
/// entry at all fails closed (see [`RoutePolicy::denied`]) rather than lift the restriction.
fn apply_cidrs(
    value: &str,
    p: &mut RoutePolicy,
    set: fn(&mut RoutePolicy, Vec<Cidr>),
) -> Result<(), String> {
    let mut good = Vec::new();
    let mut bad = Vec::new();
    for entry in value.split(',').map(str::trim).filter(|e| !e.is_empty()) {
        match entry.parse::<Cidr>() {
            Ok(c) => good.push(c),
            Err(e) => bad.push(e.to_string()),
        }
    }
    good.sort_unstable();
    good.dedup();
    if good.is_empty() {
        p.denied = true;
        let why = if bad.is_empty() {
            "no address or network given".to_owned()
        } else {
            bad.join("; ")
        };
        return Err(format!(
            "{why}; with no usable entry every request to this Ingress's paths gets 503"
        ));
    }
    let kept = good
        .iter()
        .map(ToString::to_string)
        .collect::<Vec<_>>()
        .join(", ");
    set(p, good);
    if bad.is_empty() {
        Ok(())
    } else {
        Err(format!("{}; using only {kept}", bad.join("; ")))
    }
}

fn allowlist(value: &str, p: &mut RoutePolicy) -> Result<(), String> {
    apply_cidrs(value, p, |p, c| p.allow = Some(c))
}

fn denylist(value: &str, p: &mut RoutePolicy) -> Result<(), String> {
    apply_cidrs(value, p, |p, c| p.deny = c)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse_one(pairs: &[(&str, &str)]) -> Parsed {
        let map: BTreeMap<String, String> = pairs
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect();
        parse(Some(&map), DEFAULT_PREFIX)
    }

    fn key(name: &str) -> String {
        format!("{DEFAULT_PREFIX}/{name}")
    }

    #[test]
    fn table_is_sorted_for_binary_search() {
        assert!(TABLE.windows(2).all(|w| w[0].0 < w[1].0));
    }

    #[test]
    fn each_annotation_gets_its_verdict() {
        // (annotation, value, status, a word the note or Problem must contain)
        for (name, value, status, word) in [
            ("ssl-redirect", "false", Status::Applied, ""),
            ("ssl-redirect", "True", Status::Applied, ""),
            ("ssl-redirect", "yes", Status::Invalid, "not a boolean"),
            ("force-ssl-redirect", "1", Status::Applied, ""),
            ("force-ssl-redirect", "", Status::Invalid, "not a boolean"),
            ("ssl-passthrough", "true", Status::Applied, ""),
            ("ssl-passthrough", "on", Status::Invalid, "not a boolean"),
            (
                "whitelist-source-range",
                "18.0.0.0/8, 56.0.0.0/8",
                Status::Applied,
                "",
            ),
            (
                "allowlist-source-range",
                "::1, 10.0.0.0/8",
                Status::Applied,
                "",
            ),
            (
                "allowlist-source-range",
                "10.0.0.0/8, nope",
                Status::Invalid,
                "using only 10.0.0.0/8",
            ),
            ("allowlist-source-range", "nope", Status::Invalid, "503"),
            (
                "denylist-source-range",
                " , ",
                Status::Invalid,
                "no address",
            ),
            (
                "configuration-snippet",
                "more_set_headers x;",
                Status::Refused,
                "CVE-2025-1974",
            ),
            ("server-snippet", "x", Status::Refused, "CVE-2021-25742"),
            ("auth-snippet", "x", Status::Refused, "CVE-2023-5043"),
            ("stream-snippet", "x", Status::Refused, "never applied"),
            ("modsecurity-snippet", "x", Status::Refused, "never applied"),
            ("anything-snippet", "x", Status::Refused, "never applied"),
            ("use-regex", "true", Status::Applied, ""),
            ("use-regex", "yes", Status::Invalid, "not a boolean"),
            ("rewrite-target", "/new/backend/$1", Status::Applied, ""),
            ("rewrite-target", "/$2?x=$1", Status::Applied, ""),
            ("rewrite-target", "new", Status::Invalid, "starting with /"),
            (
                "rewrite-target",
                "/$host",
                Status::Invalid,
                "nginx variables",
            ),
            ("rewrite-target", "/a b", Status::Invalid, "visible ASCII"),
            ("app-root", "/app1", Status::Applied, ""),
            (
                "permanent-redirect",
                "https://www.example.com/x?y=1",
                Status::Applied,
                "",
            ),
            (
                "permanent-redirect",
                "ftp://example.com",
                Status::Invalid,
                "only absolute http",
            ),
            (
                "permanent-redirect",
                "/relative",
                Status::Invalid,
                "only absolute http",
            ),
            (
                "permanent-redirect",
                "https://example.com/$request_uri",
                Status::Invalid,
                "not expanded",
            ),
            ("permanent-redirect-code", "308", Status::Applied, ""),
            (
                "permanent-redirect-code",
                "404",
                Status::Invalid,
                "301 is used",
            ),
            (
                "temporal-redirect",
                "http://example.com",
                Status::Applied,
                "",
            ),
            (
                "upstream-vhost",
                "internal.example.com:8080",
                Status::Applied,
                "",
            ),
            ("upstream-vhost", "a b", Status::Invalid, "not a host name"),
            (
                "upstream-vhost",
                "$host",
                Status::Invalid,
                "not a host name",
            ),
            ("app-root", "app1", Status::Invalid, "starting with /"),
            ("x-forwarded-prefix", "/test/value", Status::Applied, ""),
            (
                "x-forwarded-prefix",
                "/a\nb",
                Status::Invalid,
                "header value",
            ),
            ("backend-protocol", "GRPC", Status::Ignored, "appProtocol"),
            ("proxy-connect-timeout", "10", Status::Applied, ""),
            ("proxy-read-timeout", "120", Status::Applied, ""),
            ("proxy-send-timeout", "1", Status::Applied, ""),
            (
                "proxy-read-timeout",
                "10s",
                Status::Invalid,
                "whole number of seconds",
            ),
            ("proxy-send-timeout", "0", Status::Invalid, "above 0"),
            (
                "proxy-connect-timeout",
                "+5",
                Status::Invalid,
                "whole number",
            ),
            ("proxy-body-size", "8m", Status::Applied, ""),
            ("proxy-body-size", "0", Status::Applied, ""),
            ("proxy-body-size", "1.5m", Status::Invalid, "not a size"),
            ("proxy-body-size", "m", Status::Invalid, "not a size"),
            (
                "proxy-body-size",
                "99999999999999999999",
                Status::Invalid,
                "not a size",
            ),
            ("affinity", "cookie", Status::Ignored, "not supported"),
            ("ssl-redirekt", "true", Status::Ignored, "typo"),
        ] {
            let parsed = parse_one(&[(&key(name), value)]);
            let v = &parsed.verdicts[0];
            assert_eq!(
                (v.name.as_str(), v.status),
                (name, status),
                "{name}: {value:?}"
            );
            assert!(
                v.note.contains(word),
                "{name}: {value:?}: note {:?}",
                v.note
            );
            let want_finding = matches!(status, Status::Invalid | Status::Refused);
            assert_eq!(parsed.findings.len(), usize::from(want_finding), "{name}");
            if let Some(f) = parsed.findings.first() {
                assert_eq!(f.field, format!("metadata.annotations[{:?}]", key(name)));
                assert!(f.message.contains(word), "{name}: {}", f.message);
                let severity = if status == Status::Refused {
                    Severity::Warning
                } else {
                    Severity::Error
                };
                assert_eq!(f.severity, severity, "{name}");
            }
        }
    }

    #[test]
    fn values_become_the_policy() {
        let c = |s: &str| s.parse::<Cidr>().unwrap();
        for (pairs, want) in [
            (vec![], None),
            (
                vec![("ssl-redirect", "true")],
                Some(RoutePolicy {
                    ssl_redirect: Some(true),
                    ..RoutePolicy::default()
                }),
            ),
            (vec![("force-ssl-redirect", "false")], None),
            (
                vec![("proxy-body-size", "8M")],
                Some(RoutePolicy {
                    proxy_body_size: Some(8 << 20),
                    ..RoutePolicy::default()
                }),
            ),
            (
                vec![("proxy-body-size", "100")],
                Some(RoutePolicy {
                    proxy_body_size: Some(100),
                    ..RoutePolicy::default()
                }),
            ),
            (
                vec![("ssl-redirect", "maybe"), ("server-snippet", "x")],
                None,
            ),
            (
                vec![("force-ssl-redirect", "true")],
                Some(RoutePolicy {
                    force_ssl_redirect: true,
                    ..RoutePolicy::default()
                }),
            ),
            (
                vec![
                    ("whitelist-source-range", "1.0.0.0/8"),
                    (
                        "allowlist-source-range",
                        "17.0.0.0/8,, 55.0.0.0/8 ,17.0.0.0/8",
                    ),
                    ("denylist-source-range", "18.0.0.0/8, 56.0.0.1"),
                ],
                Some(RoutePolicy {
                    allow: Some(vec![c("17.0.0.0/8"), c("55.0.0.0/8")]),
                    deny: vec![c("18.0.0.0/8"), c("56.0.0.1")],
                    ..RoutePolicy::default()
                }),
            ),
            (
                vec![("denylist-source-range", "x")],
                Some(RoutePolicy {
                    denied: true,
                    ..RoutePolicy::default()
                }),
            ),
        ] {
            let pairs: Vec<(String, &str)> = pairs.iter().map(|(n, v)| (key(n), *v)).collect();
            let pairs: Vec<(&str, &str)> = pairs.iter().map(|(k, v)| (k.as_str(), *v)).collect();
            let got = parse_one(&pairs).policy.map(|p| (*p).clone());
            assert_eq!(got, want, "{pairs:?}");
        }
    }

    #[test]
    fn only_the_configured_prefix_is_read() {
        let map: BTreeMap<String, String> = [
            ("example.com/ssl-redirect", "false"),
            ("nginx.ingress.kubernetes.io/ssl-redirect", "false"),
            ("nginx.ingress.kubernetes.io.evil/ssl-redirect", "false"),
            ("kubernetes.io/ingress.class", "xdp"),
        ]
        .iter()
        .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
        .collect();
        let parsed = parse(Some(&map), "example.com");
        assert_eq!(parsed.verdicts.len(), 1);
        assert_eq!(parsed.policy.unwrap().ssl_redirect, Some(false));
        let parsed = parse(Some(&map), DEFAULT_PREFIX);
        assert_eq!(parsed.verdicts.len(), 1);
        assert_eq!(parse(None, DEFAULT_PREFIX), Parsed::default());
    }

    #[test]
    fn allowlist_wins_over_its_old_name() {
        let parsed = parse_one(&[
            (&key("whitelist-source-range"), "1.0.0.0/8"),
            (&key("allowlist-source-range"), "2.0.0.0/8"),
        ]);
        let allow = parsed.policy.unwrap().allow.clone().unwrap();
        assert_eq!(allow, vec!["2.0.0.0/8".parse::<Cidr>().unwrap()]);
        let old = parsed
            .verdicts
            .iter()
            .find(|v| v.name == "whitelist-source-range")
            .unwrap();
        assert_eq!(old.status, Status::Ignored);
    }
}
