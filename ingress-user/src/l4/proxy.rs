//! The userspace L4 proxy: a tokio TCP/UDP forwarder over the Snapshot's L4 services.
//!
//! It serves every L4 service under `--l4-mode userspace` (where eBPF cannot load, and as
//! the benchmark baseline) and, in every mode, the PROXY-protocol entries, since those change
//! the byte stream. [`L4Proxy::apply`] takes a new service set at any time and diffs it
//! against the running listeners:
//! - a new port gets a listener (a bind failure is logged, counted and retried on the next
//!   apply; it never stops the other ports);
//! - a removed port closes its listener; TCP connections already accepted run to completion
//!   (UDP sessions of that port end, since their replies leave through its socket);
//! - a changed service swaps its endpoints and flags in place (`ArcSwap`): established
//!   connections and UDP sessions keep their endpoint, new ones use the new set.
//!
//! Endpoint choice is round-robin per listener, for TCP connections and new UDP sessions
//! alike. It spreads a single client evenly (the benchmark case), where a hash of the
//! client address would pin it to one endpoint; stickiness is not needed, since each TCP
//! connection and each UDP session keeps its endpoint for its whole life. A failed TCP
//! connect is retried once on the next endpoint. A Gateway API route's weighted backendRefs
//! make the rotation weighted (a small Maglev table, see [`Target`]), with turns that reject
//! for the share of an invalid backendRef.

pub mod proxy_protocol;
pub mod stats;
mod tcp;
mod udp;

use std::{
    collections::{BTreeMap, btree_map::Entry},
    future::Future,
    io,
    net::{IpAddr, Ipv4Addr, SocketAddr},
    sync::{
        Arc, Mutex,
        atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering},
    },
    time::Duration,
};

use arc_swap::ArcSwap;
use tokio::{
    net::{TcpListener, UdpSocket},
    sync::{Notify, watch},
    task::JoinHandle,
};
use tracing::{debug, info, warn};

pub use self::{
    proxy_protocol::Version as ProxyProtocolVersion,
    stats::{ServiceStats, StatsEntry},
};
use crate::config::{L4Protocol, L4Service, ServiceRef, Snapshot};

/// A listener's identity: protocol and external port.
pub type Key = (L4Protocol, u16);

/// How the proxy listens, connects and times out.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Options {
    /// Address every listener binds to (`--bind-address`).
    pub bind_address: IpAddr,
    /// Limit on one connect attempt to an endpoint.
    pub connect_timeout: Duration,
    /// Time a client has to send its whole PROXY protocol header.
    pub proxy_protocol_timeout: Duration,
    /// The header version sent to backends of `proxy_protocol_out` services.
    pub proxy_protocol_version: ProxyProtocolVersion,
    /// A UDP session with no datagram either way for this long is closed.
    pub udp_idle_timeout: Duration,
    /// Most UDP sessions per listener; datagrams from further clients are dropped.
    pub udp_max_sessions: usize,
    /// Copy buffer per direction of a TCP connection.
    pub buffer_size: usize,
    /// How long [`L4Proxy::run`] lets TCP connections finish after shutdown.
    pub shutdown_grace_period: Duration,
}

impl Default for Options {
    fn default() -> Self {
        Self {
            bind_address: IpAddr::V4(Ipv4Addr::UNSPECIFIED),
            connect_timeout: Duration::from_secs(5),
            proxy_protocol_timeout: Duration::from_secs(5),
            proxy_protocol_version: ProxyProtocolVersion::V1,
            udp_idle_timeout: Duration::from_secs(30),
            udp_max_sessions: 16_384,
            buffer_size: 16 * 1024,
            shutdown_grace_period: Duration::from_secs(30),
        }
    }
}

/// Which of a Snapshot's L4 services the proxy serves.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Selection {
    /// All of them (`--l4-mode userspace`).
    All,
    /// Only PROXY-protocol entries; eBPF forwards the rest.
    ProxyProtocolOnly,
}

