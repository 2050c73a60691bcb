//! The eBPF L4 path carrying real traffic: client ⇄ node ⇄ two backends in network
//! namespaces, real `redis-server`s, real TCP/UDP servers, programs attached in XDP and TC
//! modes, maps programmed from a Snapshot exactly as the controller does.

use std::{
    collections::BTreeMap,
    io::{BufRead, BufReader, Write},
    net::{IpAddr, SocketAddr, TcpListener, TcpStream, UdpSocket},
    process::Output,
    time::Duration,
};

use ingress_common::stats::Counter;
use ingress_tests::{
    netns::{Netns, PinDir},
    servers::{RedisServer, udp_echo_in},
    topology::{NODE, Offloads, Topology, neighbours},
};
use xdp_ingress::{
    config::{L4Protocol, L4Service, ServiceRef, Snapshot},
    l4::{L4Mode, conntrack::Timeouts, plane::Kernel},
};

/// A small Maglev table keeps the tests' map footprint low (any prime works).
const MAGLEV: u32 = 251;

struct Rig {
    topo: Topology,
    kernel: Kernel,
    _pin: PinDir,
}

impl Rig {
    fn new(mode: L4Mode, offloads: Offloads) -> Self {
        let topo = Topology::new(2, offloads);
        assert!(
            neighbours(&topo.node).trim().is_empty(),
            "a fresh topology starts with empty neighbour tables"
        );
        let pin = PinDir::new();
        let pin_path = pin.path().to_owned();
        let ifaces = topo.node_interfaces();
        let kernel = topo.node.run(move || {
            let dp = ingress_tests::datapath::attached(&pin_path, &ifaces, mode, MAGLEV);
            Kernel::new(dp, vec![IpAddr::V4(NODE)], Timeouts::default()).expect("kernel plane")
        });
        Self {
            topo,
            kernel,
            _pin: pin,
        }
    }

    fn apply(&mut self, services: Vec<L4Service>) {
        let snapshot = Snapshot {
            l4: services,
            ..Snapshot::default()
        };
        self.kernel.apply(&snapshot).expect("program maps");
    }

    fn counter(&self, c: Counter) -> u64 {
        self.kernel.totals().expect("counters").get(c).packets
    }
}

fn service(port: u16, protocol: L4Protocol, endpoints: Vec<SocketAddr>) -> L4Service {
    L4Service {
        port,
        protocol,
        service: ServiceRef {
            namespace: "default".into(),
            name: "svc".into(),
            port,
        },
        endpoints,
        proxy_protocol_in: false,
        proxy_protocol_out: false,
        addrs: Vec::new(),
        split: Vec::new(),
    }
}

fn redis_cli(ns: &Netns, port: u16, args: &[&str]) -> Output {
    ns.command("timeout")
        .args([
            "20",
            "redis-cli",
            "-h",
            &NODE.to_string(),
            "-p",
            &port.to_string(),
        ])
        .args(args)
        .output()
        .expect("run redis-cli")
}

/// Serves each line with this backend's name, on a thread inside `ns`.
fn name_server(ns: &Netns, addr: SocketAddr, name: &'static str) {
    let listener = ns.run(move || TcpListener::bind(addr).expect("bind name server"));
    std::thread::spawn(move || {
        for conn in listener.incoming().flatten() {
            std::thread::spawn(move || {
                let _ = conn.set_nodelay(true);
                let mut w = conn.try_clone().expect("clone");
                for line in BufReader::new(conn).lines() {
                    if line.is_err() || writeln!(w, "{name}").is_err() {
                        break;
                    }
                }
            });
        }
    });
}

fn ask(conn: &mut BufReader<TcpStream>) -> String {
    conn.get_mut().write_all(b"who\n").expect("send");
    let mut line = String::new();
    conn.read_line(&mut line).expect("receive");
    line.trim().to_owned()
}

fn connect(port: u16) -> BufReader<TcpStream> {
    let s = TcpStream::connect_timeout(&Topology::service(port), Duration::from_secs(10))
        .expect("connect through the node");
    s.set_read_timeout(Some(Duration::from_secs(10)))
        .expect("timeout");
    // Request/response over one connection: without NODELAY, delayed ACKs add 40 ms a turn.
    s.set_nodelay(true).expect("nodelay");
    BufReader::new(s)
}

