//! Gateway API routing of one request: which listening address's routes apply, the
//! HTTPRoute rule, its filters (and its chosen backendRef's), then forwarding with the
//! response header edits and mirrors.
//!
//! - Route: [`GatewayHosts::route`](crate::snapshot::gateway::GatewayHosts::route); no
//!   matching rule is 404.
//! - Backend: by weight ([`pick_weighted`]) with a per-rule counter shared by the workers;
//!   no backendRef with a weight, or a chosen one that is invalid, is 500; a Service with
//!   no endpoints is 503 as for Ingress.
//! - Filters, rule's then the backendRef's, each in order: RequestHeaderModifier,
//!   URLRewrite (path and `Host` upstream), RequestRedirect (answered here, nothing is
//!   forwarded), ResponseHeaderModifier (on the answer, forwarded or redirect),
//!   RequestMirror (below).
//! - Mirrors are fire and forget: a copy of the upstream request goes to one endpoint of
//!   the mirror's Service from a task of its own; its answer is read and dropped, its
//!   failure only counted (`http_mirror_requests{outcome="failed"}`). A request body is
//!   copied only when it is read whole anyway (at most `--client-body-buffer-size`
//!   bytes); a longer body streams to the main backend only and the copy is skipped
//!   (`outcome="skipped_body"`). At most [`MAX_MIRRORS`] copies per process are in flight.

use std::{
    net::IpAddr,
    sync::{
        Arc,
        atomic::{AtomicUsize, Ordering},
    },
    time::Instant,
};

use bytes::Bytes;
use http_body_util::BodyExt as _;
use hyper::{
    Request, Response, StatusCode, Uri,
    body::Body as HttpBody,
    header::{self, HeaderValue},
    http::request::Parts,
    upgrade::OnUpgrade,
};
use tracing::debug;

use super::{Conn, Outbound, Routed, Router, Socket};
use crate::http::access_log::Pending;
use crate::{
    http::{
        body::{Body, BoxError, empty, full},
        headers::ProxyHeaders,
        metrics::MirrorLabels,
        proxy::{Outgoing, Upstream},
        rescue::Error,
        upload::{Buffered, buffer, buffer_whole},
    },
    snapshot::{
        gateway::{
            Filter, GatewayPlane, ListenAddr, Mirror, PathRewrite, PortRoutes, Redirect,
            RuleAction, SniListener, filters::RedirectFrom, filters::pick_weighted,
        },
        routes::Backend,
    },
};

/// Mirrored copies in flight at most; more are dropped and counted.
pub(crate) const MAX_MIRRORS: usize = 1024;

/// Whose routes answer a request.
#[derive(Debug)]
pub(super) enum Select<'a> {
    /// This Gateway listening address's: it lists the request's host.
    Routes(&'a PortRoutes),
    /// Nobody's: a Gateway-only socket whose routes do not list the host (404).
    NotFound,
    /// The Ingress rules': an Ingress listener, and no Gateway on its address and port
    /// lists the host.
    Ingress,
}

/// Which routes answer a request for `host` on `conn`: those of the address the socket
/// was opened for, else of the address the client connected to, else of the Gateways
/// without addresses when `bind_ip` (`--bind-address`) covers it. The last two matter
/// where sockets overlap: an Ingress listener shares its socket with Gateway addresses on
/// its port, and a socket for one address sits beside a socket on every address (the
/// kernel hands the connection to the more specific one). A Gateway-only socket whose
/// candidates do not list the host answers 404; an Ingress one leaves it to Ingress.
pub(super) fn select<'a>(
    plane: &'a GatewayPlane,
    conn: Conn,
    bind_ip: IpAddr,
    host: &str,
) -> Select<'a> {
    let lists_host = |r: &&'a Arc<PortRoutes>| r.hosts.lookup(host).is_some();
    let found = candidates(conn, bind_ip).find_map(|a| plane.ports.get(&a).filter(lists_host));
    match (found, conn.socket) {
        (Some(r), _) => Select::Routes(r),
        (None, Socket::Gateway(_)) => Select::NotFound,
        (None, Socket::Ingress) => Select::Ingress,
    }
}

