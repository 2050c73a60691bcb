//! Forwarding to upstream endpoints through a pooled HTTP/1.1 client: endpoint choice, one
//! retry when connecting fails, response timeout, and tunnelling of upgraded connections.

use std::{net::SocketAddr, time::Duration};

use http_body_util::BodyExt as _;
use hyper::{
    Request, Response, StatusCode, Uri, Version, body::Incoming, http::request::Parts,
    upgrade::OnUpgrade,
};
use hyper_util::{
    client::legacy::{Client, connect::HttpConnector},
    rt::{TokioExecutor, TokioIo, TokioTimer},
};
use prometheus_client::metrics::gauge::Gauge;
use tracing::{debug, warn};

use super::{
    balance::Balancer,
    body::{Body, BoxError, ReclaimableBody},
    headers::strip_hop_by_hop,
    limits::Limits,
    metrics::{Metrics, ServiceLabels},
    rescue::Error,
    route::Backend,
};

/// The pooled upstream client. One per router; connections are pooled per endpoint.
#[derive(Debug)]
pub struct Upstream {
    client: Client<HttpConnector, ReclaimableBody<Body>>,
    response_timeout: Duration,
}

/// Why one attempt failed.
enum Attempt {
    /// Connecting failed: nothing was sent, the body may be reclaimed.
    Connect(BoxError),
    /// Anything else: final.
    Failed(Error),
}

impl Upstream {
    /// A client with the connect, response and idle timeouts of `limits`.
    pub fn new(limits: &Limits) -> Self {
        let mut connector = HttpConnector::new();
        connector.set_nodelay(true);
        connector.set_connect_timeout(Some(limits.upstream_connect_timeout));
        let client = Client::builder(TokioExecutor::new())
            .pool_timer(TokioTimer::new())
            .pool_idle_timeout(limits.idle_timeout)
            .retry_canceled_requests(true)
            .set_host(false)
            .build(connector);
        Self {
            client,
            response_timeout: limits.upstream_response_timeout,
        }
    }

    /// Sends the request to an endpoint of `backend`. If connecting fails before any byte
    /// was sent, the request is retried once on another endpoint. `client_upgrade` is the
    /// client side of an upgrade the request asks for; on `101` both sides are tunnelled.
    pub async fn forward(
        &self,
        balancer: &Balancer,
        metrics: &Metrics,
        backend: &Backend,
        req: Request<Body>,
        client_upgrade: Option<OnUpgrade>,
    ) -> Result<Response<Body>, Error> {
        let first = balancer
            .pick(backend, None)
            .ok_or_else(|| Error::NoEndpoints(backend.service.clone()))?;
        let (parts, body) = req.into_parts();
        let (body, reclaim) = ReclaimableBody::new(body);
        let (pick, resp) = match self.send(first.addr, &parts, body).await {
            Ok(resp) => (first, resp),
            Err(Attempt::Failed(e)) => return Err(e),
            Err(Attempt::Connect(source)) => {
                let failed = first.addr;
                drop(first);
                self.connect_failed(metrics, backend, failed, &source);
                let retry = balancer.pick(backend, Some(failed));
                let (Some(second), Some(body)) = (retry, reclaim.take()) else {
                    return Err(Error::Connect {
                        addr: failed,
                        source,
                    });
                };
                let (body, _reclaim) = ReclaimableBody::new(body);
                match self.send(second.addr, &parts, body).await {
                    Ok(resp) => (second, resp),
                    Err(Attempt::Failed(e)) => return Err(e),
                    Err(Attempt::Connect(source)) => {
                        self.connect_failed(metrics, backend, second.addr, &source);
                        return Err(Error::Connect {
                            addr: second.addr,
                            source,
                        });
                    }
                }
            }
        };
        self.respond(pick, resp, client_upgrade, metrics.active_tunnels.clone())
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
        addr: SocketAddr,
        parts: &Parts,
        body: ReclaimableBody<Body>,
    ) -> Result<Response<Incoming>, Attempt> {
        let path = parts.uri.path_and_query().map_or("/", |pq| pq.as_str());
        let uri: Uri = format!("http://{addr}{path}")
            .parse()
            .map_err(|_| Attempt::Failed(Error::BadRequest("unusable request target")))?;
        let mut req = Request::new(body);
        *req.method_mut() = parts.method.clone();
        *req.uri_mut() = uri;
        *req.version_mut() = Version::HTTP_11;
        *req.headers_mut() = parts.headers.clone();
        match tokio::time::timeout(self.response_timeout, self.client.request(req)).await {
            Err(_elapsed) => Err(Attempt::Failed(Error::UpstreamTimeout {
                addr,
                timeout: self.response_timeout,
            })),
            Ok(Ok(resp)) => Ok(resp),
            Ok(Err(e)) if e.is_connect() => Err(Attempt::Connect(Box::new(e))),
            Ok(Err(e)) => {
                if let Some(limit) = body_limit_hit(&e) {
                    return Err(Attempt::Failed(Error::BodyTooLarge { limit }));
                }
                Err(Attempt::Failed(Error::Upstream {
                    addr,
                    source: Box::new(e),
                }))
            }
        }
    }

