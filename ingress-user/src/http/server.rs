//! Listeners: plain HTTP (HTTP/1.1 and h2c with prior knowledge) and HTTPS (rustls, ALPN
//! h2/http1.1), with graceful shutdown. HTTP/1.1 connections, plain or TLS, start on the
//! fast path ([`h1`](super::h1)) and move to hyper-util's auto builder when a request needs
//! it; HTTPS connections that chose h2 by ALPN go to hyper's HTTP/2 server at once.
//!
//! Thread per core: each worker is an OS thread with a current-thread tokio runtime, its
//! own listening sockets (`SO_REUSEPORT`, so the kernel spreads connections) and its own
//! upstream connection pool. A request is read, routed, forwarded and answered on one
//! thread, with no work stealing and no cross-thread wake-up on the hot path. Workers share
//! only the Snapshot (an `ArcSwap`), the balancer and the metrics.
//!
//! Gateway API listening addresses (`GatewayPlane::ports`) come and go with Snapshots
//! ([`listeners`]): each new one gets a socket per worker (`SO_REUSEPORT`), each removed
//! one has its sockets closed while the connections accepted on them finish. An address
//! with the port of an Ingress listener and its address (or any address, when the
//! Ingress listener binds all of them) shares that listener's sockets instead.

use std::{
    convert::Infallible,
    future::Future,
    io,
    net::SocketAddr,
    num::NonZeroUsize,
    pin::Pin,
    sync::{
        Arc, Mutex,
        atomic::{AtomicUsize, Ordering},
    },
    time::Duration,
};

use http_body_util::BodyExt as _;
use hyper::{Request, body::Incoming, server::conn::http2, service::service_fn};
use hyper_util::{
    rt::{TokioExecutor, TokioIo, TokioTimer},
    server::conn::auto,
};
use tokio::{
    io::{AsyncRead, AsyncWrite},
    net::{TcpListener, TcpSocket, TcpStream},
    sync::{mpsc, oneshot, watch},
};
use tokio_rustls::TlsAcceptor;
use tracing::{debug, error, info, warn};

mod listeners;

