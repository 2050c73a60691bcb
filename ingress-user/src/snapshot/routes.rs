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

use std::{
    borrow::Cow,
    fmt,
    sync::{Arc, OnceLock},
};

use prometheus_client::metrics::{counter::Counter, family::Family, histogram::Histogram};
use regex::{Regex, RegexBuilder};

use super::{
    FastMap, ObjectRef, ServiceRef, canary::Canary, client_auth::ClientAuth, endpoints::Endpoints,
    passthrough::PassthroughRoute, policy::RoutePolicy,
};

/// Where a matched request goes: a Service port and its resolved endpoints.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Backend {
    /// The Service (and Service port) named by the Ingress.
    pub service: ServiceRef,
    /// Resolved endpoint addresses (target IP and port), shared by every Backend of this
    /// Service port and updated in place. Empty means "answer 503".
    pub endpoints: Endpoints,
    /// The Ingress that defined this backend; `None` for `--default-backend-service`.
    pub ingress: Option<ObjectRef>,
    /// `namespace/name` of the Ingress (empty for the default backend) and
    /// `namespace/name:port` of the Service, formatted once for per-request metric labels.
    pub names: (Arc<String>, Arc<String>),
    /// The request counter of this backend's `200` responses.
    pub ok_requests: CachedCounter,
    /// The latency histogram of requests forwarded to this backend.
    pub latency: CachedHistogram,
    /// How the endpoints are spoken to.
    pub protocol: Protocol,
    /// What the defining Ingress's annotations ask of requests routed here (`None`: nothing).
    pub policy: Option<Arc<RoutePolicy>>,
    /// The alternative backend a canary Ingress gives this route, and when to use it.
    pub canary: Option<Arc<Canary>>,
}

/// The policy of backends whose Ingress has no annotations we apply.
static NO_POLICY: RoutePolicy = RoutePolicy {
    ssl_redirect: None,
    force_ssl_redirect: false,
    allow: None,
    deny: Vec::new(),
    denied: false,
    use_regex: false,
    rewrite_target: None,
    app_root: None,
    x_forwarded_prefix: None,
    proxy_body_size: None,
    proxy_connect_timeout: None,
    proxy_read_timeout: None,
    proxy_send_timeout: None,
    temporal_redirect: None,
    permanent_redirect: None,
    permanent_redirect_code: None,
    upstream_vhost: None,
    affinity: None,
    canary: None,
    basic_auth: None,
    limit_settings: super::rate_limit::LimitSettings::NONE,
    rate_limit: None,
    backend_protocol: super::upstream_tls::BackendProtocol::Http,
    proxy_ssl: None,
    upstream_tls: None,
    auth_tls: None,
    client_auth: None,
    cors: None,
    custom_headers: None,
    response_headers: Vec::new(),
    server_alias: Vec::new(),
    default_backend_service: None,
    default_backend: None,
    custom_http_errors: Vec::new(),
    service_upstream: false,
    client_body_buffer_size: None,
    mirror_target: None,
    mirror_host: None,
    mirror_skip_body: false,
    mirror_backend: None,
    ssl_passthrough: false,
};

/// A counter of the `requests` family, looked up once and then kept. The lookup hashes
/// both label strings, which is a noticeable share of a proxied request; a Backend keeps
/// one of these for its `200` responses, which are most of them.
#[derive(Clone, Debug, Default)]
pub struct CachedCounter(OnceLock<Counter>);

impl CachedCounter {
    /// The counter, looked up in `family` under `labels` the first time.
    pub fn get<'a, L: Clone + std::hash::Hash + Eq>(
        &'a self,
        family: &Family<L, Counter>,
        labels: impl FnOnce() -> L,
    ) -> &'a Counter {
        self.0
            .get_or_init(|| family.get_or_create(&labels()).clone())
    }
}

/// A cache is not part of what it belongs to: two Backends that differ only in whether
/// their counter was looked up yet are equal.
impl PartialEq for CachedCounter {
    fn eq(&self, _: &Self) -> bool {
        true
    }
}

impl Eq for CachedCounter {}

/// A histogram of a metric family, found once and then kept (like [`CachedCounter`]).
#[derive(Clone, Debug, Default)]
pub struct CachedHistogram(OnceLock<Histogram>);

impl CachedHistogram {
    /// The histogram, looked up in `family` under `labels` the first time.
    pub fn get<'a, L: Clone + std::hash::Hash + Eq, C: Fn() -> Histogram>(
        &'a self,
        family: &Family<L, Histogram, C>,
        labels: impl FnOnce() -> L,
    ) -> &'a Histogram {
        self.0
            .get_or_init(|| family.get_or_create(&labels()).clone())
    }
}

