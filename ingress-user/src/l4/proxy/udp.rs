//! UDP: a session per client address, each with its own connected upstream socket, so
//! replies are told apart by socket and relayed to the right client. A session ends after
//! the idle timeout, or when its endpoint answers with ICMP port unreachable (so the next
//! datagram picks an endpoint again).

use std::{
    cell::RefCell,
    collections::HashMap,
    io,
    net::{Ipv4Addr, Ipv6Addr, SocketAddr},
    sync::{
        Arc,
        atomic::{AtomicU64, Ordering},
    },
    time::Duration,
};

use tokio::{
    net::UdpSocket,
    task::{AbortHandle, JoinSet},
    time::Instant,
};
use tracing::{debug, warn};

use super::{
    Shared,
    stats::{Gauge, ServiceStats},
};

/// The largest UDP payload.
const MAX_DATAGRAM: usize = 65_535;

thread_local! {
    /// One receive buffer per worker thread for the reply paths, so an idle session holds
    /// no 64 KiB buffer of its own.
    static REPLY_BUF: RefCell<Vec<u8>> = RefCell::new(vec![0; MAX_DATAGRAM]);
}

struct Session {
    id: u64,
    upstream: Arc<UdpSocket>,
    /// Milliseconds since `epoch` of the last datagram either way.
    last: Arc<AtomicU64>,
    task: AbortHandle,
}

/// Relays datagrams until the task is aborted; aborting it drops the session tasks too
/// (they live in the `JoinSet` this future owns).
pub(super) async fn serve(socket: UdpSocket, shared: Arc<Shared>) {
    let socket = Arc::new(socket);
    let epoch = Instant::now();
    let mut sessions: HashMap<SocketAddr, Session> = HashMap::new();
    let mut tasks: JoinSet<(SocketAddr, u64)> = JoinSet::new();
    let mut next_id = 0;
    let mut buf = vec![0; MAX_DATAGRAM];
    loop {
        tokio::select! {
            received = socket.recv_from(&mut buf) => match received {
                Ok((n, client)) => {
                    let table = Table { sessions: &mut sessions, tasks: &mut tasks, next_id: &mut next_id, epoch };
                    datagram(&buf[..n], client, &socket, &shared, table).await;
                }
                Err(e) => {
                    // ICMP errors for earlier replies surface here on Linux; nothing to do.
                    debug!(port = shared.port, error = %e, "UDP receive failed");
                }
            },
            Some(done) = tasks.join_next(), if !tasks.is_empty() => {
                // Forget the session unless it was already replaced (an aborted task's
                // result is an error, a replaced one's id differs).
                if let Ok((client, id)) = done
                    && sessions.get(&client).is_some_and(|s| s.id == id)
                {
                    sessions.remove(&client);
                }
            }
        }
    }
}

/// The session table and what creating a session needs.
struct Table<'a> {
    sessions: &'a mut HashMap<SocketAddr, Session>,
    tasks: &'a mut JoinSet<(SocketAddr, u64)>,
    next_id: &'a mut u64,
    epoch: Instant,
}

async fn datagram(
    data: &[u8],
    client: SocketAddr,
    socket: &Arc<UdpSocket>,
    shared: &Arc<Shared>,
    table: Table<'_>,
) {
    let Table {
        sessions,
        tasks,
        next_id,
        epoch,
    } = table;
    let stats = &shared.stats;
    // A session whose task ended but is not reaped yet cannot relay replies: replace it.
    if sessions.get(&client).is_some_and(|s| s.task.is_finished()) {
        sessions.remove(&client);
    }
    if !sessions.contains_key(&client) {
        if sessions.len() >= shared.opts.udp_max_sessions {
            ServiceStats::inc(&stats.udp_sessions_full);
            debug!(%client, port = shared.port, "UDP session table full; dropping the datagram");
            return;
        }
        let target = shared.target.load();
        let Some(endpoint) = shared.pick(&target, None) else {
            ServiceStats::inc(&stats.no_endpoint);
            debug!(%client, port = shared.port, service = %target.service, "no endpoints; dropping the datagram");
            return;
        };
        let upstream = match open_upstream(endpoint).await {
            Ok(s) => Arc::new(s),
            Err(e) => {
                ServiceStats::inc(&stats.connect_errors);
                warn!(%client, %endpoint, port = shared.port, error = %e, "opening a UDP session failed");
                return;
            }
        };
        let last = Arc::new(AtomicU64::new(millis(epoch)));
        let id = *next_id;
        *next_id += 1;
        let task = tasks.spawn(replies(
            Relay {
                id,
                upstream: Arc::clone(&upstream),
                socket: Arc::clone(socket),
                client,
                endpoint,
                last: Arc::clone(&last),
                epoch,
            },
            Arc::clone(shared),
        ));
        ServiceStats::inc(&stats.udp_sessions);
        debug!(%client, %endpoint, port = shared.port, "UDP session opened");
        sessions.insert(
            client,
            Session {
                id,
                upstream,
                last,
                task,
            },
        );
    }
    let Some(session) = sessions.get(&client) else {
        return;
    };
    session.last.store(millis(epoch), Ordering::Relaxed);
    // `send` waits only while the socket buffer is full (rare and short for UDP); the
    // non-blocking `try_send` would drop the first datagram of every new session, whose
    // socket has no readiness yet.
    match session.upstream.send(data).await {
        Ok(n) => ServiceStats::add(&stats.bytes_in, n as u64),
        Err(e) => {
            // ECONNREFUSED from an earlier ICMP: end the session; the next datagram re-picks.
            ServiceStats::inc(&stats.connect_errors);
            debug!(%client, port = shared.port, error = %e, "UDP send to the endpoint failed; ending the session");
            if let Some(s) = sessions.remove(&client) {
                s.task.abort();
            }
        }
    }
}