/// The listening addresses whose routes may answer on `conn`, in the order [`select`]
/// tries them.
pub(super) fn candidates(conn: Conn, bind_ip: IpAddr) -> impl Iterator<Item = ListenAddr> {
    let port = conn.local.port();
    let local = conn.local.ip().to_canonical();
    let opened = match conn.socket {
        Socket::Gateway(addr) => Some(addr),
        Socket::Ingress => None,
    };
    let here = ListenAddr {
        ip: Some(local),
        port,
    };
    let bind =
        (bind_ip.is_unspecified() || bind_ip == local).then_some(ListenAddr { ip: None, port });
    opened.into_iter().chain([here]).chain(bind)
}

impl Router {
    /// The Gateway HTTPS listener a connection's SNI selects, on the addresses
    /// [`select`] would try for it; `Unchecked` where no Gateway terminates TLS.
    pub(crate) fn sni_listener(&self, conn: Conn, sni: &str) -> SniListener {
        let snapshot = self.snapshot();
        let plane = &snapshot.gateway;
        if plane.ports.is_empty() {
            return SniListener::Unchecked;
        }
        candidates(conn, self.opts.bind_ip)
            .find_map(|a| plane.ports.get(&a).filter(|p| p.tls))
            .map_or(SniListener::Unchecked, |p| p.listener_for(sni))
    }
}

/// What the forwarding half of a Gateway request needs besides the request.
pub(super) struct After {
    /// The matched rule's action.
    action: Arc<RuleAction>,
    /// The index of the chosen backendRef.
    backend: usize,
}

impl After {
    /// The rule's filters, then the chosen backendRef's.
    fn filters(&self) -> impl Iterator<Item = &Filter> {
        let backend = self.action.backends.get(self.backend);
        self.action
            .filters
            .iter()
            .chain(backend.into_iter().flat_map(|b| &b.filters))
    }

    fn edit_response(&self, resp: &mut Response<Body>) {
        for f in self.filters() {
            if let Filter::ResponseHeaders(edits) = f {
                edits.apply(resp.headers_mut());
            }
        }
    }
}

/// A request ready to forward to a Gateway rule's backend.
pub(super) struct Forward {
    pub(super) backend: Arc<Backend>,
    pub(super) parts: Parts,
    pub(super) body: Body,
    pub(super) extra: ProxyHeaders,
    pub(super) upgrade: Option<OnUpgrade>,
}

/// What the filters of a rule and its backendRef decide, the last of each kind winning.
#[derive(Default)]
struct Plan<'a> {
    redirect: Option<&'a Redirect>,
    rewrite_host: Option<&'a str>,
    rewrite_path: Option<&'a PathRewrite>,
}

impl<'a> Plan<'a> {
    fn read(&mut self, filters: &'a [Filter]) {
        for f in filters {
            match f {
                Filter::Redirect(r) => self.redirect = Some(r),
                Filter::Rewrite(r) => {
                    if let Some(h) = &r.hostname {
                        self.rewrite_host = Some(h);
                    }
                    if let Some(p) = &r.path {
                        self.rewrite_path = Some(p);
                    }
                }
                Filter::RequestHeaders(_) | Filter::ResponseHeaders(_) | Filter::Mirror(_) => {}
            }
        }
    }
}

