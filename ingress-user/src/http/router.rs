//! The per-request path: read the current Snapshot, pick a route (or redirect, or the
//! default backend), rewrite headers and forward. The Snapshot is behind an `ArcSwap`, so
//! a new one takes effect for the next request and never touches open connections.
//!
//! Requests on a Gateway API listening address are routed by its HTTPRoutes
//! ([`gateway`]); on an Ingress listener, the Gateway routes of that same address and
//! port answer for the hosts they list, and the Ingress rules for every other host.
//!
//! An Ingress's annotations hook in here: response headers (`custom-headers`, CORS:
//! [`cors`](super::cors)), error pages from the default backend (`errors`) and request
//! copies (`mirror`).

mod errors;
mod gateway;
mod mirror;
mod passthrough;

use std::{
    future::Future,
    net::SocketAddr,
    pin::Pin,
    sync::Arc,
    task::{Context, Poll},
    time::Instant,
};

use arc_swap::ArcSwap;
use bytes::Bytes;
use http_body_util::BodyExt as _;
use hyper::{
    Request, Response, StatusCode, Version,
    body::Body as HttpBody,
    header::{self, HeaderValue},
    http::request::Parts,
    upgrade::OnUpgrade,
};
use regex::Regex;
use tracing::debug;

use super::{
    access_log::{self, AccessLog, Logged, Pending},
    admission,
    affinity::{self, Session},
    balance::{Balance, Balancer},
    body::{Body, BoxError, empty, full, limited},
    client_auth,
    cors::{CorsReply, ResponseEdits},
    headers::{Forwarded, ProxyHeaders, RequestIds, rewrite_request, wants_upgrade},
    host::request_host,
    limits::Limits,
    metrics::{DroppedHeaderLabels, ErrorLabels, Metrics, RequestLabels, RouteLabels},
    proxy::{Outgoing, Upstream},
    rescue::Error,
    tls::CertResolver,
    upload::{buffer, timed},
};
use crate::snapshot::{
    Snapshot,
    gateway::{ListenAddr, SniListener},
    policy::{Access, RoutePolicy},
    routes::Backend,
};

/// What the router knows about the client connection a request came on.
#[derive(Clone, Copy, Debug)]
pub struct Conn {
    /// The client (TCP peer).
    pub remote: SocketAddr,
    /// The local listener address the client connected to.
    pub local: SocketAddr,
    /// Whether the connection is TLS (the HTTPS listener).
    pub tls: bool,
    /// The listening socket that accepted it.
    pub socket: Socket,
    /// HTTPS on a Gateway address: the listener the TLS handshake's SNI selected.
    pub sni: SniListener,
}

/// Which kind of listening socket accepted a connection.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Socket {
    /// An Ingress listener (`--http-port`, `--https-port`). A Gateway listening address
    /// with the same address and port shares it: its hosts are routed by the Gateway.
    Ingress,
    /// A socket of its own for this Gateway listening address: only the Gateway routes.
    Gateway(ListenAddr),
}

/// Router settings that are not limits.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RouterOptions {
    /// Redirect plain-HTTP requests for TLS hosts to HTTPS (308).
    pub ssl_redirect: bool,
    /// The port HTTPS redirects point to (omitted from `Location` when 443); `None`
    /// disables redirects (no HTTPS listener).
    pub https_port: Option<u16>,
    /// Endpoint choice.
    pub balance: Balance,
    /// Limits and timeouts.
    pub limits: Limits,
    /// Forward header names with `_` (dropped by default, as nginx does: backends that
    /// read `_` and `-` alike (CGI, WSGI, PHP) could be fed spoofed forwarding headers).
    pub allow_underscores_in_headers: bool,
    /// `--bind-address`: where Gateway listeners without addresses listen (an
    /// unspecified address covers every local address).
    pub bind_ip: std::net::IpAddr,
}

/// Routes requests with the current Snapshot and forwards them.
#[derive(Debug)]
pub struct Router {
    snapshot: Arc<ArcSwap<Snapshot>>,
    balancer: Balancer,
    ids: RequestIds,
    metrics: Arc<Metrics>,
    opts: RouterOptions,
    resolver: Option<Arc<CertResolver>>,
    /// RequestMirror copies in flight (bounded so a slow mirror cannot pile them up).
    mirrors: Arc<std::sync::atomic::AtomicUsize>,
    log: Option<Arc<AccessLog>>,
}

