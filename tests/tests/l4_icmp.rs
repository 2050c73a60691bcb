//! ICMP errors and fragments through the kernel path, end to end in network namespaces, in
//! XDP and TC modes, over IPv4 and IPv6:
//!
//! ```text
//!  client ── (rc) router (rn) ── (nc) node (nb0) ── backend
//!  10.77.1.1  .1.254   .2.254     .2.2    .10.1      10.77.10.2
//!  fd77:1::1  ::fe     fd77:2::fe ::2     fd77:10::1 fd77:10::2
//! ```
//!
//! - PMTU: the router's link to the client has MTU 1400 (the client's own side 1500, so it
//!   advertises an MSS of 1460). A 2 MB download from a real backend through the node only
//!   completes if the router's "fragmentation needed" / "packet too big", sent to the node,
//!   reaches the backend translated; without it the connection black-holes.
//! - A backend's ICMP port unreachable reaches the client translated: its connected UDP
//!   socket gets ECONNREFUSED.
//! - 3000-byte UDP datagrams (two or three fragments each way) reach a real UDP echo
//!   backend and the echo comes back whole.
//!
//! The programs are loaded and attached in the node namespace and their maps programmed from
//! a Snapshot, as the controller does (see `l4_kernel.rs`).

use std::{
    io::{ErrorKind, Read, Write},
    net::{IpAddr, SocketAddr, TcpListener, TcpStream, UdpSocket},
    time::{Duration, Instant},
};

use ingress_common::stats::Counter;
use ingress_tests::{
    netns::{Netns, PinDir, sh, veth},
    servers::udp_echo_in,
    topology::Offloads,
};
use xdp_ingress::{
    config::{L4Protocol, L4Service, ServiceRef, Snapshot},
    l4::{L4Mode, conntrack::Timeouts, plane::Kernel},
};

const CLIENT4: &str = "10.77.1.1";
const NODE4: &str = "10.77.2.2";
const BACKEND4: &str = "10.77.10.2";
const CLIENT6: &str = "fd77:1::1";
const NODE6: &str = "fd77:2::2";
const BACKEND6: &str = "fd77:10::2";

/// Address family of a test.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Fam {
    V4,
    V6,
}

impl Fam {
    fn node(self) -> IpAddr {
        match self {
            Fam::V4 => NODE4.parse().expect("ip"),
            Fam::V6 => NODE6.parse().expect("ip"),
        }
    }

    fn client(self) -> IpAddr {
        match self {
            Fam::V4 => CLIENT4.parse().expect("ip"),
            Fam::V6 => CLIENT6.parse().expect("ip"),
        }
    }

    fn backend(self, port: u16) -> SocketAddr {
        let ip: IpAddr = match self {
            Fam::V4 => BACKEND4.parse().expect("ip"),
            Fam::V6 => BACKEND6.parse().expect("ip"),
        };
        SocketAddr::new(ip, port)
    }
}

struct Rig {
    client: Netns,
    router: Netns,
    node: Netns,
    backend: Netns,
    kernel: Kernel,
    _pin: PinDir,
}