impl Router {
    /// Routes a request with the Gateway routes of its listening address.
    pub(super) fn route_gateway<B>(
        &self,
        routes: &PortRoutes,
        req: Request<B>,
        conn: Conn,
        host_value: Option<&HeaderValue>,
        host: &str,
    ) -> Routed
    where
        B: HttpBody<Data = Bytes> + Send + Sync + 'static,
        B::Error: Into<BoxError>,
    {
        let uri = req.uri();
        let Some(rule) =
            routes
                .hosts
                .route(host, req.method(), uri.path(), uri.query(), req.headers())
        else {
            return Routed::Local(None, Err(Error::NoRoute));
        };
        let action = &rule.action;
        let mut plan = Plan::default();
        plan.read(&action.filters);
        // An HTTP/1.0 request may have no host: the address it came to stands in.
        let local_host;
        let host = if host.is_empty() {
            local_host = match conn.local.ip().to_canonical() {
                IpAddr::V6(ip) => format!("[{ip}]"),
                ip => ip.to_string(),
            };
            local_host.as_str()
        } else {
            host
        };
        let redirect_from = RedirectFrom {
            scheme: if conn.tls { "https" } else { "http" },
            host,
            port: conn.local.port(),
            path: req.uri().path(),
            query: req.uri().query(),
            matched: &rule.matches.path,
        };
        if let Some(r) = plan.redirect {
            let after = After {
                action: Arc::clone(action),
                backend: usize::MAX,
            };
            return Routed::Local(None, redirect(r, &redirect_from, &after));
        }
        // The rule's counter is keyed by its action's address: a Snapshot holds it, and
        // publishing one restarts the counters.
        let turn = self.balancer.turn(Arc::as_ptr(action) as usize);
        let Some(index) = pick_weighted(&action.backends, turn) else {
            debug!(route = %rule.route, rule = rule.rule, "no backendRef with a weight");
            return Routed::Local(None, Err(Error::InvalidBackend));
        };
        let chosen = &action.backends[index];
        let backend = match &chosen.target {
            Ok(b) => Arc::clone(b),
            Err(why) => {
                debug!(route = %rule.route, rule = rule.rule, ?why, "chosen backendRef is invalid");
                return Routed::Local(None, Err(Error::InvalidBackend));
            }
        };
        plan.read(&chosen.filters);
        let after = After {
            action: Arc::clone(action),
            backend: index,
        };
        if let Some(r) = plan.redirect {
            return Routed::Local(Some(backend), redirect(r, &redirect_from, &after));
        }
        let new_path = plan
            .rewrite_path
            .map(|p| p.apply(req.uri().path(), &rule.matches.path));

        let limit = self.opts.limits.max_body_bytes;
        let mut out = match self.prepare(req, conn, host_value, limit) {
            Ok(out) => out,
            Err(e) => return Routed::Local(Some(backend), Err(e)),
        };
        for f in after.filters() {
            if let Filter::RequestHeaders(edits) = f {
                edits.apply(&mut out.parts.headers);
            }
        }
        if let Some(h) = plan.rewrite_host {
            match HeaderValue::try_from(h) {
                Ok(v) => {
                    out.parts.headers.insert(header::HOST, v);
                }
                Err(_) => debug!(host = h, "URLRewrite hostname is not a header value; kept"),
            }
        }
        if let Some(path) = new_path {
            match with_path(&out.parts.uri, &path) {
                Some(uri) => out.parts.uri = uri,
                None => debug!(%path, "URLRewrite path is not a URI path; kept"),
            }
        }
        Routed::Forward {
            backend,
            parts: out.parts,
            body: out.body,
            extra: out.extra,
            upgrade: out.upgrade,
            gateway: Some(Box::new(after)),
            session: None,
            admission: None,
        }
    }