impl Router {
    /// A router starting from `initial`.
    pub fn new(opts: RouterOptions, initial: Arc<Snapshot>, metrics: Arc<Metrics>) -> Self {
        Self {
            snapshot: Arc::new(ArcSwap::new(initial)),
            balancer: Balancer::new(opts.balance),
            ids: RequestIds::default(),
            metrics,
            opts,
            resolver: None,
            mirrors: Arc::default(),
            log: None,
        }
    }

    /// Writes a line per request to `log` from now on.
    pub fn set_access_log(&mut self, log: Arc<AccessLog>) {
        self.log = Some(log);
    }

    /// The swap cell the TLS resolver reads certificates from.
    pub fn snapshot_cell(&self) -> Arc<ArcSwap<Snapshot>> {
        Arc::clone(&self.snapshot)
    }

    /// Lets the router prune the resolver's key cache when Snapshots change.
    pub fn set_resolver(&mut self, resolver: Arc<CertResolver>) {
        self.resolver = Some(resolver);
    }

    /// Makes `snapshot` the one the next request sees. Open connections are unaffected.
    pub fn publish(&self, snapshot: Arc<Snapshot>) {
        self.snapshot.store(snapshot);
        self.balancer.reset();
        if let Some(r) = &self.resolver {
            r.prune();
        }
        debug!("new snapshot published to the HTTP router");
    }

    /// The Snapshot in force.
    pub fn snapshot(&self) -> Arc<Snapshot> {
        self.snapshot.load_full()
    }

    /// The limits in force.
    pub fn limits(&self) -> &Limits {
        &self.opts.limits
    }

    /// The metrics this router updates.
    pub fn metrics(&self) -> &Arc<Metrics> {
        &self.metrics
    }

