//! Forwarding to upstream endpoints through the worker's HTTP/1.1 [`Client`]: endpoint
//! choice, one retry on another endpoint when connecting fails, the response timeout, and
//! tunnelling of upgraded connections.

use std::{net::SocketAddr, time::Duration};

use http_body_util::BodyExt as _;
use hyper::{Response, Version, body::Incoming, http::request::Parts, upgrade::OnUpgrade};
use hyper_util::rt::TokioIo;
use prometheus_client::metrics::gauge::Gauge;
use tokio::io::AsyncWriteExt as _;
use tracing::{debug, warn};

use super::{
    balance::{Balancer, Pick},
    body::{Body, BoxError, Holding, empty},
    client::{self, Client, Conn, Discards, Exchange, RequestHead, TlsTarget},
    h2c::{self, H2c},
    headers::strip_hop_by_hop,
    limits::Limits,
    metrics::{DiscardLabels, Metrics, ServiceLabels},
    rescue::Error,
    upload,
};
use crate::snapshot::{
    routes::{Backend, Protocol},
    upstream_tls::BackendProtocol,
};

/// One worker's way to upstreams: its connection pool, its h2c connections and the
/// response timeout.
#[derive(Debug)]
pub struct Upstream {
    client: Client,
    h2c: H2c,
    defaults: client::Timeouts,
    /// Failed upstream TLS handshakes, by Service.
    handshake_errors: prometheus_client::metrics::family::Family<
        ServiceLabels,
        prometheus_client::metrics::counter::Counter,
    >,
}

impl Upstream {
    /// An upstream side with the connect, response and idle timeouts of `limits`, counting
    /// pooled connections it discards in `metrics`.
    pub fn new(limits: &Limits, metrics: &Metrics) -> Self {
        let discarded = |reason| {
            metrics
                .upstream_discarded
                .get_or_create(&DiscardLabels { reason })
                .clone()
        };
        Self {
            client: Client::new(
                limits.upstream_connect_timeout,
                limits.upstream_response_timeout,
                limits.idle_timeout,
                Discards {
                    closed: discarded("closed"),
                    unsolicited_bytes: discarded("unsolicited_bytes"),
                    surplus_bytes: discarded("surplus_bytes"),
                },
            ),
            h2c: H2c::new(limits.upstream_connect_timeout, limits.idle_timeout),
            defaults: client::Timeouts {
                connect: limits.upstream_connect_timeout,
                read: limits.upstream_response_timeout,
                send: limits.upstream_response_timeout,
            },
            handshake_errors: metrics.upstream_tls_handshake_errors.clone(),
        }
    }

    /// The timeouts of a request to `backend`: its Ingress's `proxy-*-timeout`
    /// annotations over the flags. `None` when it has none (the client's defaults).
    fn timeouts(&self, backend: &Backend) -> Option<client::Timeouts> {
        let p = backend.policy();
        p.has_timeouts().then(|| client::Timeouts {
            connect: p.proxy_connect_timeout.unwrap_or(self.defaults.connect),
            read: p.proxy_read_timeout.unwrap_or(self.defaults.read),
            send: p.proxy_send_timeout.unwrap_or(self.defaults.send),
        })
    }

    /// The client (its pool is swept by the worker).
    pub fn client(&self) -> &Client {
        &self.client
    }