impl Rig {
    /// The topology, with the router's client-facing link at `router_mtu`, and the programs
    /// attached to the node's interfaces in `mode`.
    fn new(mode: L4Mode, offloads: Offloads, router_mtu: u32) -> Self {
        let client = Netns::new("icli");
        let router = Netns::new("irtr");
        let node = Netns::new("inode");
        let backend = Netns::new("ib0");
        veth(
            &client,
            "eth0",
            "10.77.1.1/24",
            &router,
            "rc",
            "10.77.1.254/24",
        );
        veth(&router, "rn", "10.77.2.254/24", &node, "nc", "10.77.2.2/24");
        veth(
            &node,
            "nb0",
            "10.77.10.1/24",
            &backend,
            "eth0",
            "10.77.10.2/24",
        );
        for (ns, dev, addr) in [
            (&client, "eth0", "fd77:1::1/64"),
            (&router, "rc", "fd77:1::fe/64"),
            (&router, "rn", "fd77:2::fe/64"),
            (&node, "nc", "fd77:2::2/64"),
            (&node, "nb0", "fd77:10::1/64"),
            (&backend, "eth0", "fd77:10::2/64"),
        ] {
            ns.ip(&["addr", "add", addr, "dev", dev, "nodad"]);
        }
        router.ip(&["link", "set", "rc", "mtu", &router_mtu.to_string()]);
        client.ip(&["route", "add", "default", "via", "10.77.1.254"]);
        client.ip(&["-6", "route", "add", "default", "via", "fd77:1::fe"]);
        node.ip(&["route", "add", "10.77.1.0/24", "via", "10.77.2.254"]);
        node.ip(&["-6", "route", "add", "fd77:1::/64", "via", "fd77:2::fe"]);
        backend.ip(&["route", "add", "default", "via", "10.77.10.1"]);
        backend.ip(&["-6", "route", "add", "default", "via", "fd77:10::1"]);
        for ns in [&router, &node] {
            ns.exec(&["sysctl", "-qw", "net.ipv4.ip_forward=1"]);
            ns.exec(&["sysctl", "-qw", "net.ipv6.conf.all.forwarding=1"]);
        }
        // Path MTU discovery as Linux does it by default: DF on every TCP segment.
        for ns in [&client, &backend] {
            let v = ns.exec(&["sysctl", "-n", "net.ipv4.ip_no_pmtu_disc"]);
            assert_eq!(v.trim(), "0", "PMTU discovery on (DF set)");
        }
        if offloads == Offloads::LikeANic {
            for (ns, dev) in [
                (&client, "eth0"),
                (&backend, "eth0"),
                (&router, "rc"),
                (&router, "rn"),
            ] {
                ns.exec(&["ethtool", "-K", dev, "tx", "off"]);
                ns.exec(&["ethtool", "-K", dev, "gro", "on"]);
            }
            for dev in ["nc", "nb0"] {
                node.exec(&["ethtool", "-K", dev, "gro", "on"]);
            }
        }
        let pin = PinDir::new();
        let pin_path = pin.path().to_owned();
        let ifaces = vec!["nc".to_owned(), "nb0".to_owned()];
        let kernel = node.run(move || {
            let dp = ingress_tests::datapath::attached(&pin_path, &ifaces, mode, 251);
            let addrs = vec![Fam::V4.node(), Fam::V6.node()];
            Kernel::new(dp, addrs, Timeouts::default()).expect("kernel plane")
        });
        Self {
            client,
            router,
            node,
            backend,
            kernel,
            _pin: pin,
        }
    }

    /// Serves `port` over `protocol` on the node, to the backend's `backend_port` in both
    /// families.
    fn serve(&mut self, port: u16, protocol: L4Protocol, backend_port: u16) {
        let snapshot = Snapshot {
            l4: vec![L4Service {
                port,
                protocol,
                service: ServiceRef {
                    namespace: "default".into(),
                    name: "svc".into(),
                    port,
                },
                endpoints: vec![Fam::V4.backend(backend_port), Fam::V6.backend(backend_port)],
                proxy_protocol_in: false,
                proxy_protocol_out: false,
                addrs: Vec::new(),
                split: Vec::new(),
            }],
            ..Snapshot::default()
        };
        self.kernel.apply(&snapshot).expect("program maps");
    }

    fn counter(&self, c: Counter) -> u64 {
        self.kernel.totals().expect("counters").get(c).packets
    }

    /// What the namespaces' stacks say, for failure messages.
    fn diagnostics(&self) -> String {
        let mut out = String::new();
        for (name, ns) in [
            ("client", &self.client),
            ("router", &self.router),
            ("node", &self.node),
            ("backend", &self.backend),
        ] {
            out.push_str(&format!(
                "--- {name}\n{}",
                sh(&["ip", "netns", "exec", ns.name(), "nstat", "-asz"])
                    .lines()
                    .filter(|l| l.contains("Icmp") || l.contains("Frag") || l.contains("Reasm"))
                    .filter(|l| l.split_whitespace().nth(1).is_none_or(|v| v != "0"))
                    .collect::<Vec<_>>()
                    .join("\n")
            ));
            out.push('\n');
        }
        out
    }
}