    /// Answers one request, forwarding through `upstream` (the serving worker's pool).
    /// Never fails: every error becomes a response here.
    ///
    /// Routing runs now, before the returned future is first polled; only forwarding is
    /// left to it. So the future hyper keeps per request is a pointer and a response
    /// rather than a state machine holding the whole request.
    ///
    /// Generic over the request body: hyper's connections pass [`Incoming`](hyper::body::Incoming),
    /// the HTTP/1.1 fast path ([`h1`](super::h1)) an empty body.
    pub fn handle<B>(
        self: &Arc<Self>,
        req: Request<B>,
        conn: Conn,
        upstream: &Arc<Upstream>,
    ) -> Handled
    where
        B: HttpBody<Data = Bytes> + Send + Sync + 'static,
        B::Error: Into<BoxError>,
    {
        let snapshot = self.snapshot.load();
        let started = Instant::now();
        // Only with an access log: the request line is copied before routing rewrites it.
        let mut pending = self.log.as_ref().map(|_| {
            Pending::new(
                conn.remote,
                req.method(),
                req.uri(),
                req.version(),
                req.headers(),
            )
        });
        // Kept for `enable-cors`, which answers admitted origins whatever responds.
        let origin = req.headers().get(header::ORIGIN).cloned();
        match self.route(&snapshot, req, conn) {
            Routed::Local(backend, result) => {
                if let Some(p) = pending.as_mut() {
                    p.backend.clone_from(&backend);
                }
                let mut resp = self.finish(backend.as_deref(), result, pending);
                if let Some(edits) = backend
                    .as_deref()
                    .and_then(|b| ResponseEdits::of(b.policy.as_ref(), origin.as_ref()))
                {
                    edits.apply(resp.headers_mut());
                }
                Handled::Ready(Some(resp))
            }
            Routed::Forward {
                backend,
                parts,
                body,
                extra,
                upgrade,
                gateway,
                session,
                admission,
            } => {
                let router = Arc::clone(self);
                let upstream = Arc::clone(upstream);
                if let Some(p) = pending.as_mut() {
                    p.backend = Some(Arc::clone(&backend));
                    p.request_id = access_log::request_id(&parts.headers, &extra);
                }
                if let Some(gw) = gateway {
                    return Handled::Forwarding(Box::pin(async move {
                        let fwd = gateway::Forward {
                            backend,
                            parts,
                            body,
                            extra,
                            upgrade,
                        };
                        router
                            .forward_gateway(&upstream, fwd, *gw, pending, started)
                            .await
                    }));
                }
                let edits = ResponseEdits::of(backend.policy.as_ref(), origin.as_ref());
                let pages = errors::ErrorPages::of(
                    backend.policy.as_ref(),
                    snapshot.http.default_backend(),
                );
                Handled::Forwarding(Box::pin(async move {
                    let slot = match admission.map(|a| a.settle()) {
                        None => None,
                        Some(settle) => match Box::pin(settle).await {
                            Ok(slot) => slot,
                            Err(e) => return router.finish(Some(&backend), Err(e), pending),
                        },
                    };
                    if let Some(pages) = pages.as_deref()
                        && pages.replaces_unserved(&backend)
                    {
                        let page =
                            router.error_page(&upstream, pages, 503, &backend, &parts, &extra);
                        let page = Box::pin(page).await;
                        let mut resp = router.finish(Some(&backend), Ok(page), pending);
                        if let Some(edits) = &edits {
                            edits.apply(resp.headers_mut());
                        }
                        return resp;
                    }
                    let size = backend
                        .policy()
                        .client_body_buffer_size
                        .unwrap_or(router.opts.limits.client_body_buffer_size);
                    // Boxed: most requests have no body, and inline the read would grow
                    // every request's future.
                    let read = if let Some(to) = &backend.policy().mirror_backend {
                        let policy = backend.policy();
                        let read = router
                            .mirror_ingress(&upstream, policy, to, &parts, &extra, body, size);
                        Box::pin(read).await
                    } else if body.is_end_stream() {
                        Ok(body)
                    } else {
                        Box::pin(buffer(body, size)).await
                    };
                    let body = match read {
                        Ok(body) => body,
                        Err(e) => {
                            let e = Error::from_request_body(e);
                            let mut resp = router.finish(Some(&backend), Err(e), pending);
                            if let Some(edits) = &edits {
                                edits.apply(resp.headers_mut());
                            }
                            return resp;
                        }
                    };
                    let out = Outbound {
                        head: Outgoing {
                            parts: &parts,
                            extra: &extra,
                            sticky: None,
                        },
                        body,
                        upgrade,
                        session,
                    };
                    let mut resp = router
                        .send(&upstream, &backend, out, pending, started)
                        .await;
                    if let Some(pages) = pages.as_deref()
                        && pages.intercepts(resp.status().as_u16())
                    {
                        let code = resp.status().as_u16();
                        drop(resp);
                        let page =
                            router.error_page(&upstream, pages, code, &backend, &parts, &extra);
                        resp = Box::pin(page).await;
                    }
                    if let Some(edits) = &edits {
                        edits.apply(resp.headers_mut());
                    }
                    admission::hold(resp, slot)
                }))
            }
        }
    }

    /// Forwards a routed request (its body read as far as it will be) to `backend`, records
    /// its latency and what the access log needs, and answers.
    async fn send(
        &self,
        upstream: &Upstream,
        backend: &Backend,
        out: Outbound<'_>,
        mut pending: Option<Box<Pending>>,
        started: Instant,
    ) -> Response<Body> {
        let Outbound {
            mut head,
            body,
            upgrade,
            session,
        } = out;
        // `affinity: cookie`: the endpoint the session cookie holds the request to (boxed:
        // kept across the forwarding, and one pointer without affinity).
        let sticky = session.and_then(|s| {
            let aff = backend.policy().affinity()?;
            let endpoints = Arc::clone(&backend.endpoints.load());
            let plan = affinity::plan(aff, &s, &endpoints, &self.balancer);
            Some(Box::new((aff, s, plan, endpoints)))
        });
        head.sticky = sticky.as_ref().and_then(|held| held.2.target);
        // The upstream time is the access log's alone: no clock read without it.
        let forwarded = pending.is_some().then(Instant::now);
        let mut tried = None;
        let mut result = upstream
            .forward(
                &self.balancer,
                &self.metrics,
                backend,
                head,
                body,
                upgrade,
                &mut tried,
            )
            .await;
        backend
            .latency
            .get(&self.metrics.request_duration, || RouteLabels {
                ingress: Arc::clone(&backend.names.0),
                service: Arc::clone(&backend.names.1),
            })
            .observe(started.elapsed().as_secs_f64());
        if let (Some(held), Some(addr), Ok(resp)) = (&sticky, tried, result.as_mut())
            && let (aff, s, plan, endpoints) = &**held
            && let Some(cookie) =
                affinity::set_cookie(aff, s, plan, addr, endpoints, &self.balancer)
        {
            resp.headers_mut().append(header::SET_COOKIE, cookie);
        }
        if let Some(p) = pending.as_mut() {
            // No endpoint tried (none to try): no upstream time either.
            p.upstream_time = tried.and(forwarded).map(|f| f.elapsed());
            p.upstream_addr = tried;
            p.upstream_status = result.as_ref().ok().map(|r| r.status().as_u16());
        }
        self.finish(Some(backend), result, pending)
    }

