//! Listeners: plain HTTP (HTTP/1.1 and h2c with prior knowledge) and HTTPS (rustls, ALPN
//! h2/http1.1), served by hyper-util's auto builder, with graceful shutdown.

use std::{convert::Infallible, future::Future, io, net::SocketAddr, sync::Arc, time::Duration};

use hyper::{Request, body::Incoming, service::service_fn};
use hyper_util::{
    rt::{TokioExecutor, TokioIo, TokioTimer},
    server::{
        conn::auto,
        graceful::{GracefulShutdown, Watcher},
    },
};
use tokio::{
    io::{AsyncRead, AsyncWrite},
    net::{TcpListener, TcpStream},
    sync::watch,
};
use tokio_rustls::TlsAcceptor;
use tracing::{debug, info, warn};

use super::{
    limits::{Limits, MIN_HTTP1_BUF},
    metrics::Metrics,
    preface::PrefaceDeadline,
    router::{Conn, Router, RouterOptions},
    tls::{self, CertResolver},
};
use crate::{cli::HttpArgs, config::Snapshot};

/// Where to listen and how to serve.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Options {
    /// Plain HTTP listener address.
    pub http: SocketAddr,
    /// HTTPS listener address; `None` serves no HTTPS.
    pub https: Option<SocketAddr>,
    /// Redirect plain-HTTP requests for TLS hosts to HTTPS.
    pub ssl_redirect: bool,
    /// Endpoint choice.
    pub balance: super::balance::Balance,
    /// Limits and timeouts.
    pub limits: Limits,
}

impl Options {
    /// Options from the command line and the listener ports (`--http-port`, `--https-port`).
    pub fn from_args(args: &HttpArgs, http_port: u16, https_port: u16) -> Self {
        Self {
            http: SocketAddr::new(args.bind_address, http_port),
            https: Some(SocketAddr::new(args.bind_address, https_port)),
            ssl_redirect: args.ssl_redirect,
            balance: args.load_balance,
            limits: args.limits(),
        }
    }
}

/// Why the server could not start.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// Binding a listener failed.
    #[error("binding {addr}: {source}")]
    Bind {
        /// The address.
        addr: SocketAddr,
        /// The OS error.
        #[source]
        source: io::Error,
    },
    /// TLS setup failed.
    #[error(transparent)]
    Tls(#[from] tls::Error),
}

/// Bound listeners and the router, ready to [`run`](Server::run).
pub struct Server {
    router: Arc<Router>,
    http: TcpListener,
    https: Option<(TcpListener, TlsAcceptor)>,
    snapshots: watch::Receiver<Arc<Snapshot>>,
    builder: auto::Builder<TokioExecutor>,
    limits: Limits,
}

impl Server {
    /// Binds the listeners and builds the router from the Snapshot in `snapshots`.
    pub async fn bind(
        opts: Options,
        mut snapshots: watch::Receiver<Arc<Snapshot>>,
        metrics: Arc<Metrics>,
    ) -> Result<Self, Error> {
        let http = bind(opts.http).await?;
        let https = match opts.https {
            Some(addr) => Some(bind(addr).await?),
            None => None,
        };
        let https_port = match &https {
            Some(l) => Some(
                l.local_addr()
                    .map_err(|source| Error::Bind {
                        addr: opts.http,
                        source,
                    })?
                    .port(),
            ),
            None => None,
        };
        let initial = Arc::clone(&snapshots.borrow_and_update());
        let mut router = Router::new(
            RouterOptions {
                ssl_redirect: opts.ssl_redirect,
                https_port,
                balance: opts.balance,
                limits: opts.limits.clone(),
            },
            initial,
            metrics,
        );
        let https = match https {
            Some(listener) => {
                let resolver = Arc::new(CertResolver::new(router.snapshot_cell())?);
                router.set_resolver(Arc::clone(&resolver));
                let config = tls::server_config(resolver)?;
                Some((listener, TlsAcceptor::from(Arc::new(config))))
            }
            None => None,
        };
        Ok(Self {
            router: Arc::new(router),
            http,
            https,
            snapshots,
            builder: builder(&opts.limits),
            limits: opts.limits,
        })
    }

