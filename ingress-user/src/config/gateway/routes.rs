//! HTTPRoutes: attaching each to the listeners of our Gateways its parentRefs name, and
//! compiling its rules (matches, filters, backendRefs) into the Snapshot's types.

use std::{collections::BTreeMap, sync::Arc};

use hyper::{
    Method,
    header::{HeaderName, HeaderValue},
};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use regex::Regex;

use super::{
    Key, Objects, Problem, Translated, generation, granted,
    hostname::{intersect, validate},
    key,
    listeners::{HTTP_ROUTE, Resolved},
    object_ref, selects,
    status::{Cond, ParentState, RouteState},
    types::{self, BackendRef, HTTPRoute, HttpRouteFilter, HttpRouteMatch, PathModifier},
};
use crate::{
    config::backend::{Cells, PortSpec, Resolver},
    snapshot::{
        ObjectRef,
        gateway::{
            Filter, HeaderEdits, HeaderMatch, InvalidBackend, Mirror, PathMatch, PathRewrite,
            QueryMatch, Redirect, RequestMatch, Rewrite, RuleAction, ValueMatch, WeightedBackend,
            matching::full_regex,
        },
        problem::Severity,
        routes::{Backend, Protocol},
    },
};

/// The label the API server puts on every Namespace, with its name as the value.
const NAMESPACE_NAME_LABEL: &str = "kubernetes.io/metadata.name";

/// A route attached to at least one listener, compiled. Routes come oldest first (then by
/// namespace/name), the spec's tie-break between routes.
pub struct Attached {
    /// The HTTPRoute.
    pub route: ObjectRef,
    /// Its rules.
    pub rules: Vec<Rule>,
    /// Where it attached: (Gateway index, listener index, hostnames; `None` = any).
    pub attachments: Vec<(usize, usize, Vec<Option<String>>)>,
}