    /// The response for `result`, counted.
    fn finish(
        &self,
        backend: Option<&Backend>,
        result: Result<Response<Body>, Error>,
        pending: Option<Box<Pending>>,
    ) -> Response<Body> {
        let resp = result.unwrap_or_else(|e| {
            debug!(error = %e, label = e.label(), "answering locally");
            self.metrics
                .errors
                .get_or_create(&ErrorLabels {
                    kind: e.label(),
                    fault: e.fault(),
                })
                .inc();
            e.to_response()
        });
        let status = resp.status().as_u16();
        let labels = |b: Option<&Backend>| RequestLabels {
            ingress: b.map(|b| Arc::clone(&b.names.0)).unwrap_or_default(),
            service: b.map(|b| Arc::clone(&b.names.1)).unwrap_or_default(),
            status,
        };
        match backend {
            Some(b) if status == 200 => b
                .ok_requests
                .get(&self.metrics.requests, || labels(Some(b)))
                .inc(),
            b => self.metrics.requests.get_or_create(&labels(b)).inc(),
        };
        match (pending, &self.log) {
            (Some(p), Some(log)) => {
                resp.map(|b| Logged::new(b, status, p, Arc::clone(log)).boxed())
            }
            _ => resp,
        }
    }

    fn route<B>(&self, snapshot: &Snapshot, req: Request<B>, conn: Conn) -> Routed
    where
        B: HttpBody<Data = Bytes> + Send + Sync + 'static,
        B::Error: Into<BoxError>,
    {
        let host_value = match request_host(req.version(), req.uri(), req.headers()) {
            Ok(host) => host,
            Err(e) => return Routed::Local(None, Err(e.into())),
        };
        // Validated as `host[:port]` in visible ASCII, so this never fails.
        let host = host_value
            .as_ref()
            .and_then(|h| h.to_str().ok())
            .unwrap_or("");
        let host = strip_port(host);
        if !snapshot.gateway.ports.is_empty() || conn.socket != Socket::Ingress {
            match gateway::select(&snapshot.gateway, conn, self.opts.bind_ip, host) {
                gateway::Select::Routes(routes) if !routes.sni_allows(conn.sni, host) => {
                    return Routed::Local(None, Err(Error::NoRoute));
                }
                gateway::Select::Routes(routes) => {
                    return self.route_gateway(routes, req, conn, host_value.as_ref(), host);
                }
                gateway::Select::NotFound => return Routed::Local(None, Err(Error::NoRoute)),
                gateway::Select::Ingress => {}
            }
        }
        let path = req.uri().path();

        let matched = snapshot.http.route(host, path);
        let tls_host = matched.map_or_else(|| snapshot.http.is_tls_host(host), |m| m.tls);
        // The annotations of the Ingress whose path matched (none for the default backend).
        let policy = matched.map(|m| m.backend.policy());
        // app-root first: ingress-nginx answers it in the server block, before the
        // location's redirect and access checks.
        if let Some(root) = policy.and_then(|p| p.app_root.as_deref())
            && path == "/"
        {
            let scheme = if conn.tls { "https" } else { "http" };
            let authority = host_value
                .as_ref()
                .and_then(|h| h.to_str().ok())
                .unwrap_or(host);
            let location = format!("{scheme}://{authority}{root}");
            return Routed::Local(matched.map(|m| Arc::clone(m.backend)), found(&location));
        }
        // permanent-/temporal-redirect: nginx's `return` in the location's rewrite phase,
        // before the HTTPS redirect (rewrite_by_lua, later in that phase) and access.
        if let Some((code, url)) = policy.and_then(RoutePolicy::fixed_redirect) {
            return Routed::Local(
                matched.map(|m| Arc::clone(m.backend)),
                fixed_redirect(code, url),
            );
        }
        // An admitted CORS preflight: answered by nginx's `return 204` in the rewrite
        // phase, so before the HTTPS redirect and the access checks.
        if let Some(resp) = policy
            .and_then(|p| CorsReply::of(p, req.headers().get(header::ORIGIN)))
            .and_then(|c| c.preflight(req.method()))
        {
            return Routed::Local(matched.map(|m| Arc::clone(m.backend)), Ok(resp));
        }
        let redirects = policy.map_or(tls_host && self.opts.ssl_redirect, |p| {
            p.redirects(tls_host, self.opts.ssl_redirect)
        });
        if let Some(port) = self.opts.https_port.filter(|_| !conn.tls && redirects) {
            return Routed::Local(
                matched.map(|m| Arc::clone(m.backend)),
                redirect(host, port, &req),
            );
        }
        // auth-tls: the host's client certificate (nginx checks it before any phase).
        let pass_cert = match client_auth::check_request(snapshot, host, conn.tls, req.extensions())
        {
            Ok(pass) => pass,
            Err(resp) => return Routed::Local(matched.map(|m| Arc::clone(m.backend)), Ok(*resp)),
        };
        // Request limits: nginx's preaccess phase, after the rewrite phase (redirects) and
        // before the access phase (source ranges, authentication).
        let slot = match policy.and_then(|p| p.rate_limit.as_ref()) {
            None => None,
            Some(zone) => match admission::limit(zone, conn.remote.ip(), &self.opts.limits) {
                Ok(slot) => slot,
                Err(e) => return Routed::Local(matched.map(|m| Arc::clone(m.backend)), Err(e)),
            },
        };
        // Source ranges are checked after the redirect, as nginx's access phase comes
        // after the rewrite phase where ingress-nginx redirects.
        match policy.map_or(Access::Allowed, |p| p.access(conn.remote.ip())) {
            Access::Allowed => {}
            refused => {
                let e = if refused == Access::Forbidden {
                    Error::Forbidden
                } else {
                    Error::LocationDenied
                };
                return Routed::Local(matched.map(|m| Arc::clone(m.backend)), Err(e));
            }
        }
        // Then basic authentication (`satisfy all`: after allow/deny).
        let verify = match policy.and_then(|p| p.basic_auth.as_deref()) {
            None => None,
            Some(auth) => match admission::authenticate(auth, req.headers()) {
                Ok(admission::Auth::Pass) => None,
                Ok(admission::Auth::Verify(v)) => Some(v),
                Err(e) => return Routed::Local(matched.map(|m| Arc::clone(m.backend)), Err(e)),
            },
        };
        let Some(mut backend) = matched
            .map(|m| Arc::clone(m.backend))
            .or_else(|| snapshot.http.default_backend().cloned())
        else {
            return Routed::Local(None, Ok(builtin_default(path)));
        };
        // A canary Ingress's alternative backend, by header, cookie or weight.
        if let Some(m) = matched
            && let Some(canary) = &m.backend.canary
            && canary.chooses(m.backend, req.headers(), |n| self.balancer.draw(n))
        {
            debug!(service = %canary.backend.service, "routed to the canary");
            backend = Arc::clone(&canary.backend);
        }
        let session = matched.and_then(|m| {
            let aff = backend.policy().affinity()?;
            Some(Box::new(Session::new(aff, req.headers(), m.path, conn.tls)))
        });

        // Body limit (the route's proxy-body-size, else --max-body-bytes).
        let global = self.opts.limits.max_body_bytes;
        let limit = policy.map_or(global, |p| p.body_limit(global));
        let mut out = match self.prepare(req, conn, host_value.as_ref(), limit) {
            Ok(out) => out,
            Err(e) => return Routed::Local(Some(backend), Err(e)),
        };
        pass_cert.apply(&mut out.parts.headers);
        if let Some(m) = matched {
            let p = m.backend.policy();
            if let Some(prefix) = &p.x_forwarded_prefix
                && let Ok(v) = HeaderValue::try_from(prefix.as_str())
            {
                out.parts.headers.insert(X_FORWARDED_PREFIX.clone(), v);
            }
            if let (Some(target), Some(re)) = (&p.rewrite_target, m.regex)
                && p.rewrites(m.path)
                && let Some(uri) = rewrite(re, target, &out.parts.uri)
            {
                out.parts.uri = uri;
            }
            if let Some(vhost) = &p.upstream_vhost
                && let Ok(v) = HeaderValue::try_from(vhost.as_str())
            {
                out.parts.headers.insert(header::HOST, v);
            }
        }
        Routed::Forward {
            backend,
            parts: out.parts,
            body: out.body,
            extra: out.extra,
            upgrade: out.upgrade,
            gateway: None,
            session,
            admission: admission::Pending::new(slot, verify),
        }
    }

