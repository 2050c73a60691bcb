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

mod canary;
mod cors;
pub mod custom_headers;
mod error_pages;
mod mirror;
mod server_alias;
mod session;

use std::{collections::BTreeMap, fmt, sync::Arc};

use super::{auth_tls, basic_auth, problem::Severity, proxy_ssl};
use crate::snapshot::{
    policy::{Cidr, RoutePolicy},
    upstream_tls::BackendProtocol,
};

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
    ("affinity", Support::Applied(session::affinity)),
    (
        "affinity-canary-behavior",
        Support::Applied(session::canary_behavior),
    ),
    ("affinity-mode", Support::Applied(session::affinity_mode)),
    ("allowlist-source-range", Support::Applied(allowlist)),
    ("app-root", Support::Applied(app_root)),
    ("auth-realm", Support::Applied(auth_realm)),
    ("auth-secret", Support::Applied(auth_secret)),
    ("auth-secret-type", Support::Applied(auth_secret_type)),
    (
        "auth-tls-error-page",
        Support::Applied(auth_tls::error_page),
    ),
    ("auth-tls-match-cn", Support::Applied(auth_tls::match_cn)),
    (
        "auth-tls-pass-certificate-to-upstream",
        Support::Applied(auth_tls::pass_certificate),
    ),
    ("auth-tls-secret", Support::Applied(auth_tls::secret)),
    (
        "auth-tls-verify-client",
        Support::Applied(auth_tls::verify_client),
    ),
    (
        "auth-tls-verify-depth",
        Support::Applied(auth_tls::verify_depth),
    ),
    ("auth-type", Support::Applied(auth_type)),
    ("auth-url", Support::Ignored("")),
    ("backend-protocol", Support::Applied(backend_protocol)),
    ("canary", Support::Applied(canary::canary)),
    ("canary-by-cookie", Support::Applied(canary::by_cookie)),
    ("canary-by-header", Support::Applied(canary::by_header)),
    (
        "canary-by-header-pattern",
        Support::Applied(canary::by_header_pattern),
    ),
    (
        "canary-by-header-value",
        Support::Applied(canary::by_header_value),
    ),
    ("canary-weight", Support::Applied(canary::weight)),
    (
        "canary-weight-total",
        Support::Applied(canary::weight_total),
    ),
    (
        "client-body-buffer-size",
        Support::Applied(client_body_buffer_size),
    ),
    (
        "cors-allow-credentials",
        Support::Applied(cors::allow_credentials),
    ),
    ("cors-allow-headers", Support::Applied(cors::allow_headers)),
    ("cors-allow-methods", Support::Applied(cors::allow_methods)),
    ("cors-allow-origin", Support::Applied(cors::allow_origin)),
    (
        "cors-expose-headers",
        Support::Applied(cors::expose_headers),
    ),
    ("cors-max-age", Support::Applied(cors::max_age)),
    (
        "custom-headers",
        Support::Applied(custom_headers::parse_ref),
    ),
    (
        "custom-http-errors",
        Support::Applied(error_pages::custom_http_errors),
    ),
    (
        "default-backend",
        Support::Applied(error_pages::default_backend),
    ),
    ("denylist-source-range", Support::Applied(denylist)),
    ("enable-cors", Support::Applied(cors::enable)),
    ("force-ssl-redirect", Support::Applied(force_ssl_redirect)),
    ("from-to-www-redirect", Support::Ignored("")),
    (
        "limit-burst-multiplier",
        Support::Applied(limit_burst_multiplier),
    ),
    ("limit-connections", Support::Applied(limit_connections)),
    ("limit-rpm", Support::Applied(limit_rpm)),
    ("limit-rps", Support::Applied(limit_rps)),
    ("limit-whitelist", Support::Applied(limit_whitelist)),
    (
        "load-balance",
        Support::Ignored("the global --load-balance"),
    ),
    ("mirror-host", Support::Applied(mirror::host)),
    (
        "mirror-request-body",
        Support::Applied(mirror::request_body),
    ),
    ("mirror-target", Support::Applied(mirror::target)),
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
    (
        "proxy-ssl-ciphers",
        Support::Ignored(
            "none: OpenSSL cipher strings are not applied; rustls offers only AEAD suites with forward secrecy",
        ),
    ),
    ("proxy-ssl-name", Support::Applied(proxy_ssl::name)),
    (
        "proxy-ssl-protocols",
        Support::Applied(proxy_ssl::protocols),
    ),
    ("proxy-ssl-secret", Support::Applied(proxy_ssl::secret)),
    (
        "proxy-ssl-server-name",
        Support::Applied(proxy_ssl::server_name),
    ),
    ("proxy-ssl-verify", Support::Applied(proxy_ssl::verify)),
    (
        "proxy-ssl-verify-depth",
        Support::Applied(proxy_ssl::verify_depth),
    ),
    ("rewrite-target", Support::Applied(rewrite_target)),
    ("server-alias", Support::Applied(server_alias::parse)),
    ("service-upstream", Support::Applied(service_upstream)),
    (
        "session-cookie-change-on-failure",
        Support::Applied(session::change_on_failure),
    ),
    (
        "session-cookie-conditional-samesite-none",
        Support::Applied(session::conditional_samesite_none),
    ),
    ("session-cookie-domain", Support::Applied(session::domain)),
    ("session-cookie-expires", Support::Applied(session::expires)),
    (
        "session-cookie-hash",
        Support::Ignored("none needed: the cookie holds a hash of the endpoint or a session key"),
    ),
    ("session-cookie-max-age", Support::Applied(session::max_age)),
    ("session-cookie-name", Support::Applied(session::name)),
    ("session-cookie-path", Support::Applied(session::path)),
    (
        "session-cookie-samesite",
        Support::Applied(session::samesite),
    ),
    ("session-cookie-secure", Support::Applied(session::secure)),
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
    // A canary Ingress takes only the canary and affinity annotations.
    let is_canary = annotations
        .get(&format!("{prefix}/canary"))
        .is_some_and(|v| boolean(v.trim()) == Ok(true));
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
        } else if is_canary && !canary::applies_to_canary(&name) {
            (Status::Ignored, canary::IGNORED_ON_CANARY.to_owned())
        } else if name == "auth-type" && value.trim() == "digest" {
            // Not served rather than served without authentication.
            policy.denied = true;
            out.findings.push(Finding {
                field,
                kind: "annotation_unsupported",
                message: basic_auth::DIGEST_NOTE.to_owned(),
                severity: Severity::Error,
            });
            (Status::Ignored, basic_auth::DIGEST_NOTE.to_owned())
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
    session::finish(&mut policy);
    canary::finish(&mut policy);
    proxy_ssl::without_secret(&mut policy, prefix, &mut out);
    auth_tls::without_secret(&mut policy, prefix, &mut out);
    cors::finish(&mut policy);
    if let Some(message) = session::regex_without_path(&policy) {
        out.findings.push(Finding {
            field: format!("metadata.annotations[\"{prefix}/affinity\"]"),
            kind: "affinity_cookie_path",
            message,
            severity: Severity::Warning,
        });
    }
    out.policy = (!policy.is_default()).then(|| Arc::new(policy));
    out
}

