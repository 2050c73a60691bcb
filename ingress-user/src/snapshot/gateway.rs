//! Gateway API routes as the router serves them: the listening addresses our Gateways ask
//! for, and per address the HTTPRoute rules by hostname, already intersected with the
//! listeners' hostnames, resolved to Backends and sorted by the spec's precedence.
//!
//! The translation (`config::gateway`) builds this; the router only looks things up. An
//! Ingress and a Gateway may share an address and port: there the Gateway's hosts win
//! (see [`PortRoutes::hosts`]), and the Ingress rules for those hosts are reported as
//! Problems by the translation.
//!
//! The lookups are in [`matching`] (hostnames, HTTPRouteMatch conditions, the precedence
//! order the translation sorts by) and [`filters`] (what filters compute, weighted
//! choice); the router (`http::gateway`) applies them.

pub mod filters;
pub mod matching;

use std::{collections::BTreeMap, fmt, net::IpAddr, sync::Arc};

use hyper::{
    Method,
    header::{HeaderName, HeaderValue},
};
use regex::Regex;

use super::{ObjectRef, certs::CertSet, passthrough::PassthroughListener, routes::Backend};

/// Every listening address of our Gateways, with what is served there.
#[derive(Clone, Debug, Default)]
pub struct GatewayPlane {
    /// One entry per listening socket.
    pub ports: BTreeMap<ListenAddr, Arc<PortRoutes>>,
}

/// Where a group of Gateway listeners accepts connections.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct ListenAddr {
    /// A `spec.addresses` entry of type IPAddress, or `None` for `--bind-address` (a
    /// Gateway without addresses).
    pub ip: Option<IpAddr>,
    /// The listeners' `port`.
    pub port: u16,
}

impl fmt::Display for ListenAddr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.ip {
            Some(IpAddr::V6(ip)) => write!(f, "[{ip}]:{}", self.port),
            Some(ip) => write!(f, "{ip}:{}", self.port),
            None => write!(f, "*:{}", self.port),
        }
    }
}

/// What one listening socket serves: the listeners of one protocol on one address and
/// port (the spec lets HTTPS listeners share a port when their hostnames differ).
#[derive(Clone, Debug, Default)]
pub struct PortRoutes {
    /// HTTPS (terminate TLS with [`certs`](Self::certs)) or plain HTTP.
    pub tls: bool,
    /// HTTPS: the listeners' certificates by hostname (a listener without hostname gives
    /// the default certificate).
    pub certs: Arc<CertSet>,
    /// The rules by request hostname.
    pub hosts: GatewayHosts,
    /// HTTPS: the hostnames of the listeners served here (`None`: a listener without
    /// hostname). The listener a client's SNI selects must be the one its `Host` selects
    /// (see [`matching`]'s `PortRoutes::sni_allows`).
    pub listener_hosts: Vec<Option<String>>,
    /// TLS listeners in Passthrough mode on this address, with their TLSRoutes: an SNI
    /// that selects one of them is not terminated (see `snapshot::passthrough::decide`).
    pub passthrough: Vec<PassthroughListener>,
}

/// Which listener of an HTTPS address a connection's SNI selected, decided at the
/// handshake and kept by the connection (a fingerprint of the listener's hostname, so the
/// connection stays `Copy`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum SniListener {
    /// Not checked: plain HTTP, no SNI, or no Gateway HTTPS listener on this address.
    #[default]
    Unchecked,
    /// The listener whose hostname has this fingerprint.
    Listener(u64),
    /// No listener here matches the SNI.
    None,
}

/// Rules by request hostname, with Gateway API hostname semantics: `*.example.com`
/// matches one or more labels (`a.b.example.com`), unlike an Ingress wildcard, and an
/// exact name wins over any wildcard, a longer wildcard over a shorter one, any wildcard
/// over "every host" (a listener and route without hostnames).
///
/// A request is tried against every entry that applies to its host, most specific first
/// ([`GatewayHosts::route`]): a rule of a less specific entry answers when no rule of a
/// more specific one matches. So an entry holds only the rules of routes (intersected
/// with listeners) whose hostname is exactly that entry; it need not repeat the rules of
/// less specific hostnames.
#[derive(Clone, Debug, Default)]
pub struct GatewayHosts {
    /// Lowercase exact hostnames.
    pub exact: BTreeMap<String, HostRules>,
    /// Wildcards by their suffix including the dot (`.example.com` for `*.example.com`).
    pub wildcard: BTreeMap<String, HostRules>,
    /// Rules for every hostname.
    pub any: Option<HostRules>,
}

/// The rules that apply to one hostname, in precedence order (the first that matches a
/// request wins): sort them with [`matching::precedence_order`].
pub type HostRules = Arc<[Arc<GatewayRule>]>;

/// One `matches` entry of one HTTPRoute rule (a rule with n matches gives n entries,
/// sharing their [`RuleAction`]); a rule without matches gives one entry matching `/` by
/// prefix.
#[derive(Clone, Debug)]
pub struct GatewayRule {
    /// The HTTPRoute it came from.
    pub route: ObjectRef,
    /// Index of the rule in `spec.rules`.
    pub rule: usize,
    /// What a request must match.
    pub matches: RequestMatch,
    /// What happens to a matching request.
    pub action: Arc<RuleAction>,
}