    /// The request taken apart for forwarding: a declared body over `limit` refused up
    /// front (413) and a streamed one capped; the upgrade taken; hop-by-hop headers
    /// dropped and the forwarding lines built; `Host` set to the one host routing used.
    fn prepare<B>(
        &self,
        mut req: Request<B>,
        conn: Conn,
        host_value: Option<&HeaderValue>,
        limit: Option<u64>,
    ) -> Result<Prepared, Error>
    where
        B: HttpBody<Data = Bytes> + Send + Sync + 'static,
        B::Error: Into<BoxError>,
    {
        if let (Some(limit), Some(len)) = (limit, req.body().size_hint().exact())
            && len > limit
        {
            return Err(Error::BodyTooLarge { limit });
        }
        let upgrade = (req.version() <= Version::HTTP_11 && wants_upgrade(req.headers()))
            .then(|| hyper::upgrade::on(&mut req));

        let (mut parts, body) = req.into_parts();
        // Most requests have no body: the empty stand-in is a zero-sized box, no allocation.
        let body: Body = match limit {
            _ if body.is_end_stream() => empty(),
            Some(limit) => timed(limited(body, limit), self.opts.limits.client_body_timeout),
            None => timed(
                body.map_err(Into::into).boxed(),
                self.opts.limits.client_body_timeout,
            ),
        };
        let (extra, underscored) = rewrite_request(
            &mut parts.headers,
            upgrade.is_some(),
            !self.opts.allow_underscores_in_headers,
            &Forwarded {
                client: conn.remote.ip(),
                proto: if conn.tls { "https" } else { "http" },
                host: host_value,
                port: conn.local.port(),
            },
            &self.ids,
        );
        if underscored > 0 {
            debug!(remote = %conn.remote, count = underscored, "dropped request headers with '_' in the name");
            self.metrics
                .headers_dropped
                .get_or_create(&DroppedHeaderLabels {
                    reason: "underscore",
                })
                .inc_by(underscored);
        }
        // The upstream gets the one host routing used: HTTP/2 and absolute-form requests
        // may have no `Host` line, or (absolute-form) one the target overrides. Compared
        // first, as `insert` would grow a map sized for the client's headers.
        if let Some(h) = host_value
            && parts.headers.get(header::HOST) != Some(h)
        {
            parts.headers.insert(header::HOST, h.clone());
        }
        Ok(Prepared {
            parts,
            body,
            extra,
            upgrade,
        })
    }
}

