//! The Gateway listening sockets, following the Snapshots: [`Listeners::sync`] opens a
//! socket per worker for each new listening address and tells the workers to stop
//! accepting on removed ones (their connections finish on their own). An address the
//! Ingress listeners already serve is not bound again ([`Shared`]), nor is a Gateway
//! address whose socket address another one already has. A bind that fails is
//! logged and counted, and retried with the next Snapshot or every [`RETRY`]; it never
//! stops the server.

use std::{
    collections::{BTreeMap, BTreeSet},
    net::{IpAddr, SocketAddr},
    sync::Arc,
    time::Duration,
};

use tokio::sync::mpsc::UnboundedSender;
use tokio_rustls::TlsAcceptor;
use tracing::{debug, info, warn};

use super::bind_one;
use crate::{
    http::{
        metrics::ListenerLabels,
        router::Router,
        tls::{self, CertResolver},
    },
    snapshot::gateway::{GatewayPlane, ListenAddr},
};

/// How often addresses that failed to bind are tried again.
pub(super) const RETRY: Duration = Duration::from_secs(5);

/// What the server tells a worker about Gateway sockets.
pub(super) enum Command {
    /// Accept on this socket (the worker's own of the address's group).
    Open {
        addr: ListenAddr,
        socket: std::net::TcpListener,
        tls: Option<TlsAcceptor>,
    },
    /// Stop accepting on this address's socket.
    Close(ListenAddr),
}

/// Where the Ingress listeners are, to tell which Gateway addresses share them.
#[derive(Clone, Copy, Debug)]
pub(super) struct Shared {
    /// `--bind-address`: where an address without IP listens.
    pub bind_ip: IpAddr,
    /// The bound HTTP and HTTPS listeners.
    pub ingress: [Option<SocketAddr>; 2],
}

impl Shared {
    /// The socket address a Gateway listening address binds.
    pub fn socket_addr(&self, addr: ListenAddr) -> SocketAddr {
        SocketAddr::new(addr.ip.unwrap_or(self.bind_ip), addr.port)
    }

    /// Whether an Ingress listener's sockets already accept connections for `addr`: the
    /// same port, and the same IP or an Ingress listener on every address of the family
    /// (`::` takes IPv4 too).
    pub fn is_shared(&self, addr: ListenAddr) -> bool {
        let at = self.socket_addr(addr);
        self.ingress.iter().flatten().any(|l| {
            l.port() == at.port()
                && (l.ip() == at.ip()
                    || (l.ip().is_unspecified() && (l.ip().is_ipv6() || at.ip().is_ipv4())))
        })
    }
}

/// A Gateway address with sockets of its own.
struct Open {
    tls: bool,
    /// Its certificate resolver (HTTPS), pruned with each Snapshot.
    resolver: Option<Arc<CertResolver>>,
}

/// The Gateway sockets the workers accept on.
pub(super) struct Listeners {
    shared: Shared,
    workers: Vec<UnboundedSender<Command>>,
    open: BTreeMap<ListenAddr, Open>,
    failed: BTreeSet<ListenAddr>,
    /// The resolver Gateway resolvers share a default certificate with.
    base: Option<Arc<CertResolver>>,
    /// The process's session resumption state, shared with the Ingress HTTPS socket.
    resumption: tls::Resumption,
    router: Arc<Router>,
}

impl Listeners {
    /// No Gateway sockets yet; `workers` take commands, `base` is the Ingress HTTPS
    /// resolver if there is one.
    pub fn new(
        shared: Shared,
        workers: Vec<UnboundedSender<Command>>,
        base: Option<Arc<CertResolver>>,
        resumption: tls::Resumption,
        router: Arc<Router>,
    ) -> Self {
        Self {
            shared,
            workers,
            open: BTreeMap::new(),
            failed: BTreeSet::new(),
            base,
            resumption,
            router,
        }
    }

    /// Makes the open sockets those of `plane`: closes removed addresses (and those whose
    /// protocol changed), opens new ones, retries failed ones.
    pub fn sync(&mut self, plane: &GatewayPlane) {
        // One socket group per socket address: a Gateway without addresses and one with
        // `--bind-address` as its address share it (the router tries both).
        let mut by_socket: BTreeMap<SocketAddr, (ListenAddr, bool)> = BTreeMap::new();
        for (addr, routes) in &plane.ports {
            if !self.shared.is_shared(*addr) {
                by_socket
                    .entry(self.shared.socket_addr(*addr))
                    .or_insert((*addr, routes.tls));
            }
        }
        let wanted: BTreeMap<ListenAddr, bool> = by_socket.into_values().collect();
        let gone: Vec<ListenAddr> = self
            .open
            .iter()
            .filter(|(a, o)| wanted.get(a) != Some(&o.tls))
            .map(|(a, _)| *a)
            .collect();
        for addr in gone {
            self.close(addr);
        }
        let before = std::mem::take(&mut self.failed);
        for (addr, tls) in wanted {
            if !self.open.contains_key(&addr) {
                self.open_one(addr, tls, before.contains(&addr));
            }
        }
    }

    /// Whether some address failed to bind (and is worth another try).
    pub fn has_failed(&self) -> bool {
        !self.failed.is_empty()
    }