impl Selection {
    /// Whether this service is the proxy's to serve.
    pub fn includes(self, service: &L4Service) -> bool {
        match self {
            Selection::All => true,
            Selection::ProxyProtocolOnly => needs_userspace(service),
        }
    }
}

/// Whether a service must go through the userspace proxy whatever the mode: PROXY protocol
/// rewrites the byte stream, which the kernel NAT path cannot do.
pub fn needs_userspace(service: &L4Service) -> bool {
    service.protocol == L4Protocol::Tcp && (service.proxy_protocol_in || service.proxy_protocol_out)
}

/// What one [`L4Proxy::apply`] changed.
#[derive(Debug, Default)]
pub struct ApplyReport {
    /// Listeners opened.
    pub opened: Vec<Key>,
    /// Listeners closed.
    pub closed: Vec<Key>,
    /// Listeners whose endpoints or flags changed.
    pub updated: Vec<Key>,
    /// Listeners that could not bind.
    pub failed: Vec<BindError>,
}

/// A listener that could not bind; its port stays closed until a later apply succeeds.
#[derive(Debug, thiserror::Error)]
#[error("binding {protocol} {addr}: {source}")]
pub struct BindError {
    /// TCP or UDP.
    pub protocol: L4Protocol,
    /// The address.
    pub addr: SocketAddr,
    /// The OS error.
    #[source]
    pub source: io::Error,
}

/// What a listener serves now. Swapped whole on a change; the data path loads it once per
/// connection or session.
#[derive(Debug, PartialEq, Eq)]
struct Target {
    service: ServiceRef,
    endpoints: Vec<SocketAddr>,
    /// Weighted routes (Gateway API backendRefs): the round-robin order, each endpoint as
    /// often as its share and `None` for the rejected share. Empty: plain round-robin over
    /// `endpoints`.
    picks: Vec<Option<SocketAddr>>,
    proxy_protocol_in: bool,
    proxy_protocol_out: bool,
}

impl From<&L4Service> for Target {
    fn from(s: &L4Service) -> Self {
        Self {
            service: s.service.clone(),
            endpoints: s.endpoints.clone(),
            picks: picks(s),
            proxy_protocol_in: s.proxy_protocol_in,
            proxy_protocol_out: s.proxy_protocol_out,
        }
    }
}

/// Length of a weighted pick list: prime (a Maglev table), and fine enough that a share is
/// exact to 0.2%.
const PICKS: u32 = 509;

/// The weighted round-robin order of a service with a split (see [`Target::picks`]): a
/// small Maglev table, so an endpoint's turns are spread over the rotation.
fn picks(s: &L4Service) -> Vec<Option<SocketAddr>> {
    if s.split.is_empty() {
        return Vec::new();
    }
    let shares = s.shares();
    let keys: Vec<String> = shares.iter().map(|(sh, _)| format!("{sh:?}")).collect();
    let weights: Vec<f64> = shares.iter().map(|(_, w)| *w).collect();
    let Ok(table) = super::maglev::weighted(&keys, &weights, PICKS) else {
        return Vec::new();
    };
    table
        .into_iter()
        .map(|i| match shares.get(i as usize) {
            Some((crate::snapshot::Share::To(a), _)) => Some(*a),
            _ => None,
        })
        .collect()
}

/// State one listener's tasks share.
struct Shared {
    port: u16,
    target: ArcSwap<Target>,
    stats: Arc<ServiceStats>,
    next: AtomicUsize,
    opts: Arc<Options>,
    conns: Arc<Tracker>,
    kill: watch::Receiver<bool>,
}