/// A request ready to forward (see [`Router::prepare`]).
struct Prepared {
    parts: Parts,
    body: Body,
    extra: ProxyHeaders,
    upgrade: Option<OnUpgrade>,
}

/// A routed request as it goes upstream: the head, the body, the client's upgrade.
struct Outbound<'a> {
    head: Outgoing<'a>,
    body: Body,
    upgrade: Option<OnUpgrade>,
    session: Option<Box<Session>>,
}

/// Where [`Router::route`] sends a request.
enum Routed {
    /// Answered here (redirect, default backend, refusal); the backend it matched, if any.
    Local(Option<Arc<Backend>>, Result<Response<Body>, Error>),
    /// To be forwarded, rewritten, with the header lines the proxy adds.
    Forward {
        backend: Arc<Backend>,
        parts: Parts,
        body: Body,
        extra: ProxyHeaders,
        upgrade: Option<OnUpgrade>,
        /// What a Gateway rule does besides forwarding (boxed: one pointer for Ingress).
        gateway: Option<Box<gateway::After>>,
        /// `affinity: cookie`: the request's session (boxed: one pointer without).
        session: Option<Box<Session>>,
        /// A password check still to run and a `limit-connections` slot to hold (Ingress
        /// routes with `auth-type` or `limit-connections` only).
        admission: Option<Box<admission::Pending>>,
    },
}