fn redis_end_to_end(mode: L4Mode, offloads: Offloads) {
    let mut rig = Rig::new(mode, offloads);
    let redis: Vec<RedisServer> = (0..2)
        .map(|i| {
            RedisServer::start_with(
                rig.topo.backends[i].command("redis-server"),
                rig.topo.backend(i, 6379),
            )
        })
        .collect();
    rig.apply(vec![service(
        9000,
        L4Protocol::Tcp,
        redis.iter().map(RedisServer::addr).collect(),
    )]);

    // The very first connection, with every neighbour table still empty.
    let ping = redis_cli(&rig.topo.client, 9000, &["ping"]);
    assert_eq!(
        String::from_utf8_lossy(&ping.stdout).trim(),
        "PONG",
        "{mode:?}: redis-cli ping: {}",
        String::from_utf8_lossy(&ping.stderr)
    );
    let info = redis_cli(&rig.topo.client, 9000, &["info", "server"]);
    assert!(
        String::from_utf8_lossy(&info.stdout).contains("redis_version:"),
        "{mode:?}: redis-cli info: {}",
        String::from_utf8_lossy(&info.stdout)
    );
    assert!(
        rig.counter(Counter::NewFlow) >= 2,
        "{mode:?}: flows were NATed"
    );
    assert!(
        rig.counter(Counter::CtReply) >= 2,
        "{mode:?}: replies were reverse-NATed"
    );
    assert_eq!(
        rig.counter(Counter::DropNoRoute),
        0,
        "{mode:?}: no route drops"
    );
}

#[test]
fn redis_through_xdp_with_nic_like_offloads() {
    redis_end_to_end(L4Mode::Xdp, Offloads::LikeANic);
}

#[test]
fn redis_through_tc_with_default_offloads() {
    redis_end_to_end(L4Mode::Tc, Offloads::Default);
}

fn udp_in_mode(mode: L4Mode, offloads: Offloads) {
    let mut rig = Rig::new(mode, offloads);
    let backend = rig.topo.backend(0, 5353);
    udp_echo_in(&rig.topo.backends[0], backend, "b0");
    rig.apply(vec![service(5300, L4Protocol::Udp, vec![backend])]);
    let replies = rig.topo.client.run(|| {
        let s = UdpSocket::bind("10.77.1.1:0").expect("bind");
        s.set_read_timeout(Some(Duration::from_secs(3)))
            .expect("timeout");
        let mut got = Vec::new();
        for i in 0..5u8 {
            // The first datagram may be spent resolving neighbours; retry like a UDP client.
            for _ in 0..3 {
                s.send_to(&[b'm', b'0' + i], Topology::service(5300))
                    .expect("send");
                let mut buf = [0u8; 64];
                if let Ok((n, from)) = s.recv_from(&mut buf) {
                    got.push((String::from_utf8_lossy(&buf[..n]).into_owned(), from));
                    break;
                }
            }
        }
        got
    });
    assert_eq!(replies.len(), 5, "{mode:?}: UDP replies {replies:?}");
    for (i, (text, from)) in replies.iter().enumerate() {
        assert_eq!(text, &format!("b0:m{i}"), "{mode:?}: payload");
        assert_eq!(
            *from,
            Topology::service(5300),
            "{mode:?}: reply comes from the service address"
        );
    }
}

#[test]
fn udp_through_xdp() {
    udp_in_mode(L4Mode::Xdp, Offloads::LikeANic);
}

#[test]
fn udp_through_tc() {
    udp_in_mode(L4Mode::Tc, Offloads::Default);
}