impl Shared {
    /// The next endpoint in round-robin order, skipping `not` when another one exists.
    fn pick(&self, target: &Target, not: Option<SocketAddr>) -> Option<SocketAddr> {
        if !target.picks.is_empty() {
            let p = &target.picks;
            let i = self.next.fetch_add(1, Ordering::Relaxed);
            return match p[i % p.len()] {
                // A retry goes to the next turn that is another endpoint.
                Some(ep) if Some(ep) == not => (1..p.len())
                    .filter_map(|d| p[(i + d) % p.len()])
                    .find(|e| Some(*e) != not)
                    .or(Some(ep)),
                other => other,
            };
        }
        let eps = &target.endpoints;
        if eps.is_empty() {
            return None;
        }
        let i = self.next.fetch_add(1, Ordering::Relaxed);
        let ep = eps[i % eps.len()];
        match not {
            Some(not) if ep == not && eps.len() > 1 => Some(eps[(i + 1) % eps.len()]),
            _ => Some(ep),
        }
    }
}

impl Drop for L4Proxy {
    fn drop(&mut self) {
        for l in self.listeners.get_mut().values() {
            l.task.abort();
        }
        // Open connections see the kill channel close and end.
    }
}

/// Counts open TCP connections, so shutdown can wait for them.
#[derive(Default)]
struct Tracker {
    open: AtomicUsize,
    idle: Notify,
}

impl Tracker {
    fn track(self: &Arc<Self>) -> Tracked {
        self.open.fetch_add(1, Ordering::AcqRel);
        Tracked(Arc::clone(self))
    }

    async fn idle(&self) {
        loop {
            // Registered before the check, so a wake-up in between is not lost.
            let notified = self.idle.notified();
            if self.open.load(Ordering::Acquire) == 0 {
                return;
            }
            notified.await;
        }
    }
}

struct Tracked(Arc<Tracker>);

impl Drop for Tracked {
    fn drop(&mut self) {
        if self.0.open.fetch_sub(1, Ordering::AcqRel) == 1 {
            self.0.idle.notify_waiters();
        }
    }
}

/// A listener's counters and what it served last; kept after the listener closes.
struct Registered {
    service: ServiceRef,
    stats: Arc<ServiceStats>,
    listening: bool,
}

struct Listener {
    shared: Arc<Shared>,
    local: SocketAddr,
    task: JoinHandle<()>,
}

/// The userspace L4 proxy. Share it behind an `Arc`; every method takes `&self`. Dropping
/// it without [`shutdown`](Self::shutdown) is a hard stop: listeners close and open
/// connections are cut.
pub struct L4Proxy {
    opts: Arc<Options>,
    listeners: tokio::sync::Mutex<BTreeMap<Key, Listener>>,
    stats: Mutex<BTreeMap<Key, Registered>>,
    bind_errors: AtomicU64,
    conns: Arc<Tracker>,
    kill: watch::Sender<bool>,
    stopped: AtomicBool,
}

impl L4Proxy {
    /// A proxy with no listeners; [`apply`](Self::apply) opens them.
    pub fn new(opts: Options) -> Self {
        Self {
            opts: Arc::new(opts),
            listeners: tokio::sync::Mutex::default(),
            stats: Mutex::default(),
            bind_errors: AtomicU64::new(0),
            conns: Arc::default(),
            kill: watch::Sender::new(false),
            stopped: AtomicBool::new(false),
        }
    }

    /// The options it runs with.
    pub fn options(&self) -> &Options {
        &self.opts
    }