/// The response to one request: at once, or when forwarding ends.
pub enum Handled {
    /// Answered without forwarding (taken on the first poll).
    Ready(Option<Response<Body>>),
    /// Forwarding.
    Forwarding(Pin<Box<dyn Future<Output = Response<Body>> + Send>>),
}

impl Future for Handled {
    type Output = Response<Body>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Response<Body>> {
        match self.get_mut() {
            Self::Ready(resp) => Poll::Ready(resp.take().expect("Handled polled after completion")),
            Self::Forwarding(fut) => fut.as_mut().poll(cx),
        }
    }
}

/// The built-in default backend: `/healthz` is 200, everything else 404.
fn builtin_default(path: &str) -> Response<Body> {
    if path == "/healthz" {
        let mut resp = Response::new(full("ok\n"));
        resp.headers_mut().insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static("text/plain; charset=utf-8"),
        );
        resp
    } else {
        Error::NoRoute.to_response()
    }
}

/// `308 Permanent Redirect` to the same host and path on HTTPS.
fn redirect<B>(host: &str, port: u16, req: &Request<B>) -> Result<Response<Body>, Error> {
    let path = req.uri().path_and_query().map_or("/", |pq| pq.as_str());
    let location = if port == 443 {
        format!("https://{host}{path}")
    } else {
        format!("https://{host}:{port}{path}")
    };
    let location = HeaderValue::try_from(location)
        .map_err(|_| Error::BadRequest("unusable redirect target"))?;
    let mut resp = Response::new(full("308 permanent redirect\n"));
    *resp.status_mut() = StatusCode::PERMANENT_REDIRECT;
    resp.headers_mut().insert(header::LOCATION, location);
    Ok(resp)
}

/// The `X-Forwarded-Prefix` header (`x-forwarded-prefix` annotation).
static X_FORWARDED_PREFIX: header::HeaderName =
    header::HeaderName::from_static("x-forwarded-prefix");

/// `302 Found` to `location` (`app-root`).
/// A `permanent-redirect` / `temporal-redirect` answer: `code` to `url`, as written.
fn fixed_redirect(code: u16, url: &str) -> Result<Response<Body>, Error> {
    let location =
        HeaderValue::try_from(url).map_err(|_| Error::BadRequest("unusable redirect target"))?;
    let status = StatusCode::from_u16(code).unwrap_or(StatusCode::MOVED_PERMANENTLY);
    let mut resp = Response::new(empty());
    *resp.status_mut() = status;
    resp.headers_mut().insert(header::LOCATION, location);
    Ok(resp)
}

fn found(location: &str) -> Result<Response<Body>, Error> {
    let location = HeaderValue::try_from(location)
        .map_err(|_| Error::BadRequest("unusable redirect target"))?;
    let mut resp = Response::new(full("302 found\n"));
    *resp.status_mut() = StatusCode::FOUND;
    resp.headers_mut().insert(header::LOCATION, location);
    Ok(resp)
}

/// nginx's `rewrite "(?i)PATH" TARGET break;` as ingress-nginx writes it: the request path
/// becomes `target` with `$1`..`$9` replaced by the captures of the rule's regex (a
/// missing group is empty); the query is kept, after the target's own if it has one, and
/// dropped if the target ends with `?`. `None` if the regex does not match (it matched
/// when routing) or the result is not a usable URI.
fn rewrite(re: &Regex, target: &str, uri: &hyper::Uri) -> Option<hyper::Uri> {
    let caps = re.captures(uri.path())?;
    let mut out = String::with_capacity(target.len() + uri.path().len());
    let mut chars = target.char_indices().peekable();
    while let Some((_, c)) = chars.next() {
        match (c, chars.peek()) {
            ('$', Some(&(_, d))) if d.is_ascii_digit() => {
                chars.next();
                let n = d as usize - '0' as usize;
                out.push_str(caps.get(n).map_or("", |m| m.as_str()));
            }
            _ => out.push(c),
        }
    }
    match (out.strip_suffix('?'), uri.query()) {
        (Some(bare), _) => out = bare.to_owned(),
        (None, Some(q)) => {
            out.push(if out.contains('?') { '&' } else { '?' });
            out.push_str(q);
        }
        (None, None) => {}
    }
    let mut parts = uri.clone().into_parts();
    parts.path_and_query = Some(out.parse().ok()?);
    hyper::Uri::from_parts(parts).ok()
}