/// An ICMP counter of the router's stack (`nstat` name, e.g. `IcmpOutDestUnreachs`).
fn nstat(ns: &Netns, name: &str) -> u64 {
    sh(&["ip", "netns", "exec", ns.name(), "nstat", "-asz", name])
        .lines()
        .find_map(|l| {
            let mut f = l.split_whitespace();
            (f.next() == Some(name)).then(|| f.next()?.parse().ok())?
        })
        .unwrap_or(0)
}

const HTTP_PORT: u16 = 8080;
const BODY: usize = 2 * 1024 * 1024;

/// A real HTTP/1.1 server on the backend (both families) answering every request with a
/// `BODY`-byte body.
fn big_http_server(ns: &Netns) {
    for fam in [Fam::V4, Fam::V6] {
        let listener =
            ns.run(move || TcpListener::bind(fam.backend(HTTP_PORT)).expect("bind HTTP"));
        std::thread::spawn(move || {
            for conn in listener.incoming().flatten() {
                std::thread::spawn(move || {
                    let mut conn = conn;
                    let mut head = Vec::new();
                    let mut buf = [0u8; 1024];
                    while !head.windows(4).any(|w| w == b"\r\n\r\n") {
                        match conn.read(&mut buf) {
                            Ok(0) | Err(_) => return,
                            Ok(n) => head.extend_from_slice(&buf[..n]),
                        }
                    }
                    let body: Vec<u8> = (0..BODY).map(|i| (i % 251) as u8).collect();
                    let _ = write!(
                        conn,
                        "HTTP/1.1 200 OK\r\nContent-Length: {BODY}\r\nConnection: close\r\n\r\n"
                    );
                    let _ = conn.write_all(&body);
                });
            }
        });
    }
}

/// GETs the big body through the node; returns the body bytes received before `deadline`.
fn download(client: &Netns, fam: Fam, deadline: Duration) -> Result<Vec<u8>, String> {
    client.run(move || {
        let started = Instant::now();
        let addr = SocketAddr::new(fam.node(), HTTP_PORT);
        let mut s = TcpStream::connect_timeout(&addr, Duration::from_secs(5))
            .map_err(|e| format!("connect: {e}"))?;
        s.set_read_timeout(Some(Duration::from_millis(500)))
            .map_err(|e| e.to_string())?;
        s.write_all(b"GET /big HTTP/1.1\r\nHost: node\r\n\r\n")
            .map_err(|e| format!("send: {e}"))?;
        let mut got = Vec::new();
        let mut buf = vec![0u8; 65_536];
        loop {
            match s.read(&mut buf) {
                Ok(0) => break,
                Ok(n) => got.extend_from_slice(&buf[..n]),
                Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => {}
                Err(e) => return Err(format!("read: {e} after {} bytes", got.len())),
            }
            if started.elapsed() > deadline {
                return Err(format!(
                    "{} bytes after {deadline:?} (black hole?)",
                    got.len()
                ));
            }
        }
        let at = got
            .windows(4)
            .position(|w| w == b"\r\n\r\n")
            .ok_or("no response head")?;
        Ok(got.split_off(at + 4))
    })
}