/// Equal whatever is cached, as [`CachedCounter`].
impl PartialEq for CachedHistogram {
    fn eq(&self, _: &Self) -> bool {
        true
    }
}

impl Eq for CachedHistogram {}

/// The protocol of a backend's endpoints, from its Service port's `appProtocol`.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Protocol {
    /// HTTP/1.1 with pooled keep-alive connections (no or any other `appProtocol`).
    #[default]
    Http1,
    /// HTTP/2 over cleartext with prior knowledge, one multiplexed connection per
    /// endpoint: `kubernetes.io/h2c`, `h2c`, `http2` or `grpc` (gRPC needs HTTP/2).
    H2c,
}

impl Protocol {
    /// The protocol an `appProtocol` value asks for (case-insensitive).
    pub fn from_app_protocol(value: Option<&str>) -> Self {
        match value {
            Some(v)
                if ["kubernetes.io/h2c", "h2c", "http2", "grpc"]
                    .iter()
                    .any(|p| v.eq_ignore_ascii_case(p)) =>
            {
                Self::H2c
            }
            _ => Self::Http1,
        }
    }
}

impl Backend {
    /// A backend, with its metric label names.
    pub fn new(service: ServiceRef, endpoints: Endpoints, ingress: Option<ObjectRef>) -> Self {
        let ingress_name = ingress.as_ref().map_or_else(String::new, |i| {
            format!("{}/{}", i.namespace.as_deref().unwrap_or(""), i.name)
        });
        let names = (Arc::new(ingress_name), Arc::new(service.to_string()));
        Self {
            service,
            endpoints,
            ingress,
            names,
            ok_requests: CachedCounter::default(),
            latency: CachedHistogram::default(),
            protocol: Protocol::Http1,
            policy: None,
            canary: None,
        }
    }

    /// The same backend, with the annotation policy of its Ingress (a default one is
    /// dropped, so most backends carry none).
    #[must_use]
    pub fn with_policy(mut self, policy: Option<Arc<RoutePolicy>>) -> Self {
        self.policy = policy.filter(|p| !p.is_default());
        self
    }

    /// What the defining Ingress's annotations ask of requests routed here.
    pub fn policy(&self) -> &RoutePolicy {
        self.policy.as_deref().unwrap_or(&NO_POLICY)
    }

    /// The same backend, spoken to in `protocol`.
    #[must_use]
    pub fn with_protocol(mut self, protocol: Protocol) -> Self {
        self.protocol = protocol;
        self
    }
}

/// The answer of [`RouteTable::route`].
#[derive(Clone, Copy, Debug)]
pub struct RouteMatch<'a> {
    /// The backend the request goes to.
    pub backend: &'a Arc<Backend>,
    /// Whether the request's host is listed in an Ingress `tls` entry (e.g. for redirects).
    pub tls: bool,
    /// The matched rule's path as written.
    pub path: &'a str,
    /// The matched rule's regex, when its host's paths are regexes (`use-regex`,
    /// `rewrite-target`): its captures feed the rewrite.
    pub regex: Option<&'a Regex>,
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

/// One rule, for display (`xdp-ingress check`) and tests.
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
    /// Whether the path is matched as a regex (its host has `use-regex` or a rewrite).
    pub regex: bool,
}

/// The most memory one path regex may compile to (paths are user input).
const REGEX_SIZE_LIMIT: usize = 256 * 1024;

/// The paths of one host, in the order they were added (the first of two equal paths
/// wins). Built whole by the control plane and shared between Snapshots, so a change to one
/// host copies only that host's paths.
#[derive(Clone, Debug, Default)]
pub struct HostRoutes {
    /// (path as written, type, backend), in insertion order.
    rules: Vec<(String, PathType, Arc<Backend>)>,
    /// Exact paths → index into `rules`.
    exact: FastMap<Box<str>, usize>,
    /// Prefix paths, normalized (trailing slashes removed; `/` stays `/`) → index.
    prefix: FastMap<Box<str>, usize>,
    /// When the host's paths are regexes (ingress-nginx's `location ~* "^PATH"` for every
    /// path of a host where one Ingress has `use-regex` or a rewrite): every rule's regex,
    /// tried in order (longest path first, then reverse lexical, as ingress-nginx sorts its
    /// locations), the first match wins; `exact` and `prefix` are then unused.
    regexes: Option<Vec<(Regex, usize)>>,
    /// The client certificate requirement of the host (`auth-tls-*`): that of the first
    /// path whose Ingress has one (host-wide, as nginx's `ssl_verify_client`).
    client_auth: Option<Arc<ClientAuth>>,
}