    /// The bound plain-HTTP address (useful with port 0).
    pub fn http_addr(&self) -> io::Result<SocketAddr> {
        self.http.local_addr()
    }

    /// The bound HTTPS address, if any.
    pub fn https_addr(&self) -> Option<io::Result<SocketAddr>> {
        self.https.as_ref().map(|(l, _)| l.local_addr())
    }

    /// The router (to publish Snapshots directly, or read metrics).
    pub fn router(&self) -> &Arc<Router> {
        &self.router
    }

    /// Serves until `shutdown` completes, then stops accepting and gives in-flight requests
    /// the grace period to finish. Snapshots sent on the watch channel take effect for the
    /// next request.
    pub async fn run(self, shutdown: impl Future<Output = ()>) {
        let Self {
            router,
            http,
            https,
            mut snapshots,
            builder,
            limits,
        } = self;
        let graceful = GracefulShutdown::new();
        let mut watching = true;
        tokio::pin!(shutdown);
        loop {
            tokio::select! {
                () = &mut shutdown => break,
                changed = snapshots.changed(), if watching => match changed {
                    Ok(()) => router.publish(Arc::clone(&snapshots.borrow_and_update())),
                    Err(_) => {
                        debug!("snapshot publisher gone; keeping the last snapshot");
                        watching = false;
                    }
                },
                accepted = http.accept() => match accepted {
                    Ok((stream, remote)) => {
                        let conn = Conn { remote, local: local_addr(&stream, &http), tls: false };
                        spawn_plain(stream, conn, &router, &builder, &graceful);
                    }
                    Err(e) => accept_failed(&e).await,
                },
                accepted = accept_tls(https.as_ref()) => match accepted {
                    Ok((stream, remote, acceptor)) => {
                        let conn = Conn {
                            remote,
                            local: stream.local_addr().unwrap_or(remote),
                            tls: true,
                        };
                        spawn_tls(stream, acceptor, conn, &router, &builder, &graceful, limits.header_read_timeout);
                    }
                    Err(e) => accept_failed(&e).await,
                },
            }
        }
        drop(http);
        drop(https);
        info!(connections = graceful.count(), grace = ?limits.shutdown_grace_period, "HTTP listeners closed; draining");
        tokio::select! {
            () = graceful.shutdown() => info!("all HTTP connections drained"),
            () = tokio::time::sleep(limits.shutdown_grace_period) => {
                warn!("grace period over; remaining HTTP connections are dropped");
            }
        }
    }
}

/// Binds the listeners and serves until `shutdown` completes (see [`Server::run`]).
pub async fn serve(
    opts: Options,
    snapshots: watch::Receiver<Arc<Snapshot>>,
    metrics: Arc<Metrics>,
    shutdown: impl Future<Output = ()>,
) -> Result<(), Error> {
    let server = Server::bind(opts, snapshots, metrics).await?;
    info!(
        http = %server.http_addr().map_or_else(|e| e.to_string(), |a| a.to_string()),
        https = ?server.https_addr().and_then(Result::ok),
        "HTTP router listening"
    );
    server.run(shutdown).await;
    Ok(())
}

async fn bind(addr: SocketAddr) -> Result<TcpListener, Error> {
    TcpListener::bind(addr)
        .await
        .map_err(|source| Error::Bind { addr, source })
}

fn builder(limits: &Limits) -> auto::Builder<TokioExecutor> {
    let mut b = auto::Builder::new(TokioExecutor::new());
    b.http1()
        .timer(TokioTimer::new())
        .header_read_timeout(limits.header_read_timeout)
        .max_buf_size(limits.max_header_bytes.max(MIN_HTTP1_BUF))
        .keep_alive(true);
    b.http2()
        .timer(TokioTimer::new())
        .max_header_list_size(u32::try_from(limits.max_header_bytes).unwrap_or(u32::MAX))
        .keep_alive_interval(limits.idle_timeout)
        .max_concurrent_streams(256);
    b
}