    /// Makes the running listeners match `services` (see the module doc). Needs a tokio
    /// runtime. When `apply` returns, new ports accept and removed ports are closed.
    /// Duplicate (protocol, port) entries: the first wins.
    pub async fn apply(&self, services: &[L4Service]) -> ApplyReport {
        let mut report = ApplyReport::default();
        if self.stopped.load(Ordering::Acquire) {
            warn!(
                services = services.len(),
                "L4 proxy is shut down; ignoring new services"
            );
            return report;
        }
        let mut wanted: BTreeMap<Key, &L4Service> = BTreeMap::new();
        for s in services {
            if let Entry::Vacant(v) = wanted.entry((s.protocol, s.port)) {
                v.insert(s);
            } else {
                warn!(protocol = %s.protocol, port = s.port, service = %s.service, "duplicate L4 port; keeping the first entry");
            }
        }
        let mut listeners = self.listeners.lock().await;

        // Gone, or to bind elsewhere (a Gateway's address changed): closed, then reopened.
        let removed: Vec<Key> = listeners
            .iter()
            .filter(|(k, l)| {
                wanted
                    .get(k)
                    .is_none_or(|s| self.bind_ip(s) != l.local.ip())
            })
            .map(|(k, _)| *k)
            .collect();
        for key in removed {
            if let Some(l) = listeners.remove(&key) {
                l.task.abort();
                let _ = l.task.await; // the listening socket is closed once this returns
                self.set_listening(key, false);
                info!(protocol = %key.0, port = key.1, service = %l.shared.target.load().service, "L4 listener closed");
                report.closed.push(key);
            }
        }

        for (key, service) in wanted {
            let target = Target::from(service);
            if let Some(l) = listeners.get(&key) {
                if **l.shared.target.load() != target {
                    info!(protocol = %key.0, port = key.1, service = %target.service, endpoints = target.endpoints.len(), "L4 service updated");
                    self.remember(key, &target.service);
                    l.shared.target.store(Arc::new(target));
                    report.updated.push(key);
                }
                continue;
            }
            match self.open(key, target, self.bind_ip(service)).await {
                Ok(l) => {
                    info!(protocol = %key.0, addr = %l.local, service = %l.shared.target.load().service, endpoints = l.shared.target.load().endpoints.len(), "L4 listener open");
                    listeners.insert(key, l);
                    self.set_listening(key, true);
                    report.opened.push(key);
                }
                Err(e) => {
                    self.bind_errors.fetch_add(1, Ordering::Relaxed);
                    warn!(protocol = %key.0, port = key.1, error = %e, "L4 listener could not bind; will retry on the next change");
                    report.failed.push(e);
                }
            }
        }
        report
    }

    /// Where a service listens: the first of its Gateway's addresses (one listener per
    /// protocol and port here), else `--bind-address`.
    fn bind_ip(&self, s: &L4Service) -> IpAddr {
        s.addrs.first().copied().unwrap_or(self.opts.bind_address)
    }

    async fn open(&self, key: Key, target: Target, ip: IpAddr) -> Result<Listener, BindError> {
        let (protocol, port) = key;
        let addr = SocketAddr::new(ip, port);
        let bind_error = |source| BindError {
            protocol,
            addr,
            source,
        };
        let stats = self.remember(key, &target.service);
        let shared = Arc::new(Shared {
            port,
            target: ArcSwap::from_pointee(target),
            stats,
            next: AtomicUsize::new(0),
            opts: Arc::clone(&self.opts),
            conns: Arc::clone(&self.conns),
            kill: self.kill.subscribe(),
        });
        let (local, task) = match protocol {
            L4Protocol::Tcp => {
                let listener = TcpListener::bind(addr).await.map_err(bind_error)?;
                let local = listener.local_addr().map_err(bind_error)?;
                (
                    local,
                    tokio::spawn(tcp::serve(listener, Arc::clone(&shared))),
                )
            }
            L4Protocol::Udp => {
                let socket = UdpSocket::bind(addr).await.map_err(bind_error)?;
                let local = socket.local_addr().map_err(bind_error)?;
                (local, tokio::spawn(udp::serve(socket, Arc::clone(&shared))))
            }
        };
        Ok(Listener {
            shared,
            local,
            task,
        })
    }

    fn registry(&self) -> std::sync::MutexGuard<'_, BTreeMap<Key, Registered>> {
        self.stats
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// The counters of `key`, created on first use and kept for good; records its service.
    fn remember(&self, key: Key, service: &ServiceRef) -> Arc<ServiceStats> {
        let mut registry = self.registry();
        let entry = registry.entry(key).or_insert_with(|| Registered {
            service: service.clone(),
            stats: Arc::default(),
            listening: false,
        });
        entry.service.clone_from(service);
        Arc::clone(&entry.stats)
    }