#[test]
fn maglev_spreads_new_connections_and_each_stays_on_one_backend() {
    const CONNECTIONS: usize = 1000;
    let mut rig = Rig::new(L4Mode::Tc, Offloads::Default);
    for (i, name) in ["b0", "b1"].into_iter().enumerate() {
        name_server(&rig.topo.backends[i], rig.topo.backend(i, 7000), name);
    }
    rig.apply(vec![service(
        7000,
        L4Protocol::Tcp,
        vec![rig.topo.backend(0, 7000), rig.topo.backend(1, 7000)],
    )]);
    let counts = rig.topo.client.run(|| {
        let mut counts: BTreeMap<String, usize> = BTreeMap::new();
        for _ in 0..CONNECTIONS {
            let mut c = connect(7000);
            let first = ask(&mut c);
            for _ in 0..2 {
                assert_eq!(ask(&mut c), first, "a connection moved between backends");
            }
            *counts.entry(first).or_default() += 1;
        }
        counts
    });
    // Stated tolerance: each backend gets 40–60% of new connections.
    for name in ["b0", "b1"] {
        let n = counts.get(name).copied().unwrap_or(0);
        assert!(
            (CONNECTIONS * 40 / 100..=CONNECTIONS * 60 / 100).contains(&n),
            "{name} got {n} of {CONNECTIONS}: {counts:?}"
        );
    }
}

#[test]
fn removing_an_endpoint_keeps_connections_to_the_others() {
    let mut rig = Rig::new(L4Mode::Xdp, Offloads::LikeANic);
    for (i, name) in ["b0", "b1"].into_iter().enumerate() {
        name_server(&rig.topo.backends[i], rig.topo.backend(i, 7000), name);
    }
    let both = vec![rig.topo.backend(0, 7000), rig.topo.backend(1, 7000)];
    rig.apply(vec![service(7000, L4Protocol::Tcp, both)]);

    // Open connections until one lands on each backend.
    let mut conns = rig.topo.client.run(|| {
        let mut by_backend: BTreeMap<String, BufReader<TcpStream>> = BTreeMap::new();
        for _ in 0..64 {
            let mut c = connect(7000);
            let who = ask(&mut c);
            by_backend.entry(who).or_insert(c);
            if by_backend.len() == 2 {
                break;
            }
        }
        by_backend
    });
    assert_eq!(conns.len(), 2, "connections reached both backends");

    rig.apply(vec![service(
        7000,
        L4Protocol::Tcp,
        vec![rig.topo.backend(0, 7000)],
    )]);

    let mut kept = conns.remove("b0").expect("connection to b0");
    for _ in 0..10 {
        assert_eq!(
            ask(&mut kept),
            "b0",
            "the surviving backend's connection keeps working"
        );
    }
    let new: Vec<String> = rig
        .topo
        .client
        .run(|| (0..30).map(|_| ask(&mut connect(7000))).collect());
    assert!(
        new.iter().all(|w| w == "b0"),
        "new connections avoid the removed endpoint: {new:?}"
    );
}

#[test]
fn a_service_without_endpoints_refuses_connections() {
    let mut rig = Rig::new(L4Mode::Tc, Offloads::Default);
    rig.apply(vec![service(9100, L4Protocol::Tcp, vec![])]);
    let err = rig
        .topo
        .client
        .run(|| TcpStream::connect_timeout(&Topology::service(9100), Duration::from_secs(5)))
        .expect_err("nothing may accept");
    assert_eq!(
        err.kind(),
        std::io::ErrorKind::ConnectionRefused,
        "a TCP RST, not a timeout: {err}"
    );
    assert!(rig.counter(Counter::NoEndpoints) >= 1, "counted");
}

#[test]
fn a_removed_service_stops_accepting_new_flows() {
    let mut rig = Rig::new(L4Mode::Tc, Offloads::Default);
    name_server(&rig.topo.backends[0], rig.topo.backend(0, 7000), "b0");
    rig.apply(vec![service(
        7000,
        L4Protocol::Tcp,
        vec![rig.topo.backend(0, 7000)],
    )]);
    assert_eq!(rig.topo.client.run(|| ask(&mut connect(7000))), "b0");
    rig.apply(vec![]);
    let err = rig
        .topo
        .client
        .run(|| TcpStream::connect_timeout(&Topology::service(7000), Duration::from_secs(5)))
        .expect_err("the port is closed now");
    assert_eq!(err.kind(), std::io::ErrorKind::ConnectionRefused, "{err}");
}