    fn respond(
        &self,
        pick: super::balance::Pick,
        mut resp: Response<Incoming>,
        client_upgrade: Option<OnUpgrade>,
        tunnels: Gauge,
    ) -> Result<Response<Body>, Error> {
        let addr = pick.addr;
        if resp.status() == StatusCode::SWITCHING_PROTOCOLS {
            let Some(client_upgrade) = client_upgrade else {
                return Err(Error::Upstream {
                    addr,
                    source: "upstream switched protocols without being asked".into(),
                });
            };
            let upstream_upgrade = hyper::upgrade::on(&mut resp);
            tokio::spawn(tunnel(
                addr,
                client_upgrade,
                upstream_upgrade,
                pick,
                tunnels,
            ));
            let (mut parts, _) = resp.into_parts();
            strip_hop_by_hop(&mut parts.headers, true);
            return Ok(Response::from_parts(parts, super::body::empty()));
        }
        let (mut parts, body) = resp.into_parts();
        strip_hop_by_hop(&mut parts.headers, false);
        // The pick (an in-flight count for least-loaded) lives as long as the body streams.
        let body = body
            .map_frame(move |frame| {
                let _ = &pick;
                frame
            })
            .map_err(BoxError::from)
            .boxed();
        Ok(Response::from_parts(parts, body))
    }
}

/// Copies bytes both ways between an upgraded client and upstream until either side closes.
async fn tunnel(
    addr: SocketAddr,
    client: OnUpgrade,
    upstream: OnUpgrade,
    pick: super::balance::Pick,
    tunnels: Gauge,
) {
    let (client, upstream) = match tokio::try_join!(client, upstream) {
        Ok(pair) => pair,
        Err(e) => {
            debug!(%addr, error = %e, "upgrade did not complete");
            return;
        }
    };
    tunnels.inc();
    let (mut client, mut upstream) = (TokioIo::new(client), TokioIo::new(upstream));
    match tokio::io::copy_bidirectional(&mut client, &mut upstream).await {
        Ok((up, down)) => debug!(%addr, up, down, "tunnel closed"),
        Err(e) => debug!(%addr, error = %e, "tunnel failed"),
    }
    tunnels.dec();
    drop(pick);
}

/// The limit, if the error comes from the request body exceeding `--max-body-bytes`.
fn body_limit_hit(e: &(dyn std::error::Error + 'static)) -> Option<u64> {
    let mut cur: Option<&(dyn std::error::Error + 'static)> = Some(e);
    while let Some(err) = cur {
        if let Some(limited) = err.downcast_ref::<super::body::BodyLimitError>() {
            return Some(limited.limit);
        }
        cur = err.source();
    }
    None
}