    fn set_listening(&self, key: Key, listening: bool) {
        if let Some(entry) = self.registry().get_mut(&key) {
            entry.listening = listening;
        }
    }

    /// The bound address of a listener (tells the real port when the service asked for 0).
    pub async fn local_addr(&self, protocol: L4Protocol, port: u16) -> Option<SocketAddr> {
        self.listeners
            .lock()
            .await
            .get(&(protocol, port))
            .map(|l| l.local)
    }

    /// Every listener's counters, open or not, ordered by (protocol, port). Async for
    /// callers written against the first version; [`stats_now`](Self::stats_now) is the
    /// same without `.await`.
    pub async fn stats(&self) -> Vec<StatsEntry> {
        self.stats_now()
    }

    /// [`stats`](Self::stats), synchronously (for a metrics collector's `encode`).
    pub fn stats_now(&self) -> Vec<StatsEntry> {
        self.registry()
            .iter()
            .map(|(&(protocol, port), r)| StatsEntry {
                protocol,
                port,
                service: r.service.clone(),
                listening: r.listening,
                stats: Arc::clone(&r.stats),
            })
            .collect()
    }

    /// Listener binds that failed, over the proxy's life.
    pub fn bind_errors(&self) -> u64 {
        self.bind_errors.load(Ordering::Relaxed)
    }

    /// TCP connections open now, over all listeners (including removed ones).
    pub fn open_connections(&self) -> usize {
        self.conns.open.load(Ordering::Acquire)
    }

    /// Stops for good: closes every listener (UDP sessions end with them), lets open TCP
    /// connections finish for up to `grace`, then drops the rest. Later applies are ignored.
    pub async fn shutdown(&self, grace: Duration) {
        self.stopped.store(true, Ordering::Release);
        let listeners = std::mem::take(&mut *self.listeners.lock().await);
        for (key, l) in listeners {
            l.task.abort();
            let _ = l.task.await;
            self.set_listening(key, false);
        }
        let open = self.open_connections();
        info!(connections = open, ?grace, "L4 listeners closed; draining");
        if tokio::time::timeout(grace, self.conns.idle()).await.is_ok() {
            info!("all L4 connections drained");
        } else {
            warn!(
                connections = self.open_connections(),
                "grace period over; closing the remaining L4 connections"
            );
            self.kill.send_replace(true);
            self.conns.idle().await;
        }
    }

    /// Follows a Snapshot channel until `shutdown` completes: applies the selected services
    /// of the current and every later Snapshot, then [`shutdown`](Self::shutdown)s with the
    /// configured grace period.
    pub async fn run(
        &self,
        mut snapshots: watch::Receiver<Arc<Snapshot>>,
        selection: Selection,
        shutdown: impl Future<Output = ()>,
    ) {
        tokio::pin!(shutdown);
        let mut watching = true;
        let mut first = true;
        loop {
            if first || watching {
                let snapshot = Arc::clone(&snapshots.borrow_and_update());
                let selected: Vec<L4Service> = snapshot
                    .l4
                    .iter()
                    .filter(|s| selection.includes(s))
                    .cloned()
                    .collect();
                let report = self.apply(&selected).await;
                debug!(
                    opened = report.opened.len(),
                    closed = report.closed.len(),
                    updated = report.updated.len(),
                    failed = report.failed.len(),
                    "L4 proxy applied a snapshot"
                );
                first = false;
            }
            tokio::select! {
                () = &mut shutdown => break,
                changed = snapshots.changed(), if watching => if changed.is_err() {
                    debug!("snapshot publisher gone; keeping the last L4 services");
                    watching = false;
                },
            }
        }
        self.shutdown(self.opts.shutdown_grace_period).await;
    }
}