impl HostRoutes {
    /// The host's client certificate requirement, if any.
    pub fn client_auth(&self) -> Option<&Arc<ClientAuth>> {
        self.client_auth.as_ref()
    }

    /// The Ingresses whose paths these are, each once.
    pub fn ingresses(&self) -> Vec<&ObjectRef> {
        let mut out: Vec<&ObjectRef> = self
            .rules
            .iter()
            .filter_map(|(_, _, b)| b.ingress.as_ref())
            .collect();
        out.sort();
        out.dedup();
        out
    }

    /// Adds a path of `host` (named in errors). The first rule for a given path and
    /// effective type wins; later ones get [`InsertError::Conflict`].
    pub fn insert(
        &mut self,
        host: &HostMatch,
        path: &str,
        path_type: PathType,
        backend: Arc<Backend>,
    ) -> Result<(), InsertError> {
        let path = if path.is_empty() { "/" } else { path };
        if !path.starts_with('/') {
            return Err(InsertError::NotAbsolute(path.to_owned()));
        }
        let index = self.rules.len();
        let (map, key) = match path_type {
            PathType::Exact => (&mut self.exact, path),
            PathType::Prefix | PathType::ImplementationSpecific => {
                (&mut self.prefix, prefix_key(path))
            }
        };
        if let Some(&existing) = map.get(key) {
            return Err(InsertError::Conflict {
                host: host.clone(),
                path: path.to_owned(),
                path_type,
                existing: describe(&self.rules[existing].2),
            });
        }
        map.insert(key.into(), index);
        if self.client_auth.is_none() {
            self.client_auth.clone_from(&backend.policy().client_auth);
        }
        self.rules.push((path.to_owned(), path_type, backend));
        Ok(())
    }

    /// The backend of the rule for `path` and the effective type of `path_type` (the one
    /// [`insert`](Self::insert) would conflict with), to replace it.
    pub fn backend_mut(&mut self, path: &str, path_type: PathType) -> Option<&mut Arc<Backend>> {
        let path = if path.is_empty() { "/" } else { path };
        let i = match path_type {
            PathType::Exact => self.exact.get(path),
            PathType::Prefix | PathType::ImplementationSpecific => {
                self.prefix.get(prefix_key(path))
            }
        }?;
        Some(&mut self.rules[*i].2)
    }

    /// Makes every path a case-insensitive regex anchored at the start, as ingress-nginx
    /// does for a host where one Ingress has `use-regex` or a rewrite (so `Exact` and
    /// `Prefix` are string-prefix regexes too). Returns the rules (by insertion index)
    /// whose path is not a valid regex, with why; they match nothing.
    pub fn enforce_regex(&mut self) -> Vec<(usize, String)> {
        let mut order: Vec<usize> = (0..self.rules.len()).collect();
        order.sort_by(|&a, &b| {
            let (pa, pb) = (&self.rules[a].0, &self.rules[b].0);
            pb.len().cmp(&pa.len()).then_with(|| pb.cmp(pa))
        });
        let mut failed = Vec::new();
        let mut regexes = Vec::with_capacity(order.len());
        for i in order {
            let path = &self.rules[i].0;
            match RegexBuilder::new(&format!("^{path}"))
                .case_insensitive(true)
                .size_limit(REGEX_SIZE_LIMIT)
                .build()
            {
                Ok(re) => regexes.push((re, i)),
                Err(e) => failed.push((i, e.to_string())),
            }
        }
        failed.sort_unstable_by_key(|f| f.0);
        self.regexes = Some(regexes);
        failed
    }

    /// The backend of the path `/` (a prefix `/` before an exact one): ingress-nginx's
    /// root location, which `ssl-passthrough` sends a host's TLS connections to.
    pub fn root(&self) -> Option<&Arc<Backend>> {
        let i = self.prefix.get("/").or_else(|| self.exact.get("/"))?;
        Some(&self.rules[*i].2)
    }

    /// Whether the paths are regexes.
    pub fn is_regex(&self) -> bool {
        self.regexes.is_some()
    }

    /// The matching rule: its index and, in regex mode, its regex.
    fn find(&self, path: &str) -> Option<(usize, Option<&Regex>)> {
        match &self.regexes {
            Some(regexes) => regexes
                .iter()
                .find(|(re, _)| re.is_match(path))
                .map(|(re, i)| (*i, Some(re))),
            None => self.index(path).map(|i| (i, None)),
        }
    }