    /// Forwards a routed Gateway request: mirrors first (spawned), then the backend; the
    /// response header edits go on whatever answers.
    pub(super) async fn forward_gateway(
        self: Arc<Self>,
        upstream: &Arc<Upstream>,
        fwd: Forward,
        after: After,
        pending: Option<Box<Pending>>,
        started: Instant,
    ) -> Response<Body> {
        let Forward {
            backend,
            parts,
            body,
            extra,
            upgrade,
        } = fwd;
        let mirrors: Vec<&Mirror> = after
            .filters()
            .filter_map(|f| match f {
                Filter::Mirror(m) => Some(m),
                _ => None,
            })
            .filter(|m| self.balancer.chance(m.percent))
            .collect();
        let size = self.opts.limits.client_body_buffer_size;
        let read = if mirrors.is_empty() {
            if body.is_end_stream() {
                Ok(body)
            } else {
                Box::pin(buffer(body, size)).await
            }
        } else {
            match Box::pin(buffer_whole(body, size)).await {
                Ok(Buffered::Whole(bytes)) => {
                    for m in &mirrors {
                        self.mirror(upstream, m, &parts, &extra, bytes.clone());
                    }
                    Ok(if bytes.is_empty() {
                        empty()
                    } else {
                        full(bytes)
                    })
                }
                Ok(Buffered::Streaming(body)) => {
                    for m in &mirrors {
                        self.count_mirror(m, "skipped_body");
                    }
                    Ok(body)
                }
                Err(e) => Err(e),
            }
        };
        let mut resp = match read {
            Ok(body) => {
                let out = Outbound {
                    head: Outgoing {
                        parts: &parts,
                        extra: &extra,
                        sticky: None,
                    },
                    body,
                    upgrade,
                    session: None,
                };
                self.send(upstream, &backend, out, pending, started).await
            }
            Err(e) => self.finish(Some(&backend), Err(Error::from_request_body(e)), pending),
        };
        after.edit_response(&mut resp);
        resp
    }

    pub(super) fn count_mirror(&self, m: &Mirror, outcome: &'static str) {
        self.metrics
            .mirrors
            .get_or_create(&MirrorLabels {
                service: Arc::clone(&m.backend.names.1),
                outcome,
            })
            .inc();
    }

    /// Sends a copy of the request to the mirror's backend from a task of its own.
    pub(super) fn mirror(
        self: &Arc<Self>,
        upstream: &Arc<Upstream>,
        m: &Mirror,
        parts: &Parts,
        extra: &ProxyHeaders,
        body: Bytes,
    ) {
        let Some(slot) = MirrorSlot::take(&self.mirrors) else {
            debug!(service = %m.backend.service, "too many mirrored requests in flight; copy dropped");
            return self.count_mirror(m, "dropped_busy");
        };
        let (mut head, ()) = Request::new(()).into_parts();
        head.method = parts.method.clone();
        head.uri = parts.uri.clone();
        head.version = parts.version;
        head.headers = parts.headers.clone();
        let extra = extra.clone();
        let router = Arc::clone(self);
        let upstream = Arc::clone(upstream);
        let backend = Arc::clone(&m.backend);
        let mirror = m.clone();
        let limits = &self.opts.limits;
        let deadline = limits.upstream_connect_timeout + limits.upstream_response_timeout;
        tokio::spawn(async move {
            let sent = tokio::time::timeout(deadline, async {
                let body = if body.is_empty() { empty() } else { full(body) };
                let out = Outgoing {
                    parts: &head,
                    extra: &extra,
                    sticky: None,
                };
                let resp = upstream
                    .forward(
                        &router.balancer,
                        &router.metrics,
                        &backend,
                        out,
                        body,
                        None,
                        &mut None,
                    )
                    .await?;
                // Read and drop the answer, so the connection can go back to the pool.
                let mut body = resp.into_body();
                while let Some(frame) = body.frame().await {
                    if frame.is_err() {
                        break;
                    }
                }
                Ok::<_, Error>(())
            })
            .await;
            let outcome = match sent {
                Ok(Ok(())) => "sent",
                Ok(Err(e)) => {
                    debug!(service = %backend.service, error = %e, "mirrored request failed");
                    "failed"
                }
                Err(_) => {
                    debug!(service = %backend.service, timeout = ?deadline, "mirrored request timed out");
                    "failed"
                }
            };
            router.count_mirror(&mirror, outcome);
            drop(slot);
        });
    }
}