/// A 2 MB download through a hop with MTU 1400: the router's ICMP errors, translated by the
/// node, lower the backend's path MTU.
fn pmtu(mode: L4Mode, offloads: Offloads, fam: Fam) {
    let mut rig = Rig::new(mode, offloads, 1400);
    big_http_server(&rig.backend);
    rig.serve(HTTP_PORT, L4Protocol::Tcp, HTTP_PORT);
    let started = Instant::now();
    let body = download(&rig.client, fam, Duration::from_secs(20)).unwrap_or_else(|e| {
        panic!(
            "{mode:?} {fam:?}: download through the MTU-1400 hop: {e}; icmp_translated {}, \
             icmp_untranslated {}\n{}",
            rig.counter(Counter::IcmpTranslated),
            rig.counter(Counter::IcmpUntranslated),
            rig.diagnostics()
        )
    });
    assert_eq!(body.len(), BODY, "{mode:?} {fam:?}: the whole body");
    assert!(
        body.iter().enumerate().all(|(i, b)| *b == (i % 251) as u8),
        "{mode:?} {fam:?}: the body's bytes"
    );
    let too_big = match fam {
        Fam::V4 => nstat(&rig.router, "IcmpOutDestUnreachs"),
        Fam::V6 => nstat(&rig.router, "Icmp6OutPktTooBigs"),
    };
    assert!(
        too_big > 0,
        "{mode:?} {fam:?}: the router sent fragmentation needed / packet too big\n{}",
        rig.diagnostics()
    );
    assert!(
        rig.counter(Counter::IcmpTranslated) > 0,
        "{mode:?} {fam:?}: the node translated them"
    );
    eprintln!(
        "{mode:?} {fam:?}: {BODY} bytes through the MTU-1400 hop in {:?}; the router sent \
         {too_big} ICMP errors, the node translated {}",
        started.elapsed(),
        rig.counter(Counter::IcmpTranslated)
    );
}

#[test]
fn pmtu_through_xdp_v4() {
    pmtu(L4Mode::Xdp, Offloads::LikeANic, Fam::V4);
}

#[test]
fn pmtu_through_tc_v4() {
    pmtu(L4Mode::Tc, Offloads::Default, Fam::V4);
}

#[test]
fn pmtu_through_xdp_v6() {
    pmtu(L4Mode::Xdp, Offloads::LikeANic, Fam::V6);
}

#[test]
fn pmtu_through_tc_v6() {
    pmtu(L4Mode::Tc, Offloads::Default, Fam::V6);
}

/// UDP to a service whose backend port has nothing listening: the backend's port
/// unreachable, translated, makes the client's connected socket fail with ECONNREFUSED.
fn port_unreachable(mode: L4Mode, offloads: Offloads, fam: Fam) {
    const PORT: u16 = 5400;
    let mut rig = Rig::new(mode, offloads, 1500);
    rig.serve(PORT, L4Protocol::Udp, 5999);
    let result = rig.client.run(move || {
        let bind = SocketAddr::new(fam.client(), 0);
        let s = UdpSocket::bind(bind).expect("bind");
        s.connect(SocketAddr::new(fam.node(), PORT))
            .expect("connect");
        s.set_read_timeout(Some(Duration::from_secs(2)))
            .expect("timeout");
        let mut buf = [0u8; 64];
        // The first datagram may be spent resolving neighbours; retry like a UDP client.
        let mut last = None;
        for _ in 0..3 {
            if let Err(e) = s.send(b"anyone?") {
                last = Some(e.kind());
                if e.kind() == ErrorKind::ConnectionRefused {
                    break;
                }
                continue;
            }
            match s.recv(&mut buf) {
                Ok(n) => panic!("a reply from nowhere: {:?}", &buf[..n]),
                Err(e) => {
                    last = Some(e.kind());
                    if e.kind() == ErrorKind::ConnectionRefused {
                        break;
                    }
                }
            }
        }
        last
    });
    assert_eq!(
        result,
        Some(ErrorKind::ConnectionRefused),
        "{mode:?} {fam:?}: the client sees the refusal; icmp_translated {}, \
         icmp_untranslated {}\n{}",
        rig.counter(Counter::IcmpTranslated),
        rig.counter(Counter::IcmpUntranslated),
        rig.diagnostics()
    );
    assert!(
        rig.counter(Counter::IcmpTranslated) >= 1,
        "{mode:?} {fam:?}: translated in the kernel"
    );
}