    /// Sends the request to an endpoint of `backend`. If connecting fails before any byte
    /// was sent, the request is retried once on another endpoint. `client_upgrade` is the
    /// client side of an upgrade the request asks for; on `101` both sides are tunnelled.
    /// `tried` is set to each endpoint as it is tried (for the access log).
    ///
    /// The head is borrowed, not owned: the caller's future already holds it, and an async
    /// fn keeps an owned argument twice (as argument and as local), which made this future
    /// half a kilobyte larger for every request.
    #[expect(
        clippy::too_many_arguments,
        reason = "one request's whole context, passed once; `tried` is an out-parameter"
    )]
    pub async fn forward(
        &self,
        balancer: &Balancer,
        metrics: &Metrics,
        backend: &Backend,
        head: Outgoing<'_>,
        body: Body,
        client_upgrade: Option<OnUpgrade>,
        tried: &mut Option<SocketAddr>,
    ) -> Result<Response<Body>, Error> {
        let first = match head.sticky {
            Some(addr) => balancer.pick_addr(addr),
            None => balancer
                .pick(backend, None)
                .ok_or_else(|| Error::NoEndpoints(backend.service.clone()))?,
        };
        *tried = Some(first.addr);
        // The first attempt's result is taken apart inside this block, so it is not kept
        // (a quarter of a kilobyte) in the future while a retry is awaited.
        let (failed, source, body) = {
            match self.send(backend, first.addr, head, body).await {
                Ok(exchange) => {
                    return respond(
                        first,
                        exchange,
                        client_upgrade,
                        metrics.active_tunnels.clone(),
                    );
                }
                Err(Attempt::Failed(e)) => return Err(e),
                Err(Attempt::Connect(source, body)) => (first.addr, source, body),
            }
        };
        drop(first);
        self.connect_failed(metrics, backend, failed, &source);
        let retry = balancer.pick(backend, Some(failed));
        let (Some(second), Some(body)) = (retry, body) else {
            return Err(Error::Connect {
                addr: failed,
                source,
            });
        };
        *tried = Some(second.addr);
        // Boxed: a retry is rare, and inline it would double the future's size.
        let retried = Box::pin(self.send(backend, second.addr, head, body));
        let (pick, exchange) = match retried.await {
            Ok(x) => (second, x),
            Err(Attempt::Failed(e)) => return Err(e),
            Err(Attempt::Connect(source, _)) => {
                self.connect_failed(metrics, backend, second.addr, &source);
                return Err(Error::Connect {
                    addr: second.addr,
                    source,
                });
            }
        };
        respond(
            pick,
            exchange,
            client_upgrade,
            metrics.active_tunnels.clone(),
        )
    }

    fn connect_failed(&self, metrics: &Metrics, backend: &Backend, addr: SocketAddr, e: &BoxError) {
        warn!(%addr, service = %backend.service, error = %e, "connecting to endpoint failed");
        metrics
            .upstream_connect_errors
            .get_or_create(&ServiceLabels {
                service: backend.service.to_string(),
            })
            .inc();
    }

    async fn send(
        &self,
        backend: &Backend,
        addr: SocketAddr,
        out: Outgoing<'_>,
        body: Body,
    ) -> Result<Reply, Attempt> {
        let timeouts = self.timeouts(backend);
        let policy = backend.policy();
        // `backend-protocol`: its TLS client was made with the Snapshot (none when its
        // Secret is unusable, and then the route is denied before getting here).
        let tls = policy.upstream_tls.as_deref().map(|tls| TlsTarget {
            tls,
            service: &backend.service,
        });
        if tls.is_none() && policy.backend_protocol.is_tls() {
            // Never cleartext where TLS was asked for.
            return Err(Attempt::Failed(Error::Upstream {
                addr,
                source: "backend-protocol asks for TLS but the Ingress has no TLS client".into(),
            }));
        }
        let h2 = policy.backend_protocol.is_h2()
            || (policy.backend_protocol == BackendProtocol::Http
                && backend.protocol == Protocol::H2c);
        if h2 {
            // Boxed: rare next to HTTP/1.1, and inline it would grow every request's future.
            let read = timeouts.map_or(self.defaults.read, |t| t.read);
            return Box::pin(self.send_h2c(backend, addr, out, body, read, tls)).await;
        }
        let head = RequestHead {
            method: &out.parts.method,
            target: out.parts.uri.path_and_query().map_or("/", |pq| pq.as_str()),
            headers: &out.parts.headers,
            extra: out.extra,
            timeouts,
            tls,
        };
        // The response timeout runs inside the client, from the moment the request is sent.
        match self.client.send(addr, head, body).await {
            Ok(exchange) => Ok(Reply::H1(exchange)),
            Err(client::Failure {
                error: client::Error::Connect(e),
                body,
            }) => Err(Attempt::Connect(Box::new(e), body)),
            Err(client::Failure {
                error: e @ client::Error::Handshake(_),
                body,
            }) => {
                self.handshake_failed(backend, addr, &e);
                Err(Attempt::Connect(Box::new(e), body))
            }
            Err(client::Failure { error, .. }) => Err(Attempt::Failed(match error {
                client::Error::Body(e) => Error::from_request_body(e),
                client::Error::Timeout(timeout) => Error::UpstreamTimeout { addr, timeout },
                error => Error::Upstream {
                    addr,
                    source: Box::new(error),
                },
            })),
        }
    }

    /// Counts and logs an upstream TLS handshake that failed (the request then goes to
    /// another endpoint as after a failed connect, and is answered 502 if none takes it).
    fn handshake_failed(&self, backend: &Backend, addr: SocketAddr, e: &client::Error) {
        warn!(%addr, service = %backend.service, error = %e, "upstream TLS handshake failed");
        self.handshake_errors
            .get_or_create(&ServiceLabels {
                service: backend.service.to_string(),
            })
            .inc();
    }

    async fn send_h2c(
        &self,
        backend: &Backend,
        addr: SocketAddr,
        out: Outgoing<'_>,
        body: Body,
        timeout: Duration,
        tls: Option<TlsTarget<'_>>,
    ) -> Result<Reply, Attempt> {
        let failed = |source: BoxError| Attempt::Failed(Error::Upstream { addr, source });
        let mut sender = match self.h2c.ready(addr, tls).await {
            Ok(sender) => sender,
            Err(e) => {
                if matches!(e, client::Error::Handshake(_)) {
                    self.handshake_failed(backend, addr, &e);
                }
                return Err(Attempt::Connect(Box::new(e), Some(body)));
            }
        };
        // The body streams beside the exchange: the response timeout starts once it ends
        // (a long client stream, gRPC's above all, is not the upstream being slow).
        let (body, sent) = upload::watch_end(body);
        let mut req =
            h2c::request(out.parts, out.extra, addr, body).map_err(|e| failed(Box::new(e)))?;
        if tls.is_some() {
            // `:scheme https` over TLS.
            let mut uri = req.uri().clone().into_parts();
            uri.scheme = Some(hyper::http::uri::Scheme::HTTPS);
            *req.uri_mut() = hyper::Uri::from_parts(uri).map_err(|e| failed(Box::new(e)))?;
        }
        let expired = async {
            let _ = sent.await;
            tokio::time::sleep(timeout).await;
        };
        let answer = tokio::select! {
            answer = sender.send_request(req) => answer,
            () = expired => return Err(Attempt::Failed(Error::UpstreamTimeout { addr, timeout })),
        };
        match answer {
            Ok(resp) => Ok(Reply::H2(resp)),
            // A request body that failed is the client's fault, whatever carried it.
            Err(e) if e.is_user() && std::error::Error::source(&e).is_some() => {
                Err(Attempt::Failed(Error::from_request_body(Box::new(e))))
            }
            Err(e) => Err(failed(Box::new(e))),
        }
    }
}