/// `Err((reason, message))` of a condition that is False.
type Verdict = Result<(), (&'static str, String)>;

/// One compiled rule.
pub struct Rule {
    /// Index in `spec.rules`.
    pub index: usize,
    /// Its matches (at least one).
    pub matches: Vec<RequestMatch>,
    /// What it does.
    pub action: Arc<RuleAction>,
}

/// Attaches every HTTPRoute that names a Gateway of ours, recording parent statuses,
/// listener `attachedRoutes` and Problems.
pub fn attach(
    objects: &Objects,
    resolver: Resolver<'_>,
    cells: &mut Cells,
    gateways: &mut [Resolved<'_>],
    out: &mut Translated,
) -> Vec<Attached> {
    let mut routes: Vec<&HTTPRoute> = objects.http_routes.values().map(|r| &**r).collect();
    routes.sort_by_cached_key(|r| age(r));
    let mut attached = Vec::new();
    for route in routes {
        let rkey = key(&route.metadata);
        let object = object_ref("HTTPRoute", &rkey);
        let route_gen = generation(&route.metadata);
        let mut parents = Vec::new();
        let mut attachments = Vec::new();
        let mut compiled: Option<(Vec<Rule>, Verdict)> = None;
        for (pi, parent) in route.spec.parent_refs.iter().enumerate() {
            let Some(gi) = our_gateway(gateways, parent, &rkey.0) else {
                continue;
            };
            let (_, resolved) = compiled.get_or_insert_with(|| {
                compile(
                    objects,
                    resolver,
                    cells,
                    route,
                    &rkey,
                    &object,
                    &mut out.problems,
                )
            });
            let accepted = attach_parent(
                objects,
                HTTP_ROUTE,
                &route.spec.hostnames,
                &rkey,
                parent,
                gi,
                gateways,
                &mut attachments,
            );
            parents.push(parent_state(
                parent,
                pi,
                accepted,
                resolved,
                route_gen,
                &object,
                &mut out.problems,
            ));
        }
        if parents.is_empty() {
            continue;
        }
        out.statuses.routes.push(RouteState {
            key: rkey.clone(),
            kind: "HTTPRoute",
            parents,
        });
        if !attachments.is_empty()
            && let Some((rules, _)) = compiled
        {
            attached.push(Attached {
                route: object,
                rules,
                attachments,
            });
        }
    }
    out.statuses.routes.sort_by(|a, b| a.key.cmp(&b.key));
    attached
}

/// The spec's order between routes: oldest first, then `{namespace}/{name}` as a string.
fn age(r: &HTTPRoute) -> (bool, Option<Time>, String) {
    let created = r.metadata.creation_timestamp.clone();
    let (ns, name) = key(&r.metadata);
    (created.is_none(), created, format!("{ns}/{name}"))
}

/// Attaches a route of `kind` with `hostnames` to the listeners of Gateway `gi` its
/// parentRef selects.
#[allow(clippy::too_many_arguments)] // One parentRef's whole context.
pub(super) fn attach_parent(
    objects: &Objects,
    kind: &str,
    hostnames: &[String],
    rkey: &Key,
    parent: &types::ParentReference,
    gi: usize,
    gateways: &mut [Resolved<'_>],
    attachments: &mut Vec<(usize, usize, Vec<Option<String>>)>,
) -> Result<(), (&'static str, String)> {
    let g = &mut gateways[gi];
    let candidates = named_listeners(g, parent)?;
    let ns_labels = namespace_labels(objects, &rkey.0);
    let allowed: Vec<usize> = candidates
        .into_iter()
        .filter(|&i| listener_allows(g, i, kind, &rkey.0, &ns_labels))
        .collect();
    if allowed.is_empty() {
        return Err((
            "NotAllowedByListeners",
            format!(
                "no listener of Gateway {}/{} it names allows {kind}s from namespace {}",
                g.key.0, g.key.1, rkey.0
            ),
        ));
    }
    let hostnames: Vec<String> = hostnames.iter().filter_map(|h| validate(h).ok()).collect();
    let mut any = false;
    for i in allowed {
        let l = &mut g.listeners[i];
        if let Some(hosts) = intersect(l.hostname.as_deref(), &hostnames) {
            l.attached += 1;
            attachments.push((gi, i, hosts));
            any = true;
        }
    }
    if any {
        Ok(())
    } else {
        Err((
            "NoMatchingListenerHostname",
            format!(
                "no hostname of the route intersects a listener hostname of Gateway {}/{}",
                g.key.0, g.key.1
            ),
        ))
    }
}

/// Which of our Gateways `parent` names (group and kind default to a Gateway, the
/// namespace to the route's, `route_ns`); `None` for other kinds and other Gateways.
pub(super) fn our_gateway(
    gateways: &[Resolved<'_>],
    parent: &types::ParentReference,
    route_ns: &str,
) -> Option<usize> {
    let group = parent.group.as_deref().unwrap_or(types::GROUP);
    let kind = parent.kind.as_deref().unwrap_or("Gateway");
    if group != types::GROUP || kind != "Gateway" {
        return None;
    }
    let ns = parent.namespace.as_deref().unwrap_or(route_ns);
    gateways
        .iter()
        .position(|g| g.key.0 == ns && g.key.1 == parent.name)
}

/// The listeners of Gateway `g` a parentRef names (by `sectionName` and `port`), or why
/// none (`NoMatchingParent`).
pub(super) fn named_listeners(
    g: &Resolved<'_>,
    parent: &types::ParentReference,
) -> Result<Vec<usize>, (&'static str, String)> {
    let candidates: Vec<usize> = g
        .listeners
        .iter()
        .enumerate()
        .filter(|(_, l)| {
            parent
                .section_name
                .as_ref()
                .is_none_or(|s| *s == l.spec.name)
        })
        .filter(|(_, l)| parent.port.is_none_or(|p| p == l.spec.port))
        .map(|(i, _)| i)
        .collect();
    if candidates.is_empty() {
        let what = match (&parent.section_name, parent.port) {
            (Some(s), Some(p)) => format!("no listener {s:?} on port {p}"),
            (Some(s), None) => format!("no listener {s:?}"),
            (None, Some(p)) => format!("no listener on port {p}"),
            (None, None) => "no listeners".to_owned(),
        };
        return Err((
            "NoMatchingParent",
            format!("Gateway {}/{} has {what}", g.key.0, g.key.1),
        ));
    }
    Ok(candidates)
}

/// The labels of Namespace `ns`, for `allowedRoutes` selectors. The API server labels
/// every Namespace with its name; file mode has no API server (and may have no Namespace
/// object), so the label is added here.
pub(super) fn namespace_labels(objects: &Objects, ns: &str) -> BTreeMap<String, String> {
    let mut labels = objects
        .namespaces
        .get(&(String::new(), ns.to_owned()))
        .and_then(|n| n.metadata.labels.clone())
        .unwrap_or_default();
    labels
        .entry(NAMESPACE_NAME_LABEL.to_owned())
        .or_insert_with(|| ns.to_owned());
    labels
}

/// Whether listener `i` of Gateway `g` lets a route of `kind` from namespace `route_ns`
/// (labelled `ns_labels`) attach: the Gateway and the listener take routes, of that kind,
/// and `allowedRoutes.namespaces` admits the namespace. A listener whose certificate did
/// not resolve still takes routes (they count in attachedRoutes, as
/// GatewayWithAttachedRoutes expects); it is not served.
pub(super) fn listener_allows(
    g: &Resolved<'_>,
    i: usize,
    kind: &str,
    route_ns: &str,
    ns_labels: &BTreeMap<String, String>,
) -> bool {
    let l = &g.listeners[i];
    if g.refused.is_some() || !l.takes_routes() || !l.takes(kind) {
        return false;
    }
    let from = l
        .spec
        .allowed_routes
        .as_ref()
        .and_then(|a| a.namespaces.as_ref());
    match from.and_then(|f| f.from.as_deref()).unwrap_or("Same") {
        "All" => true,
        "Same" => route_ns == g.key.0,
        "Selector" => from
            .and_then(|f| f.selector.as_ref())
            .is_some_and(|s| selects(s, ns_labels)),
        _ => false,
    }
}

/// A route's status for one parentRef: Accepted from whether it attached, ResolvedRefs
/// from its backendRefs. A refusal is also a Problem on `spec.parentRefs[pi]`.
#[allow(clippy::too_many_arguments)] // One parentRef's whole verdict.
pub(super) fn parent_state(
    parent: &types::ParentReference,
    pi: usize,
    accepted: Result<(), (&'static str, String)>,
    resolved: &Result<(), (&'static str, String)>,
    route_gen: i64,
    object: &ObjectRef,
    problems: &mut Vec<Problem>,
) -> ParentState {
    if let Err((_, msg)) = &accepted {
        problems.push(Problem {
            object: object.clone(),
            field: Some(format!("spec.parentRefs[{pi}]")),
            kind: "route_not_accepted",
            message: msg.clone(),
            severity: Severity::Error,
        });
    }
    ParentState {
        parent_ref: parent.clone(),
        conditions: vec![
            match accepted {
                Ok(()) => Cond::new("Accepted", true, "Accepted", "", route_gen),
                Err((reason, msg)) => Cond::new("Accepted", false, reason, msg, route_gen),
            },
            match resolved {
                Ok(()) => Cond::new("ResolvedRefs", true, "ResolvedRefs", "", route_gen),
                Err((reason, msg)) => {
                    Cond::new("ResolvedRefs", false, reason, msg.clone(), route_gen)
                }
            },
        ],
    }
}

/// Compiles a route's rules. The second value is the ResolvedRefs verdict: the first
/// backendRef that did not resolve, if any.
fn compile(
    objects: &Objects,
    resolver: Resolver<'_>,
    cells: &mut Cells,
    route: &HTTPRoute,
    rkey: &Key,
    object: &ObjectRef,
    problems: &mut Vec<Problem>,
) -> (Vec<Rule>, Result<(), (&'static str, String)>) {
    let mut c = Compiler {
        objects,
        resolver,
        cells,
        rkey,
        object,
        problems,
        resolved: Ok(()),
    };
    for (i, h) in route.spec.hostnames.iter().enumerate() {
        if let Err(e) = validate(h) {
            c.problem(
                format!("spec.hostnames[{i}]"),
                "invalid_hostname",
                e.to_string(),
            );
        }
    }
    let default_rule;
    let rules: &[types::HttpRouteRule] = if route.spec.rules.is_empty() {
        default_rule = [types::HttpRouteRule::default()];
        &default_rule
    } else {
        &route.spec.rules
    };
    let mut out = Vec::with_capacity(rules.len());
    for (ri, rule) in rules.iter().enumerate() {
        if let Some(r) = c.rule(ri, rule) {
            out.push(r);
        }
    }
    (out, c.resolved)
}

struct Compiler<'a, 'p> {
    objects: &'a Objects,
    resolver: Resolver<'a>,
    cells: &'a mut Cells,
    rkey: &'a Key,
    object: &'a ObjectRef,
    problems: &'p mut Vec<Problem>,
    resolved: Result<(), (&'static str, String)>,
}

/// Why a rule cannot be compiled as written.
struct Broken;

impl Compiler<'_, '_> {
    fn problem(&mut self, field: String, kind: &'static str, message: String) {
        self.problems.push(Problem {
            object: self.object.clone(),
            field: Some(field),
            kind,
            message,
            severity: Severity::Error,
        });
    }

    fn unresolved(&mut self, reason: &'static str, message: String) {
        if self.resolved.is_ok() {
            self.resolved = Err((reason, message));
        }
    }

    /// A rule; `None` when one of its matches is invalid (the rule is skipped, as if
    /// absent). A rule with an invalid filter answers 500 (the spec's answer for a filter
    /// that cannot be applied).
    fn rule(&mut self, ri: usize, rule: &types::HttpRouteRule) -> Option<Rule> {
        let mut matches = Vec::new();
        let default_match = [HttpRouteMatch::default()];
        let written = if rule.matches.is_empty() {
            &default_match[..]
        } else {
            &rule.matches
        };
        for (mi, m) in written.iter().enumerate() {
            match self.request_match(&format!("spec.rules[{ri}].matches[{mi}]"), m) {
                Ok(m) => matches.push(m),
                Err(Broken) => return None,
            }
        }
        let prefix_only = matches
            .iter()
            .all(|m| matches!(m.path, PathMatch::Prefix(_)));
        let field = format!("spec.rules[{ri}].filters");
        let filters = self.filters(&field, &rule.filters, prefix_only);
        let mut backends = Vec::with_capacity(rule.backend_refs.len());
        for (bi, b) in rule.backend_refs.iter().enumerate() {
            let field = format!("spec.rules[{ri}].backendRefs[{bi}]");
            let target = self.backend(&field, &b.target);
            let filters = self.filters(&format!("{field}.filters"), &b.filters, prefix_only);
            let (target, filters) = match (target, filters) {
                (t, Ok(f)) => (t, f),
                (_, Err(Broken)) => (Err(InvalidBackend::NotFound), Vec::new()),
            };
            backends.push(WeightedBackend {
                weight: u32::try_from(b.weight.unwrap_or(1)).unwrap_or(0),
                target,
                filters,
            });
        }
        let action = match filters {
            Ok(filters) => RuleAction { filters, backends },
            // No backends and no redirect: the router answers 500.
            Err(Broken) => RuleAction::default(),
        };
        Some(Rule {
            index: ri,
            matches,
            action: Arc::new(action),
        })
    }

    fn request_match(&mut self, field: &str, m: &HttpRouteMatch) -> Result<RequestMatch, Broken> {
        let path = m.path.as_ref();
        let value = path
            .and_then(|p| p.value.clone())
            .unwrap_or_else(|| "/".to_owned());
        let path = match path
            .and_then(|p| p.type_.as_deref())
            .unwrap_or("PathPrefix")
        {
            "Exact" | "PathPrefix" if !value.starts_with('/') => {
                self.problem(
                    format!("{field}.path.value"),
                    "invalid_path",
                    format!("path {value:?} must start with '/'"),
                );
                return Err(Broken);
            }
            "Exact" => PathMatch::Exact(value),
            "PathPrefix" => PathMatch::Prefix(value),
            "RegularExpression" => {
                PathMatch::Regex(self.regex(&format!("{field}.path.value"), &value)?)
            }
            other => {
                self.problem(
                    format!("{field}.path.type"),
                    "unsupported_match",
                    format!("path match type {other:?} is not supported"),
                );
                return Err(Broken);
            }
        };
        let mut headers = Vec::with_capacity(m.headers.len());
        for (i, h) in m.headers.iter().enumerate() {
            let f = format!("{field}.headers[{i}]");
            let Ok(name) = HeaderName::from_bytes(h.name.as_bytes()) else {
                self.problem(
                    f,
                    "invalid_header",
                    format!("{:?} is not a header name", h.name),
                );
                return Err(Broken);
            };
            // The spec: only the first match for a header name counts.
            if headers.iter().any(|x: &HeaderMatch| x.name == name) {
                continue;
            }
            let value = self.value_match(&f, h)?;
            headers.push(HeaderMatch { name, value });
        }
        let mut query = Vec::with_capacity(m.query_params.len());
        for (i, q) in m.query_params.iter().enumerate() {
            let f = format!("{field}.queryParams[{i}]");
            if query.iter().any(|x: &QueryMatch| x.name == q.name) {
                continue;
            }
            let value = self.value_match(&f, q)?;
            query.push(QueryMatch {
                name: q.name.clone(),
                value,
            });
        }
        let method = match &m.method {
            None => None,
            Some(s) => match Method::from_bytes(s.as_bytes()) {
                Ok(m) => Some(m),
                Err(_) => {
                    self.problem(
                        format!("{field}.method"),
                        "invalid_method",
                        format!("{s:?} is not an HTTP method"),
                    );
                    return Err(Broken);
                }
            },
        };
        Ok(RequestMatch {
            path,
            method,
            headers,
            query,
        })
    }

    fn value_match(
        &mut self,
        field: &str,
        h: &types::HttpHeaderMatch,
    ) -> Result<ValueMatch, Broken> {
        match h.type_.as_deref().unwrap_or("Exact") {
            "Exact" => Ok(ValueMatch::Exact(h.value.clone())),
            "RegularExpression" => Ok(ValueMatch::Regex(
                self.regex(&format!("{field}.value"), &h.value)?,
            )),
            other => {
                self.problem(
                    format!("{field}.type"),
                    "unsupported_match",
                    format!("match type {other:?} is not supported"),
                );
                Err(Broken)
            }
        }
    }

    /// A regular expression anchored at both ends (the spec matches whole values).
    fn regex(&mut self, field: &str, re: &str) -> Result<Regex, Broken> {
        full_regex(re).map_err(|e| {
            self.problem(
                field.to_owned(),
                "invalid_regex",
                format!("invalid regular expression {re:?}: {e}"),
            );
            Broken
        })
    }

    fn filters(
        &mut self,
        field: &str,
        filters: &[HttpRouteFilter],
        prefix_only: bool,
    ) -> Result<Vec<Filter>, Broken> {
        let mut out = Vec::with_capacity(filters.len());
        let mut broken = false;
        let (mut redirect, mut rewrite) = (false, false);
        for (i, f) in filters.iter().enumerate() {
            let field = format!("{field}[{i}]");
            match self.filter(&field, f, prefix_only) {
                Ok(Some(f)) => {
                    redirect |= matches!(f, Filter::Redirect(_));
                    rewrite |= matches!(f, Filter::Rewrite(_));
                    out.push(f);
                }
                Ok(None) => {}
                Err(Broken) => broken = true,
            }
        }
        if redirect && rewrite {
            self.problem(
                field.to_owned(),
                "invalid_filter",
                "RequestRedirect and URLRewrite cannot be used together".to_owned(),
            );
            broken = true;
        }
        if broken { Err(Broken) } else { Ok(out) }
    }

    /// One filter; `Ok(None)` for a mirror whose backend did not resolve (dropped: a copy
    /// nobody receives changes nothing for the client).
    fn filter(
        &mut self,
        field: &str,
        f: &HttpRouteFilter,
        prefix_only: bool,
    ) -> Result<Option<Filter>, Broken> {
        let missing = |c: &mut Self, name: &str| {
            c.problem(
                field.to_owned(),
                "invalid_filter",
                format!("type {} without {name}", f.type_),
            );
            Broken
        };
        Ok(Some(match f.type_.as_str() {
            "RequestHeaderModifier" => {
                let h = f
                    .request_header_modifier
                    .as_ref()
                    .ok_or_else(|| missing(self, "requestHeaderModifier"))?;
                Filter::RequestHeaders(
                    self.header_edits(&format!("{field}.requestHeaderModifier"), h)?,
                )
            }
            "ResponseHeaderModifier" => {
                let h = f
                    .response_header_modifier
                    .as_ref()
                    .ok_or_else(|| missing(self, "responseHeaderModifier"))?;
                Filter::ResponseHeaders(
                    self.header_edits(&format!("{field}.responseHeaderModifier"), h)?,
                )
            }
            "RequestRedirect" => {
                let r = f
                    .request_redirect
                    .as_ref()
                    .ok_or_else(|| missing(self, "requestRedirect"))?;
                let field = format!("{field}.requestRedirect");
                let scheme = match r.scheme.as_deref() {
                    None => None,
                    Some(s @ ("http" | "https")) => Some(s.to_owned()),
                    Some(s) => {
                        self.problem(
                            format!("{field}.scheme"),
                            "invalid_filter",
                            format!("scheme {s:?} (http or https)"),
                        );
                        return Err(Broken);
                    }
                };
                let status = match r.status_code.unwrap_or(302) {
                    s @ (301 | 302 | 303 | 307 | 308) => s as u16,
                    s => {
                        self.problem(
                            format!("{field}.statusCode"),
                            "invalid_filter",
                            format!("status {s} (301, 302, 303, 307 or 308)"),
                        );
                        return Err(Broken);
                    }
                };
                let port = match r.port {
                    None => None,
                    Some(p) => match u16::try_from(p) {
                        Ok(p) if p > 0 => Some(p),
                        _ => {
                            self.problem(
                                format!("{field}.port"),
                                "invalid_filter",
                                format!("port {p} is out of range"),
                            );
                            return Err(Broken);
                        }
                    },
                };
                let hostname =
                    self.hostname(&format!("{field}.hostname"), r.hostname.as_deref())?;
                let path =
                    self.path_modifier(&format!("{field}.path"), r.path.as_ref(), prefix_only)?;
                Filter::Redirect(Redirect {
                    scheme,
                    hostname,
                    path,
                    port,
                    status,
                })
            }
            "URLRewrite" => {
                let r = f
                    .url_rewrite
                    .as_ref()
                    .ok_or_else(|| missing(self, "urlRewrite"))?;
                let field = format!("{field}.urlRewrite");
                let hostname =
                    self.hostname(&format!("{field}.hostname"), r.hostname.as_deref())?;
                let path =
                    self.path_modifier(&format!("{field}.path"), r.path.as_ref(), prefix_only)?;
                Filter::Rewrite(Rewrite { hostname, path })
            }
            "RequestMirror" => {
                let m = f
                    .request_mirror
                    .as_ref()
                    .ok_or_else(|| missing(self, "requestMirror"))?;
                let percent = match (&m.percent, &m.fraction) {
                    (Some(p), _) => f64::from((*p).clamp(0, 100)),
                    (None, Some(fr)) => {
                        let d = fr.denominator.unwrap_or(100).max(1);
                        (f64::from(fr.numerator.max(0)) * 100.0 / f64::from(d)).min(100.0)
                    }
                    (None, None) => 100.0,
                };
                match self.backend(&format!("{field}.requestMirror.backendRef"), &m.backend_ref) {
                    Ok(backend) => Filter::Mirror(Mirror { backend, percent }),
                    Err(_) => return Ok(None),
                }
            }
            other => {
                self.problem(
                    format!("{field}.type"),
                    "unsupported_filter",
                    format!(
                        "filter {other:?} is not supported; requests this rule matches get 500"
                    ),
                );
                return Err(Broken);
            }
        }))
    }

    fn hostname(&mut self, field: &str, h: Option<&str>) -> Result<Option<String>, Broken> {
        match h {
            None => Ok(None),
            Some(h) => match validate(h) {
                Ok(h) if !h.starts_with('*') => Ok(Some(h)),
                Ok(_) => {
                    self.problem(
                        field.to_owned(),
                        "invalid_filter",
                        format!("{h:?}: a wildcard is not a hostname"),
                    );
                    Err(Broken)
                }
                Err(e) => {
                    self.problem(field.to_owned(), "invalid_filter", e.to_string());
                    Err(Broken)
                }
            },
        }
    }

    fn path_modifier(
        &mut self,
        field: &str,
        p: Option<&PathModifier>,
        prefix_only: bool,
    ) -> Result<Option<PathRewrite>, Broken> {
        let Some(p) = p else { return Ok(None) };
        let (value, rewrite) = match p.type_.as_str() {
            "ReplaceFullPath" => {
                let v = p.replace_full_path.clone().unwrap_or_default();
                (v.clone(), PathRewrite::Full(v))
            }
            "ReplacePrefixMatch" if prefix_only => {
                let v = p.replace_prefix_match.clone().unwrap_or_default();
                (v.clone(), PathRewrite::Prefix(v))
            }
            "ReplacePrefixMatch" => {
                self.problem(
                    field.to_owned(),
                    "invalid_filter",
                    "ReplacePrefixMatch needs every match of the rule to be a PathPrefix"
                        .to_owned(),
                );
                return Err(Broken);
            }
            other => {
                self.problem(
                    format!("{field}.type"),
                    "invalid_filter",
                    format!("path modifier {other:?}"),
                );
                return Err(Broken);
            }
        };
        if !value.is_empty() && !value.starts_with('/') {
            self.problem(
                field.to_owned(),
                "invalid_filter",
                format!("path {value:?} must start with '/'"),
            );
            return Err(Broken);
        }
        Ok(Some(rewrite))
    }

    fn header_edits(
        &mut self,
        field: &str,
        h: &types::HeaderFilter,
    ) -> Result<HeaderEdits, Broken> {
        let mut out = HeaderEdits::default();
        let pair = |c: &mut Self, f: String, name: &str, value: &str| match (
            HeaderName::from_bytes(name.as_bytes()),
            HeaderValue::from_str(value),
        ) {
            (Ok(n), Ok(v)) => Ok((n, v)),
            _ => {
                c.problem(
                    f,
                    "invalid_filter",
                    format!("header {name:?}: {value:?} is not a valid header"),
                );
                Err(Broken)
            }
        };
        for (i, s) in h.set.iter().enumerate() {
            out.set
                .push(pair(self, format!("{field}.set[{i}]"), &s.name, &s.value)?);
        }
        for (i, a) in h.add.iter().enumerate() {
            out.add
                .push(pair(self, format!("{field}.add[{i}]"), &a.name, &a.value)?);
        }
        for (i, r) in h.remove.iter().enumerate() {
            match HeaderName::from_bytes(r.as_bytes()) {
                Ok(n) => out.remove.push(n),
                Err(_) => {
                    self.problem(
                        format!("{field}.remove[{i}]"),
                        "invalid_filter",
                        format!("{r:?} is not a header name"),
                    );
                    return Err(Broken);
                }
            }
        }
        Ok(out)
    }

    /// Resolves a backendRef (or mirror backendRef) to a Service port.
    fn backend(&mut self, field: &str, b: &BackendRef) -> Result<Arc<Backend>, InvalidBackend> {
        let group = b.group.as_deref().unwrap_or("");
        let kind = b.kind.as_deref().unwrap_or("Service");
        if !group.is_empty() || kind != "Service" {
            let msg = format!("{group}/{kind} is not a supported backend kind (core Services are)");
            self.unresolved("InvalidKind", format!("{field}: {msg}"));
            self.problem(field.to_owned(), "invalid_backend_kind", msg);
            return Err(InvalidBackend::InvalidKind);
        }
        let ns = b.namespace.as_deref().unwrap_or(&self.rkey.0);
        if ns != self.rkey.0
            && !granted(
                self.objects,
                "HTTPRoute",
                &self.rkey.0,
                "",
                "Service",
                ns,
                &b.name,
            )
        {
            let msg = format!(
                "Service {ns}/{} is in another namespace and no ReferenceGrant there allows it",
                b.name
            );
            self.unresolved("RefNotPermitted", format!("{field}: {msg}"));
            self.problem(field.to_owned(), "ref_not_permitted", msg);
            return Err(InvalidBackend::RefNotPermitted);
        }
        let Some(port) = b.port else {
            let msg = "a Service backendRef needs a port".to_owned();
            self.unresolved("BackendNotFound", format!("{field}: {msg}"));
            self.problem(field.to_owned(), "unknown_service_port", msg);
            return Err(InvalidBackend::NotFound);
        };
        match self
            .resolver
            .port(ns, &b.name, &PortSpec::Number(port), false)
        {
            Ok((service, sp)) => {
                let (sref, endpoints) = self.cells.get(self.resolver, service, sp);
                let protocol = Protocol::from_app_protocol(sp.app_protocol.as_deref());
                Ok(Arc::new(
                    Backend::new(sref, endpoints, Some(self.object.clone()))
                        .with_protocol(protocol),
                ))
            }
            Err(e) => {
                self.unresolved("BackendNotFound", format!("{field}: {e}"));
                self.problem(field.to_owned(), e.kind(), e.to_string());
                Err(InvalidBackend::NotFound)
            }
        }
    }
}
