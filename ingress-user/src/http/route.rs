//! Pure Ingress route matching: host and path rules per the Ingress spec. No tokio, no hyper.
//!
//! Rules (DESIGN.md, "Ingress semantics"):
//! - `Exact` matches the whole path, case-sensitively.
//! - `Prefix` matches element-wise on `/`, ignoring a trailing slash: `/foo` matches `/foo`,
//!   `/foo/` and `/foo/bar`, not `/foobar`; `/` matches everything.
//! - `ImplementationSpecific` is treated as `Prefix`.
//! - The longest matching path wins; at equal length `Exact` beats `Prefix`.
//! - Hosts compare case-insensitively with any `:port` stripped. An exact host beats a
//!   wildcard, and `*.foo.com` matches exactly one label (`bar.foo.com`, not `foo.com` nor
//!   `a.bar.foo.com`). A rule without a host matches any host.
//! - Host tiers are tried in order exact → wildcard → any-host; the first tier with a
//!   matching path answers. So an exact host's rules shadow a wildcard's even when the
//!   wildcard has a longer path, and a request whose host matched no path still reaches the
//!   host-less rules (as in Traefik; ingress-nginx would answer with its default backend).
//!
//! Lookup cost is a few hash lookups per `/` in the request path, independent of the number
//! of Ingresses.

use std::{borrow::Cow, collections::HashMap, fmt, net::SocketAddr, sync::Arc};

use crate::config::{ObjectRef, ServiceRef};

/// Where a matched request goes: a Service port and its resolved endpoints.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Backend {
    /// The Service (and Service port) named by the Ingress.
    pub service: ServiceRef,
    /// Resolved endpoint addresses (target IP and port). Empty means "answer 503".
    pub endpoints: Arc<[SocketAddr]>,
    /// The Ingress that defined this backend; `None` for `--default-backend-service`.
    pub ingress: Option<ObjectRef>,
}

/// The answer of [`RouteTable::route`].
#[derive(Clone, Copy, Debug)]
pub struct RouteMatch<'a> {
    /// The backend the request goes to.
    pub backend: &'a Arc<Backend>,
    /// Whether the request's host is listed in an Ingress `tls` entry (e.g. for redirects).
    pub tls: bool,
}

/// An Ingress path type. `ImplementationSpecific` is kept for display but matches as `Prefix`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum PathType {
    /// The whole path, case-sensitive.
    Exact,
    /// Element-wise prefix on `/`.
    Prefix,
    /// Treated as `Prefix`.
    ImplementationSpecific,
}

impl PathType {
    /// The name used in Ingress objects.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Exact => "Exact",
            Self::Prefix => "Prefix",
            Self::ImplementationSpecific => "ImplementationSpecific",
        }
    }
}

impl fmt::Display for PathType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The host part of a rule.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum HostMatch {
    /// Any host (the rule had no `host`).
    Any,
    /// One host, lowercase.
    Exact(String),
    /// `*.suffix`: exactly one label in front of `suffix` (stored lowercase, without `*.`).
    Wildcard(String),
}

impl HostMatch {
    /// Parses an Ingress rule host (`foo.com`, `*.foo.com`, or empty for any).
    pub fn parse(host: &str) -> Self {
        let host = host.trim().to_ascii_lowercase();
        if host.is_empty() || host == "*" {
            Self::Any
        } else if let Some(suffix) = host.strip_prefix("*.") {
            Self::Wildcard(suffix.to_owned())
        } else {
            Self::Exact(host)
        }
    }
}

impl fmt::Display for HostMatch {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Any => f.write_str("*"),
            Self::Exact(h) => f.write_str(h),
            Self::Wildcard(s) => write!(f, "*.{s}"),
        }
    }
}

/// One rule as it was added, for display (`xdp-ingress check`) and tests.
#[derive(Clone, Debug)]
pub struct RouteRule {
    /// Host part.
    pub host: HostMatch,
    /// Path as written in the Ingress (empty paths are stored as `/`).
    pub path: String,
    /// Path type as written.
    pub path_type: PathType,
    /// Backend.
    pub backend: Arc<Backend>,
}