impl Parsed {
    /// Records that annotation `name`, valid on its own, cannot be applied with the
    /// objects it names (a ConfigMap, a Service): an Error Problem, and an invalid verdict.
    pub fn invalid(&mut self, prefix: &str, name: &str, message: String) {
        if let Some(v) = self.verdicts.iter_mut().find(|v| v.name == name) {
            v.status = Status::Invalid;
            v.note.clone_from(&message);
        }
        self.findings.push(Finding {
            field: format!("metadata.annotations[\"{prefix}/{name}\"]"),
            kind: "invalid_annotation",
            message,
            severity: Severity::Error,
        });
    }
}

/// A certificate chain depth (`auth-tls-verify-depth`, `proxy-ssl-verify-depth`): 1 to
/// 100 in plain digits. Anything else is refused, and the caller uses 1 as ingress-nginx.
pub(super) fn verify_depth(value: &str) -> Result<u32, String> {
    match value.parse::<u32>() {
        Ok(n @ 1..=100) if value.bytes().all(|b| b.is_ascii_digit()) => Ok(n),
        _ => Err(format!("{value:?} is not a depth from 1 to 100; 1 is used")),
    }
}

/// An ingress-nginx boolean (Go's `strconv.ParseBool`).
pub(super) fn boolean(value: &str) -> Result<bool, String> {
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

fn service_upstream(value: &str, p: &mut RoutePolicy) -> Result<(), String> {
    p.service_upstream = boolean(value)?;
    Ok(())
}

fn use_regex(value: &str, p: &mut RoutePolicy) -> Result<(), String> {
    p.use_regex = boolean(value)?;
    Ok(())
}

/// `backend-protocol` (case-insensitive, as ingress-nginx upper-cases it): HTTP, HTTPS,
/// GRPC, GRPCS, and H2C (the GRPC path: HTTP/2 cleartext). An unusable value leaves HTTP,
/// ingress-nginx's fallback too.
fn backend_protocol(value: &str, p: &mut RoutePolicy) -> Result<(), String> {
    p.backend_protocol = match value.to_ascii_uppercase().as_str() {
        "HTTP" => BackendProtocol::Http,
        "HTTPS" => BackendProtocol::Https,
        "GRPC" | "H2C" => BackendProtocol::Grpc,
        "GRPCS" => BackendProtocol::Grpcs,
        "AUTO_HTTP" => {
            return Err(
                "AUTO_HTTP (the client's scheme upstream) is not supported; HTTP is used (write HTTPS for TLS upstreams)"
                    .to_owned(),
            );
        }
        "FCGI" => return Err("FastCGI upstreams are not supported; HTTP is used".to_owned()),
        _ => {
            return Err(format!(
                "{value:?} is not one of HTTP, HTTPS, GRPC, GRPCS, H2C; HTTP is used"
            ));
        }
    };
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
pub(super) fn redirect_url(value: &str) -> Result<String, String> {
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
    p.proxy_body_size = Some(size(value)?);
    Ok(())
}

/// The most `client-body-buffer-size` may ask for: bodies that size are held in memory.
const MAX_BODY_BUFFER: u64 = 1 << 20;

/// `client-body-buffer-size`: nginx's size syntax, at most [`MAX_BODY_BUFFER`].
fn client_body_buffer_size(value: &str, p: &mut RoutePolicy) -> Result<(), String> {
    let n = size(value)?;
    let capped = n.min(MAX_BODY_BUFFER);
    p.client_body_buffer_size = usize::try_from(capped).ok();
    if n > MAX_BODY_BUFFER {
        return Err(format!(
            "{value:?} is more than 1m: bodies read whole are held in memory here (nginx writes longer ones to disk); 1m is used"
        ));
    }
    Ok(())
}

/// nginx's size syntax: bytes with an optional `k`, `m` or `g` (any case).
fn size(value: &str) -> Result<u64, String> {
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
    n.checked_mul(unit).ok_or_else(bad)
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

/// `auth-type`: `basic` (`digest` is refused before the table); anything else fails
/// closed.
fn auth_type(value: &str, p: &mut RoutePolicy) -> Result<(), String> {
    basic_auth::auth_type(value).inspect_err(|_| p.denied = true)
}

/// `auth-secret`, `auth-secret-type`, `auth-realm`: checked here for the report; read with
/// the Secret by `basic_auth::resolve`, which fails closed on a bad one.
fn auth_secret(value: &str, _: &mut RoutePolicy) -> Result<(), String> {
    basic_auth::secret_name(value).map(drop)
}

fn auth_secret_type(value: &str, _: &mut RoutePolicy) -> Result<(), String> {
    basic_auth::secret_type(value).map(drop)
}

fn auth_realm(value: &str, _: &mut RoutePolicy) -> Result<(), String> {
    basic_auth::realm(value).map(drop)
}

/// A count for `limit-*`: digits only; 0 is no limit, as in ingress-nginx.
fn count(value: &str, what: &str) -> Result<u32, String> {
    match value.parse::<u32>() {
        Ok(n) if value.bytes().all(|b| b.is_ascii_digit()) => Ok(n),
        _ => Err(format!(
            "{value:?} is not a whole number of {what}; no limit is applied"
        )),
    }
}

fn limit_rps(value: &str, p: &mut RoutePolicy) -> Result<(), String> {
    p.limit_settings.rps = count(value, "requests per second")?;
    Ok(())
}

fn limit_rpm(value: &str, p: &mut RoutePolicy) -> Result<(), String> {
    p.limit_settings.rpm = count(value, "requests per minute")?;
    Ok(())
}

fn limit_connections(value: &str, p: &mut RoutePolicy) -> Result<(), String> {
    p.limit_settings.connections = count(value, "connections")?;
    Ok(())
}

/// `limit-burst-multiplier`: 1 or more (the burst is the rate times it).
fn limit_burst_multiplier(value: &str, p: &mut RoutePolicy) -> Result<(), String> {
    match count(value, "") {
        Ok(n) if n > 0 => {
            p.limit_settings.burst_multiplier = Some(n);
            Ok(())
        }
        _ => Err(format!(
            "{value:?} is not a whole number above 0; the default {} applies",
            crate::snapshot::rate_limit::DEFAULT_BURST_MULTIPLIER
        )),
    }
}

/// `limit-whitelist`: CIDRs never limited; bad entries are dropped with a Problem (a
/// wrong entry limits a client that was meant to be exempt, never the reverse).
fn limit_whitelist(value: &str, p: &mut RoutePolicy) -> Result<(), String> {
    let mut bad = Vec::new();
    for entry in value.split(',').map(str::trim).filter(|e| !e.is_empty()) {
        match entry.parse::<Cidr>() {
            Ok(c) => p.limit_settings.whitelist.push(c),
            Err(e) => bad.push(e.to_string()),
        }
    }
    p.limit_settings.whitelist.sort_unstable();
    p.limit_settings.whitelist.dedup();
    if bad.is_empty() {
        Ok(())
    } else {
        Err(format!("{}; these clients are limited", bad.join("; ")))
    }
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
    fn verify_depths_are_1_to_100_in_plain_digits() {
        for (value, want) in [
            ("1", Some(1)),
            ("2", Some(2)),
            ("100", Some(100)),
            ("0", None),
            ("101", None),
            ("+5", None),
            (" 5", None),
            ("", None),
            ("x", None),
        ] {
            assert_eq!(verify_depth(value).ok(), want, "{value:?}");
        }
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
            ("backend-protocol", "GRPC", Status::Applied, ""),
            ("backend-protocol", "grpcs", Status::Applied, ""),
            ("backend-protocol", "HTTPS", Status::Applied, ""),
            ("backend-protocol", "H2C", Status::Applied, ""),
            ("backend-protocol", "HTTP", Status::Applied, ""),
            (
                "backend-protocol",
                "AUTO_HTTP",
                Status::Invalid,
                "HTTP is used",
            ),
            ("backend-protocol", "FCGI", Status::Invalid, "FastCGI"),
            ("backend-protocol", "SPDY", Status::Invalid, "not one of"),
            ("proxy-ssl-secret", "ns/ca", Status::Applied, ""),
            ("auth-tls-secret", "ns/ca", Status::Applied, ""),
            ("auth-tls-secret", "ca", Status::Invalid, "503"),
            ("proxy-ssl-secret", "ca", Status::Invalid, "503"),
            ("proxy-ssl-ciphers", "HIGH:!AES", Status::Ignored, "rustls"),
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
            ("client-body-buffer-size", "16k", Status::Applied, ""),
            ("client-body-buffer-size", "1000", Status::Applied, ""),
            (
                "client-body-buffer-size",
                "2m",
                Status::Invalid,
                "1m is used",
            ),
            (
                "client-body-buffer-size",
                "1x",
                Status::Invalid,
                "not a size",
            ),
            ("proxy-body-size", "0", Status::Applied, ""),
            ("proxy-body-size", "1.5m", Status::Invalid, "not a size"),
            ("proxy-body-size", "m", Status::Invalid, "not a size"),
            (
                "proxy-body-size",
                "99999999999999999999",
                Status::Invalid,
                "not a size",
            ),
            ("affinity", "cookie", Status::Applied, ""),
            ("affinity", "ip", Status::Invalid, "only \"cookie\""),
            ("affinity-mode", "persistent", Status::Applied, ""),
            ("affinity-canary-behavior", "legacy", Status::Applied, ""),
            (
                "affinity-canary-behavior",
                "old",
                Status::Invalid,
                "sticky is used",
            ),
            (
                "affinity-mode",
                "sticky",
                Status::Invalid,
                "balanced is used",
            ),
            ("session-cookie-name", "SERVERID", Status::Applied, ""),
            (
                "session-cookie-name",
                "a b",
                Status::Invalid,
                "not a cookie name",
            ),
            (
                "session-cookie-name",
                "a=b",
                Status::Invalid,
                "not a cookie name",
            ),
            ("session-cookie-path", "/foo/bar", Status::Applied, ""),
            (
                "session-cookie-path",
                "foo",
                Status::Invalid,
                "starting with /",
            ),
            (
                "session-cookie-path",
                "/a;b",
                Status::Invalid,
                "cannot hold",
            ),
            ("session-cookie-domain", "example.com", Status::Applied, ""),
            ("session-cookie-max-age", "259200", Status::Applied, ""),
            (
                "session-cookie-max-age",
                "1h",
                Status::Invalid,
                "whole number",
            ),
            ("session-cookie-expires", "172800", Status::Applied, ""),
            (
                "session-cookie-expires",
                "-1",
                Status::Invalid,
                "whole number",
            ),
            ("session-cookie-samesite", "lax", Status::Applied, ""),
            (
                "session-cookie-samesite",
                "Sometimes",
                Status::Invalid,
                "None, Lax or Strict",
            ),
            ("session-cookie-secure", "true", Status::Applied, ""),
            (
                "session-cookie-conditional-samesite-none",
                "x",
                Status::Invalid,
                "boolean",
            ),
            (
                "session-cookie-change-on-failure",
                "true",
                Status::Applied,
                "",
            ),
            (
                "session-cookie-hash",
                "sha1",
                Status::Ignored,
                "not supported",
            ),
            ("canary", "true", Status::Applied, ""),
            ("canary", "yes", Status::Invalid, "not a boolean"),
            ("canary-by-header", "CanaryByHeader", Status::Applied, ""),
            (
                "canary-by-header",
                "Canary Header",
                Status::Invalid,
                "not a header name",
            ),
            ("canary-by-header-value", "DoCanary", Status::Applied, ""),
            (
                "canary-by-header-pattern",
                "^Do(Canary|It)$",
                Status::Applied,
                "",
            ),
            (
                "canary-by-header-pattern",
                "(unclosed",
                Status::Invalid,
                "not a usable regex",
            ),
            (
                "canary-by-header-pattern",
                "a{1000}{1000}",
                Status::Invalid,
                "not a usable regex",
            ),
            ("canary-by-cookie", "Canary-By-Cookie", Status::Applied, ""),
            (
                "canary-by-cookie",
                "a;b",
                Status::Invalid,
                "not a cookie name",
            ),
            ("canary-weight", "30", Status::Applied, ""),
            ("canary-weight", "-1", Status::Invalid, "whole number"),
            ("canary-weight-total", "1000", Status::Applied, ""),
            ("canary-weight-total", "10", Status::Invalid, "below 100"),
            ("ssl-redirekt", "true", Status::Ignored, "typo"),
            ("auth-type", "basic", Status::Applied, ""),
            ("auth-type", "ntlm", Status::Invalid, "503"),
            ("auth-secret", "ns/users", Status::Applied, ""),
            ("auth-secret", "a b", Status::Invalid, "not a Secret name"),
            ("auth-secret-type", "auth-map", Status::Applied, ""),
            (
                "auth-secret-type",
                "map",
                Status::Invalid,
                "auth-file or auth-map",
            ),
            ("auth-realm", "test auth", Status::Applied, ""),
            ("auth-realm", "a\"b", Status::Invalid, "WWW-Authenticate"),
            ("limit-rps", "5", Status::Applied, ""),
            ("limit-rps", "-1", Status::Invalid, "whole number"),
            ("limit-rpm", "300", Status::Applied, ""),
            ("limit-connections", "2", Status::Applied, ""),
            ("limit-connections", "1.5", Status::Invalid, "no limit"),
            ("limit-burst-multiplier", "3", Status::Applied, ""),
            ("limit-burst-multiplier", "0", Status::Invalid, "default 5"),
            (
                "limit-whitelist",
                "127.0.0.3, 10.0.0.0/8",
                Status::Applied,
                "",
            ),
            (
                "limit-whitelist",
                "10.0.0.0/8, x",
                Status::Invalid,
                "these clients are limited",
            ),
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

    /// affinity.go "should warn user when use-regex is true and session-cookie-path is not
    /// set".
    #[test]
    fn affinity_with_regex_paths_wants_a_cookie_path() {
        for (pairs, warned) in [
            (vec![("affinity", "cookie"), ("use-regex", "true")], true),
            (
                vec![
                    ("affinity", "cookie"),
                    ("use-regex", "true"),
                    ("session-cookie-path", "/foo"),
                ],
                false,
            ),
            (vec![("affinity", "cookie")], false),
            (vec![("use-regex", "true")], false),
        ] {
            let pairs: Vec<(String, &str)> = pairs.iter().map(|(n, v)| (key(n), *v)).collect();
            let pairs: Vec<(&str, &str)> = pairs.iter().map(|(k, v)| (k.as_str(), *v)).collect();
            let parsed = parse_one(&pairs);
            let found: Vec<_> = parsed
                .findings
                .iter()
                .map(|f| (f.kind, f.severity))
                .collect();
            let want = if warned {
                vec![("affinity_cookie_path", Severity::Warning)]
            } else {
                vec![]
            };
            assert_eq!(found, want, "{pairs:?}");
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
    fn digest_auth_is_ignored_but_fails_closed() {
        let parsed = parse_one(&[(&key("auth-type"), "digest")]);
        assert_eq!(parsed.verdicts[0].status, Status::Ignored);
        assert!(parsed.verdicts[0].note.contains("auth-type: basic"));
        assert_eq!(parsed.findings.len(), 1);
        assert!(parsed.findings[0].message.contains("503"));
        assert!(parsed.policy.unwrap().denied);
    }

    #[test]
    fn limits_become_settings() {
        let parsed = parse_one(&[
            (&key("limit-rps"), "5"),
            (&key("limit-connections"), "2"),
            (&key("limit-burst-multiplier"), "1"),
            (&key("limit-whitelist"), "127.0.0.3/32,127.0.0.3, ::1"),
        ]);
        let s = &parsed.policy.unwrap().limit_settings;
        assert_eq!((s.rps, s.rpm, s.connections), (5, 0, 2));
        assert_eq!(s.burst_multiplier, Some(1));
        let shown: Vec<String> = s.whitelist.iter().map(ToString::to_string).collect();
        assert_eq!(shown, ["127.0.0.3/32", "::1/128"]);
        assert!(parse_one(&[(&key("limit-rps"), "0")]).policy.is_none());
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