    /// Drops cached TLS keys no Snapshot uses any more.
    pub fn prune(&self) {
        for resolver in self.open.values().filter_map(|o| o.resolver.as_ref()) {
            resolver.prune();
        }
    }

    /// Binds `addr` for every worker; `again` when it failed last time too (logged at
    /// debug level then: the retries of an address that cannot be bound are not news).
    fn open_one(&mut self, addr: ListenAddr, tls: bool, again: bool) {
        let at = self.shared.socket_addr(addr);
        let metrics = Arc::clone(self.router.metrics());
        let fail = |failed: &mut BTreeSet<ListenAddr>, error: &dyn std::fmt::Display| {
            if again {
                debug!(%addr, socket = %at, %error, "opening a Gateway listening address failed again");
            } else {
                warn!(%addr, socket = %at, %error, "opening a Gateway listening address failed; retrying with the next snapshot and every few seconds");
            }
            metrics
                .listener_bind_errors
                .get_or_create(&ListenerLabels {
                    address: at.to_string(),
                })
                .inc();
            failed.insert(addr);
        };
        let keepalive = self.router.limits().idle_timeout;
        let group = match bind_group(at, self.workers.len(), keepalive) {
            Ok(group) => group,
            Err(e) => return fail(&mut self.failed, &e),
        };
        let (acceptor, resolver) = if tls {
            match self.acceptor(addr) {
                Ok((a, r)) => (Some(a), Some(r)),
                Err(e) => return fail(&mut self.failed, &e),
            }
        } else {
            (None, None)
        };
        for (worker, socket) in self.workers.iter().zip(group) {
            let _ = worker.send(Command::Open {
                addr,
                socket,
                tls: acceptor.clone(),
            });
        }
        metrics.gateway_listeners.inc();
        info!(%addr, socket = %at, tls, "Gateway listening address open");
        self.open.insert(addr, Open { tls, resolver });
    }

    fn close(&mut self, addr: ListenAddr) {
        if self.open.remove(&addr).is_none() {
            return;
        }
        for worker in &self.workers {
            let _ = worker.send(Command::Close(addr));
        }
        self.router.metrics().gateway_listeners.dec();
        info!(%addr, "Gateway listening address closed; its connections finish");
    }

    fn acceptor(
        &mut self,
        addr: ListenAddr,
    ) -> Result<(TlsAcceptor, Arc<CertResolver>), tls::Error> {
        let base = match &self.base {
            Some(b) => Arc::clone(b),
            None => {
                let b = Arc::new(CertResolver::new(self.router.snapshot_cell())?);
                self.base = Some(Arc::clone(&b));
                b
            }
        };
        let resolver = Arc::new(base.for_gateway(addr));
        let acceptor = tls::acceptor(Arc::clone(&resolver) as _, &self.resumption)?;
        Ok((acceptor, resolver))
    }
}

impl Drop for Listeners {
    fn drop(&mut self) {
        let open = i64::try_from(self.open.len()).unwrap_or(i64::MAX);
        self.router.metrics().gateway_listeners.dec_by(open);
    }
}

/// One socket per worker on `at`, all with `SO_REUSEPORT`: the workers share the port,
/// a socket of an address being reopened may overlap its closing predecessor, and an
/// address-specific socket may sit beside a wildcard one on the same port.
fn bind_group(
    at: SocketAddr,
    workers: usize,
    keepalive: Duration,
) -> std::io::Result<Vec<std::net::TcpListener>> {
    let mut group = Vec::with_capacity(workers);
    let mut addr = at;
    for _ in 0..workers.max(1) {
        let socket = bind_one(addr, true, keepalive)?;
        addr = socket.local_addr()?;
        group.push(socket);
    }
    Ok(group)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(ip: Option<&str>, port: u16) -> ListenAddr {
        ListenAddr {
            ip: ip.map(|i| i.parse().unwrap()),
            port,
        }
    }

    #[test]
    fn gateway_addresses_share_an_ingress_listener_on_its_address_and_port() {
        let shared = |bind: &str, http: &str, https: Option<&str>| Shared {
            bind_ip: bind.parse().unwrap(),
            ingress: [
                Some(http.parse().unwrap()),
                https.map(|h| h.parse().unwrap()),
            ],
        };
        let all = shared("0.0.0.0", "0.0.0.0:80", Some("0.0.0.0:443"));
        let one = shared("127.0.0.1", "127.0.0.1:80", Some("127.0.0.1:443"));
        let v6 = shared("::", "[::]:80", None);
        // (Ingress listeners, Gateway address, shared)
        for (s, addr, want) in [
            (all, at(None, 80), true),
            (all, at(None, 443), true),
            (all, at(Some("10.0.0.5"), 80), true),
            (all, at(None, 8080), false),
            (all, at(Some("::1"), 80), false),
            (one, at(None, 80), true),
            (one, at(Some("127.0.0.1"), 443), true),
            (one, at(Some("127.0.0.2"), 80), false),
            (one, at(None, 81), false),
            (v6, at(Some("127.0.0.2"), 80), true),
            (v6, at(Some("::1"), 80), true),
            (v6, at(None, 443), false),
        ] {
            assert_eq!(s.is_shared(addr), want, "{:?} {addr}", s.ingress);
        }
        assert_eq!(
            one.socket_addr(at(None, 8080)),
            "127.0.0.1:8080".parse::<SocketAddr>().unwrap()
        );
    }
}