fn local_addr(stream: &TcpStream, listener: &TcpListener) -> SocketAddr {
    stream
        .local_addr()
        .or_else(|_| listener.local_addr())
        .unwrap_or_else(|_| SocketAddr::from(([0, 0, 0, 0], 0)))
}

async fn accept_tls(
    https: Option<&(TcpListener, TlsAcceptor)>,
) -> io::Result<(TcpStream, SocketAddr, TlsAcceptor)> {
    match https {
        Some((listener, acceptor)) => {
            let (stream, remote) = listener.accept().await?;
            Ok((stream, remote, acceptor.clone()))
        }
        None => std::future::pending().await,
    }
}

/// Accept errors (e.g. out of file descriptors) are transient: log, back off, go on.
async fn accept_failed(e: &io::Error) {
    warn!(error = %e, "accepting a connection failed");
    tokio::time::sleep(Duration::from_millis(50)).await;
}

fn spawn_plain(
    stream: TcpStream,
    conn: Conn,
    router: &Arc<Router>,
    builder: &auto::Builder<TokioExecutor>,
    graceful: &GracefulShutdown,
) {
    let _ = stream.set_nodelay(true);
    let gauge = router.metrics().active_connections.clone();
    let stream = PrefaceDeadline::new(stream, router.limits().header_read_timeout);
    let served = serve_connection(
        stream,
        conn,
        Arc::clone(router),
        builder,
        graceful.watcher(),
    );
    tokio::spawn(async move {
        gauge.inc();
        served.await;
        gauge.dec();
    });
}

fn spawn_tls(
    stream: TcpStream,
    acceptor: TlsAcceptor,
    conn: Conn,
    router: &Arc<Router>,
    builder: &auto::Builder<TokioExecutor>,
    graceful: &GracefulShutdown,
    handshake_timeout: Duration,
) {
    let _ = stream.set_nodelay(true);
    let router = Arc::clone(router);
    let builder = builder.clone();
    let watcher = graceful.watcher();
    tokio::spawn(async move {
        let metrics = Arc::clone(router.metrics());
        let tls = match tokio::time::timeout(handshake_timeout, acceptor.accept(stream)).await {
            Ok(Ok(tls)) => tls,
            Ok(Err(e)) => {
                debug!(remote = %conn.remote, error = %e, "TLS handshake failed");
                metrics.tls_handshake_errors.inc();
                return;
            }
            Err(_) => {
                debug!(remote = %conn.remote, "TLS handshake timed out");
                metrics.tls_handshake_errors.inc();
                return;
            }
        };
        metrics.active_connections.inc();
        let tls = PrefaceDeadline::new(tls, handshake_timeout);
        serve_connection(tls, conn, router, &builder, watcher).await;
        metrics.active_connections.dec();
    });
}

/// Serves one client connection (HTTP/1.1 with upgrades, or HTTP/2) under `watcher`, so
/// graceful shutdown can ask it to finish.
fn serve_connection<I>(
    io: I,
    conn: Conn,
    router: Arc<Router>,
    builder: &auto::Builder<TokioExecutor>,
    watcher: Watcher,
) -> impl Future<Output = ()> + Send + 'static
where
    I: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let svc = service_fn(move |req: Request<Incoming>| {
        let router = Arc::clone(&router);
        async move { Ok::<_, Infallible>(router.handle(req, conn).await) }
    });
    let served = watcher.watch(
        builder
            .serve_connection_with_upgrades(TokioIo::new(io), svc)
            .into_owned(),
    );
    async move {
        if let Err(e) = served.await {
            debug!(remote = %conn.remote, error = %e, "HTTP connection ended with an error");
        }
    }
}