/// One mirrored copy in flight; frees its place when dropped (also when the task is
/// cancelled with its runtime).
struct MirrorSlot(Arc<AtomicUsize>);

impl MirrorSlot {
    fn take(count: &Arc<AtomicUsize>) -> Option<Self> {
        if count.fetch_add(1, Ordering::AcqRel) >= MAX_MIRRORS {
            count.fetch_sub(1, Ordering::AcqRel);
            return None;
        }
        Some(Self(Arc::clone(count)))
    }
}

impl Drop for MirrorSlot {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::AcqRel);
    }
}

/// A RequestRedirect answer: the filter's status (302 if it is not a redirect status),
/// `Location`, and the response header edits of the rule.
fn redirect(r: &Redirect, from: &RedirectFrom<'_>, after: &After) -> Result<Response<Body>, Error> {
    let location = HeaderValue::try_from(r.location(from))
        .map_err(|_| Error::BadRequest("unusable redirect target"))?;
    let status = StatusCode::from_u16(r.status)
        .ok()
        .filter(StatusCode::is_redirection)
        .unwrap_or(StatusCode::FOUND);
    let mut resp = Response::new(empty());
    *resp.status_mut() = status;
    resp.headers_mut().insert(header::LOCATION, location);
    after.edit_response(&mut resp);
    Ok(resp)
}

/// `uri` with its path replaced and its query kept; `None` if the result is no URI.
fn with_path(uri: &Uri, path: &str) -> Option<Uri> {
    let pq = match uri.query() {
        Some(q) => format!("{path}?{q}"),
        None => path.to_owned(),
    };
    let mut parts = uri.clone().into_parts();
    parts.path_and_query = Some(pq.parse().ok()?);
    Uri::from_parts(parts).ok()
}

#[cfg(test)]
mod tests {
    use std::net::SocketAddr;

    use super::*;
    use crate::snapshot::gateway::{GatewayHosts, GatewayRule, PathMatch, RequestMatch};

    fn port_routes(host: &str) -> Arc<PortRoutes> {
        let mut hosts = GatewayHosts::default();
        let rule = Arc::new(GatewayRule {
            route: crate::snapshot::ObjectRef {
                kind: "HTTPRoute".into(),
                namespace: Some("default".into()),
                name: host.into(),
            },
            rule: 0,
            matches: RequestMatch {
                path: PathMatch::Prefix("/".into()),
                method: None,
                headers: Vec::new(),
                query: Vec::new(),
            },
            action: Arc::default(),
        });
        hosts.exact.insert(host.into(), vec![rule].into());
        Arc::new(PortRoutes {
            hosts,
            ..PortRoutes::default()
        })
    }

    fn conn(local: &str, socket: Socket) -> Conn {
        Conn {
            remote: "127.0.0.9:5000".parse().unwrap(),
            local: local.parse::<SocketAddr>().unwrap(),
            tls: false,
            socket,
            sni: SniListener::Unchecked,
        }
    }

    fn which(plane: &GatewayPlane, conn: Conn, host: &str) -> String {
        which_bound(plane, conn, "127.0.0.1", host)
    }

    fn which_bound(plane: &GatewayPlane, conn: Conn, bind: &str, host: &str) -> String {
        match select(plane, conn, bind.parse().unwrap(), host) {
            Select::Routes(r) => r.hosts.exact.keys().next().cloned().unwrap_or_default(),
            Select::NotFound => "404".into(),
            Select::Ingress => "ingress".into(),
        }
    }