/// The paths of one host.
#[derive(Clone, Debug, Default)]
struct HostRoutes {
    /// Exact paths.
    exact: HashMap<Box<str>, usize>,
    /// Prefix paths, normalized (trailing slashes removed; `/` stays `/`).
    prefix: HashMap<Box<str>, usize>,
}

impl HostRoutes {
    fn lookup(&self, path: &str) -> Option<usize> {
        if let Some(&i) = self.exact.get(path) {
            return Some(i);
        }
        if self.prefix.is_empty() {
            return None;
        }
        // Element-wise candidates from the longest: the path without trailing slashes, then
        // each prefix ending just before a `/`, then `/`.
        let trimmed = path.trim_end_matches('/');
        if !trimmed.is_empty() {
            if let Some(&i) = self.prefix.get(trimmed) {
                return Some(i);
            }
            for (pos, _) in trimmed.rmatch_indices('/') {
                if pos == 0 {
                    break;
                }
                if let Some(&i) = self.prefix.get(&trimmed[..pos]) {
                    return Some(i);
                }
            }
        }
        if path.starts_with('/') {
            return self.prefix.get("/").copied();
        }
        None
    }

    fn is_empty(&self) -> bool {
        self.exact.is_empty() && self.prefix.is_empty()
    }
}

/// Normalizes a Prefix path for the index: trailing slashes go, `/` stays.
fn prefix_key(path: &str) -> &str {
    let t = path.trim_end_matches('/');
    if t.is_empty() { "/" } else { t }
}

/// The HTTP routing table of one Snapshot. Immutable once built; the router only reads it.
#[derive(Clone, Debug, Default)]
pub struct RouteTable {
    rules: Vec<RouteRule>,
    exact_hosts: HashMap<String, HostRoutes>,
    wildcard_hosts: HashMap<String, HostRoutes>,
    any_host: HostRoutes,
    default_backend: Option<Arc<Backend>>,
    tls_exact: std::collections::HashSet<String>,
    tls_wildcard: std::collections::HashSet<String>,
}

/// Why [`RouteTable::insert`] refused a rule.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum InsertError {
    /// The same host, path and (effective) type is already routed; the first one added wins.
    #[error("host {host} path {path} ({path_type}) is already routed to {existing}")]
    Conflict {
        /// Host part.
        host: HostMatch,
        /// Path.
        path: String,
        /// Path type.
        path_type: PathType,
        /// The winner's backend, for the message.
        existing: String,
    },
    /// The path does not start with `/`.
    #[error("path {0:?} must start with '/'")]
    NotAbsolute(String),
}

impl RouteTable {
    /// An empty table (every request gets the default backend, or 404).
    pub fn new() -> Self {
        Self::default()
    }

    /// Adds a rule. The first rule for a given host + path + effective type wins; later ones
    /// get [`InsertError::Conflict`] (callers add Ingresses oldest first).
    pub fn insert(
        &mut self,
        host: HostMatch,
        path: &str,
        path_type: PathType,
        backend: Arc<Backend>,
    ) -> Result<(), InsertError> {
        let path = if path.is_empty() { "/" } else { path };
        if !path.starts_with('/') {
            return Err(InsertError::NotAbsolute(path.to_owned()));
        }
        let index = self.rules.len();
        let routes = match &host {
            HostMatch::Any => &mut self.any_host,
            HostMatch::Exact(h) => self.exact_hosts.entry(h.clone()).or_default(),
            HostMatch::Wildcard(s) => self.wildcard_hosts.entry(s.clone()).or_default(),
        };
        let (map, key) = match path_type {
            PathType::Exact => (&mut routes.exact, path),
            PathType::Prefix | PathType::ImplementationSpecific => {
                (&mut routes.prefix, prefix_key(path))
            }
        };
        if let Some(&existing) = map.get(key) {
            let existing = &self.rules[existing].backend;
            return Err(InsertError::Conflict {
                host,
                path: path.to_owned(),
                path_type,
                existing: describe(existing),
            });
        }
        map.insert(key.into(), index);
        self.rules.push(RouteRule {
            host,
            path: path.to_owned(),
            path_type,
            backend,
        });
        Ok(())
    }