async fn open_upstream(endpoint: SocketAddr) -> io::Result<UdpSocket> {
    let local: SocketAddr = if endpoint.is_ipv4() {
        (Ipv4Addr::UNSPECIFIED, 0).into()
    } else {
        (Ipv6Addr::UNSPECIFIED, 0).into()
    };
    let socket = UdpSocket::bind(local).await?;
    socket.connect(endpoint).await?;
    Ok(socket)
}

/// One session's reply path.
struct Relay {
    id: u64,
    upstream: Arc<UdpSocket>,
    /// The listener socket, which replies leave from.
    socket: Arc<UdpSocket>,
    client: SocketAddr,
    endpoint: SocketAddr,
    last: Arc<AtomicU64>,
    epoch: Instant,
}

/// Relays one session's replies to its client until it is idle for the timeout or the
/// endpoint refuses. Returns the client and session id, so the table can forget it.
async fn replies(relay: Relay, shared: Arc<Shared>) -> (SocketAddr, u64) {
    let Relay {
        id,
        upstream,
        socket,
        client,
        endpoint,
        last,
        epoch,
    } = relay;
    let stats = &shared.stats;
    let _active = Gauge::up(&stats.udp_sessions_active);
    let idle = shared.opts.udp_idle_timeout;
    loop {
        let deadline = epoch + Duration::from_millis(last.load(Ordering::Relaxed)) + idle;
        tokio::select! {
            ready = upstream.readable() => if let Err(e) = ready {
                debug!(%client, %endpoint, error = %e, "UDP session socket failed");
                return (client, id);
            },
            () = tokio::time::sleep_until(deadline) => {
                if Instant::now() >= epoch + Duration::from_millis(last.load(Ordering::Relaxed)) + idle {
                    debug!(%client, %endpoint, "UDP session idle; closing");
                    return (client, id);
                }
                continue;
            }
        }
        loop {
            let relayed = REPLY_BUF.with_borrow_mut(|buf| {
                let n = upstream.try_recv(buf)?;
                Ok::<_, io::Error>(match socket.try_send_to(&buf[..n], client) {
                    Ok(_) => Relayed::Sent(n),
                    // No send readiness cached yet, or a full buffer: send it the slow way.
                    Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                        Relayed::Later(buf[..n].to_vec())
                    }
                    Err(e) => Relayed::Failed(n, e),
                })
            });
            let n = match relayed {
                Ok(Relayed::Sent(n)) => n,
                Ok(Relayed::Later(datagram)) => {
                    if let Err(e) = socket.send_to(&datagram, client).await {
                        debug!(%client, error = %e, "UDP reply to the client failed");
                    }
                    datagram.len()
                }
                Ok(Relayed::Failed(n, e)) => {
                    debug!(%client, error = %e, "UDP reply to the client failed");
                    n
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
                Err(e) => {
                    if e.kind() == io::ErrorKind::ConnectionRefused {
                        ServiceStats::inc(&stats.connect_errors);
                    }
                    debug!(%client, %endpoint, error = %e, "UDP endpoint error; ending the session");
                    return (client, id);
                }
            };
            last.store(millis(epoch), Ordering::Relaxed);
            ServiceStats::add(&stats.bytes_out, n as u64);
        }
    }
}

enum Relayed {
    Sent(usize),
    Later(Vec<u8>),
    Failed(usize, io::Error),
}

fn millis(epoch: Instant) -> u64 {
    u64::try_from(epoch.elapsed().as_millis()).unwrap_or(u64::MAX)
}
