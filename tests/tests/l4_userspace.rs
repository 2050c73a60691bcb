//! The userspace L4 proxy (`--l4-mode userspace`, PROXY-protocol entries, the benchmark
//! baseline) with real sockets on 127.0.0.1 and real servers behind it: redis-server, TCP
//! and UDP echo servers, and a recording server for PROXY protocol.

use std::{
    io,
    net::{Ipv4Addr, SocketAddr},
    sync::atomic::AtomicU64,
    time::Duration,
};

use ingress_tests::servers::{
    RecordingServer, RedisServer, TcpEchoServer, UdpEchoServer, free_tcp_port, free_udp_port,
    redis_cli,
};
use tokio::{
    io::{AsyncReadExt, AsyncWriteExt},
    net::{TcpStream, UdpSocket},
};
use xdp_ingress::{
    config::{L4Protocol, L4Service, ServiceRef, Snapshot},
    l4::proxy::{L4Proxy, Options, ProxyProtocolVersion, Selection, ServiceStats, StatsEntry},
};

/// Guards every wait in this suite against hanging; never a timing assertion.
const HANG: Duration = Duration::from_secs(20);

fn loopback(port: u16) -> SocketAddr {
    SocketAddr::from((Ipv4Addr::LOCALHOST, port))
}

fn service(protocol: L4Protocol, port: u16, endpoints: &[SocketAddr]) -> L4Service {
    L4Service {
        port,
        protocol,
        service: ServiceRef {
            namespace: "default".to_owned(),
            name: format!("svc-{port}"),
            port: 80,
        },
        endpoints: endpoints.to_vec(),
        proxy_protocol_in: false,
        proxy_protocol_out: false,
        addrs: Vec::new(),
        split: Vec::new(),
    }
}

fn tcp(port: u16, endpoints: &[SocketAddr]) -> L4Service {
    service(L4Protocol::Tcp, port, endpoints)
}

fn proxy() -> L4Proxy {
    proxy_with(Options::default())
}

fn proxy_with(mut opts: Options) -> L4Proxy {
    opts.bind_address = Ipv4Addr::LOCALHOST.into();
    L4Proxy::new(opts)
}

/// Applies `services` and insists every listener opened.
async fn apply(proxy: &L4Proxy, services: &[L4Service]) {
    let report = proxy.apply(services).await;
    assert!(
        report.failed.is_empty(),
        "binding failed: {:?}",
        report.failed
    );
}

fn stats(proxy: &L4Proxy, protocol: L4Protocol, port: u16) -> StatsEntry {
    proxy
        .stats_now()
        .into_iter()
        .find(|e| e.protocol == protocol && e.port == port)
        .unwrap_or_else(|| panic!("no stats for {protocol} {port}"))
}

fn get(counter: &AtomicU64) -> u64 {
    ServiceStats::get(counter)
}

/// Deterministic bytes that make shifted or dropped chunks visible.
fn pattern(len: usize, seed: u32) -> Vec<u8> {
    let mut x = seed.wrapping_mul(2_654_435_761).wrapping_add(1);
    (0..len)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 17;
            x ^= x << 5;
            x.to_le_bytes()[0]
        })
        .collect()
}

/// Sends `data` and half-closes while reading everything the other side sends until it
/// closes; returns what was read.
async fn exchange(stream: TcpStream, data: &[u8]) -> Vec<u8> {
    let (mut r, mut w) = stream.into_split();
    let data = data.to_vec();
    let writer = tokio::spawn(async move {
        w.write_all(&data).await.expect("write");
        w.shutdown().await.expect("half-close");
    });
    let mut got = Vec::new();
    tokio::time::timeout(HANG, r.read_to_end(&mut got))
        .await
        .expect("reading hung")
        .expect("read");
    writer.await.expect("writer");
    got
}

/// One round trip on an open connection: write `data`, read the same number of bytes back.
async fn round_trip(stream: &mut TcpStream, data: &[u8]) -> Vec<u8> {
    let (mut r, mut w) = stream.split();
    let mut got = vec![0; data.len()];
    let (wrote, read) = tokio::join!(w.write_all(data), async {
        tokio::time::timeout(HANG, r.read_exact(&mut got)).await
    });
    wrote.expect("write");
    read.expect("round trip hung").expect("read");
    got
}

