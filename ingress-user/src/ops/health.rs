//! The health server on `--health-port`: `/healthz` (liveness), `/readyz` (readiness) and
//! `/metrics` (Prometheus). Plain HTTP/1.1; kept apart from the router so that a saturated
//! or draining router never fails a liveness probe.

use std::{convert::Infallible, future::Future, io, net::SocketAddr};

use bytes::Bytes;
use http_body_util::Full;
use hyper::{Method, Request, Response, StatusCode, body::Incoming, header, service::service_fn};
use hyper_util::rt::{TokioIo, TokioTimer};
use tokio::net::TcpListener;
use tracing::{debug, info};

use super::Ops;

/// Content type of the exposition (prometheus-client writes OpenMetrics text).
pub const METRICS_CONTENT_TYPE: &str = "application/openmetrics-text; version=1.0.0; charset=utf-8";

/// A bound health listener, ready to [`run`](Self::run).
pub struct HealthServer {
    listener: TcpListener,
}

impl HealthServer {
    /// Binds the listener (port 0 picks a free port).
    pub async fn bind(addr: SocketAddr) -> io::Result<Self> {
        Ok(Self {
            listener: TcpListener::bind(addr).await?,
        })
    }

    /// The bound address.
    pub fn local_addr(&self) -> io::Result<SocketAddr> {
        self.listener.local_addr()
    }

    /// Serves until `shutdown` completes. Call it with a future that completes after the
    /// data planes drained, so `/readyz` keeps answering 503 during the drain.
    pub async fn run(self, ops: Ops, shutdown: impl Future<Output = ()>) {
        tokio::pin!(shutdown);
        if let Ok(addr) = self.listener.local_addr() {
            info!(%addr, "health server listening (/healthz, /readyz, /metrics)");
        }
        loop {
            let (stream, _) = tokio::select! {
                () = &mut shutdown => break,
                accepted = self.listener.accept() => match accepted {
                    Ok(a) => a,
                    Err(e) => {
                        debug!(error = %e, "health accept");
                        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
                        continue;
                    }
                },
            };
            let ops = ops.clone();
            tokio::spawn(async move {
                let svc = service_fn(move |req| {
                    let ops = ops.clone();
                    async move { Ok::<_, Infallible>(handle(&ops, &req).await) }
                });
                let conn = hyper::server::conn::http1::Builder::new()
                    .timer(TokioTimer::new())
                    .header_read_timeout(std::time::Duration::from_secs(10))
                    .serve_connection(TokioIo::new(stream), svc);
                if let Err(e) = conn.await {
                    debug!(error = %e, "health connection");
                }
            });
        }
    }
}

/// Binds `addr` and serves until `shutdown` completes (see [`HealthServer::run`]).
pub async fn serve(
    addr: SocketAddr,
    ops: Ops,
    shutdown: impl Future<Output = ()>,
) -> io::Result<()> {
    HealthServer::bind(addr).await?.run(ops, shutdown).await;
    Ok(())
}

async fn handle(ops: &Ops, req: &Request<Incoming>) -> Response<Full<Bytes>> {
    if req.method() != Method::GET && req.method() != Method::HEAD {
        return text(StatusCode::METHOD_NOT_ALLOWED, "only GET and HEAD\n".into());
    }
    match req.uri().path() {
        "/healthz" | "/livez" => text(StatusCode::OK, "ok\n".into()),
        "/readyz" => match ops.readiness.not_ready_reason() {
            None => text(StatusCode::OK, "ok\n".into()),
            Some(why) => text(
                StatusCode::SERVICE_UNAVAILABLE,
                format!("not ready: {why}\n"),
            ),
        },
        "/metrics" => {
            let body = ops.metrics.render().await;
            let mut resp = Response::new(Full::new(Bytes::from(body)));
            resp.headers_mut().insert(
                header::CONTENT_TYPE,
                header::HeaderValue::from_static(METRICS_CONTENT_TYPE),
            );
            resp
        }
        _ => text(
            StatusCode::NOT_FOUND,
            "not found; try /healthz, /readyz or /metrics\n".into(),
        ),
    }
}

fn text(status: StatusCode, body: String) -> Response<Full<Bytes>> {
    let mut resp = Response::new(Full::new(Bytes::from(body)));
    *resp.status_mut() = status;
    resp.headers_mut().insert(
        header::CONTENT_TYPE,
        header::HeaderValue::from_static("text/plain; charset=utf-8"),
    );
    resp
}