    fn index(&self, path: &str) -> Option<usize> {
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

    /// Number of paths.
    pub fn len(&self) -> usize {
        self.rules.len()
    }

    /// Whether there are no paths.
    pub fn is_empty(&self) -> bool {
        self.rules.is_empty()
    }
}

/// Normalizes a Prefix path for the index: trailing slashes go, `/` stays.
fn prefix_key(path: &str) -> &str {
    let t = path.trim_end_matches('/');
    if t.is_empty() { "/" } else { t }
}

/// The hosts listed in Ingress `tls` entries: exact ones and one-label wildcard suffixes.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct TlsHosts {
    exact: std::collections::HashSet<String>,
    wildcard: std::collections::HashSet<String>,
}

impl TlsHosts {
    /// Adds `foo.com` or `*.foo.com` (any case).
    pub fn add(&mut self, host: &str) {
        match HostMatch::parse(host) {
            HostMatch::Any => {}
            HostMatch::Exact(h) => {
                self.exact.insert(h);
            }
            HostMatch::Wildcard(s) => {
                self.wildcard.insert(s);
            }
        }
    }

    fn contains_normalized(&self, host: &str) -> bool {
        self.exact.contains(host)
            || wildcard_suffix(host).is_some_and(|s| self.wildcard.contains(s))
    }
}

/// Hosts → paths, with the copy-on-write sharing that lets a Snapshot reuse every host the
/// change did not touch.
type Hosts = Arc<FastMap<String, Arc<HostRoutes>>>;

/// The HTTP routing table of one Snapshot. Immutable once published; the router only reads
/// it. The control plane builds the next one from a clone, which shares every host.
#[derive(Clone, Debug, Default)]
pub struct RouteTable {
    exact_hosts: Hosts,
    wildcard_hosts: Hosts,
    any_host: Arc<HostRoutes>,
    default_backend: Option<Arc<Backend>>,
    tls: Arc<TlsHosts>,
    len: usize,
    /// `server-alias`: a host with no rules of its own → the host whose paths answer it.
    aliases: Arc<FastMap<String, HostMatch>>,
    /// Exact hosts passed through by `ssl-passthrough` (derived from their `/` path in
    /// [`Self::set_host`]), so the TLS accept path reads the ClientHello only when some
    /// host asks for it.
    passthrough: Arc<FastMap<String, Arc<PassthroughRoute>>>,
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
    /// Every host with paths (for reports; not on the request path).
    pub fn hosts(&self) -> impl Iterator<Item = (HostMatch, &Arc<HostRoutes>)> {
        let exact = self
            .exact_hosts
            .iter()
            .map(|(h, r)| (HostMatch::Exact(h.clone()), r));
        let wildcard = self
            .wildcard_hosts
            .iter()
            .map(|(h, r)| (HostMatch::Wildcard(h.clone()), r));
        let any = (!self.any_host.is_empty()).then_some((HostMatch::Any, &self.any_host));
        exact.chain(wildcard).chain(any)
    }

    /// An empty table (every request gets the default backend, or 404).
    pub fn new() -> Self {
        Self::default()
    }

    /// Adds a rule. The first rule for a given host + path + effective type wins; later ones
    /// get [`InsertError::Conflict`] (callers add Ingresses oldest first).
    pub fn insert(
        &mut self,
        host: &HostMatch,
        path: &str,
        path_type: PathType,
        backend: Arc<Backend>,
    ) -> Result<(), InsertError> {
        let mut routes = self.host(host).map(|r| (**r).clone()).unwrap_or_default();
        routes.insert(host, path, path_type, backend)?;
        self.set_host(host, routes);
        Ok(())
    }

    /// The paths of one host, if it has any.
    pub fn host(&self, host: &HostMatch) -> Option<&Arc<HostRoutes>> {
        match host {
            HostMatch::Any => Some(&self.any_host).filter(|r| !r.is_empty()),
            HostMatch::Exact(h) => self.exact_hosts.get(h),
            HostMatch::Wildcard(s) => self.wildcard_hosts.get(s),
        }
    }

    /// Replaces every path of one host (none removes the host). Copies the host index only
    /// if a published Snapshot still shares it.
    pub fn set_host(&mut self, host: &HostMatch, routes: HostRoutes) {
        let old = self.host(host).map_or(0, |r| r.len());
        self.len = self.len - old + routes.len();
        let routes = Arc::new(routes);
        let (map, key) = match host {
            HostMatch::Any => {
                self.any_host = routes;
                return;
            }
            HostMatch::Exact(h) => (&mut self.exact_hosts, h),
            HostMatch::Wildcard(s) => (&mut self.wildcard_hosts, s),
        };
        if let HostMatch::Exact(h) = host {
            let pass = routes.root().and_then(super::passthrough::ingress_route);
            if pass.is_some() || self.passthrough.contains_key(h) {
                let map = Arc::make_mut(&mut self.passthrough);
                match pass {
                    Some(p) => map.insert(h.clone(), p),
                    None => map.remove(h),
                };
            }
        }
        let map = Arc::make_mut(map);
        if routes.is_empty() {
            map.remove(key);
        } else {
            map.insert(key.clone(), routes);
        }
    }