use super::{
    access_log::{self, AccessLog},
    body::Holding,
    client_auth::ClientAuthTls,
    drain::{Drain, Signal},
    h1,
    limits::{Limits, MIN_HTTP1_BUF},
    metrics::Metrics,
    preface::PrefaceDeadline,
    proxy::Upstream,
    rewind::Rewind,
    router::{Conn, Router, RouterOptions, Socket},
    tls::{self, CertResolver},
};
use crate::{
    cli::HttpArgs,
    config::Snapshot,
    snapshot::{
        client_auth::ConnCert,
        gateway::{ListenAddr, SniListener},
    },
};

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
    /// Worker threads; 0 is one per CPU this process may run on.
    pub workers: usize,
    /// Forward header names with `_` (dropped by default).
    pub allow_underscores_in_headers: bool,
    /// The access log (off by default; the binary's `--access-log` defaults to stdout).
    pub access_log: access_log::Options,
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
            workers: args.http_workers,
            allow_underscores_in_headers: args.allow_underscores_in_headers,
            access_log: access_log::Options {
                target: args.access_log.clone(),
                format: args.access_log_format,
            },
        }
    }

    /// The number of workers: `workers`, or one per CPU this process may use (affinity mask
    /// and cgroup CPU quota, as `available_parallelism` reads them).
    pub fn worker_count(&self) -> usize {
        match self.workers {
            0 => std::thread::available_parallelism().map_or(1, NonZeroUsize::get),
            n => n,
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
    /// The access log could not be opened.
    #[error(transparent)]
    AccessLog(#[from] access_log::Error),
}

/// One worker's listening sockets (not yet registered with any runtime).
struct Sockets {
    http: std::net::TcpListener,
    https: Option<std::net::TcpListener>,
}

/// Bound listeners and the router, ready to [`run`](Server::run).
pub struct Server {
    router: Arc<Router>,
    sockets: Vec<Sockets>,
    http_addr: SocketAddr,
    https_addr: Option<SocketAddr>,
    tls: Option<TlsAcceptor>,
    resolver: Option<Arc<CertResolver>>,
    resumption: tls::Resumption,
    snapshots: watch::Receiver<Arc<Snapshot>>,
    builders: Arc<Builders>,
    limits: Limits,
    /// `--bind-address`: where Gateway listeners without addresses listen.
    bind_ip: std::net::IpAddr,
    log_writer: Option<access_log::Writer>,
}

impl Server {
    /// Binds every worker's listeners and builds the router from the Snapshot in
    /// `snapshots`.
    pub async fn bind(
        opts: Options,
        mut snapshots: watch::Receiver<Arc<Snapshot>>,
        metrics: Arc<Metrics>,
    ) -> Result<Self, Error> {
        let workers = opts.worker_count();
        let keepalive = opts.limits.idle_timeout;
        let http = bind_group(opts.http, workers, keepalive)?;
        let https = match opts.https {
            Some(addr) => Some(bind_group(addr, workers, keepalive)?),
            None => None,
        };
        let http_addr = local(&http[0], opts.http)?;
        let https_addr = match (&https, opts.https) {
            (Some(group), Some(addr)) => Some(local(&group[0], addr)?),
            _ => None,
        };
        let initial = Arc::clone(&snapshots.borrow_and_update());
        let mut router = Router::new(
            RouterOptions {
                ssl_redirect: opts.ssl_redirect,
                https_port: https_addr.map(|a| a.port()),
                balance: opts.balance,
                limits: opts.limits.clone(),
                allow_underscores_in_headers: opts.allow_underscores_in_headers,
                bind_ip: opts.http.ip(),
            },
            initial,
            Arc::clone(&metrics),
        );
        let log_writer =
            match AccessLog::start(&opts.access_log, metrics.access_log_dropped.clone())? {
                Some((log, writer)) => {
                    router.set_access_log(log);
                    Some(writer)
                }
                None => None,
            };
        // One resumption state for every HTTPS socket (Ingress and Gateway) and worker.
        let resumption = tls::Resumption::new(tls::SESSION_CACHE_SIZE)?;
        let (tls, resolver) = match https_addr {
            Some(addr) => {
                let mut resolver = CertResolver::new(router.snapshot_cell())?;
                resolver.share_port(addr.port());
                let resolver = Arc::new(resolver);
                router.set_resolver(Arc::clone(&resolver));
                let acceptor = tls::acceptor(Arc::clone(&resolver) as _, &resumption)?;
                (Some(acceptor), Some(resolver))
            }
            None => (None, None),
        };
        let mut https = https.map(Vec::into_iter);
        let sockets = http
            .into_iter()
            .map(|http| Sockets {
                http,
                https: https.as_mut().and_then(Iterator::next),
            })
            .collect();
        Ok(Self {
            router: Arc::new(router),
            sockets,
            http_addr,
            https_addr,
            tls,
            resolver,
            resumption,
            snapshots,
            builders: Arc::new(Builders::new(&opts.limits)),
            limits: opts.limits,
            bind_ip: opts.http.ip(),
            log_writer,
        })
    }

    /// The bound plain-HTTP address (useful with port 0).
    pub fn http_addr(&self) -> io::Result<SocketAddr> {
        Ok(self.http_addr)
    }

    /// The bound HTTPS address, if any.
    pub fn https_addr(&self) -> Option<io::Result<SocketAddr>> {
        self.https_addr.map(Ok)
    }

    /// The router (to publish Snapshots directly, or read metrics).
    pub fn router(&self) -> &Arc<Router> {
        &self.router
    }

    /// Starts the workers and serves until `shutdown` completes; then every worker stops
    /// accepting and gives in-flight requests the grace period to finish. Snapshots sent
    /// on the watch channel take effect for the next request.
    pub async fn run(self, shutdown: impl Future<Output = ()>) {
        let Self {
            router,
            sockets,
            http_addr,
            https_addr,
            tls,
            resolver,
            resumption,
            mut snapshots,
            builders,
            limits,
            bind_ip,
            log_writer,
        } = self;
        let (stop_tx, stop_rx) = watch::channel(false);
        let client_auth = Arc::new(ClientAuthTls::new(router.snapshot_cell()));
        let mut finished = Vec::new();
        let mut commands = Vec::new();
        for (index, sockets) in sockets.into_iter().enumerate() {
            let (cmd_tx, cmd_rx) = mpsc::unbounded_channel();
            let worker = Worker {
                index,
                router: Arc::clone(&router),
                upstream: Arc::new(Upstream::new(&limits, router.metrics())),
                tls: tls.clone(),
                client_auth: Arc::clone(&client_auth),
                builders: Arc::clone(&builders),
                limits: limits.clone(),
                stop: stop_rx.clone(),
            };
            let (done_tx, done_rx) = oneshot::channel::<()>();
            let spawned = std::thread::Builder::new()
                .name(format!("xi-http-{index}"))
                .spawn(move || {
                    match tokio::runtime::Builder::new_current_thread()
                        .enable_all()
                        .build()
                    {
                        Ok(rt) => rt.block_on(Arc::new(worker).run(sockets, cmd_rx)),
                        Err(e) => error!(worker = index, error = %e, "HTTP worker has no runtime"),
                    }
                    drop(done_tx);
                });
            match spawned {
                Ok(_) => {
                    finished.push(done_rx);
                    commands.push(cmd_tx);
                }
                Err(e) => error!(worker = index, error = %e, "starting an HTTP worker failed"),
            }
        }
        info!(workers = finished.len(), "HTTP workers started");
        let mut gateway = listeners::Listeners::new(
            listeners::Shared {
                bind_ip,
                ingress: [Some(http_addr), https_addr],
            },
            commands,
            resolver,
            resumption,
            Arc::clone(&router),
        );
        gateway.sync(&router.snapshot().gateway);
        let mut retry = tokio::time::interval(listeners::RETRY);
        retry.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut watching = true;
        tokio::pin!(shutdown);
        loop {
            tokio::select! {
                () = &mut shutdown => break,
                changed = snapshots.changed(), if watching => match changed {
                    Ok(()) => {
                        // Published first: a socket opened for an address serves the
                        // Snapshot that has it.
                        let snapshot = Arc::clone(&snapshots.borrow_and_update());
                        router.publish(Arc::clone(&snapshot));
                        gateway.sync(&snapshot.gateway);
                        gateway.prune();
                    }
                    Err(_) => {
                        debug!("snapshot publisher gone; keeping the last snapshot");
                        watching = false;
                    }
                },
                _ = retry.tick(), if gateway.has_failed() => {
                    gateway.sync(&router.snapshot().gateway);
                }
            }
        }
        info!(grace = ?limits.shutdown_grace_period, "HTTP listeners closing; draining");
        let _ = stop_tx.send(true);
        drop(gateway);
        for done in finished {
            let _ = done.await;
        }
        // The workers are gone with their routers; the last lines get written.
        drop(router);
        if let Some(writer) = log_writer {
            writer.finish(Duration::from_secs(2)).await;
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
        http = %server.http_addr,
        https = ?server.https_addr,
        "HTTP router listening"
    );
    server.run(shutdown).await;
    Ok(())
}

/// One listening socket per worker on `addr`. Several share the port with `SO_REUSEPORT`
/// (a port 0 request is resolved by the first); a single one is bound without it, so a
/// second process on the same port fails loudly instead of silently sharing it.
fn bind_group(
    addr: SocketAddr,
    workers: usize,
    keepalive: Duration,
) -> Result<Vec<std::net::TcpListener>, Error> {
    let mut group = Vec::with_capacity(workers);
    let mut at = addr;
    for _ in 0..workers.max(1) {
        let listener =
            bind_one(at, workers > 1, keepalive).map_err(|source| Error::Bind { addr, source })?;
        at = listener
            .local_addr()
            .map_err(|source| Error::Bind { addr, source })?;
        group.push(listener);
    }
    Ok(group)
}

/// Time between TCP keepalive probes once a connection has been silent for the idle
/// timeout: a client gone without a FIN or RST is dropped `idle + 30 s` after it last sent.
const KEEPALIVE_INTERVAL: Duration = Duration::from_secs(10);
/// Unanswered probes before the kernel resets the connection.
const KEEPALIVE_PROBES: libc::c_int = 3;
/// Linux refuses a longer `TCP_KEEPIDLE` (`MAX_TCP_KEEPIDLE`, about 9 hours).
const MAX_KEEPIDLE_SECS: u64 = 32_767;

/// A listening socket on `addr`. Its connections inherit TCP keepalive (first probe after
/// `keepalive` of silence): the kernel finds vanished clients, so HTTP/2 needs no pings
/// of its own, which in hyper cost a lock and a clock read on every frame received.
pub(super) fn bind_one(
    addr: SocketAddr,
    reuse_port: bool,
    keepalive: Duration,
) -> io::Result<std::net::TcpListener> {
    let socket = match addr {
        SocketAddr::V4(_) => TcpSocket::new_v4()?,
        SocketAddr::V6(_) => TcpSocket::new_v6()?,
    };
    socket.set_reuseaddr(true)?;
    if reuse_port {
        socket.set_reuseport(true)?;
    }
    socket.set_keepalive(true)?;
    let secs = |d: Duration| {
        let secs = d.as_secs().clamp(1, MAX_KEEPIDLE_SECS);
        libc::c_int::try_from(secs).unwrap_or(libc::c_int::MAX)
    };
    set_tcp_option(&socket, libc::TCP_KEEPIDLE, secs(keepalive))?;
    set_tcp_option(&socket, libc::TCP_KEEPINTVL, secs(KEEPALIVE_INTERVAL))?;
    set_tcp_option(&socket, libc::TCP_KEEPCNT, KEEPALIVE_PROBES)?;
    socket.bind(addr)?;
    socket.listen(1024)?.into_std()
}

/// `setsockopt(IPPROTO_TCP, option, value)`.
fn set_tcp_option(
    socket: &impl std::os::fd::AsRawFd,
    option: libc::c_int,
    value: libc::c_int,
) -> io::Result<()> {
    // SAFETY: the fd is open for the borrow, and `value` is a live c_int of the given size.
    let rc = unsafe {
        libc::setsockopt(
            socket.as_raw_fd(),
            libc::IPPROTO_TCP,
            option,
            std::ptr::from_ref(&value).cast(),
            std::mem::size_of::<libc::c_int>() as libc::socklen_t,
        )
    };
    if rc == 0 {
        Ok(())
    } else {
        Err(io::Error::last_os_error())
    }
}

fn local(listener: &std::net::TcpListener, addr: SocketAddr) -> Result<SocketAddr, Error> {
    listener
        .local_addr()
        .map_err(|source| Error::Bind { addr, source })
}

/// What one worker thread owns.
struct Worker {
    index: usize,
    router: Arc<Router>,
    upstream: Arc<Upstream>,
    tls: Option<TlsAcceptor>,
    /// Asks for client certificates on the hosts that require them (`auth-tls-*`).
    client_auth: Arc<ClientAuthTls>,
    builders: Arc<Builders>,
    limits: Limits,
    stop: watch::Receiver<bool>,
}

impl Worker {
    /// Accepts and serves until told to stop, then drains for the grace period. Gateway
    /// listening sockets arrive and leave as `commands`.
    async fn run(
        self: Arc<Self>,
        sockets: Sockets,
        mut commands: mpsc::UnboundedReceiver<listeners::Command>,
    ) {
        let index = self.index;
        let http = match TcpListener::from_std(sockets.http) {
            Ok(l) => l,
            Err(e) => return error!(worker = index, error = %e, "HTTP listener unusable"),
        };
        let https = match (sockets.https.map(TcpListener::from_std), &self.tls) {
            (Some(Ok(l)), Some(acceptor)) => Some((l, acceptor.clone())),
            (Some(Err(e)), _) => {
                return error!(worker = index, error = %e, "HTTPS listener unusable");
            }
            _ => None,
        };
        let sweeper = tokio::spawn(sweep(Arc::clone(&self.upstream), self.limits.idle_timeout));
        let graceful = Drain::default();
        // Each Gateway socket's accept loop, stopped by dropping its sender.
        let mut gateway: std::collections::HashMap<ListenAddr, oneshot::Sender<()>> =
            std::collections::HashMap::new();
        let mut stop = self.stop.clone();
        let mut commanded = true;
        loop {
            tokio::select! {
                _ = stop.wait_for(|s| *s) => break,
                accepted = http.accept() => match accepted {
                    Ok((stream, remote)) => {
                        let conn = Conn { remote, local: local_addr(&stream, &http), tls: false, socket: Socket::Ingress, sni: SniListener::Unchecked };
                        self.spawn_plain(stream, conn, graceful.signal());
                    }
                    Err(e) => accept_failed(&e).await,
                },
                accepted = accept_tls(https.as_ref()) => match accepted {
                    Ok((stream, remote, acceptor)) => {
                        let conn = Conn {
                            remote,
                            local: stream.local_addr().unwrap_or(remote),
                            tls: true,
                            socket: Socket::Ingress,
                            sni: SniListener::Unchecked,
                        };
                        self.spawn_tls(stream, acceptor, conn, graceful.signal());
                    }
                    Err(e) => accept_failed(&e).await,
                },
                command = commands.recv(), if commanded => match command {
                    Some(listeners::Command::Open { addr, socket, tls }) => {
                        match TcpListener::from_std(socket) {
                            Ok(listener) => {
                                let (closed_tx, closed_rx) = oneshot::channel();
                                gateway.insert(addr, closed_tx);
                                tokio::spawn(Arc::clone(&self).accept_gateway(
                                    listener, addr, tls, closed_rx, graceful.signal(),
                                ));
                            }
                            Err(e) => error!(worker = index, %addr, error = %e, "Gateway listener unusable"),
                        }
                    }
                    Some(listeners::Command::Close(addr)) => {
                        gateway.remove(&addr);
                    }
                    // The server is gone; its stop signal follows.
                    None => commanded = false,
                },
            }
        }
        drop(http);
        drop(https);
        drop(gateway);
        sweeper.abort();
        debug!(
            worker = index,
            connections = graceful.count(),
            "worker draining"
        );
        tokio::select! {
            () = graceful.drained() => debug!(worker = index, "worker drained"),
            () = tokio::time::sleep(self.limits.shutdown_grace_period) => {
                warn!(worker = index, "grace period over; remaining HTTP connections are dropped");
            }
        }
    }

    /// Accepts on one Gateway listening socket until `closed` fires (its sender is
    /// dropped); the connections it accepted are not affected by that.
    async fn accept_gateway(
        self: Arc<Self>,
        listener: TcpListener,
        addr: ListenAddr,
        tls: Option<TlsAcceptor>,
        mut closed: oneshot::Receiver<()>,
        signal: Signal,
    ) {
        debug!(worker = self.index, %addr, tls = tls.is_some(), "Gateway listener open");
        loop {
            tokio::select! {
                _ = &mut closed => break,
                accepted = listener.accept() => match accepted {
                    Ok((stream, remote)) => {
                        let conn = Conn {
                            remote,
                            local: local_addr(&stream, &listener),
                            tls: tls.is_some(),
                            socket: Socket::Gateway(addr),
                            sni: SniListener::Unchecked,
                        };
                        match &tls {
                            Some(acceptor) => self.spawn_tls(stream, acceptor.clone(), conn, signal.clone()),
                            None => self.spawn_plain(stream, conn, signal.clone()),
                        }
                    }
                    Err(e) => accept_failed(&e).await,
                },
            }
        }
        debug!(worker = self.index, %addr, "Gateway listener closed");
    }

    fn spawn_plain(&self, stream: TcpStream, conn: Conn, signal: Signal) {
        let _ = stream.set_nodelay(true);
        let gauge = self.router.metrics().active_connections.clone();
        let router = Arc::clone(&self.router);
        let upstream = Arc::clone(&self.upstream);
        let builders = Arc::clone(&self.builders);
        let settings = self.settings();
        tokio::spawn(async move {
            gauge.inc();
            serve_client(
                stream, conn, None, router, upstream, &builders, settings, signal, true,
            )
            .await;
            gauge.dec();
        });
    }

    fn settings(&self) -> h1::Settings {
        h1::Settings {
            header_read_timeout: self.limits.header_read_timeout,
            max_head: self.limits.max_header_bytes,
        }
    }

    fn spawn_tls(&self, stream: TcpStream, acceptor: TlsAcceptor, conn: Conn, signal: Signal) {
        let _ = stream.set_nodelay(true);
        let router = Arc::clone(&self.router);
        let upstream = Arc::clone(&self.upstream);
        let builders = Arc::clone(&self.builders);
        let settings = self.settings();
        let handshake_timeout = settings.header_read_timeout;
        let client_auth = Arc::clone(&self.client_auth);
        tokio::spawn(async move {
            let metrics = Arc::clone(router.metrics());
            // Passthrough by SNI first (reads the ClientHello only where it could apply).
            let Some(stream) =
                super::passthrough::accept(stream, conn, &router, handshake_timeout).await
            else {
                return;
            };
            // Client certificates are an Ingress matter: only its listener asks for them.
            let accepted = async {
                if conn.socket == Socket::Ingress {
                    client_auth.accept(&acceptor, stream).await
                } else {
                    acceptor.accept(stream).await.map(|tls| (tls, None))
                }
            };
            let (tls, cert) = match tokio::time::timeout(handshake_timeout, accepted).await {
                Ok(Ok(accepted)) => accepted,
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
            let kind = match tls.get_ref().1.handshake_kind() {
                Some(rustls::HandshakeKind::Resumed) => "resumed",
                _ => "full",
            };
            metrics
                .tls_handshakes
                .get_or_create(&super::metrics::HandshakeLabels { kind })
                .inc();
            metrics.active_connections.inc();
            let mut conn = conn;
            if let Some(name) = tls.get_ref().1.server_name() {
                conn.sni = router.sni_listener(conn, name);
            }
            // HTTP/2 chosen by ALPN goes straight to hyper's HTTP/2 server; HTTP/1.1 starts
            // on the fast path, unless a client certificate travels with each request
            // (hyper's extensions).
            if tls.get_ref().1.alpn_protocol() == Some(b"h2") {
                let io = PrefaceDeadline::new(tls, handshake_timeout);
                let proto = Proto::H2(&builders.h2);
                serve_connection(io, conn, cert, router, upstream, proto, signal).await;
            } else {
                let fast = cert.is_none();
                serve_client(
                    tls, conn, cert, router, upstream, &builders, settings, signal, fast,
                )
                .await;
            }
            metrics.active_connections.dec();
        });
    }
}

/// Closes the worker's expired idle upstream connections now and then.
async fn sweep(upstream: Arc<Upstream>, idle_timeout: Duration) {
    let period = (idle_timeout / 2).max(Duration::from_secs(1));
    let mut tick = tokio::time::interval(period);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tick.tick().await;
        let closed = upstream.client().pool().sweep();
        if closed > 0 {
            debug!(closed, "idle upstream connections closed");
        }
    }
}

/// hyper's connection builders, set up once from the limits.
struct Builders {
    /// HTTP/1.1 (with upgrades) or HTTP/2 by the first bytes: plain connections the fast
    /// path hands over, and HTTPS ones that did not choose h2.
    auto: auto::Builder<TokioExecutor>,
    /// HTTPS connections that chose h2 by ALPN: nothing to sniff, no upgrade wrapper.
    h2: http2::Builder<TokioExecutor>,
}

impl Builders {
    fn new(limits: &Limits) -> Self {
        let mut auto = auto::Builder::new(TokioExecutor::new());
        auto.http1()
            .timer(TokioTimer::new())
            .header_read_timeout(limits.header_read_timeout)
            .max_buf_size(limits.max_header_bytes.max(MIN_HTTP1_BUF))
            .keep_alive(true);
        let max_header_list = u32::try_from(limits.max_header_bytes).unwrap_or(u32::MAX);
        // The same HTTP/2 settings both ways. No keep-alive pings: the listening sockets'
        // TCP keepalive finds dead clients (see `bind_one`).
        auto.http2()
            .timer(TokioTimer::new())
            .max_header_list_size(max_header_list)
            .max_concurrent_streams(MAX_CONCURRENT_STREAMS);
        let mut h2 = http2::Builder::new(TokioExecutor::new());
        h2.timer(TokioTimer::new())
            .max_header_list_size(max_header_list)
            .max_concurrent_streams(MAX_CONCURRENT_STREAMS);
        Self { auto, h2 }
    }
}

/// Streams one HTTP/2 client may have open at once.
const MAX_CONCURRENT_STREAMS: u32 = 256;

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

/// Serves one client connection: on the HTTP/1.1 fast path first when `fast`, and with
/// hyper from the start otherwise, or from the first request the fast path declines.
#[allow(clippy::too_many_arguments)] // One connection's whole context, passed once.
async fn serve_client<I>(
    io: I,
    conn: Conn,
    cert: Option<Arc<ConnCert>>,
    router: Arc<Router>,
    upstream: Arc<Upstream>,
    builders: &Builders,
    settings: h1::Settings,
    signal: Signal,
    fast: bool,
) where
    I: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let timeout = settings.header_read_timeout;
    let proto = Proto::Auto(&builders.auto);
    if !fast {
        let io = PrefaceDeadline::new(io, timeout);
        return serve_connection(io, conn, cert, router, upstream, proto, signal).await;
    }
    if let h1::Ended::Handoff(io, buf) =
        h1::serve(io, conn, &router, &upstream, settings, &signal).await
    {
        let io = PrefaceDeadline::new(Rewind::new(buf.freeze(), io), timeout);
        serve_connection(io, conn, cert, router, upstream, proto, signal).await;
    }
}

/// Which hyper server takes a connection.
#[derive(Clone, Copy)]
enum Proto<'a> {
    /// HTTP/1.1 with upgrades, or HTTP/2 by its preface.
    Auto(&'a auto::Builder<TokioExecutor>),
    /// HTTP/2 only (ALPN chose it).
    H2(&'a http2::Builder<TokioExecutor>),
}

/// Serves one client connection with hyper; when `signal` says to drain, or no request
/// has been open for `idle_timeout`, hyper finishes in-flight requests and closes (GOAWAY
/// for HTTP/2). hyper has no idle timeout of its own for HTTP/2, so without this an idle
/// client (or one sending only pings) would hold the connection forever.
async fn serve_connection<I>(
    io: I,
    conn: Conn,
    cert: Option<Arc<ConnCert>>,
    router: Arc<Router>,
    upstream: Arc<Upstream>,
    proto: Proto<'_>,
    signal: Signal,
) where
    I: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let idle_timeout = router.limits().idle_timeout;
    let activity = Arc::new(Activity::default());
    let svc = {
        let activity = Arc::clone(&activity);
        service_fn(move |mut req: Request<Incoming>| {
            let open = activity.open();
            // The connection's client certificate, checked after its handshake.
            if let Some(cert) = &cert {
                req.extensions_mut().insert(Arc::clone(cert));
            }
            let handled = router.handle(req, conn, &upstream);
            // The request counts as open until its response body is done or dropped.
            async move { Ok::<_, Infallible>(handled.await.map(|b| Holding::new(b, open).boxed())) }
        })
    };
    let io = TokioIo::new(io);
    match proto {
        Proto::Auto(b) => {
            let served = b.serve_connection_with_upgrades(io, svc);
            let shutdown = |c: Pin<&mut auto::UpgradeableConnection<'_, _, _, _>>| {
                c.graceful_shutdown();
            };
            until_done(served, shutdown, &signal, &activity, idle_timeout, conn).await;
        }
        Proto::H2(b) => {
            let served = b.serve_connection(io, svc);
            let shutdown = |c: Pin<&mut http2::Connection<_, _, _>>| c.graceful_shutdown();
            until_done(served, shutdown, &signal, &activity, idle_timeout, conn).await;
        }
    }
}

/// Drives `served` to its end, calling `shutdown` on it (hyper's `graceful_shutdown`) on
/// drain or idleness.
async fn until_done<C, E>(
    served: C,
    shutdown: impl Fn(Pin<&mut C>),
    signal: &Signal,
    activity: &Activity,
    idle_timeout: Duration,
    conn: Conn,
) where
    C: Future<Output = Result<(), E>>,
    E: std::fmt::Display,
{
    let mut served = std::pin::pin!(served);
    let served = tokio::select! {
        biased;
        served = served.as_mut() => served,
        () = signal.draining() => {
            shutdown(served.as_mut());
            served.await
        }
        () = activity.idle_for(idle_timeout) => {
            debug!(remote = %conn.remote, "client connection idle; closing");
            shutdown(served.as_mut());
            served.await
        }
    };
    if let Err(e) = served {
        debug!(remote = %conn.remote, error = %e, "HTTP connection ended with an error");
    }
}

/// Open requests on one connection, and since when none has been.
#[derive(Debug)]
struct Activity {
    open: AtomicUsize,
    quiet_since: Mutex<tokio::time::Instant>,
}

impl Default for Activity {
    fn default() -> Self {
        Self {
            open: AtomicUsize::new(0),
            quiet_since: Mutex::new(tokio::time::Instant::now()),
        }
    }
}

/// One open request of an [`Activity`]; closes it when dropped.
struct Open(Arc<Activity>);

impl Drop for Open {
    fn drop(&mut self) {
        if self.0.open.fetch_sub(1, Ordering::AcqRel) == 1 {
            *self.0.quiet() = tokio::time::Instant::now();
        }
    }
}

impl Activity {
    fn open(self: &Arc<Self>) -> Open {
        self.open.fetch_add(1, Ordering::AcqRel);
        Open(Arc::clone(self))
    }

    fn quiet(&self) -> std::sync::MutexGuard<'_, tokio::time::Instant> {
        self.quiet_since
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Completes once no request has been open for `limit`. Checks when the quiet spell
    /// that started last would end, so requests cost no timer work.
    async fn idle_for(&self, limit: Duration) {
        loop {
            let due = *self.quiet() + limit;
            tokio::time::sleep_until(due).await;
            if self.open.load(Ordering::Acquire) == 0 && *self.quiet() + limit <= due {
                return;
            }
            if self.open.load(Ordering::Acquire) > 0 {
                // Busy: look again a full period from now.
                *self.quiet() = tokio::time::Instant::now();
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use std::os::fd::AsRawFd;

    use super::*;

    /// `getsockopt(level, option)` as an int.
    fn sockopt(socket: &impl AsRawFd, level: libc::c_int, option: libc::c_int) -> libc::c_int {
        let mut value: libc::c_int = -1;
        let mut len = std::mem::size_of::<libc::c_int>() as libc::socklen_t;
        // SAFETY: the fd is open for the borrow; `value` and `len` are live and sized.
        let rc = unsafe {
            libc::getsockopt(
                socket.as_raw_fd(),
                level,
                option,
                std::ptr::from_mut(&mut value).cast(),
                &raw mut len,
            )
        };
        assert_eq!(rc, 0, "getsockopt: {}", io::Error::last_os_error());
        value
    }

    /// What replaces HTTP/2 pings: every accepted connection, whatever its protocol, has
    /// TCP keepalive with the first probe after the idle timeout (at least a second, at
    /// most what Linux accepts, so a long `--idle-timeout` cannot stop the listener binding).
    #[tokio::test]
    async fn accepted_connections_inherit_tcp_keepalive_from_the_listener() {
        let cases = [
            (Duration::from_secs(75), 75),
            (Duration::ZERO, 1),
            (Duration::from_secs(86_400), 32_767),
        ];
        for (idle, first_probe) in cases {
            let listener = bind_one(SocketAddr::from(([127, 0, 0, 1], 0)), false, idle).unwrap();
            let _client = std::net::TcpStream::connect(listener.local_addr().unwrap()).unwrap();
            let (accepted, _) = listener.accept().unwrap();
            let tcp = |option| sockopt(&accepted, libc::IPPROTO_TCP, option);
            assert_eq!(sockopt(&accepted, libc::SOL_SOCKET, libc::SO_KEEPALIVE), 1);
            assert_eq!(tcp(libc::TCP_KEEPIDLE), first_probe, "idle {idle:?}");
            assert_eq!(tcp(libc::TCP_KEEPINTVL), 10);
            assert_eq!(tcp(libc::TCP_KEEPCNT), KEEPALIVE_PROBES);
        }
    }
}