/// An HTTPRouteMatch. All conditions must hold.
#[derive(Clone, Debug)]
pub struct RequestMatch {
    /// The path condition (default: prefix `/`).
    pub path: PathMatch,
    /// The method condition, if any.
    pub method: Option<Method>,
    /// Header conditions (names compared case-insensitively; the spec keeps only the
    /// first of several conditions on one name, which is the translation's to drop).
    pub headers: Vec<HeaderMatch>,
    /// Query parameter conditions (names compared exactly).
    pub query: Vec<QueryMatch>,
}

/// An HTTPPathMatch.
#[derive(Clone, Debug)]
pub enum PathMatch {
    /// The whole path equals this.
    Exact(String),
    /// The path starts with this, element by element (`/foo` matches `/foo` and
    /// `/foo/bar`, not `/foobar`); a trailing `/` is ignored.
    Prefix(String),
    /// The whole path matches this regular expression (anchored at both ends: build it
    /// with [`matching::full_regex`]).
    Regex(Regex),
}

/// An HTTPHeaderMatch.
#[derive(Clone, Debug)]
pub struct HeaderMatch {
    /// The header name.
    pub name: HeaderName,
    /// The value condition.
    pub value: ValueMatch,
}

/// An HTTPQueryParamMatch.
#[derive(Clone, Debug)]
pub struct QueryMatch {
    /// The parameter name (exact, case-sensitive).
    pub name: String,
    /// The value condition.
    pub value: ValueMatch,
}

/// How a header or query value is compared.
#[derive(Clone, Debug)]
pub enum ValueMatch {
    /// Equal.
    Exact(String),
    /// The whole value matches (anchored at both ends: build it with
    /// [`matching::full_regex`]).
    Regex(Regex),
}

/// What a rule does with a matching request: its filters, then one of its backends.
#[derive(Clone, Debug, Default)]
pub struct RuleAction {
    /// The rule's filters, in order.
    pub filters: Vec<Filter>,
    /// The rule's backendRefs. Empty with no redirect filter: the request gets 500.
    pub backends: Vec<WeightedBackend>,
}

/// One backendRef of a rule.
#[derive(Clone, Debug)]
pub struct WeightedBackend {
    /// Share of requests relative to the rule's other backends; 0 gets none.
    pub weight: u32,
    /// The Service, or why the reference is unusable: a request that picks an invalid
    /// backend gets 500 (the spec's answer for an unresolved backendRef).
    pub target: Result<Arc<Backend>, InvalidBackend>,
    /// The backendRef's own filters, applied after the rule's.
    pub filters: Vec<Filter>,
}

/// Why a backendRef cannot be used (reported in the route's `ResolvedRefs` condition).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum InvalidBackend {
    /// No such Service (or Service port).
    NotFound,
    /// A kind we do not route to.
    InvalidKind,
    /// Another namespace without a ReferenceGrant.
    RefNotPermitted,
}

/// An HTTPRouteFilter we apply.
#[derive(Clone, Debug)]
pub enum Filter {
    /// RequestHeaderModifier.
    RequestHeaders(HeaderEdits),
    /// ResponseHeaderModifier.
    ResponseHeaders(HeaderEdits),
    /// RequestRedirect: answer with a redirect instead of forwarding.
    Redirect(Redirect),
    /// URLRewrite: change the host and path sent upstream.
    Rewrite(Rewrite),
    /// RequestMirror: send a copy to this backend, fire and forget.
    Mirror(Mirror),
}

/// Header changes of a RequestHeaderModifier or ResponseHeaderModifier filter, applied
/// as set, then add, then remove.
#[derive(Clone, Debug, Default)]
pub struct HeaderEdits {
    /// Replace (or create) these headers.
    pub set: Vec<(HeaderName, HeaderValue)>,
    /// Append these values (creating the header if absent).
    pub add: Vec<(HeaderName, HeaderValue)>,
    /// Remove these headers.
    pub remove: Vec<HeaderName>,
}

/// A RequestRedirect filter. Fields left `None` keep the request's value.
#[derive(Clone, Debug)]
pub struct Redirect {
    /// `http` or `https`.
    pub scheme: Option<String>,
    /// The host in `Location`.
    pub hostname: Option<String>,
    /// The path in `Location`.
    pub path: Option<PathRewrite>,
    /// The port in `Location`; when unset, the spec derives it from the scheme (omitted
    /// for the scheme's well-known port).
    pub port: Option<u16>,
    /// 301 or 302 (the default), or the extended 303, 307, 308; the router answers 302
    /// for anything that is not a redirect status.
    pub status: u16,
}

/// A URLRewrite filter.
#[derive(Clone, Debug, Default)]
pub struct Rewrite {
    /// The `Host` sent upstream.
    pub hostname: Option<String>,
    /// The path sent upstream.
    pub path: Option<PathRewrite>,
}

/// An HTTPPathModifier.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum PathRewrite {
    /// Replace the whole path.
    Full(String),
    /// Replace the prefix the rule's `PathPrefix` match matched (only valid with one).
    Prefix(String),
}

/// A RequestMirror filter. The router sends a copy of the request as forwarded (after
/// the rule's other filters) to one endpoint of `backend`, fire and forget; see
/// `http::router::gateway` for what happens to request bodies.
#[derive(Clone, Debug)]
pub struct Mirror {
    /// Where copies go.
    pub backend: Arc<Backend>,
    /// Share of requests mirrored, 0 to 100 (100 when the filter gives none).
    pub percent: f64,
}