/// An upstream's answer, by protocol.
enum Reply {
    /// From the HTTP/1.1 client: a response, or a `101` and the connection.
    H1(Exchange),
    /// From an h2c connection.
    H2(Response<Incoming>),
}

/// The head of a request on its way upstream.
#[derive(Clone, Copy, Debug)]
pub struct Outgoing<'a> {
    /// The client's request head, rewritten.
    pub parts: &'a Parts,
    /// Header lines the proxy adds, encoded (see [`forwarding`](super::headers::forwarding)).
    pub extra: &'a [u8],
    /// The endpoint a session cookie holds the request to (`affinity: cookie`), tried
    /// first instead of the balancer's pick.
    pub sticky: Option<SocketAddr>,
}

/// Why one attempt failed.
enum Attempt {
    /// Connecting failed: nothing was sent; the body comes back if it is untouched.
    Connect(BoxError, Option<Body>),
    /// Anything else: final.
    Failed(Error),
}

/// The client's response: the upstream head without hop-by-hop headers, and its body
/// streaming; or, for `101`, the head while both sides are joined in a tunnel.
fn respond(
    pick: Pick,
    reply: Reply,
    client_upgrade: Option<OnUpgrade>,
    tunnels: Gauge,
) -> Result<Response<Body>, Error> {
    let addr = pick.addr;
    let exchange = match reply {
        Reply::H1(exchange) => exchange,
        Reply::H2(resp) => {
            // No upgrades over h2c: an upgrade request got an ordinary answer, passed on.
            let (mut parts, body) = resp.into_parts();
            parts.version = Version::HTTP_11;
            strip_hop_by_hop(&mut parts.headers, false);
            let body = Holding::new(body, pick).map_err(BoxError::from).boxed();
            return Ok(Response::from_parts(parts, body));
        }
    };
    match exchange {
        Exchange::Upgrade(resp, conn) => {
            let Some(client_upgrade) = client_upgrade else {
                return Err(Error::Upstream {
                    addr,
                    source: "upstream switched protocols without being asked".into(),
                });
            };
            tokio::spawn(tunnel(client_upgrade, conn, pick, tunnels));
            let (mut parts, ()) = resp.into_parts();
            strip_hop_by_hop(&mut parts.headers, true);
            Ok(Response::from_parts(parts, empty()))
        }
        Exchange::Response(resp) => {
            let (mut parts, body) = resp.into_parts();
            strip_hop_by_hop(&mut parts.headers, false);
            let body = match body {
                None => empty(),
                // The pick (an in-flight count for least-loaded) lives as long as the
                // body streams.
                Some(body) => Holding::new(body, pick).map_err(BoxError::from).boxed(),
            };
            Ok(Response::from_parts(parts, body))
        }
    }
}

/// Copies bytes both ways between an upgraded client and the upstream connection until
/// either side closes. Bytes the upstream sent right after its `101` go first.
async fn tunnel(client: OnUpgrade, upstream: Conn, pick: Pick, tunnels: Gauge) {
    let addr = upstream.addr;
    let client = match client.await {
        Ok(c) => c,
        Err(e) => {
            debug!(%addr, error = %e, "client upgrade did not complete");
            return;
        }
    };
    tunnels.inc();
    let mut client = TokioIo::new(client);
    let Conn {
        stream: mut upstream,
        buf,
        ..
    } = upstream;
    let copied = async {
        if !buf.is_empty() {
            client.write_all(&buf).await?;
        }
        tokio::io::copy_bidirectional(&mut client, &mut upstream).await
    };
    match copied.await {
        Ok((up, down)) => debug!(%addr, up, down, "tunnel closed"),
        Err(e) => debug!(%addr, error = %e, "tunnel failed"),
    }
    tunnels.dec();
    drop(pick);
}