/// `host[:port]` → `host`, keeping IPv6 literals (`[::1]:80` → `[::1]`).
fn strip_port(host: &str) -> &str {
    if host.starts_with('[') {
        return host.find(']').map_or(host, |i| &host[..=i]);
    }
    match host.rsplit_once(':') {
        Some((h, port)) if port.bytes().all(|b| b.is_ascii_digit()) => h,
        _ => host,
    }
}

#[cfg(test)]
mod tests {
    use regex::RegexBuilder;

    use super::*;

    #[test]
    fn port_is_stripped_from_hosts_but_not_from_ipv6_literals() {
        for (given, want) in [
            ("foo.com", "foo.com"),
            ("foo.com:8080", "foo.com"),
            ("[::1]:80", "[::1]"),
            ("[::1]", "[::1]"),
            ("", ""),
        ] {
            assert_eq!(strip_port(given), want, "{given}");
        }
    }

    #[test]
    fn redirect_keeps_host_path_and_query_and_omits_port_443() {
        let req = Request::get("http://a.test/x/y?q=1").body(()).unwrap();
        let resp = redirect("a.test", 443, &req).unwrap();
        assert_eq!(resp.status(), StatusCode::PERMANENT_REDIRECT);
        assert_eq!(resp.headers()[header::LOCATION], "https://a.test/x/y?q=1");
        let resp = redirect("a.test", 8443, &req).unwrap();
        assert_eq!(
            resp.headers()[header::LOCATION],
            "https://a.test:8443/x/y?q=1"
        );
    }

    #[test]
    fn rewrite_substitutes_captures_and_keeps_the_query_as_nginx() {
        // (path regex, target, request, rewritten): ingress-nginx's documented examples
        // (rewrite.go, the annotation reference) and nginx's query rules.
        for (path, target, request, want) in [
            ("/something(/|$)(.*)", "/$2", "/something", "/"),
            ("/something(/|$)(.*)", "/$2", "/something/", "/"),
            ("/something(/|$)(.*)", "/$2", "/something/new", "/new"),
            (
                "/something(/|$)(.*)",
                "/$2",
                "/SomeThing/new?a=1",
                "/new?a=1",
            ),
            (
                "/foo/bar/(.+)",
                "/new/backend/$1",
                "/foo/bar/bar",
                "/new/backend/bar",
            ),
            ("/something", "/", "/something/else", "/"),
            ("/foo.+", "/new/backend", "/foo/bar", "/new/backend"),
            ("/a/(.*)", "/b?x=$1", "/a/c?y=2", "/b?x=c&y=2"),
            ("/a/(.*)", "/b/$1?", "/a/c?y=2", "/b/c"),
            ("/a/(.*)", "/b/$3", "/a/c", "/b/"),
            ("/a(.*)", "/b$1$$", "/a/c", "/b/c$$"),
        ] {
            let re = RegexBuilder::new(&format!("^{path}"))
                .case_insensitive(true)
                .build()
                .unwrap();
            let uri: hyper::Uri = request.parse().unwrap();
            let got = rewrite(&re, target, &uri).map(|u| u.to_string());
            assert_eq!(got.as_deref(), Some(want), "{path} {target} {request}");
        }
    }

    #[test]
    fn builtin_default_backend_answers_healthz_and_404() {
        assert_eq!(builtin_default("/healthz").status(), StatusCode::OK);
        assert_eq!(builtin_default("/").status(), StatusCode::NOT_FOUND);
        assert_eq!(
            builtin_default("/healthz/x").status(),
            StatusCode::NOT_FOUND
        );
    }
}