#[test]
fn port_unreachable_through_xdp_v4() {
    port_unreachable(L4Mode::Xdp, Offloads::LikeANic, Fam::V4);
}

#[test]
fn port_unreachable_through_tc_v4() {
    port_unreachable(L4Mode::Tc, Offloads::Default, Fam::V4);
}

#[test]
fn port_unreachable_through_xdp_v6() {
    port_unreachable(L4Mode::Xdp, Offloads::LikeANic, Fam::V6);
}

#[test]
fn port_unreachable_through_tc_v6() {
    port_unreachable(L4Mode::Tc, Offloads::Default, Fam::V6);
}

/// 3000-byte datagrams over IPv4 and IPv6 to a real UDP echo backend: fragmented by the
/// client, translated fragment by fragment, reassembled by the backend; its 3003-byte echo
/// comes back the same way, whole.
fn big_datagrams(mode: L4Mode, offloads: Offloads) {
    const PORT: u16 = 5300;
    const ECHO: u16 = 5353;
    let mut rig = Rig::new(mode, offloads, 1500);
    for fam in [Fam::V4, Fam::V6] {
        udp_echo_in(&rig.backend, fam.backend(ECHO), "b0");
    }
    rig.serve(PORT, L4Protocol::Udp, ECHO);
    for fam in [Fam::V4, Fam::V6] {
        let echoed = rig.client.run(move || {
            let s = UdpSocket::bind(SocketAddr::new(fam.client(), 0)).expect("bind");
            s.set_read_timeout(Some(Duration::from_secs(2)))
                .expect("timeout");
            let mut got = Vec::new();
            let mut sent: Vec<Vec<u8>> = Vec::new();
            for i in 0..5u8 {
                let datagram: Vec<u8> = (0..3000u32).map(|j| (j % 241) as u8 ^ i).collect();
                sent.push(datagram.clone());
                let mut buf = vec![0u8; 65_536];
                // The first datagram may be spent resolving neighbours; retry. A retried
                // datagram's first copy may still be echoed late: an echo of an earlier
                // datagram is skipped, anything else is kept (and fails below).
                'attempts: for _ in 0..3 {
                    s.send_to(&datagram, SocketAddr::new(fam.node(), PORT))
                        .expect("send");
                    while let Ok((n, from)) = s.recv_from(&mut buf) {
                        let echo = buf[..n].to_vec();
                        let earlier = &sent[..sent.len() - 1];
                        if echo.len() == 3003 && earlier.iter().any(|d| echo[3..] == d[..]) {
                            continue;
                        }
                        got.push((datagram.clone(), echo, from));
                        break 'attempts;
                    }
                }
            }
            got
        });
        assert_eq!(
            echoed.len(),
            5,
            "{mode:?} {fam:?}: every 3000-byte datagram echoed; fragment_translated {}, \
             fragment_untracked {}\n{}",
            rig.counter(Counter::FragmentTranslated),
            rig.counter(Counter::FragmentUntracked),
            rig.diagnostics()
        );
        for (sent, echo, from) in echoed {
            assert_eq!(
                from,
                SocketAddr::new(fam.node(), PORT),
                "{mode:?} {fam:?}: from"
            );
            assert_eq!(echo.len(), 3003, "{mode:?} {fam:?}: the whole echo");
            assert_eq!(&echo[..3], b"b0:", "{mode:?} {fam:?}: from the backend");
            assert!(echo[3..] == sent[..], "{mode:?} {fam:?}: the same bytes");
        }
    }
    // Two fragments each way per datagram at least (3000 bytes over MTU 1500).
    assert!(
        rig.counter(Counter::FragmentTranslated) >= 2 * 10,
        "{mode:?}: non-first fragments were translated ({})",
        rig.counter(Counter::FragmentTranslated)
    );
}

#[test]
fn big_datagrams_through_xdp() {
    big_datagrams(L4Mode::Xdp, Offloads::LikeANic);
}

#[test]
fn big_datagrams_through_tc() {
    big_datagrams(L4Mode::Tc, Offloads::Default);
}