    /// Sets the backend used when no rule matches (Ingress `defaultBackend`, else
    /// `--default-backend-service`).
    pub fn set_default_backend(&mut self, backend: Option<Arc<Backend>>) {
        self.default_backend = backend;
    }

    /// Marks a host (`foo.com` or `*.foo.com`) as listed in an Ingress `tls` entry.
    pub fn add_tls_host(&mut self, host: &str) {
        match HostMatch::parse(host) {
            HostMatch::Any => {}
            HostMatch::Exact(h) => {
                self.tls_exact.insert(h);
            }
            HostMatch::Wildcard(s) => {
                self.tls_wildcard.insert(s);
            }
        }
    }

    /// Finds the backend for a request. `host` may carry a port and any case; `path` is the
    /// request path without the query. `None` means: use [`Self::default_backend`].
    pub fn route(&self, host: &str, path: &str) -> Option<RouteMatch<'_>> {
        let host = normalize_host(host);
        let found = self
            .exact_hosts
            .get(host.as_ref())
            .and_then(|r| r.lookup(path))
            .or_else(|| {
                wildcard_suffix(&host)
                    .and_then(|s| self.wildcard_hosts.get(s))
                    .and_then(|r| r.lookup(path))
            })
            .or_else(|| {
                (!self.any_host.is_empty())
                    .then(|| self.any_host.lookup(path))
                    .flatten()
            })?;
        Some(RouteMatch {
            backend: &self.rules[found].backend,
            tls: self.is_normalized_tls_host(&host),
        })
    }

    /// The Ingress `defaultBackend` (oldest Ingress wins), else `--default-backend-service`;
    /// `None` means the router's built-in 404.
    pub fn default_backend(&self) -> Option<&Arc<Backend>> {
        self.default_backend.as_ref()
    }

    /// Whether `host` (any case, port allowed) is listed in an Ingress `tls` entry, exactly or
    /// through a one-label wildcard.
    pub fn is_tls_host(&self, host: &str) -> bool {
        self.is_normalized_tls_host(&normalize_host(host))
    }

    fn is_normalized_tls_host(&self, host: &str) -> bool {
        self.tls_exact.contains(host)
            || wildcard_suffix(host).is_some_and(|s| self.tls_wildcard.contains(s))
    }

    /// Every rule, in insertion order (for `xdp-ingress check`).
    pub fn rules(&self) -> &[RouteRule] {
        &self.rules
    }

    /// Number of rules.
    pub fn len(&self) -> usize {
        self.rules.len()
    }

    /// Whether there are no rules.
    pub fn is_empty(&self) -> bool {
        self.rules.is_empty()
    }
}

/// `ns/name:port` of a backend, for messages.
pub fn describe(b: &Backend) -> String {
    format!(
        "{}/{}:{}",
        b.service.namespace, b.service.name, b.service.port
    )
}

/// Lowercases and strips a `:port` (and the brackets of an IPv6 literal) and a trailing dot.
/// Borrows when nothing changes, which is the common case.
pub fn normalize_host(host: &str) -> Cow<'_, str> {
    let host = if let Some(rest) = host.strip_prefix('[') {
        rest.split_once(']').map_or(rest, |(h, _)| h)
    } else {
        match host.rsplit_once(':') {
            Some((h, port)) if port.bytes().all(|b| b.is_ascii_digit()) => h,
            _ => host,
        }
    };
    let host = host.strip_suffix('.').unwrap_or(host);
    if host.bytes().any(|b| b.is_ascii_uppercase()) {
        Cow::Owned(host.to_ascii_lowercase())
    } else {
        Cow::Borrowed(host)
    }
}

/// `bar.foo.com` → `foo.com`; `None` when the first label is empty or there is no dot.
fn wildcard_suffix(host: &str) -> Option<&str> {
    match host.split_once('.') {
        Some((label, suffix)) if !label.is_empty() && !suffix.is_empty() => Some(suffix),
        _ => None,
    }
}