async fn connect(addr: SocketAddr) -> TcpStream {
    tokio::time::timeout(HANG, TcpStream::connect(addr))
        .await
        .expect("connect hung")
        .unwrap_or_else(|e| panic!("connecting to {addr}: {e}"))
}

/// Waits until connecting to `addr` is refused (a listener closes asynchronously from the
/// client's point of view only in the kernel's accept queue; this guards that).
async fn assert_refused(addr: SocketAddr) {
    match tokio::time::timeout(HANG, TcpStream::connect(addr)).await {
        Ok(Err(e)) => assert_eq!(e.kind(), io::ErrorKind::ConnectionRefused, "{addr}: {e}"),
        Ok(Ok(_)) => panic!("{addr} still accepts connections"),
        Err(_) => panic!("connecting to {addr} hung"),
    }
}

/// Connects and expects a TCP RST: either already during connect (the proxy accepted and
/// reset before the client's connect completed) or on the first read.
async fn assert_reset(addr: SocketAddr) {
    let mut stream = match tokio::time::timeout(HANG, TcpStream::connect(addr))
        .await
        .expect("connect hung")
    {
        Ok(s) => s,
        Err(e) => {
            assert_eq!(e.kind(), io::ErrorKind::ConnectionReset, "{addr}: {e}");
            return;
        }
    };
    let mut buf = [0; 16];
    match tokio::time::timeout(HANG, stream.read(&mut buf))
        .await
        .expect("the connection was left open")
    {
        Err(e) => assert_eq!(e.kind(), io::ErrorKind::ConnectionReset, "{addr}: {e}"),
        Ok(n) => panic!("{addr}: expected a reset, read {n} bytes"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redis_ping_and_info_work_through_the_proxy() {
    let redis = RedisServer::start();
    let proxy = proxy();
    let port = free_tcp_port();
    apply(&proxy, &[tcp(port, &[redis.addr()])]).await;

    let ping = redis_cli(loopback(port), &["ping"]).await;
    assert!(ping.status.success(), "redis-cli ping: {ping:?}");
    assert_eq!(String::from_utf8_lossy(&ping.stdout).trim(), "PONG");

    let info = redis_cli(loopback(port), &["info", "server"]).await;
    let info_text = String::from_utf8_lossy(&info.stdout);
    assert!(info.status.success(), "redis-cli info: {info:?}");
    assert!(
        info_text.contains(&format!("tcp_port:{}", redis.addr().port())),
        "info came from the redis behind the proxy: {info_text}"
    );

    let set = redis_cli(loopback(port), &["set", "through", "proxy"]).await;
    assert_eq!(String::from_utf8_lossy(&set.stdout).trim(), "OK");
    let got = redis_cli(loopback(port), &["get", "through"]).await;
    assert_eq!(String::from_utf8_lossy(&got.stdout).trim(), "proxy");

    let s = stats(&proxy, L4Protocol::Tcp, port);
    assert_eq!(
        get(&s.stats.accepted),
        4,
        "one connection per redis-cli run"
    );
    assert!(get(&s.stats.bytes_in) > 0 && get(&s.stats.bytes_out) > 0);
    assert_eq!(s.service.name, format!("svc-{port}"));
    assert!(s.listening);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tcp_echo_is_byte_exact_both_ways_with_half_close() {
    let echo = TcpEchoServer::start().await;
    let proxy = proxy();
    let port = free_tcp_port();
    apply(&proxy, &[tcp(port, &[echo.addr()])]).await;

    let data = pattern(4 << 20, 1);
    let got = exchange(connect(loopback(port)).await, &data).await;
    assert_eq!(got.len(), data.len(), "echo length");
    assert!(got == data, "echo bytes differ");

    // The client half-closed before the tail of the echo came back; it still arrived, and
    // the backend saw the client's FIN (it half-closed in turn, ending our read).
    let s = stats(&proxy, L4Protocol::Tcp, port);
    assert_eq!(get(&s.stats.bytes_in), data.len() as u64);
    assert_eq!(get(&s.stats.bytes_out), data.len() as u64);
    assert_eq!(echo.accepted(), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn backend_answer_after_client_half_close_reaches_the_client() {
    let recorder = RecordingServer::start().await;
    let proxy = proxy();
    let port = free_tcp_port();
    apply(&proxy, &[tcp(port, &[recorder.addr()])]).await;

    let data = pattern(1 << 20, 2);
    // The recorder answers only after it has seen our FIN.
    let answer = exchange(connect(loopback(port)).await, &data).await;
    assert_eq!(
        String::from_utf8_lossy(&answer),
        format!("ok {}\n", data.len())
    );
    assert!(
        recorder.connections() == vec![data],
        "the backend got the stream byte-exact"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn udp_echo_keeps_concurrent_clients_apart() {
    let echo = UdpEchoServer::start().await;
    let proxy = proxy();
    let port = free_udp_port();
    apply(&proxy, &[service(L4Protocol::Udp, port, &[echo.addr()])]).await;

    let clients: Vec<_> = (0..8)
        .map(|c| {
            tokio::spawn(async move {
                let socket = UdpSocket::bind((Ipv4Addr::LOCALHOST, 0))
                    .await
                    .expect("bind client");
                socket
                    .connect(loopback(port))
                    .await
                    .expect("connect client");
                let mut buf = vec![0; 2048];
                for seq in 0..20 {
                    let msg = format!("client {c} datagram {seq} {}", "x".repeat(c * 100));
                    socket.send(msg.as_bytes()).await.expect("send");
                    let n = tokio::time::timeout(HANG, socket.recv(&mut buf))
                        .await
                        .unwrap_or_else(|_| panic!("client {c}: no reply to datagram {seq}"))
                        .expect("recv");
                    assert_eq!(
                        &buf[..n],
                        msg.as_bytes(),
                        "client {c} got another client's reply"
                    );
                }
            })
        })
        .collect();
    for c in clients {
        c.await.expect("client task");
    }

    let s = stats(&proxy, L4Protocol::Udp, port);
    assert_eq!(
        get(&s.stats.udp_sessions),
        8,
        "one session per client address"
    );
    assert_eq!(get(&s.stats.udp_sessions_active), 8);
}

/// A connected UDP client socket.
async fn udp_client(port: u16) -> UdpSocket {
    let socket = UdpSocket::bind((Ipv4Addr::LOCALHOST, 0))
        .await
        .expect("bind client");
    socket
        .connect(loopback(port))
        .await
        .expect("connect client");
    socket
}

async fn udp_round_trip(socket: &UdpSocket, msg: &[u8]) {
    socket.send(msg).await.expect("send");
    let mut buf = [0; 2048];
    let n = tokio::time::timeout(HANG, socket.recv(&mut buf))
        .await
        .expect("no UDP reply")
        .expect("recv");
    assert_eq!(&buf[..n], msg);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_endpoint_change_keeps_udp_sessions_and_moves_new_clients() {
    let (a, b) = (UdpEchoServer::start().await, UdpEchoServer::start().await);
    let proxy = proxy();
    let port = free_udp_port();
    apply(&proxy, &[service(L4Protocol::Udp, port, &[a.addr()])]).await;
    let old = udp_client(port).await;
    udp_round_trip(&old, b"one").await;

    let report = proxy
        .apply(&[service(L4Protocol::Udp, port, &[b.addr()])])
        .await;
    assert_eq!(report.updated, vec![(L4Protocol::Udp, port)]);
    udp_round_trip(&old, b"two").await;
    assert_eq!(
        (a.received(), b.received()),
        (2, 0),
        "the open session kept its endpoint"
    );

    let new = udp_client(port).await;
    udp_round_trip(&new, b"three").await;
    assert_eq!(
        (a.received(), b.received()),
        (2, 1),
        "a new client goes to the new endpoint"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_idle_udp_session_closes_and_the_client_gets_a_new_one() {
    let echo = UdpEchoServer::start().await;
    let proxy = proxy_with(Options {
        udp_idle_timeout: Duration::from_millis(200),
        ..Options::default()
    });
    let port = free_udp_port();
    apply(&proxy, &[service(L4Protocol::Udp, port, &[echo.addr()])]).await;
    let s = stats(&proxy, L4Protocol::Udp, port);

    let client = UdpSocket::bind((Ipv4Addr::LOCALHOST, 0))
        .await
        .expect("bind client");
    client
        .connect(loopback(port))
        .await
        .expect("connect client");
    let mut buf = [0; 64];
    for round in 1..=2 {
        client.send(b"ping").await.expect("send");
        let n = tokio::time::timeout(HANG, client.recv(&mut buf))
            .await
            .expect("no reply")
            .expect("recv");
        assert_eq!(&buf[..n], b"ping");
        assert_eq!(get(&s.stats.udp_sessions), round);
        tokio::time::timeout(HANG, async {
            while get(&s.stats.udp_sessions_active) != 0 {
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
        })
        .await
        .expect("the idle session never closed");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn udp_sessions_are_bounded() {
    let echo = UdpEchoServer::start().await;
    let proxy = proxy_with(Options {
        udp_max_sessions: 2,
        ..Options::default()
    });
    let port = free_udp_port();
    apply(&proxy, &[service(L4Protocol::Udp, port, &[echo.addr()])]).await;
    let mut clients = Vec::new();
    for _ in 0..3 {
        let c = UdpSocket::bind((Ipv4Addr::LOCALHOST, 0))
            .await
            .expect("bind client");
        c.connect(loopback(port)).await.expect("connect client");
        clients.push(c);
    }
    let mut buf = [0; 64];
    for c in &clients[..2] {
        c.send(b"hi").await.expect("send");
        let n = tokio::time::timeout(HANG, c.recv(&mut buf))
            .await
            .expect("no reply")
            .expect("recv");
        assert_eq!(&buf[..n], b"hi");
    }
    clients[2].send(b"hi").await.expect("send");
    let s = stats(&proxy, L4Protocol::Udp, port);
    tokio::time::timeout(HANG, async {
        while get(&s.stats.udp_sessions_full) == 0 {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    })
    .await
    .expect("the third client's datagram was never counted as dropped");
    assert_eq!(get(&s.stats.udp_sessions), 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_down_endpoint_is_retried_on_the_other() {
    let echo = TcpEchoServer::start().await;
    let down = loopback(free_tcp_port()); // nothing listens: connect is refused
    let proxy = proxy();
    let port = free_tcp_port();
    apply(&proxy, &[tcp(port, &[down, echo.addr()])]).await;

    for i in 0..6 {
        let data = pattern(10_000, i);
        let got = exchange(connect(loopback(port)).await, &data).await;
        assert!(got == data, "connection {i} was not served");
    }
    assert_eq!(
        echo.accepted(),
        6,
        "every connection reached the live endpoint"
    );
    let s = stats(&proxy, L4Protocol::Tcp, port);
    assert!(
        get(&s.stats.connect_errors) >= 1,
        "round-robin tried the down endpoint"
    );
    assert_eq!(get(&s.stats.no_endpoint), 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_service_without_endpoints_resets_connections() {
    let proxy = proxy();
    let port = free_tcp_port();
    apply(&proxy, &[tcp(port, &[])]).await;

    assert_reset(loopback(port)).await;
    let s = stats(&proxy, L4Protocol::Tcp, port);
    assert_eq!(get(&s.stats.no_endpoint), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_endpoint_down_resets_the_connection() {
    let proxy = proxy();
    let port = free_tcp_port();
    apply(
        &proxy,
        &[tcp(
            port,
            &[loopback(free_tcp_port()), loopback(free_tcp_port())],
        )],
    )
    .await;

    assert_reset(loopback(port)).await;
    let s = stats(&proxy, L4Protocol::Tcp, port);
    assert_eq!(get(&s.stats.connect_errors), 2, "one try and one retry");
    assert_eq!(get(&s.stats.no_endpoint), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_config_change_keeps_open_connections_and_moves_new_ones() {
    let (a, b) = (TcpEchoServer::start().await, TcpEchoServer::start().await);
    let proxy = proxy();
    let (changed, removed) = (free_tcp_port(), free_tcp_port());
    apply(
        &proxy,
        &[tcp(changed, &[a.addr()]), tcp(removed, &[a.addr()])],
    )
    .await;

    let mut on_changed = connect(loopback(changed)).await;
    let mut on_removed = connect(loopback(removed)).await;
    let first = pattern(1 << 20, 3);
    assert!(round_trip(&mut on_changed, &first).await == first);
    assert!(round_trip(&mut on_removed, &first).await == first);
    assert_eq!(a.accepted(), 2);

    let report = proxy.apply(&[tcp(changed, &[b.addr()])]).await;
    assert_eq!(report.updated, vec![(L4Protocol::Tcp, changed)]);
    assert_eq!(report.closed, vec![(L4Protocol::Tcp, removed)]);
    assert!(
        report.opened.is_empty() && report.failed.is_empty(),
        "{report:?}"
    );

    // Both open connections keep working, byte-exact, on their old endpoint.
    let second = pattern(1 << 20, 4);
    assert!(round_trip(&mut on_changed, &second).await == second);
    assert!(round_trip(&mut on_removed, &second).await == second);
    assert!(exchange(on_changed, b"tail").await == b"tail");
    assert!(exchange(on_removed, b"tail").await == b"tail");

    // New connections go to the new endpoint; the removed port is closed.
    let fresh = pattern(100_000, 5);
    assert!(exchange(connect(loopback(changed)).await, &fresh).await == fresh);
    assert_eq!((a.accepted(), b.accepted()), (2, 1));
    assert_refused(loopback(removed)).await;
    let s = stats(&proxy, L4Protocol::Tcp, removed);
    assert!(
        !s.listening,
        "a removed port keeps its counters but is not listening"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_removed_port_can_come_back_while_its_old_connections_run() {
    let echo = TcpEchoServer::start().await;
    let proxy = proxy();
    let port = free_tcp_port();
    apply(&proxy, &[tcp(port, &[echo.addr()])]).await;
    let mut old = connect(loopback(port)).await;
    assert!(round_trip(&mut old, b"before").await == b"before");

    apply(&proxy, &[]).await;
    assert_refused(loopback(port)).await;
    let report = proxy.apply(&[tcp(port, &[echo.addr()])]).await;
    assert_eq!(report.opened, vec![(L4Protocol::Tcp, port)], "{report:?}");

    assert!(exchange(connect(loopback(port)).await, b"new").await == b"new");
    assert!(exchange(old, b"old").await == b"old");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_port_that_cannot_bind_is_counted_and_the_others_open() {
    let echo = TcpEchoServer::start().await;
    let taken = std::net::TcpListener::bind((Ipv4Addr::LOCALHOST, 0)).expect("bind");
    let taken_port = taken.local_addr().expect("addr").port();
    let proxy = proxy();
    let free = free_tcp_port();

    let report = proxy
        .apply(&[tcp(taken_port, &[echo.addr()]), tcp(free, &[echo.addr()])])
        .await;
    assert_eq!(report.opened, vec![(L4Protocol::Tcp, free)]);
    assert_eq!(report.failed.len(), 1, "{report:?}");
    assert_eq!(report.failed[0].addr, loopback(taken_port));
    assert_eq!(report.failed[0].source.kind(), io::ErrorKind::AddrInUse);
    assert_eq!(proxy.bind_errors(), 1);
    assert!(exchange(connect(loopback(free)).await, b"fine").await == b"fine");

    // Once the port is free, the next apply opens it.
    drop(taken);
    let report = proxy
        .apply(&[tcp(taken_port, &[echo.addr()]), tcp(free, &[echo.addr()])])
        .await;
    assert_eq!(
        report.opened,
        vec![(L4Protocol::Tcp, taken_port)],
        "{report:?}"
    );
}

/// A v2 header from 192.0.2.1:12345 to 198.51.100.7:9000, written out by hand.
const V2_HEADER: &[u8] = &[
    0x0d, 0x0a, 0x0d, 0x0a, 0x00, 0x0d, 0x0a, 0x51, 0x55, 0x49, 0x54, 0x0a, // signature
    0x21, 0x11, 0x00, 0x0c, // v2 PROXY, INET STREAM, 12 bytes
    192, 0, 2, 1, 198, 51, 100, 7, // addresses
    0x30, 0x39, 0x23, 0x28, // ports 12345, 9000
];

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn proxy_protocol_in_strips_v1_and_v2_headers() {
    let recorder = RecordingServer::start().await;
    let proxy = proxy();
    let port = free_tcp_port();
    let mut svc = tcp(port, &[recorder.addr()]);
    svc.proxy_protocol_in = true;
    apply(&proxy, &[svc]).await;

    let body = pattern(300_000, 6);
    for header in [
        &b"PROXY TCP4 192.0.2.1 198.51.100.7 12345 9000\r\n"[..],
        V2_HEADER,
    ] {
        // Header and stream start in one write: the bytes after the header must not be lost.
        let sent = [header, &body[..]].concat();
        let answer = exchange(connect(loopback(port)).await, &sent).await;
        assert_eq!(
            String::from_utf8_lossy(&answer),
            format!("ok {}\n", body.len())
        );
    }
    // The header in its own write, and the stream after a pause.
    let mut stream = connect(loopback(port)).await;
    stream
        .write_all(b"PROXY UNKNOWN\r\n")
        .await
        .expect("write header");
    stream.flush().await.expect("flush");
    assert_eq!(exchange(stream, b"after").await, b"ok 5\n");

    let got = recorder.connections();
    assert_eq!(got.len(), 3);
    assert!(
        got[0] == body && got[1] == body,
        "the backend got the stream without the header"
    );
    assert_eq!(got[2], b"after");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_bad_proxy_protocol_header_closes_the_connection() {
    let recorder = RecordingServer::start().await;
    let proxy = proxy_with(Options {
        proxy_protocol_timeout: Duration::from_millis(300),
        ..Options::default()
    });
    let port = free_tcp_port();
    let mut svc = tcp(port, &[recorder.addr()]);
    svc.proxy_protocol_in = true;
    apply(&proxy, &[svc]).await;

    for (what, bytes) in [
        ("no header", &b"GET / HTTP/1.1\r\nHost: x\r\n\r\n"[..]),
        ("TCP4 with IPv6 addresses", b"PROXY TCP4 ::1 ::1 1 2\r\n"),
        (
            "v2 with version 3",
            &[&V2_HEADER[..12], &[0x31, 0x11, 0, 12], &V2_HEADER[16..]].concat(),
        ),
    ] {
        let mut stream = connect(loopback(port)).await;
        stream.write_all(bytes).await.expect("write");
        let mut rest = Vec::new();
        let read = tokio::time::timeout(HANG, stream.read_to_end(&mut rest))
            .await
            .expect("left open");
        assert!(read.is_err() || rest.is_empty(), "{what}: got {rest:?}");
    }
    // A client that never sends its header is closed too.
    let mut silent = connect(loopback(port)).await;
    let mut rest = Vec::new();
    let read = tokio::time::timeout(HANG, silent.read_to_end(&mut rest))
        .await
        .expect("silent client left open");
    assert!(read.is_err() || rest.is_empty());

    let s = stats(&proxy, L4Protocol::Tcp, port);
    assert_eq!(get(&s.stats.proxy_protocol_errors), 4);
    assert!(
        recorder.connections().is_empty(),
        "nothing reached the backend"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn proxy_protocol_out_carries_the_client_address() {
    let recorder = RecordingServer::start().await;
    let proxy = proxy();
    let (out_only, in_and_out) = (free_tcp_port(), free_tcp_port());
    let mut a = tcp(out_only, &[recorder.addr()]);
    a.proxy_protocol_out = true;
    let mut b = tcp(in_and_out, &[recorder.addr()]);
    b.proxy_protocol_in = true;
    b.proxy_protocol_out = true;
    apply(&proxy, &[a, b]).await;

    // Out only: the header carries the client's own address and the address it dialled.
    let stream = connect(loopback(out_only)).await;
    let client = stream.local_addr().expect("client addr");
    let expected = [
        format!(
            "PROXY TCP4 127.0.0.1 127.0.0.1 {} {out_only}\r\n",
            client.port()
        )
        .as_bytes(),
        b"payload",
    ]
    .concat();
    let answer = exchange(stream, b"payload").await;
    assert_eq!(
        String::from_utf8_lossy(&answer),
        format!("ok {}\n", expected.len())
    );

    // In and out: the decoded (original) client address is passed on, re-encoded as v1.
    let answer = exchange(
        connect(loopback(in_and_out)).await,
        &[V2_HEADER, b"payload"].concat(),
    )
    .await;
    let relayed = b"PROXY TCP4 192.0.2.1 198.51.100.7 12345 9000\r\npayload".to_vec();
    assert_eq!(
        String::from_utf8_lossy(&answer),
        format!("ok {}\n", relayed.len())
    );

    let got = recorder.connections();
    assert_eq!(
        got.iter()
            .map(|c| String::from_utf8_lossy(c).into_owned())
            .collect::<Vec<_>>(),
        vec![
            String::from_utf8_lossy(&expected).into_owned(),
            String::from_utf8_lossy(&relayed).into_owned()
        ]
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn proxy_protocol_out_can_send_v2() {
    let recorder = RecordingServer::start().await;
    let proxy = proxy_with(Options {
        proxy_protocol_version: ProxyProtocolVersion::V2,
        ..Options::default()
    });
    let port = free_tcp_port();
    let mut svc = tcp(port, &[recorder.addr()]);
    svc.proxy_protocol_in = true;
    svc.proxy_protocol_out = true;
    apply(&proxy, &[svc]).await;

    let sent = [
        &b"PROXY TCP4 192.0.2.1 198.51.100.7 12345 9000\r\n"[..],
        b"data",
    ]
    .concat();
    exchange(connect(loopback(port)).await, &sent).await;
    assert_eq!(recorder.connections(), vec![[V2_HEADER, b"data"].concat()]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shutdown_closes_listeners_and_lets_open_connections_finish() {
    let echo = TcpEchoServer::start().await;
    let proxy = std::sync::Arc::new(proxy());
    let port = free_tcp_port();
    apply(&proxy, &[tcp(port, &[echo.addr()])]).await;
    let mut open = connect(loopback(port)).await;
    assert!(round_trip(&mut open, b"one").await == b"one");

    let stopping = tokio::spawn({
        let proxy = std::sync::Arc::clone(&proxy);
        async move { proxy.shutdown(HANG).await }
    });
    tokio::time::timeout(HANG, async {
        while TcpStream::connect(loopback(port)).await.is_ok() {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    })
    .await
    .expect("the listener stayed open after shutdown");
    assert!(
        !stopping.is_finished(),
        "shutdown waits for the open connection"
    );

    let data = pattern(1 << 20, 7);
    assert!(
        round_trip(&mut open, &data).await == data,
        "the open connection still works"
    );
    assert!(exchange(open, b"bye").await == b"bye");
    tokio::time::timeout(HANG, stopping)
        .await
        .expect("shutdown did not finish once the connection closed")
        .expect("shutdown task");
    assert_eq!(proxy.open_connections(), 0);

    let report = proxy.apply(&[tcp(port, &[echo.addr()])]).await;
    assert!(report.opened.is_empty(), "a stopped proxy opens nothing");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shutdown_closes_what_is_left_after_the_grace_period() {
    let echo = TcpEchoServer::start().await;
    let proxy = proxy();
    let port = free_tcp_port();
    apply(&proxy, &[tcp(port, &[echo.addr()])]).await;
    let mut open = connect(loopback(port)).await;
    assert!(round_trip(&mut open, b"one").await == b"one");

    tokio::time::timeout(HANG, proxy.shutdown(Duration::from_millis(100)))
        .await
        .expect("shutdown hung past its grace period");
    assert_eq!(proxy.open_connections(), 0);
    let mut rest = Vec::new();
    let read = tokio::time::timeout(HANG, open.read_to_end(&mut rest))
        .await
        .expect("left open");
    assert!(
        read.is_err() || rest.is_empty(),
        "the connection was closed"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn run_follows_snapshots_and_serves_only_proxy_protocol_entries_beside_ebpf() {
    let recorder = RecordingServer::start().await;
    let proxy = std::sync::Arc::new(proxy());
    let (plain, with_proxy) = (free_tcp_port(), free_tcp_port());
    let mut pp = tcp(with_proxy, &[recorder.addr()]);
    pp.proxy_protocol_out = true;
    let snapshot = |l4: Vec<L4Service>| {
        std::sync::Arc::new(Snapshot {
            l4,
            ..Snapshot::default()
        })
    };
    let (tx, rx) =
        tokio::sync::watch::channel(snapshot(vec![tcp(plain, &[recorder.addr()]), pp.clone()]));
    let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
    let running = tokio::spawn({
        let proxy = std::sync::Arc::clone(&proxy);
        async move {
            proxy
                .run(rx, Selection::ProxyProtocolOnly, async {
                    let _ = stop_rx.await;
                })
                .await;
        }
    });

    // The PROXY entry is served; the plain one is left to eBPF.
    let wait_open = |port| {
        let proxy = std::sync::Arc::clone(&proxy);
        async move {
            tokio::time::timeout(HANG, async {
                while proxy.local_addr(L4Protocol::Tcp, port).await.is_none() {
                    tokio::time::sleep(Duration::from_millis(10)).await;
                }
            })
            .await
            .expect("the listener never opened");
        }
    };
    wait_open(with_proxy).await;
    let answer = exchange(connect(loopback(with_proxy)).await, b"x").await;
    assert!(answer.starts_with(b"ok "), "{answer:?}");
    assert_eq!(proxy.local_addr(L4Protocol::Tcp, plain).await, None);
    assert_refused(loopback(plain)).await;

    // A new Snapshot moves the PROXY entry to another port.
    let moved = free_tcp_port();
    pp.port = moved;
    tx.send_replace(snapshot(vec![pp]));
    wait_open(moved).await;
    assert_refused(loopback(with_proxy)).await;

    stop_tx.send(()).expect("run is listening");
    tokio::time::timeout(HANG, running)
        .await
        .expect("run did not stop")
        .expect("run task");
    assert_refused(loopback(moved)).await;
}

/// A Gateway's TCP listener with `spec.addresses` binds its address, not `--bind-address`,
/// and moves when the address changes. A weighted split with a rejected share resets that
/// share's connections and forwards the rest.
#[tokio::test]
async fn gateway_addresses_and_a_rejected_share() {
    let echo = TcpEchoServer::start().await;
    let port = free_tcp_port();
    let at = |ip: [u8; 4]| SocketAddr::from((ip, port));
    let mut svc = tcp(port, &[echo.addr()]);
    svc.addrs = vec![Ipv4Addr::new(127, 0, 0, 2).into()];
    let p = proxy();
    apply(&p, std::slice::from_ref(&svc)).await;
    let stream = TcpStream::connect(at([127, 0, 0, 2]))
        .await
        .expect("connect");
    assert_eq!(
        exchange(stream, b"hi").await,
        b"hi",
        "the Gateway's address"
    );
    assert!(
        TcpStream::connect(at([127, 0, 0, 1])).await.is_err(),
        "not --bind-address"
    );

    svc.addrs = vec![Ipv4Addr::new(127, 0, 0, 3).into()];
    svc.split = vec![
        xdp_ingress::snapshot::L4Split {
            weight: 1,
            endpoints: vec![echo.addr()],
        },
        xdp_ingress::snapshot::L4Split {
            weight: 1,
            endpoints: Vec::new(),
        },
    ];
    apply(&p, std::slice::from_ref(&svc)).await;
    assert!(
        TcpStream::connect(at([127, 0, 0, 2])).await.is_err(),
        "the old address is closed"
    );
    let (mut ok, mut reset) = (0u32, 0u32);
    for i in 0..200u32 {
        let stream = TcpStream::connect(at([127, 0, 0, 3]))
            .await
            .expect("connect");
        let data = pattern(16, i);
        let (mut r, mut w) = stream.into_split();
        let _ = w.write_all(&data).await;
        let _ = w.shutdown().await;
        let mut got = Vec::new();
        match tokio::time::timeout(HANG, r.read_to_end(&mut got))
            .await
            .expect("reading hung")
        {
            Ok(_) if got == data => ok += 1,
            _ => reset += 1,
        }
    }
    // Weights 1:1 through a 509-slot rotation: 200 consecutive turns split close to half.
    assert!((70..=130).contains(&ok), "{ok} forwarded, {reset} rejected");
}