    #[test]
    fn the_socket_and_host_decide_whose_routes_answer() {
        let at = |ip: Option<&str>, port| ListenAddr {
            ip: ip.map(|i| i.parse().unwrap()),
            port,
        };
        let mut plane = GatewayPlane::default();
        plane
            .ports
            .insert(at(Some("127.0.0.2"), 80), port_routes("two.test"));
        plane.ports.insert(at(None, 80), port_routes("bind.test"));
        plane
            .ports
            .insert(at(None, 8080), port_routes("other.test"));
        let gw2 = Socket::Gateway(at(Some("127.0.0.2"), 80));
        // (local address, socket, host, whose routes)
        for (local, socket, host, want) in [
            ("127.0.0.2:80", gw2, "two.test", "two.test"),
            ("127.0.0.2:80", gw2, "TWO.test:80", "two.test"),
            ("127.0.0.2:80", gw2, "bind.test", "404"),
            ("127.0.0.2:80", gw2, "", "404"),
            ("127.0.0.1:80", Socket::Ingress, "bind.test", "bind.test"),
            ("127.0.0.1:80", Socket::Ingress, "two.test", "ingress"),
            ("127.0.0.2:80", Socket::Ingress, "two.test", "two.test"),
            (
                "[::ffff:127.0.0.2]:80",
                Socket::Ingress,
                "two.test",
                "two.test",
            ),
            ("127.0.0.1:80", Socket::Ingress, "other.test", "ingress"),
            (
                "127.0.0.1:8080",
                Socket::Ingress,
                "other.test",
                "other.test",
            ),
        ] {
            assert_eq!(
                which(&plane, conn(local, socket), host),
                want,
                "{local} {socket:?} {host}"
            );
        }
        let gone = Socket::Gateway(at(Some("127.0.0.3"), 80));
        assert_eq!(which(&plane, conn("127.0.0.3:80", gone), "two.test"), "404");
    }

    #[test]
    fn a_specific_address_socket_falls_back_to_gateways_without_addresses_it_covers() {
        let at = |ip: Option<&str>, port| ListenAddr {
            ip: ip.map(|i| i.parse().unwrap()),
            port,
        };
        let mut plane = GatewayPlane::default();
        plane
            .ports
            .insert(at(Some("10.0.0.5"), 8080), port_routes("five.test"));
        plane.ports.insert(at(None, 8080), port_routes("all.test"));
        let five = Socket::Gateway(at(Some("10.0.0.5"), 8080));
        let all = Socket::Gateway(at(None, 8080));
        // (bind address, local address, socket, host, whose routes)
        for (bind, local, socket, host, want) in [
            ("0.0.0.0", "10.0.0.5:8080", five, "five.test", "five.test"),
            ("0.0.0.0", "10.0.0.5:8080", five, "all.test", "all.test"),
            ("0.0.0.0", "10.0.0.6:8080", all, "all.test", "all.test"),
            ("0.0.0.0", "10.0.0.6:8080", all, "five.test", "404"),
            (
                "0.0.0.0",
                "10.0.0.5:8080",
                Socket::Ingress,
                "all.test",
                "all.test",
            ),
            (
                "0.0.0.0",
                "10.0.0.5:8080",
                Socket::Ingress,
                "other.test",
                "ingress",
            ),
            ("10.0.0.9", "10.0.0.5:8080", five, "all.test", "404"),
            // One socket for both when `--bind-address` is the Gateway's address.
            ("10.0.0.5", "10.0.0.5:8080", five, "all.test", "all.test"),
            ("10.0.0.5", "10.0.0.5:8080", all, "five.test", "five.test"),
        ] {
            assert_eq!(
                which_bound(&plane, conn(local, socket), bind, host),
                want,
                "bind {bind}, {local} {socket:?} {host}"
            );
        }
    }

    #[test]
    fn rewritten_path_keeps_the_query_and_authority() {
        let uri: Uri = "http://a.test/old/x?q=1".parse().unwrap();
        assert_eq!(
            with_path(&uri, "/new/x").unwrap().to_string(),
            "http://a.test/new/x?q=1"
        );
        let uri: Uri = "/old".parse().unwrap();
        assert_eq!(with_path(&uri, "/").unwrap().to_string(), "/");
        assert!(with_path(&uri, "no slash and spaces").is_none());
    }
}