    /// Replaces the `server-alias` hosts (alias → the host whose paths answer it).
    pub fn set_aliases(&mut self, aliases: FastMap<String, HostMatch>) {
        if aliases.is_empty() && self.aliases.is_empty() {
            return;
        }
        self.aliases = Arc::new(aliases);
    }

    /// The `server-alias` hosts, sorted (for reports and tests).
    pub fn aliases(&self) -> Vec<(String, HostMatch)> {
        let mut v: Vec<_> = self
            .aliases
            .iter()
            .map(|(a, h)| (a.clone(), h.clone()))
            .collect();
        v.sort();
        v
    }

    /// The `ssl-passthrough` route of `sni` (lowercase), an exact host: ingress-nginx
    /// compares the SNI with its server names, so wildcard hosts are never passed through.
    pub fn passthrough(&self, sni: &str) -> Option<&Arc<PassthroughRoute>> {
        self.passthrough.get(sni)
    }

    /// Whether some host is passed through.
    pub fn has_passthrough(&self) -> bool {
        !self.passthrough.is_empty()
    }

    /// Sets the backend used when no rule matches (Ingress `defaultBackend`, else
    /// `--default-backend-service`).
    pub fn set_default_backend(&mut self, backend: Option<Arc<Backend>>) {
        self.default_backend = backend;
    }

    /// Marks a host (`foo.com` or `*.foo.com`) as listed in an Ingress `tls` entry.
    pub fn add_tls_host(&mut self, host: &str) {
        Arc::make_mut(&mut self.tls).add(host);
    }

    /// Replaces the set of hosts listed in Ingress `tls` entries.
    pub fn set_tls_hosts(&mut self, hosts: TlsHosts) {
        self.tls = Arc::new(hosts);
    }

    /// Finds the backend for a request. `host` may carry a port and any case; `path` is the
    /// request path without the query. `None` means: use [`Self::default_backend`].
    pub fn route(&self, host: &str, path: &str) -> Option<RouteMatch<'_>> {
        let host = normalize_host(host);
        let (routes, (i, regex)) = self
            .exact_hosts
            .get(host.as_ref())
            .and_then(|r| Some((r, r.find(path)?)))
            .or_else(|| {
                // An alias is an exact server name: after exact hosts, before wildcards
                // (nginx's server_name order).
                if self.aliases.is_empty() {
                    return None;
                }
                let routes = self.host(self.aliases.get(host.as_ref())?)?;
                Some((routes, routes.find(path)?))
            })
            .or_else(|| {
                wildcard_suffix(&host)
                    .and_then(|s| self.wildcard_hosts.get(s))
                    .and_then(|r| Some((r, r.find(path)?)))
            })
            .or_else(|| {
                (!self.any_host.is_empty())
                    .then(|| Some((&self.any_host, self.any_host.find(path)?)))
                    .flatten()
            })?;
        let (rule_path, _, backend) = &routes.rules[i];
        Some(RouteMatch {
            backend,
            tls: self.tls.contains_normalized(&host),
            path: rule_path,
            regex,
        })
    }

    /// The client certificate requirement for requests and TLS connections naming
    /// `host` (any case, port allowed): that of the host entry requests for it are routed
    /// by first (exact, else wildcard, else any host).
    pub fn client_auth(&self, host: &str) -> Option<&Arc<ClientAuth>> {
        let host = normalize_host(host);
        let routes = self
            .exact_hosts
            .get(host.as_ref())
            .or_else(|| wildcard_suffix(&host).and_then(|s| self.wildcard_hosts.get(s)))
            .unwrap_or(&self.any_host);
        routes.client_auth()
    }

    /// The Ingress `defaultBackend` (oldest Ingress wins), else `--default-backend-service`;
    /// `None` means the router's built-in 404.
    pub fn default_backend(&self) -> Option<&Arc<Backend>> {
        self.default_backend.as_ref()
    }

    /// Whether `host` (any case, port allowed) is listed in an Ingress `tls` entry, exactly or
    /// through a one-label wildcard.
    pub fn is_tls_host(&self, host: &str) -> bool {
        self.tls.contains_normalized(&normalize_host(host))
    }

    /// The hosts listed in Ingress `tls` entries.
    pub fn tls_hosts(&self) -> &TlsHosts {
        &self.tls
    }

    /// Every rule, sorted by host, path and type (for `xdp-ingress check` and tests).
    pub fn rules(&self) -> Vec<RouteRule> {
        let any = std::iter::once((HostMatch::Any, &self.any_host));
        let exact = self
            .exact_hosts
            .iter()
            .map(|(h, r)| (HostMatch::Exact(h.clone()), r));
        let wild = self
            .wildcard_hosts
            .iter()
            .map(|(s, r)| (HostMatch::Wildcard(s.clone()), r));
        let mut out: Vec<RouteRule> = any
            .chain(exact)
            .chain(wild)
            .flat_map(|(host, routes)| {
                let regex = routes.is_regex();
                routes
                    .rules
                    .iter()
                    .map(move |(path, path_type, backend)| RouteRule {
                        host: host.clone(),
                        path: path.clone(),
                        path_type: *path_type,
                        backend: backend.clone(),
                        regex,
                    })
            })
            .collect();
        out.sort_by(|a, b| (&a.host, &a.path, a.path_type).cmp(&(&b.host, &b.path, b.path_type)));
        out
    }

    /// Number of rules.
    pub fn len(&self) -> usize {
        self.len
    }

    /// Whether there are no rules.
    pub fn is_empty(&self) -> bool {
        self.len == 0
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn app_protocol_picks_h2c_for_http2_names_only() {
        for (value, want) in [
            (None, Protocol::Http1),
            (Some("kubernetes.io/h2c"), Protocol::H2c),
            (Some("H2C"), Protocol::H2c),
            (Some("grpc"), Protocol::H2c),
            (Some("http2"), Protocol::H2c),
            (Some("http"), Protocol::Http1),
            (Some("kubernetes.io/ws"), Protocol::Http1),
            (Some(""), Protocol::Http1),
        ] {
            assert_eq!(Protocol::from_app_protocol(value), want, "{value:?}");
        }
    }

    /// A backend whose Service name identifies the rule that matched.
    fn backend(id: &str) -> Arc<Backend> {
        Arc::new(Backend::new(
            ServiceRef {
                namespace: "ns".into(),
                name: id.into(),
                port: 80,
            },
            Endpoints::default(),
            None,
        ))
    }

    /// A table from `(host, path, type)` rules; each rule's backend is named `host|type:path`.
    fn table(rules: &[(&str, &str, PathType)]) -> RouteTable {
        let mut t = RouteTable::new();
        for (host, path, ty) in rules {
            t.insert(
                &HostMatch::parse(host),
                path,
                *ty,
                backend(&format!("{host}|{ty}:{path}")),
            )
            .unwrap();
        }
        t
    }

    fn matched(t: &RouteTable, host: &str, path: &str) -> Option<String> {
        t.route(host, path).map(|m| m.backend.service.name.clone())
    }

    use PathType::{Exact, ImplementationSpecific as Impl, Prefix};

    /// Every row of the Kubernetes documentation's "Examples" table (Ingress, path types):
    /// (rules, request path, expected winning rule or None for the default backend).
    #[test]
    #[expect(clippy::type_complexity, reason = "a test table")]
    fn path_type_examples_table_of_the_kubernetes_docs() {
        #[rustfmt::skip]
        let rows: &[(&[(&str, PathType)], &[&str], Option<(&str, PathType)>)] = &[
            // Prefix /, (all paths), Yes
            (&[("/", Prefix)], &["/", "/foo", "/foo/bar/", "/a.b"], Some(("/", Prefix))),
            // Exact /foo, /foo, Yes
            (&[("/foo", Exact)], &["/foo"], Some(("/foo", Exact))),
            // Exact /foo, /bar, No
            (&[("/foo", Exact)], &["/bar"], None),
            // Exact /foo, /foo/, No
            (&[("/foo", Exact)], &["/foo/"], None),
            // Exact /foo/, /foo, No
            (&[("/foo/", Exact)], &["/foo"], None),
            // Prefix /foo, /foo and /foo/, Yes
            (&[("/foo", Prefix)], &["/foo", "/foo/"], Some(("/foo", Prefix))),
            // Prefix /foo/, /foo and /foo/, Yes
            (&[("/foo/", Prefix)], &["/foo", "/foo/"], Some(("/foo/", Prefix))),
            // Prefix /aaa/bb, /aaa/bbb, No
            (&[("/aaa/bb", Prefix)], &["/aaa/bbb"], None),
            // Prefix /aaa/bbb, /aaa/bbb, Yes
            (&[("/aaa/bbb", Prefix)], &["/aaa/bbb"], Some(("/aaa/bbb", Prefix))),
            // Prefix /aaa/bbb/, /aaa/bbb, Yes, ignores trailing slash
            (&[("/aaa/bbb/", Prefix)], &["/aaa/bbb"], Some(("/aaa/bbb/", Prefix))),
            // Prefix /aaa/bbb, /aaa/bbb/, Yes, matches trailing slash
            (&[("/aaa/bbb", Prefix)], &["/aaa/bbb/"], Some(("/aaa/bbb", Prefix))),
            // Prefix /aaa/bbb, /aaa/bbb/ccc, Yes, matches subpath
            (&[("/aaa/bbb", Prefix)], &["/aaa/bbb/ccc"], Some(("/aaa/bbb", Prefix))),
            // Prefix /aaa/bbb, /aaa/bbbxyz, No, does not match string prefix
            (&[("/aaa/bbb", Prefix)], &["/aaa/bbbxyz"], None),
            // Prefix /, /aaa; /aaa/ccc, Yes, matches /aaa prefix
            (&[("/", Prefix), ("/aaa", Prefix)], &["/aaa/ccc"], Some(("/aaa", Prefix))),
            // Prefix /, /aaa, /aaa/bbb; /aaa/bbb, Yes, matches /aaa/bbb prefix
            (&[("/", Prefix), ("/aaa", Prefix), ("/aaa/bbb", Prefix)], &["/aaa/bbb"], Some(("/aaa/bbb", Prefix))),
            // Prefix /, /aaa, /aaa/bbb; /ccc, Yes, matches / prefix
            (&[("/", Prefix), ("/aaa", Prefix), ("/aaa/bbb", Prefix)], &["/ccc"], Some(("/", Prefix))),
            // Prefix /aaa; /ccc, No, uses default backend
            (&[("/aaa", Prefix)], &["/ccc"], None),
            // Mixed /foo (Prefix), /foo (Exact); /foo, Yes, prefers Exact
            (&[("/foo", Prefix), ("/foo", Exact)], &["/foo"], Some(("/foo", Exact))),
        ];
        for (rules, requests, want) in rows {
            let rules: Vec<_> = rules.iter().map(|(p, ty)| ("", *p, *ty)).collect();
            let t = table(&rules);
            let want = want.map(|(p, ty)| format!("|{ty}:{p}"));
            for req in *requests {
                assert_eq!(
                    matched(&t, "example.com", req),
                    want,
                    "rules {rules:?}, request {req}"
                );
            }
        }
    }

    /// The Kubernetes documentation's hostname wildcard table.
    #[test]
    fn hostname_wildcard_table_of_the_kubernetes_docs() {
        let t = table(&[("*.foo.com", "/", Prefix)]);
        for (host, want) in [
            ("bar.foo.com", true),      // matches based on shared suffix
            ("baz.bar.foo.com", false), // wildcard only covers a single DNS label
            ("foo.com", false),         // wildcard only covers a single DNS label
        ] {
            assert_eq!(t.route(host, "/").is_some(), want, "host {host}");
        }
    }

    #[test]
    fn implementation_specific_matches_as_prefix() {
        let t = table(&[("", "/app", Impl)]);
        for (path, want) in [
            ("/app", true),
            ("/app/", true),
            ("/app/x", true),
            ("/application", false),
            ("/", false),
        ] {
            assert_eq!(t.route("h", path).is_some(), want, "{path}");
        }
    }

    #[test]
    fn prefix_and_implementation_specific_on_the_same_path_conflict() {
        let mut t = table(&[("", "/app", Prefix)]);
        let err = t
            .insert(&HostMatch::Any, "/app/", Impl, backend("late"))
            .unwrap_err();
        assert!(matches!(err, InsertError::Conflict { .. }), "{err:?}");
    }

    #[test]
    fn exact_is_case_sensitive_and_whole_path() {
        let t = table(&[("", "/Foo", Exact)]);
        for (path, want) in [
            ("/Foo", true),
            ("/foo", false),
            ("/Foo/", false),
            ("/Foo/x", false),
            ("/Fo", false),
        ] {
            assert_eq!(t.route("h", path).is_some(), want, "{path}");
        }
    }

    #[test]
    fn longest_path_wins_regardless_of_insertion_order() {
        let t = table(&[
            ("", "/a/b/c", Prefix),
            ("", "/a", Prefix),
            ("", "/a/b", Exact),
            ("", "/a/b", Prefix),
        ]);
        for (path, want) in [
            ("/a/b/c/d", "|Prefix:/a/b/c"),
            ("/a/b/x", "|Prefix:/a/b"),
            ("/a/b", "|Exact:/a/b"),
            ("/a/b/", "|Prefix:/a/b"),
            ("/a/x", "|Prefix:/a"),
        ] {
            assert_eq!(matched(&t, "h", path).as_deref(), Some(want), "{path}");
        }
    }

    #[test]
    fn exact_beats_prefix_at_equal_length() {
        let t = table(&[("", "/foo/", Prefix), ("", "/foo/", Exact)]);
        assert_eq!(matched(&t, "h", "/foo/").as_deref(), Some("|Exact:/foo/"));
        assert_eq!(matched(&t, "h", "/foo").as_deref(), Some("|Prefix:/foo/"));
    }

    #[test]
    fn exact_host_beats_wildcard_beats_any_host() {
        let t = table(&[
            ("a.foo.com", "/", Prefix),
            ("*.foo.com", "/long/path", Prefix),
            ("*.foo.com", "/", Prefix),
            ("", "/", Prefix),
        ]);
        for (host, path, want) in [
            ("a.foo.com", "/long/path", "a.foo.com|Prefix:/"),
            ("b.foo.com", "/long/path", "*.foo.com|Prefix:/long/path"),
            ("b.foo.com", "/x", "*.foo.com|Prefix:/"),
            ("foo.com", "/x", "|Prefix:/"),
            ("other.org", "/x", "|Prefix:/"),
        ] {
            assert_eq!(
                matched(&t, host, path).as_deref(),
                Some(want),
                "{host}{path}"
            );
        }
    }

    #[test]
    fn a_host_without_a_matching_path_falls_back_to_the_next_tier() {
        let t = table(&[
            ("a.foo.com", "/api", Prefix),
            ("*.foo.com", "/web", Prefix),
            ("", "/", Prefix),
        ]);
        assert_eq!(
            matched(&t, "a.foo.com", "/web").as_deref(),
            Some("*.foo.com|Prefix:/web")
        );
        assert_eq!(
            matched(&t, "a.foo.com", "/other").as_deref(),
            Some("|Prefix:/")
        );
    }

    #[test]
    fn rule_without_host_matches_any_host() {
        let t = table(&[("", "/x", Prefix)]);
        for host in ["a.com", "", "127.0.0.1:8080", "[::1]:80", "UPPER.example"] {
            assert!(t.route(host, "/x").is_some(), "{host}");
        }
    }

    #[test]
    fn host_match_ignores_case_port_and_trailing_dot() {
        let t = table(&[("Foo.COM", "/", Prefix), ("*.Bar.com", "/", Prefix)]);
        for host in [
            "foo.com",
            "FOO.com:8080",
            "foo.com.",
            "x.BAR.com:443",
            "X.bar.com",
        ] {
            assert!(t.route(host, "/").is_some(), "{host}");
        }
        for host in ["foo.org", "bar.com", ".bar.com", "foo.com:x"] {
            assert!(t.route(host, "/").is_none(), "{host}");
        }
    }

    #[test]
    fn no_match_means_default_backend() {
        let mut t = table(&[("a.com", "/", Prefix)]);
        assert!(t.route("b.com", "/").is_none());
        assert!(t.default_backend().is_none());
        t.set_default_backend(Some(backend("fallback")));
        assert_eq!(t.default_backend().unwrap().service.name, "fallback");
    }

    #[test]
    fn tls_hosts_exact_and_one_label_wildcard() {
        let mut t = table(&[("", "/", Prefix)]);
        t.add_tls_host("secure.com");
        t.add_tls_host("*.wild.com");
        for (host, want) in [
            ("secure.com", true),
            ("SECURE.com:443", true),
            ("a.wild.com", true),
            ("a.b.wild.com", false),
            ("wild.com", false),
            ("plain.com", false),
        ] {
            assert_eq!(t.is_tls_host(host), want, "{host}");
            assert_eq!(t.route(host, "/").unwrap().tls, want, "{host}");
        }
    }

    #[test]
    fn relative_path_is_refused() {
        let mut t = RouteTable::new();
        let err = t
            .insert(&HostMatch::Any, "foo", Prefix, backend("x"))
            .unwrap_err();
        assert_eq!(err, InsertError::NotAbsolute("foo".into()));
    }

    #[test]
    fn empty_path_means_root_prefix() {
        let mut t = RouteTable::new();
        t.insert(&HostMatch::Any, "", Prefix, backend("root"))
            .unwrap();
        assert!(t.route("h", "/anything").is_some());
    }

    #[test]
    fn empty_segments_are_elements() {
        let t = table(&[("", "/foo", Prefix), ("", "/foo//bar", Prefix)]);
        assert_eq!(
            matched(&t, "h", "/foo//bar/x").as_deref(),
            Some("|Prefix:/foo//bar")
        );
        assert_eq!(
            matched(&t, "h", "/foo//baz").as_deref(),
            Some("|Prefix:/foo")
        );
    }
}
